"""The model cache (lispe_py/models/model_cache.py): a GGUF loaded once is memory-mapped at the next load,
with the same weights, layout, tokenizer and outputs; entries per file and dtype; damaged, unwritable
and switched-off caches; the Lisp "model_cache" key; the `lispe` command across two processes; SmolLM2."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from test_models_loading import TEMPLATE, TEXTS, _llama, _tiny_tokenizer, _write_gguf  # noqa: E402

from lispe_py import Interpreter  # noqa: E402
from lispe_py.errors import LispEError  # noqa: E402
from lispe_py.models import ModelError, gguf_loader, load_model, model_cache  # noqa: E402
from lispe_py.models.tokenizer import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IDS = torch.tensor([[1, 5, 9, 33, 7, 2, 60, 11]])
CHAT = [{"role": "user", "content": " hi 🤗 "}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cached-gguf")
    hf_tok = _tiny_tokenizer()
    _write_gguf(folder / "tiny.gguf", _llama(len(hf_tok)), hf_tok, "Q8_0")
    return folder / "tiny.gguf"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty model cache folder for this test (removed after it), warnings not yet given."""
    folder = tmp_path / "model-cache"
    monkeypatch.setenv("LISPE_MODEL_CACHE", str(folder))
    monkeypatch.setattr(model_cache, "_warned", set())
    yield folder
    shutil.rmtree(folder, ignore_errors=True)  # pytest keeps recent tmp_paths: no SmolLM2-sized leftovers


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _same_model(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and sa[name].stride() == sb[name].stride(), name
        assert torch.equal(sa[name], sb[name]), name
    assert a.config == b.config and a.special_tokens == b.special_tokens and a.chat_template == b.chat_template
    for text in TEXTS:
        assert a.tokenizer.encode(text) == b.tokenizer.encode(text), text
    assert a.tokenizer.render_chat(CHAT) == b.tokenizer.render_chat(CHAT)
    assert a.tokenizer.all_special_ids == b.tokenizer.all_special_ids
    with torch.no_grad():
        assert torch.equal(a.forward_full(IDS), b.forward_full(IDS))


def test_the_second_load_maps_the_first_ones_entry(gguf_file, cache, monkeypatch):
    first = load_model(gguf_file)
    [entry] = _entries(cache)
    assert first.model_cache_entry == str(entry)
    assert {p.name for p in entry.iterdir()} == {"index.json", "weights.bin", "tokenizer", model_cache.MARKER}
    wide = first.layers[0].mlp.w_gate_up.weight
    assert wide.t().is_contiguous()  # written as the float32 decode step reads it: column-major

    def no_gguf(*args, **kwargs):
        raise AssertionError("a cached load read the GGUF file")

    real = gguf_loader.GGUFFile
    monkeypatch.setattr(gguf_loader, "GGUFFile", no_gguf)
    second = load_model(gguf_file)
    assert second.model_cache_entry == str(entry)
    _same_model(first, second)
    monkeypatch.setattr(gguf_loader, "GGUFFile", real)
    uncached = load_model(gguf_file, model_cache=False)
    assert uncached.model_cache_entry is None
    with torch.no_grad():
        # The same weights; only their memory order differs until the first decode lays them out.
        assert (uncached.forward_full(IDS) - second.forward_full(IDS)).abs().max().item() <= 1e-5
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name).eval()
    with torch.no_grad():
        assert (second.forward_full(IDS) - hf(IDS).logits).abs().max().item() <= 1e-4


def test_editing_a_mapped_weight_leaves_the_entry_alone(gguf_file, cache):
    reference = load_model(gguf_file)
    mapped = load_model(gguf_file)
    with torch.no_grad():
        mapped.embed.weight.mul_(2.0)
        mapped.layers[1].mlp.w_down.weight.zero_()
    assert not torch.equal(mapped.embed.weight, reference.embed.weight)
    _same_model(reference, load_model(gguf_file))


def test_one_entry_per_dtype_and_file_version(gguf_file, cache, monkeypatch, tmp_path):
    load_model(gguf_file)
    bf16 = load_model(gguf_file, dtype="bfloat16")
    assert len(_entries(cache)) == 2
    assert bf16.dtype == torch.bfloat16 and bf16.layers[0].mlp.w_gate_up.weight.is_contiguous()
    _same_model(bf16, load_model(gguf_file, dtype="bfloat16"))
    assert len(_entries(cache)) == 2
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(gguf_file.read_bytes())
    load_model(copy)
    assert len(_entries(cache)) == 3
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed: a new entry
    monkeypatch.setattr(model_cache, "KEEP", 3)
    newest = load_model(copy)
    entries = _entries(cache)
    assert len(entries) == 3 and Path(newest.model_cache_entry) in entries  # the least recently used went


def _damage(entry: Path, damage: str) -> None:
    """Change an entry the way a bad disk, a bad copy or a hostile hand would."""
    index = json.loads((entry / "index.json").read_text())
    weights = entry / "weights.bin"
    norm = next(t for t in index["tensors"] if t["name"] == "norm.weight")  # float32 values, not tied
    embed = next(t for t in index["tensors"] if t["name"] == "embed.weight")
    if damage == "truncated weights":
        with open(weights, "r+b") as f:
            f.truncate(100)
    elif damage in ("NaN", "inf", "zeroed region"):
        with open(weights, "r+b") as f:
            if damage == "NaN":  # a region of NaN, the file keeps its size
                f.seek(embed["offset"])
                f.write(np.full(2000, np.nan, dtype=np.float32).tobytes())
            elif damage == "inf":  # 43 scattered +inf values
                for k in range(43):
                    f.seek(embed["offset"] + 4 * (37 * k))
                    f.write(np.float32(np.inf).tobytes())
            else:
                f.seek(norm["offset"])
                f.write(bytes(4 * math.prod(norm["shape"])))
        assert weights.stat().st_size == index["bytes"]
    elif damage == "permuted tokenizer":
        path = entry / "tokenizer" / "tokenizer.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
        a, b = list(vocab)[40], list(vocab)[41]
        vocab[a], vocab[b] = vocab[b], vocab[a]
        path.write_text(json.dumps(data), encoding="utf-8")
    elif damage == "garbled index":
        (entry / "index.json").write_text("{not json")
    elif damage == "index of another model":
        (entry / "index.json").write_text(json.dumps({**index, "key": "0" * 64}))
    elif damage == "tensor outside the file":
        index["tensors"][-1]["offset"] = index["bytes"]
        (entry / "index.json").write_text(json.dumps(index))
    elif damage == "marker of an older format":
        marker = json.loads((entry / model_cache.MARKER).read_text())
        (entry / model_cache.MARKER).write_text(json.dumps({**marker, "format": 1}))
    elif damage == "weights replaced by a FIFO":
        weights.unlink()
        os.mkfifo(weights)
    else:
        assert damage == "no tokenizer"
        for f in (entry / "tokenizer").iterdir():
            f.unlink()


DAMAGES = ["truncated weights", "NaN", "inf", "zeroed region", "permuted tokenizer", "garbled index",
           "index of another model", "tensor outside the file", "marker of an older format",
           "weights replaced by a FIFO", "no tokenizer"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_entry_is_reported_and_rebuilt(gguf_file, cache, damage):
    reference = load_model(gguf_file)
    [entry] = _entries(cache)
    _damage(entry, damage)
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="damaged") as record:
        rebuilt = load_model(gguf_file)
    assert time.perf_counter() - start < 30
    assert any("rebuilding it from tiny.gguf" in str(w.message) for w in record)
    _same_model(reference, rebuilt)
    assert rebuilt.model_cache_entry == str(entry) and (entry / "index.json").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _same_model(reference, load_model(gguf_file))  # and the rebuilt entry is read back, silently


@pytest.mark.parametrize("damage", ["NaN", "permuted tokenizer"])
def test_read_mode_skips_a_damaged_entry_and_leaves_it(gguf_file, cache, damage):
    reference = load_model(gguf_file)
    [entry] = _entries(cache)
    _damage(entry, damage)
    before = _snapshot(cache)
    with pytest.warns(RuntimeWarning, match="damaged .*loading without it"):
        model = load_model(gguf_file, model_cache="read")
    _same_model(reference, model)
    assert model.model_cache_entry is None and _snapshot(cache) == before


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def test_read_mode_writes_nothing(gguf_file, cache, tmp_path, monkeypatch):
    model = load_model(gguf_file, model_cache="read")
    assert model.model_cache_entry is None and not cache.exists()  # not even the cache folder
    reference = load_model(gguf_file)  # writes the entry
    [entry] = _entries(cache)
    dead = cache / ".lispe-tmp-999999999-x"  # a dead writer's leftovers: read mode leaves them too
    dead.mkdir()
    monkeypatch.setattr(model_cache, "KEEP", 0)
    before = _snapshot(cache)
    time.sleep(0.01)
    mapped = load_model(gguf_file, model_cache="read")
    assert mapped.model_cache_entry == str(entry)
    _same_model(reference, mapped)
    copy = tmp_path / "other.gguf"
    shutil.copy(gguf_file, copy)
    assert load_model(copy, model_cache="read").model_cache_entry is None  # no entry: none written
    assert _snapshot(cache) == before


@pytest.mark.parametrize("mode", ["yes", 1, None, "write"])
def test_model_cache_mode_is_checked(gguf_file, cache, mode):
    with pytest.raises(ModelError, match=r'model_cache must be true, false or "read", got'):
        load_model(gguf_file, model_cache=mode)


def _foreign(cache: Path) -> dict[str, tuple[int, int]]:
    """Six folders and two files of the user's in the cache folder, some with names like the cache's."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("photos", "notes", ".tmp-mine", ".lispe-tmp-1-abc", "0123456789abcdef01234567", "index.json"):
        (cache / name).mkdir()
        (cache / name / "keep.txt").write_text(f"user data in {name}")
    (cache / ".lispe-tmp-2-def").mkdir()  # a name like a half-written entry, holding someone else's file
    (cache / ".lispe-tmp-2-def" / model_cache.WRITER).write_text("not the cache's")
    (cache / "plain-file.bin").write_bytes(b"\0" * 100)
    old = time.time() - 10 * model_cache.STALE_TMP_S
    for p in cache.iterdir():
        os.utime(p, (old, old))
    return _snapshot(cache)


def test_foreign_files_are_never_removed(gguf_file, cache, tmp_path, monkeypatch):
    before = _foreign(cache)
    monkeypatch.setattr(model_cache, "KEEP", 1)
    copies = []
    for k in range(3):  # three models: pruning down to one entry runs twice
        copy = tmp_path / f"copy{k}.gguf"
        shutil.copy(gguf_file, copy)
        copies.append(load_model(copy))
    model_cache.prune(cache, 0)
    assert model_cache.clear() == 0
    load_model(tmp_path / "copy0.gguf")
    assert model_cache.clear() == 1
    after = _snapshot(cache)
    assert after == before, set(after) ^ set(before)


def test_a_foreign_folder_in_an_entrys_place_is_left_alone(gguf_file, cache):
    reference = load_model(gguf_file)
    [entry] = _entries(cache)
    shutil.rmtree(entry)
    entry.mkdir()
    (entry / "mine.txt").write_text("user data")
    with pytest.warns(RuntimeWarning, match="was not written by it; it is left alone"):
        model = load_model(gguf_file)
    _same_model(reference, model)
    assert model.model_cache_entry is None and [p.name for p in entry.iterdir()] == ["mine.txt"]


_KILLED_WRITER = """
import sys, time
from lispe_py.models import load_model, model_cache
write = model_cache._write_tensors
def paused(path, state):
    out = write(path, state)
    print("written", flush=True)
    time.sleep(300)  # killed here, with weights.bin written and the entry not yet complete
    return out
model_cache._write_tensors = paused
load_model(sys.argv[1])
"""


def test_a_writer_killed_mid_write_leaves_nothing_after_the_next_load(gguf_file, cache, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(gguf_file)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        import select

        ready, _, _ = select.select([child.stdout], [], [], 120)  # never wait forever on a stuck child
        assert ready and child.stdout.readline().strip() == "written"
        [tmp] = [p for p in cache.iterdir() if p.name.startswith(model_cache.TMP_PREFIX)]
        assert (tmp / "weights.bin").stat().st_size > 0 and not (tmp / model_cache.MARKER).exists()
        model = load_model(gguf_file, model_cache="read")  # the writer is alive: nothing is removed
        assert model.model_cache_entry is None and tmp.exists()
        model_cache.prune(cache)
        assert tmp.exists()  # a live writer's folder is kept
    finally:
        child.kill()  # SIGKILL
        child.wait()
        child.stdout.close()
    assert tmp.exists()
    model = load_model(gguf_file)
    assert [p.name for p in cache.iterdir()] == [Path(model.model_cache_entry).name]


def test_a_half_written_entry_of_another_machine_goes_when_old(cache, monkeypatch):
    cache.mkdir()
    folder = cache / ".lispe-tmp-12-abc"
    folder.mkdir()
    (folder / model_cache.WRITER).write_text(json.dumps({"what": model_cache._SIGNATURE, "pid": 12,
                                                          "host": "elsewhere", "started": 0}))
    assert model_cache.remove_stale(cache) == 0 and folder.exists()  # its writer may be alive there
    old = time.time() - 2 * model_cache.STALE_TMP_S
    os.utime(folder, (old, old))
    assert model_cache.remove_stale(cache) == 1 and not folder.exists()


def test_an_unwritable_cache_is_reported_once_and_skipped(gguf_file, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LISPE_MODEL_CACHE", str(blocker / "models"))
    monkeypatch.setattr(model_cache, "_warned", set())
    with pytest.warns(RuntimeWarning, match="cannot write the model cache"):
        first = load_model(gguf_file)
    assert first.model_cache_entry is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = load_model(gguf_file)  # no second warning in this process
    _same_model(first, second)


def test_a_full_disk_is_reported(gguf_file, cache, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(model_cache.shutil, "disk_usage", lambda path: Usage())
    with pytest.warns(RuntimeWarning, match=r"has 0.0 MB free, twice .* MB are needed for tiny.gguf"):
        model = load_model(gguf_file)
    assert model.model_cache_entry is None and not _entries(cache)


@pytest.mark.parametrize("off", ["0", "off", "False", "no"])
def test_the_environment_turns_the_cache_off(gguf_file, cache, monkeypatch, off):
    monkeypatch.setenv("LISPE_MODEL_CACHE", off)
    assert model_cache.cache_root() is None
    assert load_model(gguf_file).model_cache_entry is None
    assert not _entries(cache) and not (Path.cwd() / off).exists()


def test_default_folders_follow_xdg(monkeypatch, tmp_path):
    from lispe_py.models import native

    monkeypatch.delenv("LISPE_MODEL_CACHE", raising=False)
    monkeypatch.delenv("LISPE_KERNEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_cache.cache_root() == tmp_path / "lispe_py" / "models"
    assert native.cache_dir() == tmp_path / "lispe_py" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert model_cache.cache_root() == tmp_path / "home" / ".cache" / "lispe_py" / "models"


def test_clear_and_stale_half_written_entries(gguf_file, cache):
    load_model(gguf_file)
    stale, busy = cache / f".lispe-tmp-{_dead_pid()}-a", cache / f".lispe-tmp-{os.getpid()}-b"
    for folder in (stale, busy):
        folder.mkdir()
        (folder / model_cache.WRITER).write_text(json.dumps({"what": model_cache._SIGNATURE,
                                                             "pid": int(folder.name.split("-")[2]),
                                                             "host": socket.gethostname(), "started": 0}))
        (folder / "weights.bin").write_bytes(b"half")
    model_cache.prune(cache)
    assert not stale.exists() and busy.exists() and len(_entries(cache)) == 2
    assert model_cache.clear() == 1 and _entries(cache) == [busy]


def _dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_tokenizer_save_is_a_folder_transformers_reads(gguf_file, tmp_path):
    ours = Tokenizer.from_gguf(gguf_file)
    ours.save(tmp_path / "tok")
    back = Tokenizer.from_folder(tmp_path / "tok")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in TEXTS:
        ids = ours.encode(text)
        assert back.encode(text) == ids == theirs(text)["input_ids"], text
        assert back.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert back.chat_template == theirs.chat_template == TEMPLATE
    assert back.render_chat(CHAT) == theirs.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert (back.bos_token, back.eos_token, back.unk_token) == (theirs.bos_token, theirs.eos_token, theirs.unk_token)


# ----- Lisp and the `lispe` command -----

def test_lisp_model_cache_key_and_info(gguf_file, cache):
    lisp = Interpreter()
    lisp.eval("(use 'lispe_torch)")
    path = json.dumps(str(gguf_file))
    info = lisp.eval(f"(torch_model_info (torch_hf_load_model {path}))")
    [entry] = _entries(cache)
    assert info["model_cache"] == str(entry)
    again = lisp.eval(f"(torch_model_info (torch_hf_load_model {path} {{\"model_cache\": true}}))")
    assert again["model_cache"] == str(entry)
    assert lisp.eval(f"(torch_model_info (torch_hf_load_model {path} {{\"model_cache\": nil}}))")["model_cache"] is None
    with pytest.raises(LispEError, match='config "model_cache" must be true or nil, got'):
        lisp.eval(f'(torch_hf_load_model {path} {{"model_cache": "yes"}})')
    with pytest.raises(LispEError, match='"model_cache"'):
        lisp.eval(f'(torch_hf_load_model {path} {{"model_cahce": true}})')  # the valid keys are listed


def test_two_lispe_processes_share_the_entry(gguf_file, cache, tmp_path):
    script = tmp_path / "gen.lisp"
    script.write_text(
        "(use 'lispe_torch)\n"
        f"(setq model (torch_hf_load_model {json.dumps(str(gguf_file))}))\n"
        "(setq generator (torch_generator_create model \"cpu\"))\n"
        "(torch_set_generation_params generator 6 nil nil nil)\n"
        "(println (tensor_to_list (torch_generate generator (torch_tensor (integers 1 5 9)) \"greedy\")))\n"
        "(println (key (torch_model_info model) \"model_cache\"))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")

    def run():
        done = subprocess.run([sys.executable, "-m", "lispe_py", str(script)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    first, second = run(), run()  # the first writes the entry, the second maps it
    [entry] = _entries(cache)
    assert first == second and first[1] == str(entry)
    assert first[0].startswith("(1 5 9 ")


# ----- SmolLM2 -----

@pytest.mark.smollm2
def test_smollm2_from_the_cache(cache, smollm2_gguf):
    from lispe_py.generation import generate

    start = time.perf_counter()
    uncached = load_model("SmolLM2-135M-Instruct", model_cache=False)
    uncached_s = time.perf_counter() - start
    load_model("SmolLM2-135M-Instruct")  # writes the entry
    start = time.perf_counter()
    mapped = load_model("SmolLM2-135M-Instruct")
    mapped_s = time.perf_counter() - start
    assert mapped.model_cache_entry is not None
    assert mapped.lm_head.weight is mapped.embed.weight  # tied again
    assert mapped.layers[0].attn.wqkv.weight.t().is_contiguous()
    ids = mapped.tokenizer.apply_chat_template(CHAT, add_generation_prompt=True)
    assert ids == uncached.tokenizer.apply_chat_template(CHAT, add_generation_prompt=True)
    config = {"strategy": "greedy", "max_length": 12, "min_new_tokens": 12}
    assert generate(mapped, ids, config).tolist() == generate(uncached, ids, config).tolist()
    # Same process, same file: mapping the entry is several times faster than dequantizing the GGUF.
    assert mapped_s < 0.5 * uncached_s, f"cached load {mapped_s:.2f} s, uncached {uncached_s:.2f} s"


@pytest.mark.smollm2
def test_the_startup_bench_script_runs_the_quickstart_lines(capsys, smollm2_gguf):
    """bench/startup.py cuts examples/quickstart.lisp at its first generation; if the quickstart changes
    shape, the bench must notice rather than time something else."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_startup", ROOT / "bench" / "startup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    script = bench.first_token_script()
    assert "(torch_set_generation_params generator 1 nil nil nil)" in script and "(tokenizer_chat" not in script
    Interpreter().eval(script)
    assert capsys.readouterr().out.splitlines()[-1] == f"{bench.MARKER} 28"  # "Hello world" -> greedy id 28


# ----- when the full weight check runs -----

@pytest.fixture
def pools(monkeypatch):
    """Counts the thread pools model_cache starts: one per full check of weights.bin."""
    started = []
    real = model_cache.ThreadPoolExecutor

    class Counting(real):
        def __init__(self, *args, **kwargs):
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(model_cache, "ThreadPoolExecutor", Counting)
    return started


def test_the_full_check_runs_after_any_change_to_the_weights(gguf_file, cache, pools, monkeypatch):
    reference = load_model(gguf_file)  # writes the entry and the stamp of what it wrote
    [entry] = _entries(cache)
    _same_model(reference, load_model(gguf_file))
    assert pools == []  # unchanged since written: no full check
    weights = entry / "weights.bin"
    before = weights.stat()
    _damage(entry, "NaN")
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same size and mtime as before
    with pytest.warns(RuntimeWarning, match="weights.bin bytes .* do not match their checksum"):
        _same_model(reference, load_model(gguf_file))  # the status-change time gives it away
    assert pools == [1]
    _same_model(reference, load_model(gguf_file))
    assert pools == [1]
    monkeypatch.setenv("LISPE_MODEL_CACHE_VERIFY", "full")
    _same_model(reference, load_model(gguf_file))
    _same_model(reference, load_model(gguf_file))
    assert pools == [1, 1, 1]


def test_a_copied_cache_is_checked_once(gguf_file, cache, pools, tmp_path, monkeypatch):
    reference = load_model(gguf_file)
    copy = tmp_path / "copied-cache"
    shutil.copytree(cache, copy)
    monkeypatch.setenv("LISPE_MODEL_CACHE", str(copy))
    for expected in ([1], [1, 1], [1, 1]):  # read mode cannot record the check; the next load does
        model = load_model(gguf_file, model_cache="read" if expected == [1] else True)
        _same_model(reference, model)
        assert pools == expected and model.model_cache_entry is not None
