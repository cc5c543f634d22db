"""Where the tests get their engines: an embedded `interlock.Engine`, or (the remote mode)
`interlock.connect()` to an engine that the engine factory (`engine_factory.py`, another
process) made with the same configuration and serves. See README.md."""

from __future__ import annotations

import builtins
import json
import pathlib
import subprocess
import sys
import threading
from typing import Any, Callable, Optional, Sequence

from helpers import wait_until

import interlock

MODES = ("embedded", "remote")

# The configuration an engine takes (`interlock.Engine`'s arguments) that a remote engine
# takes too: a subscription and the sessions without a TTL of their own are the client's.
CLIENT_CONFIG = ("session_ttl", "subscriber_buffer")


class Factory:
    """The engine factory process, and the one pipe to it."""

    def __init__(self) -> None:
        script = pathlib.Path(__file__).with_name("engine_factory.py")
        self._proc = subprocess.Popen(
            [sys.executable, "-W", "error", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()

    def ask(self, request: dict[str, Any]) -> Any:
        """Sends a request and returns its answer, or raises what the factory raised."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the engine factory ended (exit code {self._proc.poll()})")
        answer = json.loads(line)
        if "err" in answer:
            err = answer["err"]
            cls = getattr(interlock, err["type"], None) or getattr(builtins, err["type"], None)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                cls = RuntimeError
            raise cls(err["message"])
        return answer["ok"]

    def close(self) -> None:
        """Ends the factory: it closes every server and engine still open."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        code = self._proc.wait(timeout=60)
        self._proc.stdout.close()
        assert code == 0, f"the engine factory failed (exit code {code})"


class Engines:
    """The engines of one test (the `make_engine` fixture). `make_engine(**config)` takes
    what `interlock.Engine(...)` takes; in the remote mode the factory makes that engine
    and the test gets `interlock.connect()` to it. The served side of each is closed when
    the test ends, after its remote engine (whether the test closed that or not)."""

    def __init__(self, mode: str, factory: Optional[Factory]) -> None:
        assert mode in MODES
        self.mode = mode
        self._factory = factory
        self._served: list[int] = []
        # By `id()` of the remote engine (an `Engine` takes no weak reference, and a strong
        # one would keep alive an engine that a test drops).
        self._ids: dict[int, int] = {}

    @property
    def remote(self) -> bool:
        return self.mode == "remote"

    def __call__(self, **config: Any) -> interlock.Engine:
        if not self.remote:
            return interlock.Engine(**config)
        url = self.served_url(**config)
        client = {k: config[k] for k in CLIENT_CONFIG if config.get(k) is not None}
        engine = interlock.connect(url, **client)
        self._ids[id(engine)] = self._served[-1]
        return engine

    def noticed(self, condition: Callable[[], object], what: str) -> None:
        """A lease's state once the call that ended it (a force release, a preempting
        acquire, a release by token, a session's close) has returned: on an embedded
        engine it holds at once; on a remote one it holds once the server's notice has
        arrived (DESIGN, Remote sessions: "exact as soon as the loss notice arrives,
        normally within one round trip")."""
        if self.remote:
            wait_until(condition, what)
        else:
            assert condition(), what

    def served_url(self, **config: Any) -> str:
        """(Remote mode) The URL of a fresh engine that the factory serves, for a client in
        another process."""
        assert self._factory is not None, "only the remote mode serves engines"
        made = self._factory.ask({"op": "new", "config": config})
        self._served.append(made["id"])
        return str(made["url"])

    def abandon(
        self,
        eng: interlock.Engine,
        resources: Sequence[str],
        name: str,
        ttl: Optional[float] = None,
        on_expire: Optional[str] = None,
    ) -> tuple[str, str]:
        """A session of `eng` that acquires `resources` (if any) and is then left alone, as
        by a client that crashed: nothing heartbeats it, nothing uses it. Its id and secret.
        (Remote mode: a session of another client of the same server, which then stops:
        every session of a remote engine in this process is heartbeated.)"""
        if not self.remote:
            session = eng.session(name, ttl=ttl, on_expire=on_expire)  # type: ignore[arg-type]
            if resources:
                session.acquire_many(list(resources))
            assert session.secret is not None
            return session.id, session.secret
        assert self._factory is not None
        request = {"op": "abandon", "id": self._ids[id(eng)], "name": name, "ttl": ttl}
        request.update({"on_expire": on_expire, "resources": list(resources)})
        session_id, secret = self._factory.ask(request)
        return str(session_id), str(secret)

    def close(self) -> None:
        """Closes the served side of every engine of the test."""
        if self._factory is not None:
            for served in self._served:
                self._factory.ask({"op": "close", "id": served})
        self._served.clear()
        self._ids.clear()
