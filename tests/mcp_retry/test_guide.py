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
