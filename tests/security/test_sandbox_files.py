"""The sandbox's file rules (docs/security.md), each escape of the attack run tried as the `lispe` command
and through the API, from the script folder and from another working directory (the `run` fixture):
refused with a LispE error, the secret never printed, nothing written or run; the allowed variants work."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sandbox_support import SECRET, Project, refused, run_api, run_cli

from lispe_py import Interpreter, LispEError


def lisp_str(path: Path | str) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- reading ---------------------------------------------------------------------------------------

def test_own_files_by_relative_path(project: Project, run) -> None:
    """The script folder is the root of relative paths, whatever the working directory."""
    (project.proj / "sub").mkdir()
    (project.proj / "sub" / "more.json").write_text('{"n": 42}', encoding="utf-8")
    s = project.script('(print (fread "data.txt"))\n(println (@ (json_read "sub/more.json") "n"))\n'
                       '(println (fread "./sub/../data.txt"))\n')
    r = run(s)
    assert r.ok, r
    assert r.out == "my own data\n42\nmy own data\n\n"


@pytest.mark.parametrize("builtin", ["fread", "json_read"])
@pytest.mark.parametrize("path", ["~/secret.{ext}", "~root/../etc/passwd", "~/../home/secret.{ext}"])
def test_tilde_paths_are_refused(project: Project, run, builtin: str, path: str) -> None:
    ext = "txt" if builtin == "fread" else "json"
    s = project.script(f"(println ({builtin} {lisp_str(path.format(ext=ext))}))\n")
    r = run(s)
    refused(r, "sandbox", builtin, "'~'")
    assert "root:" not in r.everything


@pytest.mark.parametrize("builtin", ["fread", "json_read"])
def test_outside_paths_are_refused(project: Project, run, builtin: str) -> None:
    name = "secret.txt" if builtin == "fread" else "secret.json"
    for path in (project.outside / name, f"../outside/{name}", "/etc/passwd"):
        s = project.script(f"(println ({builtin} {lisp_str(path)}))\n")
        r = run(s)
        refused(r, "sandbox", builtin, "reading")
        assert "root:" not in r.everything


def test_symlink_inside_the_script_folder_is_refused(project: Project, run) -> None:
    (project.proj / "link.txt").symlink_to(project.outside / "secret.txt")
    (project.proj / "linkdir").symlink_to(project.outside, target_is_directory=True)
    for path in ("link.txt", "linkdir/secret.txt", "linkdir/secret.json"):
        builtin = "json_read" if path.endswith(".json") else "fread"
        r = run(project.script(f"(println ({builtin} {lisp_str(path)}))\n"))
        refused(r, "sandbox", "reading")


def test_allow_read_opens_that_folder(project: Project, run) -> None:
    (project.proj / "link.txt").symlink_to(project.outside / "secret.txt")
    s = project.script(f'(print (fread {lisp_str(project.outside / "secret.txt")}))\n'
                       '(print (fread "../outside/secret.txt"))\n(print (fread "link.txt"))\n'
                       '(println (@ (json_read "../outside/secret.json") "key"))\n')
    r = run(s, allow_read=[project.outside])
    assert r.ok, r
    assert r.out == f"{SECRET}\n" * 3 + f"{SECRET}\n"
    # a file of another folder stays closed
    r = run(project.script(f"(fread {lisp_str(project.home / 'secret.txt')})"), allow_read=[project.outside])
    refused(r)


def test_allow_read_of_a_single_file(project: Project, run) -> None:
    (project.outside / "other.txt").write_text(SECRET, encoding="utf-8")
    allowed = project.outside / "secret.txt"
    r = run(project.script(f"(print (fread {lisp_str(allowed)}))"), allow_read=[allowed])
    assert r.ok and r.out == SECRET + "\n", r
    r = run(project.script(f"(print (fread {lisp_str(project.outside / 'other.txt')}))"), allow_read=[allowed])
    refused(r)


# --- writing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("builtin", ["fwrite", "fappend"])
def test_writing_is_refused_by_default(project: Project, run, builtin: str) -> None:
    for path in ("new.txt", "data.txt", project.outside / "new.txt", "~/new.txt"):
        r = run(project.script(f'({builtin} {lisp_str(path)} "written")\n'))
        refused(r, "sandbox", builtin)
    assert not (project.proj / "new.txt").exists() and not (project.outside / "new.txt").exists()
    assert not (project.home / "new.txt").exists()
    assert (project.proj / "data.txt").read_text(encoding="utf-8") == "my own data\n"


def test_allow_write_writes_there_only(project: Project, run) -> None:
    out = project.root / "out"
    out.mkdir()
    (project.proj / "escape").symlink_to(project.outside, target_is_directory=True)
    (out / "escape.txt").symlink_to(project.outside / "written.txt")
    s = project.script(f'(fwrite {lisp_str(out / "a.txt")} "one")\n(fappend "../out/a.txt" " two")\n'
                       '(println (fread "../out/a.txt"))\n')
    r = run(s, allow_read=[out], allow_write=[out])
    assert r.ok, r
    assert r.out == "one two\n" and (out / "a.txt").read_text(encoding="utf-8") == "one two"
    # elsewhere, and through symlinks out of the allowed folder: refused, nothing written
    for path in ("new.txt", "escape/written.txt", out / "escape.txt"):
        r = run(project.script(f'(fwrite {lisp_str(path)} "x")\n'), allow_write=[out])
        refused(r, "sandbox", "writing")
    assert not (project.outside / "written.txt").exists() and not (project.proj / "new.txt").exists()


def test_write_permission_does_not_give_read_permission(project: Project, run) -> None:
    r = run(project.script(f'(fread {lisp_str(project.outside / "secret.txt")})'), allow_write=[project.outside])
    refused(r, "sandbox", "reading")


# --- running code: load and use ---------------------------------------------------------------------

def test_load_and_use_of_script_folder_files(project: Project, run) -> None:
    (project.proj / "lib").mkdir()
    (project.proj / "lib" / "helpers.lisp").write_text("(defun twice (x) (* 2 x))\n", encoding="utf-8")
    (project.proj / "other.lisp").write_text("(defun thrice (x) (* 3 x))\n", encoding="utf-8")
    s = project.script('(use "lib/helpers")\n(use "lib/helpers.lisp")\n(load "other.lisp")\n'
                       "(println (twice 21) (thrice 2))\n")
    r = run(s)
    assert r.ok and r.out == "42 6\n", r


@pytest.mark.parametrize("form", ['(use {abs})', '(use {abs_lisp})', '(use "../outside/evil")',
                                  '(use "../../{name}/outside/evil")', '(load {abs_lisp})',
                                  '(load "../outside/evil.lisp")', '(use "~/evil")', '(load "~/evil.lisp")',
                                  '(use "linked")', '(use "linked.lisp")', '(load "linked.lisp")'])
def test_code_from_outside_never_runs(project: Project, run, form: str) -> None:
    (project.home / "evil.lisp").write_text(f'(println "{SECRET}")\n', encoding="utf-8")
    (project.proj / "linked.lisp").symlink_to(project.outside / "evil.lisp")
    evil = project.outside / "evil"
    code = form.format(abs=lisp_str(evil), abs_lisp=lisp_str(str(evil) + ".lisp"), name=project.root.name)
    r = run(project.script(code + '\n(println "after")\n'))
    refused(r, "sandbox")
    assert "after" not in r.out


@pytest.mark.parametrize("form", ['(use {secret})', '(use "../outside/secret.txt")', '(use "data.txt")',
                                  '(use "/etc/passwd")'])
def test_use_of_a_non_lisp_file_never_shows_its_content(project: Project, run, form: str) -> None:
    r = run(project.script(form.format(secret=lisp_str(project.outside / "secret.txt")) + "\n"))
    assert not r.ok
    assert SECRET not in r.everything and "my own data" not in r.everything and "root:" not in r.everything
    assert r.err.startswith("Error: use: "), r.err


def test_use_of_a_library_name_still_works(project: Project, run) -> None:
    r = run(project.script("(use 'utils)\n(println 'ok)\n"))
    assert r.ok and r.out == "ok\n", r


def test_use_outside_the_sandbox_does_not_join_paths_into_the_library_folder(tmp_path, capsys) -> None:
    """Outside the sandbox `use` runs the .lisp file it names (relative: the script folder), never a
    name pasted into stdlib/ (the old '../../x' escape)."""
    (tmp_path / "mod.lisp").write_text("(setq from_mod 7)\n", encoding="utf-8")
    interp = Interpreter(script_dir=str(tmp_path))
    assert interp.eval('(use "mod") from_mod') == 7
    (tmp_path / "noisy.lisp").write_text('(println "loading noisy")\n', encoding="utf-8")
    interp.eval('(use "noisy") (use "./noisy.lisp") (use "noisy")')
    assert capsys.readouterr().out == "loading noisy\n"  # one file, run once
    with pytest.raises(LispEError, match="neither a library name nor a .lisp file"):
        interp.eval('(use "notes.txt")')


# --- the -e and stdin programs, the API without a script -----------------------------------------

def test_eval_program_root_is_the_working_directory(project: Project) -> None:
    import subprocess
    import sys

    from sandbox_support import cli_env

    for code in ('(fread "../outside/secret.txt")', f'(fread {lisp_str(project.home / "secret.txt")})',
                 '(fread "~/secret.txt")'):
        r = subprocess.run([sys.executable, "-m", "lispe_py", "--sandbox", "-e", code], capture_output=True,
                           text=True, env=cli_env(project), cwd=project.proj, timeout=60)
        assert r.returncode == 1 and SECRET not in r.stdout + r.stderr and "sandbox" in r.stderr, r
    r = subprocess.run([sys.executable, "-m", "lispe_py", "--sandbox", "-e", '(fread "data.txt")'],
                       capture_output=True, text=True, env=cli_env(project), cwd=project.proj, timeout=60)
    assert (r.returncode, r.stdout) == (0, "my own data\n\n"), r


def test_api_without_script_folder_reads_only_allowed_paths(project: Project, monkeypatch) -> None:
    monkeypatch.chdir(project.proj)
    with pytest.raises(LispEError, match="sandbox") as info:
        Interpreter(sandbox=True).eval('(fread "data.txt")')
    assert "my own data" not in info.value.format()
    interp = Interpreter(allow_read=[str(project.outside)])  # an allow list turns the sandbox on
    assert interp.sandbox
    assert interp.eval(f'(fread {lisp_str(project.outside / "secret.txt")})') == SECRET + "\n"
    with pytest.raises(LispEError, match="sandbox"):
        interp.eval('(fwrite "x.txt" "x")')


def test_check_file_access_is_the_one_check(project: Project) -> None:
    interp = Interpreter(sandbox=True, script_dir=str(project.proj), allow_write=[str(project.root / "w")])
    assert interp.check_file_access("data.txt") == str((project.proj / "data.txt").resolve())
    (project.proj / "link").symlink_to(project.outside / "secret.txt")
    for bad in ("link", "../outside/secret.txt", "~/x", "a\0b"):
        with pytest.raises(LispEError, match="sandbox"):
            interp.check_file_access(bad)
    assert interp.check_file_access(str(project.root / "w" / "new.txt"), write=True) \
        == str(project.root.resolve() / "w" / "new.txt")
    assert interp.may_write(project.root / "w") and not interp.may_write(project.proj / "x")


@pytest.mark.parametrize("kind", ["cli", "api"])
def test_no_sandbox_keeps_expanding_tilde(project: Project, monkeypatch, kind: str) -> None:
    s = project.script('(print (fread "~/secret.txt"))')
    r = run_cli(project, s, []) if kind == "cli" else run_api(project, s, monkeypatch, sandbox=False)
    assert r.ok and r.out == SECRET + "\n", r


def test_interpreter_rejects_bad_permission_arguments() -> None:
    with pytest.raises(TypeError, match="allow_read"):
        Interpreter(allow_read=[3])
    for bad in (0, -1, "5", True):
        with pytest.raises(ValueError, match="max_seconds"):
            Interpreter(max_seconds=bad)
    assert Interpreter(allow_read="some/folder").allow_read == [os.path.realpath("some/folder")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
@pytest.mark.parametrize("form", ['(fread "pipe")', '(json_read "pipe")', '(load "pipe.lisp")', '(use "pipe")',
                                  '(fread "../outside/fifo")', '(fwrite "pipe" "x")'])
def test_refused_files_are_never_opened(project: Project, monkeypatch, form: str) -> None:
    """The target is a named pipe with no writer: opening it would block, so a prompt refusal shows
    that the check came before any open()."""
    fifo = project.outside / "fifo"
    os.mkfifo(fifo)
    (project.proj / "pipe").symlink_to(fifo)
    (project.proj / "pipe.lisp").symlink_to(fifo)
    r = run_api(project, project.script(form + "\n"), monkeypatch, allow_write=[str(project.proj)],
                max_seconds=20)
    refused(r, "sandbox")
