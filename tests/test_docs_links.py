"""The repository stands alone: every relative Markdown link in README.md and docs/ leads to a file or
folder inside the repository that exists, and nothing in the repository points at `../shared` (files
next to a development checkout that a clone does not have).

Links are `[text](target)`, `![alt](target)` and `[label]: target` outside code blocks and code
spans. http(s) and mailto links are not checked (no network here); `#anchor` parts are ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`)(?:(?!\n[ \t]*\n).)*?(?<!`)\1(?!`)", re.S)   # not across paragraphs
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+[\"'(].*?[\"')])?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
IGNORED_SCHEMES = ("http://", "https://", "mailto:")
# the development checkout's neighbours (this file itself is not scanned)
SHARED = re.compile(r"\.\./shared\b|\bshared/(?:seed|design)/")


def _prose(text: str) -> str:
    """`text` with fenced code blocks and code spans blanked out (line numbers kept)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)


def links(text: str) -> list[tuple[int, str]]:
    """The (line, target) of every Markdown link outside code."""
    prose = _prose(text)
    found = [(m.start(), m.group(1)) for m in INLINE.finditer(prose)]
    found += [(m.start(), m.group(1)) for m in REFERENCE.finditer(prose)]
    out = []
    for pos, target in sorted(found):
        target = target[1:-1] if target.startswith("<") and target.endswith(">") else target
        out.append((prose.count("\n", 0, pos) + 1, target))
    return out


def broken(md: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of `md`: targets outside `root`, missing, or absolute."""
    problems = []
    for line, target in links(md.read_text(encoding="utf-8")):
        if target.lower().startswith(IGNORED_SCHEMES):
            continue
        where = f"{md.relative_to(root)}:{line}: ({target})"
        path = target.split("#", 1)[0]
        if not path:                                    # a link to an anchor of the same page
            continue
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", path) or path.startswith(("/", "\\", "~")):
            problems.append(f"{where} is not a relative link into the repository")
            continue
        resolved = (md.parent / path).resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where} points to a missing file")
    return problems


def test_the_docs_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/guide.md", "docs/generation.md", "docs/lispe_torch.md"} <= names


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_stay_inside_the_repository_and_resolve(md: Path) -> None:
    problems = broken(md)
    assert not problems, "\n".join(problems)


def test_nothing_points_at_shared() -> None:
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder, pattern in (("docs", "*.md"), ("examples", "*"), ("lispe_py", "*.py"), ("bench", "*.py"),
                            ("tests", "*.py"), ("stdlib", "*"), ("grammar", "*")):
        files += [p for p in (ROOT / folder).rglob(pattern) if p.is_file()]
    hits = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if SHARED.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "files outside the repository are referenced:\n" + "\n".join(hits)


# ------------------------------------------------------------------ the checker itself
def test_the_checker_finds_bad_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# There\n", encoding="utf-8")
    (tmp_path / "img.png").write_bytes(b"")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "Good: [a](there.md), [b](there.md#there), [c](#local), [d](../img.png), ![e](<../img.png>),\n"
        "[f](https://example.com/x), [g](mailto:someone@example.com), [h](there.md \"title\").\n"
        "Bad: [missing](nothere.md#x), [outside](../../elsewhere/guide.txt), [abs](/etc/passwd),\n"
        "[file](file:///tmp/x)\n[ref]: ../missing.md\n"
        "`[in code](nothere.md)` and\n```\n[in a block](nothere.md)\n```\n", encoding="utf-8")
    problems = broken(page, tmp_path)
    assert [p.split(": (")[1].split(")")[0] for p in problems] == [
        "nothere.md#x", "../../elsewhere/guide.txt", "/etc/passwd", "file:///tmp/x", "../missing.md"]
    assert problems[0].startswith("docs/page.md:3:") and problems[0].endswith("points to a missing file")
    assert problems[1].endswith("points outside the repository")
    assert problems[2].endswith("is not a relative link into the repository")


def test_the_shared_pattern_matches_what_it_must() -> None:
    assert SHARED.search("see [guide](../shared/seed/x.txt)")
    assert SHARED.search("every key of `shared/design/generation.md`")
    assert not SHARED.search("a shared library, the shared/ folder of a machine")
