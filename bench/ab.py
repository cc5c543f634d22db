"""A/B of two builds of interlock, process by process (bench/RESULTS.md, "A/B").

    python3 bench/ab.py --a OLD_TREE:OLD_TARGET_DIR --b NEW_TREE:NEW_TARGET_DIR [--rounds 5]

Each tree must have been built (`cargo bench -p interlock --no-run` with its target
directory, and `bash py/install-venv.sh` for its .venv). Each round runs, for A then B
(B then A in odd rounds, so that a drift of the VM's speed falls on both alike): the
criterion rows of core/benches/pairs.rs, the pipelined row of core/benches/load.rs, and
the Python uncontended pair (bench.py's timing, this tree's copy for both). Prints every
process's figure, then the medians and ranges.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import statistics
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY_PAIR = f"""
import sys
sys.path.insert(0, {str(HERE / "python")!r})
from bench import median_pair_ns
import interlock
s = interlock.Engine().session("ab")
print(median_pair_ns(lambda: s.acquire("reactor-1").release(), 2.0))
"""
CRITERION = re.compile(r"uncontended_pair/(\w+)\s+time:\s+\[\S+ \S+ (\S+) (\S+)")
UNIT = {"ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}


def newest(pattern: str) -> str:
    """The newest executable cargo left for a bench target (deps/NAME-HASH)."""
    found = [p for p in glob.glob(pattern) if "." not in os.path.basename(p) and os.access(p, os.X_OK)]
    if not found:
        raise SystemExit(f"no bench binary {pattern}: build it first")
    return max(found, key=os.path.getmtime)


def measure(tree: str, target: str) -> dict[str, float]:
    """One process of each benchmark; every row in ns (pipelined: pairs/s)."""
    rows: dict[str, float] = {}
    pairs = newest(f"{target}/release/deps/pairs-*")
    out = subprocess.run(
        [pairs, "--bench", "--noplot", "--warm-up-time", "1", "--measurement-time", "3"],
        cwd=tree, capture_output=True, text=True, check=True,
    ).stdout
    for name, value, unit in CRITERION.findall(out):
        rows[name] = float(value) * UNIT[unit]
    load = newest(f"{target}/release/deps/load-*")
    out = subprocess.run([load, "--bench", "pipelined"], cwd=tree, capture_output=True, text=True, check=True).stdout
    rows["pipelined"] = float(re.search(r"= (\d+) pairs/s", out).group(1))  # type: ignore[union-attr]
    out = subprocess.run([f"{tree}/.venv/bin/python", "-c", PY_PAIR], capture_output=True, text=True, check=True)
    rows["python_pair"] = float(out.stdout)
    return rows


def show(v: float, row: str) -> str:
    return f"{v:,.0f}" if row == "pipelined" else f"{v / 1000:.3f} µs" if v >= 100 else f"{v:.1f} ns"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="TREE:TARGET_DIR of the reference build")
    ap.add_argument("--b", required=True, help="TREE:TARGET_DIR of the build under test")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    builds = {"A": args.a.split(":"), "B": args.b.split(":")}
    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for which in ("A", "B") if r % 2 == 0 else ("B", "A"):
            rows = measure(*builds[which])
            got[which].append(rows)
            print(f"round {r + 1} {which}: " + ", ".join(f"{k} {show(v, k)}" for k, v in rows.items()), flush=True)
    print(f"\nA = {args.a}, B = {args.b}; {args.rounds} processes each\n")
    print("| row | A: median (range) | B: median (range) | B ÷ A (medians) |")
    print("| --- | --- | --- | ---: |")
    for row in got["A"][0]:
        a = [g[row] for g in got["A"]]
        b = [g[row] for g in got["B"]]
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"| {row} | {show(ma, row)} ({show(min(a), row)}–{show(max(a), row)}) "
            f"| {show(mb, row)} ({show(min(b), row)}–{show(max(b), row)}) | {mb / ma:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
