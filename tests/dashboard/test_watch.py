"""`interlock watch`, the dashboard's resources table in a terminal: run in a real
terminal (tmux), against a server, while a client in another process takes and lets go
of a lock."""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Callable, Iterator

import pytest
from conftest import BINARY, Client, Server, tmux_available, wait_until

pytestmark = pytest.mark.skipif(not tmux_available(), reason="tmux is missing (run.sh installs it)")


class Terminal:
    """A program in a tmux session of its own (80 columns would wrap the table: 160)."""

    def __init__(self, command: list[str]) -> None:
        self.name = f"interlock-watch-{os.getpid()}"
        # Its own server socket (-L), so that no tmux the user runs is touched.
        self.tmux = ["tmux", "-L", self.name]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.name, "-x", "160", "-y", "40",
                        shlex.join(command)], check=True)

    def screen(self) -> str:
        out = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name],
                             check=True, capture_output=True, text=True)
        return out.stdout

    def shows(self, text: str) -> str | None:
        """The screen, if `text` is on it."""
        screen = self.screen()
        return screen if text in screen else None

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], check=False, capture_output=True)


@pytest.fixture
def terminal() -> Iterator[Callable[[list[str]], Terminal]]:
    made: list[Terminal] = []

    def make(command: list[str]) -> Terminal:
        made.append(Terminal(command))
        return made[-1]

    yield make
    for t in made:
        t.close()


def test_watch_shows_a_lock_taken_and_let_go_in_place(
    make_server: Callable[..., Server], make_client: Callable[..., Client],
    terminal: Callable[[list[str]], Terminal],
) -> None:
    srv = make_server()
    term = terminal([str(BINARY), "watch", "--url", srv.url])
    wait_until(lambda: "nothing is held" in term.screen(), what="the empty table")
    assert "[live]" in term.screen()

    c = make_client(srv, "ReactorController", {"user": "ana", "host": "lab-pc-3", "pid": 4242})
    c.acquire("reactor-1", ttl=60.0)
    screen = wait_until(lambda: term.shows("reactor-1"), timeout=2.0, what="the lock in the table")
    row = next(line for line in screen.splitlines() if line.startswith("reactor-1"))
    for part in ("holds", "ReactorController", "ana@lab-pc-3 pid 4242", "exclusive"):
        assert part in row, (part, row)
    assert "acquired reactor-1 by ReactorController" in screen
    # In place: one title line, however many times it was redrawn.
    assert screen.count("interlock watch") == 1

    waiter = make_client(srv, "bluesky-plan")
    waiter.enqueue("reactor-1", priority=3)
    wait_until(lambda: "waits #1" in term.screen(), timeout=2.0, what="the queue")

    c.release("reactor-1")
    waiter.expect("granted")
    waiter.release("reactor-1")
    wait_until(lambda: "nothing is held" in term.screen(), timeout=2.0, what="the lock to go")
    screen = term.screen()
    assert not [line for line in screen.splitlines() if line.startswith("reactor-1")], screen
    assert screen.count("interlock watch") == 1

    # The server goes away: the watch says so (within its 5 s probe), and recovers.
    srv.stop()
    wait_until(lambda: term.shows("[DISCONNECTED, retrying]"), timeout=8.0, what="disconnected")
    srv.restart()
    wait_until(lambda: term.shows("[live]"), timeout=8.0, what="live again")
