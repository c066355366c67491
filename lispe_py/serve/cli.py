"""`lispe serve MODEL [options]`: load a model and serve it over the OpenAI HTTP API (uvicorn).

Once ready it prints exactly one line, `lispe serve: NAME at http://HOST:PORT/v1`, and flushes it.
Ctrl-C / SIGTERM stop accepting new connections, let the requests in flight finish, and exit 0.
Exit status 2 on a usage error, 1 when the model cannot be loaded or the port cannot be bound.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

USAGE = "lispe serve MODEL [--host 127.0.0.1] [--port 8000] [--dtype float32|bfloat16|float16] " \
        "[--quantize int8|int4] [--activations int16|int8] [--api-key-env NAME] " \
        "[--served-model-name NAME] [--max-batch N] [--max-model-len N] [--threads N]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors: one line, status 2
        sys.stderr.write(f"lispe serve: {message}\nusage: {USAGE}\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lispe serve", usage=USAGE,
                description="Serve a model over the OpenAI HTTP API with continuous batching (docs/serving.md).")
    p.add_argument("model", help='a Hugging Face folder, a .gguf file, or "SmolLM2-135M-Instruct"')
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--quantize", choices=["int8", "int4"], default=None)
    p.add_argument("--activations", choices=["int16", "int8"], default=None,
                   help="with --quantize: round the int4, int8 (groups of 32) and GGUF Q4_K/Q6_K layers' inputs "
                        "to 8 bits as llama.cpp does (faster, less exact); default int16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--api-key-env", default=None, metavar="NAME",
                   help="require 'Authorization: Bearer KEY', KEY read from this environment variable")
    p.add_argument("--served-model-name", default=None, metavar="NAME", help="default: MODEL as given")
    p.add_argument("--max-batch", type=int, default=16, metavar="N", help="rows decoded together (default 16)")
    p.add_argument("--max-model-len", type=int, default=None, metavar="N",
                   help="longest prompt + completion (default: the model's context)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads (default: torch's)")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if args.port < 0 or args.port > 65535:
        _parser().error(f"--port must be in 0..65535, got {args.port}")
    if args.max_batch < 1:
        _parser().error(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.max_model_len is not None and args.max_model_len < 2:
        _parser().error(f"--max-model-len must be >= 2, got {args.max_model_len}")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            sys.stderr.write(f"lispe serve: --api-key-env {args.api_key_env}: that environment variable is "
                             "not set or empty\n")
            return 2
    try:
        import uvicorn  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        sys.stderr.write("lispe serve: needs starlette and uvicorn: pip install 'lispe_py[serve]'\n")
        return 1

    import torch

    from ..models import ModelError, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model, dtype=args.dtype, device=args.device, quantize=args.quantize,
                           activations=args.activations)
    except (ModelError, ValueError, OSError) as exc:
        sys.stderr.write(f"lispe serve: cannot load {args.model!r}: {exc}\n")
        return 1
    return serve_model(model, args.served_model_name or args.model, host=args.host, port=args.port,
                       api_key=api_key, max_batch=args.max_batch, max_model_len=args.max_model_len,
                       source=str(args.model))


def serve_model(model, name: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                max_batch: int = 16, max_model_len: int | None = None, source: str | None = None) -> int:
    """Serve an already loaded model (any `lispe_py.models` model: `load_model`, `model_from_hf`,
    `create_model`) under `name` until Ctrl-C / SIGTERM; returns the exit status (0 after a drain).

        from lispe_py.models import load_model
        from lispe_py.serve import serve_model
        serve_model(load_model("SmolLM2-135M-Instruct", quantize="int4"), "smol", port=8000)
    """
    from .api import Server, build_app
    from .engine import Engine

    model.prompt_cache = False
    engine = Engine(model, max_batch=max_batch, max_model_len=max_model_len)
    server = Server(engine, name, source or name, api_key)
    return _run(build_app(server), engine, name, host, port)


def _run(app, engine, name: str, host: str, port: int) -> int:
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.should_exit or not self.servers:
                return
            sock = self.servers[0].sockets[0]
            bound = sock.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            sys.stdout.write(f"lispe serve: {name} at http://{shown}:{bound}/v1\n")
            sys.stdout.flush()

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            # a signal asked for a clean stop: do not re-raise it once shut down (exit status 0)
            self._captured_signals.clear()

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            access_log=False, timeout_graceful_shutdown=None)
    srv = _Server(config)
    engine.start()
    try:
        srv.run()
    except SystemExit:  # uvicorn gives up on a port it cannot bind (it has said why on stderr)
        pass
    finally:
        engine.stop(timeout=30)
    if not srv.started:
        sys.stderr.write(f"lispe serve: could not listen on {host}:{port}\n")
        return 1
    return 0
