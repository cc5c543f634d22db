"""Fixtures shared by the Python tests."""

from __future__ import annotations

from typing import Iterator

import pytest

import interlock


@pytest.fixture
def eng() -> Iterator[interlock.Engine]:
    engine = interlock.Engine()
    yield engine
    engine.close()
