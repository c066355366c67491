"""The real `lispe` REPL in a pseudo-terminal (pexpect), and `lispe` reading a pipe."""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect")

PROMPT = "lispe> "
TIMEOUT = 30  # generous: the machine is shared; each step normally takes milliseconds


def printed(text: str) -> str:
    """A regex for `text` printed on a line of its own (after a newline or a terminal escape
    sequence, since prompt_toolkit ends its rendering with one)."""
    return r"(?:\n|\x1b\[[0-9;?]*[A-Za-z])" + re.escape(text) + r"\r\n"


def lispe_command() -> list[str]:
    """The installed `lispe` console script, or the same entry point through this Python."""
    script = shutil.which("lispe")
    if script:
        return [script]
    return [sys.executable, "-c", "import sys; from lispe_py.cli import main; sys.exit(main())"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect does not answer cursor position requests
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    })
    env.pop("LISPE_HISTORY", None)
    env.pop("LISPE_EDITING_MODE", None)
    return env


class Terminal(pexpect.spawn):
    """A pexpect child whose timeouts report what the terminal showed (escape sequences removed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logfile_read = self.log = io.StringIO()

    def transcript(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.log.getvalue())[-2000:]

    def expect(self, pattern: Any, *args: Any, **kwargs: Any) -> int:
        try:
            return super().expect(pattern, *args, **kwargs)
        except pexpect.TIMEOUT:
            raise AssertionError(f"timed out waiting for {pattern!r}; the terminal showed:\n"
                                 + self.transcript()) from None

    def expect_exact(self, pattern: Any, *args: Any, **kwargs: Any) -> int:
        try:
            return super().expect_exact(pattern, *args, **kwargs)
        except pexpect.TIMEOUT:
            raise AssertionError(f"timed out waiting for {pattern!r}; the terminal showed:\n"
                                 + self.transcript()) from None


@pytest.fixture
def repl(env: dict[str, str]):
    command = lispe_command()
    child = Terminal(command[0], command[1:], env=env, encoding="utf-8", timeout=TIMEOUT,
                     dimensions=(30, 120))
    child.expect_exact(PROMPT)
    yield child
    if child.isalive():
        # Not Ctrl-D: pressed in the instant between a printed value and the next prompt, the
        # terminal (still in cooked mode) turns it into an end-of-file marker that the prompt then
        # reads as a NUL byte. A typed command survives that switch.
        child.sendintr()  # clear whatever a failed test left in the input
        child.send(":quit\r")
        child.expect(pexpect.EOF)
    child.close()


def test_two_line_defun_then_call(repl, tmp_path: Path) -> None:
    repl.send("(defun square (x)\r")
    repl.send("(* x x))\r")
    repl.send("(square 12)\r")
    repl.expect(printed("144"))
    repl.expect_exact(PROMPT)
    repl.sendcontrol("d")
    repl.expect(pexpect.EOF)
    history = (tmp_path / "data" / "lispe_py" / "history").read_text()
    assert "+(defun square (x)\n+  (* x x))\n" in history


def test_tab_completes_a_builtin(repl) -> None:
    repl.send('(trimr')
    repl.send("\t")
    repl.expect_exact("ight")  # the completed word is redrawn
    repl.send(' "  abc  ")\r')
    repl.expect(printed('"  abc"'))


def test_right_arrow_takes_the_suggestion_from_history(repl) -> None:
    repl.send("(* 6 7)\r")
    repl.expect(printed("42"))
    repl.expect_exact(PROMPT)
    repl.send("(* 6")
    time.sleep(0.5)  # the suggestion is computed in the background
    repl.send("\x1b[C\r")  # Right arrow accepts " 7)"
    repl.expect(printed("42"))


def test_sigint_interrupts_a_long_loop_and_keeps_definitions(repl) -> None:
    repl.send("(setq kept 42)\r")
    repl.expect(printed("true"))
    repl.send("(setq n 0)\r")
    repl.expect(printed("true"))
    # The message is built at run time, so the echo of the typed line cannot match it.
    repl.send('(block (println (+ "loop " "started")) (while true (setq n (+ n 1))))\r')
    repl.expect_exact("loop started")
    time.sleep(0.3)
    repl.sendintr()
    repl.expect_exact("Interrupted")
    repl.expect_exact(PROMPT)
    repl.send("(+ kept 1)\r")
    repl.expect(printed("43"))
    # The loop really stopped (it does not go on in a background thread).
    counts = []
    for _ in range(2):
        repl.send("n\r")
        repl.expect(r"(?:\n|\x1b\[[0-9;?]*[A-Za-z])(\d+)\r\n")
        counts.append(int(repl.match.group(1)))
        time.sleep(0.3)
    assert counts[0] > 0 and counts[0] == counts[1]


def test_errors_are_red_and_the_session_goes_on(repl) -> None:
    repl.send("(car 1 2)\r")
    repl.expect_exact("\x1b[31mError: Wrong number of arguments in call to: 'car'")
    repl.expect_exact("<repl>:1:1")
    repl.send("(+ 20 22)\r")
    repl.expect(printed("42"))


def test_ctrl_d_exits(repl) -> None:
    repl.sendcontrol("d")
    repl.expect(pexpect.EOF)
    repl.close()
    assert repl.exitstatus == 0


def test_interpreter_repl_from_python(env: dict[str, str]) -> None:
    program = ("from lispe_py import Interpreter\n"
               "interp = Interpreter()\n"
               "interp.define('host_double', lambda x: 2 * x)\n"
               "interp.repl()\n"
               "print('back in python', interp.eval('from_repl'))\n")
    child = Terminal(sys.executable, ["-c", program], env=env, encoding="utf-8", timeout=TIMEOUT,
                     dimensions=(30, 120))
    child.expect_exact(PROMPT)
    child.send("(setq from_repl (host_double 21))\r")
    child.expect(printed("true"))
    child.expect_exact(PROMPT)
    child.sendcontrol("d")
    child.expect_exact("back in python 42")
    child.expect(pexpect.EOF)


def test_piped_stdin_runs_as_a_script(env: dict[str, str]) -> None:
    result = subprocess.run(lispe_command(), input='(println (+ 1 2))\n(+ 1 2)\n', env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "3"
    assert "lispe>" not in result.stdout
    error = subprocess.run(lispe_command(), input="(car 1 2 3)\n", env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert error.returncode == 1 and "Error:" in error.stderr
    assert not re.search("Traceback", error.stderr)


def test_vi_flag_starts_the_repl_with_vi_key_bindings(env: dict[str, str]) -> None:
    command = lispe_command()
    child = Terminal(command[0], [*command[1:], "--vi"], env=env, encoding="utf-8", timeout=TIMEOUT,
                     dimensions=(30, 120))
    child.expect_exact(PROMPT)
    # (The "[vi]" on the usage line is not drawn here: without cursor position reports,
    # prompt_toolkit does not know the screen height and leaves the bottom toolbar out.)
    child.send("(* 2 3)")
    child.send("\x1b")  # Escape: Vi normal mode
    time.sleep(0.8)  # longer than prompt_toolkit's wait for a key sequence after Escape
    child.send("0lr+")  # go to the start, one right, replace '*' with '+'
    time.sleep(0.3)
    child.send("\r")
    child.expect(printed("5"))  # (+ 2 3): Emacs bindings would have inserted "0lr+" instead
    child.expect_exact(PROMPT)
    child.send(":quit\r")
    child.expect(pexpect.EOF)
