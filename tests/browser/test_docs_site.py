"""
The docs site, built with mkdocs and served on 127.0.0.1, loads in headless Chromium: no
console error, no request leaves the machine, every picture loads. Slow (the build takes
~15 s), so it runs with ``-m slow`` and in ``nox -s docs``'s wake, not in the default suite.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_render import EXECUTABLE, shots, sync_api

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_every_page_loads_cleanly(site: str) -> None:
    """Each page: no console error, no request off the site (none at all), every image decoded."""
    pages = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    with sync_api.sync_playwright() as p:
        browser = shots.launch(p, EXECUTABLE)
        try:
            tab = browser.new_page()
            problems: list[str] = []
            tab.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            # Every request off the served site is refused and recorded: the docs work offline.
            def gate(route: Any) -> None:
                url = route.request.url
                if url.startswith((site, "data:", "about:", "blob:")):
                    route.continue_()
                else:
                    problems.append(f"request: {url}")
                    route.abort()

            tab.route("**/*", gate)
            for page in pages:
                url = f"{site}/" if page == "index" else f"{site}/{page}/"
                tab.goto(url, wait_until="load")
                broken = tab.eval_on_selector_all(
                    "img", "els => els.filter(e => !e.naturalWidth).map(e => e.src)"
                )
                assert broken == [], (page, broken)
            assert problems == []
        finally:
            browser.close()
