"""The Python rows of the server benchmarks (bench/remote.sh runs this).

    python bench/python/remote.py --url http://127.0.0.1:PORT            # full run
    python bench/python/remote.py --url http://127.0.0.1:PORT --smoke    # tiny run

Each row is timed as in bench.py (median of ~2 ms batches); the rows take turns, round
after round, so that a slow spell of the VM falls on all of them, and each row's figure
is the median over the rounds. Rows:

- the floor: a raw TCP round trip between this process and another Python process;
- one remote pair (`interlock.connect`, the server at --url), beside redis-py's `Lock`
  against a `redis-server` this script starts;
- one pair over HTTP /v1 with `requests` (acquire, then release, on one kept-alive
  connection), and with `curl`: one invocation acquires N resources on one connection,
  a second releases them; a pair is the median `time_total` of an acquire plus that of
  a release;
- one durable pair (`Engine(journal=...)`), beside the disk's own floor: overwriting one
  byte of a file and `os.fsync`, in the same directory.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import interlock
from bench import Pair, median_pair_ns, pair_of, redis_server

MESSAGE = b"x" * 64  # about the size of the acquire message a pair sends


def serve_echo() -> None:
    """The floor's other process: echoes one connection on a free port (printed)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(4096):
            conn.sendall(data)


def echo_round_trip() -> tuple[Pair, Callable[[], None]]:
    """A round trip to an echo child process, and how to stop the child."""
    child = subprocess.Popen([sys.executable, __file__, "--echo"], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    conn = socket.create_connection(("127.0.0.1", int(child.stdout.readline())))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def round_trip() -> None:
        conn.sendall(MESSAGE)
        got = 0
        while got < len(MESSAGE):
            got += len(conn.recv(len(MESSAGE) - got))

    def stop() -> None:
        conn.close()
        child.wait()

    return round_trip, stop


def http_pair(url: str) -> Pair:
    import requests

    http = requests.Session()
    opened = http.post(f"{url}/v1/sessions", json={"name": "bench-http"})
    opened.raise_for_status()
    sid, secret = opened.json()["id"], opened.json()["secret"]
    headers = {"Interlock-Session-Secret": secret}

    def pair() -> None:
        got = http.post(f"{url}/v1/sessions/{sid}/acquire", json={"resources": ["http-pair"]}, headers=headers)
        got.raise_for_status()
        token = got.json()["leases"][0]["token"]
        http.post(f"{url}/v1/release", json={"resource": "http-pair", "token": token}).raise_for_status()

    return pair


def curl_pair_ns(url: str, n: int) -> float:
    """Per pair, from two curl invocations of `n` requests each (see the module's doc)."""
    import json

    import requests

    opened = requests.post(f"{url}/v1/sessions", json={"name": "bench-curl"}).json()
    secret = opened["secret"]

    def run(requests_: list[tuple[str, dict[str, object]]]) -> list[tuple[str, float]]:
        # One config block a request, `next` between them: curl keeps the connection.
        blocks = [
            f"url = \"{url}{path}\"\nheader = \"Content-Type: application/json\"\n"
            f"header = \"Interlock-Session-Secret: {secret}\"\n"
            f"data = {json.dumps(json.dumps(body))}\nsilent\n"
            'write-out = "\\n%{time_total} %{num_connects}\\n"\n'
            for path, body in requests_
        ]
        out = subprocess.run(
            ["curl", "--config", "-"], input="next\n".join(blocks), capture_output=True, text=True, check=True
        ).stdout.splitlines()
        bodies, stats = out[0::2], [line.split() for line in out[1::2]]
        connects = sum(int(c) for _, c in stats)
        assert connects == 1, f"curl made {connects} connections for {n} requests"
        return [(body, float(t)) for body, (t, _) in zip(bodies, stats)]

    names = [f"curl-{i}" for i in range(n)]
    acquired = run([(f"/v1/sessions/{opened['id']}/acquire", {"resources": [r]}) for r in names])
    tokens = [json.loads(body)["leases"][0]["token"] for body, _ in acquired]
    released = run([("/v1/release", {"resource": r, "token": t}) for r, t in zip(names, tokens)])

    def med(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    return (med([t for _, t in acquired]) + med([t for _, t in released])) * 1e9


def fsync_floor(path: str) -> Pair:
    """Overwrites one byte in place and fsyncs: what one commit costs the disk at least."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)

    def pair() -> None:
        os.pwrite(fd, b"x", 0)
        os.fsync(fd)

    return pair


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="an interlock server (interlock serve)")
    ap.add_argument("--smoke", action="store_true", help="tiny run, numbers meaningless")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo:
        serve_echo()
        return 0
    if args.url is None:
        ap.error("--url is required")
    rounds, secs = (1, 0.05) if args.smoke else (args.rounds, 1.0)

    print(f"# interlock Python remote bench, {time.strftime('%Y-%m-%d %H:%M')}, server {args.url}")
    floor, stop_echo = echo_round_trip()
    remote = interlock.connect(args.url)
    rs = remote.session("bench-remote")
    with tempfile.TemporaryDirectory() as tmp, redis_server() as port:
        durable = interlock.Engine(journal=os.path.join(tmp, "locks.db"))
        ds = durable.session("bench-durable")
        pairs: dict[str, tuple[Pair, str]] = {
            "TCP round trip between two processes (floor)": (floor, ""),
            "remote pair (interlock.connect)": (lambda: rs.acquire("remote-pair").release(), "floor"),
            "HTTP pair (requests, kept-alive)": (http_pair(args.url), "floor"),
            "os.fsync of a 1-byte overwrite (disk floor)": (fsync_floor(os.path.join(tmp, "fsync")), ""),
            "durable pair (Engine(journal=...))": (lambda: ds.acquire("durable-pair").release(), "disk"),
        }
        if port is not None:
            import redis

            lock = redis.Redis(host="127.0.0.1", port=port).lock("bench-lock", timeout=30, blocking_timeout=60)
            pairs["redis-py Lock (redis-server, no persistence)"] = (pair_of(lock), "floor")
        # name -> (one round's figure in ns, the row it is compared with)
        rows: dict[str, tuple[Callable[[], float], str]] = {
            name: ((lambda p=pair: median_pair_ns(p, secs)), ref) for name, (pair, ref) in pairs.items()
        }
        curl_n = 10 if args.smoke else 500
        rows[f"HTTP pair (curl, {curl_n} of each on one connection)"] = (lambda: curl_pair_ns(args.url, curl_n), "floor")
        runs: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(rounds):
            for name, (measure, _) in rows.items():
                runs[name].append(measure())
        durable.close()
    remote.close()
    stop_echo()

    med = {name: sorted(xs)[len(xs) // 2] for name, xs in runs.items()}
    refs = {
        "floor": med["TCP round trip between two processes (floor)"],
        "disk": med["os.fsync of a 1-byte overwrite (disk floor)"],
    }
    print("\n| row | each round | median | ÷ its floor |")
    print("| --- | --- | ---: | ---: |")
    for name, (_, ref) in rows.items():
        each = ", ".join(f"{ns / 1000:.1f}" for ns in runs[name])
        ratio = f"{med[name] / refs[ref]:.2f}×" if ref else ""
        print(f"| {name} | {each} µs | {med[name] / 1000:.1f} µs | {ratio} |")
    redis_row = "redis-py Lock (redis-server, no persistence)"
    if redis_row in med:
        print(f"\nredis-py Lock ÷ remote pair: {med[redis_row] / med['remote pair (interlock.connect)']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
