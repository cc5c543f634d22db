"""Fixtures of the compat tests. Every module is tested twice: on an embedded engine (the
app's own, in its process) and on a server (`interlock.connect(url)` to an interlock server
in another process than the app)."""

from __future__ import annotations

import pathlib
from typing import Iterator

import pytest
from support import MODES, App, Served

import interlock


@pytest.fixture(params=MODES)
def engine(request: pytest.FixtureRequest) -> Iterator[interlock.Engine]:
    """An engine for the Python APIs: embedded, or `interlock.connect()` to a server."""
    if request.param == "embedded":
        with interlock.Engine() as eng:
            yield eng
        return
    served = Served()
    try:
        with interlock.connect(served.url) as eng:
            yield eng
    finally:
        served.close()


def _app(
    name: str,
    request: pytest.FixtureRequest,
    tmp: pathlib.Path,
    *extra: str,
    health: str = "/health",
) -> Iterator[App]:
    app = App(name, request.param, tmp / f"{name}-{request.param}.log", *extra, health=health)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module", params=MODES)
def lablink_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    yield from _app("lablink", request, tmp_path_factory.mktemp("lablink"))


@pytest.fixture(scope="module", params=MODES)
def alchemist_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    yield from _app("alchemist", request, tmp_path_factory.mktemp("alchemist"), "--lock-ttl", "60")


@pytest.fixture(scope="module", params=MODES)
def bluesky_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    yield from _app(
        "bluesky", request, tmp_path_factory.mktemp("bluesky"), health="/api/health/live"
    )


@pytest.fixture(scope="module", params=MODES)
def gaia_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    yield from _app("gaia", request, tmp_path_factory.mktemp("gaia"))
