"""The engine factory of the remote mode (see README.md): one long-lived process per
pytest session that makes engines and serves them on request, so that every test gets a
fresh engine in another process without paying for a process start.

One request a line on stdin, one answer a line on stdout, both JSON:

    {"op": "new", "config": {...}}   -> {"ok": {"id": N, "url": "http://127.0.0.1:PORT"}}
        makes `interlock.Engine(**config)` and serves it on a free loopback port
    {"op": "close", "id": N}         -> {"ok": null}
        closes that server and its engine (closing twice is harmless)
    {"op": "abandon", "id": N, "name": ..., "ttl": ..., "on_expire": ..., "resources": [...]}
                                     -> {"ok": [SESSION_ID, SECRET]}
        opens a session on that engine, acquires `resources` (if any) with it and leaves
        it: a client that crashed holding them (nothing heartbeats the session any more)

A request the engine refuses answers {"err": {"type": "ValueError", "message": "..."}},
with the name of the exception (a builtin or one of `interlock`'s). At the end of stdin
every server and engine still open is closed, and the process exits.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import interlock


def main() -> None:
    served: dict[int, tuple[interlock.Engine, interlock.Server]] = {}
    # Abandoned sessions are kept here, so that no garbage collection could matter.
    abandoned: list[object] = []
    next_id = 1
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any]
        try:
            if request["op"] == "new":
                engine = interlock.Engine(**request["config"])
                server = engine.serve("127.0.0.1:0")
                served[next_id] = (engine, server)
                answer = {"ok": {"id": next_id, "url": server.url}}
                next_id += 1
            elif request["op"] == "close":
                pair = served.pop(request["id"], None)
                if pair is not None:
                    pair[1].close()
                    pair[0].close()
                answer = {"ok": None}
            elif request["op"] == "abandon":
                engine = served[request["id"]][0]
                session = engine.session(request["name"], ttl=request["ttl"], on_expire=request["on_expire"])
                if request["resources"]:
                    abandoned.append(session.acquire_many(request["resources"]))
                abandoned.append(session)
                answer = {"ok": [session.id, session.secret]}
            else:
                raise ValueError(f"unknown request {request['op']!r}")
        except Exception as e:
            answer = {"err": {"type": type(e).__name__, "message": str(e)}}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for engine, server in served.values():
        server.close()
        engine.close()


if __name__ == "__main__":
    main()
