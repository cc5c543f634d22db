"""Bad WebSocket input (docs/protocol.md, "Connection"): each kind of bad frame gets a
`bye` with a clear error, then the close code 1008, and only that connection ends: a
bystander connected to the same server is answered before and after."""

from __future__ import annotations

import json
import time

import pytest

from helpers import Server
from wsclient import Ws

BAD = {
    "malformed JSON": ('{"op": "hello", "version": 1', "not a message of protocol"),
    "not JSON at all": ("hello, server", "not a message of protocol"),
    "wrong shape": ('{"op": "hello", "version": "one"}', "not a message of protocol"),
    "unknown op": ('{"op": "shout", "id": 1}', "not a message of protocol"),
    "a list": ("[1, 2, 3]", "not a message of protocol"),
    "before hello": ('{"op": "call", "id": 1, "cmd": {"op": "locks"}}', "first message must be hello"),
    "wrong version": ('{"op": "hello", "version": 99}', "protocol version 99"),
    "huge": ('{"op": "hello", "version": 1, "pad": "' + "x" * (1 << 20) + '"}', "over the limit"),
    "binary": (b'{"op": "hello", "version": 1}', "binary frames"),
}


def bystander_works(ws: Ws, session: str, n: int) -> None:
    assert "ok" in ws.call({"op": "heartbeat", "session": session}, timeout=5)
    status = ws.ok({"op": "status", "resource": f"r{n}"})
    assert status["locked"] is False


@pytest.mark.parametrize("after_hello", [False, True], ids=["first", "after hello"])
def test_each_bad_frame_gets_a_bye_and_1008_and_nobody_else_notices(server: Server, after_hello: bool) -> None:
    bystander = Ws(server)
    bystander.hello()
    session = bystander.open_session("bystander")["session"]["id"]
    bystander_works(bystander, session, 0)
    for n, (name, (frame, says)) in enumerate(BAD.items(), 1):
        if after_hello and name in ("before hello", "wrong version"):
            continue
        bad = Ws(server)
        if after_hello:
            bad.hello()
        started = time.monotonic()
        bad.send(frame)
        bye, code = bad.expect_bye()
        assert time.monotonic() - started < 5, f"{name}: the answer took long"
        assert bye["error"]["kind"] == "invalid_argument", (name, bye)
        assert says in bye["error"]["message"], (name, bye)
        assert code == 1008, (name, code)
        bystander_works(bystander, session, n)
    if after_hello:
        # A second hello on a live connection is bad input too.
        bad = Ws(server)
        bad.hello()
        bad.send(json.dumps({"op": "hello", "version": 1}))
        bye, code = bad.expect_bye()
        assert "already" in bye["error"]["message"] and code == 1008
    bystander_works(bystander, session, 99)
    bystander.close()


def test_a_bad_frame_ends_only_its_own_waits_and_keeps_the_sessions(server: Server) -> None:
    """The connection's waits end with it (a vanished waiter never holds a lock); its
    sessions stay until their TTL, so the client can resume them."""
    holder = Ws(server)
    holder.hello()
    h = holder.open_session("holder")["session"]["id"]
    i = holder.acquire(h, ["dev"])
    assert holder.recv_until(lambda m: m.get("id") == i and m["op"] == "done")["ok"]

    bad = Ws(server)
    bad.hello()
    opened = bad.open_session("waiter")
    w = opened["session"]["id"]
    i = bad.acquire(w, ["dev"])
    ack = bad.recv_until(lambda m: m.get("id") == i)
    assert ack["op"] == "ack" and ack["ok"] == 1, ack
    assert len(holder.ok({"op": "status", "resource": "dev"})["waiters"]) == 1
    bad.send(b"\x00\x01")
    bye, code = bad.expect_bye()
    assert code == 1008
    deadline = time.monotonic() + 5
    while holder.ok({"op": "status", "resource": "dev"})["waiters"]:
        assert time.monotonic() < deadline, "the wait of the closed connection is still queued"
        time.sleep(0.05)
    again = Ws(server)
    again.hello()
    i = next(again.ids)
    again.send({"op": "resume", "id": i, "session": w, "secret": opened["secret"]})
    assert "ok" in again.recv_until(lambda m: m.get("id") == i)
    for ws in (holder, again):
        ws.close()
