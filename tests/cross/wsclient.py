"""A small client of the WebSocket protocol (docs/protocol.md) for the tests: raw
messages in, raw messages out, so that a test can also send what no real client would."""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import struct
from typing import Any, Iterator

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from helpers import Server


class Ws:
    """One connection; `seen` keeps every message the server sent (for the secrecy test)."""

    def __init__(self, server: Server, role: str | None = "client", sock: socket.socket | None = None):
        headers = server.auth(role) if role else {}
        # Entered at once: this object, not a `with` block, owns the connection.
        self.conn: ClientConnection = connect(
            server.ws_url,
            additional_headers=headers,
            max_size=None,
            open_timeout=10,
            close_timeout=5,
            sock=sock,
        ).__enter__()
        self.ids = itertools.count(1)
        self.seen: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # read while waiting for something else

    def send(self, msg: Any) -> None:
        self.conn.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        if self.pending:
            return self.pending.pop(0)
        msg: dict[str, Any] = json.loads(self.conn.recv(timeout=timeout))
        self.seen.append(msg)
        return msg

    def recv_until(self, pred: Any, timeout: float = 10) -> dict[str, Any]:
        """The first message `pred` accepts; the others stay for a later recv()."""
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                m = self.recv(timeout)
                if pred(m):
                    return m
                skipped.append(m)
        finally:
            self.pending = skipped + self.pending

    def hello(self) -> dict[str, Any]:
        self.send({"op": "hello", "version": 1})
        m = self.recv()
        assert m["op"] == "welcome", m
        return m

    def call(self, cmd: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """The reply to one command: `{"ok": ...}` or `{"err": ...}`."""
        i = next(self.ids)
        self.send({"op": "call", "id": i, "cmd": cmd})
        return self.recv_until(lambda m: m.get("op") == "reply" and m.get("id") == i, timeout)

    def ok(self, cmd: dict[str, Any]) -> Any:
        r = self.call(cmd)
        assert "ok" in r, r
        return r["ok"].get("value")

    def open_session(self, name: str = "ws", ttl: float = 30.0) -> dict[str, Any]:
        v: dict[str, Any] = self.ok({"op": "open_session", "name": name, "ttl": ttl})
        return v

    def acquire(self, session: str, resources: list[str], ack: bool = True, **options: Any) -> int:
        i = next(self.ids)
        self.send(
            {
                "op": "acquire",
                "id": i,
                "ack": ack,
                "request": {"session": session, "resources": resources, "options": options},
            }
        )
        return i

    def expect_bye(self, timeout: float = 10) -> tuple[dict[str, Any], int | None]:
        """Reads to the end: the `bye` the server sent, and the close code it closed with."""
        bye = None
        try:
            while True:
                m = self.recv(timeout)
                if m.get("op") == "bye":
                    bye = m
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        assert bye is not None, f"no bye before the close (code {code})"
        return bye, code

    def close(self) -> None:
        self.conn.close()


class RawWs:
    """A WebSocket client on a socket of its own, that reads only when told to: the
    subscriber that stopped reading. Its receive buffer is small, so that the server's
    writes stall soon."""

    def __init__(self, server: Server, role: str = "read", rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(server.host_port)
        key = base64.b64encode(os.urandom(16)).decode()
        host, port = server.host_port
        self.sock.sendall(
            (
                f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {server.tokens[role]}\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(1)  # byte by byte: no frame is read with the head
            assert chunk, "the server closed during the upgrade"
            self.buf += chunk
        assert self.buf.startswith(b"HTTP/1.1 101"), self.buf
        self.buf = b""

    def send(self, msg: Any) -> None:
        data = json.dumps(msg).encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frames(self, timeout: float) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of each frame, until the connection ends."""
        self.sock.settimeout(timeout)
        try:
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack(">H", self._read(2))
                elif n == 127:
                    (n,) = struct.unpack(">Q", self._read(8))
                yield b0 & 0x0F, self._read(n)
        except (EOFError, ConnectionResetError):
            return

    def close(self) -> None:
        self.sock.close()
