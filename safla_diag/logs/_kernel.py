"""
The scanner's native path: one C pass per chunk (``_native.scan``), Python for what it hands back.

The kernel (``_native.c``) finds the lines, skips garbage, tests every line's prefix shape and
level word at the known offsets, counts those records by level and, for the chosen levels,
returns their template keys already made. What it cannot decide (a line whose prefix or level
is not where the file's format puts them: another format, a traceback line, a late-seen offset)
comes back as a list of line spans for the per-line parser, exactly as on the numpy path.

The numpy path in ``_scan`` stays: it is the fallback where the kernel was not built, it serves
``since`` windows, and the tests run both and compare them (``SAFLA_DIAG_PURE=1`` forces it).
"""

from __future__ import annotations

import os
import re
from types import ModuleType
from typing import TYPE_CHECKING

from ._bytes import CTRL, LEFT, RIGHT, byte_table, spellings
from ._formats import Parsed, learn_shape, parse_line
from ._levels import CANONICAL
from ._templates import keys_of

if TYPE_CHECKING:
    from ._scan import FileScan

__all__ = ["HEADER_BYTES", "NativeScan", "add_record", "kernel"]

_MESSAGE_BYTES = 4096
_MAX_CONTINUATION = 500
HEADER_BYTES = 256  # of each template key's latest record: its time is read at the file's end
_LEVEL_INDEX = {lv: i for i, lv in enumerate(CANONICAL)}
_BLANK = (32, 9)
# The kernel's byte tables, made once (not per file).
_LEFT, _RIGHT, _CTRL_TABLE = byte_table(LEFT), byte_table(RIGHT), byte_table(CTRL)
# Another format inside a file (a concatenation, another service's log): after this many lines
# in a row that no known shape reads, the kernel stops and the next lines teach it their shape.
_STOP_RUN = 32
_LEARN_LINES = 16  # lines parsed to learn from
_LEARN_MIN = 8  # lines of one format and first field that make a shape
_MAX_SHAPES = 31  # learned, besides the sniffed one (the kernel takes 32 in all)
_DIGITS_AS_0 = bytes.maketrans(b"123456789", b"000000000")
# A chunk's lines left to the parser, when this many or more: a sample of them teaches the kernel
# the shapes of the records among them (HPC's kinds of lines, interleaved), and it reads those.
_SLOW_SAMPLE = 160


def kernel() -> ModuleType | None:
    """The compiled kernel, or None where it was not built or ``SAFLA_DIAG_PURE`` is set."""
    if os.environ.get("SAFLA_DIAG_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _native
    except ImportError:
        return None
    return _native


class NativeScan:
    """The kernel's fixed arguments for one file, and the Python half of each chunk."""

    def __init__(self, mod: ModuleType, fs: FileScan) -> None:
        self.mod = mod
        self.fs = fs
        prefix = fs.prefix
        self.prefix = bytes(v for _, v in prefix)
        # The same test for the lines Python looks at (around records): one regex match.
        self.prefix_rx = re.compile(
            b"".join(rb"[0-9]" if v == 0 else re.escape(bytes([v])) for v in self.prefix)
        )
        pairs: dict[int, int] = {}
        for word, level in sorted(
            (int.from_bytes(w.ljust(8, b"\0"), "little"), _LEVEL_INDEX[lv])
            for w, lv in spellings(fs.sn.cases)
        ):
            pairs.setdefault(word, level)  # the lowest level first, as numpy's searchsorted
        self.words = b"".join(w.to_bytes(8, "little") for w in pairs)
        self.levels = bytes(pairs.values())
        self.left = _LEFT
        self.right = _RIGHT
        self.initial = fs.initial_bytes
        self.ctrl = _CTRL_TABLE
        self.tags = bytes(fs.tag_of.get(lv, b"\0")[0] for lv in CANONICAL)
        self.known = b""
        self.known_n = 0
        # Shapes learned from the lines of other formats met further on: (prefix, offsets,
        # has_levels, gap), tried after the sniffed one.
        self.shapes: list[tuple[bytes, tuple[int, ...], bool, int]] = []
        self.stop_run = _STOP_RUN
        self._parsed: dict[int, Parsed | None] = {}  # a chunk's left lines parsed while learning
        # The file's template keys across chunks, in the kernel: Python meets each key once.
        self.memo = mod.memo(HEADER_BYTES)

    def _known(self) -> bytes:
        """The lines known not to start a record (the parser's memory), for the kernel to skip."""
        memory = self.fs.not_records
        if len(memory) != self.known_n:
            self.known_n = len(memory)
            self.known = b"\n".join(memory)
        return self.known

    @staticmethod
    def usable(fs: FileScan) -> bool:
        """Whether the kernel serves this file: its prefix is the contiguous shape the kernel
        tests, and messages are slices of lines (not JSON fields)."""
        if fs.sn.format == "json":
            return False
        return [p for p, _ in fs.prefix] == list(range(len(fs.prefix)))

    # -- one chunk ------------------------------------------------------------------------------

    def process(self, buf: bytearray, cut: int, final: bool) -> int:
        """Analyse ``buf[:cut]`` (whole lines); return how many bytes were consumed."""
        fs = self.fs
        acc = fs.acc
        stop = cut if final else self._last_record(buf, cut)
        view = memoryview(buf)
        spans: list[int] = []
        new: dict[bytes, list[int]] = {}
        ends: dict[int, int] = {}  # a new key's first line's end -> its record's end
        pos = line_base = 0
        while True:
            # From pos: the sniffed shape and the learned ones, stopping before a run of lines
            # none of them reads (then learning theirs, and going on from there).
            lines, garbage, records, counts, slow, picks, keys, stopped = self.mod.scan(
                view[pos:],
                stop - pos,
                self.prefix if fs.fast else b"",
                fs.offsets,
                self.words,
                self.levels,
                self.left,
                self.right,
                self.initial,
                self.ctrl,
                self.tags,
                fs.fast or bool(self.shapes),
                fs.sn.has_levels,
                fs.sn.format is None,
                self._known(),
                self.memo,
                (fs.chunk_no << 32) + line_base,
                self.shapes,
                self.stop_run,
            )
            acc.lines += lines
            acc.garbage_lines += garbage
            acc.records += records
            for k, c in enumerate(counts):
                if c:
                    acc.counts[CANONICAL[k]] += c
            if slow:
                got = memoryview(slow).cast("q").tolist()
                if pos:
                    for j in range(0, len(got), 3):
                        got[j] += line_base
                        got[j + 1] += pos
                        got[j + 2] += pos
                spans += got
            if picks:
                figures = memoryview(picks).cast("q").tolist()
                for j, key in enumerate(keys.split(b"\n")):
                    c, l1, s1, e1, l2, s2, e2, end = figures[8 * j : 8 * j + 8]
                    new[key] = [
                        c,
                        l1 + line_base,
                        s1 + pos,
                        e1 + pos,
                        l2 + line_base,
                        s2 + pos,
                        e2 + pos,
                    ]
                    if end >= 0:  # the kernel saw where it ends: no walk over its lines here
                        ends[e1 + pos] = end + pos
            if stopped < 0:
                break
            line_base += lines
            pos += stopped
            if not self._learn(buf, pos, stop):
                # Nothing to learn there (lines of no format, or of one without a fixed
                # prefix): those lines go to the parser, and the next run must be longer.
                self.stop_run *= 2
        self._parsed = {}
        if len(spans) >= 3 * _SLOW_SAMPLE:
            spans = self._claim_slow(buf, spans)
        extra = self._slow(buf, spans) if spans else []
        fs.learn_offsets()
        if fs.opts.pattern is not None and stop:
            fs.matches(buf, 0, stop)
        if new or extra:
            # The keys new to the memo whose first record's end it could not tell (it counts
            # them and keeps their latest record), and the parser's records, counted here.
            tally: dict[bytes, list[int]] = {}
            if extra:
                extra_keys = keys_of(b"\n".join(t for *_, t in extra))
                for (i, s, e, _), key in zip(extra, extra_keys, strict=True):
                    add_record(tally, key, i, s, e)

            def record_end(_i: int, e: int) -> int:
                end = ends.get(e)
                return self._record_end(buf, e, stop) if end is None else end

            fs.fold(buf, new, record_end, tally)
        fs.check_keys(*self.memo_size())
        return stop

    def _learn(self, buf: bytearray, pos: int, stop: int) -> bool:
        """
        Learn the shapes of the lines from ``pos`` (where the kernel stopped before a run of
        lines it could not read): per format and first field (its digits as 0) among the next
        lines, the prefix and level offsets those lines share. True when one was added.
        """
        fs = self.fs
        heads: list[bytes] = []
        s = pos
        while len(heads) < _LEARN_LINES and s < stop:
            nl = buf.find(b"\n", s, stop)
            e = stop if nl < 0 else nl
            if e > s and buf[s] not in _BLANK:
                heads.append(bytes(buf[s : min(e, s + _MESSAGE_BYTES)]).rstrip(b"\r"))
            s = e + 1
        groups: dict[tuple[str, bytes], list[tuple[bytes, Parsed]]] = {}
        for k, ln in enumerate(heads):
            p = parse_line(ln, fs.sn.table)
            if p is not None:  # by format and first field, its digits as 0 (BGL's alert tags)
                first = ln.split(b" ", 1)[0].translate(_DIGITS_AS_0)
                groups.setdefault((p.format, first), []).append((ln, p))
            if k + 1 == _LEARN_MIN and len(groups) == 1 and len(self.shapes) < _MAX_SHAPES:
                # The first lines are all of one kind (a change of format): learn from them, and
                # parse the others only when that gives nothing new.
                (((name, _), group),) = groups.items()
                if len(group) == _LEARN_MIN:
                    shape = learn_shape(name, group, fs.sn.cases)
                    if shape is not None and shape not in self.shapes:
                        self.shapes.append(shape)
                        return True
        added = False
        for (name, _), group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            if len(group) < _LEARN_MIN or len(self.shapes) >= _MAX_SHAPES:
                continue
            shape = learn_shape(name, group, fs.sn.cases)
            if shape is not None and shape not in self.shapes:
                self.shapes.append(shape)
                added = True
        return added

    def _claim_slow(self, buf: bytearray, spans: list[int]) -> list[int]:
        """
        Many lines left to the parser: learn, from a sample spread over them, the shapes of
        their records (grouped by format and first twelve bytes, digits as 0: HPC's interleaved
        kinds of lines), and let the kernel read the lines those shapes claim, as one compact
        buffer (counted there, but for records of the chosen levels, which stay with the
        parser); return the spans still left.
        """
        fs = self.fs
        groups: dict[tuple[str, bytes], list[tuple[bytes, Parsed]]] = {}
        step = len(spans) // (3 * _SLOW_SAMPLE)
        for j in range(0, 3 * _SLOW_SAMPLE * step, 3 * step):
            s, e = spans[j + 1], spans[j + 2]
            p = self._parsed[s] = fs.parse_head(buf, s, e)
            if p is not None:
                line = bytes(buf[s : min(e, s + _MESSAGE_BYTES)]).rstrip(b"\r")
                key = (p.format, line[:12].translate(_DIGITS_AS_0))
                groups.setdefault(key, []).append((line, p))
        new: list[tuple[bytes, tuple[int, ...], bool, int]] = []
        for (name, _), group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            shape = learn_shape(name, group, fs.sn.cases) if len(group) >= _LEARN_MIN else None
            room = len(self.shapes) + len(new) < _MAX_SHAPES
            if shape is not None and room and shape not in self.shapes and shape not in new:
                new.append(shape)
        if not new:
            return spans
        self.shapes += new
        # The left lines one after another; only the new shapes (the others read none), and no
        # template keys here (gap -1: the chosen records stay with the parser).
        with memoryview(buf) as view:  # slices of a view: one copy of each line, by join
            lines = [view[s:e] for s, e in zip(spans[1::3], spans[2::3], strict=True)]
            text = b"\n".join([*lines, bytes(64)])  # the lines, a newline, the kernel's padding
            del lines
        _, _, records, counts, slow, *_ = self.mod.scan(
            text, len(text) - 64, b"", (), self.words, self.levels, self.left,
            self.right, self.initial, self.ctrl, self.tags, True, False, False, b"", None, 0,
            [(pre, offs, lv, -1) for pre, offs, lv, _ in new], 0,
        )  # fmt: skip
        fs.acc.records += records
        for k, c in enumerate(counts):
            if c:
                fs.acc.counts[CANONICAL[k]] += c
        left = memoryview(slow).cast("q").tolist()[0::3] if slow else []
        return [v for k in left for v in spans[3 * k : 3 * k + 3]]

    def memo_items(self) -> list[tuple[bytes, int, int, bytes, int, bytes | None, int]]:
        """The memo's keys (key, records, order of the latest, its header, order of the first,
        its bytes or None where Python keeps them, its first line's length); the memo empties."""
        return self.mod.memo_items(self.memo, True)  # type: ignore[no-any-return]

    def memo_size(self) -> tuple[int, int]:
        """How many keys the memo holds, and the bytes of their first records."""
        return self.mod.memo_size(self.memo)  # type: ignore[no-any-return]

    def _slow(self, buf: bytearray, spans: list[int]) -> list[tuple[int, int, int, bytes]]:
        """
        The lines the kernel left to the parser: count their records and levels; return the
        chosen ones as (line, start, end, tagged message) in line order.
        """
        fs = self.fs
        acc = fs.acc
        chosen = fs.opts.chosen
        bare = fs.sn.format is None
        learn = fs.fast and fs.sn.format is not None
        parsed = self._parsed  # what _claim_slow parsed already
        out: list[tuple[int, int, int, bytes]] = []
        for j in range(0, len(spans), 3):
            i, s, e = spans[j], spans[j + 1], spans[j + 2]
            p = parsed.pop(s) if s in parsed else fs.parse_head(buf, s, e)
            if p is None:
                if bare:
                    acc.records += 1
                continue
            acc.records += 1
            if p.level is None:
                continue
            acc.counts[p.level] += 1
            if learn and p.format == fs.sn.format and p.lvl_pos > 0 and p.level in _LEVEL_INDEX:
                fs.new_offsets[p.lvl_pos] += 1
            if p.level in chosen:
                out.append((i, s, e, fs.tag_of.get(p.level, b"\0") + self._message(buf, s, e, p)))
        return out

    @staticmethod
    def _message(buf: bytearray, s: int, e: int, p: Parsed) -> bytes:
        """A slow record's message, as the numpy path keys it."""
        if p.message is None and p.level in _LEVEL_INDEX:  # sliced from the line, as the kernel
            body = s + p.msg_start
            end = min(e, body + _MESSAGE_BYTES)
            text = bytes(buf[min(body, end) : end])
            return text[:-1] if text.endswith(b"\r") else text
        msg = p.message if p.message is not None else bytes(buf[s + p.msg_start : e])
        text = msg.encode("utf-8", "replace") if isinstance(msg, str) else msg
        return text[:_MESSAGE_BYTES].replace(b"\n", b" ").replace(b"\r", b" ")

    # -- lines around a record ----------------------------------------------------------------

    def _is_record(self, line: bytes) -> bool:
        """Whether a line starts a record: not blank-led, not garbage, and of the file's format
        (any such line, in a file without a format)."""
        if not line or line[0] in _BLANK or _garbage(line):
            return False
        fs = self.fs
        if fs.sn.format is None or self._prefix_ok(line):
            return True
        if line[:_MESSAGE_BYTES] in fs.not_records:  # the parser's memory: a traceback line
            return False
        return parse_line(line[:_MESSAGE_BYTES].rstrip(b"\r"), fs.sn.table) is not None

    def _prefix_ok(self, line: bytes) -> bool:
        return self.fs.fast and self.prefix_rx.match(line) is not None

    def _last_record(self, buf: bytearray, cut: int) -> int:
        """
        Where the chunk's last record starts (its traceback may follow in the next read), as the
        numpy path's ``_last_record``: among the last 200 record-like lines, the latest that has
        the prefix or parses, else the latest of them; ``cut`` when that is the chunk's first
        line or there is none.
        """
        end = cut - 1
        heads = 0
        fallback = -1
        for _ in range(4096):
            s = buf.rfind(b"\n", 0, end) + 1
            line = bytes(buf[s:end])
            if line and line[0] not in _BLANK and not _garbage(line):
                fallback = s if fallback < 0 else fallback
                heads += 1
                if self._is_record(line):
                    return s if s > 0 else cut
                if heads >= 200:
                    break
            if s == 0:
                break
            end = s - 1
        return fallback if fallback > 0 else cut

    def _record_end(self, buf: bytearray, e: int, cut: int) -> int:
        """Where a record whose first line ends at ``e`` ends: its continuation lines included."""
        last = e
        for _ in range(_MAX_CONTINUATION):
            s = last + 1
            if s >= cut:
                break
            nl = buf.find(b"\n", s, cut)
            end = cut if nl < 0 else nl
            if self._is_record(bytes(buf[s:end])):
                break
            last = end
        return last


def add_record(by_key: dict[bytes, list[int]], key: bytes, i: int, s: int, e: int) -> None:
    """Count the record on line ``i`` (span [s, e)) under ``key``: the kernel's seven figures
    (count, first line, start, end, last line, start, end)."""
    f = by_key.get(key)
    if f is None:
        by_key[key] = [1, i, s, e, i, s, e]
        return
    f[0] += 1
    if i < f[1]:
        f[1:4] = [i, s, e]
    if i > f[4]:
        f[4:7] = [i, s, e]


def _garbage(line: bytes) -> bool:
    """A line with control bytes making up 1/20 of it or more (binary data)."""
    bad = len(line) - len(line.translate(None, CTRL))
    return bad > 0 and bad * 20 >= len(line)
