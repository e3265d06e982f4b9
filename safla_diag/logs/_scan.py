"""
The chunked scanner: large byte chunks, numpy line indexes, and Python only for the lines that matter.

How one file is read:

* The stream is read into one reusable buffer of ``chunk_size`` bytes (2 MiB by default). The
  chunk is cut after the start of its last record, so a record and its traceback lines are never
  split; the rest is carried into the next read. Memory stays constant whatever the file size.
* The first chunk is *sniffed* (``_formats.sniff``): plain or JSON-lines, where the level word sits,
  which bytes start a record (a digit for timestamped lines, ``{`` for JSON), and the exact byte
  strings ("needles") that mark each level, such as ``b" ERROR "`` or ``b'"level": "error"'``.
* Line starts come from one vectorised ``buffer == b"\\n"`` over the chunk (numpy). When the level
  sits at one of a few byte offsets in the sampled records (``logging``'s default format and most
  JSON loggers: one; ``%(name)s - %(levelname)s``: one per logger name), the 8 bytes at each offset
  of every line are gathered at once and compared with each level word plus its delimiter: every
  level is counted without a Python loop over the lines (the fast path), a line at its first
  match. Lines that start like a record but show no level there are parsed one by one; if there
  are many, the file falls back to the needle path.
* Needle path (the level takes more than eight positions): ``bytes.count`` of each level's
  needles; lines of the chosen levels are then found and verified one by one, so their counts are
  exact, while the other levels count needle occurrences (a message quoting ``" INFO "`` in that
  exact shape would add one).
* Only lines of the chosen levels become templates: their messages are gathered from the buffer
  into one batch per chunk (numpy), keyed, counted per key with ``Counter`` and ``dict(zip())``,
  and only keys not seen before are masked (``_templates``). The pattern runs as a bytes regex
  over the chunk, and Python touches matching lines only.
* ``since``: timestamps are assumed to be non-decreasing within a file (true of one process's log).
  While outside the window, only the last record of each chunk is parsed: if it is older than
  ``since`` the whole chunk is skipped; otherwise a binary search over the chunk's record lines
  finds the first record at or after ``since``, and from there on nothing is parsed for time again.
  Records a few lines out of order around that boundary may fall on the wrong side of it.
"""

from __future__ import annotations

import bisect
import gzip
import logging
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .._redact import redact
from ._formats import (
    LineFormat,
    ParsedRecord,
    json_extra_text,
    json_messages,
    normalise_level,
    sniff,
    spell,
)
from ._templates import TemplateCache, TemplateStats, group_key

if TYPE_CHECKING:
    import numpy.typing as npt


class Stream(Protocol):
    """What the scanner reads from: a file, a GzipFile, stdin's buffer."""

    def readinto(self, buffer: Any, /) -> int | None: ...


__all__ = ["Accumulator", "ScanOptions", "Skip", "Stream", "note_skip", "scan_stream"]

log = logging.getLogger("safla_diag.logs")

CHUNK_SIZE = 2 << 20  # fits the CPU caches: every numpy pass over a chunk stays cache-hot
_PAD = 4096  # room for the 8-byte gathers past the last line (level offsets stay below it)
_MAX_OFFSET = _PAD - 64
_GZIP_STEP = 64 << 10  # small reads from gzip, so a truncated file loses at most this much
_EXAMPLE_CHARS = 4000
_MESSAGE_BYTES = 4096
_FALLBACK_SHARE = 0.02
_MAX_CONTINUATION = 500  # lines of traceback kept in an example
_LEAD = b" \t-:|]>)"  # more unexplained record lines than this: leave the fast path


@dataclass
class ScanOptions:
    """What to look for; built once by analyze_logs."""

    since: datetime | None = None
    chosen: frozenset[str] = frozenset({"ERROR", "CRITICAL"})
    pattern: re.Pattern[bytes] | None = None
    max_examples: int = 10
    max_templates: int = 20000
    now: datetime | None = None
    chunk_size: int = CHUNK_SIZE


@dataclass
class Skip:
    """A file skipped, or only partly read, and why."""

    path: str
    reason: str
    partial: bool = False


def note_skip(skip: Skip) -> Skip:
    log.info("log file %s skipped: %s", skip.path, skip.reason)
    return skip


@dataclass
class Accumulator:
    """Everything the scan of all files adds up to."""

    counts: Counter[str] = field(default_factory=Counter)
    templates: dict[tuple[str, str], TemplateStats] = field(default_factory=dict)
    match_count: int = 0
    match_examples: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0
    templates_truncated: bool = False


@dataclass(eq=False)
class _Batch:
    """
    The chunk's records of the chosen levels, as one newline-joined bytes object.

    Each record is its level's tag byte followed by its message; ``lines`` are their line
    numbers in the chunk, in order.
    """

    lines: list[int] = field(default_factory=list)
    joined: bytes = b""
    _extra: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, line: int, tag: bytes, message: str) -> None:
        """Add one record parsed in Python (JSON, needle path, odd lines)."""
        text = message[:_MESSAGE_BYTES].replace("\n", " ").replace("\r", " ")
        self._extra.append((line, tag + text.encode("utf-8", "replace")))

    def finish(self) -> None:
        """Merge the records added one by one into ``lines`` and ``joined``, in line order."""
        if not self._extra:
            return
        pairs = list(zip(self.lines, self.joined.split(b"\n"), strict=True)) if self.lines else []
        pairs.extend(self._extra)
        pairs.sort(key=lambda p: p[0])
        self.lines = [p[0] for p in pairs]
        self.joined = b"\n".join(p[1] for p in pairs)
        self._extra = []


def _example(text: str) -> str:
    text = text.replace("\r\n", "\n").rstrip("\r\n")
    if len(text) > _EXAMPLE_CHARS:
        text = text[:_EXAMPLE_CHARS] + " …"
    return redact(text)


class _FileScan:
    """The state of one file's scan: its format, the window flag, and the per-chunk work."""

    def __init__(self, name: str, fmt: LineFormat, opts: ScanOptions, acc: Accumulator) -> None:
        import numpy as np

        self.np = np
        self.name = name
        self.fmt = fmt
        self.opts = opts
        self.acc = acc
        self.in_window = opts.since is None
        self.since_ts = opts.since.timestamp() if opts.since is not None else None
        lut = np.zeros(256, dtype=bool)
        if fmt.record_first:
            lut[list(fmt.record_first)] = True
        else:
            lut[:] = True
            lut[[9, 10, 13, 32]] = False
        self.record_lut = lut
        self.offsets = fmt.level_offsets if all(o < _MAX_OFFSET for o in fmt.level_offsets) else ()
        self.fast = bool(self.offsets)
        # (token, canonical level, [(value, mask), ...]) for the 8-byte compare of the fast path.
        self.codes: list[tuple[str, str, list[tuple[int, int]]]] = []
        for tok in fmt.tokens:
            pairs = []
            for case in fmt.cases | {"upper"}:
                word = spell(tok, case).encode() + fmt.right
                word = word[:8]
                value = int.from_bytes(word.ljust(8, b"\0"), "little")
                mask = int.from_bytes(b"\xff" * len(word) + b"\0" * (8 - len(word)), "little")
                pairs.append((value, mask))
            self.codes.append((tok, normalise_level(tok), pairs))
        # The same compares grouped by mask, so that each mask is applied once per chunk.
        groups: dict[int, list[tuple[int, str, int]]] = {}
        for tok, level, pairs in self.codes:
            for value, mask in pairs:
                groups.setdefault(mask, []).append((value, level, len(tok)))
        self.by_mask = sorted(groups.items())
        self.cache = TemplateCache()
        # One tag byte per chosen level leads each record in a template batch.
        # (Control bytes from 1, skipping the newline: no level name, digit or hex digit.)
        self.tag_of = {
            lv: bytes([1 + k + (k >= 9)]) for k, lv in enumerate(sorted(opts.chosen)[:200])
        }
        self.level_of = {t: lv for lv, t in self.tag_of.items()}
        self._needle_re: dict[str, re.Pattern[bytes]] = {}
        for tok in fmt.tokens:
            needles = fmt.needles.get(tok, [])
            if normalise_level(tok) in opts.chosen and needles:
                self._needle_re[tok] = re.compile(b"|".join(re.escape(n) for n in needles))

    # -- time window -------------------------------------------------------------------------

    def _ts(self, buf: bytearray, start: int, end: int) -> float | None:
        dt = self.fmt.timestamp(bytes(buf[start : min(end, start + _MESSAGE_BYTES)]), self.opts.now)
        return dt.timestamp() if dt is not None else None

    def _window_start(
        self,
        buf: bytearray,
        starts: npt.NDArray[Any],
        ends: npt.NDArray[Any],
        rec: npt.NDArray[Any],
    ) -> int | None:
        """Index of the first line in the window, or None when the whole chunk is before it."""
        assert self.since_ts is not None
        if len(rec) == 0:
            return None
        # The last record with a timestamp decides whether the chunk can be skipped.
        for j in range(len(rec) - 1, max(-1, len(rec) - 50), -1):
            ts = self._ts(buf, int(starts[rec[j]]), int(ends[rec[j]]))
            if ts is not None:
                break
        else:
            return None
        if ts < self.since_ts:
            return None
        since = self.since_ts

        def key(j: int) -> float:
            i = int(rec[j])
            t = self._ts(buf, int(starts[i]), int(ends[i]))
            return t if t is not None else float("-inf")

        j = bisect.bisect_left(range(len(rec)), since, key=key)
        self.in_window = True
        return int(rec[j]) if j < len(rec) else None

    # -- one chunk ---------------------------------------------------------------------------

    def process(self, buf: bytearray, cut: int, final: bool) -> int:
        """Analyse ``buf[:cut]`` (whole lines); return how many bytes were consumed."""
        np = self.np
        a = np.frombuffer(buf, dtype=np.uint8, count=cut)
        ends = np.flatnonzero(a == 10)
        n = len(ends)
        if n == 0:
            return cut
        starts = np.empty(n, dtype=np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        is_rec = self.record_lut[a[starts]]
        # Keep the last record (it may continue in the next read) unless it is the whole buffer.
        stop = n
        if not final:
            last = n - 1 - int(np.argmax(is_rec[::-1]))
            if last > 0 and is_rec[last]:
                stop = last
        consumed = int(starts[stop]) if stop < n else cut
        self.acc.lines += stop
        lo = 0
        if not self.in_window:
            first = self._window_start(buf, starts, ends, np.flatnonzero(is_rec[:stop]))
            if first is None:
                return consumed
            lo = first
        if lo >= stop:
            return consumed
        hi_byte = int(ends[stop - 1]) + 1
        chosen = _Batch()
        if self.fast:
            fell_back = self._fast_levels(buf, starts, ends, is_rec, lo, stop, chosen)
            if fell_back:
                self.fast = False
                chosen = _Batch()
                self._needle_levels(buf, starts, ends, lo, stop, hi_byte, chosen)
        else:
            self._needle_levels(buf, starts, ends, lo, stop, hi_byte, chosen)
        if chosen.lines:
            self._templates(buf, starts, ends, is_rec, chosen)
        if self.opts.pattern is not None:
            self._matches(buf, int(starts[lo]), hi_byte)
        return consumed

    def _fast_levels(
        self,
        buf: bytearray,
        starts: npt.NDArray[Any],
        ends: npt.NDArray[Any],
        is_rec: npt.NDArray[Any],
        lo: int,
        hi: int,
        chosen: _Batch,
    ) -> bool:
        """Count levels at the known offsets; return True when the file should leave the fast path."""
        np = self.np
        s = starts[lo:hi]
        words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
        cut = int(ends[hi - 1]) + 1
        counts: dict[str, int] = {}
        total = 0
        hits_chosen: list[tuple[str, int, npt.NDArray[Any]]] = []
        taken = None if len(self.offsets) == 1 else np.zeros(hi - lo, dtype=bool)
        seen_all = None
        for off in self.offsets:
            pos = s + off
            g = words[pos]
            # A line shorter than the offset reads the next line's bytes, which cannot hold a
            # level word there; but past the chunk's end lie stale bytes of an earlier read.
            tail = int(np.searchsorted(pos, cut - 8))
            if tail < len(pos):
                g[tail:][(ends[lo + tail : hi] - s[tail:]) <= off + 3] = 0
            if taken is not None:
                g[taken] = 0  # a line's level is its first match, at the smallest offset
            for mask, group in self.by_mask:
                masked = g & np.uint64(mask)
                for value, level, word_len in group:
                    hit = masked == np.uint64(value)
                    c = int(np.count_nonzero(hit))
                    if not c:
                        continue
                    counts[level] = counts.get(level, 0) + c
                    total += c
                    if taken is not None:
                        taken |= hit
                    if level in self.opts.chosen:
                        # The message starts after the word and its delimiter.
                        hits_chosen.append((level, off + word_len + 1, np.flatnonzero(hit) + lo))
            seen_all = taken
        recs = int(np.count_nonzero(is_rec[lo:hi]))
        extra: list[tuple[int, ParsedRecord]] = []
        if recs > total:
            # Some record lines show no level at the offset: look at them one by one, or give up
            # on the fast path when there are many.
            if seen_all is None:
                seen_all = np.zeros(hi - lo, dtype=bool)
                for mask, group in self.by_mask:
                    masked = g & np.uint64(mask)
                    for value, _level, _len in group:
                        seen_all |= masked == np.uint64(value)
            odd = np.flatnonzero(is_rec[lo:hi] & ~seen_all) + lo
            if len(odd) > max(20, _FALLBACK_SHARE * (hi - lo)):
                log.debug("%s: level offset varies; using the needle scan", redact(self.name))
                return True
            for i in odd.tolist():
                rec = self.fmt.parse(bytes(buf[starts[i] : ends[i]]), self.opts.now)
                if rec.level:
                    counts[rec.level] = counts.get(rec.level, 0) + 1
                    if rec.level in self.opts.chosen:
                        extra.append((i, rec))
        self.acc.counts.update(counts)
        if hits_chosen:
            if self.fmt.kind == "plain":
                # The message starts after the level word and its delimiter: slice it directly.
                self._slice_messages(buf, starts, ends, hits_chosen, chosen)
            else:
                for level, _len, idx in hits_chosen:
                    lines = idx.tolist()
                    raw = [bytes(buf[starts[i] : ends[i]]) for i in lines]
                    for i, message in zip(lines, json_messages(raw), strict=True):
                        chosen.add(i, self.tag_of[level], message)
        for i, rec in extra:
            if rec.level in self.tag_of:
                chosen.add(i, self.tag_of[rec.level], rec.message)
        chosen.finish()
        return False

    def _slice_messages(
        self,
        buf: bytearray,
        starts: npt.NDArray[Any],
        ends: npt.NDArray[Any],
        hits: list[tuple[str, int, npt.NDArray[Any]]],
        chosen: _Batch,
    ) -> None:
        """Fill the batch from the fast path's hits without a Python loop over the records."""
        np = self.np
        idx = np.concatenate([h[2] for h in hits])
        body = np.concatenate([starts[h[2]] + h[1] for h in hits])
        tags = np.concatenate(
            [np.full(len(h[2]), self.tag_of[h[0]][0], dtype=np.uint8) for h in hits]
        )
        if len(hits) > 1:
            order = np.argsort(idx, kind="stable")
            idx, body, tags = idx[order], body[order], tags[order]
        # Gather "tag + message + newline" of every record straight from the buffer: the byte
        # before the message is overwritten by the tag, the line's own newline separates them.
        end = ends[idx]
        body = np.minimum(body, end)
        length = end - body + 2
        first = np.cumsum(length) - length
        src = np.repeat(body - 1 - first, length) + np.arange(int(length.sum()))
        out = np.frombuffer(buf, dtype=np.uint8)[src]
        out[first] = tags
        chosen.lines = idx.tolist()
        chosen.joined = out[:-1].tobytes()

    def _needle_levels(
        self,
        buf: bytearray,
        starts: npt.NDArray[Any],
        ends: npt.NDArray[Any],
        lo: int,
        hi: int,
        hi_byte: int,
        chosen: _Batch,
    ) -> None:
        """Count level needles with bytes.count; find and verify the chosen levels' lines."""
        np = self.np
        lo_byte = int(starts[lo])
        counts: Counter[str] = Counter()
        for tok in self.fmt.tokens:
            level = normalise_level(tok)
            for needle in self.fmt.needles.get(tok, []):
                counts[level] += buf.count(needle, lo_byte, hi_byte)
        seen: dict[int, str] = {}
        for tok, rx in self._needle_re.items():
            level = normalise_level(tok)
            positions = [m.start() for m in rx.finditer(buf, lo_byte, hi_byte)]
            if not positions:
                continue
            lines = np.searchsorted(starts, np.array(positions, dtype=np.int64), side="right") - 1
            for i in lines.tolist():
                if i in seen:
                    counts[level] -= 1  # the word twice on one line: one record
                    continue
                rec = self.fmt.parse(bytes(buf[starts[i] : ends[i]]), self.opts.now)
                seen[i] = rec.level or ""
                if rec.level != level:
                    counts[level] -= 1  # the needle was in another record's message
                    continue
                chosen.add(i, self.tag_of[level], rec.message)
        self.acc.counts.update({k: v for k, v in counts.items() if v > 0})
        chosen.finish()

    def _templates(
        self,
        buf: bytearray,
        starts: npt.NDArray[Any],
        ends: npt.NDArray[Any],
        is_rec: npt.NDArray[Any],
        chosen: _Batch,
    ) -> None:
        """Mask the chosen records' messages and fold them into the template table."""
        np = self.np
        fmt = self.fmt
        keys, known = self.cache.keyed(chosen.joined)
        # Per key in this chunk: count, first and last line, at C speed; then per template group.
        per_key = Counter(keys)
        lasts_k = dict(zip(keys, chosen.lines, strict=True))
        firsts_k = dict(zip(reversed(keys), reversed(chosen.lines), strict=True))
        counts: Counter[tuple[str, str]] = Counter()
        firsts: dict[tuple[str, str], int] = {}
        lasts: dict[tuple[str, str], int] = {}
        shown: dict[tuple[str, str], str] = {}
        for k, c in per_key.items():
            tmpl = known[k]
            key = (self.level_of[k[:1]], group_key(tmpl))
            counts[key] += c
            if key not in firsts or firsts_k[k] < firsts[key]:
                firsts[key] = firsts_k[k]
                shown[key] = tmpl
            lasts[key] = max(lasts.get(key, -1), lasts_k[k])
        table = self.acc.templates
        for key, count in counts.items():
            stats = table.get(key)
            first_i = firsts[key]
            if stats is None:
                if len(table) >= self.opts.max_templates:
                    self.acc.templates_truncated = True
                    continue
                # The whole record: its first line and any continuation lines (a traceback).
                after = is_rec[first_i + 1 : first_i + 1 + _MAX_CONTINUATION]
                j = int(np.argmax(after)) if len(after) else 0
                nxt = first_i + 1 + (j if len(after) and after[j] else len(after))
                s = int(starts[first_i])
                e = int(ends[max(first_i, nxt - 1)])
                text = bytes(buf[s : min(e, s + 4 * _EXAMPLE_CHARS)]).decode("utf-8", "replace")
                if fmt.kind == "json":
                    extra = json_extra_text(bytes(buf[s : int(ends[first_i])]))
                    text = text + ("\n" + extra if extra else "")
                stats = TemplateStats(shown[key], 0, None, None, _example(text), key[0])
                table[key] = stats
            stats.count += count
            for i in {first_i, lasts[key]}:
                stats.seen(
                    fmt.timestamp(
                        bytes(buf[starts[i] : min(ends[i], starts[i] + _MESSAGE_BYTES)]),
                        self.opts.now,
                    )
                )

    def _matches(self, buf: bytearray, lo: int, hi: int) -> None:
        """Count the lines matching the pattern (like ``grep -c``) and keep a few of them."""
        rx = self.opts.pattern
        assert rx is not None
        acc = self.acc
        pos = lo
        while pos < hi:
            m = rx.search(buf, pos, hi)
            if m is None:
                break
            s = buf.rfind(b"\n", lo, m.start()) + 1
            e = buf.find(b"\n", m.start(), hi)
            e = hi if e < 0 else e
            acc.match_count += 1
            if len(acc.match_examples) < self.opts.max_examples:
                line = bytes(buf[s : min(e, s + _EXAMPLE_CHARS)]).decode("utf-8", "replace")
                acc.match_examples.append(_example(line))
            pos = e + 1


def _read_step(stream: Stream) -> int | None:
    return _GZIP_STEP if isinstance(stream, gzip.GzipFile) else None


def scan_stream(name: str, stream: Stream, opts: ScanOptions, acc: Accumulator) -> None:
    """
    Scan one binary stream (a file, a gzip file, stdin) into ``acc``.

    Problems are recorded in ``acc.skipped`` and never raised: binary data skips the file; a
    truncated or corrupt gzip keeps what was read before the damage; over-long lines are skipped
    and counted.

    Args:
        name: The name to report the stream under.
        stream: A binary stream with ``readinto``.
        opts: What to look for.
        acc: Where the results go.
    """
    chunk = max(opts.chunk_size, 1024)
    buf = bytearray(chunk + _PAD)
    mv = memoryview(buf)
    step = _read_step(stream)
    carry = 0
    scan: _FileScan | None = None
    long_lines = 0
    dropping = False
    damaged: str | None = None
    eof = False
    total = 0
    try:
        while not eof:
            end = carry
            try:
                while end < chunk:
                    stop = chunk if step is None else min(chunk, end + step)
                    got = stream.readinto(mv[end:stop])
                    if not got:
                        eof = True
                        break
                    end += got
                    total += got
            except (EOFError, zlib.error, gzip.BadGzipFile) as err:
                eof = True
                damaged = f"damaged or truncated compressed data ({err}); analysed what was read"
            if dropping:
                nl = buf.find(b"\n", 0, end)
                if nl < 0:
                    carry = 0
                    continue
                rest = end - (nl + 1)
                buf[0:rest] = buf[nl + 1 : end]
                end = rest
                dropping = False
            if end == 0:
                carry = 0
                continue
            if scan is None:
                fmt = sniff(bytes(buf[: min(end, 1 << 18)]), opts.now)
                if isinstance(fmt, str):
                    acc.skipped.append(note_skip(Skip(name, fmt)))
                    return
                if opts.since is not None and not fmt.has_timestamps:
                    acc.skipped.append(
                        note_skip(Skip(name, "no timestamps found, so 'since' cannot apply"))
                    )
                    return
                scan = _FileScan(name, fmt, opts, acc)
                acc.files.append(name)
            if eof:
                if buf[end - 1] != 10:
                    buf[end] = 10
                    end += 1
                cut = end
            else:
                nl = buf.rfind(b"\n", 0, end)
                if nl < 0:
                    long_lines += 1
                    dropping = True
                    carry = 0
                    continue
                cut = nl + 1
            consumed = scan.process(buf, cut, eof)
            rest = end - consumed
            if rest:
                buf[0:rest] = buf[consumed:end]
            carry = rest
    except OSError as err:
        acc.skipped.append(
            note_skip(Skip(name, f"read error: {err.strerror or err}", partial=scan is not None))
        )
        return
    finally:
        acc.bytes += total
    if scan is None and not damaged:
        acc.files.append(name)  # an empty file: analysed, nothing in it
    if long_lines:
        reason = f"{long_lines} line(s) longer than {chunk >> 10} KiB skipped"
        acc.skipped.append(note_skip(Skip(name, reason, partial=True)))
    if damaged:
        acc.skipped.append(note_skip(Skip(name, damaged, partial=scan is not None)))
