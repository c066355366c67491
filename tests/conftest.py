"""Shared test setup: fast CPU math for tiny random models, and the repository paths."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
EXAMPLES = ROOT / "examples"

# Tests must not depend on a hub or the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    # Only set up torch if some test already imported it: plain interpreter tests stay torch-free.
    if "torch" in sys.modules:
        _torch_setup()


def _torch_setup() -> None:
    import torch

    torch.set_flush_denormal(True)  # random tiny models otherwise hit denormals (~6x slower)


@pytest.fixture(autouse=True, scope="session")
def _flush_denormals():
    if "torch" in sys.modules:
        _torch_setup()
    yield
