"""
The chunked scanner: large byte chunks, numpy line indexes, and Python only for the lines that need it.

Where the C kernel was built (``_kernel``, ``_native.c``), ``FileScan.process`` hands each chunk
to it instead; the numpy path below is the fallback and the reference the kernel is tested
against, and it still serves ``since`` windows and JSON lines.

How one file is read (``scan_stream`` drives the reads, ``_FileScan.process`` one chunk):

* The stream is read into one reusable buffer of ``chunk_size`` bytes (2 MiB by default), cut after
  the start of the last line that can start a record, so a record and its traceback lines stay
  together; the rest is carried into the next read. Memory stays constant whatever the file size.
* Garbage is skipped line by line and counted: NUL bytes (what ext4 leaves after a crash) end a
  line, and a line with many control bytes is binary data. A line longer than the buffer is
  skipped too. Only a file with a known binary magic, or with nothing but garbage, is skipped whole.
* Every line that does not start with a blank is a candidate record. The file's first lines are
  *sniffed* (``_formats.sniff``) for its dominant format; its records start with a fixed prefix
  shape (``dddd-dd-dd dd:dd:dd,ddd``) and carry the level at a few byte offsets. The fast path
  tests the prefix and gathers the 8 bytes at each offset of every line at once (numpy), so most
  lines are counted, with their level, without a Python loop. Every other candidate line is
  parsed on its own (``_formats.parse_line``), trying the file's format and then all the others;
  a line that fits none continues the record before it. Offsets found that way join the fast path
  (up to sixteen), so a level that shows up late (Hadoop's WARN) costs nothing after the first chunk.
* Records of the chosen levels become templates: their messages are gathered into one batch per
  chunk, keyed by numpy (digit runs collapsed), and only keys not seen before are masked. The
  latest record of each template is remembered as bytes and its time parsed once per file.
* ``since``: timestamps are assumed non-decreasing within a file (true of one process's log). While
  outside the window, only the last record of each chunk is parsed; once inside, a binary search
  finds the first record at or after ``since`` and nothing is parsed for time again.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._redact import redact
from ._bytes import PREFIX_BYTES, luts, spellings, swar
from ._formats import Parsed, Sniffed, json_extra, parse_line
from ._kernel import HEADER_BYTES as _HEADER_BYTES
from ._kernel import NativeScan, add_record, kernel
from ._levels import CANONICAL
from ._templates import TemplateCache, TemplateStats, example_text, keys_of

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["Accumulator", "FileScan", "ScanOptions", "Skip", "note_skip"]

log = logging.getLogger("safla_diag.logs")

CHUNK_SIZE = 2 << 20
PAD = 4096  # room for the 8-byte gathers past the last line (offsets stay below it)
_MAX_OFFSET = PAD - 64
_MAX_OFFSETS = 16
_EXAMPLE_CHARS = 4000
_MESSAGE_BYTES = 4096
_MAX_CONTINUATION = 500
_MAX_REMEMBERED = 4096
_MAX_KEYS = (
    20_000  # a file's distinct template keys held (with a header each) before they are folded in
)
# ... and the bytes of their first records held meanwhile (each up to 16 000: a message and its
# traceback), so that many keys of a few templates do not hold a record each for long.
_MAX_FIRST_BYTES = 16 << 20
_LEVEL_INDEX = {lv: i for i, lv in enumerate(CANONICAL)}


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
    # Masked templates by key, shared by every file and both halves of one: a key is masked once.
    cache: TemplateCache = field(default_factory=TemplateCache)


@dataclass
class Skip:
    """A file skipped, or only partly read, and why."""

    path: str
    reason: str
    partial: bool = False


def note_skip(skip: Skip) -> Skip:
    """Log a skip at INFO and return it."""
    log.info("log file %s skipped: %s", skip.path, skip.reason)
    return skip


@dataclass
class Accumulator:
    """Everything the scan of all files adds up to."""

    counts: Counter[str] = field(default_factory=Counter)
    records: int = 0
    templates: dict[tuple[str, str], TemplateStats] = field(default_factory=dict)
    match_count: int = 0
    match_examples: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0
    garbage_lines: int = 0
    nul_bytes: int = 0
    templates_truncated: bool = False
    #: The templates of an accumulator this one is merged into later (a file's first half, read
    #: meanwhile on another thread), for the keys a second half folds in before its end (more
    #: than a file keeps at once): a template found there keeps that one's example, so none is
    #: made here.
    merged_into: dict[tuple[str, str], TemplateStats] | None = field(default=None, repr=False)


def _line_ends(np: Any, view: Any) -> Any:
    """
    Positions of the newlines in ``view``. The comparison's bytes are read 8 at a time: lines
    longer than 8 bytes put at most one newline in a word, so only words holding one are listed
    (numpy lists sparse hits slowly) and the newline's place in its word is its bit count.
    """
    nl = view == 10
    whole = len(nl) & ~7
    w = nl[:whole].view(np.uint64)
    at = np.flatnonzero(w != 0)
    hit = w[at]
    one = np.uint64(1)
    low = hit & (~hit + one)
    if bool((hit != low).any()):  # short or blank lines: two newlines in one word
        return np.flatnonzero(nl)
    ends = at * 8 + (np.bitwise_count(low - one) >> np.uint8(3))
    if whole < len(nl):
        ends = np.concatenate((ends, np.flatnonzero(nl[whole:]) + whole))
    return ends


class FileScan:
    """The state of one file's scan: its format, the fast path's tables, the window flag."""

    def __init__(self, name: str, sniffed: Sniffed, opts: ScanOptions, acc: Accumulator) -> None:
        self.name = name
        self.sn = sniffed
        self.opts = opts
        self.acc = acc
        self.in_window = opts.since is None
        self.since_ts = opts.since.timestamp() if opts.since is not None else None
        self.prefix = sniffed.prefix[:PREFIX_BYTES]
        self.offsets = [o for o in sniffed.offsets if 0 < o < _MAX_OFFSET]
        self.fast = len(self.prefix) > 0 and bool(self.offsets or not sniffed.has_levels)
        initial = bytearray(256)  # the first bytes of the level words' spellings
        for word, _level in spellings(sniffed.cases):
            initial[word[0]] = 1
        self.initial_bytes = bytes(initial)
        # The numpy path's tables, made on its first chunk (_numpy_tables): a file the kernel
        # reads never imports numpy (a tenth of a second, and BLAS threads that spin meanwhile,
        # for a command-line scan).
        self.np: Any = None
        self.tag_of = {
            lv: bytes([1 + k + (k >= 9)]) for k, lv in enumerate(sorted(opts.chosen)[:200])
        }
        self.level_of = {t: lv for lv, t in self.tag_of.items()}
        # This file's template keys: records per key, the header of each key's latest record,
        # and its (level, masked template), or None when the table was full.
        # (Keys the kernel handles are held in its memo instead, until the file ends.)
        self.key_counts: Counter[bytes] = Counter()
        self.key_last: dict[bytes, tuple[int, bytes]] = {}  # (chunk << 32 | line, header)
        self.chunk_no = 0
        self.key_template: dict[bytes, tuple[str, str] | None] = {}
        # Keys met since the last flush, by first record: (its order, its bytes, the length of
        # its header line in them, a JSON record's traceback fields); resolved at the flush.
        self.firsts: dict[bytes, tuple[int, bytes, int, str]] = {}
        self.firsts_bytes = 0
        self.flushes = 0  # folds into the template table so far
        self.new_offsets: Counter[int] = Counter()
        self.not_records: set[bytes] = set()
        mod = kernel()
        self.native = NativeScan(mod, self) if mod is not None and NativeScan.usable(self) else None

    def _numpy_tables(self) -> None:
        import numpy as np

        self.luts = luts()
        prefix = self.prefix
        self.prefix_pos = np.array([p for p, _ in prefix], dtype=np.int64)
        self.prefix_val = np.array([v for _, v in prefix], dtype=np.uint8)
        self.swar = swar(prefix)
        self.initial = np.frombuffer(self.initial_bytes, dtype=np.uint8).astype(bool)
        # Per offset k in use: the pair table shifted to bit k (256 KiB each, made on demand).
        self.plausible: Any = None
        self.pair_bit: list[Any] = []
        # Every spelling as its 8 bytes (zero-padded), sorted, with its level; and the mask
        # that keeps the first n bytes of a word, for n = 0..9.
        pairs = sorted(
            (int.from_bytes(word.ljust(8, b"\0"), "little"), _LEVEL_INDEX[level])
            for word, level in spellings(self.sn.cases)
        )
        self.vals = np.array([v for v, _ in pairs], dtype=np.uint64)
        self.lvls = np.array([lv for _, lv in pairs], dtype=np.int64)
        self.len_mask = np.array(
            [
                int.from_bytes(b"\xff" * min(n, 8) + b"\0" * (8 - min(n, 8)), "little")
                for n in range(10)
            ],
            dtype=np.uint64,
        )
        self.chosen_idx = np.zeros(len(CANONICAL) + 1, dtype=bool)
        for lv in self.opts.chosen:
            if lv in _LEVEL_INDEX:
                self.chosen_idx[_LEVEL_INDEX[lv]] = True
        self.np = np

    # -- helpers ------------------------------------------------------------------------------

    def parse_head(self, buf: bytearray, s: int, e: int) -> Parsed | None:
        """Parse a line that may start a record, remembering lines that do not (tracebacks)."""
        line = bytes(buf[s : min(e, s + _MESSAGE_BYTES)])
        not_records = self.not_records
        if line in not_records:
            return None
        p = parse_line(line.rstrip(b"\r"), self.sn.table)
        if p is None and len(line) <= _HEADER_BYTES:
            # Continuation lines repeat (the same traceback after every such error): remember a
            # bounded number of them.
            if len(not_records) >= _MAX_REMEMBERED:
                not_records.clear()
            not_records.add(line)
        return p

    def _parse(self, buf: bytearray, s: int, e: int) -> Parsed | None:
        return parse_line(bytes(buf[s : min(e, s + _MESSAGE_BYTES)]).rstrip(b"\r"), self.sn.table)

    def _ts(self, buf: bytearray, s: int, e: int) -> float | None:
        p = self._parse(buf, s, e)
        dt = p.timestamp(self.opts.now) if p is not None else None
        return dt.timestamp() if dt is not None else None

    def _window_start(self, buf: bytearray, starts: Any, ends: Any, heads: Any) -> int | None:
        """Index of the first line in the window, or None when the whole chunk is before it."""
        assert self.since_ts is not None
        if len(heads) == 0:
            return None
        for j in range(len(heads) - 1, max(-1, len(heads) - 50), -1):
            ts = self._ts(buf, int(starts[heads[j]]), int(ends[heads[j]]))
            if ts is not None:
                break
        else:
            return None
        if ts < self.since_ts:
            return None

        def key(j: int) -> float:
            # A line without a time (a traceback's last line) takes its record's time.
            for k in range(j, max(-1, j - 50), -1):
                i = int(heads[k])
                t = self._ts(buf, int(starts[i]), int(ends[i]))
                if t is not None:
                    return t
            return float("-inf")

        j = bisect.bisect_left(range(len(heads)), self.since_ts, key=key)
        self.in_window = True
        return int(heads[j]) if j < len(heads) else None

    # -- one chunk ----------------------------------------------------------------------------

    def process(self, buf: bytearray, cut: int, final: bool) -> int:
        """Analyse ``buf[:cut]`` (whole lines); return how many bytes were consumed."""
        self.chunk_no += 1
        if self.native is not None and self.in_window:
            return self.native.process(buf, cut, final)
        if self.np is None:
            self._numpy_tables()
        np = self.np
        a = np.frombuffer(buf, dtype=np.uint8)
        view = a[:cut]
        ends = _line_ends(np, view)
        real_lines = len(ends)
        garbage = None
        if np.count_nonzero(view < 32) > real_lines:
            garbage = self._garbage(view, ends)
        n = len(ends)
        if n == 0:
            return cut
        starts = np.empty(n, dtype=np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts
        first = a[starts]
        head = (first != 32) & (first != 9) & (lengths > 0)
        if garbage is not None:
            head &= ~garbage
        stop = n
        if not final:
            last = self._last_record(buf, a, starts, ends, head)
            if last > 0:
                stop = last
        consumed = int(starts[stop]) if stop < n else cut
        self.acc.lines += stop
        if garbage is not None:
            self.acc.garbage_lines += int(np.count_nonzero(garbage[:stop]))
        lo = 0
        if not self.in_window:
            first_in = self._window_start(buf, starts, ends, np.flatnonzero(head[:stop]))
            if first_in is None:
                return consumed
            lo = first_in
        if lo >= stop:
            return consumed
        self._records(buf, a, starts[lo:stop], ends[lo:stop], lengths[lo:stop], head[lo:stop])
        if self.opts.pattern is not None:
            self.matches(buf, int(starts[lo]), int(ends[stop - 1]) + 1)
        return consumed

    def _last_record(self, buf: bytearray, a: Any, starts: Any, ends: Any, head: Any) -> int:
        """The last line that starts a record (its traceback may follow in the next read)."""
        heads = self.np.flatnonzero(head[-4096:]) + max(0, len(head) - 4096)
        for i in heads[::-1][:200].tolist():
            if self.sn.format is None:
                return int(i)
            s = int(starts[i])
            if self.fast and int(ends[i]) - s >= len(self.prefix_pos):
                got = a[s + self.prefix_pos]
                want = self.prefix_val
                if bool((((want == 0) & self.luts.digit[got]) | (got == want)).all()):
                    return int(i)
            if self._parse(buf, s, int(ends[i])) is not None:
                return int(i)
        return int(heads[-1]) if len(heads) else -1

    def _garbage(self, view: Any, ends: Any) -> Any:
        """Lines with many control bytes are binary data: a mask of them, or None."""
        np = self.np
        ctrl = self.luts.ctrl[view]
        if not ctrl.any():
            return None
        cs = np.concatenate(([0], np.cumsum(ctrl, dtype=np.int64)))
        starts = np.concatenate(([0], ends[:-1] + 1))
        bad = cs[ends] - cs[starts]
        return (bad > 0) & (bad * 20 >= (ends - starts))

    def _records(
        self,
        buf: bytearray,
        a: npt.NDArray[Any],
        starts: Any,
        ends: Any,
        lengths: Any,
        head: Any,
    ) -> None:
        """Count the records among these lines and collect the chosen ones' messages."""
        np = self.np
        n = len(starts)
        level_idx = np.full(n, -1, dtype=np.int64)  # -1: no level (yet)
        is_rec = np.zeros(n, dtype=bool)
        msg_at = np.zeros(n, dtype=np.int64)
        slow = head.copy()
        if self.fast:
            ok = head & (lengths >= len(self.prefix_pos))
            words = np.ndarray((len(a) - 7,), dtype="<u8", buffer=a, strides=(1,))
            for k, (exact_m, exact_v, dig_m, dig_v, add6) in enumerate(self.swar):
                w = words[starts + 8 * k]
                # Exact bytes match; digit positions hold 0x30-0x39 (high nibble 3 before and
                # after adding 6: the SWAR test of "is a digit" on eight bytes at once).
                ok &= (
                    ((w & exact_m) == exact_v)
                    & ((w & dig_m) == dig_v)
                    & (((w + add6) & dig_m) == dig_v)
                )
            cand = np.flatnonzero(ok)
            is_rec[cand] = True
            if self.sn.has_levels:
                self._fast_levels(a, starts, ends, cand, level_idx, msg_at)
                slow[cand] = False
                slow[cand[level_idx[cand] < 0]] = True
                is_rec[cand[level_idx[cand] < 0]] = False
            else:
                slow[cand] = False
        extra: list[tuple[int, str, bytes | str]] = []
        bare = self.sn.format is None
        for i, s, e in zip(
            *(x.tolist() for x in (np.flatnonzero(slow), starts[slow], ends[slow])), strict=True
        ):
            p = self.parse_head(buf, s, e)
            if p is None:
                if bare:
                    is_rec[i] = True
                continue
            is_rec[i] = True
            if p.level is None:
                continue
            li = _LEVEL_INDEX.get(p.level)
            if li is None:
                self.acc.counts[p.level] += 1
                if p.level in self.opts.chosen:
                    extra.append((i, p.level, p.message or bytes(buf[s + p.msg_start : e])))
                continue
            level_idx[i] = li
            if p.message is not None:  # JSON: the message is a field, not a slice of the line
                if self.chosen_idx[li]:
                    extra.append((i, p.level, p.message))
                level_idx[i] = -2 - li  # counted below, message already taken
            else:
                msg_at[i] = s + p.msg_start
            if p.format == self.sn.format and p.lvl_pos > 0 and self.fast:
                self.new_offsets[p.lvl_pos] += 1
        self.learn_offsets()
        self.acc.records += int(np.count_nonzero(is_rec))
        lv = np.where(level_idx <= -2, -2 - level_idx, level_idx)
        counted = np.bincount(lv[lv >= 0], minlength=len(CANONICAL))
        for k, c in enumerate(counted.tolist()):
            if c:
                self.acc.counts[CANONICAL[k]] += c
        if not self.opts.chosen:
            return
        pick = np.flatnonzero((level_idx >= 0) & self.chosen_idx[np.maximum(level_idx, 0)])
        if self.sn.format == "json" and len(pick):
            for i in pick.tolist():
                p = self._parse(buf, int(starts[i]), int(ends[i]))
                if p is not None and p.level is not None:
                    extra.append((i, p.level, p.message or ""))
            pick = pick[:0]
        if len(pick) or extra:
            self._templates(buf, starts, ends, is_rec, pick, level_idx, msg_at, extra)

    def _fast_levels(
        self, a: Any, starts: Any, ends: Any, cand: Any, level_idx: Any, msg_at: Any
    ) -> None:
        """The level word at one of the known offsets of each candidate line, all at once."""
        np = self.np
        if not len(cand):
            return
        words = np.ndarray((len(a) - 7,), dtype="<u8", buffer=a, strides=(1,))
        pairs = np.ndarray((len(a) - 1,), dtype="<u2", buffer=a, strides=(1,))
        s0 = starts[cand]
        # One bit per offset where a level may sit: a delimiter before it and a level's first
        # letter at it, looked up as one 16-bit pair. (Bits, not a 2-D mask: numpy reduces
        # short rows slowly.)
        bits = np.zeros(len(cand), dtype=np.int32)
        if self.plausible is None:
            self.plausible = self._plausible()
        while len(self.pair_bit) < len(self.offsets):
            self.pair_bit.append(self.plausible << np.int32(len(self.pair_bit)))
        for k, off in enumerate(self.offsets):
            bits |= self.pair_bit[k][pairs[s0 + (off - 1)]]
        rows = np.flatnonzero(bits)
        offs = np.array(self.offsets, dtype=np.int64)
        e0 = ends[cand]
        high = np.uint64(0x8080808080808080)
        one = np.uint64(1)
        while len(rows):
            b = bits[rows]
            low = b & -b  # the leftmost offset not yet ruled out
            s = s0[rows] + offs[self.luts.bit_index[low]]
            g = words[s]
            # The word's length: its leading ASCII letters, found for 8 bytes at once (SWAR):
            # the lowest clear high bit is 2 ** (8 * n + 7), and its popcount below it gives n
            # (no stop in eight bytes: 0 - 1 has 64 bits set, n = 8).
            x = g | np.uint64(0x2020202020202020)
            letters = (
                ((x | high) - np.uint64(0x6161616161616161))
                & (np.uint64(0xFAFAFAFAFAFAFAFA) - (x & ~high))
                & ~g
                & high
            )
            stop = ~letters & high
            n_letters = (np.bitwise_count((stop & (~stop + one)) - one) >> np.uint8(3)).astype(
                np.int64
            )
            se = s + n_letters
            ok = (n_letters >= 3) & self.luts.right[a[se]] & (e0[rows] >= se)
            gm = g & self.len_mask[n_letters]
            pos = np.searchsorted(self.vals, gm)
            np.minimum(pos, len(self.vals) - 1, out=pos)
            ok &= self.vals[pos] == gm
            line = cand[rows]
            idx = line[ok]
            level_idx[idx] = self.lvls[pos[ok]]
            msg_at[idx] = se[ok]
            miss = rows[~ok]
            bits[miss] &= ~low[~ok]
            rows = miss[bits[miss] != 0]

    def _plausible(self) -> Any:
        """For a 16-bit (byte before, byte at) pair: 1 when a level word may start there."""
        np = self.np
        pair = np.arange(1 << 16)
        return (self.luts.left[pair & 0xFF] & self.initial[pair >> 8]).astype(np.int32)

    def learn_offsets(self) -> None:
        if not self.new_offsets:
            return
        for off, c in self.new_offsets.most_common():
            if (
                c >= 2
                and off not in self.offsets
                and len(self.offsets) < _MAX_OFFSETS
                and off < _MAX_OFFSET
            ):
                self.offsets.append(off)
                log.debug("%s: level also at byte %d", redact(self.name), off)
        self.offsets.sort()
        self.new_offsets.clear()

    def _templates(
        self,
        buf: bytearray,
        starts: Any,
        ends: Any,
        head: Any,
        pick: Any,
        level_idx: Any,
        msg_at: Any,
        extra: list[tuple[int, str, bytes | str]],
    ) -> None:
        """Key the chosen records' messages and fold them into the template table."""
        np = self.np
        lines: list[int] = []
        parts: list[bytes] = []
        if len(pick):
            tags = np.array(
                [self.tag_of.get(CANONICAL[k], b"\0")[0] for k in range(len(CANONICAL))],
                dtype=np.uint8,
            )
            body = msg_at[pick]
            end = np.minimum(ends[pick], body + _MESSAGE_BYTES)
            body = np.minimum(body, end)
            length = end - body + 2
            first = np.cumsum(length) - length
            src = np.repeat(body - 1 - first, length) + np.arange(int(length.sum()))
            out = np.frombuffer(buf, dtype=np.uint8)[src]
            out[first] = tags[level_idx[pick]]
            out[first + length - 1] = 10
            lines = pick.tolist()
            parts = [out[:-1].tobytes()]
        if extra:
            extra.sort(key=lambda x: x[0])
            joined_lines = parts[0].split(b"\n") if parts else []
            pairs = list(zip(lines, joined_lines, strict=True))
            for i, level, msg in extra:
                text = msg.encode("utf-8", "replace") if isinstance(msg, str) else msg
                text = text[:_MESSAGE_BYTES].replace(b"\n", b" ").replace(b"\r", b" ")
                pairs.append((i, self.tag_of.get(level, b"\0") + text))
            pairs.sort(key=lambda p: p[0])
            lines = [p[0] for p in pairs]
            parts = [b"\n".join(p[1] for p in pairs)]
        joined = parts[0].replace(b"\r\n", b"\n") if parts else b""
        if joined.endswith(b"\r"):
            joined = joined[:-1]
        by_key: dict[bytes, list[int]] = {}
        for i, k, s, e in zip(
            lines, keys_of(joined), starts[lines].tolist(), ends[lines].tolist(), strict=True
        ):
            add_record(by_key, k, i, s, e)

        def record_end(i: int, _e: int) -> int:
            after = head[i + 1 : i + 1 + _MAX_CONTINUATION]
            j = int(np.argmax(after)) if len(after) else 0
            nxt = i + 1 + (j if len(after) and after[j] else len(after))
            return int(ends[max(i, nxt - 1)])

        self.fold(buf, by_key, record_end)

    def fold(
        self,
        buf: bytearray,
        by_key: dict[bytes, list[int]],
        record_end: Callable[[int, int], int],
        tally: dict[bytes, list[int]] | None = None,
    ) -> None:
        """
        Fold a chunk's chosen records into the template table: per template key, the kernel's
        seven figures (count, first record's line, start and end, last record's line, start and
        end); ``record_end(line, end)`` is where the record whose first line is ``line`` (ending
        at ``end``) ends.

        With ``tally``, ``by_key`` holds only the keys new to the kernel's memo (which counts
        them and keeps their latest record itself) and ``tally`` the records counted here: a
        chunk then costs Python the keys it has not met before, not every key it holds.
        """
        if tally is None:
            tally = candidates = by_key
        else:
            candidates = dict(by_key)
            for k, f in tally.items():
                c = candidates.get(k)
                if c is None or f[1] < c[1]:
                    candidates[k] = f
        # Per key, not per record: counts, and the header of each key's latest record (kept as
        # bytes, its time parsed once per file).
        key_counts = self.key_counts
        key_last = self.key_last
        base = self.chunk_no << 32
        for k, f in tally.items():
            key_counts[k] += f[0]
            key_last[k] = (base + f[4], bytes(buf[f[5] : min(f[6], f[5] + _HEADER_BYTES)]))
        # A key new to this file (since the last flush): its first record is kept as bytes, and
        # its masked template found when the file ends (_resolve), with every other key's at once.
        firsts = self.firsts
        fresh = [k for k in candidates if k not in firsts]
        if not fresh:
            return
        if len(fresh) > 1:
            fresh.sort(key=lambda k: candidates[k][1])  # the first record shows the row
        for k in fresh:
            _, line, s, e = candidates[k][:4]
            first = firsts[k] = (base + line, *self._first_record(buf, s, e, record_end(line, e)))
            self.firsts_bytes += len(first[1])
        if self.native is None:
            self.check_keys(0, 0)

    def check_keys(self, keys: int, first_bytes: int) -> None:
        """Fold the keys met so far into the template table when they (with ``keys`` more and
        ``first_bytes`` of their first records: the kernel's) are more than a file keeps."""
        if (
            len(self.firsts) + keys > _MAX_KEYS
            or self.firsts_bytes + first_bytes > _MAX_FIRST_BYTES
        ):
            self._flush()

    def _first_record(self, buf: bytearray, s: int, e_line: int, e: int) -> tuple[bytes, int, str]:
        """A key's first record [s, e), whose first line ends at ``e_line``: its bytes (bounded),
        the length of its header line within them, and a JSON record's traceback fields."""
        record = bytes(buf[s : min(e, s + 4 * _EXAMPLE_CHARS)])
        n = min(e_line - s, _MESSAGE_BYTES)
        extra = ""
        if record[:n].lstrip()[:1] == b"{":  # maybe JSON: its traceback fields join the example
            p = parse_line(record[:n].rstrip(b"\r"), self.sn.table)
            if p is not None and p.format == "json":
                extra = json_extra(bytes(buf[s:e_line]))
        return record, n, extra

    def _resolve(self) -> None:
        """The keys met since the last flush: their masked templates (masked together), and a
        row for each template new to the table, its example the first record of its first key."""
        firsts = self.firsts
        if not firsts:
            return
        known = self.opts.cache.masks(firsts)
        if self.native is not None:  # the kernel's and Python's, in the file's order
            firsts = dict(sorted(firsts.items(), key=lambda kv: kv[1][0]))
        table = self.acc.templates
        earlier = self.acc.merged_into
        key_template = self.key_template
        level_of = self.level_of
        max_templates = self.opts.max_templates
        sn_table, now = self.sn.table, self.opts.now
        for k, (_order, record, n, extra) in firsts.items():
            key = (level_of[k[:1]], known[k])
            stats = table.get(key)
            if stats is None:
                if len(table) >= max_templates:
                    self.acc.templates_truncated = True
                    key_template[k] = None
                    continue
                if earlier is not None and key in earlier:  # that row keeps its own example
                    stats = table[key] = TemplateStats(key[1], 0, "", key[0])
                else:
                    text = record.decode("utf-8", "replace")
                    stats = table[key] = TemplateStats(
                        key[1], 0, text + "\n" + extra if extra else text, key[0]
                    )
            stats.seen_head(record[:n].rstrip(b"\r"), sn_table, now)
            key_template[k] = key
        self.firsts.clear()
        self.firsts_bytes = 0

    def _flush(self) -> None:
        """Add the keys' counts to their templates and parse each key's latest time."""
        self.flushes += 1
        self.collect()
        table = self.acc.templates
        key_counts, key_last = self.key_counts, self.key_last
        self._resolve()
        for k, count in key_counts.items():
            key = self.key_template.get(k)
            stats = table.get(key) if key is not None else None
            if stats is None:
                continue
            stats.count += count
            stats.seen_head(key_last[k][1].rstrip(b"\r"), self.sn.table, self.opts.now)
        self.key_counts.clear()
        self.key_last.clear()
        self.key_template.clear()

    def collect(self) -> None:
        """Take the kernel's keys into this scan's own (the kernel's memo empties): what the
        template table needs of them, not yet folded in."""
        if self.native is not None:
            key_counts, key_last = self.key_counts, self.key_last
            firsts = self.firsts
            for k, count, order, head, first, record, line in self.native.memo_items():
                key_counts[k] += count
                last = key_last.get(k)
                if last is None or last[0] < order:
                    key_last[k] = (order, head)
                if record is not None:
                    had = firsts.get(k)
                    if had is None or first < had[0]:
                        firsts[k] = (first, record, line, "")
                        self.firsts_bytes += len(record)

    def finish(self) -> None:
        """Fold this file's keys into the template table (once per file, not per chunk)."""
        self._flush()

    def absorb(self, later: FileScan) -> None:
        """
        Take over the keys not yet folded in of the scan of a later part of the same file (the
        second half, whose orders come after this one's): records summed, each key's latest
        record and first record kept from whichever part has them. One fold of the lot then
        gives the rows a single pass gives.
        """
        if self.native is not None and later.native is not None:
            self.native.mod.memo_merge(self.native.memo, later.native.memo)
        else:
            later.collect()  # the kernel's keys, if only the later part had the kernel
        key_counts, key_last, firsts = self.key_counts, self.key_last, self.firsts
        for k, count in later.key_counts.items():
            key_counts[k] += count
        for k, last in later.key_last.items():
            mine = key_last.get(k)
            if mine is None or mine[0] < last[0]:
                key_last[k] = last
        for k, first in later.firsts.items():
            had = firsts.get(k)
            if had is None or first[0] < had[0]:
                firsts[k] = first
                self.firsts_bytes += len(first[1])
        later.key_counts.clear()
        later.key_last.clear()
        later.firsts.clear()
        later.firsts_bytes = 0

    def matches(self, buf: bytearray, lo: int, hi: int) -> None:
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
                acc.match_examples.append(example_text(line))
            pos = e + 1
