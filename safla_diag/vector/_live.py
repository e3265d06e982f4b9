"""
The live index on disk: its paths, its lock, start-up recovery, the commit, and verified reads.

On disk, in ``data_dir``::

    vector_index.faiss                  the index (only ever replaced whole, by os.replace)
    vector_index.faiss.manifest.json    the manifest: the commit point of the last save
    vector_index.faiss.manifest.next.json   only while a save or restore is in flight
    vector_index.faiss.corrupt-<time>   a damaged index moved aside by a restore
    vector_index.faiss.replaced-<time>  a healthy index moved aside by a restore

A save writes the data into an O_EXCL temp file (hashing while faiss streams it), fsyncs it, writes
the new manifest as ``.next`` (durably), replaces the data file, then renames ``.next`` over the
manifest. A crash at any moment leaves the data file matching either the manifest (old) or ``.next``
(new); the next start rolls forward or back, and a diagnosis accepts either.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import IndexCorruptionError, RecoveryError
from .._redact import redact
from ._fs import (
    CHUNK,
    copy_to_new_file,
    folder_lock,
    fsync_dir,
    hash_file,
    make_dirs,
    new_hasher,
    open_exclusive,
    remove_orphans,
    temp_path,
    write_all,
)
from ._manifest import Manifest, ManifestError

__all__ = ["LiveIndex", "Manifests", "first_line", "stamp"]

logger = logging.getLogger("safla_diag.vector")

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def stamp(now: float | None = None) -> str:
    """A UTC time with microseconds, as names on disk spell it (``20240611T120000.000000Z``)."""
    now = time.time() if now is None else now
    micro = int((now % 1) * 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{micro:06d}Z"


def first_line(text: str) -> str:
    """The first non-blank line of ``text`` (faiss's errors carry a C++ stack below it)."""
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


class Manifests(NamedTuple):
    """The manifests beside the live index, read once."""

    current: Manifest | None
    pending: Manifest | None
    problem: str | None  # why ``current`` is unusable, when it exists but cannot be used

    @property
    def candidates(self) -> list[Manifest]:
        """The manifests the live file may match: the committed one first, then the next one."""
        return [m for m in (self.current, self.pending) if m is not None]

    @property
    def generation(self) -> int:
        """The highest generation on record (0 before the first save)."""
        return max((m.generation for m in self.candidates), default=0)


class LiveIndex:
    """
    The live index file and its manifest in ``data_dir``: the only code that changes them.

    Args:
        data_dir: The folder of the live index.
        backup_dir: The backup folder (only to clean up unfinished backups at start-up).
        index_file: The index's file name inside ``data_dir``.
    """

    def __init__(self, data_dir: Path, backup_dir: Path, index_file: str) -> None:
        self.data_dir = data_dir
        self.backup_dir = backup_dir
        self.index_file = index_file
        self.index_path = data_dir / index_file
        self.manifest_path = data_dir / f"{index_file}.manifest.json"
        self.next_manifest_path = data_dir / f"{index_file}.manifest.next.json"
        self._thread_lock = threading.RLock()

    # ------------------------------------------------------------------ locking and start-up

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this process's and every other process's writer lock on the index."""
        make_dirs(self.data_dir)
        with self._thread_lock, folder_lock(self.data_dir, self.index_file):
            yield

    def recover_on_start(self) -> None:
        """Remove orphaned temp files; finish (or undo) a save that was interrupted."""
        if not self.data_dir.is_dir():
            return
        try:
            with (
                self._thread_lock,
                folder_lock(self.data_dir, self.index_file, blocking=False) as mine,
            ):
                if not mine:
                    # A writer is at work right now (perhaps in another container, whose pids we
                    # cannot see): its temp files are not orphans. The next start cleans up.
                    return
                for path in remove_orphans(self.data_dir, base=self.index_file):
                    logger.info("removed an orphaned temp file %s", redact(str(path)))
                for path in remove_orphans(self.backup_dir, base=self.index_file):
                    logger.info("removed an unfinished backup %s", redact(str(path)))
                self._settle_next_manifest()
        except OSError as err:  # a read-only mount: checking still works
            logger.debug("start-up clean-up skipped: %s", redact(str(err)))

    def _settle_next_manifest(self) -> None:
        try:
            pending = Manifest.read(self.next_manifest_path)
        except ManifestError:
            self.next_manifest_path.unlink(missing_ok=True)
            return
        if pending is None:
            return
        if self.file_matches(self.index_path, pending, self.index_file):
            os.replace(self.next_manifest_path, self.manifest_path)
            logger.warning("completed an interrupted save (generation %d)", pending.generation)
        else:
            self.next_manifest_path.unlink()
            logger.info("discarded the manifest of an interrupted save; the old index stands")
        fsync_dir(self.data_dir)

    # ------------------------------------------------------------------------- reading

    @staticmethod
    def file_matches(path: Path, manifest: Manifest, name: str) -> bool:
        """Whether ``path`` has the size and checksum ``manifest`` lists for ``name``."""
        entry = manifest.files.get(name)
        if entry is None:
            return False
        try:
            if path.stat().st_size != entry["size"]:
                return False
            return hash_file(path, manifest.algorithm) == (entry["size"], entry["checksum"])
        except OSError:
            return False

    def manifests(self) -> Manifests:
        """Read the manifest and the next manifest (a damaged next manifest counts as none)."""
        problem = None
        try:
            current = Manifest.read(self.manifest_path)
        except ManifestError as err:
            current, problem = None, str(err)
        except OSError as err:
            current, problem = None, f"manifest cannot be read: {err.strerror or err}"
        try:
            pending = Manifest.read(self.next_manifest_path)
        except (ManifestError, OSError):
            pending = None
        return Manifests(current, pending, problem)

    def cheap_ok(self) -> bool:
        """Whether the live file matches one of its manifests (size and checksum)."""
        return any(
            self.file_matches(self.index_path, m, self.index_file)
            for m in self.manifests().candidates
        )

    def open(self) -> int:
        """Open the live index for reading (an fd); raises FileNotFoundError."""
        return os.open(self.index_path, os.O_RDONLY | _O_CLOEXEC)

    def same_file(self, fd: int) -> bool:
        """Whether the name still points at the inode ``fd`` holds (files are only replaced)."""
        st, held = os.stat(self.index_path), os.fstat(fd)
        return (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev)

    @staticmethod
    def read_verified(fd: int, algorithm: str, expected: tuple[int, str]) -> Any:
        """Deserialise from ``fd`` with the byte limit, hashing as faiss reads; compare at the end."""
        from . import _faiss

        h = new_hasher(algorithm)
        total = 0

        def read(n: int) -> bytes:
            nonlocal total
            data = os.read(fd, n)
            h.update(data)
            total += len(data)
            return data

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            index = _faiss.read_index_stream(read, byte_limit=expected[0] + 1024 * 1024)
        except (RuntimeError, MemoryError) as err:
            raise IndexCorruptionError(
                f"faiss cannot read the index although its checksum verifies (written by another "
                f"faiss version, or the manifest was rewritten over damage): {first_line(str(err))}"
            ) from err
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
            total += len(chunk)
        if (total, h.hexdigest()) != expected:
            raise IndexCorruptionError("the index file changed while it was being loaded")
        return index

    # ------------------------------------------------------------------------- writing

    def write(
        self,
        stream: Callable[[Callable[[bytes], int]], None],
        algorithm: str,
        make_manifest: Callable[[int, dict[str, dict[str, Any]]], Manifest],
    ) -> tuple[int, int]:
        """
        The write half of a save: stream the new index into a temp file and commit it.

        Args:
            stream: Called with ``write(block) -> int``; writes the whole index through it.
            algorithm: The checksum algorithm of the new manifest.
            make_manifest: ``(generation, files) -> Manifest`` for the new index.

        Returns:
            (generation, size in bytes).
        """
        with self.locked():
            generation = self.manifests().generation + 1
            tmp = temp_path(self.index_path)
            fd = open_exclusive(tmp)
            try:
                h = new_hasher(algorithm)
                written = 0

                def write(block: bytes) -> int:
                    nonlocal written
                    h.update(block)
                    n = write_all(fd, block)
                    written += n
                    return n

                try:
                    stream(write)
                    os.fsync(fd)
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                if size != written:
                    raise OSError(
                        errno.EIO, f"short write: {size} of {written} bytes on disk", str(tmp)
                    )
                files = {self.index_file: {"size": size, "checksum": h.hexdigest()}}
                self.commit(tmp, make_manifest(generation, files))
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        return generation, size

    def install(self, source: Path, manifest: Manifest, *, restored_from: str) -> str | None:
        """
        Copy a verified file (a backup's index) into place under a new generation.

        Returns:
            Why not (the copy does not match ``manifest``), or None when done.
        """
        name = str(manifest.body.get("index_file", self.index_file))
        entry = manifest.files[name]
        with self.locked():
            healthy_now = self.cheap_ok()
            tmp = temp_path(self.index_path)
            try:
                fd_in = os.open(source, os.O_RDONLY | _O_CLOEXEC)
            except OSError as err:
                return f"its index file cannot be read: {err.strerror or err}"
            try:
                on_disk = copy_to_new_file(fd_in, tmp)
                size, digest = hash_file(tmp, manifest.algorithm)
                if (size, digest) != (entry["size"], entry["checksum"]):
                    tmp.unlink()
                    return (
                        f"its {manifest.algorithm} checksum does not match its manifest (damaged)"
                    )
                if on_disk != size:
                    tmp.unlink()
                    raise RecoveryError(f"short write while restoring ({on_disk} of {size} bytes)")
                new = manifest.evolve(
                    generation=self.manifests().generation + 1,
                    files={self.index_file: dict(entry)},
                    index_file=self.index_file,
                    restored_from=restored_from,
                    restored_at=time.time(),
                )
                suffix = "replaced" if healthy_now else "corrupt"
                aside = self.data_dir / f"{self.index_file}.{suffix}-{stamp()}"
                self.commit(tmp, new, aside=aside)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            finally:
                os.close(fd_in)
        return None

    def commit(self, tmp: Path, manifest: Manifest, *, aside: Path | None = None) -> None:
        """Make ``tmp`` the live index under ``manifest``: next manifest, replace, commit."""
        if aside is not None and self.index_path.exists():
            # Kept before anything changes: if it cannot be kept, nothing has happened.
            try:
                os.link(self.index_path, aside)  # the live name never disappears
            except OSError:
                try:
                    shutil.copy2(self.index_path, aside)
                except BaseException:
                    with contextlib.suppress(OSError):
                        aside.unlink()
                    raise
        try:
            manifest.write(self.next_manifest_path)  # durable before the data file changes
            os.replace(tmp, self.index_path)
        except BaseException:
            if aside is not None:  # the live index was not replaced: the spare name goes
                with contextlib.suppress(OSError):
                    aside.unlink()
            raise
        fsync_dir(self.data_dir)
        os.replace(self.next_manifest_path, self.manifest_path)
        fsync_dir(self.data_dir)
