"""The vector section: the index's health (cheap check) and its backups."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs

from ..._aio import off_loop
from .._context import Context, Outcome, plural
from .._report import finding
from .._settings import Settings

if TYPE_CHECKING:
    from ...vector import BackupInfo, IndexHealth

__all__ = ["applies", "vector"]


def applies(ctx: Context) -> bool:
    """The section runs when ``data_dir`` is configured."""
    return ctx.settings.data_dir is not None


@attrs.frozen
class _VectorState:
    health: IndexHealth
    backups: list[BackupInfo]
    backup_dir: str


def _backup_dir(settings: Settings, data_dir: str) -> str:
    return settings.backup_dir or os.path.join(data_dir, "backups")


def _vector_state(settings: Settings, data_dir: str) -> _VectorState:
    from ...vector import VectorIndexRecovery

    backup_dir = _backup_dir(settings, data_dir)
    recovery = VectorIndexRecovery(
        data_dir,
        backup_dir,
        index_file=settings.index_file,
        dimension=settings.vector_dimension,
    )
    # The cheap check: size and checksum against the manifest; a file without a manifest is
    # loaded in an isolated child, never in this process.
    health = recovery.diagnose()
    backups = recovery.list_backups(verify=False) if os.path.isdir(backup_dir) else []
    return _VectorState(health=health, backups=backups, backup_dir=backup_dir)


def _shape(health: IndexHealth) -> str:
    return ", ".join(
        part
        for part in (
            f"{health.ntotal} vectors" if health.ntotal is not None else "",
            f"dimension {health.dimension}" if health.dimension is not None else "",
            health.index_class or "",
            f"generation {health.generation}" if health.generation is not None else "",
        )
        if part
    )


async def vector(ctx: Context) -> Outcome:
    """The index's health and its usable backups, with runnable advice when it is broken."""
    data_dir = ctx.settings.data_dir
    assert data_dir is not None
    state = await off_loop(_vector_state, ctx.settings, data_dir)
    health, backups = state.health, state.backups
    usable = [b for b in backups if b.ok]
    facts = {
        **health.to_dict(),
        "backup_dir": state.backup_dir,
        "backups": len(backups),
        "newest_backup": usable[0].name if usable else None,
    }
    where = f"index in {data_dir}"
    if health.ok:
        checksum = {True: "checksum verified", False: "checksum differs", None: "no manifest"}
        findings = [
            finding(
                "vector",
                "info",
                f"{where} is healthy ({_shape(health)}; {checksum[health.checksum_ok]}; "
                f"{plural(len(usable), 'usable backup')})",
            )
        ]
        findings += [finding("vector", "info", note) for note in health.notes]
        return facts, findings
    # The vector layer's advice already names this index's folder and flags, runnable as printed.
    advice = health.advice or "restore it from a backup, or rebuild it"
    if usable:
        advice += f"; newest usable backup: {usable[0].name}"
    elif "restore" in advice:
        advice += f"; there is no usable backup in {state.backup_dir}, so rebuild"
    return facts, [finding("vector", "error", f"{where}: {health.problem}", advice)]
