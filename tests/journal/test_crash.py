"""Crash trials (crash.py): kill -9 of `interlock serve --journal` under concurrent
remote clients, again and again on one file; every acknowledged grant, release, renew,
force release, session open and close must survive, and no fence may be handed out
twice. `--trials N` or $JOURNAL_TRIALS sets the count (default 100, a few minutes);
`tests/journal/crash-1000.sh` runs 1,000."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import crash


def trial_count(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--trials") or os.environ.get("JOURNAL_TRIALS", "100"))


@pytest.mark.parametrize("slow_ms", [0.0, 1.0], ids=["disk", "slow-disk"])
def test_crash_trials(tmp_path: Path, request: pytest.FixtureRequest, slow_ms: float) -> None:
    """On the disk as it is, and on a disk whose every write to the journal waits 1 ms
    (slowdisk.c): that widens the moment a kill must hit to catch an answer sent
    before its batch was written. An engine built with that bug (answers paid before
    `Journal::append`) went through 100 trials on the plain disk unseen, and was caught
    in 7 of 30 on the slow one (test_power_cut.py catches it every time)."""
    trials = trial_count(request)
    if slow_ms:
        trials = max(1, trials // 3)
    summary = crash.run(trials, clients=6, workdir=tmp_path / "crash", quiet=True, slow_ms=slow_ms)
    print(json.dumps(summary, indent=2))
    assert not summary["violations"], "\n".join(summary["violations"][:20])
    # The trials exercised what they check.
    assert summary["held_checks"] >= trials // 4, summary
    assert summary["gone_checks"] >= trials, summary
    assert summary["acknowledged"].get("force", 0) > 0 and summary["acknowledged"].get("close", 0) > 0
    assert summary["server_exit_on_sigterm"] == 0
    assert not summary["wal_bytes_after_stop"], "the WAL is not empty after a clean stop"
