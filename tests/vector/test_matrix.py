"""
The index types people have, end to end at small sizes: float, binary and composite indexes and a
LangChain-style folder. Save, cheap and deep diagnose, three kinds of real damage (truncation,
flipped bytes mid-file, a zeroed 4 KiB page) with and without a manifest, restore, and search
results equal to the original's.

``python -m tests.vector.test_matrix`` prints the detection table of docs/vector.md.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from safla_diag import VectorIndexRecovery
from safla_diag.vector._probe import bulk_probe

D = 32  # bits for binary indexes
N = 400


def _float(factory: str, metric: int = faiss.METRIC_L2) -> Callable[[], Any]:
    def make() -> Any:
        x = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
        index = faiss.index_factory(D, factory, metric)
        if not index.is_trained:
            index.train(x)
        if isinstance(index, faiss.IndexIDMap):
            index.add_with_ids(x, np.arange(5000, 5000 + N, dtype=np.int64))
        else:
            index.add(x)
        return index

    return make


def _refine() -> Any:
    x = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
    index = faiss.IndexRefineFlat(faiss.IndexHNSWFlat(D, 8))
    index.add(x)
    return index


def _binary(factory: str) -> Callable[[], Any]:
    def make() -> Any:
        x = np.random.default_rng(1).integers(0, 256, (N, D // 8), dtype=np.uint8)
        if factory == "BIDMap2":
            index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(D))
            index.add_with_ids(x, np.arange(7000, 7000 + N, dtype=np.int64))
            return index
        if factory == "BHash":
            index = faiss.IndexBinaryHash(D, 8)
        else:
            index = faiss.index_binary_factory(D, factory)
        if not index.is_trained:
            index.train(x)
        index.add(x)
        return index

    return make


#: name -> (builder, kind)
TYPES: dict[str, tuple[Callable[[], Any], str]] = {
    "Flat (L2)": (_float("Flat"), "float"),
    "Flat (IP)": (_float("Flat", faiss.METRIC_INNER_PRODUCT), "float"),
    "IVF4,Flat": (_float("IVF4,Flat"), "float"),
    "IVF4,PQ8": (_float("IVF4,PQ8x4"), "float"),
    "HNSW8": (_float("HNSW8"), "float"),
    "PQ8": (_float("PQ8x4"), "float"),
    "SQ8": (_float("SQ8"), "float"),
    "LSH": (_float("LSH"), "float"),
    "IDMap2,Flat": (_float("IDMap2,Flat"), "composite"),
    "RefineFlat(HNSW)": (_refine, "composite"),
    "PCA16,IVF4,Flat": (_float("PCA16,IVF4,Flat"), "composite"),
    "BFlat": (_binary("BFlat"), "binary"),
    "BIVF4": (_binary("BIVF4"), "binary"),
    "BHNSW8": (_binary("BHNSW8"), "binary"),
    "BHash": (_binary("BHash"), "binary"),
    "BinaryIDMap2": (_binary("BIDMap2"), "binary"),
}

DAMAGES = ("truncated", "flipped bytes mid-file", "zeroed 4 KiB page")


def damage(data: bytes, how: str) -> bytes:
    """Real damage to real index bytes."""
    size = len(data)
    if how == "truncated":
        return data[: size * 2 // 3]
    b = bytearray(data)
    if how == "flipped bytes mid-file":
        for i in range(size // 2, min(size, size // 2 + 8)):
            b[i] ^= 0xFF
        return bytes(b)
    start = max(0, min(size - 4096, (size // 2) & ~4095))
    b[start : start + 4096] = bytes(min(4096, size - start))
    return bytes(b)


def _queries(index: Any) -> Any:
    rng = np.random.default_rng(9)
    if isinstance(index, faiss.IndexBinary):
        return rng.integers(0, 256, (5, D // 8), dtype=np.uint8)
    return rng.standard_normal((5, D)).astype(np.float32)


def _serialize(index: Any) -> bytes:
    if isinstance(index, faiss.IndexBinary):
        return bytes(faiss.serialize_index_binary(index))
    return bytes(faiss.serialize_index(index))


def detection_table(root: Path) -> dict[str, dict[str, tuple[bool, bool]]]:
    """
    type -> damage -> (caught with a manifest by the cheap check, caught without one by the deep
    check). Without a manifest all damaged files are probed in one isolated child.
    """
    table: dict[str, dict[str, tuple[bool, bool]]] = {}
    bare: list[tuple[str, str, VectorIndexRecovery]] = []
    for name, (make, _) in TYPES.items():
        data = _serialize(make())
        table[name] = {}
        with_manifest = VectorIndexRecovery(root / f"m{len(table)}", root / f"mb{len(table)}")
        with_manifest.save_index(make(), canaries=0)
        saved = with_manifest.index_path.read_bytes()
        for how in DAMAGES:
            with_manifest.index_path.write_bytes(damage(saved, how))
            caught = with_manifest.detect_corruption()
            with_manifest.index_path.write_bytes(saved)
            without = VectorIndexRecovery(root / f"n{len(bare)}", root / f"nb{len(bare)}")
            without.data_dir.mkdir(parents=True)
            without.index_path.write_bytes(damage(data, how))
            bare.append((name, how, without))
            table[name][how] = (caught, False)
    results = bulk_probe([str(r.index_path) for _, _, r in bare], timeout=60)
    for (name, how, rec), result in zip(bare, results, strict=True):
        health = rec._diagnosis(deep=True, probed=result).health
        table[name][how] = (table[name][how][0], not health.ok)
    return table


def test_every_type_round_trips_saves_diagnoses_restores_and_searches_the_same(
    tmp_path: Path,
) -> None:
    """Each type: save, cheap and deep ok, load equal, backup, damage, restore, same search."""
    recs = {}
    for name, (make, _) in TYPES.items():
        index = make()
        rec = VectorIndexRecovery(tmp_path / name, tmp_path / f"{name}-b")
        rec.save_index(index)
        assert rec.diagnose().ok, (name, rec.diagnose().problem)
        rec.backup_index()
        recs[name] = (rec, index)
    # The deep checks of every healthy index, in one isolated child.
    probes = bulk_probe([str(r.index_path) for r, _ in recs.values()], timeout=60)
    for (name, (rec, index)), probe in zip(recs.items(), probes, strict=True):
        deep = rec._diagnosis(deep=True, probed=probe).health
        assert deep.ok, (name, deep.problem)
        assert deep.metric == ("hamming" if isinstance(index, faiss.IndexBinary) else deep.metric)
        rec.index_path.write_bytes(damage(rec.index_path.read_bytes(), "zeroed 4 KiB page"))
        assert rec.detect_corruption(), name
        assert rec.restore_from_backup(), name
        restored = rec.load_index()
        q = _queries(index)
        assert np.array_equal(restored.search(q, 5)[1], index.search(q, 5)[1]), name
        if type(restored).__name__ not in ("IndexBinaryHash", "IndexBinaryMultiHash"):
            assert _serialize(restored) == _serialize(index), name  # hash tables: no fixed order
        assert rec.index_path.read_bytes() == _serialize(index) or name == "BHash", name


def test_damage_detection_per_type_with_and_without_a_manifest(tmp_path: Path) -> None:
    """
    With a manifest the cheap check catches every damage of every type. Without one, the deep
    check catches every truncation and every zeroed page (inside composites too); flipped bytes
    in stored vectors are plausible values and need the manifest. The table in docs/vector.md is
    this test's output.
    """
    table = detection_table(tmp_path)
    for name, row in table.items():
        for how, (with_manifest, _) in row.items():
            assert with_manifest, (name, how)
        assert row["truncated"][1], name
    # Every type stores its vectors, codes, ids or graph so that a zeroed page is implausible.
    for name, row in table.items():
        assert row["zeroed 4 KiB page"][1], name


# ------------------------------------------------------------------ a LangChain-style folder


def _langchain_folder(root: Path) -> tuple[Any, bytes]:
    """index.faiss + index.pkl as FAISS.save_local writes them (a docstore and an id map)."""
    x = np.random.default_rng(4).standard_normal((N, D)).astype(np.float32)
    index = faiss.IndexFlatL2(D)
    index.add(x)
    root.mkdir(parents=True)
    faiss.write_index(index, str(root / "index.faiss"))
    docstore = {f"doc-{i}": {"page_content": f"text {i}"} for i in range(N)}
    pkl = pickle.dumps((docstore, {i: f"doc-{i}" for i in range(N)}))
    (root / "index.pkl").write_bytes(pkl)
    return index, pkl


def _store(root: Path) -> VectorIndexRecovery:
    return VectorIndexRecovery(
        root / "store", root / "backups", index_file="index.faiss", sidecars=("index.pkl",)
    )


def test_a_langchain_folder_without_a_manifest_is_diagnosed_adopted_and_restored_whole(
    tmp_path: Path,
) -> None:
    """No manifest: the deep check vouches for the index, the first backup adopts both files,
    and a restore brings back index and docstore together."""
    index, pkl = _langchain_folder(tmp_path / "store")
    rec = _store(tmp_path)
    health = rec.diagnose()
    assert health.ok and health.deep
    assert any("index.pkl" in n for n in health.notes)
    backup = Path(rec.backup_index())
    assert sorted(p.name for p in backup.iterdir()) == ["index.faiss", "index.pkl", "manifest.json"]
    assert (backup / "index.pkl").read_bytes() == pkl
    (tmp_path / "store" / "index.pkl").write_bytes(pkl[:100])
    rec.index_path.write_bytes(damage(rec.index_path.read_bytes(), "truncated"))
    assert rec.restore_from_backup()
    assert (tmp_path / "store" / "index.pkl").read_bytes() == pkl
    assert rec.read_sidecar("index.pkl") == pkl
    q = _queries(index)
    assert np.array_equal(rec.load_index().search(q, 5)[1], index.search(q, 5)[1])
    assert rec.diagnose().ok


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_sidecar_is_caught_and_the_bundle_restored(tmp_path: Path, how: str) -> None:
    """With a manifest, damage to index.pkl alone fails the cheap check, refuses read_sidecar and
    backups, and a restore brings back the matching pair."""
    index, pkl = _langchain_folder(tmp_path / "store")
    rec = _store(tmp_path)
    rec.save_index(index, sidecars={"index.pkl": pkl})
    rec.backup_index()
    sidecar = tmp_path / "store" / "index.pkl"
    sidecar.write_bytes(damage(pkl, how))
    health = rec.diagnose()
    assert not health.ok and "index.pkl" in (health.problem or "")
    from safla_diag import IndexCorruptionError

    with pytest.raises(IndexCorruptionError, match=r"index\.pkl"):
        rec.read_sidecar("index.pkl")
    copied: list[int] = []
    with pytest.raises(IndexCorruptionError, match=r"index\.pkl"):
        rec.backup_index(progress=lambda done, total: copied.append(done))
    assert copied == []  # refused before a byte was copied
    assert rec.restore_from_backup()
    assert sidecar.read_bytes() == pkl and rec.diagnose(deep=True).ok


def test_a_save_of_index_and_sidecar_is_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the index was replaced but before the sidecar was leaves the new bundle
    once the next start rolls forward: never the new index with the old docstore."""
    import os

    index, pkl = _langchain_folder(tmp_path / "store")
    rec = _store(tmp_path)
    rec.save_index(index, sidecars={"index.pkl": pkl})
    index.add(np.ones((1, D), dtype=np.float32))
    new_pkl = pkl + b"new"
    real = os.replace
    calls = []

    def crash_on_second(src: Any, dst: Any) -> None:
        calls.append(dst)
        if str(dst).endswith("index.pkl"):
            raise KeyboardInterrupt  # the process dies here
        real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        rec.save_index(index, sidecars={"index.pkl": new_pkl})
    monkeypatch.undo()
    # The temp files of a dead process: rename them as a dead pid's would be named.
    after = _store(tmp_path)
    assert after.diagnose().ok
    assert after.read_sidecar("index.pkl") == new_pkl
    assert after.load_index().ntotal == N + 1
    assert not after.next_manifest_path.exists()


def test_rebuild_keeps_the_old_index_aside_bounded(tmp_path: Path) -> None:
    """A rebuild over an index keeps it as .replaced-*, at most keep_backups of them."""
    rec = VectorIndexRecovery(tmp_path / "d", tmp_path / "b", keep_backups=2)
    x = np.random.default_rng(0).standard_normal((200, D)).astype(np.float32)
    rec.rebuild_index(x)
    first = rec.index_path.read_bytes()
    rec.rebuild_index(x[:100])
    kept = sorted(p for p in rec.data_dir.iterdir() if ".replaced-" in p.name)
    assert len(kept) == 1 and kept[0].read_bytes() == first
    for _ in range(3):
        rec.rebuild_index(x[:50])
    assert len([p for p in rec.data_dir.iterdir() if ".replaced-" in p.name]) == 2


def test_binary_rebuild_with_hamming(tmp_path: Path) -> None:
    """rebuild_index(metric="hamming") builds a binary index from uint8 codes, ids too."""
    codes = np.random.default_rng(0).integers(0, 256, (300, 8), dtype=np.uint8)
    rec = VectorIndexRecovery(tmp_path / "d", tmp_path / "b", dimension=64)
    rec.rebuild_index(codes, metric="hamming", factory="IVF4", ids=np.arange(300) + 10)
    health = rec.diagnose(deep=True)
    assert health.ok and health.metric == "hamming" and health.ntotal == 300
    index = rec.load_index()
    assert isinstance(index, faiss.IndexBinary)
    assert index.search(codes[:3], 1)[1].ravel().tolist() == [10, 11, 12]
    with pytest.raises(ValueError, match="uint8"):
        rec.rebuild_index(codes.astype(np.float32), metric="hamming")


def test_progress_is_reported_for_backup_restore_rebuild_and_deep_checks(tmp_path: Path) -> None:
    """Each long operation calls progress(done, total), never backwards, ending at total."""
    rec = VectorIndexRecovery(tmp_path / "d", tmp_path / "b")
    seen: dict[str, list[tuple[int, int]]] = {k: [] for k in ("rebuild", "backup", "deep", "rst")}
    x = np.random.default_rng(0).standard_normal((3000, D)).astype(np.float32)
    rec.rebuild_index(x, batch_size=1000, progress=lambda d, t: seen["rebuild"].append((d, t)))
    rec.backup_index(progress=lambda d, t: seen["backup"].append((d, t)))
    rec.diagnose(deep=True, progress=lambda d, t: seen["deep"].append((d, t)))
    rec.index_path.write_bytes(b"damaged")
    assert rec.restore_from_backup(progress=lambda d, t: seen["rst"].append((d, t)))
    for name, calls in seen.items():
        assert calls, name
        done = [d for d, _ in calls]
        assert done == sorted(done) and calls[-1][0] == calls[-1][1], (name, calls)


def test_backup_of_a_damaged_index_copies_nothing(tmp_path: Path) -> None:
    """The cheap check runs before a byte is copied: no temp folder ever appears."""
    rec = VectorIndexRecovery(tmp_path / "d", tmp_path / "b")
    rec.save_index(_float("Flat")())
    rec.index_path.write_bytes(damage(rec.index_path.read_bytes(), "flipped bytes mid-file"))
    from safla_diag import IndexCorruptionError

    copied: list[int] = []
    with pytest.raises(IndexCorruptionError, match="checksum"):
        rec.backup_index(progress=lambda d, t: copied.append(d))
    assert copied == [] and list(rec.backup_dir.iterdir()) == []


def _markdown(table: dict[str, dict[str, tuple[bool, bool]]]) -> str:
    kinds = {name: kind for name, (_, kind) in TYPES.items()}
    head = "| type | kind | " + " | ".join(DAMAGES) + " |"
    lines = [head, "|" + " --- |" * (2 + len(DAMAGES))]
    for name, row in table.items():
        cells = []
        for how in DAMAGES:
            with_m, without = row[how]
            cells.append(f"{'yes' if with_m else 'NO'} / {'yes' if without else 'no'}")
        lines.append(f"| {name} | {kinds[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the docs table
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp())
    try:
        sys.stdout.write(_markdown(detection_table(root)) + "\n")
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda x: _add(faiss.IndexRefineFlat(faiss.IndexHNSWFlat(D, 8)), x), "refine storage"),
        (lambda x: _add(faiss.IndexRefineFlat(faiss.IndexPQ(D, 8, 4)), x), "refine storage"),
        (lambda x: _add(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), x, ids=True), "IndexFlat"),
        (lambda x: _add(faiss.IndexHNSWFlat(D, 8), x), "IndexFlat"),
        (lambda x: _add(faiss.index_factory(D, "IVF4,Flat"), x), "list"),
    ],
    ids=["RefineFlat(HNSW)", "RefineFlat(PQ)", "IDMap2", "HNSW storage", "IVF lists"],
)
def test_a_zeroed_page_inside_a_composite_is_found_by_the_deep_check(
    tmp_path: Path, build: Callable[[Any], Any], where: str
) -> None:
    """The page of raw vectors inside the composite (found by its bytes) is zeroed: the deep
    check names the inner storage, without a manifest to help."""
    x = np.random.default_rng(3).standard_normal((N, D)).astype(np.float32)
    index = build(x)
    data = bytearray(_serialize(index))
    stored = faiss.downcast_index(index)
    if isinstance(stored, faiss.IndexIVF):  # the lists hold the vectors grouped by list
        inv = stored.invlists
        first = next(i for i in range(stored.nlist) if inv.list_size(i) >= 64)
        raw = faiss.rev_swig_ptr(inv.get_codes(first), 64 * D * 4)
        needle = bytes(np.asarray(raw)[: 64 * D * 4])
    else:
        needle = x[100:164].tobytes()
    at = bytes(data).rfind(needle)  # the last copy: RefineFlat writes its refine storage last
    assert at > 0
    data[at : at + 4096] = bytes(4096)
    rec = VectorIndexRecovery(tmp_path / "d", tmp_path / "b")
    rec.data_dir.mkdir()
    rec.index_path.write_bytes(bytes(data))
    health = rec.diagnose(deep=True)
    assert not health.ok and "zeros" in (health.problem or ""), health.problem
    assert where in (health.problem or ""), health.problem


def _add(index: Any, x: Any, *, ids: bool = False) -> Any:
    if not index.is_trained:
        index.train(x)
    if ids:
        index.add_with_ids(x, np.arange(len(x), dtype=np.int64) + 1)
    else:
        index.add(x)
    return index
