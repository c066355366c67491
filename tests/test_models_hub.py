"""Hugging Face Hub ids ("org/name") resolved through huggingface_hub's cache: a cache laid out as
huggingface_hub writes it (models--org--name/blobs, snapshots/REV/ symlinks, refs/main) in a temporary
HF_HOME, read with HF_HUB_OFFLINE=1 from Python and Lisp, GGUF repositories ("file", "quant"), the
not-cached error, and the sandbox (reading the cache needs --allow-read; no network without --allow-net)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")

from lispe_py import Interpreter  # noqa: E402
from lispe_py.errors import LispEError  # noqa: E402
from lispe_py.models import ModelError, create_model, load_model  # noqa: E402
from lispe_py.models import hub  # noqa: E402

torch.set_flush_denormal(True)
TINY = {"arch": "llama", "vocab_size": 96, "hidden_size": 256, "num_layers": 2, "num_heads": 4,
        "num_kv_heads": 2, "intermediate_size": 512, "max_position_embeddings": 64, "seed": 3}
IDS = torch.tensor([[1, 5, 9, 13, 40]])


def _hf_folder(folder: Path, seed: int) -> Path:
    """A transformers Llama folder (config.json, model.safetensors, generation_config.json)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _gguf(path: Path, qtype: str) -> Path:
    from lispe_py.models.gguf_writer import write_llama_gguf

    write_llama_gguf(path, create_model(TINY), qtype)
    return path


def _cache(home: Path, repo: str, files: dict[str, Path], revision: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """Put `files` (name -> source file) into `home`'s hub cache as huggingface_hub does: content in
    blobs/ named by hash, snapshots/REV/name symlinks to them, refs/NAME holding REV."""
    repo_dir = home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        blob = repo_dir / "blobs" / digest
        shutil.copyfile(src, blob)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / digest)
    (repo_dir / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo_dir / "refs" / ref).write_text(revision)
    return snapshot


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    home = root / "home"
    a = _hf_folder(root / "a", seed=1)
    b = _hf_folder(root / "b", seed=2)
    _cache(home, "org/tiny", {p.name: p for p in a.iterdir()}, "1" * 40)
    _cache(home, "org/tiny", {p.name: p for p in b.iterdir()}, "2" * 40, refs=("v2",))
    ggufs = {"Tiny-Q8_0.gguf": _gguf(root / "q8.gguf", "Q8_0"), "Tiny-Q4_K_M.gguf": _gguf(root / "q4k.gguf", "Q4_K"),
             "README.md": a / "config.json"}
    _cache(home, "org/Tiny-GGUF", ggufs, "3" * 40)
    return home, a, b, root


@pytest.fixture
def offline_home(hub_home, monkeypatch):
    home = hub_home[0]
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LISPE_TORCH_PROGRESS", "1")
    return hub_home


def _logits(model) -> torch.Tensor:
    return model.forward_full(IDS)


def test_hub_id_loads_from_the_cache_like_the_folder(offline_home):
    _, a, b, _ = offline_home
    model = load_model("org/tiny")
    assert torch.equal(_logits(model), _logits(load_model(a)))
    assert model.special_tokens["eos_token_id"] == 2
    v2 = load_model("org/tiny", revision="v2")
    assert torch.equal(_logits(v2), _logits(load_model(b)))
    by_hash = load_model("org/tiny", revision="2" * 40)
    assert torch.equal(_logits(by_hash), _logits(v2))
    assert not torch.equal(_logits(model), _logits(v2))


def test_gguf_repository_file_and_quant(offline_home):
    root = offline_home[3]
    q8 = load_model("org/Tiny-GGUF", file="Tiny-Q8_0.gguf", model_cache=False)
    assert torch.equal(_logits(q8), _logits(load_model(root / "q8.gguf", model_cache=False)))
    q4k = load_model("org/Tiny-GGUF", quant="q4_k_m", model_cache=False)
    assert torch.equal(_logits(q4k), _logits(load_model(root / "q4k.gguf", model_cache=False)))
    with pytest.raises(ModelError, match=r"several \.gguf files \(Tiny-Q4_K_M\.gguf, Tiny-Q8_0\.gguf\)"):
        load_model("org/Tiny-GGUF")
    with pytest.raises(ModelError, match=r"no \.gguf file for quant 'Q4_K'; the repository has: Tiny-Q4_K_M"):
        load_model("org/Tiny-GGUF", quant="Q4_K")  # Q4_K is not Q4_K_M
    with pytest.raises(ModelError, match=r"file 'Other\.gguf' is not in the cache"):
        load_model("org/Tiny-GGUF", file="Other.gguf")


def test_an_id_not_in_the_cache_is_named(offline_home):
    with pytest.raises(ModelError, match=r"the Hugging Face model 'org/absent' is not in the cache .*HF_HUB_OFFLINE"):
        load_model("org/absent")
    with pytest.raises(ModelError, match=r"'org/tiny' \(revision 'v9'\) is not in the cache"):
        load_model("org/tiny", revision="v9")
    with pytest.raises(ModelError, match=r"no model at 'no/such/folder'"):
        load_model("no/such/folder")  # two slashes: a path, not an id
    with pytest.raises(ModelError, match="apply to Hugging Face Hub ids"):
        load_model(offline_home[1], revision="main")


def test_hf_hub_cache_wins_over_hf_home(offline_home, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert hub.cache_dir() == tmp_path
    with pytest.raises(ModelError, match="not in the cache"):
        load_model("org/tiny")


def test_lisp_hub_ids(offline_home, capfd):
    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval('(setq m (torch_hf_load_model "org/tiny" {"revision":"v2"}))')
    logits = interp.eval("(torch_hf_forward m (torch_tensor (integers 1 5 9 13 40)))")
    ours = _logits(load_model(offline_home[2]))[0]
    assert torch.allclose(logits.reshape(ours.shape), ours, atol=1e-5)
    interp.eval('(torch_hf_load_model "org/Tiny-GGUF" {"quant":"Q8_0"})')
    err = capfd.readouterr().err
    assert "loading 2222222222222222222222222222222222222222" in err and "loading Tiny-Q8_0.gguf" in err
    with pytest.raises(LispEError, match=r"torch_hf_load_model: the Hugging Face model 'org/absent' is not in the cache"):
        interp.eval('(torch_hf_load_model "org/absent")')
    with pytest.raises(LispEError, match=r"torch_hf_load_model: no model at 'missing/folder/x'"):
        interp.eval('(torch_hf_load_model "missing/folder/x")')
    with pytest.raises(LispEError, match=r"argument 'quant'"):
        interp.eval('(torch_hf_load_model "org/tiny" {"quant":3})')
    assert "loading" not in capfd.readouterr().err  # nothing was loaded: no "loading ..." line


def test_sandbox_reads_the_cache_only_where_allowed(offline_home, monkeypatch, tmp_path):
    home = offline_home[0]
    script = tmp_path / "script"
    script.mkdir()
    allowed = Interpreter(sandbox=True, script_dir=str(script), allow_read=[str(home)])
    allowed.eval("(use 'lispe_torch)")
    allowed.eval('(torch_hf_load_model "org/tiny")')
    refused = Interpreter(sandbox=True, script_dir=str(script))
    refused.eval("(use 'lispe_torch)")
    with pytest.raises(LispEError, match=r"torch_hf_load_model: sandbox: reading .* is not allowed"):
        refused.eval('(torch_hf_load_model "org/tiny")')
    # online, but the sandbox has no --allow-net: the cache only, and a miss says why
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(LispEError, match=r"'org/absent' is not in the cache .*network access to 'huggingface\.co' "
                                         r"is not allowed"):
        refused.eval('(torch_hf_load_model "org/absent")')
    allowed.eval('(torch_hf_load_model "org/tiny")')  # cached: no network needed


def test_is_hub_id():
    assert hub.is_hub_id("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert hub.is_hub_id("org/Model-GGUF")
    for name in ("./a/b", "/abs/path", "a/b/c", "noslash", "a/b.gguf", "../x", "a/..", "~/x"):
        assert not hub.is_hub_id(name), name
