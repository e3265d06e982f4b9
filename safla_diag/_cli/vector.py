"""
`safla-diag vector`: check, back up, restore and rebuild a FAISS vector index.

Exit codes, for scripts and Kubernetes probes: 0 healthy / done, 1 unhealthy / failed, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import EXIT_FINDINGS, EXIT_OK, UsageError, _term

__all__ = ["register", "run"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def register(sub: Any) -> None:
    """Add the `vector` command group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "vector",
        help="check, back up, restore and rebuild the FAISS vector index",
        description="Check, back up, restore and rebuild a FAISS vector index. "
        "Exit 0 healthy/done, 1 unhealthy/failed, 2 usage.",
    )
    actions = p.add_subparsers(dest="vector_action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("dir", metavar="DIR", help="the folder of the live index")
        q.add_argument(
            "--backup-dir", metavar="PATH", help="the backup folder (default: DIR/backups)"
        )
        q.add_argument(
            "--index-file",
            help="the index's file name in DIR (by default, the configuration's index_file)",
        )
        q.add_argument("--dimension", type=_positive_int, help="the dimension the host expects")
        q.add_argument(
            "--sidecar",
            action="append",
            default=[],
            metavar="NAME",
            help="a file in DIR that belongs to the index (repeatable; e.g. index.pkl)",
        )
        q.add_argument("--json", action="store_true", help="print JSON instead of text")
        q.set_defaults(func=run)

    hc = actions.add_parser(
        "health-check",
        help="check the index (exit 0 healthy, 1 unhealthy)",
        description="Check size and checksum against the manifest; --deep also loads the index "
        "in an isolated child process and runs the canary queries.",
    )
    common(hc)
    hc.add_argument("--deep", action="store_true", help="also load it in an isolated process")

    bk = actions.add_parser("backup", help="take a verified backup of the index")
    common(bk)
    bk.add_argument("--keep", type=_positive_int, default=5, help="backups to keep (default 5)")

    rs = actions.add_parser(
        "restore", help="restore the newest good backup (or --backup PATH), atomically"
    )
    common(rs)
    rs.add_argument("--backup", metavar="PATH", help="a backup folder inside the backup folder")

    ls = actions.add_parser("list-backups", help="list the backups, newest first")
    common(ls)
    ls.add_argument("--verify", action="store_true", help="verify every backup's checksum")

    rb = actions.add_parser(
        "rebuild-index", help="rebuild the index from a .npy file of vectors, and save it"
    )
    common(rb)
    rb.add_argument("--from", dest="source", required=True, metavar="FILE.npy", help="the vectors")
    rb.add_argument("--ids", metavar="FILE.npy", help="int64 ids, one per vector")
    rb.add_argument("--factory", default="Flat", help="faiss factory string (default Flat)")
    rb.add_argument(
        "--metric",
        default="cosine",
        choices=["cosine", "l2", "inner_product", "hamming"],
        help="metric (hamming: a binary index over uint8 codes, d/8 bytes a row)",
    )
    rb.add_argument("--batch-size", type=_positive_int, default=65536, help="vectors per batch")


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")


def run(args: argparse.Namespace) -> int:
    """Run one `vector` action; returns the exit code."""
    try:
        return _run(args)
    except OSError as err:
        # The disk or the permissions refused the work (full, read-only, EACCES): the command
        # line was fine, the operation failed.
        if args.vector_action not in ("backup", "restore", "rebuild-index"):
            raise
        what = args.vector_action.replace("-index", "")
        name = f": {err.filename}" if getattr(err, "filename", None) else ""
        reason = f"{err.strerror or err}{name}"
        if isinstance(err, PermissionError):
            reason += " (check the owner and mode of the folders, or a read-only mount)"
        _emit(args, {"ok": False, "error": reason}, f"{what} failed: {reason}")
        return EXIT_FINDINGS


def _run(args: argparse.Namespace) -> int:
    from ..config import default
    from ..vector import VectorIndexRecovery

    data_dir = Path(args.dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"{data_dir} is not a folder")
    backup_dir = Path(args.backup_dir) if args.backup_dir else data_dir / "backups"
    try:
        recovery = VectorIndexRecovery(
            data_dir,
            backup_dir,
            index_file=default("index_file") if args.index_file is None else args.index_file,
            dimension=args.dimension,
            keep_backups=getattr(args, "keep", 5),
            sidecars=args.sidecar,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    action = args.vector_action
    if action == "health-check":
        with _term.progress("deep check" if args.deep else "check") as shown:
            health = recovery.diagnose(deep=args.deep, progress=shown)
        _emit(args, health.to_dict(), health.to_text())
        return EXIT_OK if health.ok else EXIT_FINDINGS
    if action == "list-backups":
        infos = recovery.list_backups(verify=args.verify)
        text = "\n".join(i.to_text() for i in infos) or f"no backups in {backup_dir}"
        _emit(args, {"backups": [i.to_dict() for i in infos]}, text)
        return EXIT_OK if all(i.ok for i in infos) else EXIT_FINDINGS
    if action == "backup":
        from .._errors import IndexCorruptionError

        try:
            with _term.progress("backup", unit="bytes") as shown:
                path = recovery.backup_index(progress=shown)
        except IndexCorruptionError as err:
            _emit(args, {"ok": False, "error": str(err)}, f"backup refused: {err}")
            return EXIT_FINDINGS
        _emit(args, {"ok": True, "backup": path}, f"backed up to {path}")
        return EXIT_OK
    if action == "restore":
        with _term.progress("restore", unit="bytes") as shown:
            restored = recovery.restore_from_backup(args.backup, progress=shown)
        skipped = [{"name": s.name, "problem": s.problem} for s in recovery.last_restore_skipped]
        lines = [f"skipped {s['name']}: {s['problem']}" for s in skipped]
        used = recovery.last_restored
        if restored and used is not None:
            lines.append(f"restored {used.name} (ntotal={used.ntotal}) into {recovery.index_path}")
        else:
            lines.append(f"nothing restored: no usable backup in {backup_dir}")
        doc = {
            "ok": restored,
            "restored": used.name if used else None,
            "skipped": skipped,
        }
        _emit(args, doc, "\n".join(lines))
        return EXIT_OK if restored else EXIT_FINDINGS
    if action == "rebuild-index":
        from .._errors import RecoveryError

        source = Path(args.source)
        if not source.is_file():
            raise UsageError(f"no such file: {source}")
        try:
            with _term.progress("rebuild") as shown:
                recovery.rebuild_index(
                    source,
                    ids=args.ids,
                    factory=args.factory,
                    metric=args.metric,
                    batch_size=args.batch_size,
                    progress=shown,
                )
        except ValueError as err:
            raise UsageError(str(err)) from None
        except RecoveryError as err:  # the data, not the command line: a failed rebuild
            _emit(args, {"ok": False, "error": str(err)}, f"rebuild failed: {err}")
            return EXIT_FINDINGS
        health = recovery.diagnose()
        _emit(
            args,
            {"ok": health.ok, "health": health.to_dict()},
            f"rebuilt {recovery.index_path}\n{health.to_text()}",
        )
        return EXIT_OK if health.ok else EXIT_FINDINGS
    raise UsageError(f"unknown action {action!r}")  # pragma: no cover - argparse guards it
