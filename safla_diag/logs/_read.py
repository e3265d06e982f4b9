"""
Reading logs: paths and globs (each file once, symlink loops not followed), gzip and pipes, and
the read loop that feeds the chunk scanner.
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
import zlib
from collections.abc import Iterator
from typing import IO, Any, Protocol, TypeAlias, cast

from .._redact import redact
from ._formats import sniff
from ._scan import PAD, Accumulator, FileScan, ScanOptions, Skip, note_skip

__all__ = ["PathArg", "Stream", "scan_item"]

PathArg: TypeAlias = "str | os.PathLike[str] | IO[bytes]"
_GLOB_CHARS = re.compile(r"[*?\[]")
_GZIP_STEP = 64 << 10  # small reads from gzip, so a truncated file loses at most this much
_SNIFF_BYTES = 1 << 18
_BINARY_AFTER = 64 << 20  # this much garbage and not one text line: the file is binary
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
        scan_stream(redact(path), stream, opts, acc)


# -- the read loop ----------------------------------------------------------------------------


def scan_stream(name: str, stream: Stream, opts: ScanOptions, acc: Accumulator) -> None:
    """
    Scan one binary stream (a file, a gzip file, stdin) into ``acc``.

    Problems are recorded in ``acc.skipped`` and never raised: a known binary magic or nothing
    but garbage skips the file; garbage lines inside a text log are skipped and counted; a
    truncated or corrupt gzip keeps what was read before the damage; over-long lines are skipped
    and counted.
    """
    chunk = max(opts.chunk_size, 1024)
    buf = bytearray(chunk + PAD)
    mv = memoryview(buf)
    step = _GZIP_STEP if isinstance(stream, gzip.GzipFile) else None
    carry = 0
    scan: FileScan | None = None
    long_lines = 0
    dropping = False
    damaged: str | None = None
    eof = False
    total = 0
    before = (acc.records, acc.garbage_lines, acc.nul_bytes, acc.lines)
    text_seen = False
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
                damaged = f"damaged or truncated compressed data ({err}); analysed what was read"
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
                what = _magic(bytes(buf[:16]))
                if what is not None:
                    _skip(acc, name, f"binary data ({what})")
                    return
                why = _binary(bytes(buf[: min(end, 1 << 16)]))
                if why is not None:
                    _skip(acc, name, why)
                    return
                sniffed = sniff(bytes(buf[: min(end, _SNIFF_BYTES)]))
                if opts.since is not None and not sniffed.has_timestamps:
                    _skip(acc, name, "no timestamps found, so 'since' cannot apply")
                    return
                scan = FileScan(name, sniffed, opts, acc)
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
            text_seen = text_seen or acc.records > before[0]
            if not text_seen and total > _BINARY_AFTER:
                break
            rest = end - consumed
            if rest:
                buf[0:rest] = buf[consumed:end]
            carry = rest
    except OSError as err:
        _skip(acc, name, f"read error: {err.strerror or err}", partial=scan is not None)
        return
    finally:
        acc.bytes += total
    garbage = acc.garbage_lines - before[1]
    nuls = acc.nul_bytes - before[2]
    if scan is not None:
        scan.finish()
        if acc.records == before[0] and (garbage or nuls) and not text_seen:
            acc.lines = before[3]
            acc.garbage_lines, acc.nul_bytes = before[1], before[2]
            _skip(acc, name, "binary data (no text lines)")
            return
    acc.files.append(name)
    if garbage or nuls:
        kinds = [f"{nuls} NUL byte(s)"] if nuls else []
        kinds += [f"{garbage} binary line(s)"] if garbage else []
        _skip(acc, name, f"garbage skipped: {', '.join(kinds)}", partial=True)
    if long_lines:
        _skip(
            acc, name, f"{long_lines} line(s) longer than {chunk >> 10} KiB skipped", partial=True
        )
    if damaged:
        _skip(acc, name, damaged, partial=scan is not None)
