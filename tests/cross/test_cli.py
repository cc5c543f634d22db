"""The `interlock` command as its users run it (the package's console script, as every
test here): its output piped into a reader that goes away, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import requests

from helpers import Server, interlock_bin, open_session


def watch(server: Server) -> subprocess.Popen[str]:
    env = dict(os.environ, INTERLOCK_URL=server.url, INTERLOCK_TOKEN=server.tokens["read"])
    return subprocess.Popen([interlock_bin(), "watch", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def churn(server: Server) -> None:
    """One more event for `watch` to print."""
    s = open_session(server, name="churn")
    requests.delete(f"{server.url}/v1/sessions/{s['id']}", headers=server.auth("admin"),
                    timeout=10).raise_for_status()


def first_line(proc: subprocess.Popen[str], server: Server) -> str:
    """The first line it prints, making events until it does (it may not be watching yet)."""
    assert proc.stdout is not None
    got = threading.Event()

    def make_events() -> None:
        while not got.wait(0.05):
            churn(server)
    maker = threading.Thread(target=make_events)
    maker.start()
    try:
        return proc.stdout.readline()
    finally:
        got.set()
        maker.join()


def ends(proc: subprocess.Popen[str], server: Server, timeout: float = 10.0) -> tuple[int, str]:
    """Its exit code and stderr, once it ended (making events while it runs on)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the command did not end"
        churn(server)
        time.sleep(0.05)
    assert proc.stderr is not None
    return proc.returncode, proc.stderr.read()


def test_watch_into_a_reader_that_goes_away_ends_quietly(server: Server) -> None:
    proc = watch(server)
    assert proc.stdout is not None
    assert first_line(proc, server).startswith("{")  # `| head -1`
    proc.stdout.close()
    code, err = ends(proc, server)
    assert code == 128 + signal.SIGPIPE, (code, err)  # as a shell reports SIGPIPE's end
    assert "panic" not in err.lower(), err


def test_ctrl_c_ends_watch(server: Server) -> None:
    proc = watch(server)
    assert first_line(proc, server).startswith("{")
    proc.send_signal(signal.SIGINT)
    code, err = ends(proc, server, timeout=5.0)
    assert code == -signal.SIGINT, (code, err)
    assert "Traceback" not in err, err


def test_ctrl_c_stops_serve_cleanly() -> None:
    proc = subprocess.Popen([interlock_bin(), "serve", "--bind", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("interlock serving at ")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    err = proc.stderr.read()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_serve_refuses_a_limit_that_would_refuse_everything() -> None:
    for flag in ("--max-body", "--max-message", "--max-connections",
                 "--max-sessions-per-connection", "--max-waits-per-connection"):
        r = subprocess.run([interlock_bin(), "serve", "--bind", "127.0.0.1:0", flag, "0"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode != 0 and "interlock serving at" not in r.stdout, (flag, r)
        assert "must be at least 1" in r.stderr, (flag, r.stderr)
