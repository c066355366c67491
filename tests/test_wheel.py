"""The built wheel works on its own: grammar and stdlib are packaged and found from an install.

Builds the wheel with `python -m build --wheel`, installs it (no deps) in a fresh virtualenv, and runs a
script from outside the source tree. The new virtualenv does not see the base interpreter's packages
(a user's base Python has none of ours); its dependencies (lark, prompt_toolkit) come from the
environment running this suite, named explicitly by a `.pth` file, so the test needs no network.
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kw)


def _expose_current_site_packages(py: Path) -> None:
    """Append this environment's site-packages to the new venv's sys.path (after its own, so the
    installed wheel wins over an editable checkout). Lines of a .pth file only add folders: the .pth
    files inside them (an editable install's) are not run."""
    import sysconfig

    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    target = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    assert target.returncode == 0, target.stderr
    Path(target.stdout.strip(), "lispe_test_parent_env.pth").write_text("\n".join(sorted(ours)) + "\n")


def test_wheel_installs_and_finds_grammar_and_stdlib(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)])
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = list(dist.glob("lispe_py-*.whl"))
    assert len(wheels) == 1
    import zipfile

    assert "lispe_py/models/kernels.cpp" in zipfile.ZipFile(wheels[0]).namelist()  # native.py builds it

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    _expose_current_site_packages(py)
    install = _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheels[0])])
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    script = work / "prog.lisp"
    script.write_text("(use 'utils)\n"
                      '(setq config (("max_length" 50) ("temperature" 0.8)))\n'
                      '(println (assoc_get "temperature" config) (+ 1 2))\n')
    where = _run([str(py), "-c", "import lispe_py, lispe_py.resources as r; "
                  "print(lispe_py.__file__); print(r.grammar_path()); print(r.data_dir('stdlib'))"],
                 cwd=work)
    assert where.returncode == 0, where.stderr
    module_file, grammar, stdlib = where.stdout.split()
    assert module_file.startswith(str(env_dir)), module_file
    assert grammar.startswith(str(env_dir)) and grammar.endswith("_data/grammar/lispe.lark")
    assert stdlib.startswith(str(env_dir))

    r = _run([str(env_dir / "bin" / "lispe"), str(script)], cwd=work)
    assert (r.returncode, r.stdout, r.stderr) == (0, "0.8 3\n", "")
