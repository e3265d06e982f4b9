"""
VectorIndexRecovery: corruption detection, verified backups, atomic restore, rebuild.

On disk, in ``data_dir``::

    vector_index.faiss                  the index (only ever replaced whole, by os.replace)
    vector_index.faiss.manifest.json    the manifest: the commit point of the last save
    vector_index.faiss.manifest.next.json   only while a save or restore is in flight
    vector_index.faiss.corrupt-<time>   a damaged index moved aside by a restore

A save writes the data into an O_EXCL temp file (hashing while faiss streams it), fsyncs it, writes
the new manifest as ``.next`` (durably), replaces the data file, then renames ``.next`` over the
manifest. A crash at any moment leaves the data file matching either the manifest (old) or ``.next``
(new); the next start rolls forward or back, and ``diagnose()`` accepts either.

In ``backup_dir``, one folder per backup, named ``<UTC time with microseconds>Z-g<generation>``,
holding a copy of the index and its own ``manifest.json``, built in a temp folder and renamed into
place when complete and verified.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._aio import off_loop
from .._errors import IndexCorruptionError, RecoveryError
from .._redact import redact
from ._health import BackupInfo, Check, IndexHealth
from ._manifest import (
    ALGORITHMS,
    CHUNK,
    DEFAULT_ALGORITHM,
    Manifest,
    ManifestError,
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
from ._probe import ProbeJob, ProbeResult, probe_files

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["BackupInfo", "IndexHealth", "VectorIndexRecovery"]

logger = logging.getLogger("safla_diag.vector")

Progress = Callable[[int, int], object]

_BACKUP_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-g\d{6,}(?:-\d+)?$")
_BACKUP_MANIFEST = "manifest.json"
_METRICS = {
    "cosine": "inner_product",
    "l2": "l2",
    "inner_product": "inner_product",
    "ip": "inner_product",
}

_ADVICE_RESTORE = (
    "restore the newest good backup (safla-diag vector restore DIR) or rebuild from the source "
    "vectors (safla-diag vector rebuild-index DIR --from FILE.npy)"
)


def _stamp(now: float | None = None) -> str:
    now = time.time() if now is None else now
    micro = int((now % 1) * 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{micro:06d}Z"


def _first_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


class _Verdict:
    """Accumulates checks for one diagnosis."""

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self.advice: str | None = None

    def add(self, name: str, passed: bool | None, detail: str, advice: str | None = None) -> bool:
        self.checks.append(Check(name=name, passed=passed, detail=detail))
        if passed is False and self.advice is None:
            self.advice = advice or _ADVICE_RESTORE
        return passed is not False

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if c.passed is False), None)


class VectorIndexRecovery:
    """
    Detect corruption of a FAISS index file, back it up, restore it and rebuild it, safely.

    The index lives in ``data_dir/index_file`` with a manifest beside it; backups go to
    ``backup_dir``. All methods are blocking (file I/O, hashing, faiss); from async code use the
    ``a``-prefixed twins, which run them in the loop's default executor.

    Args:
        data_dir: The folder of the live index.
        backup_dir: The folder of the backups (ideally on another disk).
        index_file: The index's file name inside ``data_dir``.
        keep_backups: How many backups to keep (the newest).
        dimension: The dimension the host expects; an index of another dimension is unusable.
        checksum: ``xxh3_128`` (default, fast) or ``sha256`` for new manifests; both verify.
        probe_timeout: Seconds allowed to load one file in the child; None scales with the size.
        memory_factor: The child may grow by this many times the file's size before it is stopped.

    Raises:
        ValueError: For an invalid argument.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        backup_dir: str | os.PathLike[str],
        *,
        index_file: str = "vector_index.faiss",
        keep_backups: int = 5,
        dimension: int | None = None,
        checksum: str = DEFAULT_ALGORITHM,
        probe_timeout: float | None = None,
        memory_factor: float = 4.0,
    ) -> None:
        if not isinstance(index_file, str) or not index_file or "/" in index_file:
            raise ValueError(f"index_file must be a plain file name, got {index_file!r}")
        if index_file.startswith(".") or os.sep in index_file:
            raise ValueError(f"index_file must be a plain file name, got {index_file!r}")
        if isinstance(keep_backups, bool) or not isinstance(keep_backups, int) or keep_backups < 1:
            raise ValueError(f"keep_backups must be a positive int, got {keep_backups!r}")
        if dimension is not None and (
            isinstance(dimension, bool) or not isinstance(dimension, int) or dimension <= 0
        ):
            raise ValueError(f"dimension must be a positive int or None, got {dimension!r}")
        if checksum not in ALGORITHMS:
            raise ValueError(f"checksum must be one of {ALGORITHMS}, got {checksum!r}")
        if memory_factor <= 0:
            raise ValueError("memory_factor must be positive")
        self.data_dir = Path(data_dir)
        self.backup_dir = Path(backup_dir)
        self.index_file = index_file
        self.keep_backups = keep_backups
        self.dimension = dimension
        self.checksum = checksum
        self.probe_timeout = probe_timeout
        self.memory_factor = memory_factor
        self.index_path = self.data_dir / index_file
        self.manifest_path = self.data_dir / f"{index_file}.manifest.json"
        self.next_manifest_path = self.data_dir / f"{index_file}.manifest.next.json"
        #: The backups the last restore skipped, each with the reason (its ``problem``).
        self.last_restore_skipped: tuple[BackupInfo, ...] = ()
        #: The backup the last successful restore used.
        self.last_restored: BackupInfo | None = None
        self._thread_lock = threading.RLock()
        self._recover_on_start()

    def __repr__(self) -> str:
        return f"<VectorIndexRecovery index={redact(str(self.index_path))!r}>"

    # ------------------------------------------------------------------ start-up and locking

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        make_dirs(self.data_dir)
        with self._thread_lock, folder_lock(self.data_dir, self.index_file):
            yield

    def _recover_on_start(self) -> None:
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
            pending = None
            self.next_manifest_path.unlink(missing_ok=True)
            return
        if pending is None:
            return
        if self._file_matches(self.index_path, pending, self.index_file):
            os.replace(self.next_manifest_path, self.manifest_path)
            logger.warning("completed an interrupted save (generation %d)", pending.generation)
        else:
            self.next_manifest_path.unlink()
            logger.info("discarded the manifest of an interrupted save; the old index stands")
        fsync_dir(self.data_dir)

    @staticmethod
    def _file_matches(path: Path, manifest: Manifest, name: str) -> bool:
        entry = manifest.files.get(name)
        if entry is None:
            return False
        try:
            if path.stat().st_size != entry["size"]:
                return False
            return hash_file(path, manifest.algorithm) == (entry["size"], entry["checksum"])
        except OSError:
            return False

    # ---------------------------------------------------------------------------- manifests

    def _manifests(self) -> tuple[Manifest | None, Manifest | None, str | None]:
        """(manifest, next manifest, why the manifest is unusable)."""
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
        return current, pending, problem

    def _generation(self) -> int:
        current, pending, _ = self._manifests()
        return max((m.generation for m in (current, pending) if m is not None), default=0)

    # ---------------------------------------------------------------------------- diagnose

    def detect_corruption(self) -> bool:
        """
        Return True when the index is missing, damaged or unusable (the cheap check).

        Returns:
            ``not self.diagnose().ok``.
        """
        return not self.diagnose().ok

    def diagnose(self, *, deep: bool = False) -> IndexHealth:
        """
        Check the index, cheapest check first, and say what is wrong in words an operator can use.

        The default compares the file's size and checksum with its manifest. With ``deep=True``, or
        when there is no manifest to trust, the file is also loaded in an isolated child process
        (memory-capped, with a timeout) that reports its class, dimension, ntotal and metric, checks
        its structure and runs the canary queries; a file faiss chokes on cannot crash the host.

        Args:
            deep: Also load the index in a child process.

        Returns:
            An IndexHealth; truthy when healthy. An empty index is healthy.
        """
        return self._diagnose(deep=deep)[0]

    def _diagnose(
        self, *, deep: bool, probed: ProbeResult | None = None
    ) -> tuple[IndexHealth, Manifest | None, ProbeResult | None]:
        # ``probed``: a result of the isolated load already obtained (many files in one child).
        t0 = time.perf_counter()
        v = _Verdict()
        facts: dict[str, Any] = {"path": str(self.index_path)}
        matched: Manifest | None = None
        probe: ProbeResult | None = None

        def done() -> tuple[IndexHealth, Manifest | None, ProbeResult | None]:
            failed = v.failed
            health = IndexHealth(
                ok=failed is None,
                problem=None if failed is None else f"{failed.name}: {failed.detail}",
                advice=None if failed is None else v.advice,
                checks=tuple(v.checks),
                notes=tuple(v.notes),
                deep=probe is not None,
                duration=time.perf_counter() - t0,
                **facts,
            )
            if failed is not None:
                logger.warning(
                    "vector index %s is unhealthy: %s",
                    redact(str(self.index_path)),
                    redact(health.problem or ""),
                )
            return health, matched, probe

        current, pending, manifest_problem = self._manifests()
        facts["manifest"] = current is not None
        try:
            st = self.index_path.stat()
        except FileNotFoundError:
            where = "" if self.data_dir.is_dir() else " (its folder does not exist either)"
            v.add("file present", False, f"the index file {self.index_path.name} is missing{where}")
            return done()
        except OSError as err:
            v.add("file present", False, f"the index file cannot be read: {err.strerror or err}")
            return done()
        facts["size"] = st.st_size
        v.add("file present", True, f"{st.st_size} bytes")

        candidates = [m for m in (current, pending) if m is not None]
        if manifest_problem is not None:
            v.add(
                "manifest",
                False,
                f"{manifest_problem}; the index's checksum cannot be verified",
                "run a deep check (health-check --deep); if it passes, save the index again to "
                "write a new manifest, otherwise " + _ADVICE_RESTORE,
            )
        if candidates:
            sizes = [m.files.get(self.index_file, {}).get("size") for m in candidates]
            if st.st_size not in sizes:
                expected = sizes[0]
                if expected is None:
                    v.add("manifest", False, f"the manifest does not list {self.index_file}")
                else:
                    how = (
                        f"{st.st_size - expected} bytes of garbage appended"
                        if st.st_size > expected
                        else f"truncated: {expected - st.st_size} bytes missing"
                    )
                    v.add(
                        "size", False, f"{st.st_size} bytes, the manifest says {expected} ({how})"
                    )
                self._fill_from(facts, candidates[0])
                return done()
            v.add("size", True, f"matches the manifest ({st.st_size} bytes)")
            digests: dict[str, str] = {}
            for m in candidates:
                if m.algorithm not in digests:
                    try:
                        digests[m.algorithm] = hash_file(self.index_path, m.algorithm)[1]
                    except OSError as err:  # a bad sector is a finding, not an exception
                        v.add(
                            "checksum",
                            False,
                            f"the index file cannot be read to the end: {err.strerror or err}",
                        )
                        self._fill_from(facts, candidates[0])
                        facts["checksum_ok"] = False
                        return done()
                entry = m.files.get(self.index_file, {})
                if entry.get("size") == st.st_size and digests[m.algorithm] == entry.get(
                    "checksum"
                ):
                    matched = m
                    break
            if matched is None:
                v.add(
                    "checksum",
                    False,
                    f"the file's {candidates[0].algorithm} checksum differs from the manifest's "
                    "(the content is damaged)",
                )
                self._fill_from(facts, candidates[0])
                facts["checksum_ok"] = False
                return done()
            facts["checksum_ok"] = True
            self._fill_from(facts, matched)
            v.add(
                "checksum",
                True,
                f"{matched.algorithm} matches the manifest (generation {matched.generation})",
            )
            if matched is pending:
                v.notes.append(
                    "a save was interrupted after the new index was in place; it is complete"
                )
            self._check_dimension(v, int(matched.index["dimension"]))
            if v.failed is not None:
                return done()
        elif manifest_problem is None:
            facts["checksum_ok"] = None
            v.notes.append(
                "no manifest: the file's checksum could not be verified (it was not written by "
                "save_index); only the isolated load and plausibility checks vouch for it"
            )
        if st.st_size == 0:
            v.add("isolated load", False, "the file is empty (0 bytes)")
            return done()
        if deep or matched is None:
            probe = probed if probed is not None else self._probe(matched)
            self._judge_probe(v, probe, matched, st.st_size, facts)
        return done()

    def _fill_from(self, facts: dict[str, Any], m: Manifest) -> None:
        idx = m.index
        facts.update(
            ntotal=idx.get("ntotal"),
            dimension=idx.get("dimension"),
            index_class=idx.get("class"),
            metric=idx.get("metric"),
            generation=m.generation,
        )

    def _check_dimension(self, v: _Verdict, dimension: int) -> None:
        if self.dimension is None:
            return
        if dimension == self.dimension:
            v.add("dimension", True, f"{dimension}, as configured")
        else:
            v.add(
                "dimension",
                False,
                f"the index has dimension {dimension} but the host expects {self.dimension}",
                f"rebuild the index from vectors of dimension {self.dimension} "
                "(safla-diag vector rebuild-index DIR --from FILE.npy), or fix vector_dimension",
            )

    def _probe(self, manifest: Manifest | None) -> ProbeResult:
        job = ProbeJob(path=str(self.index_path), canaries=manifest.canaries if manifest else None)
        return probe_files([job], timeout=self.probe_timeout, memory_factor=self.memory_factor)[0]

    def _judge_probe(
        self,
        v: _Verdict,
        probe: ProbeResult,
        manifest: Manifest | None,
        size: int,
        facts: dict[str, Any],
    ) -> None:
        judge_probe(v.add, probe, manifest.index if manifest else None, size)
        info = probe.info or {}
        if info and manifest is None:
            facts.update(
                ntotal=info.get("ntotal"),
                dimension=info.get("dimension"),
                index_class=info.get("class"),
                metric=info.get("metric"),
            )
            self._check_dimension(v, int(info["dimension"]))

    # ---------------------------------------------------------------------------- load

    def load_index(self, *, deep: bool = False) -> Any:
        """
        Load the index into this process, after verifying it.

        The file is verified first (checksum against the manifest, or an isolated load when there
        is no manifest), then read from the same open file with faiss's per-vector allocation
        capped at the file's size, hashing again as it is read.

        Args:
            deep: Run the deep check (isolated load, canaries) before loading here.

        Returns:
            The faiss index.

        Raises:
            IndexCorruptionError: When the index is missing or fails a check.
        """
        from . import _faiss

        for _attempt in range(3):
            try:
                fd = os.open(self.index_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                fd = -1
            try:
                health, matched, probe = self._diagnose(deep=deep)
                if not health.ok:
                    raise IndexCorruptionError(f"{self.index_path.name}: {health.problem}")
                if fd < 0:
                    continue
                # Files are only ever replaced, never rewritten: if the name still points at the
                # inode we hold, the bytes the check verified are the bytes we are about to read.
                st, held = os.stat(self.index_path), os.fstat(fd)
                if (st.st_ino, st.st_dev) != (held.st_ino, held.st_dev):
                    continue
                if matched is not None:
                    entry = matched.files[self.index_file]
                    algorithm, expected = matched.algorithm, (entry["size"], entry["checksum"])
                elif probe is not None and probe.file_digest and probe.file_size is not None:
                    algorithm, expected = "xxh3_128", (probe.file_size, probe.file_digest)
                else:  # pragma: no cover - a healthy diagnosis always has one or the other
                    raise IndexCorruptionError(f"{self.index_path.name} could not be verified")
                index = self._read_verified(fd, algorithm, expected)
                info = _faiss.describe(index)
                known = matched.index if matched else (probe.info if probe else None)
                if known and (info["ntotal"], info["dimension"]) != (
                    known["ntotal"],
                    known["dimension"],
                ):
                    raise IndexCorruptionError(
                        f"{self.index_path.name} loaded with ntotal={info['ntotal']} "
                        f"d={info['dimension']}, expected ntotal={known['ntotal']} "
                        f"d={known['dimension']}"
                    )
                return index
            finally:
                if fd >= 0:
                    os.close(fd)
        raise IndexCorruptionError(
            f"{self.index_path.name} kept changing while it was being verified"
        )

    @staticmethod
    def _read_verified(fd: int, algorithm: str, expected: tuple[int, str]) -> Any:
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
                f"faiss version, or the manifest was rewritten over damage): {_first_line(str(err))}"
            ) from err
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
            total += len(chunk)
        if (total, h.hexdigest()) != expected:
            raise IndexCorruptionError("the index file changed while it was being loaded")
        return index

    # ---------------------------------------------------------------------------- save

    def save_index(
        self,
        index: Any,
        *,
        source: str | os.PathLike[str] | None = None,
        ids_source: str | os.PathLike[str] | None = None,
        canaries: int = 4,
    ) -> str:
        """
        Write ``index`` atomically and durably, with a manifest; the only way we write an index.

        The index is streamed through faiss's Python writer into an O_EXCL temp file in the same
        folder while it is hashed, flushed, fsynced and size-checked; the manifest (class,
        dimension, ntotal, metric, checksums, canary queries, the source) is made durable, the file
        is ``os.replace``d, and the manifest committed. A crash at any moment leaves the old or the
        new index, whole.

        Args:
            index: A faiss index.
            source: The ``.npy`` file the vectors came from, recorded (with its checksum) so that
                ``rebuild_index()`` can use it later.
            ids_source: The ``.npy`` file of the ids, likewise.
            canaries: How many canary queries to record (0 for none).

        Returns:
            The path of the index file.

        Raises:
            TypeError: When ``index`` is not a faiss index.
            ValueError: When its dimension is not the configured one.
            OSError: When the disk refuses (the old index is left untouched).
        """
        from . import _faiss

        if not hasattr(index, "ntotal") or not hasattr(index, "d"):
            raise TypeError(f"expected a faiss index, got {type(index).__name__}")
        desc = _faiss.describe(index)
        if self.dimension is not None and desc["dimension"] != self.dimension:
            raise ValueError(
                f"the index has dimension {desc['dimension']} but the host expects {self.dimension}"
            )
        source_info: dict[str, Any] | None = None
        if source is not None:
            size, digest = hash_file(source, self.checksum)
            source_info = {
                "path": str(Path(source).resolve()),
                "size": size,
                "checksum": digest,
                "checksum_algorithm": self.checksum,
            }
            if ids_source is not None:
                isize, idigest = hash_file(ids_source, self.checksum)
                source_info["ids"] = {
                    "path": str(Path(ids_source).resolve()),
                    "size": isize,
                    "checksum": idigest,
                }
        canary_doc = _faiss.make_canaries(index, n=canaries) if canaries else None
        t0 = time.perf_counter()
        with self._locked():
            generation = self._generation() + 1
            tmp = temp_path(self.index_path)
            fd = open_exclusive(tmp)
            try:
                h = new_hasher(self.checksum)
                written = 0

                def write(block: bytes) -> int:
                    nonlocal written
                    h.update(block)
                    n = write_all(fd, block)
                    written += n
                    return n

                try:
                    _faiss.write_index_stream(index, write)
                    os.fsync(fd)
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                if size != written:
                    raise OSError(
                        errno.EIO, f"short write: {size} of {written} bytes on disk", str(tmp)
                    )
                manifest = Manifest.new(
                    generation=generation,
                    index=desc,
                    files={self.index_file: {"size": size, "checksum": h.hexdigest()}},
                    algorithm=self.checksum,
                    faiss_version=_faiss.version(),
                    canaries=canary_doc,
                    source=source_info,
                    extra={"index_file": self.index_file},
                )
                self._commit(tmp, manifest)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        logger.info(
            "saved vector index generation %d (%d vectors, %d bytes) in %.3f s",
            generation, desc["ntotal"], size, time.perf_counter() - t0,
        )  # fmt: skip
        return str(self.index_path)

    def _commit(self, tmp: Path, manifest: Manifest, *, aside: Path | None = None) -> None:
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

    # ---------------------------------------------------------------------------- backups

    def backup_index(self) -> str:
        """
        Take a verified backup of the live index as a new, immutable generation.

        The live file is copied while it is hashed and checked against its manifest (a damaged
        index is never backed up over good backups), fsynced, re-read and compared, and its
        manifest written last; the folder appears under its final name only when complete. Only the
        newest ``keep_backups`` are kept.

        Returns:
            The path of the new backup's folder.

        Raises:
            IndexCorruptionError: When the live index is missing or damaged.
            RecoveryError: When the copy does not read back as written.
        """
        make_dirs(self.backup_dir)
        with self._locked():
            current, pending, _ = self._manifests()
            try:
                fd_in = os.open(self.index_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                raise IndexCorruptionError(
                    f"there is no index to back up at {self.index_path}"
                ) from None
            try:
                candidates = [m for m in (current, pending) if m is not None]
                if not candidates:
                    health, _, probe = self._diagnose(deep=True)
                    if not health.ok or probe is None or probe.info is None:
                        raise IndexCorruptionError(
                            f"not backing up a damaged index: {health.problem}"
                        )
                    candidates = [
                        Manifest.new(
                            generation=0,
                            index=probe.info,
                            files={},
                            algorithm=self.checksum,
                            faiss_version="unknown (written without a manifest)",
                            extra={"index_file": self.index_file},
                        )
                    ]
                path = self._copy_to_backup(fd_in, candidates)
            finally:
                os.close(fd_in)
        self._apply_retention(keep=path)
        return str(path)

    def _copy_to_backup(self, fd_in: int, candidates: list[Manifest]) -> Path:
        algorithm = candidates[0].algorithm
        # Named after the index: indexes may share the backup folder, each cleans up its own.
        work = (
            self.backup_dir / f".{self.index_file}.backup.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        )
        os.mkdir(work)
        try:
            dest = work / self.index_file
            on_disk = copy_to_new_file(fd_in, dest)
            size, digest = hash_file(dest, algorithm)
            source: Manifest | None = None
            for m in candidates:
                entry = m.files.get(self.index_file)
                if entry is None and not m.files:  # built just now from a deep check
                    source = m.evolve(files={self.index_file: {"size": size, "checksum": digest}})
                    break
                if entry is not None and (entry["size"], entry["checksum"]) == (size, digest):
                    source = m
                    break
            if source is None:
                raise IndexCorruptionError(
                    "not backing up: the live index does not match its manifest (it is damaged); "
                    "restore or rebuild it first"
                )
            if on_disk != size or os.fstat(fd_in).st_size != size:
                raise RecoveryError(f"the backup copy did not read back as written ({dest})")
            name = f"{_stamp()}-g{source.generation:06d}"
            manifest = source.evolve(
                backup_of=str(self.index_path),
                backed_up_at=time.time(),
                index_file=self.index_file,
            )
            manifest.write(work / _BACKUP_MANIFEST)
            fsync_dir(work)
            final = self._rename_unique(work, name)
            fsync_dir(self.backup_dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        logger.info("backed up generation %d to %s", source.generation, redact(str(final)))
        return final

    def _rename_unique(self, work: Path, name: str) -> Path:
        for n in range(1000):
            final = self.backup_dir / (name if n == 0 else f"{name}-{n}")
            try:
                os.rename(work, final)  # fails if it exists (a non-empty folder)
            except OSError as err:
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.exists():
                    continue
                raise
            return final
        raise RecoveryError("could not find a free backup name")  # pragma: no cover

    def _backup_folders(self) -> list[Path]:
        try:
            entries = [e for e in os.scandir(self.backup_dir) if _BACKUP_NAME.match(e.name)]
        except FileNotFoundError:
            return []
        folders = (Path(e.path) for e in entries if e.is_dir())
        return sorted(
            (f for f in folders if self._backup_is_ours(f)), key=lambda p: p.name, reverse=True
        )

    def _backup_is_ours(self, folder: Path) -> bool:
        """
        Whether a backup folder holds a backup of this index (indexes may share a backup folder).

        A backup whose manifest cannot be read counts as ours: it is then listed as damaged, and
        retention may remove it, rather than it lingering unseen.
        """
        try:
            manifest = Manifest.read(folder / _BACKUP_MANIFEST)
        except (ManifestError, OSError):
            return True
        if manifest is None:
            return True
        return bool(manifest.body.get("index_file", self.index_file) == self.index_file)

    def _apply_retention(self, *, keep: Path) -> None:
        folders = self._backup_folders()
        for old in folders[self.keep_backups :]:
            if old == keep:
                continue
            # Rename first, so that a half-deleted backup never looks like a damaged one.
            doomed = (
                self.backup_dir
                / f".{self.index_file}.{old.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            )
            try:
                os.rename(old, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            logger.info("removed old backup %s", old.name)

    def _inspect_backup(self, folder: Path, *, verify: bool) -> tuple[BackupInfo, Manifest | None]:
        base: dict[str, Any] = {"path": str(folder), "name": folder.name}
        try:
            manifest = Manifest.read(folder / _BACKUP_MANIFEST)
        except (ManifestError, OSError) as err:
            return BackupInfo(
                **base, problem=f"its manifest is damaged: {err}", verified=False
            ), None
        if manifest is None:
            return BackupInfo(
                **base, problem="it has no manifest (an incomplete backup)", verified=False
            ), None
        name = str(manifest.body.get("index_file", self.index_file))
        entry = manifest.files.get(name)
        idx = manifest.index
        info: dict[str, Any] = dict(
            base,
            created_at=manifest.body.get("backed_up_at", manifest.created_at),
            generation=manifest.generation,
            size=entry["size"] if entry else None,
            ntotal=idx["ntotal"],
            dimension=idx["dimension"],
            index_class=idx["class"],
            metric=idx["metric"],
            checksum_algorithm=manifest.algorithm,
        )
        problem = None
        verified: bool | None = None
        try:
            st = (folder / name).stat()
        except FileNotFoundError:
            st = None
        if entry is None or st is None:
            problem, verified = f"its index file {name} is missing", False
        elif st.st_size != entry["size"]:
            problem, verified = (
                f"its index file is {st.st_size} bytes, the manifest says {entry['size']}",
                False,
            )
        elif self.dimension is not None and idx["dimension"] != self.dimension:
            problem = f"it has dimension {idx['dimension']} but the host expects {self.dimension}"
        elif verify:
            verified = hash_file(folder / name, manifest.algorithm)[1] == entry["checksum"]
            if not verified:
                problem = f"its {manifest.algorithm} checksum does not match its manifest (damaged)"
        return BackupInfo(**info, problem=problem, verified=verified), manifest

    def list_backups(self, *, verify: bool = False) -> list[BackupInfo]:
        """
        The backups, newest first.

        Args:
            verify: Also check every backup's checksums (reads them all).

        Returns:
            One BackupInfo per backup folder; damaged ones have a ``problem``.
        """
        return [self._inspect_backup(f, verify=verify)[0] for f in self._backup_folders()]

    # ---------------------------------------------------------------------------- restore

    def restore_from_backup(self, backup_path: str | os.PathLike[str] | None = None) -> bool:
        """
        Restore the newest backup whose checksums verify (or the one given), atomically.

        Backups are tried newest first; damaged ones are skipped, logged and listed in
        ``last_restore_skipped``. The chosen backup is copied into a temp file beside the index
        while it is hashed, fsynced and ``os.replace``d; the current index is kept as
        ``<index>.corrupt-<time>`` (``.replaced-<time>`` when it was healthy), never deleted, and
        the folder is never left without an index.

        Args:
            backup_path: A backup folder inside ``backup_dir`` (or a file in one); None for the
                newest good one.

        Returns:
            True when a backup was restored, False when none could be.

        Raises:
            RecoveryError: When ``backup_path`` is not a backup in the backup folder.
            OSError: When the disk refuses (full, read-only); the live index is left as it was.
        """
        if backup_path is not None:
            folders = [self._resolve_backup(backup_path)]
        else:
            folders = self._backup_folders()
        skipped: list[BackupInfo] = []
        self.last_restored = None
        try:
            for folder in folders:
                info, manifest = self._inspect_backup(folder, verify=False)
                if manifest is None or info.problem is not None:
                    skipped.append(info)
                    logger.warning(
                        "skipping backup %s: %s", folder.name, redact(info.problem or "")
                    )
                    continue
                problem = self._install_backup(folder, manifest)
                if problem is not None:
                    info = _with(info, problem=problem, verified=False)
                    skipped.append(info)
                    logger.warning("skipping backup %s: %s", folder.name, redact(problem))
                    continue
                self.last_restored = _with(info, verified=True)
                logger.warning("restored the vector index from backup %s", folder.name)
                return True
        finally:
            self.last_restore_skipped = tuple(skipped)
        logger.error("no usable backup to restore from in %s", redact(str(self.backup_dir)))
        return False

    def _resolve_backup(self, backup_path: str | os.PathLike[str]) -> Path:
        root = self.backup_dir.resolve()
        path = Path(backup_path)
        if not path.is_absolute() and not path.exists():
            path = self.backup_dir / path
        path = path.resolve()
        if path.is_file():
            path = path.parent
        # Only a finished backup generation: not a temp folder still being written, nor one
        # that retention is deleting, nor anything else someone put in the backup folder.
        if path.parent != root or not _BACKUP_NAME.match(path.name):
            raise RecoveryError(
                f"refusing to restore from {backup_path}: it is not a backup in {self.backup_dir}"
            )
        return path

    def _install_backup(self, folder: Path, manifest: Manifest) -> str | None:
        """Copy a backup into place; returns why not, or None when done."""
        name = str(manifest.body.get("index_file", self.index_file))
        entry = manifest.files[name]
        with self._locked():
            healthy_now = self._cheap_ok()
            tmp = temp_path(self.index_path)
            try:
                fd_in = os.open(folder / name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
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
                    generation=self._generation() + 1,
                    files={self.index_file: dict(entry)},
                    index_file=self.index_file,
                    restored_from=folder.name,
                    restored_at=time.time(),
                )
                suffix = "replaced" if healthy_now else "corrupt"
                aside = self.data_dir / f"{self.index_file}.{suffix}-{_stamp()}"
                self._commit(tmp, new, aside=aside)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            finally:
                os.close(fd_in)
        return None

    def _cheap_ok(self) -> bool:
        current, pending, _ = self._manifests()
        return any(
            self._file_matches(self.index_path, m, self.index_file)
            for m in (current, pending)
            if m is not None
        )

    # ---------------------------------------------------------------------------- rebuild

    def rebuild_index(
        self,
        vectors_source: str | os.PathLike[str] | npt.ArrayLike | None = None,
        *,
        dimension: int | None = None,
        metric: str = "cosine",
        factory: str = "Flat",
        batch_size: int = 65536,
        ids: str | os.PathLike[str] | npt.ArrayLike | None = None,
        progress: Progress | None = None,
        train_size: int | None = None,
    ) -> bool:
        """
        Build a new index from the source vectors, in batches, and save it with ``save_index``.

        Args:
            vectors_source: A ``.npy`` file (opened memory-mapped, so it may be larger than memory)
                or an array of shape (n, d); None uses the source recorded in the manifest.
            dimension: The expected dimension (defaults to the configured one).
            metric: ``cosine`` (vectors are normalised), ``l2`` or ``inner_product``.
            factory: A faiss factory string: ``Flat``, ``IVF1024,Flat``, ``HNSW32``, ...
            batch_size: Vectors added per batch.
            ids: Ids (a ``.npy`` file or an array of n int64), to wrap the index in an IndexIDMap2.
            progress: Called as ``progress(done, total)`` after each batch; otherwise progress
                is logged at INFO.
            train_size: Vectors sampled to train IVF/PQ indexes (default: enough for the lists).

        Returns:
            True once the new index is saved (then ``diagnose()`` passes).

        Raises:
            ValueError: For a bad argument (metric, factory, shape, dimension, ids).
            RecoveryError: When the source vectors contain NaN or infinity, or no source is known.
        """
        import numpy as np

        from . import _faiss

        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        source_path: Path | None = None
        ids_path: Path | None = None
        if vectors_source is None:
            current, _, _ = self._manifests()
            recorded = current.source if current else None
            if not recorded:
                raise RecoveryError(
                    "no source vectors given and none recorded in the manifest; pass a .npy file"
                )
            vectors_source = recorded["path"]
            if ids is None and recorded.get("ids"):
                ids = recorded["ids"]["path"]
        if isinstance(vectors_source, (str, os.PathLike)):
            source_path = Path(vectors_source)
            x = _load_npy(source_path)
        else:
            x = np.asarray(vectors_source)
        if x.ndim != 2 or x.shape[1] <= 0:
            raise ValueError(f"expected vectors of shape (n, d), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"expected numeric vectors, got dtype {x.dtype}")
        n, d = int(x.shape[0]), int(x.shape[1])
        want = dimension if dimension is not None else self.dimension
        if want is not None and d != want:
            raise ValueError(f"the source vectors have dimension {d}, expected {want}")
        id_array = None
        if ids is not None:
            if isinstance(ids, (str, os.PathLike)):
                ids_path = Path(ids)
                id_array = _load_npy(ids_path)
            else:
                id_array = np.asarray(ids)
            if id_array.shape != (n,) or not np.issubdtype(id_array.dtype, np.integer):
                raise ValueError(
                    f"expected {n} integer ids, got shape {id_array.shape} dtype {id_array.dtype}"
                )
            if n and np.unique(id_array).size != n:
                raise ValueError("the ids are not unique")
        cosine = metric == "cosine"
        index = _faiss.build_index(d, factory, _METRICS[metric], with_ids=id_array is not None)
        t0 = time.perf_counter()
        if not index.is_trained:
            if n == 0:
                raise ValueError(f"cannot train {factory!r} on an empty source")
            nl = _faiss.nlist(index) or 1
            size = min(n, train_size or max(10_000, 64 * nl))
            rows = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
            sample = _batch(x, rows, cosine, start=0)
            logger.info("training %s on %d sampled vectors", redact(factory), size)
            index.train(sample)
        _faiss.reserve(index, n)
        step_log = max(1, n // 10)
        next_log = step_log
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            xb = _batch(x, slice(start, stop), cosine, start=start)
            if id_array is not None:
                index.add_with_ids(xb, np.ascontiguousarray(id_array[start:stop], dtype=np.int64))
            else:
                index.add(xb)
            if progress is not None:
                progress(stop, n)
            elif stop >= next_log or stop == n:
                logger.info("rebuild: %d / %d vectors added", stop, n)
                next_log = stop + step_log
        logger.info(
            "rebuilt %s with %d vectors in %.3f s", redact(factory), n, time.perf_counter() - t0
        )
        self.save_index(index, source=source_path, ids_source=ids_path)
        return True

    # ---------------------------------------------------------------------------- async twins

    async def adiagnose(self, *, deep: bool = False) -> IndexHealth:
        """:meth:`diagnose`, run in the loop's default executor."""
        return await off_loop(self.diagnose, deep=deep)

    async def adetect_corruption(self) -> bool:
        """:meth:`detect_corruption`, run in the loop's default executor."""
        return await off_loop(self.detect_corruption)

    async def asave_index(self, index: Any, **kwargs: Any) -> str:
        """:meth:`save_index`, run in the loop's default executor."""
        return await off_loop(self.save_index, index, **kwargs)

    async def aload_index(self, *, deep: bool = False) -> Any:
        """:meth:`load_index`, run in the loop's default executor."""
        return await off_loop(self.load_index, deep=deep)

    async def abackup_index(self) -> str:
        """:meth:`backup_index`, run in the loop's default executor."""
        return await off_loop(self.backup_index)

    async def arestore_from_backup(self, backup_path: str | os.PathLike[str] | None = None) -> bool:
        """:meth:`restore_from_backup`, run in the loop's default executor."""
        return await off_loop(self.restore_from_backup, backup_path)

    async def arebuild_index(self, vectors_source: Any = None, **kwargs: Any) -> bool:
        """:meth:`rebuild_index`, run in the loop's default executor."""
        return await off_loop(self.rebuild_index, vectors_source, **kwargs)

    async def alist_backups(self, *, verify: bool = False) -> list[BackupInfo]:
        """:meth:`list_backups`, run in the loop's default executor."""
        return await off_loop(self.list_backups, verify=verify)


def _with(info: BackupInfo, **changes: Any) -> BackupInfo:
    import attrs

    return attrs.evolve(info, **changes)


def _load_npy(path: Path) -> npt.NDArray[Any]:
    import numpy as np

    if path.suffix == ".npz":
        raise ValueError(f"{path.name}: expected a .npy file, not .npz")
    try:
        arr: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as err:
        raise ValueError(
            f"{path.name} is not a readable .npy file: {_first_line(str(err))}"
        ) from err
    return arr


def _batch(
    x: npt.NDArray[Any], rows: slice | npt.NDArray[Any], cosine: bool, *, start: int
) -> npt.NDArray[np.float32]:
    import numpy as np

    xb = x[rows]
    if cosine or xb.dtype != np.float32 or not xb.flags.c_contiguous:
        xb = np.array(xb, dtype=np.float32, order="C")  # a private, writable copy
    # A sum propagates NaN and infinity in one fast pass; only a non-finite sum (which a huge but
    # finite vector could also cause) pays for the exact check.
    if xb.size and not np.isfinite(np.add.reduce(xb, axis=None)) and not np.isfinite(xb).all():
        bad = int(np.flatnonzero(~np.isfinite(xb).all(axis=1))[0])
        where = start + bad if isinstance(rows, slice) else int(np.asarray(rows)[bad])
        raise RecoveryError(f"source vector {where} contains NaN or infinity; not indexing it")
    if cosine:
        from . import _faiss

        _faiss.normalize(xb)
    out: npt.NDArray[np.float32] = xb
    return out


def judge_probe(
    add: Callable[..., bool],
    probe: ProbeResult,
    expected: dict[str, Any] | None,
    size: int,
) -> None:
    """Turn what the child found into checks (shared with the battery's bulk probe)."""
    if probe.status != "loaded":
        words = {
            "rejected": probe.detail,
            "memory": "loading it needed more memory than the cap of a few times its size "
            f"(a damaged size field?): {probe.detail}",
            "crashed": f"{probe.detail} while loading it (faiss crashed on it; the host was not affected)",
            "timeout": probe.detail,
            "error": f"the check could not run: {probe.detail}",
        }
        add("isolated load", False, words.get(probe.status, probe.detail))
        return
    info = probe.info or {}
    add(
        "isolated load",
        True,
        f"faiss loaded a {info.get('class')} (d={info.get('dimension')}, ntotal={info.get('ntotal')}, "
        f"metric={info.get('metric')})",
    )
    if expected is not None and info:
        diffs = [
            f"{key} is {info.get(key)!r}, the manifest says {expected.get(key)!r}"
            for key in ("class", "dimension", "ntotal", "metric")
            if info.get(key) != expected.get(key)
        ]
        add(
            "matches manifest",
            not diffs,
            "; ".join(diffs) or "class, dimension, ntotal and metric agree",
        )
    structural = [p for p in probe.problems if not p.startswith("canary")]
    canary = [p for p in probe.problems if p.startswith("canary")]
    add("plausibility", not structural, "; ".join(structural) or "structure and vectors look sound")
    if probe.roundtrip_size is not None and probe.roundtrip_size < size:
        extra = size - probe.roundtrip_size
        add(
            "trailing bytes",
            False,
            f"{extra} bytes follow the end of the index (faiss ignores them)",
        )
    elif probe.roundtrip_identical is False:
        add(
            "canonical form",
            False,
            "faiss reads this file as an index whose bytes differ from the file's (damage in fields "
            "faiss ignores or normalises); if another faiss version wrote it, save it again",
        )
    if probe.canaries_total:
        add(
            "canaries",
            not canary,
            f"{probe.canaries_passed} of {probe.canaries_total} canary queries returned their "
            "expected ids" + (f": {canary[0]}" if canary else ""),
        )


def bulk_probe(paths: Sequence[str], **kwargs: Any) -> list[ProbeResult]:
    """Probe many files in one child (used by the corruption battery)."""
    return probe_files([ProbeJob(path=p) for p in paths], **kwargs)
