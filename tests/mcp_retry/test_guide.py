"""Importing the guide's mcp_tasks.json: once, keeping the original, recovering truncated files."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag import MCPTaskRecovery
from safla_diag.mcp_retry._guide import parse_guide_file

pytestmark = pytest.mark.anyio


async def _noop(task: dict[str, Any]) -> None:
    return None


def _guide_tasks(n: int) -> list[dict[str, Any]]:
    # What the guide writes: each failure appends the (mutated) task, so retried ones repeat.
    tasks = [
        {"id": f"g{i}", "tool": "search", "failed_at": 1.0 + i, "retry_count": 1} for i in range(n)
    ]
    tasks.append({**tasks[0], "retry_count": 2})
    tasks.append({"tool": "no-id", "failed_at": 5.0, "retry_count": 1})
    return tasks


async def test_import_once_and_keep_original(tmp_path: Path) -> None:
    """A guide file beside the queue is imported once, duplicates merged, the file left as it was."""
    guide = tmp_path / "mcp_tasks.json"
    guide.write_text(json.dumps(_guide_tasks(4), indent=2))
    before = guide.read_bytes()
    rec = MCPTaskRecovery(tmp_path / "mcp_tasks.db", execute=_noop)
    assert await rec.load_failed_tasks() == 5
    assert rec.last_import is not None
    assert (rec.last_import.found, rec.last_import.imported, rec.last_import.duplicates) == (
        6,
        5,
        1,
    )
    assert guide.read_bytes() == before
    pending = {t.id: t.attempts for t in await rec.store.pending()}
    assert pending["g0"] == 1 and pending["g1"] == 0
    await rec.aclose()
    rec2 = MCPTaskRecovery(tmp_path / "mcp_tasks.db", execute=_noop)
    assert await rec2.load_failed_tasks() == 5
    assert rec2.last_import is not None and rec2.last_import.already_imported
    await rec2.aclose()


async def test_json_path_puts_queue_beside_it(tmp_path: Path) -> None:
    """Code written from the guide passes mcp_tasks.json: the queue is mcp_tasks.db beside it."""
    guide = tmp_path / "mcp_tasks.json"
    guide.write_text(json.dumps(_guide_tasks(2)))
    rec = MCPTaskRecovery(guide, execute=_noop)
    assert await rec.load_failed_tasks() == 3
    assert (tmp_path / "mcp_tasks.db").exists()
    assert json.loads(guide.read_text()) == _guide_tasks(2)
    await rec.aclose()


async def test_truncated_file_reported_and_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A guide file cut mid-write: a warning, and every complete task before the cut imported."""
    text = json.dumps(_guide_tasks(10), indent=2)
    cut = text.index('"g7"')
    guide = tmp_path / "mcp_tasks.json"
    guide.write_text(text[:cut])
    rec = MCPTaskRecovery(tmp_path / "mcp_tasks.db", execute=_noop)
    with caplog.at_level(logging.WARNING, logger="safla_diag.mcp_retry"):
        assert await rec.load_failed_tasks() == 7
    assert rec.last_import is not None and rec.last_import.truncated
    assert "truncated" in caplog.text
    await rec.aclose()


def test_parse_guide_variants() -> None:
    """Empty, non-list, clean, and garbage-after-element files are classified."""
    assert parse_guide_file("").truncated
    assert parse_guide_file("[]").tasks == ()
    assert parse_guide_file('{"a": 1}').problem == "not a JSON list of tasks"
    assert parse_guide_file('[{"a": 1}, {"b": 2}]').tasks == ({"a": 1}, {"b": 2})
    bad = parse_guide_file('[{"a": 1} {"b": 2}]')
    assert bad.truncated and bad.tasks == ({"a": 1},)


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers()), max_size=8), st.data())
def test_any_prefix_recovers_the_complete_elements(tasks: list[dict[str, int]], data: Any) -> None:
    """Cut anywhere, parsing never raises and returns exactly the elements completed before the cut."""
    text = json.dumps(tasks)
    cut = data.draw(st.integers(0, len(text)))
    got = parse_guide_file(text[:cut])
    assert list(got.tasks) == tasks[: len(got.tasks)]
    if cut == len(text):
        assert got.tasks == tuple(tasks) and not got.truncated


async def test_hostile_guide_file_skips_bad_entries_and_costs_no_task(tmp_path: Path) -> None:
    """
    Deep nesting, a retry_count of 1e23 or 10**30, a 5 000-digit number, a lone surrogate and a
    huge entry: each bad entry is skipped with a reason, the good ones are imported, and the first
    save of the process is stored.
    """
    good = [{"id": f"good{i}", "tool": "t", "retry_count": 2} for i in range(3)]
    parts = [
        json.dumps(good[0]),
        "[" * 100_000 + "]" * 100_000,  # deep nesting: RecursionError in a plain json.loads
        '{"id": "big-count", "retry_count": 1e23}',
        '{"id": "huge-int-count", "retry_count": ' + "9" * 30 + "}",
        '{"id": "digits", "n": ' + "7" * 5000 + "}",
        '{"id": "surrogate", "path": "\\udcff"}',
        json.dumps({"id": "oversized", "blob": "x" * (2 << 20)}),
        json.dumps(good[1]),
        json.dumps(good[2]),
    ]
    guide = tmp_path / "mcp_tasks.json"
    guide.write_text("[" + ",\n".join(parts) + "]")
    rec = MCPTaskRecovery(tmp_path / "mcp_tasks.db", execute=_noop)
    assert await rec.save_failed_task({"id": "first-save"}) == "first-save"
    report = rec.last_import
    assert report is not None and not report.truncated and report.problem is None
    assert report.found == 9
    reasons = " | ".join(report.skipped)
    assert len(report.skipped) == 4, reasons
    assert "entry 1: nested too deeply" in reasons
    assert "entry 4: not valid JSON" in reasons
    assert "entry 5: task['path']: holds a lone surrogate" in reasons
    assert "entry 6: longer than" in reasons
    pending = {t.id: t.attempts for t in await rec.store.pending()}
    assert set(pending) == {"good0", "good1", "good2", "big-count", "huge-int-count", "first-save"}
    assert pending["big-count"] == 0 and pending["good0"] == 1
    assert pending["huge-int-count"] <= 1_000_000
    await rec.aclose()


def test_reader_holds_at_most_one_entry(tmp_path: Path) -> None:
    """Streaming: an oversized entry is scanned past, never held; the entries around it are read."""
    import io

    from safla_diag.mcp_retry._guide import GuideReader

    text = '[{"a": 1}, {"b": "' + "y" * 5000 + '"}, {"c": [1, "]", {"d": "\\""}]}]'
    reader = GuideReader(io.StringIO(text), chunk=7, max_entry=100)
    entries = list(reader)
    assert entries[0] == '{"a": 1}' and entries[1] is None
    assert json.loads(entries[2] or "") == {"c": [1, "]", {"d": '"'}]}
    assert not reader.truncated and reader.problem is None
    assert len(reader._buf) < 200
