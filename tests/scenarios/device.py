"""A fence-checking "device": an instrument driver that only obeys the current holder.

    python device.py URL RESOURCE EXEC_SECONDS

Listens on 127.0.0.1 (a free port, told in its first line), one thread per client
connection. A client sends JSON lines {"client", "fence", "n", ...}; the device answers
{"accepted": bool, "why"} on the same connection. Like a real instrument it does one
command at a time: under its own lock it refuses a fence lower than the highest it has
obeyed, asks the interlock server `check_fence(RESOURCE, fence)` (directly, not through
any proxy), and only if that is true "executes" the command (sleeps EXEC_SECONDS).

Every command goes to stdout as one JSON line: {"ev": "command", "client", "fence",
"n", "zombie", "received", "checked" (when check_fence answered), "done" (end of
execution), "accepted", "why"}; times are time.time() of this host.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any, Optional

import interlock

out = threading.Lock()


def log(**rec: Any) -> None:
    with out:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()


def main() -> None:
    url, resource, exec_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    eng = interlock.connect(url)
    device = threading.Lock()
    highest = [0]

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("r")
        for line in reader:
            cmd = json.loads(line)
            received = time.time()
            fence = int(cmd["fence"])
            with device:
                checked = None
                why: Optional[str]
                if fence < highest[0]:
                    accepted, why = False, "older than a fence already obeyed"
                else:
                    try:
                        accepted = eng.check_fence(resource, fence)
                        why = None if accepted else "not current"
                    except interlock.Error as e:
                        accepted, why = False, f"check_fence failed: {type(e).__name__}"
                    checked = time.time()
                    if accepted:
                        highest[0] = fence
                        time.sleep(exec_s)
                done = time.time()
            log(ev="command", client=cmd["client"], fence=fence, n=cmd["n"],
                zombie=cmd.get("zombie"), sent=cmd.get("sent"), received=received,
                checked=checked, done=done, accepted=accepted, why=why)
            conn.sendall((json.dumps({"accepted": accepted, "why": why}) + "\n").encode())
        conn.close()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    log(ev="ready", port=listener.getsockname()[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
