"""
Diagnosis of the live index: a function of what is on disk (and of the isolated load), returning a
frozen :class:`Diagnosis`.

The checks run cheapest first and stop at the first one whose failure makes the next meaningless:
the file is there, its size and checksum match a manifest, its dimension is the host's, and (deep,
or when no manifest vouches for it) faiss loads it in the isolated child and our plausibility checks
and canary queries pass.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import IndexCorruptionError
from .._redact import redact
from ._fs import NotRegularFile, hash_file, new_hasher, read_regular
from ._health import Check, IndexHealth
from ._live import LiveIndex, Manifests
from ._manifest import Manifest
from ._probe import ProbeResult

__all__ = [
    "ADVICE_PERMISSION",
    "ADVICE_RESTORE",
    "Diagnosis",
    "diagnose_index",
    "judge_probe",
    "read_verified_sidecar",
]

logger = logging.getLogger("safla_diag.vector")

ADVICE_RESTORE = (
    "restore the newest good backup (safla-diag vector restore DIR) or rebuild from the source "
    "vectors (safla-diag vector rebuild-index DIR --from FILE.npy)"
)

ADVICE_PERMISSION = (
    "the file is not damaged as far as we know: give this process (uid {uid}) read access to it "
    "and its folder (check the owner, mode and any read-only mount), then check again"
)

RunProbe = Callable[[Manifest | None], ProbeResult]


@dataclass(frozen=True)
class Diagnosis:
    """
    What a diagnosis found, for the facade's methods.

    Attributes:
        health: The report.
        matched: The manifest the live file matches (size and checksum), if any.
        probe: What the isolated load found, when it ran.
    """

    health: IndexHealth
    matched: Manifest | None = None
    probe: ProbeResult | None = None

    def expected_digest(self, name: str) -> tuple[str, tuple[int, str]] | None:
        """(algorithm, (size, digest)) the verified file ``name`` had, to check a later read."""
        if self.matched is not None:
            entry = self.matched.files[name]
            return self.matched.algorithm, (entry["size"], entry["checksum"])
        p = self.probe
        if p is not None and p.file_digest and p.file_size is not None:
            return "xxh3_128", (p.file_size, p.file_digest)
        return None

    def known_shape(self) -> dict[str, Any] | None:
        """Class, dimension, ntotal and metric from the manifest or the isolated load."""
        if self.matched is not None:
            return self.matched.index
        return self.probe.info if self.probe is not None else None


@dataclass
class _Findings:
    """The checks, notes and facts gathered so far (local to one diagnosis)."""

    path: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    advice: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, passed: bool | None, detail: str, advice: str | None = None) -> bool:
        self.checks.append(Check(name=name, passed=passed, detail=detail))
        if passed is False and self.advice is None:
            self.advice = advice or ADVICE_RESTORE
        return passed is not False

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if c.passed is False), None)

    def unreadable(self, name: str, err: OSError) -> None:
        """EACCES: a permission problem, with advice about access rather than restoring."""
        detail = f"the index file cannot be read by this process: {err.strerror or err}"
        self.add(name, False, detail, ADVICE_PERMISSION.format(uid=os.geteuid()))

    def fill_from(self, m: Manifest) -> None:
        self.facts.update(_shape(m.index), generation=m.generation)

    def check_dimension(self, expected: int | None, dimension: int) -> None:
        if expected is None:
            return
        if dimension == expected:
            self.add("dimension", True, f"{dimension}, as configured")
        else:
            self.add(
                "dimension",
                False,
                f"the index has dimension {dimension} but the host expects {expected}",
                f"rebuild the index from vectors of dimension {expected} "
                "(safla-diag vector rebuild-index DIR --from FILE.npy), or fix vector_dimension",
            )


def _shape(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "ntotal": info.get("ntotal"),
        "dimension": info.get("dimension"),
        "index_class": info.get("class"),
        "metric": info.get("metric"),
    }


def diagnose_index(
    live: LiveIndex,
    *,
    deep: bool,
    dimension: int | None,
    run_probe: RunProbe,
    probed: ProbeResult | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> Diagnosis:
    """
    Check the live index, cheapest check first.

    Args:
        live: The live index.
        deep: Also load it in the isolated child (always done when no manifest vouches for it).
        dimension: The dimension the host expects, if any.
        run_probe: Runs the isolated load, given the manifest whose canaries to check.
        probed: A result of the isolated load already obtained (many files in one child).
        progress: Called as ``progress(step, steps)``: the cheap checks, then the isolated load.
    """
    t0 = time.perf_counter()
    steps = 2 if deep else 1
    if progress is not None:
        progress(0, steps)
    found = _Findings(path=str(live.index_path))
    manifests = live.manifests()
    found.facts["manifest"] = manifests.current is not None
    matched: Manifest | None = None
    probe: ProbeResult | None = None
    size = _check_present(live, found)
    if size is not None:
        matched, go_on = _check_manifests(live, manifests, size, found, dimension)
        if go_on:
            go_on = _check_sidecars(live, manifests, matched, found)
        if progress is not None:
            progress(1, steps)
        if go_on and size == 0:
            found.add("isolated load", False, "the file is empty (0 bytes)")
        elif go_on and (deep or matched is None):
            probe = probed if probed is not None else run_probe(matched)
            _check_probe(found, probe, matched, size, dimension)
    if progress is not None:
        progress(steps, steps)
    return _finish(found, matched, probe, deep=probe is not None, t0=t0)


def _finish(
    found: _Findings, matched: Manifest | None, probe: ProbeResult | None, *, deep: bool, t0: float
) -> Diagnosis:
    failed = found.failed
    health = IndexHealth(
        ok=failed is None,
        problem=None if failed is None else f"{failed.name}: {failed.detail}",
        advice=None if failed is None else found.advice,
        checks=tuple(found.checks),
        notes=tuple(found.notes),
        deep=deep,
        duration=time.perf_counter() - t0,
        path=found.path,
        **found.facts,
    )
    if failed is not None:
        logger.warning(
            "vector index %s is unhealthy: %s", redact(found.path), redact(health.problem or "")
        )
    return Diagnosis(health=health, matched=matched, probe=probe)


def _check_present(live: LiveIndex, found: _Findings) -> int | None:
    """The file's size, or None (with a failed check) when it is missing or cannot be read."""
    try:
        os.close(live.open())
        st = live.index_path.stat()
    except FileNotFoundError:
        where = "" if live.data_dir.is_dir() else " (its folder does not exist either)"
        found.add("file present", False, f"the index file {live.index_path.name} is missing{where}")
        return None
    except PermissionError as err:
        found.unreadable("file present", err)
        return None
    except NotRegularFile as err:
        found.add("file present", False, f"the index path is not a file: {err.strerror}")
        return None
    except OSError as err:
        found.add("file present", False, f"the index file cannot be read: {err.strerror or err}")
        return None
    found.facts["size"] = st.st_size
    found.add("file present", True, f"{st.st_size} bytes")
    return st.st_size


def _check_manifests(
    live: LiveIndex, manifests: Manifests, size: int, found: _Findings, dimension: int | None
) -> tuple[Manifest | None, bool]:
    """(the manifest the file matches, whether to go on to the isolated load)."""
    name = live.index_file
    candidates = manifests.candidates
    if manifests.problem is not None:
        found.add(
            "manifest",
            False,
            f"{manifests.problem}; the index's checksum cannot be verified",
            "run a deep check (health-check --deep); if it passes, save the index again to "
            "write a new manifest, otherwise " + ADVICE_RESTORE,
        )
    if not candidates:
        if manifests.problem is None:
            found.facts["checksum_ok"] = None
            found.notes.append(
                "no manifest: the file's checksum could not be verified (it was not written by "
                "save_index); only the isolated load and plausibility checks vouch for it"
            )
        return None, True
    sizes = [m.files.get(name, {}).get("size") for m in candidates]
    if size not in sizes:
        expected = sizes[0]
        if expected is None:
            found.add("manifest", False, f"the manifest does not list {name}")
        else:
            how = (
                f"{size - expected} bytes of garbage appended"
                if size > expected
                else f"truncated: {expected - size} bytes missing"
            )
            found.add("size", False, f"{size} bytes, the manifest says {expected} ({how})")
        found.fill_from(candidates[0])
        return None, False
    found.add("size", True, f"matches the manifest ({size} bytes)")
    matched = _match_checksum(live, candidates, size, found)
    if matched is None:
        found.fill_from(candidates[0])
        found.facts["checksum_ok"] = False
        return None, False
    found.facts["checksum_ok"] = True
    found.fill_from(matched)
    found.add(
        "checksum",
        True,
        f"{matched.algorithm} matches the manifest (generation {matched.generation})",
    )
    if matched is manifests.pending:
        found.notes.append(
            "a save was interrupted after the new index was in place; it is complete"
        )
    found.check_dimension(dimension, int(matched.index["dimension"]))
    return matched, found.failed is None


def _check_sidecars(
    live: LiveIndex, manifests: Manifests, matched: Manifest | None, found: _Findings
) -> bool:
    """Each sidecar against the manifest; whether to go on (no sidecar failed)."""
    names = list(live.sidecars)
    if matched is not None:
        names += [n for n in matched.files if n != live.index_file and n not in names]
    for name in names:
        path = live.data_dir / name
        entries = [(m, m.files[name]) for m in manifests.candidates if name in m.files]
        if not path.exists():
            found.add("sidecar", False, f"the sidecar {name} is missing")
            continue
        if matched is None or not entries:
            found.notes.append(
                f"sidecar {name}: no manifest lists it, so its checksum could not be verified"
                + ("" if matched is None else "; save the index again to protect it")
            )
            continue
        # The same save as the index: a sidecar of the other manifest is a mixed bundle.
        mine = [(m, e) for m, e in entries if m is matched]
        if not mine:
            found.add("sidecar", False, f"the manifest the index matches does not list {name}")
            continue
        passed, detail = _sidecar_verdict(path, name, mine)
        others = [(m, e) for m, e in entries if m is not matched]
        if not passed and others and _sidecar_verdict(path, name, others)[0]:
            detail = (
                f"{name} is from another save than the index (a save was interrupted; the next "
                "start of the library finishes it)"
            )
        found.add("sidecar", passed, detail)
    return found.failed is None


def _sidecar_verdict(
    path: Path, name: str, entries: list[tuple[Manifest, dict[str, Any]]]
) -> tuple[bool, str]:
    try:
        size = path.stat().st_size
        if size not in [e["size"] for _, e in entries]:
            expected = entries[0][1]["size"]
            return False, f"{name} is {size} bytes, the manifest says {expected}"
        for m, entry in entries:
            if hash_file(path, m.algorithm) == (entry["size"], entry["checksum"]):
                return True, f"{name} matches the manifest ({size} bytes)"
    except OSError as err:
        return False, f"{name} cannot be read: {err.strerror or err}"
    return False, f"{name}'s checksum differs from the manifest's (the content is damaged)"


def read_verified_sidecar(live: LiveIndex, name: str) -> bytes:
    """
    A sidecar's bytes, checked against every manifest that lists it while they are read.

    Raises:
        IndexCorruptionError: When it is missing, damaged, or no manifest lists it.
    """
    entries = [(m, m.files[name]) for m in live.manifests().candidates if name in m.files]
    if not entries:
        raise IndexCorruptionError(
            f"the sidecar {name} cannot be verified: no manifest lists it (save the index with "
            "save_index(index, sidecars={...}) first)"
        )
    cap = max(int(e["size"]) for _, e in entries)
    try:
        data = read_regular(live.data_dir / name, cap=cap)
    except FileNotFoundError:
        raise IndexCorruptionError(f"the sidecar {name} is missing") from None
    except OSError as err:
        raise IndexCorruptionError(f"the sidecar {name} cannot be read: {err.strerror}") from err
    for m, entry in entries:
        h = new_hasher(m.algorithm)
        h.update(data)
        if (len(data), h.hexdigest()) == (entry["size"], entry["checksum"]):
            return data
    raise IndexCorruptionError(
        f"the sidecar {name} does not match its manifest (damaged); restore the bundle from a "
        "backup (safla-diag vector restore DIR)"
    )


def _match_checksum(
    live: LiveIndex, candidates: list[Manifest], size: int, found: _Findings
) -> Manifest | None:
    """The first candidate whose checksum the file has; None with a failed check otherwise."""
    digests: dict[str, str] = {}
    for m in candidates:
        if m.algorithm not in digests:
            try:
                digests[m.algorithm] = hash_file(live.index_path, m.algorithm)[1]
            except PermissionError as err:
                found.unreadable("checksum", err)
                return None
            except OSError as err:  # a bad sector is a finding, not an exception
                found.add(
                    "checksum",
                    False,
                    f"the index file cannot be read to the end: {err.strerror or err}",
                )
                return None
        entry = m.files.get(live.index_file, {})
        if entry.get("size") == size and digests[m.algorithm] == entry.get("checksum"):
            return m
    found.add(
        "checksum",
        False,
        f"the file's {candidates[0].algorithm} checksum differs from the manifest's "
        "(the content is damaged)",
    )
    return None


def _check_probe(
    found: _Findings,
    probe: ProbeResult,
    manifest: Manifest | None,
    size: int,
    dimension: int | None,
) -> None:
    judge_probe(found.add, probe, manifest.index if manifest else None, size)
    info = probe.info or {}
    if info and manifest is None:
        found.facts.update(_shape(info))
        found.check_dimension(dimension, int(info["dimension"]))


_PROBE_WORDS = {
    "memory": "loading it needed more memory than the cap of a few times its size "
    "(a damaged size field?): {}",
    "crashed": "{} while loading it (faiss crashed on it; the host was not affected)",
    "error": "the check could not run: {}",
}


def judge_probe(
    add: Callable[..., bool],
    probe: ProbeResult,
    expected: dict[str, Any] | None,
    size: int,
) -> None:
    """Turn what the child found into checks (shared with the battery's bulk probe)."""
    if probe.status != "loaded":
        add("isolated load", False, _PROBE_WORDS.get(probe.status, "{}").format(probe.detail))
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
