"""
Reading the guide's ``mcp_tasks.json`` (a JSON list of failed tasks), even when it is truncated.

The guide rewrites that file in place on every failure, so a crash often leaves it cut short. We
read it as a stream, element by element (a bracket scanner finds each element's end, so memory is
bounded by the largest element kept, 1 MiB), keep every complete task before any damage, and skip,
with a reason, each element that cannot be a task: invalid JSON, nesting too deep, numbers too long,
lone surrogates, oversized. A failed import never costs a task: what was imported stays.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from .._files import open_regular
from .._redact import redact
from .._report import JsonMixin, html_block, html_table
from ._encode import encode_task

if TYPE_CHECKING:
    from ._model import TaskStore
    from ._threads import ThreadLane

__all__ = ["GuideFile", "GuideImport", "guide_task_id", "import_guide", "parse_guide_file"]


@attrs.frozen(kw_only=True)
class GuideFile:
    """What could be read from a guide file."""

    tasks: tuple[Any, ...]
    truncated: bool
    problem: str | None
    skipped: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class GuideImport(JsonMixin):
    """
    The outcome of importing a guide ``mcp_tasks.json`` into the queue (a report).

    Attributes:
        path: The guide file (left in place, untouched).
        found: Complete entries read from the file.
        imported: Tasks newly stored in the queue.
        duplicates: Entries whose id was already stored (the guide lists a retried task again).
        skipped: Entries that cannot be tasks, with the reason (at most 100, then a count).
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
        """Return a JSON-ready dict (the path redacted)."""
        d = attrs.asdict(self)
        d["path"] = redact(self.path)
        d["skipped"] = [redact(r) for r in self.skipped]
        return d

    def _rows(self) -> list[tuple[str, object]]:
        return [
            ("found", self.found),
            ("imported", self.imported),
            ("duplicates", self.duplicates),
            ("skipped", len(self.skipped)),
        ]

    def _notes(self) -> list[str]:
        notes = [f"skipped {r}" for r in self.to_dict()["skipped"]]
        if self.problem:
            notes.insert(0, self.problem)
        if self.already_imported:
            notes.insert(0, "already imported: nothing done")
        return notes

    def to_text(self) -> str:
        """A summary in a few lines."""
        lines = [f"guide task file {redact(self.path)}"]
        lines += [f"  {k + ':':<12} {v}" for k, v in self._rows()]
        lines += [f"  {n}" for n in self._notes()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return html_block(
            f"guide task file {redact(self.path)}",
            html_table(["", "entries"], self._rows()),
            notes=self._notes(),
            ok=not (self.truncated or self.problem or self.skipped),
        )


_TOKEN = re.compile(r'[\[\]{}",]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[,\]\s]")
_WS = " \t\r\n"
MAX_ENTRY = 1 << 20  # characters of one element kept in memory
MAX_REASONS = 100  # skip reasons kept in a report (the count is exact)


class GuideReader:
    """
    The elements of a JSON list read from a stream, one at a time, as text.

    After iterating, ``truncated`` and ``problem`` say what was wrong with the file.

    Args:
        f: The text stream.
        chunk: Characters read at a time.
        max_entry: Elements longer than this are skipped (scanned past, never held).
    """

    def __init__(self, f: TextIO, *, chunk: int = 1 << 16, max_entry: int = MAX_ENTRY) -> None:
        self._f = f
        self._chunk = chunk
        self._max = max_entry
        self._buf = ""
        self._pos = 0
        self._base = 0  # characters dropped before _buf, for positions in messages
        self._eof = False
        self.truncated = False
        self.problem: str | None = None
        self.complete = 0

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._f.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._base += self._pos
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def _skip_ws(self) -> str | None:
        """The next non-blank character (not consumed), or None at the end of the stream."""
        while True:
            buf, i = self._buf, self._pos
            while i < len(buf) and buf[i] in _WS:
                i += 1
            self._pos = i
            if i < len(buf):
                return buf[i]
            if not self._more():
                return None

    def _scan(self) -> tuple[str | None, bool]:
        """Scan one element from ``_pos``: (its text or None when too long, complete?)."""
        start_char = self._buf[self._pos]
        j = self._pos  # scan position in _buf
        depth, in_string, dropped = 0, False, False
        scalar = start_char not in '[{"'
        while True:
            buf = self._buf
            end = -1
            while j < len(buf):
                if scalar:
                    m = _SCALAR_END.search(buf, j)
                    if m is None:
                        j = len(buf)
                        break
                    end = m.start()
                    break
                if in_string:
                    m = _IN_STRING.search(buf, j)
                    if m is None:
                        j = len(buf)
                        break
                    if m.group() == "\\":
                        j = m.end() + 1
                        continue
                    in_string, j = False, m.end()
                    if depth == 0:
                        end = j
                        break
                    continue
                m = _TOKEN.search(buf, j)
                if m is None:
                    j = len(buf)
                    break
                ch, j = m.group(), m.end()
                if ch == '"':
                    in_string = True
                elif ch in "[{":
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        end = j
                        break
            if end >= 0:
                text = None if dropped else buf[self._pos : end]
                self._pos = end
                return text, True
            if len(buf) - self._pos > self._max:
                # Too long to keep: scan on, holding nothing of it.
                dropped = True
                j -= len(buf)
                self._base += len(buf)
                self._buf, self._pos = "", 0
            else:
                j -= self._pos
            if not self._more():
                if scalar and not dropped and self._pos < len(self._buf):
                    text = self._buf[self._pos :]
                    self._pos = len(self._buf)
                    return text, True
                return None, False
            j = max(j, 0)

    def __iter__(self) -> Iterator[str | None]:
        first = self._skip_ws()
        if first is None:
            self.truncated, self.problem = True, "the file is empty"
            return
        if first != "[":
            self.problem = "not a JSON list of tasks"
            return
        self._pos += 1
        if self._skip_ws() == "]":
            self._pos += 1
            self._check_rest()
            return
        while True:
            if self._skip_ws() is None:
                self._truncated("truncated after {n} complete tasks (no closing bracket)")
                return
            at = self._base + self._pos
            text, complete = self._scan()
            if not complete:
                self.truncated = True
                self.problem = (
                    f"truncated or damaged at character {at} after {self.complete} complete tasks"
                )
                return
            self.complete += 1
            yield text
            nxt = self._skip_ws()
            if nxt is None:
                self._truncated("truncated after {n} complete tasks (no closing bracket)")
                return
            self._pos += 1
            if nxt == "]":
                self._check_rest()
                return
            if nxt != ",":
                at = self._base + self._pos - 1
                self._truncated(f"damaged at character {at} after {{n}} complete tasks")
                return

    def _truncated(self, template: str) -> None:
        self.truncated = True
        self.problem = template.format(n=self.complete)

    def _check_rest(self) -> None:
        if self._skip_ws() is not None:
            self.problem = "unexpected content after the list"


def decode_entry(text: str | None) -> tuple[Any, str | None]:
    """An element's value, or None and why it cannot be read."""
    if text is None:
        return None, f"longer than {MAX_ENTRY} characters"
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "nested too deeply"
    except ValueError as err:
        return None, f"not valid JSON ({str(err)[:120]})"


def parse_guide_file(text: str) -> GuideFile:
    """Decode a JSON list element by element, keeping what precedes any damage."""
    reader = GuideReader(io.StringIO(text))
    tasks: list[Any] = []
    skipped: list[str] = []
    for n, entry in enumerate(reader):
        value, why = decode_entry(entry)
        if why is None:
            tasks.append(value)
        else:
            skipped.append(f"entry {n}: {why}")
    return GuideFile(
        tasks=tuple(tasks),
        truncated=reader.truncated,
        problem=reader.problem,
        skipped=tuple(skipped),
    )


# The guide's own bookkeeping, which changes between copies of the same task.
_GUIDE_FIELDS = ("failed_at", "retry_count")


def guide_task_id(task: Mapping[str, Any]) -> str:
    """A stable id for a guide task that has none: a hash of its content without bookkeeping."""
    core = {k: v for k, v in task.items() if k not in _GUIDE_FIELDS}
    blob = json.dumps(core, sort_keys=True, separators=(",", ":"), default=repr)
    return "guide-" + hashlib.sha256(blob.encode()).hexdigest()[:32]


_BATCH = 500
_MAX_ATTEMPTS = 1_000_000


def _digest(path: Path) -> tuple[str, str]:
    """The file's resolved path and SHA-256, read in chunks."""
    h = hashlib.sha256()
    with open(open_regular(path), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return str(path.resolve()), h.hexdigest()


class _Batches:
    """The guide file's tasks as ``(id, payload, attempts)`` batches, with the tally of the read."""

    def __init__(self, path: Path) -> None:
        self._f = open(open_regular(path), encoding="utf-8", errors="replace")  # noqa: SIM115
        self.reader = GuideReader(self._f)
        self._entries = enumerate(self.reader)
        self.found = 0
        self.skipped: list[str] = []
        self.skipped_count = 0

    def close(self) -> None:
        self._f.close()

    def _skip(self, n: int, why: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_REASONS:
            self.skipped.append(f"entry {n}: {why}")

    def next(self) -> list[tuple[str, str, int]]:
        """The next batch of tasks (duplicates in it merged, most attempts kept); [] at the end."""
        rows: dict[str, tuple[str, str, int]] = {}
        for n, text in self._entries:
            self.found += 1
            item, why = decode_entry(text)
            if why is not None:
                self._skip(n, why)
                continue
            if not isinstance(item, dict):
                self._skip(n, "not a JSON object")
                continue
            if item.get("id") is None:
                item = {**item, "id": guide_task_id(item)}
            try:
                key, payload = encode_task(item)
            except (TypeError, ValueError) as err:
                self._skip(n, str(err))
                continue
            count = item.get("retry_count", 1)
            # The guide counts the host's failure too: its retry_count is one more than our attempts.
            attempts = min(_MAX_ATTEMPTS, max(0, count - 1)) if type(count) is int else 0
            if key not in rows or rows[key][2] < attempts:
                rows[key] = (key, payload, attempts)
            if len(rows) >= _BATCH:
                break
        return list(rows.values())


async def import_guide(
    store: TaskStore, path: Path, *, now: float, lane: ThreadLane
) -> GuideImport:
    """
    Import a guide file's tasks into ``store`` once, streamed in batches; the file is left in place.

    Each batch commits on its own, so a failure part-way keeps what was imported (importing again is
    harmless: ids are idempotent) and the file is not marked as imported.
    """
    resolved, digest = await lane.run(_digest, path)
    marker = f"imported:{resolved}"
    if await store.meta(marker) == digest:
        return GuideImport(path=str(path), already_imported=True)
    batches = await lane.run(_Batches, path)
    imported = 0
    try:
        while batch := await lane.run(batches.next):
            imported += await store.import_rows(batch, now=now)
    finally:
        await lane.run(batches.close)
    await store.set_meta(marker, digest)
    skipped = batches.skipped
    if batches.skipped_count > len(skipped):
        skipped = [*skipped, f"and {batches.skipped_count - len(skipped)} more entries"]
    return GuideImport(
        path=str(path),
        found=batches.found,
        imported=imported,
        duplicates=batches.found - batches.skipped_count - imported,
        skipped=tuple(skipped),
        truncated=batches.reader.truncated,
        problem=batches.reader.problem,
    )
