"""The page's files as the server sends them: every server serves them (the standalone
one and `eng.serve()`), under a strict Content-Security-Policy, and they neither load
anything from elsewhere nor ever turn data into HTML."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import interlock

ASSETS = Path(__file__).resolve().parent.parent.parent / "server/assets"
PATHS = {"/": "index.html", "/assets/app.js": "app.js", "/assets/app.css": "app.css"}


def test_an_embedded_engine_serves_the_page_from_its_binary_under_a_strict_policy() -> None:
    with interlock.Engine() as eng, eng.serve("127.0.0.1:0") as srv:
        for path, name in PATHS.items():
            with urllib.request.urlopen(srv.url + path, timeout=5) as r:
                policy = r.headers["content-security-policy"]
                assert r.read().decode() == (ASSETS / name).read_text(), "built from the assets"
            assert "script-src 'self';" in policy and "style-src 'self';" in policy
            assert "unsafe-inline" not in policy and "default-src 'none'" in policy
            assert "frame-ancestors 'none'" in policy


def test_the_assets_load_nothing_from_elsewhere_and_never_write_html() -> None:
    for name in PATHS.values():
        text = (ASSETS / name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), name
        assert "@import" not in text and "url(" not in text, name
    js = (ASSETS / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "localStorage", "sessionStorage"):
        assert sink not in js, sink
    html = (ASSETS / "index.html").read_text()
    assert "<script>" not in html and " style=" not in html, "no inline script or style"
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
