"""Fixtures of the sandbox tests; the helpers live in sandbox_support.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_support import MODES, SECRET, Project, run_api, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project(tmp_path, tmp_path / "proj", tmp_path / "outside", tmp_path / "home", tmp_path / "elsewhere")
    for folder in (p.proj, p.outside, p.home, p.elsewhere):
        folder.mkdir()
    (p.outside / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    (p.outside / "secret.json").write_text(f'{{"key": "{SECRET}"}}', encoding="utf-8")
    (p.outside / "evil.lisp").write_text(f'(println "{SECRET}")\n', encoding="utf-8")
    (p.home / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    (p.home / "secret.json").write_text(f'{{"key": "{SECRET}"}}', encoding="utf-8")
    (p.proj / "data.txt").write_text("my own data\n", encoding="utf-8")
    return p


@pytest.fixture(params=MODES)
def run(request, project: Project, monkeypatch: pytest.MonkeyPatch):
    """run(script, allow_read=[...], allow_write=[...]) -> Result, in each of the four MODES."""
    mode = request.param

    def go(script: Path, allow_read: list[Path] = (), allow_write: list[Path] = ()) -> Result:
        cwd = project.proj if mode.endswith("script-folder") else project.elsewhere
        if mode.startswith("cli"):
            flags = ["--sandbox"] + [f"--allow-read={p}" for p in allow_read] \
                + [f"--allow-write={p}" for p in allow_write]
            return run_cli(project, script, flags, cwd)
        return run_api(project, script, monkeypatch, cwd, allow_read=[str(p) for p in allow_read],
                       allow_write=[str(p) for p in allow_write])

    go.mode = mode
    return go
