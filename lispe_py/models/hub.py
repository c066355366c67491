"""Hugging Face Hub ids (`"org/name"`) resolved to local files through `huggingface_hub`.

    from lispe_py.models.hub import resolve
    folder = resolve("HuggingFaceTB/SmolLM2-360M-Instruct")                 # config, tokenizer, shards
    path = resolve("org/Model-GGUF", quant="Q4_K_M")                         # one .gguf file
    path = resolve("org/Model-GGUF", file="Model-Q4_K_M.gguf", revision="main")

Files come from (and go to) huggingface_hub's cache, read when the call is made: `$HF_HUB_CACHE`, else
`$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. With
`$HF_HUB_OFFLINE` set (1/true/yes/on), or when `net_check` refuses the Hub's host (a sandbox without
`--allow-net huggingface.co`), only the cache is read, and an id that is not there is a ModelError
naming it. Online, only the files a model needs are downloaded (config.json, generation_config.json,
the tokenizer files, the safetensors shards and their index; or the one .gguf file), with
huggingface_hub's progress bars; `$HF_TOKEN` (or `huggingface-cli login`) authenticates gated repos.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .errors import ModelError

#: The files of a safetensors repository a model load reads (nothing else is downloaded).
MODEL_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
               "model.safetensors.index.json", "*.safetensors"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = ("1", "true", "yes", "on")

#: A sandbox's network check: takes "host" or "host:port", returns it, or raises.
NetCheck = Callable[[str], object]


def is_hub_id(name: str) -> bool:
    """Whether `name` has the shape of a Hub repository id: "org/name" (one slash, no path parts)."""
    return bool(_ID.match(name)) and ".." not in name and not name.endswith(".gguf")


def cache_dir() -> Path:
    """huggingface_hub's cache folder as the environment says now (see the module docstring)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface" / "hub"


def offline() -> bool:
    """Whether `$HF_HUB_OFFLINE` asks for the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_host() -> str:
    """The host downloads go to (`$HF_ENDPOINT`'s, else huggingface.co)."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    return urlparse(endpoint).netloc or "huggingface.co"


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (a branch/tag name through refs/, or a commit
    hash) in the cache, or None."""
    repo = cache_dir() / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    ref = repo / "refs" / rev
    if ref.is_file():
        rev = ref.read_text(encoding="utf-8").strip()
    folder = repo / "snapshots" / rev
    return folder if folder.is_dir() else None


def _pick_gguf(repo_id: str, files: list[str], quant: str | None) -> str:
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf"))
    if quant is not None:
        pattern = re.compile(r"(?<![A-Za-z0-9])" + re.escape(quant) + r"(?![A-Za-z0-9_])", re.IGNORECASE)
        hits = [f for f in ggufs if pattern.search(Path(f).name)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ModelError(f"{repo_id}: no .gguf file for quant {quant!r}; the repository has: "
                             + (", ".join(ggufs) or "no .gguf files"))
        raise ModelError(f"{repo_id}: several .gguf files match quant {quant!r} ({', '.join(hits)}); "
                         "name one with \"file\" (split GGUF files are not supported)")
    if len(ggufs) == 1:
        return ggufs[0]
    raise ModelError(f"{repo_id}: the repository has several .gguf files ({', '.join(ggufs)}); choose one "
                     "with \"file\" or \"quant\" (e.g. {\"quant\":\"Q4_K_M\"})")


def resolve(repo_id: str, revision: str | None = None, file: str | None = None, quant: str | None = None,
            net_check: NetCheck | None = None, token: str | bool | None = None) -> Path:
    """The local path of a Hub model: a snapshot folder (safetensors repos) or a .gguf file.

    file: the .gguf file to take from a GGUF repository; quant: a quantization name ("Q4_K_M") picking
    the .gguf file whose name carries it; neither: the safetensors model, or the repository's only
    .gguf file. net_check: called with the Hub's host before any network access; a refusal (any
    exception) means the cache only."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise ModelError(f"{repo_id!r} is a Hugging Face Hub id, which needs huggingface_hub: "
                         "pip install huggingface_hub") from None
    if file is not None and quant is not None:
        raise ModelError(f"{repo_id}: give \"file\" or \"quant\", not both")
    local_only, why = offline(), "HF_HUB_OFFLINE is set"
    if not local_only and net_check is not None:
        try:
            net_check(hub_host())
        except Exception as exc:  # the sandbox's refusal: fall back to the cache, and say why on a miss
            local_only, why = True, str(getattr(exc, "message", exc))
    if local_only:
        return _from_cache(repo_id, revision, file, quant, why)
    return _download(repo_id, revision, file, quant, token)


def _not_cached(repo_id: str, revision: str | None, why: str, what: str = "") -> ModelError:
    rev = f" (revision {revision!r})" if revision else ""
    return ModelError(f"the Hugging Face model {repo_id!r}{rev}{what} is not in the cache {str(cache_dir())!r} "
                      f"and cannot be downloaded: {why}")


def _from_cache(repo_id: str, revision: str | None, file: str | None, quant: str | None, why: str) -> Path:
    snapshot = cached_snapshot(repo_id, revision)
    if snapshot is None:
        raise _not_cached(repo_id, revision, why)
    files = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    if file is not None:
        if not (snapshot / file).is_file():
            raise _not_cached(repo_id, revision, why, f" file {file!r}")
        return snapshot / file
    if quant is not None or not (snapshot / "config.json").is_file():
        if not any(f.lower().endswith(".gguf") for f in files):
            raise _not_cached(repo_id, revision, why, " (no config.json or .gguf file in its snapshot)")
        return snapshot / _pick_gguf(repo_id, files, quant)
    return snapshot


def _download(repo_id: str, revision: str | None, file: str | None, quant: str | None,
              token: str | bool | None) -> Path:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub import errors as hf_errors

    cache = str(cache_dir())

    def failed(exc: Exception) -> ModelError:
        if isinstance(exc, hf_errors.GatedRepoError):
            return ModelError(f"{repo_id}: a gated repository; accept its licence on the Hub and set HF_TOKEN")
        if isinstance(exc, hf_errors.RepositoryNotFoundError):
            return ModelError(f"{repo_id}: no such repository on the Hugging Face Hub (or a private one: set HF_TOKEN)")
        if isinstance(exc, hf_errors.RevisionNotFoundError):
            return ModelError(f"{repo_id}: no revision {revision!r} on the Hub")
        if isinstance(exc, hf_errors.EntryNotFoundError):
            return ModelError(f"{repo_id}: no file {file!r} in the repository")
        return ModelError(f"{repo_id}: download from the Hugging Face Hub failed: {exc}")

    try:
        if file is None:
            try:
                files = HfApi().list_repo_files(repo_id, revision=revision, token=token)
            except (hf_errors.RepositoryNotFoundError, hf_errors.RevisionNotFoundError):
                raise
            except Exception as exc:  # no connection: what the cache holds, if anything
                try:
                    return _from_cache(repo_id, revision, None, quant, f"the Hub cannot be reached ({exc})")
                except ModelError:
                    raise failed(exc) from None
            if quant is not None or "config.json" not in files:
                file = _pick_gguf(repo_id, files, quant)
        if file is not None:
            return Path(hf_hub_download(repo_id, file, revision=revision, cache_dir=cache, token=token))
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, token=token,
                                      allow_patterns=MODEL_FILES))
    except ModelError:
        raise
    except Exception as exc:  # huggingface_hub's HTTP, validation and OS errors
        raise failed(exc) from None
