"""The limits of DESIGN.md ("Limits") and docs/protocol.md, each against a server started
with a small one: bodies, messages, connections, sessions and waits per connection;
subscribers that stop reading; and HTTP waiters that hang up."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any, Callable

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from helpers import Server, as_session, open_session
from wsclient import RawWs, Ws

Serve = Callable[..., Server]

# The server's: how long a write may wait for a client that does not read (stall.rs).
WRITE_TIMEOUT = 10


def error_body(r: requests.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and {"kind", "message"} <= set(body["error"]), body
    error: dict[str, Any] = body["error"]
    return error


def test_a_body_over_the_limit_is_413_with_the_error_body(serve: Serve) -> None:
    server = serve("--max-body", "4096")
    s = open_session(server)
    pad = "x" * 5000
    routes = [
        ("/v1/sessions", {"name": "big", "metadata": {"pad": pad}}, server.auth("client")),
        (f"/v1/sessions/{s['id']}/acquire", {"resources": ["r"], "reason": pad}, as_session(server, s)),
        ("/v1/release", {"resource": pad, "token": "t"}, server.auth("client")),
        ("/v1/renew", {"resource": pad, "token": "t"}, server.auth("client")),
        ("/v1/locks/r/force-release", {"reason": pad}, server.auth("admin")),
    ]
    for path, body, headers in routes:
        r = requests.post(server.url + path, json=body, headers=headers, timeout=10)
        assert r.status_code == 413, (path, r.status_code, r.text)
        error = error_body(r)
        assert error["kind"] == "invalid_argument" and error["message"], error
        # Without a length given up front (chunked), the same.
        data = json.dumps(body).encode()
        chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))
        r = requests.post(server.url + path, data=chunks, headers={**headers, "Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 413, (path, "chunked", r.status_code, r.text)
        error_body(r)
    # Under the limit, the same routes work.
    r = requests.post(
        server.url + "/v1/sessions", json={"name": "small", "metadata": {"pad": "x" * 3000}}, headers=server.auth("client"), timeout=10
    )
    assert r.status_code == 201, r.text


def test_a_websocket_message_over_the_limit_gets_bye(serve: Serve) -> None:
    server = serve("--max-message", "2048")
    ws = Ws(server)
    ws.hello()
    fits = ws.call({"op": "open_session", "name": "fits", "metadata": {"pad": "x" * 1800}})
    assert "ok" in fits, fits
    bystander = Ws(server)
    bystander.hello()
    ws.send({"op": "call", "id": 99, "cmd": {"op": "open_session", "name": "big", "metadata": {"pad": "x" * 3000}}})
    bye, code = ws.expect_bye()
    assert "over the limit of 2048" in bye["error"]["message"], bye
    assert code == 1008
    assert "ok" in bystander.call({"op": "locks"})
    bystander.close()


def test_a_frame_far_over_the_limit_ends_the_connection(server: Server) -> None:
    """Past four times the limit the server does not even read the frame: it ends the
    connection (with a bye and 1008 when the client is still there to read them; the
    client, still sending, may see a reset instead) and nobody else notices."""
    bystander = Ws(server)
    bystander.hello()
    ws = Ws(server)
    ws.hello()
    try:
        ws.send("[" + "0," * (3 << 20) + "0]")  # 6 MiB
        bye, code = ws.expect_bye(timeout=30)
        assert bye["error"]["kind"] == "invalid_argument" and code == 1008, (bye, code)
    except ConnectionClosed as e:
        if e.rcvd is not None:  # the close came before the client was done sending
            assert e.rcvd.code == 1008 and "Message too long" in e.rcvd.reason, e
    except ConnectionResetError:
        pass
    assert "ok" in bystander.call({"op": "locks"})
    again = Ws(server)
    again.hello()
    assert "ok" in again.call({"op": "locks"})


def test_more_connections_than_allowed_are_refused_at_the_upgrade(serve: Serve) -> None:
    server = serve("--max-connections", "3")
    conns = [Ws(server) for _ in range(3)]
    for ws in conns:
        ws.hello()
    for _ in range(2):
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws_url, additional_headers=server.auth("client"), open_timeout=10).__enter__()
        response = refused.value.response
        assert response.status_code == 503
        refusal = json.loads(response.body or b"{}")["error"]
        # Not the caller's fault, and not for good: the kind a client retries on.
        assert refusal["kind"] == "connection_lost" and "connections" in refusal["message"]
    # An event stream is a connection as long-lived as a WebSocket: refused too.
    r = requests.get(server.url + "/v1/events", headers=server.auth("read"), stream=True, timeout=10)
    assert r.status_code == 503, r.status_code
    r.close()
    # The ones in keep working, and plain requests are still answered.
    for ws in conns:
        assert "ok" in ws.call({"op": "locks"})
    assert requests.get(server.url + "/v1/health", headers=server.auth("read"), timeout=10).status_code == 200
    # A connection that ends gives its seat back.
    conns.pop().close()
    deadline = time.monotonic() + 5
    while True:
        try:
            again = Ws(server)
            break
        except InvalidStatus:
            assert time.monotonic() < deadline, "the seat was not given back"
            time.sleep(0.05)
    again.hello()
    assert "ok" in again.call({"op": "locks"})


def test_http_requests_over_the_limit_are_refused_not_queued(serve: Serve) -> None:
    """Long polls hold their place, and may take half of them: one more is refused at once
    with 503, never left waiting for a place (which could be minutes, --max-wait), and the
    other half stays for short requests (a holder's heartbeat, its release)."""
    server = serve("--max-connections", "4")
    holder = open_session(server, name="holder")
    r = requests.post(
        f"{server.url}/v1/sessions/{holder['id']}/acquire",
        json={"resources": ["busy"], "timeout": 0},
        headers=as_session(server, holder),
        timeout=10,
    )
    assert r.status_code == 200
    waiters = [open_session(server, name=f"w{i}") for i in range(2)]
    # A WebSocket is not an HTTP request in flight once upgraded (its upgrade is one).
    ws = Ws(server, "admin")
    ws.hello()
    polls = []

    def poll(url: str, **kw: Any) -> None:
        try:
            requests.post(url, **kw)
        except requests.ConnectionError:
            pass  # the server is stopped at the end of the test

    for w in waiters:
        t = threading.Thread(
            target=poll,
            args=(f"{server.url}/v1/sessions/{w['id']}/acquire",),
            kwargs={"json": {"resources": ["busy"], "timeout": 20}, "headers": as_session(server, w), "timeout": 30},
            daemon=True,
        )
        t.start()
        polls.append(t)
    deadline = time.monotonic() + 5
    while len(ws.ok({"op": "status", "resource": "busy"})["waiters"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    late = open_session(server, name="late")
    started = time.monotonic()
    r = requests.post(f"{server.url}/v1/sessions/{late['id']}/acquire",
                      json={"resources": ["busy"], "timeout": 20}, headers=as_session(server, late),
                      timeout=15)
    assert time.monotonic() - started < 2, "the request waited for a place"
    assert r.status_code == 503, r.status_code
    assert error_body(r)["kind"] == "connection_lost" and "acquires" in error_body(r)["message"]
    assert not [w for w in ws.ok({"op": "status", "resource": "busy"})["waiters"]
                if w["session_id"] == late["id"]]
    # The holder's own requests still get through.
    r = requests.post(f"{server.url}/v1/sessions/{holder['id']}/heartbeat",
                      headers=as_session(server, holder), timeout=15)
    assert r.status_code == 200, r.text
    assert ws.ok({"op": "force_release", "resource": "busy", "reason": "t"}) >= 1
    ws.close()


def test_more_sessions_per_connection_than_allowed_are_refused(serve: Serve) -> None:
    server = serve("--max-sessions-per-connection", "2")
    ws = Ws(server)
    ws.hello()
    a = ws.open_session("a")
    ws.open_session("b")
    r = ws.call({"op": "open_session", "name": "c", "ttl": 30})
    assert r["err"]["kind"] == "permission_denied" and "at most 2 sessions" in r["err"]["message"], r
    other = Ws(server)
    other.hello()
    c = other.open_session("c")
    i = next(ws.ids)
    ws.send({"op": "resume", "id": i, "session": c["session"]["id"], "secret": c["secret"]})
    r = ws.recv_until(lambda m: m.get("id") == i)
    assert r["err"]["kind"] == "permission_denied", r
    # Resuming one it already acts as is no new session; closing one makes room.
    i = next(ws.ids)
    ws.send({"op": "resume", "id": i, "session": a["session"]["id"], "secret": a["secret"]})
    assert "ok" in ws.recv_until(lambda m: m.get("id") == i)
    assert "ok" in ws.call({"op": "close_session", "session": a["session"]["id"]})
    assert "ok" in ws.call({"op": "open_session", "name": "d", "ttl": 30})
    # Other connections have their own count.
    assert "ok" in other.call({"op": "open_session", "name": "e", "ttl": 30})


def test_more_waits_per_connection_than_allowed_are_refused(serve: Serve) -> None:
    server = serve("--max-waits-per-connection", "2")
    holder = Ws(server)
    holder.hello()
    h = holder.open_session("holder")["session"]["id"]
    i = holder.acquire(h, ["a", "b", "c"], ack=False)
    assert "ok" in holder.recv_until(lambda m: m.get("id") == i)

    ws = Ws(server)
    ws.hello()
    s = ws.open_session("waiter")["session"]["id"]
    waits = []
    for name in ("a", "b"):
        i = ws.acquire(s, [name])
        ack = ws.recv_until(lambda m, i=i: m.get("id") == i)
        assert ack["op"] == "ack" and ack["ok"] == 1, ack
        waits.append(i)
    i = ws.acquire(s, ["c"])
    ack = ws.recv_until(lambda m: m.get("id") == i)
    assert ack["err"]["kind"] == "permission_denied" and "at most 2 acquires" in ack["err"]["message"], ack
    i = ws.acquire(s, ["c"], ack=False)
    done = ws.recv_until(lambda m: m.get("id") == i)
    assert done["op"] == "done" and done["err"]["kind"] == "permission_denied", done
    assert [w["session_id"] for w in holder.ok({"op": "status", "resource": "c"})["waiters"]] == []
    # A wait withdrawn makes room for another.
    c = next(ws.ids)
    ws.send({"op": "cancel", "id": c, "of": waits[0]})
    assert "ok" in ws.recv_until(lambda m: m.get("id") == c)
    ws.recv_until(lambda m: m.get("id") == waits[0] and m["op"] == "done")
    i = ws.acquire(s, ["c"])
    ack = ws.recv_until(lambda m: m.get("id") == i)
    assert ack["op"] == "ack" and ack["ok"] == 1, ack


def produce_big(ws: Ws, events: int) -> None:
    """About `events` events of over a kilobyte each (names are long), fast: a session
    takes 300 resources in one acquire and lets them all go by closing, so that one pair
    of messages makes 600 events. Big events fill the kernel's buffers soon."""
    for round in range(max(1, events // 600)):
        session = ws.open_session(f"producer-{round}-" + "n" * 200)["session"]["id"]
        i = ws.acquire(session, [f"{round}-{k}-" + "r" * 1000 for k in range(300)], ack=False)
        assert "ok" in ws.recv_until(lambda m: m.get("id") == i)
        assert "ok" in ws.call({"op": "close_session", "session": session})


def timed_call(ws: Ws) -> float:
    started = time.monotonic()
    assert "ok" in ws.call({"op": "locks"}, timeout=10)
    return time.monotonic() - started


def test_a_subscriber_that_stops_reading_slows_nobody_and_is_let_go(server: Server) -> None:
    slow = RawWs(server)
    slow.send({"op": "hello", "version": 1})
    slow.send({"op": "subscribe", "id": 1, "resources": None, "since": None})
    producer = Ws(server)
    producer.hello()
    other = Ws(server)
    other.hello()
    quiet = max(timed_call(other) for _ in range(5))
    slowest = 0.0
    for _ in range(20):
        produce_big(producer, 600)
        slowest = max(slowest, timed_call(other))
    # A correctness check, not a benchmark: nothing waits for the subscriber.
    assert slowest < max(1.0, 20 * quiet), f"a call took {slowest:.3f} s while the subscriber slept"

    # Now it reads: what it was sent, then the bye that let it go, and the close.
    texts, close = [], None
    for opcode, payload in slow.frames(timeout=20):
        if opcode == 1:
            texts.append(json.loads(payload))
        elif opcode == 8:
            close = int.from_bytes(payload[:2], "big")
    slow.close()
    byes = [m for m in texts if m["op"] == "bye"]
    assert byes and "too slow" in byes[0]["error"]["message"], texts[-3:]
    assert close == 1008
    events = [m for m in texts if m["op"] == "event"]
    assert len(events) < 9000, f"the server queued {len(events)} of 12,000 events for it"
    # The others were not disturbed.
    assert timed_call(other) < 1.0
    assert "too slow" in server.log()


def test_an_event_stream_client_that_stops_reading_is_let_go(server: Server) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.host_port)
    host, port = server.host_port
    sock.sendall(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {server.tokens['read']}\r\n\r\n".encode()
    )
    producer = Ws(server)
    producer.hello()
    other = Ws(server)
    other.hello()
    quiet = max(timed_call(other) for _ in range(5))
    slowest = 0.0
    started = time.monotonic()
    for _ in range(20):
        produce_big(producer, 600)
        slowest = max(slowest, timed_call(other))
    assert slowest < max(1.0, 20 * quiet), f"a call took {slowest:.3f} s while the stream was stuck"
    # The server gives up on it once its writes have made no progress for its write
    # timeout (10 s), and the stream ends: what was sent, then the end.
    time.sleep(max(0.0, started + WRITE_TIMEOUT + 4 - time.monotonic()))
    sock.settimeout(20)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    took = time.monotonic() - started
    sock.close()
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert took < WRITE_TIMEOUT + 30, f"the stream was let go only after {took:.0f} s"
    assert timed_call(other) < 1.0


def raw_post(server: Server, path: str, body: dict[str, Any], headers: dict[str, str]) -> socket.socket:
    """Sends a request and returns its socket without reading the answer."""
    data = json.dumps(body).encode()
    host, port = server.host_port
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection((host, port))
    sock.sendall(head.encode() + b"\r\n" + data)
    return sock


def waiters(ws: Ws, resource: str) -> list[str]:
    return [w["session_name"] for w in ws.ok({"op": "status", "resource": resource})["waiters"]]


@pytest.mark.parametrize("how", ["close", "shutdown"])
def test_an_http_waiter_that_hangs_up_leaves_the_queue_and_never_holds(server: Server, how: str) -> None:
    admin = Ws(server, "admin")
    admin.hello()
    holder = admin.open_session("holder")["session"]["id"]
    i = admin.acquire(holder, ["dev"], ack=False)
    holder_grant = admin.recv_until(lambda m: m.get("id") == i)["ok"][0]

    gone = open_session(server, name="gone")
    sock = raw_post(server, f"/v1/sessions/{gone['id']}/acquire", {"resources": ["dev"], "timeout": 60}, as_session(server, gone))
    deadline = time.monotonic() + 5
    while waiters(admin, "dev") != ["gone"]:
        assert time.monotonic() < deadline, waiters(admin, "dev")
        time.sleep(0.02)
    next_ws = Ws(server)
    next_ws.hello()
    nxt = next_ws.open_session("next")["session"]["id"]
    i = next_ws.acquire(nxt, ["dev"])
    assert next_ws.recv_until(lambda m: m.get("id") == i)["ok"] == 2
    assert waiters(admin, "dev") == ["gone", "next"]

    if how == "shutdown":
        sock.shutdown(socket.SHUT_WR)  # half-closed: it can no longer ask for anything
    else:
        sock.close()
    hung_up = time.monotonic()
    while waiters(admin, "dev") != ["next"]:
        assert time.monotonic() - hung_up < 2, f"still queued: {waiters(admin, 'dev')}"
        time.sleep(0.02)
    sock.close()
    r = admin.call({"op": "release", "resource": "dev", "token": holder_grant["token"]})
    assert "ok" in r, r
    done = next_ws.recv_until(lambda m: m.get("id") == i and m["op"] == "done")
    assert done["ok"][0]["resource"] == "dev"
    history = admin.ok({"op": "history", "resource": None, "session": gone["id"], "limit": None})
    assert "acquired" not in [e["kind"] for e in history], history
    status = admin.ok({"op": "status", "resource": "dev"})
    assert [h["session_name"] for h in status["holders"]] == ["next"]


def test_a_connection_that_sends_no_whole_request_head_is_closed(serve: Serve) -> None:
    """No byte, half a request head, or none on a kept-alive connection after its answer:
    none holds a connection open beyond --header-timeout."""
    server = serve("--header-timeout", "1")
    mute = socket.create_connection(server.host_port)  # sends not one byte
    half = socket.create_connection(server.host_port)
    half.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    idle = socket.create_connection(server.host_port)
    idle.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 + f"Authorization: Bearer {server.tokens['read']}\r\n\r\n".encode())
    for conn in (mute, half, idle):
        conn.settimeout(15)
        started = time.monotonic()
        data = b""
        while chunk := conn.recv(65536):  # until the server closes it
            data += chunk
        assert time.monotonic() - started < 10
        conn.close()
    assert b" 200 " in data.split(b"\r\n", 1)[0], data[:200]  # the idle one was answered first
    # A whole request in time is answered as ever.
    r = requests.get(server.url + "/v1/health", headers=server.auth("read"), timeout=10)
    assert r.status_code == 200


def test_a_long_poll_in_flight_when_the_server_stops_is_answered_503(serve: Serve) -> None:
    """Stopping ends every wait as closing an engine does: a long poll gets its answer
    (503, engine_closed) at once, rather than being cut off when the stop's wait for the
    answers in flight (3 s) is over."""
    server = serve()
    holder = open_session(server, name="holder")
    r = requests.post(f"{server.url}/v1/sessions/{holder['id']}/acquire",
                      json={"resources": ["dev"]}, headers=as_session(server, holder), timeout=10)
    assert r.status_code == 200, r.text
    waiter = open_session(server, name="waiter")
    answers: list[requests.Response] = []

    def poll() -> None:
        answers.append(requests.post(
            f"{server.url}/v1/sessions/{waiter['id']}/acquire", json={"resources": ["dev"], "timeout": 60},
            headers=as_session(server, waiter), timeout=30))

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    admin = Ws(server, "admin")
    admin.hello()
    deadline = time.monotonic() + 5
    while waiters(admin, "dev") != ["waiter"]:
        assert time.monotonic() < deadline, waiters(admin, "dev")
        time.sleep(0.02)
    admin.close()
    stopped = time.monotonic()
    server.stop()
    t.join(30)
    assert answers, "the long poll got no answer"
    assert answers[0].status_code == 503 and error_body(answers[0])["kind"] == "engine_closed", answers[0].text
    assert time.monotonic() - stopped < 2.5, "the long poll was cut off, not answered"
