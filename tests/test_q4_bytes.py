"""Q4_0 / Q4_1 GGUF matrices loaded as int4 for the native kernel: their value bytes are copied as the
file holds them (the kernel's layout), giving exactly the layers the unpack-and-repack route gives, and
a head the file holds in 4-bit blocks stays int4 (exact, half an int8 head's memory)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lispe_py.models import create_model, load_model, native  # noqa: E402
from lispe_py.models.gguf_loader import GGUFFile  # noqa: E402
from lispe_py.models.gguf_writer import write_llama_gguf  # noqa: E402
from lispe_py.models.quantize import (Int4Linear, Int8Linear, _int4_from_q4_bytes, _int4_of,  # noqa: E402
                                      gguf_parts, load_gguf_quantized, rope_unpermute_index)

pytestmark = pytest.mark.skipif(not native.available(), reason=f"the native int4 kernel: {native.reason()}")

CONFIG = {"arch": "llama", "vocab_size": 160, "hidden_size": 128, "num_layers": 2, "num_heads": 4,
          "num_kv_heads": 2, "intermediate_size": 256, "max_position_embeddings": 64, "seed": 7,
          "init_std": 0.05, "tie_word_embeddings": True}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("q4")
    model = create_model(CONFIG)
    return {kind: write_llama_gguf(folder / f"tiny-{kind}.gguf", model, kind) for kind in ("Q4_0", "Q4_1")}


def _unpacked_route(tensors, heads):
    """The layer as the loader built it before: values unpacked to one per byte, then packed again."""
    parts = [gguf_parts(t) for t in tensors]
    v, s, z = zip(*(_int4_of(p) for p in parts))

    def rows(ts):
        out = [t if h is None else t[rope_unpermute_index(t.shape[0], h)] for t, h in zip(ts, heads)]
        return out[0] if len(out) == 1 else torch.cat(out)
    return Int4Linear(rows(list(v)), rows(list(s)), rows(list(z)), None, 32)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_value_bytes_copied_as_they_are_give_the_unpacked_routes_layer(files, kind):
    g = GGUFFile(files[kind])
    cases = [(["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"], [4, 2, None]),
             (["blk.1.ffn_gate.weight", "blk.1.ffn_up.weight"], [None, None]), (["token_embd.weight"], [None])]
    for names, heads in cases:
        tensors = [g.tensors[n] for n in names]
        ours, theirs = _int4_from_q4_bytes(tensors, heads, torch.bfloat16, rows=64), _unpacked_route(tensors, heads)
        assert ours.layout == theirs.layout == "native"
        assert torch.equal(ours.qweight, theirs.qweight), names
        assert torch.equal(ours.scales_and_zeros, theirs.scales_and_zeros), names
        x = torch.randn(3, ours.in_features)
        assert torch.equal(ours(x), theirs(x))


def test_the_loaders_planes_are_kept_as_they_are():
    """The GGUF Q4 route builds the kernel's [N, 2, K/32] scales and zeros a chunk at a time and hands
    them over: the layer keeps that tensor (no float or second bfloat16 copy of a 128k-row head's
    planes), as its kernel planes and, seen as [K/32, N, 2], as scales_and_zeros; planes come only
    with native bytes in groups of 32."""
    from lispe_py.models.errors import ModelError

    q = torch.randint(0, 256, (64, 64), dtype=torch.uint8)
    planes = torch.randn(64, 2, 4).to(torch.bfloat16)
    layer = Int4Linear(q, None, None, None, 32, native_bytes=True, planes=planes)
    assert layer._native_scales.data_ptr() == planes.data_ptr()
    assert layer.scales_and_zeros.data_ptr() == planes.data_ptr() and layer.scales_and_zeros.shape == (4, 64, 2)
    assert torch.equal(layer.scales_and_zeros[:, :, 0].t(), planes[:, 0])
    with pytest.raises(ModelError, match="planes"):
        Int4Linear(q, None, None, None, 32, planes=planes)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_a_head_held_in_4_bit_blocks_stays_int4_and_int8_when_asked(files, kind):
    model = load_model(files[kind], quantize="int4")
    assert isinstance(model.lm_head, Int4Linear) and model.quantization.lm_head == "int4"
    ref = load_model(files[kind], model_cache=False)
    with torch.inference_mode():
        ours, theirs = model.forward_full(torch.tensor([[3, 17, 40, 99]])), ref.forward_full(torch.tensor([[3, 17, 40, 99]]))
    assert (ours - theirs).abs().max() < 3e-2 * theirs.abs().max()  # bfloat16 planes, 16-bit activations
    assert torch.equal(model.lm_head.dequantized_weight().float(),
                       _unpacked_route([GGUFFile(files[kind]).tensors["token_embd.weight"]], [None]).dequantized_weight().float())
    asked = load_gguf_quantized(files[kind], "int4", lm_head="int8")
    assert isinstance(asked.lm_head, Int8Linear) and asked.quantization.lm_head == "int8"


def test_bytes_in_the_native_layout_need_the_native_kernel(monkeypatch):
    from lispe_py.models.errors import ModelError

    monkeypatch.setattr(Int4Linear, "_kernel_for", lambda self, device, dtype: None)
    with pytest.raises(ModelError, match="bytes in the native layout need the native kernel"):
        Int4Linear(torch.zeros(4, 16, dtype=torch.uint8), torch.ones(4, 1), torch.zeros(4, 1), None, 32,
                   native_bytes=True)
