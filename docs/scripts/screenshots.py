"""
Docs build step: draw the notebook pictures in headless Chromium and save them as PNG.

    python docs/scripts/screenshots.py [OUT_DIR]     (default: docs/img)

Writes ``calltree.png`` (ProfileReport's call tree and icicle), ``leak.png`` (LeakAnalysis)
and ``latency.png`` (PerformanceMonitor), the pictures docs/profiling.md and
docs/monitoring.md show. Needs the system's Chromium (``/usr/bin/chromium``, or
``SAFLA_DIAG_CHROMIUM``) and the ``playwright`` package; it downloads nothing. The browser tests
(tests/browser) use the same functions.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:13px sans-serif;margin:12px;background:#fff}}
section{{margin:0 0 24px;padding:8px;border:1px solid #ddd;display:inline-block}}
h2{{font-size:14px;margin:0 0 6px}}</style></head><body>{body}</body></html>"""


def chromium() -> str | None:
    """The Chromium binary to drive, or None when the machine has none."""
    configured = os.environ.get("SAFLA_DIAG_CHROMIUM")
    for candidate in (configured, "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def page(sections: dict[str, str], title: str = "safla_diag") -> str:
    """One HTML page with each ``_repr_html_`` in its own ``<section id=NAME>``."""
    body = "".join(
        f'<section id="{name}"><h2>{name}</h2>{html}</section>' for name, html in sections.items()
    )
    return PAGE.format(title=title, body=body)


_SERVICE = """
def parse(n):
    return [int(str(i)) for i in range(n)]

def score(items):
    return sum(i * i for i in items)

def handle(n):
    return score(parse(n)) + len(sorted(str(i) for i in range(n // 4)))

def serve():
    return sum(handle(3000) for _ in range(20))
"""


def _workload() -> Any:
    # Compiled under a short made-up file name: the pictures show no path of this machine.
    ns: dict[str, Any] = {}
    exec(compile(_SERVICE, "service.py", "exec"), ns)
    return ns["serve"]


def pictures() -> dict[str, str]:
    """The three pictures of the docs: call tree, leak, latency (each a ``_repr_html_``)."""
    import safla_diag as sd

    prof = sd.CPUProfiler(label="serve", log_level=None, top=8)
    prof.profile_function(_workload())()
    assert prof.last_report is not None

    det = sd.MemoryLeakDetector(memory_limit_mb=2048)
    for i in range(180):  # three hours: a floor climbing 0.8 MB a minute under a GC sawtooth
        det.add_sample(400.0 + 0.8 * i + (i % 6) * 4.0, i * 60.0)

    mon = sd.PerformanceMonitor(window_size=1000, max_avg_s=0.08, max_p95_s=0.25)
    for i in range(1000):
        base = 0.02 + 0.03 * ((i * 7919) % 100) / 100
        mon.record_request(base + (0.3 if i % 40 == 0 else 0.0), success=i % 97 != 0)

    return {
        "calltree": prof.last_report._repr_html_(),
        "leak": det.analyze(top_consumers=False)._repr_html_(),
        "latency": mon._repr_html_(),
    }


def launch(playwright: Any, executable: str) -> Any:
    """Headless Chromium from the system, never a downloaded build."""
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def shoot(sections: dict[str, str], out_dir: Path, *, executable: str) -> list[Path]:
    """Render ``sections`` in one page and save one PNG per section into ``out_dir``."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = launch(p, executable)
        try:
            tab = browser.new_page(viewport={"width": 1100, "height": 900})
            tab.set_content(page(sections), wait_until="load")
            for name in sections:
                target = out_dir / f"{name}.png"
                tab.locator(f"section#{name}").screenshot(path=str(target))
                written.append(target)
        finally:
            browser.close()
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "img"
    exe = chromium()
    if exe is None:
        print("no Chromium on this machine: install the chromium package", file=sys.stderr)
        return 1
    for path in shoot(pictures(), out, executable=exe):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
