"""One lab PC's program: it connects to the lab's interlock server and drives the shared
power supply when its turn comes. `run.sh` starts a server and two of these at once.

    python lab_pc.py URL NAME STEPS
"""

from __future__ import annotations

import sys
import time

import interlock


def main() -> None:
    url, name, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with interlock.connect(url, session_ttl=5.0) as eng:
        session = eng.session(name, metadata={"program": "lab_pc.py"})
        for step in range(steps):
            # Waits in the server's FIFO queue while the other PC holds the supply.
            with session.lock("psu", timeout=30.0) as lease:
                print(f"{name}: step {step + 1}/{steps}: I drive the power supply (fence {lease.fence})", flush=True)
                holders = eng.status("psu")["holders"]
                assert [h["session_name"] for h in holders] == [name], holders
                time.sleep(0.2)  # the work: the other PC waits meanwhile
        print(f"{name}: done", flush=True)


if __name__ == "__main__":
    main()
