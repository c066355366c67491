"""The one error type of the models layer."""
from __future__ import annotations


class ModelError(ValueError):
    """A model could not be built or loaded: bad path, unsupported architecture, bad config or input.

    The message names what the user asked for and, where there is one, how to fix it.
    """


def check_regular_file(path, what: str = "model file") -> None:
    """ModelError unless `path` is a regular file (after symlinks): a FIFO, a device or a folder where a
    file is expected would block a read forever or fail with an unrelated message."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelError(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ModelError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    raise ModelError(f"{what} {str(path)!r} is {kind}, not a regular file")


def read_json_object(path, what: str = "model file") -> dict:
    """A JSON object read from a regular file; a ModelError naming the file and what is wrong otherwise."""
    import json

    check_regular_file(path, what)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ModelError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{str(path)!r} is not valid JSON (truncated or damaged?): {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data
