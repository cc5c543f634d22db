"""One error body everywhere (DESIGN.md "HTTP API"): every refusal, whether the engine's,
the router's or the HTTP layer's, is `{"error": {"kind", "message"}}` with the status of
the one table; and the OpenAPI document is whole: every route of the table, queries in
the query, every answer described, every schema it names present."""

from __future__ import annotations

import socket
import time
from typing import Any

import requests

from helpers import Server, as_session, open_session


def error(r: requests.Response) -> dict[str, Any]:
    assert r.headers.get("content-type", "").startswith("application/json"), (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and {"kind", "message"} <= set(body["error"]), body
    assert body["error"]["message"], body
    e: dict[str, Any] = body["error"]
    return e


def raw(server: Server, request: bytes) -> tuple[int, bytes]:
    """For what requests will not send (a path that is not UTF-8 once decoded)."""
    with socket.create_connection(server.host_port) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_every_refusal_is_the_one_error_body(server: Server) -> None:
    url, admin = server.url, server.auth("admin")
    s = open_session(server)
    cases = [
        (requests.get(url + "/v1/nowhere", headers=admin, timeout=10), 404, "not_found"),
        (requests.put(url + "/v1/sessions", headers=admin, timeout=10), 405, "invalid_argument"),
        (requests.delete(url + "/v1/health", headers=admin, timeout=10), 405, "invalid_argument"),
        (requests.get(url + "/v1/ws", headers=admin, timeout=10), None, "invalid_argument"),
        (requests.get(url + "/v1/sessions/not-an-id", headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.get(url + "/v1/check", params={"resource": "r"}, headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.get(url + "/v1/check-fence", params={"resource": "r", "fence": -1}, headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.get(url + "/v1/history", params={"bogus": 1}, headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.post(url + "/v1/sessions", data="{not json", headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.post(url + "/v1/sessions", json={"name": ""}, headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.post(url + "/v1/release", json={"resource": "r", "token": "x"}, headers=admin, timeout=10), 400, "invalid_argument"),
        # A release takes no ttl (a renew does).
        (requests.post(url + "/v1/release", json={"resource": "r", "token": "6f1e8f1c-2b1a-4c3d-9e8f-0a1b2c3d4e5f", "ttl": -1},
                       headers=admin, timeout=10), 400, "invalid_argument"),
        (
            requests.post(
                f"{url}/v1/sessions/{s['id']}/acquire",
                json={"resources": ["r"], "mode": "both"},
                headers={**admin, "Interlock-Session-Secret": s["secret"]},
                timeout=10,
            ),
            400,
            "invalid_argument",
        ),
        (requests.get(url + "/v1/events", params={"since": "x"}, headers=admin, timeout=10), 400, "invalid_argument"),
        (requests.get(url + "/v1/health", timeout=10), 401, "permission_denied"),
    ]
    for r, status, kind in cases:
        e = error(r)
        if status is not None:
            assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
        else:
            assert 400 <= r.status_code < 500, (r.request.url, r.status_code)
        assert e["kind"] == kind, (r.request.url, e)
    # A path that is not UTF-8 once percent-decoded.
    host, port = server.host_port
    request = f"GET /v1/sessions/%FF%FE HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {admin['Authorization']}\r\nConnection: close\r\n\r\n"
    status, body = raw(server, request.encode())
    assert status == 400 and b'"error"' in body, (status, body)


def test_an_encoded_slash_belongs_to_the_resource(server: Server) -> None:
    """`x%2Fforce-release` is the resource `x/force-release`: POSTing to it is no route,
    never a force release of `x`, and its own force release leaves `x` held."""
    url, admin = server.url, server.auth("admin")
    s = open_session(server)
    for name in ["x", "x/force-release"]:
        r = requests.post(f"{url}/v1/sessions/{s['id']}/acquire", json={"resources": [name]},
                          headers=as_session(server, s), timeout=10)
        assert r.status_code == 200, r.text

    def holders(encoded: str) -> int:
        r = requests.get(f"{url}/v1/locks/{encoded}", headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        return len(r.json()["holders"])

    r = requests.post(url + "/v1/locks/x%2Fforce-release", json={}, headers=admin, timeout=10)
    assert r.status_code == 404 and error(r)["kind"] == "not_found", r.text
    assert holders("x") == 1 and holders("x%2Fforce-release") == 1
    r = requests.post(url + "/v1/locks/x%2Fforce-release/force-release", json={}, headers=admin, timeout=10)
    assert r.status_code == 200 and r.json() == {"released": 1}, r.text
    assert holders("x") == 1 and holders("x%2Fforce-release") == 0
    r = requests.post(url + "/v1/locks/x/force-release", json={}, headers=admin, timeout=10)
    assert r.status_code == 200 and r.json() == {"released": 1}, r.text
    assert holders("x") == 0
    status, body = raw(server, (
        f"POST /v1/locks/%FF/force-release HTTP/1.1\r\nHost: {server.host_port[0]}\r\n"
        f"Authorization: {admin['Authorization']}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode())
    assert status == 400 and b"UTF-8" in body, (status, body)


def test_an_acquire_refused_as_bad_input_is_no_activity_of_its_session(server: Server) -> None:
    """Bad input changes nothing: an acquire the engine refuses does not count as its
    session's activity, so a stale session stays stale (for a `break_stale` taker)."""
    url, admin = server.url, server.auth("admin")
    s = open_session(server, ttl=0.3, on_expire="keep")
    acquire = f"{url}/v1/sessions/{s['id']}/acquire"
    r = requests.post(acquire, json={"resources": ["r"]}, headers=as_session(server, s), timeout=10)
    assert r.status_code == 200, r.text

    def session() -> dict[str, Any]:
        r = requests.get(f"{url}/v1/sessions/{s['id']}", headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    deadline = time.monotonic() + 10
    while not session()["stale"]:
        assert time.monotonic() < deadline, "the session never went stale"
        time.sleep(0.02)
    before = session()
    for body in [{"resources": [""]}, {"resources": ["a", "a"]}, {"resources": []},
                 {"resources": ["q"], "ttl": 0}, {"resources": ["q"], "reason": "x" * 2000}]:
        r = requests.post(acquire, json=body, headers=as_session(server, s), timeout=10)
        assert r.status_code == 400 and error(r)["kind"] == "invalid_argument", (body, r.text)
    assert session() == before
    r = requests.get(url + "/v1/history", params={"session_id": s["id"]}, headers=admin, timeout=10)
    kinds = [e["kind"] for e in r.json()]
    assert "session_stale" in kinds and "session_revived" not in kinds, kinds


def test_the_openapi_document_is_whole(server: Server) -> None:
    doc = requests.get(server.url + "/v1/openapi.json", headers=server.auth("read"), timeout=10).json()
    table = {
        ("get", "/v1/health"), ("post", "/v1/sessions"), ("get", "/v1/sessions"),
        ("get", "/v1/sessions/{id}"), ("delete", "/v1/sessions/{id}"),
        ("post", "/v1/sessions/{id}/heartbeat"), ("post", "/v1/sessions/{id}/acquire"),
        ("post", "/v1/release"), ("post", "/v1/renew"),
        ("post", "/v1/locks/{resource}/force-release"), ("get", "/v1/locks"),
        ("get", "/v1/locks/{resource}"), ("get", "/v1/check"), ("get", "/v1/check-fence"),
        ("get", "/v1/history"), ("get", "/v1/events"), ("get", "/v1/ws"),
        ("get", "/v1/openapi.json"), ("get", "/metrics"),
    }  # fmt: skip
    documented = {(m, p) for p, item in doc["paths"].items() for m in item if m in ("get", "post", "delete")}
    assert table <= documented, table - documented
    schemas = doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schemas["Mode"]["enum"] == ["exclusive", "shared", "observer"]  # the alias too

    def refs(v: Any) -> list[str]:
        if isinstance(v, dict):
            own = [v["$ref"]] if isinstance(v.get("$ref"), str) else []
            return own + [r for x in v.values() for r in refs(x)]
        if isinstance(v, list):
            return [r for x in v for r in refs(x)]
        return []

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for p in op.get("parameters", []):
                in_path = "{" + p["name"] + "}" in path
                assert (p["in"] == "path") == in_path or p["in"] == "header", (method, path, p)
            for status, answer in op["responses"].items():
                assert answer.get("description"), (method, path, status)
            assert "401" in op["responses"], (method, path)
    acquire = schemas["AcquireBody"]
    assert {"resources", "mode", "timeout", "ttl", "priority", "preempt", "reason", "break_stale"} <= set(acquire["properties"])
    assert acquire["additionalProperties"] is False
