"""The REPL's LispE lexer, bracket scanning and completer, without an interpreter."""
from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String

from lispe_py.repl.completer import LispECompleter
from lispe_py.repl.lexer import (in_string_or_comment, indentation, innermost_head, lexer_class,
                                 unclosed_brackets)


def tokens(src: str, builtins: set[str] = frozenset({"println", "+", "car"})) -> list[tuple]:
    lexer = lexer_class(lambda: builtins)()
    return [(t, v) for t, v in lexer.get_tokens(src) if v.strip()]


def test_symbols_are_classified_from_the_registry_names() -> None:
    toks = tokens("(defun f (x) (println (car x) nil *1))")
    assert (Keyword, "defun") in toks
    assert (Name.Function, "f") in toks
    assert (Name.Builtin, "println") in toks
    assert (Name.Builtin, "car") in toks
    assert (Name, "x") in toks
    assert (Keyword.Constant, "nil") in toks
    assert (Name.Variable.Magic, "*1") in toks


def test_name_sets_are_read_at_each_pass() -> None:
    names: set[str] = set()
    lexer = lexer_class(lambda: names)()
    assert (Name, "torch_generate") in [(t, v) for t, v in lexer.get_tokens("(torch_generate)")]
    names.add("torch_generate")
    assert (Name.Builtin, "torch_generate") in [(t, v) for t, v in lexer.get_tokens("(torch_generate)")]


@pytest.mark.parametrize("src, token", [
    ("12", Number.Integer), ("-12", Number.Integer), ("+3", Number.Integer),
    ("1.5", Number.Float), ("2e-4", Number.Float), ("1.5E3", Number.Float),
    ("0xFF", Number.Hex), ("0b1011", Number.Bin),
])
def test_numbers(src: str, token) -> None:
    assert tokens(src) == [(token, src)]


def test_number_like_symbols_stay_symbols() -> None:
    assert tokens("1+ 12abc -") == [(Name, "1+"), (Name, "12abc"), (Name, "-")]


def test_comments_and_strings() -> None:
    src = '#!/usr/bin/env lispe\n; line ( \n;; block\n ( ;; "a\\"b(" `raw\n(` """long\n("""'
    toks = tokens(src)
    assert toks[0] == (Comment.Hashbang, "#!/usr/bin/env lispe")
    assert (Comment.Single, "; line ( ") in toks
    assert (Comment.Multiline, ";; block\n ( ;;") in toks
    assert (String.Escape, '\\"') in toks
    assert (String.Backtick, "`raw\n(`") in toks
    assert (String.Heredoc, '"""long\n("""') in toks
    assert not any(t is Punctuation for t, _ in toks)


def test_unclosed_double_semicolon_is_a_line_comment() -> None:
    assert tokens(";; note\n(car)")[:2] == [(Comment.Single, ";; note"), (Punctuation, "(")]


def test_quote_dictionary_and_brackets() -> None:
    assert tokens("'(a) {\"k\":1} [b]") == [
        (Operator, "'"), (Punctuation, "("), (Name, "a"), (Punctuation, ")"),
        (Punctuation, "{"), (String.Double, '"'), (String.Double, "k"), (String.Double, '"'),
        (Punctuation, ":"), (Number.Integer, "1"), (Punctuation, "}"),
        (Punctuation, "["), (Name, "b"), (Punctuation, "]")]


def test_unclosed_brackets_ignore_strings_and_comments() -> None:
    assert unclosed_brackets('(defun f (x)\n  (+ x ")" ; )\n') == [(0, "("), (15, "(")]
    assert unclosed_brackets("(a [b c)) {") == [(10, "{")]
    assert unclosed_brackets("(a))") == []


def test_indentation_aligns_under_the_innermost_open_bracket() -> None:
    assert indentation("(defun f (x)") == "  "
    assert indentation("(defun f (x)\n  (if (> x 0)") == "    "
    assert indentation("(+ 1 2)") == ""


def test_innermost_head() -> None:
    assert innermost_head("(map (lambda (x) (+ x") == "+"
    assert innermost_head("(map (lambda (x) ") == "lambda"
    assert innermost_head("(car x)") is None


@pytest.mark.parametrize("src, inside", [
    ('(car "ab', True), ('(car "ab"', False), ('(car ; note', True), ('(car ;; c ;; x', False),
    ("(car `ra", True), ('(car """lo', True), ('"a\\"b', True), ('"a"\n(b', False), ("(car", False),
])
def test_in_string_or_comment(src: str, inside: bool) -> None:
    assert in_string_or_comment(src, len(src)) is inside


def complete(completer: LispECompleter, text: str, requested: bool = False) -> list[tuple[str, str]]:
    doc = Document(text, len(text))
    return [(c.text, c.display_meta_text) for c in
            completer.get_completions(doc, CompleteEvent(completion_requested=requested))]


NAMES = {"car": "(car '(1 2)) returns the first element.", "cadr": "(cadr l) second element",
         "torch_generate": "(torch_generate gen ids) generates", "my_fn": "lambda_"}


def test_completer_prefix_then_substring_with_meta() -> None:
    completer = LispECompleter(lambda: NAMES, {":load": ":load FILE"})
    assert complete(completer, "(ca") == [("cadr", "(cadr l) second element"),
                                          ("car", "(car '(1 2)) returns the first element.")]
    assert [t for t, _ in complete(completer, "(gen")] == ["torch_generate"]
    assert [t for t, _ in complete(completer, "(+ (my")] == ["my_fn"]


def test_completer_stays_quiet_in_strings_comments_and_on_empty_words() -> None:
    completer = LispECompleter(lambda: NAMES)
    assert complete(completer, '(println "ca') == []
    assert complete(completer, "; ca") == []
    assert complete(completer, "(") == []
    assert complete(completer, "(c") == []  # one character: no menu while typing
    assert [t for t, _ in complete(completer, "(c", requested=True)] == ["cadr", "car"]
    assert len(complete(completer, "(", requested=True)) == len(NAMES)


def test_completer_completes_file_names_after_load(tmp_path, monkeypatch) -> None:
    (tmp_path / "prompts.lisp").write_text("")
    (tmp_path / "other.txt").write_text("")
    monkeypatch.chdir(tmp_path)
    completer = LispECompleter(lambda: NAMES, {":load": ":load FILE"})
    assert [t for t, _ in complete(completer, ":load pro")] == ["mpts.lisp"]
    assert [t for t, _ in complete(completer, f":load {tmp_path}/oth")] == ["er.txt"]


def test_completer_commands() -> None:
    completer = LispECompleter(lambda: NAMES, {":load": ":load FILE", ":quit": ":quit"})
    assert complete(completer, ":l") == [(":load", ":load FILE")]
    assert complete(completer, "(car :l") == []


def test_lispe_syntax_lambda_spellings_composition_and_hash_bang_lines() -> None:
    toks = tokens("((\\ (x) x) 1) (λ (y) y) (dethread worker (n) n) (sum . numbers 1 .5) #! note (\n(a#!b)")
    assert (Keyword, "\\") in toks and (Keyword, "λ") in toks
    assert (Name.Function, "worker") in toks  # the name after dethread, as after defun
    assert (Operator, ".") in toks and (Number.Float, ".5") in toks
    assert (Comment.Hashbang, "#! note (") in toks
    assert (Name, "a#!b") in toks  # inside a symbol `#!` starts no comment, as in the reader
    assert unclosed_brackets("(f #! (\n") == [(0, "(")]


def test_input_is_complete_skips_hash_bang_comments_anywhere() -> None:
    from lispe_py.reader import is_complete

    assert is_complete("(f 1 #! a comment with (\n 2)")
    assert not is_complete("(f 1 #! ) in a comment does not close\n")
    assert not is_complete("(a#!b")  # a symbol containing #!: the bracket is still open
