"""Helpers shared by the Python tests."""

from __future__ import annotations

import threading
import time
from typing import Callable


def wait_until(condition: Callable[[], object], what: str = "condition", limit: float = 10.0) -> None:
    """Waits for something another thread does (a callback, an expiry). The limit only
    keeps a broken test from hanging; nothing here measures speed."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {limit} s")
        time.sleep(0.005)


def thread_name() -> str:
    """The OS name of the calling thread (the engine's Rust threads name themselves;
    Python sees only a dummy thread object for them)."""
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().strip()
