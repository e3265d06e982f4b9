"""
The manifest: the commit point of a saved index (and the record of a backup).

It is JSON with a checksum of its own canonical body, so a damaged manifest is detected too. The
file primitives it is written with live in :mod:`._fs`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._fs import ALGORITHMS, atomic_write_bytes, read_regular

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_MANIFEST_BYTES", "Manifest", "ManifestError"]

FORMAT = "safla-diag-vector-manifest"
FORMAT_VERSION = 1
#: A manifest is a few KiB (its canaries dominate); anything past this is not one of ours.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ManifestError(ValueError):
    """A manifest is missing a field, has a wrong type, or fails its own checksum."""


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _want(d: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ManifestError(f"{where}: missing {key!r}")
    value = d[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ManifestError(f"{where}: {key!r} has the wrong type")
    if not isinstance(value, types):
        raise ManifestError(f"{where}: {key!r} has the wrong type")
    return value


class Manifest:
    """
    The manifest of a saved index (or of a backup): what the files must be, and what is inside.

    It is JSON with a checksum of its own canonical body, so a damaged manifest is detected too.
    """

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    # Fields used by the rest of the layer.
    @property
    def generation(self) -> int:
        return int(self.body["generation"])

    @property
    def algorithm(self) -> str:
        return str(self.body["checksum_algorithm"])

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = self.body["files"]
        return files

    @property
    def index(self) -> dict[str, Any]:
        index: dict[str, Any] = self.body["index"]
        return index

    @property
    def canaries(self) -> dict[str, Any] | None:
        c: dict[str, Any] | None = self.body.get("canaries")
        return c

    @property
    def source(self) -> dict[str, Any] | None:
        s: dict[str, Any] | None = self.body.get("source")
        return s

    @property
    def created_at(self) -> float:
        return float(self.body["created_at"])

    @classmethod
    def new(
        cls,
        *,
        generation: int,
        index: Mapping[str, Any],
        files: Mapping[str, Mapping[str, Any]],
        algorithm: str,
        faiss_version: str,
        canaries: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Build a manifest; ``created_at`` is now."""
        body: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "generation": generation,
            "created_at": time.time(),
            "created_at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "faiss_version": faiss_version,
            "checksum_algorithm": algorithm,
            "index": dict(index),
            "files": {k: dict(v) for k, v in files.items()},
            "canaries": dict(canaries) if canaries else None,
            "source": dict(source) if source else None,
        }
        if extra:
            body.update(extra)
        return cls(body)

    def evolve(self, **changes: Any) -> Manifest:
        """A copy with some top-level fields changed (``created_at`` kept unless given)."""
        body = json.loads(json.dumps(self.body))
        body.update(changes)
        return Manifest(body)

    def to_bytes(self) -> bytes:
        """Serialise, with the self-checksum."""
        body = dict(self.body)
        body.pop("self_checksum", None)
        body["self_checksum"] = "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "manifest") -> Manifest:
        """
        Parse and validate a manifest.

        Raises:
            ManifestError: When it is not valid JSON, is not ours, fails its self-checksum or lacks
                a field.
        """
        try:
            body = json.loads(data)
        except (ValueError, RecursionError) as err:
            raise ManifestError(f"{where} is not valid JSON ({err})") from None
        if not isinstance(body, dict):
            raise ManifestError(f"{where} is not a JSON object")
        if body.get("format") != FORMAT:
            raise ManifestError(f"{where} is not a safla-diag vector manifest")
        if body.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"{where} has format version {body.get('format_version')!r}; "
                f"this version reads {FORMAT_VERSION}"
            )
        stored = body.pop("self_checksum", None)
        expected = "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()
        if stored != expected:
            raise ManifestError(f"{where} fails its own checksum (it was damaged or edited)")
        if _want(body, "generation", int, where) < 0:
            raise ManifestError(f"{where}: generation {body['generation']} is negative")
        _want(body, "created_at", (int, float), where)
        algorithm = _want(body, "checksum_algorithm", str, where)
        if algorithm not in ALGORITHMS:
            raise ManifestError(f"{where}: unknown checksum algorithm {algorithm!r}")
        index = _want(body, "index", dict, where)
        for key, types in (
            ("class", str),
            ("dimension", int),
            ("ntotal", int),
            ("metric", str),
            ("is_trained", bool),
        ):
            _want(index, key, types, f"{where} index")
        files = _want(body, "files", dict, where)
        if not files:
            raise ManifestError(f"{where} lists no files")
        for name, entry in files.items():
            if not isinstance(entry, dict) or "/" in name or name.startswith("."):
                raise ManifestError(f"{where}: bad file entry {name!r}")
            _want(entry, "size", int, f"{where} file {name!r}")
            _want(entry, "checksum", str, f"{where} file {name!r}")
        return cls(body)

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        """
        Read a manifest file; None when it does not exist.

        Raises:
            ManifestError: When it exists but is damaged.
        """
        try:
            data = read_regular(path, cap=MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            return None
        except OSError as err:  # a FIFO, /dev/zero, a folder, a huge file: damaged, not a hang
            raise ManifestError(
                f"manifest {path.name} cannot be used: {err.strerror or err}"
            ) from None
        return cls.from_bytes(data, where=f"manifest {path.name}")

    def write(self, path: Path, *, sync_dir: bool = True) -> None:
        """Write atomically (temp, fsync, replace, fsync of the folder)."""
        atomic_write_bytes(path, self.to_bytes(), sync_dir=sync_dir)
