"""
The backup folder: one folder per backup, named ``<UTC time with microseconds>Z-g<generation>``,
holding a copy of the index and its own ``manifest.json``, built in a temp folder and renamed into
place when complete and verified. Indexes may share a backup folder: each sees and prunes only its
own backups.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .._errors import IndexCorruptionError, RecoveryError
from .._redact import redact
from ._fs import copy_to_new_file, fsync_dir, hash_file
from ._health import BackupInfo
from ._live import stamp
from ._manifest import Manifest, ManifestError

__all__ = ["BACKUP_MANIFEST", "BackupFolder"]

logger = logging.getLogger("safla_diag.vector")

BACKUP_MANIFEST = "manifest.json"
_BACKUP_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-g\d{6,}(?:-\d+)?$")


class BackupFolder:
    """
    The backups of one index in ``backup_dir``.

    Args:
        backup_dir: The backup folder.
        index_file: The index's file name (names the backups' temp folders and their contents).
        index_path: The live index's path, recorded in each backup's manifest.
        dimension: The dimension the host expects; a backup of another one is unusable.
        keep: How many backups retention keeps.
    """

    def __init__(
        self,
        backup_dir: Path,
        *,
        index_file: str,
        index_path: Path,
        dimension: int | None,
        keep: int,
    ) -> None:
        self.root = backup_dir
        self.index_file = index_file
        self.index_path = index_path
        self.dimension = dimension
        self.keep = keep

    def _work_name(self, middle: str) -> Path:
        # Named after the index: indexes may share the backup folder, each cleans up its own.
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        return self.root / f".{self.index_file}.{middle}.tmp-{token}"

    # ------------------------------------------------------------------------- writing

    def copy_in(self, fd_in: int, candidates: list[Manifest]) -> Path:
        """
        Copy the open live index into a new backup, verified against one of ``candidates``.

        Raises:
            IndexCorruptionError: When the copy matches none of the manifests.
            RecoveryError: When the copy does not read back as written.
        """
        algorithm = candidates[0].algorithm
        work = self._work_name("backup")
        os.mkdir(work)
        try:
            dest = work / self.index_file
            on_disk = copy_to_new_file(fd_in, dest)
            size, digest = hash_file(dest, algorithm)
            source = _matching(candidates, self.index_file, size, digest)
            if source is None:
                raise IndexCorruptionError(
                    "not backing up: the live index does not match its manifest (it is damaged); "
                    "restore or rebuild it first"
                )
            if on_disk != size or os.fstat(fd_in).st_size != size:
                raise RecoveryError(f"the backup copy did not read back as written ({dest})")
            name = f"{stamp()}-g{source.generation:06d}"
            manifest = source.evolve(
                backup_of=str(self.index_path),
                backed_up_at=time.time(),
                index_file=self.index_file,
            )
            manifest.write(work / BACKUP_MANIFEST)
            fsync_dir(work)
            final = self._rename_unique(work, name)
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        logger.info("backed up generation %d to %s", source.generation, redact(str(final)))
        return final

    def _rename_unique(self, work: Path, name: str) -> Path:
        for n in range(1000):
            final = self.root / (name if n == 0 else f"{name}-{n}")
            try:
                os.rename(work, final)  # fails if it exists (a non-empty folder)
            except OSError as err:
                if err.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.exists():
                    continue
                raise
            return final
        raise RecoveryError("could not find a free backup name")  # pragma: no cover

    def apply_retention(self, *, keep: Path) -> None:
        """Remove all but the newest ``keep`` backups of this index (never ``keep`` itself)."""
        for old in self.folders()[self.keep :]:
            if old == keep:
                continue
            # Rename first, so that a half-deleted backup never looks like a damaged one.
            doomed = self._work_name(old.name)
            try:
                os.rename(old, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            logger.info("removed old backup %s", old.name)

    # ------------------------------------------------------------------------- reading

    def folders(self) -> list[Path]:
        """This index's backup folders, newest first."""
        try:
            entries = [e for e in os.scandir(self.root) if _BACKUP_NAME.match(e.name)]
        except FileNotFoundError:
            return []
        folders = (Path(e.path) for e in entries if e.is_dir())
        return sorted((f for f in folders if self._is_ours(f)), key=lambda p: p.name, reverse=True)

    def _is_ours(self, folder: Path) -> bool:
        """
        Whether a backup folder holds a backup of this index (indexes may share a backup folder).

        A backup whose manifest cannot be read counts as ours: it is then listed as damaged, and
        retention may remove it, rather than it lingering unseen.
        """
        try:
            manifest = Manifest.read(folder / BACKUP_MANIFEST)
        except (ManifestError, OSError):
            return True
        if manifest is None:
            return True
        return bool(manifest.body.get("index_file", self.index_file) == self.index_file)

    def resolve(self, backup_path: str | os.PathLike[str]) -> Path:
        """
        The backup folder ``backup_path`` names (a folder, or a file in one).

        Raises:
            RecoveryError: When it is not a finished backup in the backup folder.
        """
        root = self.root.resolve()
        path = Path(backup_path)
        if not path.is_absolute() and not path.exists():
            path = self.root / path
        path = path.resolve()
        if path.is_file():
            path = path.parent
        # Only a finished backup generation: not a temp folder still being written, nor one
        # that retention is deleting, nor anything else someone put in the backup folder.
        if path.parent != root or not _BACKUP_NAME.match(path.name):
            raise RecoveryError(
                f"refusing to restore from {backup_path}: it is not a backup in {self.root}"
            )
        return path

    def inspect(self, folder: Path, *, verify: bool) -> tuple[BackupInfo, Manifest | None]:
        """Describe one backup; with ``verify``, hash its index against its manifest."""
        base: dict[str, Any] = {"path": str(folder), "name": folder.name}
        try:
            manifest = Manifest.read(folder / BACKUP_MANIFEST)
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

    def list(self, *, verify: bool = False) -> list[BackupInfo]:
        """One BackupInfo per backup of this index, newest first."""
        return [self.inspect(f, verify=verify)[0] for f in self.folders()]


def _matching(candidates: list[Manifest], name: str, size: int, digest: str) -> Manifest | None:
    """The candidate manifest a copy of ``name`` with ``size`` and ``digest`` matches."""
    for m in candidates:
        entry = m.files.get(name)
        if entry is None and not m.files:  # built just now from a deep check
            return m.evolve(files={name: {"size": size, "checksum": digest}})
        if entry is not None and (entry["size"], entry["checksum"]) == (size, digest):
            return m
    return None
