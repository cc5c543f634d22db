"""Fixtures shared by the Python tests, and the two modes they run in (README.md): on an
embedded engine (`--engine=embedded`, the default) and on `interlock.connect()` to a
server in another process (`--engine=remote`, or INTERLOCK_TEST_ENGINE=remote). Tests
marked `embedded_only` are about in-process behaviour and are skipped in the remote mode;
README.md lists them, each with its reason."""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from engines import MODES, Engines, Factory

import interlock


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        choices=MODES,
        default=os.environ.get("INTERLOCK_TEST_ENGINE") or "embedded",
        help="embedded: every engine is in this process; remote: every engine is a "
        "server's in another process, reached by interlock.connect() (default: "
        "$INTERLOCK_TEST_ENGINE, else embedded)",
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = config.getoption("--engine")
    if mode not in MODES:
        raise pytest.UsageError(f"INTERLOCK_TEST_ENGINE={mode!r}: expected one of {', '.join(MODES)}")


def pytest_report_header(config: pytest.Config) -> str:
    return f"interlock engines: {config.getoption('--engine')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--engine") != "remote":
        return
    skip = pytest.mark.skip(reason="in-process only (tests/python/README.md)")
    for item in items:
        if item.get_closest_marker("embedded_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def engine_factory() -> Iterator[Factory]:
    """The engine factory process of the remote mode: one per pytest session."""
    factory = Factory()
    yield factory
    factory.close()


@pytest.fixture
def make_engine(request: pytest.FixtureRequest) -> Iterator[Engines]:
    """`make_engine(**config)`: a fresh engine as `interlock.Engine(**config)` makes one,
    in the mode of the run. Every engine a test uses comes from here."""
    mode = request.config.getoption("--engine")
    factory = request.getfixturevalue("engine_factory") if mode == "remote" else None
    engines = Engines(mode, factory)
    yield engines
    engines.close()


@pytest.fixture
def eng(make_engine: Engines) -> Iterator[interlock.Engine]:
    engine = make_engine()
    yield engine
    engine.close()
