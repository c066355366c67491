"""Per-token cost of constrained vs unconstrained decoding on SmolLM2-135M-Instruct (issue 7).

For each constraint kind, the same chat prompt is decoded greedily twice, alternating, in one
process: once under the constraint, once without it (forced to the same number of new tokens with
`min_new_tokens`). The figure is seconds per new token; the ratio is constrained / unconstrained
(target <= 1.5). "cold" is the first constrained run in the process (the vocabulary index, the
automaton and the masks of the states it visits are built then); "warm" is the best of the later
runs (everything cached, the steady state of a server or of a script that generates several times).
The last column is the CPU time of the constraint alone per step (replayed outside the model), a
figure that does not move with the machine's load.

    python bench/constrained.py                       # every kind, 2 threads
    python bench/constrained.py --kinds json_schema --repeats 5 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from lispe_py.generation import generate  # noqa: E402
from lispe_py.generation.constraints import build_constraint, vocab_index  # noqa: E402
from lispe_py.models import load_model  # noqa: E402

CASES = {
    "choices": ("Which is the largest planet of the solar system? Answer in a few words.",
                ["Jupiter", "Saturn", "The largest planet of the solar system is Jupiter.",
                 "The largest planet is Saturn."]),
    "regex": ("Write a US phone number and then a short sentence about it.",
              r"\(\d{3}\) \d{3}-\d{4}\. [A-Za-z ,']{20,200}\."),
    "grammar": ("Write a Lisp list of a few numbers and symbols.",
                ["grammar",
                 ["root", ["ref", "sexp"]],
                 ["sexp", ["alt", ["regex", "[a-z]+"], ["regex", "[0-9]+"],
                           ["seq", "(", ["ref", "sexp"], ["star", " ", ["ref", "sexp"]], ")"]]]]),
    "json_schema": ("Describe a fictional person as JSON with a name, an age, a short biography "
                    "and a list of hobbies.",
                    {"type": "object",
                     "properties": {"name": {"type": "string", "maxLength": 40},
                                    "age": {"type": "integer"},
                                    "bio": {"type": "string", "maxLength": 300},
                                    "hobbies": {"type": "array", "items": {"type": "string",
                                                                            "maxLength": 30},
                                                "maxItems": 5}},
                     "required": ["name", "age", "bio", "hobbies"]}),
}


def processor_cpu(model, prompt, new_ids, kind, spec) -> float:
    """CPU seconds per step spent in the constraint alone (processor + stop criterion), replaying
    the constrained output through a fresh Constraint: independent of the model and of machine load."""
    tok = model.tokenizer
    c = build_constraint(kind, spec, tok, [model.special_tokens["eos_token_id"]])
    scores = torch.zeros(1, model.config.vocab_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # idle OpenMP threads spin and would count as CPU time
    seq = torch.tensor([prompt])
    spent = 0.0
    for t in new_ids:
        c0 = time.process_time()
        c(seq, scores)
        seq = torch.cat([seq, torch.tensor([[t]])], 1)
        c.stop_criterion(seq, seq[:, -1])
        spent += time.process_time() - c0
    torch.set_num_threads(threads)
    return spent / max(1, len(new_ids))


def run(model, prompt, new_tokens: int | None, constraint_spec=None):
    """One greedy decode; returns (seconds, new tokens, text, new ids)."""
    tok = model.tokenizer
    eos = model.special_tokens["eos_token_id"]
    eos_ids = [eos] if isinstance(eos, int) else list(eos)
    cfg = {"strategy": "greedy", "max_length": new_tokens or 256}
    procs, stops = [], []
    if constraint_spec is not None:
        c = build_constraint(*constraint_spec, tok, eos_ids)
        procs, stops = [c], [c.stop_criterion]
    else:
        cfg["min_new_tokens"] = new_tokens
    t0 = time.perf_counter()
    out = generate(model, prompt, cfg, processors=procs, stopping=stops)
    dt = time.perf_counter() - t0
    new = out[len(prompt):].tolist()
    while new and new[-1] in eos_ids:
        new.pop()
        if constraint_spec is None:
            break
    n = len(out) - len(prompt)
    return dt, n, tok.decode(new, skip_special_tokens=True), out[len(prompt):].tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default=",".join(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model("SmolLM2-135M-Instruct", dtype=args.dtype)
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    t0, c0 = time.perf_counter(), time.process_time()
    vocab_index(model.tokenizer)
    print(f"vocabulary index ({model.tokenizer.vocab_size} tokens): "
          f"{time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU")
    rows = []
    for kind in args.kinds.split(","):
        question, spec = CASES[kind]
        prompt = model.tokenizer.apply_chat_template([{"role": "user", "content": question}])
        cold, n, text, new_ids = run(model, prompt, None, (kind, spec))
        warm, base = [], []
        for _ in range(args.repeats):
            dt, n2, _, _ = run(model, prompt, None, (kind, spec))
            warm.append(dt / n2)
            dt, nb, _, _ = run(model, prompt, n2)
            base.append(dt / nb)
        b, w = min(base), min(warm)
        cpu = processor_cpu(model, prompt, new_ids, kind, spec)
        rows.append((kind, n, b, cold / n, w, (cold / n) / b, w / b, cpu))
        print(f"{kind}: {n} tokens: {text!r}")
        if kind == "json_schema":
            json.loads(text)
    print()
    print("| constraint | new tokens | unconstrained /token | constrained cold /token | "
          "constrained warm /token | ratio cold | ratio warm | constraint CPU /step (warm) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, n, b, c, w, rc, rw, cpu in rows:
        print(f"| {kind} | {n} | {b * 1e3:.1f} ms | {c * 1e3:.1f} ms | {w * 1e3:.1f} ms | "
              f"{rc:.2f}x | {rw:.2f}x | {cpu * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
