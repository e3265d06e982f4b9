"""
The corruption battery: real Flat, IVF, HNSW and IDMap2 files, damaged in every way the issue lists,
checked with their manifests (the checksum catches everything) and without (only the isolated load
and the plausibility checks stand between a damaged file and the host).

The default run takes a sample of offsets and bits; ``-m slow`` runs the full battery.
"""

from __future__ import annotations

import resource
from collections import Counter
from pathlib import Path

import pytest

from safla_diag import VectorIndexRecovery
from safla_diag.vector._probe import bulk_probe

from ._damage import DIM, KINDS, damages, make_index, serialize

# Damage that must be caught even with no manifest: faiss rejects it, or it fails plausibility.
_ALWAYS_CAUGHT = (
    "truncated",
    "random file",
    "empty file",
    "garbage appended",
    "one byte appended",
    "wrong dimension",
)


def _cases(full: bool) -> list[tuple[str, str, bytes]]:
    """(kind, label, bytes) for every damaged file, plus a wrong-dimension index per kind."""
    cases = []
    for kind in KINDS:
        data = serialize(make_index(kind))
        cases += [(kind, label, bad) for label, bad in damages(data, full=full)]
        cases.append((kind, "wrong dimension", serialize(make_index(kind, d=DIM // 2))))
    return cases


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_with_manifests(tmp_path: Path, full: bool) -> Counter[str]:
    counts: Counter[str] = Counter()
    for kind in KINDS:
        folder = tmp_path / f"with-{kind}"
        writer = VectorIndexRecovery(folder, tmp_path / "backups")
        writer.save_index(make_index(kind))
        good = writer.index_path.read_bytes()
        rec = VectorIndexRecovery(folder, tmp_path / "backups", dimension=DIM)
        assert rec.diagnose().ok, "a healthy file was reported corrupt"
        counts["healthy"] += 1
        for label, bad in damages(good, full=full):
            rec.index_path.write_bytes(bad)
            health = rec.diagnose()
            assert not health.ok, f"{kind}: {label} was not detected"
            assert health.checks[-1].name in ("size", "checksum"), health.problem
            counts["damaged"] += 1
            counts["detected"] += 1
        rec.index_path.write_bytes(good)
        assert rec.diagnose().ok
        # An index of the wrong dimension, with its own valid manifest.
        other = tmp_path / f"with-{kind}-wrong-dim"
        VectorIndexRecovery(other, tmp_path / "backups").save_index(make_index(kind, d=DIM // 2))
        health = VectorIndexRecovery(other, tmp_path / "backups", dimension=DIM).diagnose()
        assert not health.ok and "dimension" in (health.problem or "")
        counts["damaged"] += 1
        counts["detected"] += 1
    return counts


def run_without_manifests(tmp_path: Path, full: bool) -> tuple[Counter[str], Counter[str]]:
    cases = _cases(full)
    healthy = [(kind, "healthy", serialize(make_index(kind))) for kind in KINDS]
    folders = []
    for i, (_kind, _label, data) in enumerate(healthy + cases):
        folder = tmp_path / f"bare-{i}"
        folder.mkdir()
        (folder / "vector_index.faiss").write_bytes(data)
        folders.append(folder)
    rss_before = _maxrss_mb()
    results = bulk_probe([str(f / "vector_index.faiss") for f in folders], timeout=60)
    # The host never loaded a suspect file: its peak memory did not move.
    assert _maxrss_mb() - rss_before < 64
    counts: Counter[str] = Counter()
    by_status: Counter[str] = Counter(r.status for r in results)
    for (kind, label, _), folder, result in zip(healthy + cases, folders, results, strict=True):
        rec = VectorIndexRecovery(folder, folder / "backups", dimension=DIM)
        health = rec._diagnosis(deep=True, probed=result).health
        assert health.checksum_ok is None
        assert any("could not be verified" in n for n in health.notes)
        if label == "healthy":
            assert health.ok, f"healthy {kind} reported corrupt: {health.problem}"
            counts["healthy"] += 1
            continue
        counts["damaged"] += 1
        if result.status != "loaded":
            assert not health.ok, f"{kind} {label}: faiss rejected it but it was reported ok"
            counts["rejected by faiss"] += 1
        elif not health.ok:
            counts["failed plausibility"] += 1
        else:
            counts[f"undetected ({label.split(' at ')[0]})"] += 1
        if label.startswith(_ALWAYS_CAUGHT):
            assert not health.ok, f"{kind} {label} was not detected without a manifest"
        if not health.ok:
            counts["detected"] += 1
    return counts, by_status


def test_battery_with_manifests_catches_everything(tmp_path: Path) -> None:
    """With manifests, every damaged file is reported corrupt by the cheap check; no healthy one is."""
    counts = run_with_manifests(tmp_path, full=False)
    print(f"\nbattery with manifests: {dict(counts)}")
    assert counts["detected"] == counts["damaged"] > 100


def test_battery_without_manifests_never_harms_the_host(tmp_path: Path) -> None:
    """
    Without manifests, every file faiss rejects or that fails plausibility is reported, the
    always-detectable kinds of damage (truncation, random, empty, appended, wrong dimension) are
    all caught, healthy files pass, and nothing crashes, hangs or balloons the test process.
    """
    counts, by_status = run_without_manifests(tmp_path, full=False)
    print(f"\nbattery without manifests: {dict(counts)}; child outcomes: {dict(by_status)}")
    assert counts["healthy"] == len(KINDS)
    assert counts["damaged"] > 100
    assert counts["detected"] >= counts["rejected by faiss"] + counts["failed plausibility"]


def test_deep_diagnose_end_to_end_on_damaged_files_without_manifest(tmp_path: Path) -> None:
    """The real diagnose() path (one child per call) reports damaged files and passes a good one."""
    data = serialize(make_index("HNSW"))
    samples = {
        "healthy": data,
        "truncated": data[:63],
        "appended": data + b"junk",
    }
    for label, content in samples.items():
        folder = tmp_path / label
        folder.mkdir()
        (folder / "vector_index.faiss").write_bytes(content)
        health = VectorIndexRecovery(folder, tmp_path / "b", dimension=DIM).diagnose()
        assert health.deep
        assert health.ok is (label == "healthy"), (label, health.problem)
        if label == "appended":
            assert "trailing bytes" in (health.problem or "")


@pytest.mark.slow
def test_full_battery_with_manifests(tmp_path: Path) -> None:
    """The full battery (hundreds of offsets and bits per kind), with manifests."""
    counts = run_with_manifests(tmp_path, full=True)
    print(f"\nfull battery with manifests: {dict(counts)}")
    assert counts["detected"] == counts["damaged"] > 1000


@pytest.mark.slow
def test_full_battery_without_manifests(tmp_path: Path) -> None:
    """The full battery without manifests: nothing harms the host, rejected files are reported."""
    counts, by_status = run_without_manifests(tmp_path, full=True)
    print(f"\nfull battery without manifests: {dict(counts)}; child outcomes: {dict(by_status)}")
    assert counts["damaged"] > 1000
