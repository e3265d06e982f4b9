"""
Durable file primitives: hashing, exclusive temp files, atomic writes, fsync of folders, the
folder lock and the removal of orphaned temp files.

Nothing here imports faiss or knows about manifests. Files are only ever written as an ``O_EXCL``
temporary file in the destination's folder, flushed, fsynced, size-checked and ``os.replace``d,
then the folder is fsynced: a file is never rewritten in place (a reader that has it memory-mapped
would die of SIGBUS).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from .._files import NotRegularFile, open_regular

__all__ = [
    "ALGORITHMS",
    "CHUNK",
    "DEFAULT_ALGORITHM",
    "Hasher",
    "NotRegularFile",
    "atomic_write_bytes",
    "copy_to_new_file",
    "folder_lock",
    "fsync_dir",
    "hash_fd",
    "hash_file",
    "make_dirs",
    "new_hasher",
    "open_exclusive",
    "open_regular",
    "read_regular",
    "remove_orphans",
    "temp_path",
    "write_all",
    "write_new_file",
]

DEFAULT_ALGORITHM = "xxh3_128"
ALGORITHMS = ("xxh3_128", "sha256")
CHUNK = 8 * 1024 * 1024

_TEMP = re.compile(r"^\.(?P<base>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")


class Hasher(Protocol):
    """What hashlib and xxhash objects have in common."""

    def update(self, data: bytes | memoryview | bytearray, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    """
    Return a new hasher for ``algorithm`` (``xxh3_128`` or ``sha256``).

    Raises:
        ValueError: For an unknown algorithm.
    """
    if algorithm == "xxh3_128":
        from .._lazy import import_optional

        xxhash = import_optional("xxhash")
        h: Hasher = xxhash.xxh3_128()
        return h
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}; expected one of {ALGORITHMS}")


def hash_fd(
    fd: int,
    algorithm: str,
    *,
    sink: Callable[[memoryview], object] | None = None,
    start: int | None = None,
) -> tuple[int, str]:
    """
    Hash an open file to its end, from ``start`` (or its current position).

    Plain reads, not mmap: a file that shrinks under an mmap kills the reader with SIGBUS.

    Returns:
        (bytes read, hex digest).
    """
    if start is not None:
        os.lseek(fd, start, os.SEEK_SET)
    h = new_hasher(algorithm)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
        while n := f.readinto(buf):
            chunk = view[:n]
            h.update(chunk)
            if sink is not None:
                sink(chunk)
            total += n
    return total, h.hexdigest()


def copy_to_new_file(
    fd_in: int, dest: Path, *, progress: Callable[[int], object] | None = None
) -> int:
    """
    Copy an open file (from its start) into a new file ``dest`` (O_EXCL) and fsync it.

    The copy runs in the kernel (sendfile) where it can; the caller verifies ``dest`` by hashing
    it afterwards, which checks both the source and the copy against the manifest.

    Args:
        fd_in: The source, open for reading.
        dest: The new file.
        progress: Called with the bytes copied so far, after each chunk.

    Returns:
        The size on disk after fsync.
    """
    fd_out = open_exclusive(dest)
    try:
        offset = 0
        try:
            while True:
                sent = os.sendfile(fd_out, fd_in, offset, CHUNK)
                if sent == 0:
                    break
                offset += sent
                if progress is not None:
                    progress(offset)
        except (AttributeError, OSError) as err:
            if offset or (
                isinstance(err, OSError) and err.errno not in (errno.EINVAL, errno.ENOSYS)
            ):
                raise
            hash_fd(fd_in, DEFAULT_ALGORITHM, sink=lambda chunk: write_all(fd_out, chunk), start=0)
        os.fsync(fd_out)
        return os.fstat(fd_out).st_size
    finally:
        os.close(fd_out)


def hash_file(path: str | os.PathLike[str], algorithm: str = DEFAULT_ALGORITHM) -> tuple[int, str]:
    """Return (size, hex digest) of a whole regular file, read in chunks."""
    fd = open_regular(path)
    try:
        return hash_fd(fd, algorithm)
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike[str], *, cap: int) -> bytes:
    """
    The bytes of a small regular file, at most ``cap`` of them.

    Raises:
        NotRegularFile: When it is not a regular file.
        OSError: When it cannot be read, or holds more than ``cap`` bytes (EFBIG).
    """
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > cap:
            raise OSError(errno.EFBIG, f"{os.fsdecode(path)} is larger than {cap} bytes")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(CHUNK, cap + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:  # it grew while being read
                raise OSError(errno.EFBIG, f"{os.fsdecode(path)} is larger than {cap} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    """A unique temporary name beside ``final``, recognisable (and removable) as an orphan later."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def open_exclusive(path: Path) -> int:
    """Create ``path`` for writing; fails if it exists (O_EXCL), so two writers never share it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o644)


def fsync_dir(folder: Path) -> None:
    """fsync a folder so that renames and creations in it are durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError as err:  # pragma: no cover - some filesystems refuse fsync on folders
        if err.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def make_dirs(folder: Path) -> None:
    """
    Create ``folder`` and any missing parents durably: each new folder's parent is fsynced.

    Without that, a power cut soon after the first save can lose the new folder's entry in its
    parent, and with it the index and the manifest that were fsynced inside it.
    """
    missing: list[Path] = []
    walk = folder
    while not walk.is_dir():
        missing.append(walk)
        if walk.parent == walk:  # pragma: no cover - the root always exists
            break
        walk = walk.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            if not new.is_dir():
                raise
            continue  # another writer created it (and fsyncs its parent)
        fsync_dir(new.parent)


def write_all(fd: int, data: bytes | memoryview) -> int:
    """Write all of ``data`` to ``fd`` (os.write may write less than asked)."""
    view = memoryview(data)
    total = 0
    while total < len(view):
        total += os.write(fd, view[total:])
    return total


def write_new_file(path: Path, data: bytes) -> None:
    """
    Create ``path`` (O_EXCL) holding ``data``, fsynced, its size on disk checked.

    Raises:
        OSError: When the disk refuses, or fewer bytes reached it than were written (EIO).
    """
    fd = open_exclusive(path)
    try:
        write_all(fd, data)
        os.fsync(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size != len(data):
        raise OSError(errno.EIO, f"short write: {size} of {len(data)} bytes", str(path))


def atomic_write_bytes(final: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``final`` atomically and durably (temp, fsync, size check, replace)."""
    tmp = temp_path(final)
    try:
        write_new_file(tmp, data)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(final.parent)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path, *, base: str | None = None) -> list[Path]:
    """
    Remove temporary files and folders left by writers that died (their pid is gone).

    Args:
        folder: Where to look.
        base: Only the temporary files of ``base`` and of its companions (``base.*``): another
            index in the same folder has its own lock, and its writer may be alive in a process
            whose pid we cannot see (another container).

    Returns:
        What was removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        if base is not None and m["base"] != base and not m["base"].startswith(base + "."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


@contextlib.contextmanager
def folder_lock(
    folder: Path, name: str, *, blocking: bool = True, reader: bool = False
) -> Iterator[bool]:
    """
    Hold an exclusive advisory lock (flock) on ``folder/.<name>.lock`` for writers.

    The kernel releases it when the holder dies, so a kill -9 never leaves it stuck. With
    ``blocking=False`` it yields False at once when another process holds it.

    A ``reader`` (a backup) may find the folder read-only (a sidecar with a read-only mount): it
    then locks an existing lock file opened read-only (flock needs no write access), or, when
    there is none, goes on unlocked; what it reads is verified against the manifest anyway.
    """
    path = folder / f".{name}.lock"
    cloexec = getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o644)
    except OSError as err:
        if not reader or err.errno not in _READ_ONLY:
            raise
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | cloexec)
        except OSError:
            yield True
            return
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            yield True
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
