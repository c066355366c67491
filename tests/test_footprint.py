"""The true parameter count and storage of quantized models (issue 20, item 6): a quantized layer
counts its logical weights however packed (int8, int4 two per byte, K-quant blocks of 256), a tied head
counts once, and torch_model_info and the printed model say so."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lispe_py.models import create_model, native  # noqa: E402
from lispe_py.models.footprint import footprint  # noqa: E402
from lispe_py.models.quantize import load_gguf_quantized, quantize_model  # noqa: E402

torch.set_flush_denormal(True)
CONFIG = {"arch": "llama", "vocab_size": 160, "hidden_size": 256, "num_layers": 2, "num_heads": 4,
          "num_kv_heads": 2, "intermediate_size": 512, "max_position_embeddings": 64, "seed": 5}
TIED = dict(CONFIG, hidden_size=64, intermediate_size=128, tie_word_embeddings=True)


def _float_count(config: dict) -> int:
    model = create_model(config)
    return sum(p.numel() for p in model.parameters())   # a float model: torch's own count


@pytest.mark.parametrize("config", [CONFIG, TIED], ids=["untied", "tied"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_models_count_their_logical_weights(config, mode):
    n = _float_count(config)
    model = quantize_model(create_model(config), mode)
    fp = footprint(model)
    assert sum(p.numel() for p in model.parameters()) < n / 5      # what torch sees: the float parts
    assert fp["parameters"] == n == model.num_parameters()
    assert sum(fp["by_storage"].values()) == n
    assert list(fp["by_storage"])[0] == mode and fp["storage"].startswith(mode + "+")
    # the float parts: the embedding table and the norms
    emb = config["vocab_size"] * config["hidden_size"]
    assert fp["by_storage"]["float32"] == emb + (2 * config["num_layers"] + 1) * config["hidden_size"]
    if not config.get("tie_word_embeddings"):       # the untied head: int8 by default, whatever the mode
        assert fp["by_storage"]["int8" if mode == "int4" else mode] >= emb
    assert fp["weight_bytes"] < 4 * n * (0.45 if mode == "int8" else 0.35)


def test_a_float_model_is_counted_as_torch_counts_it():
    model = create_model(TIED)
    fp = footprint(model)
    assert fp == {"parameters": model.num_parameters(), "by_storage": {"float32": fp["parameters"]},
                  "storage": "float32", "weight_bytes": 4 * fp["parameters"]}
    half = create_model(TIED).to(torch.bfloat16)
    assert footprint(half)["storage"] == "bfloat16" and footprint(half)["weight_bytes"] == 2 * fp["parameters"]


@pytest.fixture(scope="module")
def q4_k_m(tmp_path_factory):
    from lispe_py.models.gguf_writer import write_llama_gguf

    return write_llama_gguf(tmp_path_factory.mktemp("fp") / "tiny-Q4_K_M.gguf", create_model(CONFIG), "Q4_K_M")


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_k_quant_gguf_load_counts_its_blocks(q4_k_m, mode):
    model = load_gguf_quantized(q4_k_m, mode)
    fp = footprint(model)
    assert fp["parameters"] == _float_count(CONFIG) == model.num_parameters()
    kinds = set(fp["by_storage"])
    if mode == "int4" and native.available():    # K-quant layers read the file's blocks as they are
        assert {"Q4_K", "Q6_K", "float32"} <= kinds
    else:
        assert mode in kinds


def test_lisp_info_and_printed_model_show_the_true_count(q4_k_m):
    from lispe_py import Interpreter

    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq m (torch_hf_load_model "{q4_k_m}" {{"quantize":"int4"}}))')
    info = interp.eval("(torch_model_info m)")
    n = _float_count(CONFIG)
    assert info["parameters"] == n and sum(info["parameters_by_storage"].values()) == n
    assert info["storage"] == "+".join(info["parameters_by_storage"])
    assert info["quantization"] == "int4" and info["weight_bytes"] > 0
    assert info["weights_mb"] is not None and info["mapped_mb"] is not None     # the memory keys stay
    printed = interp.eval("(string m)")
    assert printed.startswith("#<torch_model llama 1.3M vocab=160 ")
    assert " quantization=int4 storage=" in printed
    interp.eval('(setq f (torch_model_create "llama" {"vocab_size":160 "hidden_size":64 '
                '"num_layers":2 "num_heads":4 "num_kv_heads":2 "intermediate_size":128}))')
    assert "quantization" not in interp.eval("(string f)")
    assert interp.eval('(@ (torch_model_info f) "storage")') == "float32"


SMOLLM2_PARAMETERS = 134_515_008   # SmolLM2-135M's float model (transformers: model.num_parameters())


@pytest.mark.smollm2
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_smollm2_quantized_keeps_its_parameter_count(mode, smollm2_gguf):
    from lispe_py import Interpreter

    interp = Interpreter()
    interp.eval("(use 'lispe_torch)")
    interp.eval(f'(setq m (torch_hf_load_model "SmolLM2-135M-Instruct" {{"quantize":"{mode}"}}))')
    info = interp.eval("(torch_model_info m)")
    assert info["parameters"] == SMOLLM2_PARAMETERS
    assert sum(info["parameters_by_storage"].values()) == SMOLLM2_PARAMETERS
    assert info["storage"].startswith(mode + "+") and info["quantization"] == mode
    # 30 layers of q/k/v/o and gate/up/down, 576 x 576 ... in the quantized mode; the head is int8
    assert info["parameters_by_storage"][mode] >= 106_168_320
    assert info["weight_bytes"] < SMOLLM2_PARAMETERS * (1.5 if mode == "int8" else 1.05)
    assert interp.eval("(string m)").startswith("#<torch_model llama 134.5M ")
