"""
VectorIndexRecovery: corruption detection, verified backups, atomic restore, rebuild.

The facade over the layer's parts: :mod:`._live` (the live index and its commit protocol),
:mod:`._diagnose` (the checks), :mod:`._backups` (the backup folder), :mod:`._rebuild` (building an
index from vectors), :mod:`._probe` (the isolated loader) and :mod:`._fs` (durable file primitives).
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .._aio import off_loop
from .._errors import IndexCorruptionError, RecoveryError
from .._redact import redact
from ..config import default
from ._backups import BackupFolder
from ._diagnose import Diagnosis, diagnose_index, read_verified_sidecar
from ._fs import ALGORITHMS, DEFAULT_ALGORITHM, NotRegularFile, make_dirs
from ._health import BackupInfo, IndexHealth
from ._live import LiveIndex, sidecar_names
from ._manifest import Manifest
from ._probe import ProbeJob, ProbeResult, probe_files
from ._rebuild import METRICS, Progress, build, load_ids, load_vectors, source_record

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["BackupInfo", "IndexHealth", "VectorIndexRecovery"]

_DEFAULT_INDEX_FILE: str = default("index_file")  # the key table is the one home of defaults

logger = logging.getLogger("safla_diag.vector")


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
        sidecars: Names of files in ``data_dir`` that belong to the index (a LangChain store's
            ``index.pkl``, an id map): checksummed in the manifest, backed up and restored with
            the index as one bundle.

    Raises:
        ValueError: For an invalid argument.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        backup_dir: str | os.PathLike[str],
        *,
        index_file: str = _DEFAULT_INDEX_FILE,
        keep_backups: int = 5,
        dimension: int | None = None,
        checksum: str = DEFAULT_ALGORITHM,
        probe_timeout: float | None = None,
        memory_factor: float = 4.0,
        sidecars: Sequence[str] = (),
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
        self.sidecars = sidecar_names(sidecars, index_file)
        self.data_dir = Path(data_dir)
        self.backup_dir = Path(backup_dir)
        self.index_file = index_file
        self.keep_backups = keep_backups
        self.dimension = dimension
        self.checksum = checksum
        self.probe_timeout = probe_timeout
        self.memory_factor = memory_factor
        self._live = LiveIndex(
            self.data_dir,
            self.backup_dir,
            index_file,
            keep_aside=keep_backups,
            sidecars=self.sidecars,
        )
        self._backups = BackupFolder(
            self.backup_dir,
            index_file=index_file,
            index_path=self._live.index_path,
            dimension=dimension,
            keep=keep_backups,
        )
        self.index_path = self._live.index_path
        self.manifest_path = self._live.manifest_path
        self.next_manifest_path = self._live.next_manifest_path
        #: The backups the last restore skipped, each with the reason (its ``problem``).
        self.last_restore_skipped: tuple[BackupInfo, ...] = ()
        #: The backup the last successful restore used.
        self.last_restored: BackupInfo | None = None
        self._live.recover_on_start()

    def __repr__(self) -> str:
        return f"<VectorIndexRecovery index={redact(str(self.index_path))!r}>"

    # ---------------------------------------------------------------------------- diagnose

    def detect_corruption(self) -> bool:
        """
        Return True when the index is missing, damaged or unusable (the cheap check).

        Returns:
            ``not self.diagnose().ok``.
        """
        return not self.diagnose().ok

    def diagnose(self, *, deep: bool = False, progress: Progress | None = None) -> IndexHealth:
        """
        Check the index, cheapest check first, and say what is wrong in words an operator can use.

        The default compares the file's size and checksum with its manifest. With ``deep=True``, or
        when there is no manifest to trust, the file is also loaded in an isolated child process
        (memory-capped, with a timeout) that reports its class, dimension, ntotal and metric, checks
        its structure and runs the canary queries; a file faiss chokes on cannot crash the host.

        Sidecars are checked against the manifest too (size and checksum; their contents are
        never interpreted: a pickle is never unpickled).

        Args:
            deep: Also load the index in a child process.
            progress: Called as ``progress(step, steps)`` as the checks go (the isolated load is
                the long step of a deep check).

        Returns:
            An IndexHealth; truthy when healthy. An empty index is healthy.
        """
        health = self._diagnosis(deep=deep, progress=progress).health
        if health.advice and " DIR" in health.advice:
            # The checks name the commands with a DIR placeholder: make them runnable as printed.
            health = attrs.evolve(
                health, advice=health.advice.replace(" DIR", f" {self.cli_args()}")
            )
        return health

    def cli_args(self) -> str:
        """
        The ``safla-diag vector`` arguments that name this index: its folder (shell-quoted), plus
        ``--backup-dir`` and ``--index-file`` where they differ from the command line's defaults.
        """
        args = [shlex.quote(str(self.data_dir))]
        if os.path.normpath(self.backup_dir) != os.path.normpath(self.data_dir / "backups"):
            args += ["--backup-dir", shlex.quote(str(self.backup_dir))]
        if self.index_file != _DEFAULT_INDEX_FILE:
            args += ["--index-file", shlex.quote(self.index_file)]
        return " ".join(args)

    def _diagnosis(
        self,
        *,
        deep: bool,
        probed: ProbeResult | None = None,
        progress: Progress | None = None,
    ) -> Diagnosis:
        return diagnose_index(
            self._live,
            deep=deep,
            dimension=self.dimension,
            run_probe=self._probe,
            probed=probed,
            progress=progress,
        )

    def _probe(self, manifest: Manifest | None) -> ProbeResult:
        job = ProbeJob(path=str(self.index_path), canaries=manifest.canaries if manifest else None)
        return probe_files([job], timeout=self.probe_timeout, memory_factor=self.memory_factor)[0]

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
                fd = self._live.open()
            except OSError:  # missing, or not a file: the diagnosis says which
                fd = -1
            try:
                found = self._diagnosis(deep=deep)
                if not found.health.ok:
                    raise IndexCorruptionError(f"{self.index_path.name}: {found.health.problem}")
                # Files are only ever replaced, never rewritten: if the name still points at the
                # inode we hold, the bytes the check verified are the bytes we are about to read.
                if fd < 0 or not self._live.same_file(fd):
                    continue
                expected = found.expected_digest(self.index_file)
                if expected is None:  # pragma: no cover - a healthy diagnosis always has one
                    raise IndexCorruptionError(f"{self.index_path.name} could not be verified")
                index = self._live.read_verified(fd, *expected)
                info, known = _faiss.describe(index), found.known_shape()
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

    # ---------------------------------------------------------------------------- save

    def save_index(
        self,
        index: Any,
        *,
        source: str | os.PathLike[str] | None = None,
        ids_source: str | os.PathLike[str] | None = None,
        canaries: int = 4,
        sidecars: Mapping[str, bytes] | None = None,
        keep_old: bool = False,
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
            sidecars: New contents of sidecar files (``{name: bytes}``), committed with the index
                in one manifest: a crash leaves the old bundle or the new one, never a mix. A
                declared sidecar not given keeps its current bytes.
            keep_old: Keep the replaced index as ``.replaced-*`` (``.corrupt-*`` when it was
                damaged), bounded in number like backups.

        Returns:
            The path of the index file.

        Raises:
            TypeError: When ``index`` is not a faiss index.
            ValueError: When its dimension is not the configured one, or a sidecar is not declared.
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
        for name, data in (sidecars or {}).items():
            if name not in self.sidecars:
                raise ValueError(f"{name!r} is not a declared sidecar (sidecars={self.sidecars})")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"sidecar {name!r} must be bytes, got {type(data).__name__}")
        source_info = source_record(source, ids_source, self.checksum)
        canary_doc = _faiss.make_canaries(index, n=canaries) if canaries else None
        t0 = time.perf_counter()

        def manifest(generation: int, files: dict[str, dict[str, Any]]) -> Manifest:
            return Manifest.new(
                generation=generation,
                index=desc,
                files=files,
                algorithm=self.checksum,
                faiss_version=_faiss.version(),
                canaries=canary_doc,
                source=source_info,
                extra={"index_file": self.index_file, "index_id": index_id},
            )

        index_id = self._live.manifests().index_id or secrets.token_hex(8)
        generation, size = self._live.write(
            lambda write: _faiss.write_index_stream(index, write),
            self.checksum,
            manifest,
            sidecars={k: bytes(v) for k, v in (sidecars or {}).items()},
            keep_old=keep_old,
        )
        logger.info(
            "saved vector index generation %d (%d vectors, %d bytes) in %.3f s",
            generation, desc["ntotal"], size, time.perf_counter() - t0,
        )  # fmt: skip
        return str(self.index_path)

    def read_sidecar(self, name: str) -> bytes:
        """
        The bytes of a sidecar, verified against the manifest (size and checksum) as read.

        Args:
            name: A declared sidecar.

        Returns:
            Its contents.

        Raises:
            ValueError: When ``name`` is not a declared sidecar.
            IndexCorruptionError: When it is missing, damaged, or no manifest vouches for it.
        """
        if name not in self.sidecars:
            raise ValueError(f"{name!r} is not a declared sidecar (sidecars={self.sidecars})")
        return read_verified_sidecar(self._live, name)

    # ---------------------------------------------------------------------------- backups

    def backup_index(self, *, progress: Progress | None = None) -> str:
        """
        Take a verified backup of the live index as a new, immutable generation.

        The live file is copied while it is hashed and checked against its manifest (a damaged
        index is never backed up over good backups), fsynced, re-read and compared, and its
        manifest written last; the folder appears under its final name only when complete. Only the
        newest ``keep_backups`` are kept. The live index (and its sidecars) is verified against
        its manifest before a byte is copied, so a damaged index is refused at the cost of a read.

        Args:
            progress: Called as ``progress(bytes copied, bytes in all)``.

        Returns:
            The path of the new backup's folder.

        Raises:
            IndexCorruptionError: When the live index is missing or damaged.
            RecoveryError: When the copy does not read back as written.
        """
        make_dirs(self.backup_dir)
        with self._live.locked(reader=True):
            candidates = self._live.manifests().candidates
            try:
                fd_in = self._live.open()
            except FileNotFoundError:
                raise IndexCorruptionError(
                    f"there is no index to back up at {self.index_path}"
                ) from None
            except NotRegularFile as err:
                raise IndexCorruptionError(f"not backing up: {err.strerror}") from None
            try:
                if not candidates:
                    candidates = [self._adopted_manifest()]
                elif not self._live.cheap_ok():
                    found = self._diagnosis(deep=False)
                    raise IndexCorruptionError(
                        f"not backing up a damaged index: {found.health.problem}"
                    )
                path = self._backups.copy_in(
                    fd_in,
                    candidates,
                    data_dir=self.data_dir,
                    sidecars=self.sidecars,
                    progress=progress,
                )
            finally:
                os.close(fd_in)
        self._backups.apply_retention(keep=path)
        return str(path)

    def _adopted_manifest(self) -> Manifest:
        """A manifest for an index written without one, from a deep check that passes."""
        found = self._diagnosis(deep=True)
        probe = found.probe
        if not found.health.ok or probe is None or probe.info is None:
            raise IndexCorruptionError(f"not backing up a damaged index: {found.health.problem}")
        return Manifest.new(
            generation=0,
            index=probe.info,
            files={},
            algorithm=self.checksum,
            faiss_version="unknown (written without a manifest)",
            extra={"index_file": self.index_file, "index_id": secrets.token_hex(8)},
        )

    def list_backups(self, *, verify: bool = False) -> list[BackupInfo]:
        """
        The backups, newest first.

        Args:
            verify: Also check every backup's checksums (reads them all).

        Returns:
            One BackupInfo per backup folder; damaged ones have a ``problem``.
        """
        return self._backups.list(verify=verify)

    # ---------------------------------------------------------------------------- restore

    def restore_from_backup(
        self,
        backup_path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> bool:
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
            progress: Called as ``progress(bytes copied, bytes in all)`` for the backup being
                installed.

        Returns:
            True when a backup was restored, False when none could be.

        Raises:
            RecoveryError: When ``backup_path`` is not a backup in the backup folder.
            OSError: When the disk refuses (full, read-only); the live index is left as it was.
        """
        if backup_path is not None:
            folders = [self._backups.resolve(backup_path)]
        else:
            folders = self._backups.folders()
        skipped: list[BackupInfo] = []
        self.last_restored = None
        index_id = self._live.manifests().index_id
        try:
            for folder in folders:
                info, manifest = self._backups.inspect(folder, verify=False, index_id=index_id)
                problem = info.problem
                if manifest is not None and problem is None:
                    problem = self._live.install(
                        folder,
                        manifest,
                        restored_from=folder.name,
                        index_id=index_id,
                        progress=progress,
                    )
                    if problem is None:
                        self.last_restored = attrs.evolve(info, verified=True)
                        logger.warning("restored the vector index from backup %s", folder.name)
                        return True
                    info = attrs.evolve(info, problem=problem, verified=False)
                skipped.append(info)
                logger.warning("skipping backup %s: %s", folder.name, redact(problem or ""))
        finally:
            self.last_restore_skipped = tuple(skipped)
        logger.error("no usable backup to restore from in %s", redact(str(self.backup_dir)))
        return False

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
            metric: ``cosine`` (vectors are normalised), ``l2``, ``inner_product``, or
                ``hamming`` for a binary index over uint8 codes of shape (n, d / 8).
            factory: A faiss factory string: ``Flat``, ``IVF1024,Flat``, ``HNSW32``, ... (for
                ``hamming``, the binary factory: ``Flat``, ``IVF64``, ``HNSW32``, ``Hash2x8``).
            batch_size: Vectors added per batch.
            ids: Ids (a ``.npy`` file or an array of n int64), to wrap the index in an IndexIDMap2.
            progress: Called as ``progress(done, total)`` after each batch; otherwise progress
                is logged at INFO. The index it replaces is kept as ``.replaced-*``.
            train_size: Vectors sampled to train IVF/PQ indexes (default: enough for the lists).

        Returns:
            True once the new index is saved (then ``diagnose()`` passes).

        Raises:
            ValueError: For a bad argument (metric, a factory faiss cannot parse, shape, dimension,
                ids).
            RecoveryError: When the source vectors contain NaN or infinity, no source is known,
                or the factory cannot be built over these vectors (``HNSW0``, more IVF lists than
                vectors, ``IDMap`` without ids); faiss never sees a factory it would abort on.
        """
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if vectors_source is None:
            vectors_source, ids = self._recorded_source(ids)
        want = dimension if dimension is not None else self.dimension
        x, source_path = load_vectors(vectors_source, dimension=want, binary=metric == "hamming")
        id_array, ids_path = load_ids(ids, int(x.shape[0])) if ids is not None else (None, None)
        index = build(
            x,
            ids=id_array,
            factory=factory,
            metric=metric,
            batch_size=batch_size,
            train_size=train_size,
            progress=progress,
        )
        # The index being replaced is kept aside (bounded in number, like backups).
        self.save_index(index, source=source_path, ids_source=ids_path, keep_old=True)
        return True

    def _recorded_source(self, ids: Any) -> tuple[str, Any]:
        current = self._live.manifests().current
        recorded = current.source if current else None
        if not recorded:
            raise RecoveryError(
                "no source vectors given and none recorded in the manifest; pass a .npy file"
            )
        if ids is None and recorded.get("ids"):
            ids = recorded["ids"]["path"]
        return str(recorded["path"]), ids

    # ---------------------------------------------------------------------------- async twins

    async def adiagnose(
        self, *, deep: bool = False, progress: Progress | None = None
    ) -> IndexHealth:
        """:meth:`diagnose`, run in the loop's default executor."""
        return await off_loop(self.diagnose, deep=deep, progress=progress)

    async def adetect_corruption(self) -> bool:
        """:meth:`detect_corruption`, run in the loop's default executor."""
        return await off_loop(self.detect_corruption)

    async def asave_index(self, index: Any, **kwargs: Any) -> str:
        """:meth:`save_index`, run in the loop's default executor."""
        return await off_loop(self.save_index, index, **kwargs)

    async def aload_index(self, *, deep: bool = False) -> Any:
        """:meth:`load_index`, run in the loop's default executor."""
        return await off_loop(self.load_index, deep=deep)

    async def abackup_index(self, *, progress: Progress | None = None) -> str:
        """:meth:`backup_index`, run in the loop's default executor."""
        return await off_loop(self.backup_index, progress=progress)

    async def arestore_from_backup(
        self,
        backup_path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> bool:
        """:meth:`restore_from_backup`, run in the loop's default executor."""
        return await off_loop(self.restore_from_backup, backup_path, progress=progress)

    async def aread_sidecar(self, name: str) -> bytes:
        """:meth:`read_sidecar`, run in the loop's default executor."""
        return await off_loop(self.read_sidecar, name)

    async def arebuild_index(self, vectors_source: Any = None, **kwargs: Any) -> bool:
        """:meth:`rebuild_index`, run in the loop's default executor."""
        return await off_loop(self.rebuild_index, vectors_source, **kwargs)

    async def alist_backups(self, *, verify: bool = False) -> list[BackupInfo]:
        """:meth:`list_backups`, run in the loop's default executor."""
        return await off_loop(self.list_backups, verify=verify)
