"""
The scanner's side of templates: key whole batches of messages at numpy speed, mask each key once.

A message's *key* is the message with every run of hex digits that holds a decimal digit collapsed
to one ``0`` (``_mine.shape``), computed for a whole chunk's batch with a few vectorised numpy operations. Its
masked template is a function of the key alone (``_mine.mask``), so messages that differ only in
numbers share a key, and a key is masked once, whichever message brought it. The final grouping
(``_mine.merge``) runs once per report over the distinct masked templates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._redact import redact
from ._mine import key_masker

__all__ = ["TemplateCache", "TemplateStats", "example_text", "keys_of"]

_EXAMPLE_CHARS = 4000

_LUTS: list[Any] = []


def _luts() -> tuple[Any, Any]:
    if not _LUTS:
        import numpy as np

        digit = np.zeros(256, dtype=bool)
        digit[48:58] = True
        hexish = np.zeros(256, dtype=np.int8)
        hexish[list(b"0123456789abcdefABCDEF")] = 1
        _LUTS[:] = [digit, hexish]
    return _LUTS[0], _LUTS[1]


def keys_of(joined: bytes) -> list[bytes]:
    """
    Keys of newline-joined messages: every run of hex digits holding a decimal digit becomes
    one ``0`` (the bytes twin of ``_mine.shape``).

    Args:
        joined: Records separated by newlines.

    Returns:
        One key per record, in order.
    """
    from ._kernel import kernel  # here: the kernel's module imports this one

    mod = kernel()
    if mod is not None:  # the same collapse, natively (and no numpy import for it)
        return mod.collapse(joined).split(b"\n")  # type: ignore[no-any-return]
    import numpy as np

    digit, hexish = _luts()
    arr = np.frombuffer(joined, dtype=np.uint8)
    is_digit = digit[arr]
    if not is_digit.any():
        return joined.split(b"\n")
    edges = np.diff(hexish[arr], prepend=np.int8(0), append=np.int8(0))
    run_start = np.flatnonzero(edges == 1)
    run_end = np.flatnonzero(edges == -1)
    seen = np.concatenate(([0], np.cumsum(is_digit, dtype=np.int64)))
    with_digit = seen[run_end] > seen[run_start]
    run_start, run_end = run_start[with_digit], run_end[with_digit]
    key = arr.copy()
    key[run_start] = 48
    delta = np.zeros(len(arr) + 1, dtype=np.int32)
    delta[run_start + 1] += 1  # each index once per statement: no np.add.at needed
    delta[run_end] -= 1
    drop = np.cumsum(delta[:-1]) > 0
    return key[~drop].tobytes().split(b"\n")


class TemplateCache:
    """Masked templates by key, with a bounded memory of keys already masked."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._known: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def keyed(self, joined: bytes) -> tuple[list[bytes], dict[bytes, str]]:
        """
        Key a batch and make sure every key in it has its masked template.

        Args:
            joined: Newline-joined records, each one tag byte (which the key keeps, so that
                records of different levels never share a key) followed by the message.

        Returns:
            The key of each record, and the key -> masked template memory (holding every key
            returned).
        """
        keys = keys_of(joined)
        return keys, self.masks(keys)

    def masks(self, keys: Iterable[bytes]) -> dict[bytes, str]:
        """Make sure every key has its masked template; return the key -> template memory."""
        wanted = set(keys)
        known = self._known  # the table read here is the one returned (another may replace it)
        missing = wanted.difference(known)
        if not missing:
            return known
        # One masker at a time: the two halves of a file meet the same keys at the same moment,
        # and each would mask all of them (under the GIL, twice the work for the same answer).
        with self._lock:
            known = self._known  # maybe another table by now, holding other keys
            missing = wanted.difference(known)  # not those masked by the other half meanwhile
            if len(known) + len(missing) > self.max_keys:
                # A new table, not a cleared one: a scan on another thread (the other half of
                # a file) may still be reading the old one for its own batch.
                known = self._known = {}
                missing = wanted
            masked = key_masker()
            for k in missing:
                known[k] = masked(k, 1)  # after the tag byte
        return known


def example_text(text: str) -> str:
    """A record's text as shown in a report: bounded and redacted."""
    text = text.replace("\r\n", "\n").rstrip("\r\n")
    if len(text) > _EXAMPLE_CHARS:
        text = text[:_EXAMPLE_CHARS] + " …"
    return redact(text)


#: Headers a template keeps unparsed (and their bytes) before it parses them and keeps only a
#: first and a last time: a few kilobytes a template at most, like its example.
_MAX_HEADS = 32
_MAX_HEAD_BYTES = 8192
#: Bytes of a header kept (a JSON record is kept whole: its time may be anywhere in it).
_HEAD_CHARS = 1024

#: An unparsed record header: the line, the file's format table and the reference time.
Head = tuple[bytes, Any, "datetime | None"]


@dataclass(slots=True)
class TemplateStats:
    """
    Running figures for one (level, masked template). The example is kept as read and made
    presentable (bounded, redacted) only when a report shows it, and the times of its records
    are kept as their unparsed headers (a few, bounded) and parsed only when a report shows the
    row: most rows of a large scan are merged away or never shown, and parsing a time costs more
    than everything else a new template costs.
    """

    template: str
    count: int
    raw_example: str = field(repr=False)
    level: str
    _first: datetime | None = field(default=None, repr=False)
    _last: datetime | None = field(default=None, repr=False)
    _heads: list[Head] = field(default_factory=list, repr=False)
    _head_bytes: int = field(default=0, repr=False)
    _example: str | None = field(default=None, repr=False)

    @property
    def example(self) -> str:
        """The example record, bounded and redacted."""
        if self._example is None:
            self._example = example_text(self.raw_example)
        return self._example

    @property
    def first_seen(self) -> datetime | None:
        """The earliest time of its records read so far."""
        self._resolve()
        return self._first

    @property
    def last_seen(self) -> datetime | None:
        """The latest time of its records read so far."""
        self._resolve()
        return self._last

    def seen(self, when: datetime | None) -> None:
        """Widen first/last seen to include ``when``."""
        if when is None:
            return
        if self._first is None or when < self._first:
            self._first = when
        if self._last is None or when > self._last:
            self._last = when

    def seen_head(self, line: bytes, table: Any, now: datetime | None) -> None:
        """Widen first/last seen to include the time of this record header, parsed later."""
        if len(line) > _HEAD_CHARS and line.lstrip()[:1] != b"{":
            line = line[:_HEAD_CHARS]
        self._heads.append((line, table, now))
        self._head_bytes += len(line)
        if len(self._heads) >= _MAX_HEADS or self._head_bytes >= _MAX_HEAD_BYTES:
            self._resolve()

    def absorb(self, other: TemplateStats) -> None:
        """Add another scan's figures for the same template (the example stays this one's)."""
        self.count += other.count
        self.seen(other._first)
        self.seen(other._last)
        if other._heads:
            self._heads += other._heads
            self._head_bytes += other._head_bytes
            if len(self._heads) >= _MAX_HEADS or self._head_bytes >= _MAX_HEAD_BYTES:
                self._resolve()

    def _resolve(self) -> None:
        if not self._heads:
            return
        from ._formats import parse_time

        heads, self._heads, self._head_bytes = self._heads, [], 0
        for line, table, now in heads:
            self.seen(parse_time(line, table, now))
