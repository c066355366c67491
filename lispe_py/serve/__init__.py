"""`lispe serve`: our engine behind an OpenAI-compatible HTTP API with continuous batching.

    lispe serve MODEL [--host H] [--port P] [--dtype D] [--quantize int8|int4] [--api-key-env NAME]
                      [--served-model-name NAME] [--max-batch N] [--max-model-len N]

`engine.Engine` is the scheduler (one worker thread, the model's KV cache rows as the batch),
`api` the Starlette application, `cli.main` the command. See docs/serving.md.
"""
from .cli import serve_model
from .engine import Engine, Request

__all__ = ["Engine", "Request", "serve_model"]
