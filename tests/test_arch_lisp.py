"""The new families from Lisp and from the `lispe` command: a Gemma 2 and a Mixtral folder written by
transformers load with torch_hf_load_model, and greedy generation gives transformers' ids."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import arch_common as ac  # noqa: E402
from lispe_py import Interpreter  # noqa: E402
from test_arch_gemma import _gemma2  # noqa: E402
from test_arch_moe import _mixtral  # noqa: E402

BUILDERS = {"gemma2": _gemma2, "mixtral": _mixtral}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    hf = BUILDERS[request.param]()
    hf.save_pretrained(path)
    ids = ac.prompts(1, 6, 21)
    expected = ac.hf_generate(hf, ids, max_new_tokens=8, do_sample=False, eos_token_id=2)[0].tolist()
    return request.param, path, ids[0].tolist(), expected


def _script(path, ids) -> str:
    return (f'(use \'lispe_torch)\n(setq model (torch_hf_load_model "{path}"))\n'
            '(setq generator (torch_generator_create model "cpu"))\n'
            '(torch_generator_config generator {"max_length":8 "eos_token_id":2 "pad_token_id":3})\n'
            f'(println (tensor_to_list (torch_generate generator (integers {" ".join(map(str, ids))}) "greedy")))\n'
            '(println (@ (torch_model_info model) "architecture"))\n')


def test_lisp_loads_and_generates_like_transformers(folder):
    arch, path, ids, expected = folder
    interp = Interpreter()
    interp.eval(_script(path, ids).replace("(println ", "(setq out ", 1).split("\n(println (@")[0])
    assert list(interp.eval("out")) == expected
    assert interp.eval('(@ (torch_model_info model) "architecture")') == arch


def test_cli_runs_a_script_on_the_family(folder, tmp_path):
    arch, path, ids, expected = folder
    script = tmp_path / "run.lisp"
    script.write_text(_script(path, ids))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-m", "lispe_py", str(script)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "(" + " ".join(map(str, expected)) + ")" and lines[1] == arch
