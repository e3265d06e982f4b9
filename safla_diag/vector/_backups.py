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
from ._fs import copy_to_new_file, fsync_dir, hash_file, open_regular
from ._health import BackupInfo
from ._live import Progress, Ticker, stamp
from ._manifest import Manifest, ManifestError

__all__ = ["BACKUP_MANIFEST", "BackupFolder"]

logger = logging.getLogger("safla_diag.vector")

BACKUP_MANIFEST = "manifest.json"
_CLOCK_SKEW = 300.0  # seconds a backup's name may lie ahead of this clock (another host's)
_NAME_SLACK = 3600.0
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

    def copy_in(
        self,
        fd_in: int,
        candidates: list[Manifest],
        *,
        data_dir: Path,
        sidecars: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> Path:
        """
        Copy the open live index and its sidecars into a new backup, verified against one of
        ``candidates`` (a manifest without files adopts what it finds: a folder written without
        one).

        Raises:
            IndexCorruptionError: When a copy matches none of the manifests.
            RecoveryError: When a copy does not read back as written.
        """
        algorithm = candidates[0].algorithm
        adopting = len(candidates) == 1 and not candidates[0].files
        names = (
            sidecars if adopting else tuple(n for n in candidates[0].files if n != self.index_file)
        )
        total = os.fstat(fd_in).st_size + sum(_size(data_dir / n) for n in names)
        tick = Ticker(progress, total)
        work = self._work_name("backup")
        os.mkdir(work)
        try:
            dest = work / self.index_file
            on_disk = copy_to_new_file(fd_in, dest, progress=tick.at(self.index_file))
            size, digest = hash_file(dest, algorithm)
            source = _matching(candidates, self.index_file, size, digest)
            if source is None:
                raise IndexCorruptionError(
                    "not backing up: the live index does not match its manifest (it is damaged); "
                    "restore or rebuild it first"
                )
            if on_disk != size or os.fstat(fd_in).st_size != size:
                raise RecoveryError(f"the backup copy did not read back as written ({dest})")
            files = dict(source.files)
            for name in names:
                if adopting and not (data_dir / name).exists():
                    continue
                files[name] = self._copy_sidecar(data_dir / name, work / name, source, tick)
            now = time.time()
            manifest = source.evolve(
                files=files,
                backup_of=str(self.index_path.absolute()),
                backed_up_at=now,
                index_file=self.index_file,
            )
            manifest.body.pop("staged", None)  # the live save's temp names mean nothing here
            manifest.write(work / BACKUP_MANIFEST)
            fsync_dir(work)
            final = self._rename_unique(work, f"{stamp(now)}-g{source.generation:06d}")
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        logger.info("backed up generation %d to %s", source.generation, redact(str(final)))
        return final

    @staticmethod
    def _copy_sidecar(src: Path, dest: Path, source: Manifest, tick: Ticker) -> dict[str, Any]:
        """Copy one sidecar; it must match ``source``'s entry when there is one."""
        try:
            fd = open_regular(src)
        except FileNotFoundError:
            raise IndexCorruptionError(
                f"not backing up: the sidecar {src.name} the manifest lists is missing"
            ) from None
        try:
            copy_to_new_file(fd, dest, progress=tick.at(src.name))
        finally:
            os.close(fd)
        size, digest = hash_file(dest, source.algorithm)
        entry = source.files.get(src.name)
        if entry is not None and (entry["size"], entry["checksum"]) != (size, digest):
            raise IndexCorruptionError(
                f"not backing up: the sidecar {src.name} does not match its manifest (damaged); "
                "restore or save the index again first"
            )
        return {"size": size, "checksum": digest}

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
        # Only real folders (a symlink named like a backup may point anywhere), and no name dated
        # in the future: the library names backups after the time they were taken, so a future
        # name was not written by it, and would otherwise always sort first.
        latest = stamp(time.time() + _CLOCK_SKEW)
        folders = (
            Path(e.path) for e in entries if e.is_dir(follow_symlinks=False) and e.name <= latest
        )
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
        if path.is_file() and not path.is_symlink():
            path = path.parent
        path = path.parent.resolve() / path.name
        # Only a finished backup generation: not a temp folder still being written, nor one
        # that retention is deleting, nor a symlink, nor anything else put in the backup folder.
        if (
            path.parent != root
            or not _BACKUP_NAME.match(path.name)
            or path.is_symlink()
            or not path.is_dir()
        ):
            raise RecoveryError(
                f"refusing to restore from {backup_path}: it is not a backup in {self.root}"
            )
        return path

    def inspect(
        self, folder: Path, *, verify: bool, index_id: str | None = None
    ) -> tuple[BackupInfo, Manifest | None]:
        """
        Describe one backup; with ``verify``, hash its index against its manifest.

        Args:
            folder: The backup's folder.
            verify: Also hash its index file.
            index_id: The live index's id, when known: a backup of another index is unusable.
        """
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
        theirs = manifest.body.get("index_id")
        if name != self.index_file or (index_id and theirs and theirs != index_id):
            problem = (
                f"it is a backup of another index ({manifest.body.get('backup_of', name)}), "
                f"not of {self.index_path.name}"
            )
        elif not _name_fits(folder.name, manifest):
            problem = "its name does not match its manifest (it was not made by safla-diag)"
        elif entry is None:
            problem, verified = f"its index file {name} is missing", False
        elif (problem := _files_problem(folder, manifest, self.index_file)) is not None:
            verified = False
        elif self.dimension is not None and idx["dimension"] != self.dimension:
            problem = f"it has dimension {idx['dimension']} but the host expects {self.dimension}"
        elif verify:
            problem = _hash_problem(folder, manifest, self.index_file)
            verified = problem is None
        return BackupInfo(**info, problem=problem, verified=verified), manifest

    def list(self, *, verify: bool = False) -> list[BackupInfo]:
        """One BackupInfo per backup of this index, newest first."""
        return [self.inspect(f, verify=verify)[0] for f in self.folders()]


def _what(name: str, index_file: str) -> str:
    return "index file" if name == index_file else f"sidecar {name}"


def _files_problem(folder: Path, manifest: Manifest, index_file: str) -> str | None:
    """The first file of the backup that is missing or has the wrong size, or None."""
    for name, entry in manifest.files.items():
        what = _what(name, index_file)
        try:
            st = (folder / name).stat()
        except FileNotFoundError:
            return (
                f"its {what} {name} is missing" if name == index_file else f"its {what} is missing"
            )
        if st.st_size != entry["size"]:
            return f"its {what} is {st.st_size} bytes, the manifest says {entry['size']}"
    return None


def _hash_problem(folder: Path, manifest: Manifest, index_file: str) -> str | None:
    """The first file of the backup whose checksum is not its manifest's, or None."""
    for name, entry in manifest.files.items():
        if hash_file(folder / name, manifest.algorithm)[1] != entry["checksum"]:
            what = _what(name, index_file)
            return (
                f"its {what}'s {manifest.algorithm} checksum does not match its manifest (damaged)"
            )
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _name_fits(name: str, manifest: Manifest) -> bool:
    """Whether a backup's name is the one the library gave it (its generation and its time)."""
    generation = name.split("-g", 1)[1].split("-", 1)[0]
    if int(generation) != manifest.generation:
        return False
    taken = manifest.body.get("backed_up_at")
    if not isinstance(taken, (int, float)) or isinstance(taken, bool):
        return True  # older backups: their time is only in their name
    # Named a moment before its manifest was written (older versions: a few seconds at most).
    return stamp(taken - _NAME_SLACK) <= name[: len(stamp(0))] <= stamp(taken)


def _matching(candidates: list[Manifest], name: str, size: int, digest: str) -> Manifest | None:
    """The candidate manifest a copy of ``name`` with ``size`` and ``digest`` matches."""
    for m in candidates:
        entry = m.files.get(name)
        if entry is None and not m.files:  # built just now from a deep check
            return m.evolve(files={name: {"size": size, "checksum": digest}})
        if entry is not None and (entry["size"], entry["checksum"]) == (size, digest):
            return m
    return None
