"""Fixtures of the cross-process scenarios (see harness.py and run.sh)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Lab  # noqa: E402

NOTES: list[tuple[str, list[str]]] = []


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Processes, servers and proxies of one test, stopped at its end; logs in
    SCENARIO_LOG_DIR/TEST_NAME/."""
    lab = Lab(request.node.name)
    try:
        yield lab
    finally:
        lab.close()
        if lab.notes:
            NOTES.append((request.node.name, lab.notes))


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not NOTES:
        return
    terminalreporter.section("scenario measurements")
    for name, notes in NOTES:
        terminalreporter.write_line(f"{name}:")
        for n in notes:
            terminalreporter.write_line(f"    {n}")
