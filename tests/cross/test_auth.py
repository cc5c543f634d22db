"""Who may do what, against a real server with a read, a client and an admin token: every
route of the HTTP table (DESIGN.md "Server mode") answers 401 without a good token, 403
to a role too low, and its documented success to the right one; acting as a session
needs that session's own secret; and no token or secret ever shows up where it should
not, in an answer or in the server's log."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from helpers import Server, as_session, interlock_bin, start_server
from wsclient import Ws

RANK = {"read": 0, "client": 1, "admin": 2}


class Recorder:
    """Every HTTP answer of the test, with what it may show: the secret of the session
    it opened, the tokens of the leases it granted."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.answers: list[tuple[str, str, set[str]]] = []  # (what, text, allowed secrets)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 15)
        stream = path.startswith("/v1/events")
        r = requests.request(method, self.server.url + path, stream=stream, **kw)
        if stream and r.status_code == 200:
            text = ""  # a live stream: its events are checked in test_the_event_stream_...
            r.close()
        else:
            text = r.text
        allowed: set[str] = set()
        if r.status_code == 201 and path == "/v1/sessions":
            secret = r.json()["secret"]
            self.server.secrets.add(secret)
            allowed.add(secret)
        if r.status_code == 200 and path.endswith("/acquire"):
            tokens = {lease["token"] for lease in r.json()["leases"]}
            self.server.secrets |= tokens
            allowed |= tokens
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.answers.append((f"{method} {path} -> {r.status_code}", headers + "\n" + text, allowed))
        return r

    def session(self, role: str = "client", name: str = "s") -> dict[str, Any]:
        r = self.request("POST", "/v1/sessions", json={"name": name, "ttl": 60}, headers=self.server.auth(role))
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def lease(self, resource: str) -> dict[str, Any]:
        s = self.session("admin", "holder")
        r = self.request(
            "POST",
            f"/v1/sessions/{s['id']}/acquire",
            json={"resources": [resource], "timeout": 0},
            headers=as_session(self.server, s, "admin"),
        )
        assert r.status_code == 200, r.text
        lease: dict[str, Any] = r.json()["leases"][0]
        return lease


@dataclass
class Route:
    """One row of the HTTP table: `build` makes a fresh request (method, path, kwargs)
    for each try, so that a success never spoils the next try."""

    name: str
    need: str
    ok: int
    build: Callable[[Recorder], tuple[str, str, dict[str, Any]]]
    # The request acts as a session: `build` puts its secret in the headers.
    acts: bool = False


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def acting(rec: Recorder, method: str, suffix: str, **kw: Any) -> tuple[str, str, dict[str, Any]]:
    s = rec.session()
    kw["headers"] = {"Interlock-Session-Secret": s["secret"]}
    return method, f"/v1/sessions/{s['id']}{suffix}", kw


ROUTES = [
    Route("health", "read", 200, lambda rec: ("GET", "/v1/health", {})),
    Route("openapi", "read", 200, lambda rec: ("GET", "/v1/openapi.json", {})),
    Route("metrics", "read", 200, lambda rec: ("GET", "/metrics", {})),
    Route("open session", "client", 201, lambda rec: ("POST", "/v1/sessions", {"json": {"name": "new"}})),
    Route("heartbeat", "client", 200, lambda rec: acting(rec, "POST", "/heartbeat"), acts=True),
    Route("close session", "client", 200, lambda rec: acting(rec, "DELETE", ""), acts=True),
    Route(
        "acquire",
        "client",
        200,
        lambda rec: acting(rec, "POST", "/acquire", json={"resources": [unique("acq")], "timeout": 0}),
        acts=True,
    ),
    Route(
        "release",
        "client",
        200,
        lambda rec: (
            "POST",
            "/v1/release",
            {"json": {k: v for k, v in rec.lease(unique("rel")).items() if k in ("resource", "token")}},
        ),
    ),
    Route(
        "renew",
        "client",
        200,
        lambda rec: (
            "POST",
            "/v1/renew",
            {"json": {**{k: v for k, v in rec.lease(unique("ren")).items() if k in ("resource", "token")}, "ttl": 30}},
        ),
    ),
    Route(
        "force release",
        "admin",
        200,
        lambda rec: ("POST", f"/v1/locks/{rec.lease(unique('lab/frc'))['resource']}/force-release", {"json": {"reason": "test"}}),
    ),
    Route("locks", "read", 200, lambda rec: ("GET", "/v1/locks", {})),
    Route("status", "read", 200, lambda rec: ("GET", "/v1/locks/" + quote("lab/psu 1", safe=""), {})),
    Route("status, / not encoded", "read", 200, lambda rec: ("GET", "/v1/locks/lab/psu-1", {})),
    Route("sessions", "read", 200, lambda rec: ("GET", "/v1/sessions", {})),
    Route("session", "read", 200, lambda rec: ("GET", f"/v1/sessions/{rec.session('admin')['id']}", {})),
    Route(
        "check",
        "read",
        200,
        lambda rec: ("GET", "/v1/check", {"params": {"resource": "r", "session_id": rec.session("admin")["id"], "action": "observe"}}),
    ),
    Route("check fence", "read", 200, lambda rec: ("GET", "/v1/check-fence", {"params": {"resource": "r", "fence": 1}})),
    Route("history", "read", 200, lambda rec: ("GET", "/v1/history", {"params": {"resource": "r", "limit": 5}})),
    Route("events", "read", 200, lambda rec: ("GET", "/v1/events", {"params": {"resource": "r"}})),
]


def try_route(rec: Recorder, route: Route, role: str | None, token: str | None = None) -> requests.Response:
    method, path, kw = route.build(rec)
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    elif role is not None:
        headers.update(rec.server.auth(role))
    return rec.request(method, path, headers=headers, **kw)


def expected(route: Route, role: str | None) -> int:
    if role is None:
        return 401
    return route.ok if RANK[role] >= RANK[route.need] else 403


def error_kind(r: requests.Response) -> str:
    """The kind of an error answer, which is always the one JSON error body."""
    try:
        body = r.json()
    except ValueError:
        return f"a body that is not JSON: {r.text[:100]!r}"
    if not (isinstance(body, dict) and set(body) == {"error"} and {"kind", "message"} <= set(body["error"])):
        return f"not the error body: {body!r}"
    kind: str = body["error"]["kind"]
    return kind


def check_secrecy(server: Server, rec: Recorder, ws_seen: list[tuple[str, str, set[str]]], least: int = 2) -> None:
    bearer = set(server.tokens.values())
    secrets = server.secrets | bearer
    assert len(server.secrets) >= least, "the test saw the secrets it checks for"
    for what, text, allowed in rec.answers + ws_seen:
        for s in secrets - allowed:
            assert s not in text, f"{what} shows a secret it should not:\n{text[:2000]}"
    log = server.log()
    assert "serving" in log, "the log was captured"
    for s in secrets:
        assert s not in log, "a token or secret is in the server's log"


def test_every_route_answers_401_403_or_success_by_role(server: Server) -> None:
    rec = Recorder(server)
    failures = []
    for route in ROUTES:
        for role in (None, "read", "client", "admin"):
            r = try_route(rec, route, role)
            want = expected(route, role)
            if r.status_code != want:
                failures.append(f"{route.name} as {role}: {r.status_code} (expected {want}) {r.text[:200]}")
            elif want in (401, 403):
                kind = error_kind(r)
                if kind != "permission_denied":
                    failures.append(f"{route.name} as {role}: kind {kind}")
                if want == 401 and r.headers.get("WWW-Authenticate") != "Bearer":
                    failures.append(f"{route.name} as {role}: 401 without WWW-Authenticate: Bearer")
        # A token the server does not know is no token at all.
        r = try_route(rec, route, None, token=uuid.uuid4().hex * 2)
        if r.status_code != 401:
            failures.append(f"{route.name} with an unknown token: {r.status_code}")
    assert not failures, "\n".join(failures)

    # The dashboard's page itself is open (it asks for a token to show anything).
    assert rec.request("GET", "/").status_code == 200
    ws_seen = check_websocket_upgrade(server)
    check_secrecy(server, rec, ws_seen, least=20)


def check_websocket_upgrade(server: Server) -> list[tuple[str, str, set[str]]]:
    for token in (None, uuid.uuid4().hex * 2):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws_url, additional_headers=headers, open_timeout=10).__enter__()
        assert refused.value.response.status_code == 401
    seen = []
    for role in ("read", "client", "admin"):
        ws = Ws(server, role)
        ws.hello()
        assert ws.ok({"op": "locks"}) is not None
        ws.close()
        seen += [(f"ws {role}", str(m), set()) for m in ws.seen]
    return seen


def test_the_bearer_scheme_is_named_in_any_case_and_a_bad_token_is_refused_alike(server: Server) -> None:
    token = server.tokens["read"]
    for scheme in ["Bearer", "bearer", "BEARER"]:
        r = requests.get(server.url + "/v1/health", headers={"Authorization": f"{scheme} {token}"}, timeout=10)
        assert r.status_code == 200, (scheme, r.text)
    # No token, an unknown one, another scheme: one answer, which says nothing of which.
    answers = set()
    for headers in [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {token}"}]:
        r = requests.get(server.url + "/v1/health", headers=headers, timeout=10)
        assert r.status_code == 401, (headers, r.text)
        answers.add(r.text)
    assert len(answers) == 1 and "knows" in answers.pop()


@pytest.mark.parametrize("route", [r for r in ROUTES if r.acts], ids=lambda r: r.name)
def test_acting_as_a_session_needs_its_own_secret(server: Server, route: Route) -> None:
    rec = Recorder(server)
    other = rec.session(name="other")
    for secret in (None, other["secret"]):
        for role in ("client", "admin"):
            method, path, kw = route.build(rec)
            headers = {**kw.pop("headers"), **server.auth(role)}
            if secret is None:
                del headers["Interlock-Session-Secret"]
            else:
                headers["Interlock-Session-Secret"] = secret
            r = rec.request(method, path, headers=headers, **kw)
            if route.name == "close session" and role == "admin" and secret is None:
                assert r.status_code == 200, "an admin closes any session"
                continue
            assert r.status_code == 403, (route.name, role, secret is None, r.text)
            assert error_kind(r) == "permission_denied"
    check_secrecy(server, rec, [])


def test_websocket_messages_are_authorized_by_role_and_session(server: Server) -> None:
    admin = Ws(server, "admin")
    admin.hello()
    victim = admin.open_session("victim")
    sid = victim["session"]["id"]
    server.secrets.add(victim["secret"])

    reader = Ws(server, "read")
    reader.hello()
    assert reader.ok({"op": "sessions"}) is not None
    for cmd in (
        {"op": "open_session", "name": "x"},
        {"op": "heartbeat", "session": sid},
        {"op": "force_release", "resource": "r", "reason": None},
        {"op": "close"},
    ):
        r = reader.call(cmd)
        assert "err" in r and r["err"]["kind"] in ("permission_denied", "invalid_argument"), (cmd, r)
    r = reader.call({"op": "open_session", "name": "x"})
    assert r["err"]["kind"] == "permission_denied"

    client = Ws(server, "client")
    client.hello()
    mine = client.open_session("mine")
    server.secrets.add(mine["secret"])
    assert client.call({"op": "force_release", "resource": "r", "reason": None})["err"]["kind"] == "permission_denied"
    # Another connection's session: not without resuming it with its secret.
    for cmd in ({"op": "heartbeat", "session": sid}, {"op": "close_session", "session": sid}):
        assert client.call(cmd)["err"]["kind"] == "permission_denied", cmd
    i = client.acquire(sid, ["r"], ack=True)
    ack = client.recv_until(lambda m: m.get("id") == i)
    assert ack["op"] == "ack" and ack["err"]["kind"] == "permission_denied", ack
    # With the wrong secret, resuming is refused too; with the right one it works.
    i = next(client.ids)
    client.send({"op": "resume", "id": i, "session": sid, "secret": mine["secret"]})
    assert client.recv_until(lambda m: m.get("id") == i)["err"]["kind"] == "permission_denied"
    i = next(client.ids)
    client.send({"op": "resume", "id": i, "session": sid, "secret": victim["secret"]})
    assert "ok" in client.recv_until(lambda m: m.get("id") == i)
    assert "ok" in client.call({"op": "heartbeat", "session": sid})
    assert admin.call({"op": "force_release", "resource": "r", "reason": "t"})["ok"]["reply"] == "count"
    seen = [(f"ws {n}", str(m), set()) for n, ws in (("read", reader), ("client", client)) for m in ws.seen]
    # The opened replies show their own secrets; nothing else does.
    seen += [("ws admin", str(m), {victim["secret"]}) for m in admin.seen]
    for ws in (admin, reader, client):
        ws.close()
    seen = [(w, t, a | ({mine["secret"]} if w == "ws client" else set())) for w, t, a in seen]
    check_secrecy_ws(server, seen)


def check_secrecy_ws(server: Server, seen: list[tuple[str, str, set[str]]]) -> None:
    secrets = server.secrets | set(server.tokens.values())
    for what, text, allowed in seen:
        for s in secrets - allowed:
            assert s not in text, f"{what} shows a secret: {text[:500]}"
    log = server.log()
    for s in secrets:
        assert s not in log, "a token or secret is in the server's log"


def test_the_event_stream_and_history_never_show_a_secret(server: Server) -> None:
    rec = Recorder(server)
    events = requests.get(server.url + "/v1/events", headers=server.auth("read"), stream=True, timeout=15)
    assert events.status_code == 200
    assert events.headers["content-type"].startswith("text/event-stream")
    s = rec.session("client", "holder")
    lease = rec.request(
        "POST",
        f"/v1/sessions/{s['id']}/acquire",
        json={"resources": ["ev"], "timeout": 0},
        headers=as_session(server, s),
    ).json()["leases"][0]
    rec.request("POST", "/v1/renew", json={"resource": "ev", "token": lease["token"]}, headers=server.auth("client"))
    rec.request("POST", "/v1/release", json={"resource": "ev", "token": lease["token"]}, headers=server.auth("client"))
    rec.request("DELETE", f"/v1/sessions/{s['id']}", headers=as_session(server, s))
    text = ""
    lines = events.iter_lines(decode_unicode=True)
    while text.count("event: ") < 4:  # opened, acquired, released, closed
        text += next(lines) + "\n"
    events.close()
    for path in ("/v1/history", "/v1/sessions", "/v1/locks", "/metrics"):
        rec.request("GET", path, headers=server.auth("admin"))
    rec.answers.append(("GET /v1/events", text, set()))
    assert "acquired" in text and s["id"] in text
    check_secrecy(server, rec, [])


def test_without_tokens_only_loopback_is_served(tmp_path: Any) -> None:
    for bind in ("0.0.0.0:0", "[::]:0"):
        r = subprocess.run(
            [interlock_bin(), "serve", "--bind", bind],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode != 0, r
        assert "interlock serving at" not in r.stdout
        assert "--tokens" in r.stderr and "ROLE TOKEN" in r.stderr, r.stderr
    # With tokens the same address is served (and asks for them).
    s = start_server(tmp_path, "--bind", "0.0.0.0:0", roles=("read",), name="any")
    try:
        port = s.url.rsplit(":", 1)[1]
        assert requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 401
        r = requests.get(f"http://127.0.0.1:{port}/v1/health", headers=s.auth("read"), timeout=10)
        assert r.status_code == 200
    finally:
        s.stop()
    # And without tokens, loopback is served with every caller an admin.
    s = start_server(tmp_path, roles=(), name="open")
    try:
        r = requests.post(s.url + "/v1/locks/x/force-release", json={}, timeout=10)
        assert r.status_code == 200, r.text
    finally:
        s.stop()


def test_without_tokens_no_web_page_is_served(tmp_path: Any) -> None:
    """Every caller of a server without tokens is an admin, and a browser on the same PC
    reaches its loopback address from any page: a page of another site (its `Origin`), or
    one that rebinds its own name to 127.0.0.1 (its `Host`), is refused with 403. Programs
    (they send neither so) and the server's own pages are served."""
    s = start_server(tmp_path, roles=(), name="open")
    try:
        url = s.url + "/v1/locks/x/force-release"
        port = s.url.rsplit(":", 1)[1]
        for headers in ({"Origin": "http://evil.example"},
                        {"Origin": "null"},
                        {"Origin": f"http://evil.example:{port}", "Host": f"evil.example:{port}"},
                        {"Host": f"evil.example:{port}"}):
            r = requests.post(url, json={}, headers=headers, timeout=10)
            assert r.status_code == 403, (headers, r.status_code, r.text)
            assert r.json()["error"]["kind"] == "permission_denied"
        with pytest.raises(InvalidStatus) as refused:
            connect(s.url.replace("http", "ws", 1) + "/v1/ws",
                    additional_headers={"Origin": "http://evil.example"}, open_timeout=10).__enter__()
        assert refused.value.response.status_code == 403
        for headers in ({}, {"Origin": s.url}, {"Host": f"localhost:{port}"}):
            r = requests.post(url, json={}, headers=headers, timeout=10)
            assert r.status_code == 200, (headers, r.status_code, r.text)
    finally:
        s.stop()
