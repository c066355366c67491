"""Session fixtures: one `lispe serve` and one llama.cpp server (servers.py) shared by the remote tests."""
from __future__ import annotations

import pytest

from servers import start_lispe, start_llama_cpp


@pytest.fixture(scope="session")
def lispe_server():
    s = start_lispe()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def llama_server():
    s = start_llama_cpp()
    yield s
    s.stop()


@pytest.fixture(scope="session", params=["lispe", "llama-cpp-python"])
def server(request):
    return request.getfixturevalue("lispe_server" if request.param == "lispe" else "llama_server")
