"""Which strategy a config really decodes with, and which of its sampling parameters that ignores.

A config whose strategy is "greedy" (the default) or "beam_search", or whose `do_sample` is false, or
whose temperature is 0, picks tokens by argmax: its temperature, top_k, top_p, min_p and typical_p are
not used (transformers decodes the same way, and warns at generate time: "`do_sample` is set to
`False`. However, `temperature` is set to ..."). A sampling strategy uses only its own filters: "top_k"
ignores top_p, min_p and typical_p; "top_p" ignores top_k, min_p and typical_p; "sample" uses them all
(processors.build_chain). With do_sample false a sampling strategy keeps its filters and takes the
argmax of the filtered scores: temperature, top_k, top_p and min_p always keep the best token, so they
change nothing, but typical_p may drop it, so "sample"'s typical_p still counts there (transformers
applies no filter at all with do_sample=False: the one place the two differ). The decoding itself is unchanged here: these functions only describe it, for
`torch_generator_info`, the printed generator and the warning the lispe_torch bindings give once per
generator.

    effective_strategy(config)   # "greedy", "beam_search", "top_k", "top_p" or "sample"
    ignored_sampling(config)     # ("temperature", "top_k", "top_p"): set, but unused by that strategy
    sampling_warning(config)     # the warning text, or None
"""
from __future__ import annotations

from .config import GenerationConfig

# The sampling parameters and their defaults (a value at its default is "not set").
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0}
# The sampling parameters each sampling strategy uses (processors.build_chain).
USES = {"top_k": ("temperature", "top_k"), "top_p": ("temperature", "top_p"),
        "sample": tuple(SAMPLING_DEFAULTS)}
SAMPLING_STRATEGIES = tuple(USES)
# The filters that can remove the highest-scoring token (so they matter even before an argmax).
ARGMAX_CHANGING = ("typical_p",)


def effective_strategy(config: GenerationConfig) -> str:
    """The strategy a call with this config decodes with: "beam_search", "greedy" (also for a sampling
    strategy with do_sample false or temperature 0), or the sampling strategy."""
    if config.strategy == "beam_search":
        return "beam_search"
    return "greedy" if config.is_greedy else config.strategy


def greedy_because(config: GenerationConfig) -> str | None:
    """Why a sampling strategy decodes greedily ("do_sample=false", "temperature=0"); None otherwise."""
    if config.strategy not in SAMPLING_STRATEGIES:
        return None
    if not config.do_sample:
        return "do_sample=false"
    if config.temperature == 0.0:
        return "temperature=0"
    return None


def ignored_sampling(config: GenerationConfig) -> tuple[str, ...]:
    """The sampling parameters set away from their defaults that the effective strategy does not use
    (a temperature of 0 is not listed: it is what makes the decoding greedy)."""
    used = USES.get(effective_strategy(config), ())
    if greedy_because(config) == "do_sample=false":     # the filters run, then an argmax
        used = tuple(k for k in USES[config.strategy] if k in ARGMAX_CHANGING)
    out = []
    for key, default in SAMPLING_DEFAULTS.items():
        value = getattr(config, key)
        if key in used or value == default or (key == "temperature" and value == 0.0):
            continue
        out.append(key)
    return tuple(out)


def sampling_warning(config: GenerationConfig) -> str | None:
    """The warning for a call that decodes without sampling while sampling parameters are set, else
    None (a sampling strategy that leaves some filters aside is described, not warned about)."""
    strategy = effective_strategy(config)
    ignored = ignored_sampling(config)
    if strategy not in ("greedy", "beam_search") or not ignored:
        return None
    values = " ".join(f"{k}={getattr(config, k):g}" for k in ignored)
    why = greedy_because(config)
    if strategy == "beam_search":
        how = "beam search (strategy \"beam_search\") picks tokens without sampling"
    elif why == "do_sample=false":
        how = f"do_sample is false, so strategy \"{config.strategy}\" decodes greedily"
    elif why == "temperature=0":
        how = f"temperature 0 makes strategy \"{config.strategy}\" decode greedily"
    else:
        how = "the strategy is \"greedy\""
    verb = "is" if len(ignored) == 1 else "are"
    return (f"sampling parameter{'s' if len(ignored) > 1 else ''} {values} {verb} ignored: {how}; give a "
            f"sampling strategy (\"sample\", \"top_k\" or \"top_p\") to use "
            f"{'it' if len(ignored) == 1 else 'them'}")
