"""interlock beside the locks Python programs use today, in one run.

    python bench/python/bench.py            # full run (about a minute)
    python bench/python/bench.py --smoke    # tiny run, so the code never rots

Rows: one uncontended acquire + release pair (median per pair), then 4 threads on one
lock for a fixed time (pairs per second, p50/p99 of a pair, Jain's fairness index over
the per-thread counts). Ratios are against interlock's `Session.acquire` row of the
same run. Rows across processes (the server mode) are in remote.py, beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import interlock

Pair = Callable[[], None]


def median_pair_ns(pair: Pair, seconds: float) -> float:
    """Median time of one pair, from batches sized to about 2 ms each."""
    batch = 1
    while True:
        t = time.perf_counter_ns()
        for _ in range(batch):
            pair()
        spent = time.perf_counter_ns() - t
        if spent > 2_000_000 or batch >= 1 << 16:
            break
        batch *= 2
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t = time.perf_counter_ns()
        for _ in range(batch):
            pair()
        samples.append((time.perf_counter_ns() - t) / batch)
    return statistics.median(samples)


def contend(make_pair: Callable[[int], Pair], threads: int, seconds: float) -> dict[str, float]:
    """`threads` threads run their pair on one lock for `seconds`."""
    counts = [0] * threads
    lat: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def run(i: int) -> None:
        pair = make_pair(i)
        start.wait()
        while not stop.is_set():
            t = time.perf_counter_ns()
            pair()
            lat[i].append(time.perf_counter_ns() - t)
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    every = sorted(x for per in lat for x in per)
    total = sum(counts)
    return {
        "pairs_per_s": total / seconds,
        "p50_us": every[len(every) // 2] / 1000 if every else float("nan"),
        "p99_us": every[int(len(every) * 0.99)] / 1000 if every else float("nan"),
        "jain": total**2 / (threads * sum(c * c for c in counts)) if total else float("nan"),
        "counts": counts,
    }


@contextlib.contextmanager
def redis_server() -> Iterator[int | None]:
    """A redis-server on 127.0.0.1 for the run, stopped by its pid; None if absent."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield port
    finally:
        os.kill(proc.pid, 15)
        proc.wait()


def pair_of(lock: object) -> Pair:
    """acquire() then release() on `lock`."""
    acquire, release = lock.acquire, lock.release  # type: ignore[attr-defined]

    def pair() -> None:
        acquire()
        release()

    return pair


def interlock_rows(eng: interlock.Engine) -> dict[str, Callable[[int], Pair]]:
    def plain(i: int) -> Pair:
        s = eng.session(f"bench-{i}")
        return lambda: s.acquire("reactor-1").release()

    def with_block(i: int) -> Pair:
        s = eng.session(f"bench-with-{i}")

        def pair() -> None:
            with s.lock("reactor-1"):
                pass

        return pair

    return {"interlock Session.acquire": plain, "interlock with s.lock()": with_block}


def peer_rows(tmp: str, redis_port: int | None) -> tuple[dict[str, Callable[[int], Pair]], list[str]]:
    import fasteners
    import filelock
    import portalocker

    shared = threading.Lock()
    path = os.path.join(tmp, "peer.lock")
    rows: dict[str, Callable[[int], Pair]] = {
        "threading.Lock": lambda i: pair_of(shared),
    }

    def file_lock(i: int) -> Pair:
        return pair_of(filelock.FileLock(path, thread_local=False))

    def fasteners_lock(i: int) -> Pair:
        return pair_of(fasteners.InterProcessLock(path + ".fasteners"))

    def portalocker_lock(i: int) -> Pair:
        return pair_of(portalocker.Lock(path + ".portalocker", timeout=60))

    rows["filelock.FileLock"] = file_lock
    rows["fasteners.InterProcessLock"] = fasteners_lock
    rows["portalocker.Lock"] = portalocker_lock
    notes = [
        "fasteners.InterProcessLock uses POSIX record locks, which belong to the process: "
        "it does not exclude threads, so it has no contended row."
    ]
    if redis_port is None:
        notes.append("redis-py Lock: no redis-server here (Debian package redis-server); row skipped.")
    else:
        import redis

        def redis_lock(i: int) -> Pair:
            client = redis.Redis(host="127.0.0.1", port=redis_port)
            return pair_of(client.lock("bench-lock", timeout=30, blocking_timeout=60))

        rows["redis-py Lock"] = redis_lock
    return rows, notes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny run, numbers meaningless")
    ap.add_argument("--pairs-only", action="store_true", help="only the uncontended pairs")
    args = ap.parse_args()
    pair_secs, contend_secs = (0.05, 0.2) if args.smoke else (2.0, 5.0)

    print(f"# interlock Python bench, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    eng = interlock.Engine()
    with tempfile.TemporaryDirectory() as tmp, redis_server() as port:
        peers, notes = peer_rows(tmp, port)
        ours = interlock_rows(eng)
        rows = {**ours, **peers}

        print("\n## One uncontended acquire + release pair (median)\n")
        print("| lock | per pair | its time ÷ interlock's |")
        print("| --- | ---: | ---: |")
        medians = {name: median_pair_ns(make(0), pair_secs) for name, make in rows.items()}
        ref = medians["interlock Session.acquire"]
        for name, ns in medians.items():
            print(f"| {name} | {ns / 1000:.2f} µs | {ns / ref:.2f}× |")

        if args.pairs_only:
            eng.close()
            return 0
        print("\n## 4 threads on one lock\n")
        print("| lock | pairs/s | p50 | p99 | Jain's index | per-thread counts |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for name, make in rows.items():
            if name == "fasteners.InterProcessLock":
                continue
            r = contend(make, 4, contend_secs)
            counts = "/".join(str(c) for c in r["counts"])
            print(
                f"| {name} | {r['pairs_per_s']:.0f} | {r['p50_us']:.1f} µs | {r['p99_us']:.1f} µs "
                f"| {r['jain']:.3f} | {counts} |"
            )
        print()
        for n in notes:
            print(f"- {n}")
        print("- Rows across processes (the server mode): bench/python/remote.py, run by bench/remote.sh.")
    eng.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
