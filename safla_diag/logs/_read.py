"""
Reading logs: paths and globs (each file once, symlink loops not followed), gzip and pipes, and
the read loop that feeds the chunk scanner. A large regular file is read as two halves at once
(``_scan_halves``), the second on a thread of its own, and the halves' figures are added up.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import os
import re
import stat
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeAlias, cast

from .._redact import redact
from ._formats import Sniffed, parse_line, sniff
from ._scan import PAD, Accumulator, FileScan, ScanOptions, Skip, note_skip

__all__ = ["PathArg", "Stream", "scan_item"]

PathArg: TypeAlias = "str | os.PathLike[str] | IO[bytes]"
_GLOB_CHARS = re.compile(r"[*?\[]")
_GZIP_STEP = 64 << 10  # small reads from gzip, so a truncated file loses at most this much
_SNIFF_BYTES = 1 << 18
_BINARY_AFTER = 64 << 20  # this much garbage and not one text line: the file is binary
SPLIT_BYTES = 32 << 20  # a regular file this large is scanned as two halves at once
_SPLIT_WINDOW = 1 << 20  # where a record start is looked for after the middle
# Magic numbers of files that are never logs (gzip is read, not skipped).
_MAGIC = (
    (b"\x7fELF", "an ELF executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "bzip2 data"),
    (b"\xfd7zXZ\x00", "xz data"),
    (b"\x28\xb5\x2f\xfd", "zstd data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"%PDF-", "a PDF document"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\x00asm", "WebAssembly"),
    (b"\x93NUMPY", "a numpy array"),
    (b"IxF", "a FAISS index"),
    (b"\xff\xfe", "UTF-16 text; convert it with iconv -f UTF-16 -t UTF-8"),
    (b"\xfe\xff", "UTF-16 text; convert it with iconv -f UTF-16 -t UTF-8"),
)


class Stream(Protocol):
    """What the scanner reads from: a file, a GzipFile, stdin's buffer."""

    def readinto(self, buffer: Any, /) -> int | None: ...


def _magic(head: bytes) -> str | None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    return None


_CONTROL = bytes([*range(1, 9), 11, 12, *range(14, 27), *range(28, 32), 127])


def _binary(sample: bytes) -> str | None:
    """
    Why the start of a file is binary throughout, or None. NUL bytes are left out: a run of
    them is what a crash leaves in a text log, and the text after it is read.
    """
    text = sample.replace(b"\0", b"")
    if len(text) < 512:
        return None
    ctrl = len(text) - len(text.translate(None, _CONTROL))
    if ctrl * 20 > len(text):
        return "binary data (control bytes)"
    bad = text.decode("utf-8", "replace").count("\ufffd")
    if bad * 20 > len(text):
        return "binary data (not UTF-8 text)"
    return None


# -- paths ------------------------------------------------------------------------------------


def _translate(pattern: str) -> re.Pattern[str]:
    """A glob with ``**`` as a regex over whole paths (``**/`` matches zero or more folders)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body[:1] == "!" else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _walk(pattern: str) -> Iterator[str]:
    """
    Paths matching a recursive glob, walking each folder once (by device and inode): a
    ``self -> .`` link or two links into each other are not followed round.
    """
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        fixed.append(part)
    root = "/".join(fixed) or ("/" if pattern.startswith("/") else ".")
    rx = _translate(pattern if fixed or pattern.startswith("/") else "./" + pattern)
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                subdirs.append(path)
            elif rx.match(path):
                yield path
        stack.extend(reversed(subdirs))


def expand(pattern: str) -> list[str]:
    """The files a glob names, sorted; ``**`` walks folders without following loops."""
    if "**" in pattern:
        return sorted(_walk(pattern))
    return sorted(glob.glob(pattern))


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


# -- opening ----------------------------------------------------------------------------------


def wrap_stream(stream: Any) -> Stream:
    """Gunzip a stream that starts with the gzip magic; peek rather than rewind a pipe."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        magic = peek(2)[:2]
    elif stream.seekable():
        magic = stream.read(2)
        stream.seek(-len(magic), io.SEEK_CUR)
    else:
        return cast(Stream, stream)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    return cast(Stream, stream)


def _open(path: str, stack: contextlib.ExitStack) -> Stream:
    """
    Open a log for reading, gunzipping when it starts with the gzip magic; ``stack`` closes it.

    A pipe (a named FIFO, bash's ``<(command)``) cannot seek, so its magic is peeked through a
    buffer rather than read and rewound. Like ``cat`` and ``grep``, opening a named FIFO waits
    for a writer.
    """
    raw = io.FileIO(path, "rb")
    stack.enter_context(raw)
    if not raw.seekable():
        buffered = stack.enter_context(io.BufferedReader(raw))
        stream = wrap_stream(buffered)
        if stream is not buffered:
            stack.enter_context(cast(gzip.GzipFile, stream))
        return stream
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


def _skip(acc: Accumulator, path: str, reason: str, partial: bool = False) -> None:
    acc.skipped.append(note_skip(Skip(redact(path), reason, partial)))


def scan_item(
    item: PathArg, opts: ScanOptions, acc: Accumulator, seen: set[tuple[int, int]]
) -> None:
    """Scan one argument of analyze_logs: a stream, ``-``, a path or a glob."""
    if hasattr(item, "read"):
        name = getattr(item, "name", None)
        label = name if isinstance(name, str) else "<stream>"
        scan_stream(redact(label), wrap_stream(item), opts, acc)
        return
    path = os.fspath(item)
    if path == "-":
        scan_stream("<stdin>", wrap_stream(sys.stdin.buffer), opts, acc)
        return
    if _GLOB_CHARS.search(path) and not os.path.exists(path):
        found = expand(path)
        if not found:
            _skip(acc, path, "no files match")
        for p in found:
            _scan_path(p, opts, acc, seen)
        return
    _scan_path(path, opts, acc, seen)


def _scan_path(path: str, opts: ScanOptions, acc: Accumulator, seen: set[tuple[int, int]]) -> None:
    if os.path.isdir(path):
        _skip(acc, path, "is a directory")
        return
    ident = _identity(path)
    if ident is not None:
        if ident in seen:
            return  # the same file under another name (a link): read once
        seen.add(ident)
    with contextlib.ExitStack() as stack:
        try:
            stream = _open(path, stack)
        except FileNotFoundError:
            _skip(acc, path, "not found")
            return
        except PermissionError:
            _skip(acc, path, "permission denied")
            return
        except OSError as err:
            _skip(acc, path, f"cannot open: {err.strerror or err}")
            return
        if isinstance(stream, io.FileIO) and _scan_halves(redact(path), path, stream, opts, acc):
            return
        scan_stream(redact(path), stream, opts, acc)


# -- the read loop ----------------------------------------------------------------------------


class _Limited:
    """A file read up to a byte limit (the first half of a file scanned in two halves)."""

    def __init__(self, raw: io.FileIO, limit: int) -> None:
        self.raw = raw
        self.left = limit

    def readinto(self, buffer: Any, /) -> int | None:
        if self.left <= 0:
            return 0
        mv = memoryview(buffer)
        got = self.raw.readinto(mv[: min(len(mv), self.left)])
        self.left -= got or 0
        return got


@dataclass
class _Part:
    """How the scan of one stream, or of one half of a file, ended."""

    scan: FileScan | None = None
    long_lines: int = 0
    damaged: str | None = None
    text_seen: bool = False
    error: str | None = None  # a read error
    skipped: str | None = None  # the whole file is skipped, and why
    chunk: int = 0  # the read buffer's size


def _split_point(path: str, size: int, sniffed: Sniffed) -> int | None:
    """Where a record starts near the middle of the file, or None."""
    mid = size // 2
    with io.FileIO(path, "rb") as raw:
        raw.seek(mid)
        window = raw.read(_SPLIT_WINDOW)
    nl = window.find(b"\n")
    pos = nl + 1
    while nl >= 0 and pos < len(window):
        end = window.find(b"\n", pos)
        if end < 0:
            break
        line = window[pos:end].rstrip(b"\r")
        if line[:1] not in (b"", b" ", b"\t", b"\0") and (
            sniffed.format is None or parse_line(line, sniffed.table) is not None
        ):
            return mid + pos
        pos = end + 1
    return None


def _merge(acc: Accumulator, part: Accumulator, opts: ScanOptions) -> None:
    """Add the second half's figures to the first's (rows of the first half come first)."""
    acc.counts.update(part.counts)
    acc.records += part.records
    acc.lines += part.lines
    acc.bytes += part.bytes
    acc.garbage_lines += part.garbage_lines
    acc.nul_bytes += part.nul_bytes
    acc.templates_truncated |= part.templates_truncated
    for key, stats in part.templates.items():
        mine = acc.templates.get(key)
        if mine is None:
            if len(acc.templates) >= opts.max_templates:
                acc.templates_truncated = True
                continue
            acc.templates[key] = stats
            continue
        mine.absorb(stats)
    acc.match_count += part.match_count
    room = opts.max_examples - len(acc.match_examples)
    acc.match_examples.extend(part.match_examples[: max(room, 0)])


def _cores() -> int:
    """The cores this process may run on (its affinity, where the system tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _spare_core() -> bool:
    """
    Whether a second thread would get a core of its own, or a share of one: not when every
    core is busy with other threads already (the library lives in the host's process, and on a
    machine that busy a second thread only adds hand-offs).

    Read from the threads ready to run at this moment (``/proc/loadavg``'s fourth field, which
    counts the reading thread too), else from the 1-minute load average. The average alone lags
    a minute behind: the scans of the last minute, this process's own among them, would keep
    the next one from splitting, and a report run every few seconds would never split. One
    other ready thread (a daemon waking, another process's burst) does not stop the split: a
    single reading catches such threads often, and with one other busy thread on two cores the
    halves still finish sooner than one pass (0.19 s against 0.22 s on the 512 MB benchmark
    log).
    """
    cores = _cores()
    try:
        with open("/proc/loadavg", "rb") as f:
            return _idle_besides_us(f.read(), cores)
    except (OSError, ValueError, IndexError):
        try:
            return cores - os.getloadavg()[0] >= 1.0
        except (AttributeError, OSError):
            return False


def _idle_besides_us(loadavg: bytes, cores: int) -> bool:
    """From ``/proc/loadavg`` ("0.52 0.58 0.59 2/345 4711"): whether the threads ready to run,
    this one aside, leave a core that is not busy with another thread."""
    ready = int(loadavg.split()[3].split(b"/")[0])
    return cores >= 2 and ready - 1 < cores


# The second half's chunks are numbered from here: a record's order (chunk << 32 | line) then
# comes after every record of the first half.
_SECOND_HALF = 1 << 24


def _scan_halves(name: str, path: str, raw: io.FileIO, opts: ScanOptions, acc: Accumulator) -> bool:
    """
    Scan a large regular file as two halves at once, the second on a thread of its own
    (numpy and the reads release the GIL: two cores share the work). False when the file is
    not split (small, a window asked for, no idle second core, no record start found near the
    middle).
    """
    try:
        size = os.fstat(raw.fileno()).st_size
    except OSError:
        return False
    if size < SPLIT_BYTES or opts.since is not None or not _spare_core():
        return False
    # The same checks and sniff as the first read of scan_stream (NUL bytes end lines there).
    raw_head = raw.read(min(_SNIFF_BYTES, max(opts.chunk_size, 1024)))
    raw.seek(0)
    head = raw_head.replace(b"\0", b"\n")
    if (
        b"\n" not in head
        or _magic(raw_head[:16]) is not None
        or _binary(head[: 1 << 16]) is not None
    ):
        return False
    sniffed = sniff(head)
    try:
        split = _split_point(path, size, sniffed)
    except OSError:
        return False
    if split is None:
        return False
    second = Accumulator(merged_into=acc.templates)
    result: list[_Part | BaseException] = []

    def run() -> None:
        try:
            with io.FileIO(path, "rb") as raw2:
                raw2.seek(split)
                part = _scan_part(name, raw2, opts, second, sniffed, _SECOND_HALF)
            result.append(part)
        except BaseException as err:  # handed to the caller's thread below
            result.append(err)

    worker = threading.Thread(target=run, name="safla_diag-logs-half", daemon=True)
    worker.start()
    before = _before(acc)
    try:
        first = _scan_part(name, _Limited(raw, split), opts, acc, sniffed)
    finally:
        worker.join()
    other = result[0] if result else RuntimeError("the second half's scan did not finish")
    if isinstance(other, BaseException):
        raise other
    if first.scan is not None and other.scan is not None and not other.scan.flushes:
        # The second half's keys join the first's (in the kernel: its memo into the first's),
        # and one fold of them all gives the file's rows as a single pass does; no key is
        # folded twice.
        first.scan.absorb(other.scan)
        _merge(acc, second, opts)
    else:
        # The second half folded keys of its own already (more than a file keeps at once):
        # the first half's rows first, then those, then its last keys into the file's rows.
        if first.scan is not None:
            first.scan.finish()
        _merge(acc, second, opts)
        if other.scan is not None:
            other.scan.acc = acc
            other.scan.finish()
    first.long_lines += other.long_lines
    first.text_seen |= other.text_seen
    first.error = first.error or other.error
    first.damaged = first.damaged or other.damaged
    _finish(name, first, acc, before)
    return True


def _before(acc: Accumulator) -> tuple[int, int, int, int]:
    return (acc.records, acc.garbage_lines, acc.nul_bytes, acc.lines)


def scan_stream(name: str, stream: Stream, opts: ScanOptions, acc: Accumulator) -> None:
    """
    Scan one binary stream (a file, a gzip file, stdin) into ``acc``.

    Problems are recorded in ``acc.skipped`` and never raised: a known binary magic or nothing
    but garbage skips the file; garbage lines inside a text log are skipped and counted; a
    truncated or corrupt gzip keeps what was read before the damage; over-long lines are skipped
    and counted.
    """
    before = _before(acc)
    _finish(name, _scan_part(name, stream, opts, acc), acc, before)


def _finish(name: str, part: _Part, acc: Accumulator, before: tuple[int, int, int, int]) -> None:
    """Fold a file's scan into ``acc``: its template keys, skip notes, the file list."""
    if part.skipped is not None:
        _skip(acc, name, part.skipped)
        return
    if part.error is not None:
        if part.scan is not None:
            part.scan.finish()  # the records read before the error keep their templates' counts
        _skip(acc, name, part.error, partial=part.scan is not None)
        return
    garbage = acc.garbage_lines - before[1]
    nuls = acc.nul_bytes - before[2]
    if part.scan is not None:
        part.scan.finish()
        if acc.records == before[0] and (garbage or nuls) and not part.text_seen:
            acc.lines = before[3]
            acc.garbage_lines, acc.nul_bytes = before[1], before[2]
            _skip(acc, name, "binary data (no text lines)")
            return
    acc.files.append(name)
    if garbage or nuls:
        kinds = [f"{nuls} NUL byte(s)"] if nuls else []
        kinds += [f"{garbage} binary line(s)"] if garbage else []
        _skip(acc, name, f"garbage skipped: {', '.join(kinds)}", partial=True)
    if part.long_lines:
        _skip(
            acc,
            name,
            f"{part.long_lines} line(s) longer than {part.chunk >> 10} KiB skipped",
            partial=True,
        )
    if part.damaged:
        _skip(acc, name, part.damaged, partial=part.scan is not None)


def _scan_part(
    name: str,
    stream: Stream,
    opts: ScanOptions,
    acc: Accumulator,
    sniffed: Sniffed | None = None,
    first_chunk: int = 0,
) -> _Part:
    """
    The read loop over one stream into ``acc``. With ``sniffed`` the stream is the second half
    of a file whose start was sniffed already (no binary checks, the same format), its chunks
    numbered from ``first_chunk`` (so that its records come after the first half's).
    """
    chunk = max(opts.chunk_size, 1024)
    buf = bytearray(chunk + PAD)
    mv = memoryview(buf)
    step = _GZIP_STEP if isinstance(stream, gzip.GzipFile) else None
    carry = 0
    part = _Part(chunk=chunk)
    scan: FileScan | None = None
    dropping = False
    magic: str | None = None
    eof = False
    total = 0
    records_before = acc.records
    try:
        while not eof:
            end = fresh = carry
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
                part.damaged = (
                    f"damaged or truncated compressed data ({err}); analysed what was read"
                )
            if scan is None and fresh == 0:
                magic = _magic(bytes(buf[:16]))  # before NUL bytes become line ends
            if end > fresh and buf.find(b"\0", fresh, end) >= 0:
                # NUL runs (a crash's zeroed blocks) end lines here, before the line-length
                # check, so a run longer than the buffer never hides the record glued to it.
                nuls = buf.count(b"\0", fresh, end)
                acc.nul_bytes += nuls
                buf[fresh:end] = buf[fresh:end].replace(b"\0", b"\n")
                acc.lines -= nuls
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
                if sniffed is None:
                    if magic is not None:
                        part.skipped = f"binary data ({magic})"
                        return part
                    why = _binary(bytes(buf[: min(end, 1 << 16)]))
                    if why is not None:
                        part.skipped = why
                        return part
                    sniffed = sniff(bytes(buf[: min(end, _SNIFF_BYTES)]))
                    if opts.since is not None and not sniffed.has_timestamps:
                        part.skipped = "no timestamps found, so 'since' cannot apply"
                        return part
                scan = part.scan = FileScan(name, sniffed, opts, acc)
                scan.chunk_no = first_chunk
            if eof:
                if buf[end - 1] != 10:
                    buf[end] = 10
                    end += 1
                cut = end
            else:
                nl = buf.rfind(b"\n", 0, end)
                if nl < 0:
                    part.long_lines += 1
                    dropping = True
                    carry = 0
                    continue
                cut = nl + 1
            consumed = scan.process(buf, cut, eof)
            part.text_seen = part.text_seen or acc.records > records_before
            if not part.text_seen and total > _BINARY_AFTER:
                break
            rest = end - consumed
            if rest:
                buf[0:rest] = buf[consumed:end]
            carry = rest
    except OSError as err:
        part.error = f"read error: {err.strerror or err}"
    finally:
        acc.bytes += total
    return part
