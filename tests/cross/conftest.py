"""Fixtures of the cross-process tests (helpers.py has the server processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from helpers import Server, start_server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`serve(*args, roles=...)` starts a server; every one is stopped at teardown."""
    started: list[Server] = []

    def start(*args: str, **kw: Any) -> Server:
        kw.setdefault("name", f"server{len(started)}")
        s = start_server(tmp_path, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
    # Whatever a test sent, no server panicked (tokio would have caught it in a task,
    # and the test might not have noticed).
    for s in started:
        assert "panicked" not in s.log(), f"the server panicked:\n{s.log()[-4000:]}"


@pytest.fixture
def server(serve: Callable[..., Server]) -> Server:
    """A server with a read, a client and an admin token, and default limits."""
    return serve()

