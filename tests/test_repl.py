"""The REPL driven through prompt_toolkit's pipe input: keys in, values and errors out."""
from __future__ import annotations

import io
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.enums import EditingMode
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from lispe_py import Interpreter, LispEError
from lispe_py.builtins.registry import REGISTRY
from lispe_py.repl import Repl, default_history_path
from lispe_py.values import type_name

ENTER = "\r"
CTRL_C = "\x03"
CTRL_D = "\x04"


@dataclass
class Session:
    """What one REPL run left behind."""

    repl: Repl
    out: str
    err: str
    history: list[str]


@pytest.fixture
def run(tmp_path: Path):
    """Type `keys` into a fresh REPL (then Ctrl-D) and collect its output."""
    history_file = tmp_path / "history"

    def run(keys: str, interp: Interpreter | None = None) -> Session:
        out, err = io.StringIO(), io.StringIO()
        with create_pipe_input() as pipe:
            repl = Repl(interp, input=pipe, output=DummyOutput(), stdout=out, stderr=err,
                        history_file=history_file, color=False)
            pipe.send_text(keys + CTRL_D)
            repl.run(banner=False)
        history = list(FileHistory(str(history_file)).load_history_strings())[::-1]
        return Session(repl, out.getvalue(), err.getvalue(), history)

    return run


def test_multiline_form_is_submitted_only_when_complete(run) -> None:
    session = run("(defun add3 (a b c)" + ENTER + "(+ a b" + ENTER + "c))" + ENTER + "(add3 1 2 3)" + ENTER)
    assert session.err == ""
    assert session.out.splitlines()[-1] == "6"
    # The three typed lines were one input (indented by the REPL), not three broken ones.
    assert session.history == ["(defun add3 (a b c)\n  (+ a b\n    c))", "(add3 1 2 3)"]


def test_enter_submits_from_the_last_line_and_splits_earlier_lines(run) -> None:
    left, up, meta_enter = "\x1b[D", "\x1b[A", "\x1b\r"
    session = run("(+ 1 2)" + left * 3 + ENTER  # cursor inside a one-line form: it runs
                  + "(+ 1" + ENTER + "2)" + up + ENTER + meta_enter)  # Enter on line 1 splits it
    assert session.out.splitlines() == ["3", "3"]
    assert session.history[0] == "(+ 1 2)"
    assert session.history[1].count("\n") == 2


def test_strings_and_comments_do_not_fool_the_completeness_check(run) -> None:
    session = run('(+ 1 ; a ) in a comment' + ENTER + '2)' + ENTER
                  + '(size """a (' + ENTER + 'b""")' + ENTER)
    assert session.err == ""
    assert session.out.splitlines() == ["3", "5"]


def test_history_is_written_to_the_file(run, tmp_path: Path) -> None:
    run("(+ 1 2)" + ENTER + ":help" + ENTER)
    text = (tmp_path / "history").read_text()
    assert "+(+ 1 2)" in text and "+:help" in text
    # A second session sees the first one's entries.
    assert run("").history == ["(+ 1 2)", ":help"]


def test_default_history_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LISPE_HISTORY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_history_path() == tmp_path / "lispe_py" / "history"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_history_path() == tmp_path / ".local" / "share" / "lispe_py" / "history"
    monkeypatch.setenv("LISPE_HISTORY", str(tmp_path / "h"))
    assert default_history_path() == tmp_path / "h"


def test_unwritable_history_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = io.StringIO()
    with create_pipe_input() as pipe:
        repl = Repl(input=pipe, output=DummyOutput(), stdout=io.StringIO(), stderr=err,
                    history_file=blocker / "sub" / "history", color=False)
    assert "history not saved" in err.getvalue()
    assert type(repl.session.history).__name__ == "InMemoryHistory"


def completions(repl: Repl, text: str) -> dict[str, str]:
    doc = Document(text, len(text))
    return {c.text: c.display_meta_text
            for c in repl.session.completer.get_completions(doc, CompleteEvent())}


def test_completion_offers_builtins_with_their_usage_line(run) -> None:
    repl = run("").repl
    offered = completions(repl, "(trimr")
    assert offered == {"trimright": REGISTRY["trimright"].usage}
    assert REGISTRY["trimright"].usage.startswith("(trimright")
    assert set(completions(repl, "(upp")) >= {"upper", "upperp"}
    assert "help" in completions(repl, "(hel")


def test_completion_offers_user_definitions(run) -> None:
    repl = run("(defun my_square (x) (* x x))" + ENTER + "(setq my_total 10)" + ENTER).repl
    offered = completions(repl, "(my_")
    assert set(offered) == {"my_square", "my_total"}
    assert offered["my_total"] == "integer_"


def test_completion_offers_torch_generate_after_use(run) -> None:
    repl = run("").repl
    assert "torch_generate" not in completions(repl, "(torch_gen")  # a library builtin, not loaded
    repl = run("(use 'lispe_torch)" + ENTER).repl
    offered = completions(repl, "(torch_gen")
    assert offered["torch_generate"] == REGISTRY["torch_generate"].usage


def test_usage_line_for_the_call_under_the_cursor(run) -> None:
    repl = run("(defun area (w h) (* w h))" + ENTER).repl
    assert repl.describe_name("car") == REGISTRY["car"].usage
    assert repl.describe_name("area") == "area: function_ (w h)"
    assert repl.describe_name("torch_generate") == ""  # its library is not loaded
    assert repl.describe_name("no_such_name") == ""
    assert repl.describe_name("if").startswith("(if (> x 0) ")  # special forms have a usage line
    assert repl.describe_name("for").startswith("(for x ")


def test_completion_meta_of_special_forms_is_their_usage_line(run) -> None:
    from lispe_py.builtins.help import special_forms

    repl = run("").repl
    names = repl.completion_names()
    for name, doc in special_forms().items():
        assert names[name] == doc.splitlines()[0]
    assert names["while"].startswith("(while ")


def test_an_error_leaves_the_session_usable(run) -> None:
    session = run("(defun f (x) (+ x 1))" + ENTER + "(car 1 2 3)" + ENTER + "(undefined_fn 1)" + ENTER
                  + "(f 41)" + ENTER)
    assert session.out.splitlines()[-1] == "42"
    assert session.err.count("Error:") == 2
    assert "unknown function" in session.err
    assert "Traceback" not in session.err + session.out
    last_error = session.repl.interp.globals["*e"]
    assert type_name(last_error) == "maybe_"
    assert "unknown function" in last_error.message


def test_results_are_kept_in_star_variables(run) -> None:
    session = run("(list *1 *e)" + ENTER + "(+ 1 2)" + ENTER + "(* 2 5)" + ENTER + '"s"' + ENTER
                  + "(list *1 *2 *3)" + ENTER + "*1" + ENTER)
    assert session.out.splitlines() == ["(nil nil)", "3", "10", '"s"', '("s" 10 3)', '("s" 10 3)']


def test_output_is_flushed_as_it_is_printed(tmp_path: Path) -> None:
    """Streamed pieces reach the terminal while the evaluation still runs (stdout is buffered)."""
    log = tmp_path / "out.txt"
    interp = Interpreter()
    interp.define("on_disk", lambda: log.read_text())
    with open(log, "w", buffering=8192) as out, create_pipe_input() as pipe:
        repl = Repl(interp, input=pipe, output=DummyOutput(), stdout=out, stderr=io.StringIO(),
                    history_file=False, color=False)
        pipe.send_text('(block (print "tok1 ") (print "tok2 ") (setq seen (on_disk)))' + ENTER + CTRL_D)
        repl.run(banner=False)
    assert interp.globals["seen"] == "tok1 tok2 "


def test_print_functions_are_not_echoed_and_lines_are_finished(run) -> None:
    session = run('(println "hi")' + ENTER + '(print "no newline")' + ENTER + "(+ 1 1)" + ENTER)
    assert session.out == "hi\nno newline\n2\n"


def test_no_blank_line_after_reading_input(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Bob\n"))
    session = run('(setq name (input "name? "))' + ENTER + '(+ "hi " name)' + ENTER)
    # On a terminal the echo of Enter ends the "name? " line; nothing is added after it.
    assert session.out == 'name? true\n"hi Bob"\n'


def test_the_repl_evaluates_through_the_public_run_source(run) -> None:
    """The console relies on Interpreter.run_source (VOID kept), not on a private method."""
    calls = []

    class Recording(Interpreter):
        def run_source(self, source: str, filename: str = "<string>") -> object:
            calls.append((source, filename))
            return super().run_source(source, filename)

    session = run('(println "hi")' + ENTER + "(+ 1 2)" + ENTER, interp=Recording())
    assert session.out == "hi\n3\n" and session.err == ""
    assert calls == [('(println "hi")', "<repl>"), ("(+ 1 2)", "<repl>")]


def test_ctrl_c_at_the_prompt_clears_the_input(run) -> None:
    session = run("(+ 1" + CTRL_C + "(+ 2 3)" + ENTER)
    assert session.out == "5\n" and session.err == ""


def test_sigint_stops_a_running_loop_and_keeps_state(run) -> None:
    interp = Interpreter()
    # (arm) schedules a SIGINT to this process, as Ctrl-C on a terminal does, once the loop runs.
    interp.define("arm", lambda: threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start())
    session = run("(setq kept 7)" + ENTER + "(setq n 0)" + ENTER
                  + "(block (arm) (while true (setq n (+ n 1))))" + ENTER + "kept" + ENTER, interp=interp)
    assert "Interrupted" in session.err
    assert session.out.splitlines()[-1] == "7"
    count = interp.globals["n"]
    time.sleep(0.2)
    assert count > 0 and interp.globals["n"] == count  # the loop is not going on in the background
    assert interp.eval("(+ kept 1)") == 8


def test_the_repl_knows_the_evaluation_thread_it_interrupts() -> None:
    """The REPL evaluates in the thread `run_with_big_stack` starts, which carries Ctrl-C into it."""
    from lispe_py.runtime import EVAL_THREAD_NAME, run_with_big_stack

    assert run_with_big_stack(lambda: threading.current_thread().name) == EVAL_THREAD_NAME


def test_sigint_stops_a_torch_generation_and_the_generator_still_works(run) -> None:
    pytest.importorskip("torch")
    interp = Interpreter()
    interp.define("interrupt", lambda: os.kill(os.getpid(), signal.SIGINT))  # as Ctrl-C does
    lines = [
        "(use 'lispe_torch)",
        '(setq m (torch_model_create "transformer" {"vocab_size":64 "hidden_size":16 "num_layers":1'
        ' "num_heads":2 "intermediate_size":32 "max_position_embeddings":40000}))',
        "(setq g (torch_generator_create m))",
        "(setq count 0)",
        '(torch_generator_config g {"max_length":30000'
        ' "callback":(lambda (id piece) (setq count (+ count 1)) (if (= count 3) (interrupt)))})',
        "(torch_generate g (integers 1 2 3))",
        '(torch_generator_config g {"max_length":5 "callback":nil})',
        "(size (torch_generate g (integers 1 2 3)))",
    ]
    session = run(ENTER.join(lines) + ENTER, interp=interp)
    assert "Interrupted" in session.err
    count = interp.globals["count"]
    time.sleep(0.2)
    assert 3 <= count < 30000 and interp.globals["count"] == count
    assert session.out.splitlines()[-1] == "8"  # 3 prompt + 5 new tokens: the generator is usable


def test_commands_quit_load_reset(run, tmp_path: Path) -> None:
    script = tmp_path / "lib.lisp"
    script.write_text("(defun twice (x) (* 2 x))\n(twice 5)\n")
    session = run(f":load {script}" + ENTER + "(twice 21)" + ENTER + ":reset" + ENTER + "(twice 1)" + ENTER
                  + ":quit" + ENTER + "(+ 1 1)" + ENTER)
    lines = session.out.splitlines()
    assert lines[:2] == ["10", "42"]
    assert "Session reset" in lines[2]
    assert "twice" in session.err  # unknown after :reset
    assert "2" not in lines[3:]  # nothing ran after :quit


def test_interpreter_repl_opens_the_console_on_the_embedding_programs_definitions() -> None:
    interp = Interpreter()
    interp.define("host_double", lambda x: 2 * x)
    interp.eval('(setq host_name "embedder")')
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("(host_double 21)" + ENTER + "host_name" + ENTER + "(setq from_repl 1)" + ENTER
                       + CTRL_D)
        interp.repl(input=pipe, output=DummyOutput(), stdout=out, stderr=io.StringIO(),
                    history_file=False, color=False)
    assert out.getvalue().splitlines()[-3:] == ["42", '"embedder"', "true"]
    assert interp.eval("from_repl") == 1  # what the session defined stays for the program


def test_reset_keeps_the_embedding_programs_definitions(run) -> None:
    interp = Interpreter()
    interp.eval("(setq from_host 5)")
    session = run("(setq mine 1)" + ENTER + ":reset" + ENTER + "from_host" + ENTER + "mine" + ENTER,
                  interp=interp)
    assert session.out.splitlines()[-1] == "5"
    assert "mine" in session.err


def test_load_errors_are_reported(run) -> None:
    session = run(":load /nonexistent/file.lisp" + ENTER + ":load" + ENTER + ":bogus" + ENTER)
    assert session.err.count("Error") == 3


def test_vi_and_emacs_modes(run) -> None:
    assert run(":vi" + ENTER).repl.session.editing_mode == EditingMode.VI
    assert run(":vi" + ENTER + ":emacs" + ENTER).repl.session.editing_mode == EditingMode.EMACS


def test_vi_mode_editing(tmp_path: Path) -> None:
    out = io.StringIO()
    with create_pipe_input() as pipe:
        repl = Repl(input=pipe, output=DummyOutput(), stdout=out, stderr=io.StringIO(),
                    history_file=False, vi_mode=True, color=False)
        # Type, leave insert mode, delete the last character (the stray 9), append ")", submit.
        pipe.send_text("(+ 1 29\x1bxa)" + ENTER + CTRL_D)
        repl.run(banner=False)
    assert out.getvalue() == "3\n"


def test_help_shows_a_builtins_docstring(run) -> None:
    session = run("(help 'car)" + ENTER + "(help 'uper)" + ENTER)
    assert REGISTRY["car"].doc.splitlines()[0] in session.out
    assert "did you mean 'upper'" in session.err


def test_help_works_in_scripts_too(capsys: pytest.CaptureFixture[str]) -> None:
    interp = Interpreter()
    assert interp.eval("(help \"car\")") is None  # prints; returns the void value
    assert REGISTRY["car"].doc.splitlines()[0] in capsys.readouterr().out
    interp.eval("(help 'while)")
    assert "special form" in capsys.readouterr().out
    interp.eval("(defun twice (x) (* 2 x)) (help 'twice)")
    assert "twice: a function defined in this session\n  function_ (x)" in capsys.readouterr().out
    interp.eval("(help)")
    overview = capsys.readouterr().out
    assert "strings:" in overview and "upper" in overview
    with pytest.raises(LispEError, match="help: expected a quoted name"):
        interp.eval("(help 42)")


def test_errors_are_red_on_a_terminal(tmp_path: Path) -> None:
    err = io.StringIO()
    with create_pipe_input() as pipe:
        repl = Repl(input=pipe, output=DummyOutput(), stdout=io.StringIO(), stderr=err,
                    history_file=False, color=True)
        pipe.send_text("(car 1 2)" + ENTER + CTRL_D)
        repl.run(banner=False)
    assert err.getvalue().startswith("\x1b[31mError:")
