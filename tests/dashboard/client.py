"""A lock client in a process of its own, as a lab program would be: `interlock.connect`
to a server, one session, driven by JSON lines on stdin. Everything that happens to it,
including a lease lost (`on_lost`), is printed as one JSON object a line on stdout.

    python client.py URL TOKEN NAME METADATA_JSON      (TOKEN "-" for none)
    stdin:  {"op": "acquire" | "enqueue" | "release" | "quit", "resource": ..., ...}
    stdout: {"event": "ready" | "acquired" | "queued" | "granted" | "released" | "lost"
             | "error", ...}
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import interlock


def main() -> None:
    url, token, name, metadata = sys.argv[1:5]
    out = threading.Lock()

    def say(**fields: Any) -> None:
        with out:
            print(json.dumps(fields), flush=True)

    def lost(lease: interlock.Lease, why: str) -> None:
        say(event="lost", resource=lease.resource, why=why)

    eng = interlock.connect(url, token=None if token == "-" else token, session_ttl=6.0)
    session = eng.session(name, metadata=json.loads(metadata))
    leases: dict[str, interlock.Lease] = {}
    say(event="ready", session=session.id)

    def wait(resource: str, ticket: Any) -> None:
        try:
            leases[resource] = ticket.wait()
            say(event="granted", resource=resource)
        except interlock.Error as e:
            say(event="error", op="wait", error=repr(e))

    for line in sys.stdin:
        cmd = json.loads(line)
        op, resource = cmd["op"], cmd.get("resource", "")
        options = {k: v for k, v in cmd.items() if k not in ("op", "resource")}
        try:
            if op == "acquire":
                lease = session.acquire(resource, timeout=10.0, on_lost=lost, **options)
                leases[resource] = lease
                say(event="acquired", resource=resource, fence=lease.fence)
            elif op == "enqueue":
                ticket = session.enqueue(resource, on_lost=lost, **options)
                say(event="queued", resource=resource, position=ticket.position)
                threading.Thread(target=wait, args=(resource, ticket), daemon=True).start()
            elif op == "release":
                leases.pop(resource).release()
                say(event="released", resource=resource)
            elif op == "quit":
                break
        except (interlock.Error, KeyError, ValueError) as e:
            say(event="error", op=op, error=repr(e))
    try:
        session.close()
    except interlock.Error:
        pass  # the server is gone: the session ends with its TTL
    eng.close()


if __name__ == "__main__":
    main()
