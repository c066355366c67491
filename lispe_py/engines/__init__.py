"""Generation engines behind one interface (base.Engine): the local one (our model, in this process)
and remote ones (an OpenAI-compatible server: vLLM, TGI, llama.cpp's server, `lispe serve`).

    from lispe_py.engines import RemoteEngine, engine_for
    eng = RemoteEngine("http://127.0.0.1:8000/v1", {"timeout": 30})
    eng.generate_text("Once upon a time", GenerationConfig.from_dict({"max_length": 20}))

See docs/scale-out.md.
"""
from .base import BatchError, Engine, EngineError, engine_for
from .local import LocalEngine


def __getattr__(name: str):  # RemoteEngine imports openai/httpx: only when asked for
    if name in ("RemoteEngine", "RemoteTokenizer", "CAPABILITIES"):
        from . import remote
        return getattr(remote, name)
    raise AttributeError(name)


__all__ = ["BatchError", "Engine", "EngineError", "LocalEngine", "RemoteEngine", "engine_for"]
