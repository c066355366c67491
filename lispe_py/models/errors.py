"""The one error type of the models layer."""
from __future__ import annotations


class ModelError(ValueError):
    """A model could not be built or loaded: bad path, unsupported architecture, bad config or input.

    The message names what the user asked for and, where there is one, how to fix it.
    """
