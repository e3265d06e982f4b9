"""
Every ``_repr_html_`` rendered in a real headless Chromium: no console error, the call tree
expands on click, the SVGs have content. Screenshots are kept as test artefacts, in
``$SAFLA_DIAG_ARTEFACTS`` when set (CI can keep that folder), else in pytest's tmp folder.

Skipped, with the reason, when the machine has no Chromium or playwright is not installed;
playwright drives the system's browser (``executable_path``) and never downloads one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import safla_diag as sd

from ..test_reports import CASES

ROOT = Path(__file__).resolve().parent.parent.parent
_spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs/scripts/screenshots.py")
assert _spec is not None and _spec.loader is not None
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)

EXECUTABLE = shots.chromium()
if EXECUTABLE is None:
    pytest.skip("no Chromium on this machine (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


def _extra_reprs(tmp_path: Path) -> dict[str, str]:
    """The objects that had only a plain repr before, in states worth drawing."""
    mp = sd.MemoryProfiler()
    with mp:
        mp.take_snapshot("loaded")
    cfg = sd.SaflaConfig.from_mapping(
        {
            "database_url": "postgresql://app:pw-browser-9@127.0.0.1:5432/safla",
            "redis_url": "redis://127.0.0.1:6379/0",
            "vector_dimension": 384,
            "mcp_servers": ["http://127.0.0.1:8080/mcp"],
        }
    )
    det = sd.MemoryLeakDetector()
    for i in range(90):
        det.add_sample(250.0 + (i % 4), i * 60.0)
    opt = sd.VectorMemoryOptimizer()
    opt.register_cache({}, weak=False)
    return {
        **_live_objects(tmp_path),
        "MemoryMonitor": sd.MemoryMonitor()._repr_html_(),
        "VectorMemoryOptimizer": opt._repr_html_(),
        "MemoryProfiler": mp._repr_html_(),
        "SaflaConfig": cfg._repr_html_(),
        "MemoryLeakDetector": det._repr_html_(),
    }


def _live_objects(tmp_path: Path) -> dict[str, str]:
    """The objects a service keeps alive, each after some work: what they show from memory."""
    import difflib

    cpu = sd.CPUProfiler()

    @cpu.profile_function
    def diff_lines(n: int) -> int:
        a = [str(i) for i in range(n)]
        return len(list(difflib.unified_diff(a, [s.replace("1", "x") for s in a])))

    diff_lines(300)

    async def refuse(cfg: object) -> object:
        raise ConnectionRefusedError("refused by http://u:pw-render-1@127.0.0.1:1/mcp")

    async def nap(_: float) -> None:
        return None

    async def execute(task: dict[str, Any]) -> None:
        return None

    conn = sd.MCPConnectionRecovery(max_retries=2, retry_delay=0, connect=refuse, sleep=nap)
    tasks = sd.MCPTaskRecovery(tmp_path / "queue.db", execute=execute)

    async def work() -> None:
        with contextlib.suppress(sd.ServerUnavailable):
            await conn.recover_connection("search", {})
        try:
            for i in range(3):
                await tasks.save_failed_task({"id": f"t{i}", "tool": "search"})
            await tasks.stats()
        finally:
            await tasks.aclose()

    asyncio.run(work())
    diag = sd.Diagnostics(sections=["platform", "cpu"])
    diag.doctor()
    return {
        "CPUProfiler": cpu._repr_html_(),
        "MCPConnectionRecovery": conn._repr_html_(),
        "MCPTaskRecovery": tasks._repr_html_(),
        "Diagnostics": diag._repr_html_(),
    }


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("SAFLA_DIAG_ARTEFACTS")
    out = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = shots.launch(p, EXECUTABLE)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every report type's HTML (the contract's instances), plus the pictures and new reprs."""
    tmp_path = tmp_path_factory.mktemp("gallery")
    # The call tree first, while no thread of ours runs: from 3.12 cProfile (sys.monitoring) sees
    # every thread, and a library pool thread still finishing a builder's work below would pop
    # frames off the profile's one call stack (on a loaded machine, the tree came out empty).
    pictures = shots.pictures()
    sections: dict[str, str] = {}
    for case in CASES:
        if any(mark.name == "xfail" for mark in case.marks):
            continue  # a report type its branch has not converted yet
        build = case.values[0]
        sub = tmp_path / str(case.id)
        sub.mkdir()
        sections[str(case.id)] = build(sub)._repr_html_()
    sections.update(pictures)
    sections.update(_extra_reprs(tmp_path))
    return sections


@pytest.fixture(scope="module")
def loaded(
    gallery: dict[str, str], browser: Any, artefacts: Path
) -> Iterator[tuple[Any, list[str]]]:
    """
    The gallery in one page, with the console messages and page errors it produced.

    ``gallery`` comes first: some builders run their own asyncio loop, which they cannot do
    while playwright's sync API holds one in this thread.
    """
    tab = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    tab.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on(
        "request",
        lambda r: (
            problems.append(f"request: {r.url}")
            if not r.url.startswith(("about:", "data:"))
            else None
        ),
    )
    tab.set_content(shots.page(gallery), wait_until="load")
    tab.screenshot(path=str(artefacts / "gallery.png"), full_page=True)
    try:
        yield tab, problems
    finally:
        tab.close()


def test_every_report_renders_without_console_errors(
    loaded: tuple[Any, list[str]], gallery: dict[str, str], artefacts: Path
) -> None:
    """No console error or warning, no page error, no network request; each section is drawn."""
    tab, problems = loaded
    assert problems == []
    for name in gallery:
        section = tab.locator(f"section#{name}")
        box = section.bounding_box()
        assert box is not None and box["height"] > 20, name
        section.screenshot(path=str(artefacts / f"{name}.png"))
        assert (artefacts / f"{name}.png").stat().st_size > 500


def test_call_tree_expands_and_collapses_on_click(loaded: tuple[Any, list[str]]) -> None:
    """A closed frame opens on a click (its children show); the hot path starts open."""
    tab, problems = loaded
    tree = tab.locator("section#calltree .safla-tree")
    assert tree.locator("details.hot[open]").count() >= 2
    first_closed = tree.locator("details:not([open])").first
    assert first_closed.count() == 1, "the profile has a collapsed branch to open"
    closed = first_closed.element_handle()  # a handle: the selector stops matching once open
    child = closed.query_selector(":scope > .frame, :scope > details")
    summary = closed.query_selector(":scope > summary")
    assert child is not None and summary is not None
    assert not child.is_visible()
    summary.click()
    assert closed.evaluate("d => d.open") is True
    assert child.is_visible()
    summary.click()
    assert closed.evaluate("d => d.open") is False
    assert not child.is_visible()
    assert problems == []


def test_svgs_have_content(loaded: tuple[Any, list[str]]) -> None:
    """The icicle, the leak picture and the latency histogram are drawn with real size and shapes."""
    tab, _ = loaded
    for selector, shape, least in (
        ("section#calltree svg.safla-icicle", "rect", 5),
        ("section#leak svg.safla-leak", "circle", 5),
        ("section#leak svg.safla-leak", "polyline", 1),
        ("section#latency svg.safla-latency", "rect", 3),
    ):
        svg = tab.locator(selector)
        assert svg.count() == 1, selector
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, selector
        assert svg.locator(shape).count() >= least, (selector, shape)
    gauge = tab.locator("section#MemoryMonitor svg.safla-gauge")
    fill = gauge.locator("rect.fill").bounding_box()
    assert fill is not None and fill["width"] > 0 and fill["height"] > 5
    floor_len = tab.locator("section#leak svg.safla-leak polyline").evaluate(
        "p => p.getTotalLength()"
    )
    assert floor_len > 100


def test_profile_table_sorts_on_click(loaded: tuple[Any, list[str]]) -> None:
    """The table's inline script still works beside the tree: a header click sorts the rows."""
    tab, problems = loaded
    table = tab.locator("section#calltree table")
    header = table.locator("th", has_text="ncalls")
    header.click()
    first = table.locator("tbody tr").first.locator("td").nth(2).inner_text()
    values = [c.split("/")[0] for c in table.locator("tbody tr td:nth-child(3)").all_inner_texts()]
    assert float(first.split("/")[0]) == max(float(v) for v in values)
    assert problems == []


def test_the_harness_sees_a_script_error(browser: Any) -> None:
    """A page whose script throws is caught, so a clean run above means something."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        tab.set_content("<p>x</p><script>throw new Error('boom')</script>", wait_until="load")
    finally:
        tab.close()
    assert any("boom" in e for e in errors)
