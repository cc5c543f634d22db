"""Fixtures of the journal tests: a temporary directory per test, `interlock serve`
processes that are killed when the test ends, and the trial count of the crash test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import Server, server_binary  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--trials", type=int, default=None,
                     help="crash trials of test_crash.py (default: $JOURNAL_TRIALS, else 100)")


def pytest_configure(config: pytest.Config) -> None:
    if not server_binary().exists():
        raise pytest.UsageError(f"{server_binary()} is missing: run `cargo build -p interlock-cli` "
                                "(tests/journal/run.sh does), or set INTERLOCK_BIN")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """`serve(journal=None, *args, port=0)`: a started `interlock serve --journal FILE`
    (FILE defaults to tmp_path/locks.db), killed at the end of the test."""
    servers: list[Server] = []

    def make(*args: str, journal: Path | None = None, port: int = 0, start: bool = True) -> Server:
        s = Server(journal or tmp_path / "locks.db", port=port, args=args,
                   log=tmp_path / f"server{len(servers)}.log")
        servers.append(s)
        return s.start() if start else s

    yield make
    for s in servers:
        s.close()
