"""
Reading the guide's ``mcp_tasks.json`` (a JSON list of failed tasks), even when it is truncated.

The guide rewrites that file in place on every failure, so a crash often leaves it cut short. We
decode it element by element and keep every complete task before the damage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._encode import encode_task

if TYPE_CHECKING:
    from ._sqlite import SQLiteQueue

__all__ = ["GuideFile", "GuideImport", "guide_task_id", "import_guide", "parse_guide_file"]


@attrs.frozen(kw_only=True)
class GuideFile:
    """What could be read from a guide file."""

    tasks: tuple[Any, ...]
    truncated: bool
    problem: str | None


@attrs.frozen(kw_only=True)
class GuideImport:
    """
    The outcome of importing a guide ``mcp_tasks.json`` into the queue.

    Attributes:
        path: The guide file (left in place, untouched).
        found: Complete entries read from the file.
        imported: Tasks newly stored in the queue.
        duplicates: Entries whose id was already stored (the guide lists a retried task again).
        skipped: Entries that are not JSON objects or cannot be stored, with the reason.
        truncated: Whether the file was cut short (entries after the damage are lost).
        problem: What was wrong with the file, if anything.
        already_imported: The same file content was imported before; nothing was done.
    """

    path: str
    found: int = 0
    imported: int = 0
    duplicates: int = 0
    skipped: tuple[str, ...] = ()
    truncated: bool = False
    problem: str | None = None
    already_imported: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        d = attrs.asdict(self)
        d["skipped"] = list(self.skipped)
        return d


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    return i


def parse_guide_file(text: str) -> GuideFile:
    """Decode a JSON list element by element, keeping what precedes any damage."""
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text):
        return GuideFile(tasks=(), truncated=True, problem="the file is empty")
    if text[i] != "[":
        return GuideFile(tasks=(), truncated=False, problem="not a JSON list of tasks")
    i = _skip_ws(text, i + 1)
    items: list[Any] = []
    if i < len(text) and text[i] == "]":
        return GuideFile(tasks=(), truncated=False, problem=None)
    while True:
        try:
            obj, j = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return GuideFile(
                tasks=tuple(items),
                truncated=True,
                problem=f"truncated or damaged at character {i} after {len(items)} complete tasks",
            )
        items.append(obj)
        i = _skip_ws(text, j)
        if i >= len(text):
            return GuideFile(
                tasks=tuple(items),
                truncated=True,
                problem=f"truncated after {len(items)} complete tasks (no closing bracket)",
            )
        if text[i] == "]":
            rest = text[_skip_ws(text, i + 1) :]
            problem = None if not rest else "unexpected content after the list"
            return GuideFile(tasks=tuple(items), truncated=False, problem=problem)
        if text[i] != ",":
            return GuideFile(
                tasks=tuple(items),
                truncated=True,
                problem=f"damaged at character {i} after {len(items)} complete tasks",
            )
        i = _skip_ws(text, i + 1)


# The guide's own bookkeeping, which changes between copies of the same task.
_GUIDE_FIELDS = ("failed_at", "retry_count")


def guide_task_id(task: Mapping[str, Any]) -> str:
    """A stable id for a guide task that has none: a hash of its content without bookkeeping."""
    core = {k: v for k, v in task.items() if k not in _GUIDE_FIELDS}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":"), default=repr)
    return "guide-" + hashlib.sha256(blob.encode()).hexdigest()[:32]


def import_guide(queue: SQLiteQueue, path: Path, *, now: float) -> GuideImport:
    """Import a guide file's tasks into ``queue`` once (blocking); the file is left in place."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    marker = f"imported:{path.resolve()}"
    if queue.meta(marker) == digest:
        return GuideImport(path=str(path), already_imported=True)
    parsed = parse_guide_file(data.decode("utf-8", errors="replace"))
    rows: dict[str, tuple[str, str, int]] = {}
    skipped: list[str] = []
    for n, item in enumerate(parsed.tasks):
        if not isinstance(item, dict):
            skipped.append(f"entry {n}: not a JSON object")
            continue
        if item.get("id") is None:
            item = {**item, "id": guide_task_id(item)}
        try:
            key, payload = encode_task(item)
        except (TypeError, ValueError) as err:
            skipped.append(f"entry {n}: {err}")
            continue
        count = item.get("retry_count", 1)
        # The guide counts the host's failure too: its retry_count is one more than our attempts.
        attempts = max(0, count - 1) if type(count) is int else 0
        if key in rows and rows[key][2] >= attempts:
            continue
        rows[key] = (key, payload, attempts)
    good = len(parsed.tasks) - len(skipped)
    imported = queue.import_rows(rows.values(), now=now, marker=(marker, digest))
    return GuideImport(
        path=str(path),
        found=len(parsed.tasks),
        imported=imported,
        duplicates=good - imported,
        skipped=tuple(skipped),
        truncated=parsed.truncated,
        problem=parsed.problem,
    )
