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
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    open_regular,
    remove_orphans,
    temp_path,
    write_all,
    write_new_file,
)
from ._manifest import Manifest, ManifestError

Progress = Callable[[int, int], object]

__all__ = [
    "LiveIndex",
    "Manifests",
    "Progress",
    "Ticker",
    "first_line",
    "sidecar_names",
    "stamp",
]

logger = logging.getLogger("safla_diag.vector")


def stamp(now: float | None = None) -> str:
    """A UTC time with microseconds, as names on disk spell it (``20240611T120000.000000Z``)."""
    now = time.time() if now is None else now
    micro = int((now % 1) * 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{micro:06d}Z"


def first_line(text: str) -> str:
    """The first non-blank line of ``text`` (faiss's errors carry a C++ stack below it)."""
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def sidecar_names(sidecars: Sequence[str], index_file: str) -> tuple[str, ...]:
    """
    The declared sidecars, checked: plain file names in the data folder, none of ours.

    Raises:
        ValueError: For a path, a hidden name, the index's own name or a string given alone.
    """
    if isinstance(sidecars, str):
        raise ValueError("sidecars must be a sequence of file names, not one string")
    for name in sidecars:
        if not isinstance(name, str) or not name or "/" in name or os.sep in name:
            raise ValueError(f"a sidecar must be a plain file name, got {name!r}")
        if name.startswith((".", f"{index_file}.")) or name == index_file:
            raise ValueError(f"{name!r} cannot be a sidecar")
    return tuple(dict.fromkeys(sidecars))


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

    @property
    def index_id(self) -> str | None:
        """The id the index got at its first save (kept by saves and restores), if any."""
        return next(
            (str(m.body["index_id"]) for m in self.candidates if m.body.get("index_id")), None
        )


class LiveIndex:
    """
    The live index file and its manifest in ``data_dir``: the only code that changes them.

    Args:
        data_dir: The folder of the live index.
        backup_dir: The backup folder (only to clean up unfinished backups at start-up).
        index_file: The index's file name inside ``data_dir``.
        sidecars: Names of files in ``data_dir`` that belong to the index (its bundle).
        keep_aside: How many ``.replaced-*`` (and, apart, ``.corrupt-*``) copies to keep.
    """

    def __init__(
        self,
        data_dir: Path,
        backup_dir: Path,
        index_file: str,
        *,
        keep_aside: int = 5,
        sidecars: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.sidecars = sidecars
        self.keep_aside = keep_aside
        self.backup_dir = backup_dir
        self.index_file = index_file
        self.index_path = data_dir / index_file
        self.manifest_path = data_dir / f"{index_file}.manifest.json"
        self.next_manifest_path = data_dir / f"{index_file}.manifest.next.json"
        self._thread_lock = threading.RLock()

    # ------------------------------------------------------------------ locking and start-up

    @contextlib.contextmanager
    def locked(self, *, reader: bool = False) -> Iterator[None]:
        """
        Hold this process's and every other process's writer lock on the index.

        A ``reader`` (a backup) needs no write access to the data folder.
        """
        if not reader:
            make_dirs(self.data_dir)
        with self._thread_lock, folder_lock(self.data_dir, self.index_file, reader=reader):
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
                # First the interrupted commit: its staged files are what it rolls forward from.
                self._settle_next_manifest()
                for base in (self.index_file, *self.sidecars):
                    for path in remove_orphans(self.data_dir, base=base):
                        logger.info("removed an orphaned temp file %s", redact(str(path)))
                for path in remove_orphans(self.backup_dir, base=self.index_file):
                    logger.info("removed an unfinished backup %s", redact(str(path)))
        except OSError as err:  # a read-only mount: checking still works
            logger.debug("start-up clean-up skipped: %s", redact(str(err)))

    def _settle_next_manifest(self) -> None:
        """
        Finish a commit a crash interrupted: once the next manifest is durable the commit is
        decided, and each file is either already in place or still staged beside it.
        """
        try:
            pending = Manifest.read(self.next_manifest_path)
        except ManifestError:
            self.next_manifest_path.unlink(missing_ok=True)
            return
        if pending is None:
            return
        staged = pending.body.get("staged") or {}
        for name in pending.files:
            live = self.data_dir / name
            if self.file_matches(live, pending, name):
                continue
            tmp = self.data_dir / str(staged.get(name, ""))
            if name in staged and self.file_matches(tmp, pending, name):
                os.replace(tmp, live)
                continue
            self.next_manifest_path.unlink()
            fsync_dir(self.data_dir)
            logger.info("discarded the manifest of an interrupted save; the old index stands")
            return
        fsync_dir(self.data_dir)
        self._finish_commit()
        logger.warning("completed an interrupted save (generation %d)", pending.generation)

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
        """Whether the live bundle (index and sidecars) matches one of its manifests, whole."""
        return any(
            self.index_file in m.files
            and all(self.file_matches(self.data_dir / name, m, name) for name in m.files)
            for m in self.manifests().candidates
        )

    def open(self) -> int:
        """Open the live index for reading (an fd); raises OSError (NotRegularFile for a FIFO...)."""
        return open_regular(self.index_path)

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
        *,
        sidecars: Mapping[str, bytes] | None = None,
        keep_old: bool = False,
    ) -> tuple[int, int]:
        """
        The write half of a save: stage the new index (and sidecars), then commit them together.

        Args:
            stream: Called with ``write(block) -> int``; writes the whole index through it.
            algorithm: The checksum algorithm of the new manifest.
            make_manifest: ``(generation, files) -> Manifest`` for the new bundle.
            sidecars: New contents of sidecar files; a declared sidecar not given keeps its
                current bytes (checksummed into the new manifest) when it exists.
            keep_old: Keep the files being replaced as ``.replaced-*`` / ``.corrupt-*``.

        Returns:
            (generation, size of the index in bytes).
        """
        sidecars = dict(sidecars or {})
        with self.locked():
            generation = self.manifests().generation + 1
            staged: dict[str, Path] = {}
            try:
                files = {self.index_file: self._stage_stream(stream, algorithm, staged)}
                for name in self.sidecars:
                    if name in sidecars:
                        files[name] = self._stage_bytes(name, sidecars[name], algorithm, staged)
                    elif (self.data_dir / name).exists():
                        size, digest = hash_file(self.data_dir / name, algorithm)
                        files[name] = {"size": size, "checksum": digest}
                healthy = keep_old and self.cheap_ok()
                self.commit(
                    staged,
                    make_manifest(generation, files),
                    aside=healthy if keep_old else None,
                )
            except BaseException:
                for tmp in staged.values():
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                raise
        return generation, int(files[self.index_file]["size"])

    def _stage_stream(
        self,
        stream: Callable[[Callable[[bytes], int]], None],
        algorithm: str,
        staged: dict[str, Path],
    ) -> dict[str, Any]:
        tmp = staged[self.index_file] = temp_path(self.index_path)
        fd = open_exclusive(tmp)
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
            raise OSError(errno.EIO, f"short write: {size} of {written} bytes on disk", str(tmp))
        return {"size": size, "checksum": h.hexdigest()}

    def _stage_bytes(
        self, name: str, data: bytes, algorithm: str, staged: dict[str, Path]
    ) -> dict[str, Any]:
        tmp = staged[name] = temp_path(self.data_dir / name)
        write_new_file(tmp, data)
        h = new_hasher(algorithm)
        h.update(data)
        return {"size": len(data), "checksum": h.hexdigest()}

    def install(
        self,
        folder: Path,
        manifest: Manifest,
        *,
        restored_from: str,
        index_id: str | None = None,
        progress: Progress | None = None,
    ) -> str | None:
        """
        Copy a verified bundle (a backup's index and sidecars) into place as a new generation.

        Returns:
            Why not (a copy does not match ``manifest``), or None when done.
        """
        with self.locked():
            healthy_now = self.cheap_ok()
            staged: dict[str, Path] = {}
            total = sum(int(e["size"]) for e in manifest.files.values())
            tick = Ticker(progress, total)
            try:
                for name, entry in manifest.files.items():
                    why = self._stage_copy(folder / name, name, entry, manifest, staged, tick)
                    if why is not None:
                        for tmp in staged.values():
                            tmp.unlink()
                        return why
                new = manifest.evolve(
                    generation=self.manifests().generation + 1,
                    index_file=self.index_file,
                    index_id=index_id or manifest.body.get("index_id"),
                    restored_from=restored_from,
                    restored_at=time.time(),
                )
                new.body.pop("staged", None)
                self.commit(staged, new, aside=healthy_now)
            except BaseException:
                for tmp in staged.values():
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                raise
        return None

    def _stage_copy(
        self,
        source: Path,
        name: str,
        entry: Mapping[str, Any],
        manifest: Manifest,
        staged: dict[str, Path],
        tick: Ticker,
    ) -> str | None:
        what = "index file" if name == self.index_file else f"sidecar {name}"
        try:
            fd_in = open_regular(source)
        except OSError as err:
            return f"its {what} cannot be read: {err.strerror or err}"
        try:
            tmp = staged[name] = temp_path(self.data_dir / name)
            on_disk = copy_to_new_file(fd_in, tmp, progress=tick.at(name))
        finally:
            os.close(fd_in)
        size, digest = hash_file(tmp, manifest.algorithm)
        if (size, digest) != (entry["size"], entry["checksum"]):
            return (
                f"its {what}'s {manifest.algorithm} checksum does not match its manifest (damaged)"
            )
        if on_disk != size:
            raise RecoveryError(f"short write while restoring ({on_disk} of {size} bytes)")
        return None

    def aside_path(self, name: str, *, healthy: bool) -> Path:
        """Where a live file is kept when something replaces it: ``.replaced-`` or ``.corrupt-``."""
        suffix = "replaced" if healthy else "corrupt"
        return self.data_dir / f"{name}.{suffix}-{stamp()}"

    def prune_asides(self) -> list[Path]:
        """Keep the newest ``keep_aside`` copies of each file and kind; returns what was removed."""
        removed: list[Path] = []
        try:
            entries = [e.name for e in os.scandir(self.data_dir)]
        except OSError:
            return removed
        for name in (self.index_file, *self.sidecars):
            for suffix in ("replaced", "corrupt"):
                pattern = re.compile(re.escape(f"{name}.{suffix}-") + r"\d{8}T[\d.]+Z$")
                matching = sorted((e for e in entries if pattern.match(e)), reverse=True)
                for old in matching[self.keep_aside :]:
                    with contextlib.suppress(FileNotFoundError):
                        (self.data_dir / old).unlink()
                        removed.append(self.data_dir / old)
                        logger.info("removed an old copy %s", old)
        return removed

    def commit(
        self, staged: dict[str, Path], manifest: Manifest, *, aside: bool | None = None
    ) -> None:
        """
        Make the ``staged`` temp files the live bundle under ``manifest``, as one commit.

        The next manifest names the staged files and is durable before any live file changes;
        from then on the save is decided: the files are replaced one by one, and a crash midway
        is rolled forward at the next start from the staged files. ``aside`` (True: healthy,
        False: damaged) keeps the replaced files as ``.replaced-*`` / ``.corrupt-*``.
        """
        kept: list[Path] = []
        decided: dict[str, Path] = {}
        try:
            if aside is not None:
                # Kept before anything changes: if they cannot be kept, nothing has happened.
                for name in list(staged):
                    if (self.data_dir / name).exists():
                        kept.append(
                            _keep(self.data_dir / name, self.aside_path(name, healthy=aside))
                        )
            pending = manifest.evolve(staged={name: tmp.name for name, tmp in staged.items()})
            pending.write(self.next_manifest_path)  # durable before the data files change
            decided.update(staged)
            staged.clear()  # from here on the staged files are the commit's, not the caller's
            for name, tmp in decided.items():
                os.replace(tmp, self.data_dir / name)
        except BaseException:
            if not decided:  # nothing will change: the spare names go
                for path in kept:
                    with contextlib.suppress(OSError):
                        path.unlink()
            raise
        fsync_dir(self.data_dir)
        self._finish_commit()
        if aside is not None:
            self.prune_asides()

    def _finish_commit(self) -> None:
        # The next manifest becomes the manifest as it is: its list of staged names is stale from
        # here on, and harmless (only a next manifest's list is ever acted on).
        os.replace(self.next_manifest_path, self.manifest_path)
        fsync_dir(self.data_dir)


def _keep(live: Path, aside: Path) -> Path:
    try:
        os.link(live, aside)  # the live name never disappears
    except OSError:
        try:
            shutil.copy2(live, aside)
        except BaseException:
            with contextlib.suppress(OSError):
                aside.unlink()
            raise
    return aside


class Ticker:
    """Progress over several files: ``progress(bytes done, bytes in all)``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done: dict[str, int] = {}

    def at(self, name: str) -> Callable[[int], None] | None:
        if self.progress is None:
            return None
        progress = self.progress

        def tick(copied: int) -> None:
            self.done[name] = copied
            progress(sum(self.done.values()), self.total)

        return tick
