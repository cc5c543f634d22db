"""Bad input over HTTP: schemathesis generates requests from the server's own OpenAPI
document (positive and negative, with the admin token, and following the document's
links from a session to what acts as it and from a lease to what takes its token), and
the server must never answer one with a 5xx.

Deterministic for CI: a fixed seed, no example database, a bounded number of examples per
operation, and a time box. /v1/events is left out: it is a stream that never ends, and
test_limits.py and test_auth.py test it."""

from __future__ import annotations

import collections
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import Server

EXAMPLES = int(os.environ.get("INTERLOCK_SCHEMATHESIS_EXAMPLES", "100"))
SEED = int(os.environ.get("INTERLOCK_SCHEMATHESIS_SEED", "20261202"))
# The whole run's time box. (Not schemathesis's --max-time: it repeats the fuzzing until
# that time is spent, and the examples already bound the run.)
MAX_TIME = 240


def schemathesis(server: Server, report: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", server.url + "/v1/openapi.json",
        "--header", f"Authorization: Bearer {server.tokens['admin']}",
        "--checks", "not_a_server_error",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--generation-database", "none",
        "--exclude-path", "/v1/events",
        "--request-timeout", "20",
        "--workers", "1",
        "--no-color",
        "--report", "ndjson",
        "--report-dir", str(report),
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_TIME, stdin=subprocess.DEVNULL)


def read_report(report: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every request with its answer, and every check, from the NDJSON event report."""
    (path,) = glob.glob(str(report / "*.ndjson"))
    interactions, checks = [], []
    for line in open(path):
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished or "interactions" not in finished["recorder"]:
            continue
        recorder = finished["recorder"]
        interactions += recorder["interactions"].values()
        for case_checks in recorder["checks"].values():
            checks += case_checks
    return interactions, checks


@pytest.mark.timeout(MAX_TIME + 60)
def test_no_generated_request_gets_a_5xx(serve: Any, tmp_path: Path) -> None:
    # Long polls end at once: a generated acquire must not hold the run for minutes.
    server = serve("--max-wait", "0.5", "--session-ttl", "30")
    started = time.monotonic()
    run = schemathesis(server, tmp_path / "report")
    took = time.monotonic() - started
    interactions, checks = read_report(tmp_path / "report")
    statuses = collections.Counter(i["response"]["status_code"] for i in interactions if i.get("response"))
    failed = [c for c in checks if c["status"] != "success"]
    print(
        f"\nschemathesis: {len(interactions)} requests, {len(checks)} checks "
        f"({len(failed)} failed) in {took:.0f} s; answers by status: {dict(sorted(statuses.items()))}"
    )
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert len(interactions) >= 1000, f"only {len(interactions)} requests were sent"
    assert not failed, failed[:5]
    assert not [s for s in statuses if s >= 500], statuses
    assert statuses[200] > 100 and statuses[201] > 10, "the requests reach the engine, not only the parsers"
    # The server is still well after all that.
    r = requests.get(server.url + "/v1/health", headers=server.auth("read"), timeout=10)
    assert r.status_code == 200
    assert "panicked" not in server.log()
