"""The dashboard in a real browser (Debian's Chromium, driven by Playwright), against
`interlock serve` in another process, with lock clients in processes of their own."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from conftest import (
    ADMIN_TOKEN,
    CLIENT_TOKEN,
    READ_TOKEN,
    ROOT,
    TARGET,
    Client,
    Server,
    Watched,
    wait_until,
)
from playwright.sync_api import Page, expect

MakeServer = Callable[..., Server]
MakeClient = Callable[..., Client]
OpenPage = Callable[..., Watched]


def row(page: Page, resource: str) -> Any:
    """The resources table's row of `resource` (found by its text, whatever it holds)."""
    return page.locator("#res-body tr").filter(
        has=page.locator("button.name").get_by_text(resource, exact=True)
    )


def log_seqs(page: Page) -> list[int]:
    seqs: list[int] = page.eval_on_selector_all("#log-list li.ev", "els => els.map(e => +e.dataset.seq)")
    return seqs


def login(page: Page, token: str) -> None:
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    expect(page.locator("#views")).to_be_visible()


def stale_session(srv: Server, name: str, metadata: dict[str, Any], resource: str,
                  token: str | None = None) -> str:
    """A session that holds `resource` and then stops heartbeating (a crashed program):
    TTL 1 s, on_expire "keep", so it turns stale and keeps its lease."""
    status, s = srv.http("POST", "/v1/sessions",
                         {"name": name, "metadata": metadata, "ttl": 1.0, "on_expire": "keep"}, token)
    assert status == 201, s
    status, body = srv.http("POST", f"/v1/sessions/{s['id']}/acquire", {"resources": [resource]},
                            token, headers={"interlock-session-secret": s["secret"]})
    assert status == 200, body
    return str(s["id"])


def test_live_updates_within_a_second_without_polling(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server()
    w = open_page(srv.url)
    page = w.page
    expect(page.locator("#conn")).to_have_text("● live")
    expect(page.locator("#res-empty")).to_have_text("Nothing is held or waited for.")

    holder = make_client(srv, "ReactorController", {"user": "ana", "host": "lab-pc-3", "pid": 4242})
    holder.acquire("reactor-1", ttl=60.0)
    # The row within a second of the grant.
    r = row(page, "reactor-1")
    expect(r).to_be_visible(timeout=1000)
    expect(r.locator(".holder")).to_contain_text("ReactorController", timeout=1000)
    expect(r.locator(".holder .meta")).to_have_text("user ana · host lab-pc-3 · pid 4242")
    expect(r.locator(".holder")).to_contain_text("■ exclusive")
    expect(r.locator(".ttl")).to_contain_text("left")

    waiter = make_client(srv, "bluesky-plan", {"user": "bo"})
    assert waiter.enqueue("reactor-1", priority=3)["position"] == 1
    first = r.locator('.queue li[data-position="1"]')
    expect(first).to_contain_text("#1 bluesky-plan", timeout=1000)
    expect(first).to_contain_text("priority 3")
    expect(r).to_contain_text("◔ 1 waiting")

    # The history, opened from the row, follows the resource while it is open.
    r.locator("button.name").click()
    history = page.locator("#history-dialog")
    expect(history).to_be_visible()
    expect(history.locator("#history-body tr")).to_have_count(2)  # newest first
    expect(history.locator("#history-body tr").first).to_contain_text("queued")
    expect(history.locator("#history-body tr").last).to_contain_text("acquired")
    page.keyboard.press("Escape")
    expect(history).to_be_hidden()

    # Release: the queue's head is granted, and the row shows it within a second.
    holder.release("reactor-1")
    waiter.expect("granted")
    expect(r.locator(".holder")).to_contain_text("bluesky-plan", timeout=1000)
    expect(r.locator(".queue")).to_have_count(0)
    waiter.release("reactor-1")
    expect(r).to_have_count(0, timeout=1000)
    expect(page.locator("#log-list")).to_contain_text("released")

    # The countdowns tick, but nothing asks the server while nothing happens.
    quiet = len(w.requests)
    time.sleep(2.5)
    assert w.requests[quiet:] == [], w.requests[quiet:]
    assert w.errors == [] and w.dialogs == []


def test_the_log_stops_scrolling_while_the_user_reads(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server()
    c = make_client(srv, "busy")
    w = open_page(srv.url, height=600)
    page = w.page
    log = page.locator("#log-list")
    for _ in range(25):
        c.acquire("motor1")
        c.release("motor1")
    expect(log.locator("li.ev").last).to_contain_text("released", timeout=2000)
    at_bottom = "e => e.scrollHeight - e.scrollTop - e.clientHeight < 8"
    wait_until(lambda: log.evaluate(at_bottom), what="the log to follow the newest event")

    log.evaluate("e => { e.scrollTop = 0; }")  # the user scrolls up to read
    wait_until(lambda: page.evaluate("() => !state.following"), what="the log to pause")
    c.acquire("motor1")
    follow = page.locator("#log-follow")
    expect(follow).to_have_text("‖ paused · 1 new ↓", timeout=1000)
    assert log.evaluate("e => e.scrollTop") == 0, "the log scrolled under the reader"
    follow.click()
    expect(follow).to_be_hidden()
    assert log.evaluate(at_bottom)
    expect(log.locator("li.ev").last).to_contain_text("acquired")


def test_the_log_says_what_it_missed(make_server: MakeServer, open_page: OpenPage) -> None:
    """The page's bookkeeping of seqs, fed events as the stream delivers them: a lagged
    marker explains the jump after it, an unexplained jump is shown as a gap, and a server
    that numbers afresh (restarted without a journal) is said to have done so."""
    srv = make_server()
    page = open_page(srv.url).page
    expect(page.locator("#conn")).to_have_text("● live")
    page.evaluate("""() => {
        const send = (fields) => onEvent({data: JSON.stringify({seq: 0, at: Date.now() / 1000,
            kind: "acquired", resource: "r", session_id: null, session_name: "s", mode: null,
            fence: null, priority: null, position: null, reason: null, ...fields})});
        const base = state.lastSeq;
        send({seq: base + 1});
        send({kind: "lagged", position: 5});
        send({seq: base + 7});
        send({seq: base + 9});
        send({seq: 1});
        send({seq: 2});
        // What a reconnect from seq 2 gets of a server that restarted again, numbering
        // afresh: a lagged marker without a count, then its events from #1.
        send({kind: "lagged", position: null});
        send({seq: 1});
    }""")
    log = page.locator("#log-list")
    expect(log.locator("li.m-lagged")).to_have_text(
        re.compile("5 events were missed here \\(the stream lagged\\)"))
    expect(log.locator("li.m-gap")).to_have_count(1)
    renumbered = log.locator("li.m-renumbered")
    expect(renumbered).to_have_count(2)
    expect(renumbered.first).to_contain_text("numbered afresh from #1")
    expect(renumbered.last).to_contain_text("numbered afresh, and what happened before")
    assert log_seqs(page)[-3:] == [1, 2, 1] and page.evaluate("() => state.lastSeq") == 1


def test_an_admin_force_releases_with_a_reason_and_a_reader_cannot(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server(tokens=True)
    holder = make_client(srv, "ReactorController", {"user": "ana"}, token=CLIENT_TOKEN)
    holder.acquire("reactor-1")
    holder.acquire("scope-2")

    admin = open_page(srv.url)
    login(admin.page, ADMIN_TOKEN)
    r = row(admin.page, "reactor-1")
    r.locator("button.force").click()
    dialog = admin.page.locator("#force-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#force-name")).to_have_text("reactor-1")
    expect(dialog.locator("#force-holders")).to_have_text("ReactorController")
    ok = dialog.locator("#force-ok")
    expect(ok).to_be_disabled()  # no reason, no release
    dialog.locator("#force-reason").fill("   ")
    expect(ok).to_be_disabled()
    reason = "driver hung; power-cycled by ana"
    dialog.locator("#force-reason").fill(reason)
    ok.click()
    expect(dialog).to_be_hidden()

    # The holder, in its own process, learns it lost the lease and why.
    lost = holder.expect("lost")
    assert (lost["resource"], lost["why"]) == ("reactor-1", "force_released")
    entry = admin.page.locator("#log-list li.k-force_released")
    expect(entry).to_contain_text("reactor-1", timeout=1000)
    expect(entry).to_contain_text(f"reason: {reason}")
    expect(r).to_have_count(0, timeout=1000)
    expect(admin.page.locator("#toast")).to_contain_text("Released 1 holder(s) of reactor-1")

    # A name that needs encoding in the path: slashes, a space, "?" and "#".
    odd = "/data/run 42?x=1#frames"
    holder.acquire(odd)
    row(admin.page, odd).locator("button.force").click()
    dialog.locator("#force-reason").fill("disk full")
    ok.click()
    lost = holder.expect("lost")
    assert (lost["resource"], lost["why"]) == (odd, "force_released")
    expect(row(admin.page, odd)).to_have_count(0, timeout=1000)

    # A reader sees everything but the button, and the server refuses it anyway.
    reader = open_page(srv.url)
    login(reader.page, READ_TOKEN)
    expect(row(reader.page, "scope-2")).to_be_visible()
    expect(row(reader.page, "scope-2").locator("button", has_text="History")).to_be_visible()
    expect(reader.page.locator("button.force")).to_have_count(0)
    expect(admin.page.locator("button.force")).to_have_count(1)
    status = reader.page.evaluate(
        """() => fetch('/v1/locks/scope-2/force-release', {method: 'POST',
             headers: {'content-type': 'application/json'}, body: '{"reason": "x"}'})
           .then(r => r.status)"""
    )
    assert status == 403
    code, body = srv.http("POST", "/v1/locks/scope-2/force-release", {"reason": "x"}, READ_TOKEN)
    assert code == 403 and body["error"]["kind"], body
    code, _ = srv.http("GET", "/v1/locks/scope-2", token=READ_TOKEN)
    assert code == 200
    assert holder.seen == [] and holder.lines.empty(), "scope-2 was not touched"


def test_a_server_restart_shows_disconnected_and_resumes_without_a_gap(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server(journal=True)
    holder = make_client(srv, "ReactorController", {"user": "ana"})
    holder.acquire("reactor-1")
    w = open_page(srv.url)
    page = w.page
    expect(row(page, "reactor-1")).to_be_visible()
    before = log_seqs(page)

    srv.stop()
    expect(page.locator("#conn")).to_have_text("⚠ disconnected, retrying…", timeout=5000)
    expect(page.locator("#log-list li.m-down")).to_have_count(1)

    srv.restart()
    # Events while the page is still away: it must get them when it is back.
    other = make_client(srv, "after-restart")
    other.acquire("scope-2")
    expect(page.locator("#conn")).to_have_text("● live", timeout=15000)
    expect(row(page, "scope-2")).to_be_visible(timeout=2000)
    expect(row(page, "reactor-1")).to_be_visible()  # the journal kept it
    expect(page.locator("#log-list li.k-acquired").filter(has_text="scope-2")).to_have_count(1)

    seqs = log_seqs(page)
    assert seqs[: len(before)] == before
    lagged = page.locator("#log-list li.m-lagged").count()
    assert lagged > 0 or seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    expect(page.locator("#log-list li.m-gap")).to_have_count(0)
    assert w.dialogs == []


HOSTILE = "<img src=x onerror=alert(1)>"


def test_hostile_names_and_metadata_are_shown_as_text(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server()
    metadata = {"user": "</script><script>alert(2)</script>", "app": '"><svg onload=alert(3)>'}
    session = "<b onmouseover=alert(4)>eve</b>"
    c = make_client(srv, session, metadata)
    c.acquire(HOSTILE)
    other = make_client(srv, "<iframe src=javascript:alert(5)>")
    other.enqueue(HOSTILE)

    w = open_page(srv.url)
    page = w.page
    r = row(page, HOSTILE)
    expect(r).to_be_visible()
    assert r.locator("button.name").text_content() == HOSTILE
    expect(r.locator(".holder .hname")).to_have_text(session)
    expect(r.locator(".holder .meta")).to_have_text(
        'user </script><script>alert(2)</script> · app "><svg onload=alert(3)>'
    )
    expect(r.locator(".queue strong")).to_have_text("<iframe src=javascript:alert(5)>")
    expect(page.locator("#ses-body")).to_contain_text(session)
    expect(page.locator("#log-list")).to_contain_text(HOSTILE)
    r.locator(".holder .hname").hover()

    r.locator("button", has_text="History").click()
    expect(page.locator("#history-name")).to_have_text(HOSTILE)
    expect(page.locator("#history-body")).to_contain_text(session)
    page.keyboard.press("Escape")
    r.locator("button.force").click()
    expect(page.locator("#force-name")).to_have_text(HOSTILE)
    page.fill("#force-reason", "<script>alert(6)</script>")
    page.click("#force-ok")
    assert c.expect("lost")["why"] == "force_released"
    expect(page.locator("#log-list li.k-force_released").first).to_contain_text(
        "reason: <script>alert(6)</script>"
    )

    markup = "#res-body img, #res-body svg, #res-body script, #res-body iframe, #res-body b, " \
             "#log-list img, #log-list script, #log-list i, #ses-body script, #history-body script"
    assert page.locator(markup).count() == 0
    page.wait_for_timeout(300)
    assert w.dialogs == [], w.dialogs
    assert w.errors == [], w.errors


def test_login_logout_and_the_token_is_kept_only_in_an_httponly_cookie(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server(tokens=True)
    holder = make_client(srv, "ReactorController", token=CLIENT_TOKEN)
    holder.acquire("reactor-1")
    w = open_page(srv.url)
    page = w.page
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#views")).to_be_hidden()
    assert page.locator("#res-body tr").count() == 0

    page.fill("#token", "not-a-token-of-this-server")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("That token was refused.")
    expect(page.locator("#views")).to_be_hidden()
    assert w.context.cookies() == []

    login(page, ADMIN_TOKEN)
    expect(row(page, "reactor-1")).to_be_visible()
    expect(page.locator("#who")).to_have_text("role: admin")
    (cookie,) = w.context.cookies()
    assert cookie["name"] == "interlock"
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    assert ADMIN_TOKEN not in cookie["value"]
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: out of the script's reach
    page.reload()  # the login outlives a reload
    expect(row(page, "reactor-1")).to_be_visible()

    def storage() -> str:
        return str(page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])"))

    assert ADMIN_TOKEN not in page.url and storage() == "[{},{}]"
    assert not [u for u in w.requests if ADMIN_TOKEN in u]
    assert page.input_value("#token") == ""

    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#views")).to_be_hidden()
    assert page.locator("#res-body tr, #log-list li").count() == 0, "nothing stays on show"
    assert w.context.cookies() == []
    assert page.evaluate("() => fetch('/v1/locks').then(r => r.status)") == 401
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#views")).to_be_hidden()
    assert ADMIN_TOKEN not in page.url and storage() == "[{},{}]"


def scene(srv: Server, make_client: MakeClient) -> None:
    """A lab at work: an exclusive holder with a queue, shared observers, a crashed program
    whose session is stale, a long folder name, and a force release in the log."""
    ana = make_client(srv, "ReactorController",
                      {"user": "ana", "host": "lab-pc-3", "pid": 4242, "app": "optimizer 2.1"})
    ana.acquire("reactor-1", ttl=120.0)
    make_client(srv, "manual-operator", {"user": "li", "host": "bench-1"}).enqueue("reactor-1", priority=2)
    make_client(srv, "bluesky-plan", {"user": "bo", "app": "bluesky"}).enqueue("reactor-1", priority=3)
    for name, who in (("Plotter", "ana"), ("DataLogger", "svc")):
        make_client(srv, name, {"user": who, "host": "lab-pc-3"}).acquire("scope-2", mode="shared")
    stale_session(srv, "packing-tool", {"user": "kim", "host": "pack-2", "pid": 977}, "psu-1")
    sync = make_client(srv, "folder-sync", {"user": "svc", "app": "rsync-wrapper"})
    sync.acquire("/data/2026-12-02/run42/raw-frames-and-calibration", ttl=300.0)
    motor = make_client(srv, "MotorCalibration", {"user": "jo"})
    motor.acquire("motor1")
    srv.http("POST", "/v1/locks/motor1/force-release", {"reason": "driver hung; power-cycled"})
    motor.expect("lost")


def no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("() => document.documentElement.clientWidth")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    # The table fits, or sits in a container that scrolls it sideways.
    fits = page.evaluate("""() => { const t = document.getElementById('res-table');
        const box = t.parentElement; return t.getBoundingClientRect().right <= innerWidth + 1
          || getComputedStyle(box).overflowX === 'auto'; }""")
    assert fits


def test_readable_at_1280x800_and_on_a_phone_and_the_screenshot(
    make_server: MakeServer, make_client: MakeClient, open_page: OpenPage
) -> None:
    srv = make_server()
    scene(srv, make_client)
    time.sleep(1.2)  # packing-tool turns stale
    for width, height in ((1280, 800), (390, 844)):
        w = open_page(srv.url, width, height)
        page = w.page
        stale = row(page, "psu-1").locator(".badge.stale", has_text="no heartbeat for")
        expect(stale).to_be_visible()
        expect(row(page, "reactor-1").locator(".queue li")).to_have_count(2)
        expect(page.locator("#ses-body")).to_contain_text("⚠ stale")
        no_horizontal_overflow(page)
        # Every cell of the table can be read: inside the viewport horizontally.
        right = page.eval_on_selector_all(
            "#res-body td", "els => Math.max(...els.map(e => e.getBoundingClientRect().right))")
        assert right <= width, (width, right)
        page.wait_for_timeout(1100)  # a second has passed on every countdown
        shots = TARGET / "dashboard-test"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / f"dashboard-{width}x{height}.png"))
        if width == 1280:
            # docs/dashboard.png is committed: only rewritten when asked, so that a test run
            # leaves the work tree as it was.
            if os.environ.get("INTERLOCK_UPDATE_SCREENSHOT") == "1":
                page.screenshot(path=str(ROOT / "docs/dashboard.png"))
        assert w.errors == [] and w.dialogs == []

    # Filter and sort (on the phone's page, the last one).
    def names() -> list[str]:
        found: list[str] = page.eval_on_selector_all("#res-body button.name", "els => els.map(e => e.textContent)")
        return found

    data = "/data/2026-12-02/run42/raw-frames-and-calibration"
    assert names() == [data, "psu-1", "reactor-1", "scope-2"]
    page.fill("#filter", "BLUESKY")  # a waiter's session, whatever the case
    expect(page.locator("#res-body tr")).to_have_count(1)
    assert names() == ["reactor-1"]
    expect(page.locator("#res-count")).to_have_text("(1 of 4)")
    page.fill("#filter", "nothing-like-it")
    expect(page.locator("#res-empty")).to_have_text("No resource matches the filter.")
    page.fill("#filter", "")
    page.select_option("#sort", "age")
    assert names() == ["reactor-1", "scope-2", "psu-1", data]
    assert Path(shots / "dashboard-1280x800.png").stat().st_size > 10_000
