"""
Everything that touches faiss (the only module of ours that imports it).

Used in the host process only on trusted objects (an index the host hands to ``save_index``, a file
whose checksum was verified) and in the isolated probe child on suspect files.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._lazy import import_optional

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "build_index",
    "check_canaries",
    "describe",
    "faiss",
    "finite_problems",
    "make_canaries",
    "read_index_stream",
    "smoke_search",
    "structural_problems",
    "write_index_stream",
]

METRICS = {0: "inner_product", 1: "l2"}
WRITE_BLOCK = 4 * 1024 * 1024


_MIN_VERSION = (1, 15)


def faiss() -> Any:
    """
    The faiss module.

    Raises:
        DependencyError: When it is missing, or older than 1.15 (earlier loaders can crash the
            process on a damaged file and have no deserialisation limits).
    """
    module = import_optional("faiss")
    version = str(getattr(module, "__version__", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < _MIN_VERSION:
        from .._errors import DependencyError
        from .._lazy import install_hint

        raise DependencyError(
            f"faiss {version} is too old for safe index recovery (1.15 or later is needed); "
            f"upgrade with: {install_hint('faiss')}"
        )
    return module


def version() -> str:
    return str(getattr(faiss(), "__version__", "unknown"))


def downcast(index: Any) -> Any:
    return faiss().downcast_index(index)


def describe(index: Any) -> dict[str, Any]:
    """Class, dimension, ntotal, metric and is_trained of an index."""
    index = downcast(index)
    name = type(index).__name__
    if name == "IndexFlat":  # index_factory's class; faiss reads it back as IndexFlatL2 / IP
        name = {0: "IndexFlatIP", 1: "IndexFlatL2"}.get(int(index.metric_type), name)
    return {
        "class": name,
        "dimension": int(index.d),
        "ntotal": int(index.ntotal),
        "metric": METRICS.get(int(index.metric_type), f"metric {int(index.metric_type)}"),
        "is_trained": bool(index.is_trained),
    }


def write_index_stream(index: Any, write: Callable[[bytes], int]) -> None:
    """Serialise ``index`` through faiss's Python writer: ``write`` gets each block of bytes."""
    f = faiss()
    writer = f.PyCallbackIOWriter(write, WRITE_BLOCK)
    try:
        f.write_index(index, writer)
    finally:
        del writer  # flushes the last block


@contextlib.contextmanager
def vector_byte_limit(limit: int) -> Iterator[None]:
    """Cap faiss's per-vector allocation while deserialising (faiss 1.15+), then restore it."""
    f = faiss()
    if not hasattr(f, "set_deserialization_vector_byte_limit"):
        yield
        return
    previous = int(f.get_deserialization_vector_byte_limit())
    f.set_deserialization_vector_byte_limit(int(limit))
    try:
        yield
    finally:
        f.set_deserialization_vector_byte_limit(previous)


def read_index_stream(read: Callable[[int], bytes], *, byte_limit: int) -> Any:
    """Deserialise an index from ``read(n) -> bytes``, with the per-vector byte limit."""
    f = faiss()
    reader = f.PyCallbackIOReader(read, WRITE_BLOCK)
    with vector_byte_limit(byte_limit):
        try:
            return f.read_index(reader)  # already the concrete class; it owns its data
        finally:
            del reader


def _inner(index: Any) -> Any | None:
    for attr in ("index", "storage"):
        sub = getattr(index, attr, None)
        if sub is not None:
            return downcast(sub)
    return None


def structural_problems(index: Any) -> list[str]:
    """Cross-checks faiss's loader does not make (IVF ntotal, IDMap dimension, HNSW levels...)."""
    f = faiss()
    index = downcast(index)
    problems: list[str] = []
    name = type(index).__name__
    d, ntotal = int(index.d), int(index.ntotal)
    if d <= 0:
        problems.append(f"{name}: dimension {d} is not positive")
    if ntotal < 0:
        problems.append(f"{name}: ntotal {ntotal} is negative")
    metric = int(index.metric_type)
    if name.endswith("L2") and metric != int(f.METRIC_L2):
        problems.append(
            f"{name} is an L2 class but its metric field says {METRICS.get(metric, metric)}"
        )
    if name.endswith("IP") and metric != int(f.METRIC_INNER_PRODUCT):
        problems.append(
            f"{name} is an inner-product class but its metric field says {METRICS.get(metric, metric)}"
        )
    if metric not in METRICS:
        problems.append(f"{name}: unknown metric type {metric}")
    if isinstance(index, f.IndexIDMap):
        sub = downcast(index.index)
        if int(sub.d) != d:
            problems.append(f"{name}: outer dimension {d} but inner index has {int(sub.d)}")
        if int(sub.ntotal) != ntotal:
            problems.append(f"{name}: ntotal {ntotal} but inner index holds {int(sub.ntotal)}")
        if int(index.id_map.size()) != ntotal:
            problems.append(f"{name}: ntotal {ntotal} but {int(index.id_map.size())} ids")
        problems += structural_problems(sub)
    elif isinstance(index, f.IndexHNSW):
        storage = downcast(index.storage)
        if int(storage.d) != d or int(storage.ntotal) != ntotal:
            problems.append(
                f"{name}: header says d={d} ntotal={ntotal}, storage has "
                f"d={int(storage.d)} ntotal={int(storage.ntotal)}"
            )
        if int(index.hnsw.levels.size()) != ntotal:
            problems.append(f"{name}: {int(index.hnsw.levels.size())} graph levels for {ntotal}")
        problems += structural_problems(storage)
    elif isinstance(index, f.IndexIVF):
        invlists = index.invlists
        nlist = int(index.nlist)
        if int(invlists.nlist) != nlist:
            problems.append(f"{name}: nlist {nlist} but {int(invlists.nlist)} inverted lists")
        quantizer = downcast(index.quantizer)
        if int(quantizer.d) != d:
            problems.append(f"{name}: dimension {d} but quantizer has {int(quantizer.d)}")
        if index.is_trained and int(quantizer.ntotal) != nlist:
            problems.append(f"{name}: nlist {nlist} but {int(quantizer.ntotal)} centroids")
        listed = sum(int(invlists.list_size(i)) for i in range(int(invlists.nlist)))
        if listed != ntotal:
            problems.append(f"{name}: header says ntotal={ntotal}, inverted lists hold {listed}")
    elif isinstance(index, f.IndexFlatCodes):
        expected = ntotal * int(index.code_size)
        if int(index.codes.size()) != expected:
            problems.append(
                f"{name}: {int(index.codes.size())} code bytes for {ntotal} vectors "
                f"(expected {expected})"
            )
    return problems


def _flat_vectors(index: Any) -> npt.NDArray[np.float32] | None:
    """A zero-copy view of the raw vectors of a flat-coded (IndexFlat) storage, or None."""
    f = faiss()
    index = downcast(index)
    while not isinstance(index, f.IndexFlat):
        sub = _inner(index)
        if sub is None:
            return None
        index = sub
    n, d = int(index.ntotal), int(index.d)
    if n == 0 or int(index.codes.size()) != n * d * 4:
        return None
    flat = f.rev_swig_ptr(index.get_xb(), n * d)
    out: npt.NDArray[np.float32] = flat.reshape(n, d)
    return out


def finite_problems(index: Any) -> list[str]:
    """Non-finite values, or a run of all-zero vectors (a zeroed disk page), in flat storage."""
    import numpy as np

    xb = _flat_vectors(index)
    if xb is None:
        return []
    n, d = xb.shape
    problems: list[str] = []
    bad = 0
    zero_run = longest_zero_run = 0
    step = max(1, (16 * 1024 * 1024) // (4 * d))
    for start in range(0, n, step):
        block = xb[start : start + step]
        bad += int(np.count_nonzero(~np.isfinite(block).all(axis=1)))
        zero: list[bool] = np.logical_not(block.any(axis=1)).tolist()
        if not any(zero):
            zero_run = 0
            continue
        for z in zero:
            zero_run = zero_run + 1 if z else 0
            longest_zero_run = max(longest_zero_run, zero_run)
    if bad:
        problems.append(f"{bad} stored vectors contain NaN or infinity")
    # A zeroed 4 KiB page covers at least 4096 // (4 * d) - 1 whole vectors; real embeddings are
    # almost never exactly zero, and zero vectors become everyone's nearest neighbour under L2.
    threshold = max(2, 4096 // (4 * d) - 1)
    if longest_zero_run >= threshold:
        problems.append(
            f"{longest_zero_run} consecutive stored vectors are all zeros (a zeroed disk page?)"
        )
    return problems


def _queries(n: int, d: int, seed: int = 20240611) -> npt.NDArray[np.float32]:
    import numpy as np

    q = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


# An exhaustive (flat) index larger than this gets its canaries run over an evenly spaced subset
# of its vectors: a full scan of a 500 MB index costs as much as writing it.
_SUBSET_ABOVE = 50_000
_SUBSET_COUNT = 8192


def _canary_search(
    index: Any, q: npt.NDArray[np.float32], k: int, subset: int | None
) -> tuple[Any, Any]:
    """Search ``q``; with ``subset``, only over that many evenly spaced stored positions."""
    import numpy as np

    f = faiss()
    index = downcast(index)
    if not subset:
        plain: tuple[Any, Any] = index.search(q, k)
        return plain
    target = downcast(index.index) if isinstance(index, f.IndexIDMap) else index
    ntotal = int(target.ntotal)
    positions = np.unique(np.linspace(0, ntotal - 1, min(subset, ntotal)).astype(np.int64))
    member = np.zeros(ntotal, dtype=bool)
    member[positions] = True
    bitmap = np.packbits(member, bitorder="little")  # a bit test per vector: the cheapest filter
    selector = f.IDSelectorBitmap(ntotal, f.swig_ptr(bitmap))
    params = f.SearchParameters(sel=selector)
    result: tuple[Any, Any] = target.search(q, k, params=params)
    del params, selector, bitmap  # kept alive until the search is done
    return result


def _subset_for(index: Any) -> int | None:
    f = faiss()
    index = downcast(index)
    target = downcast(index.index) if isinstance(index, f.IndexIDMap) else index
    exhaustive = isinstance(target, f.IndexFlatCodes)
    return _SUBSET_COUNT if exhaustive and int(index.ntotal) > _SUBSET_ABOVE else None


def make_canaries(index: Any, *, n: int = 4, k: int = 10) -> dict[str, Any] | None:
    """Search a few fixed queries and remember their results, to compare after a reload."""
    import numpy as np

    index = downcast(index)
    ntotal, d = int(index.ntotal), int(index.d)
    if ntotal == 0 or n <= 0:
        return None
    subset = _subset_for(index)
    k = min(k, ntotal, subset or ntotal)
    q = _queries(n, d)
    dist, ids = _canary_search(index, q, k, subset)
    return {
        "k": k,
        "subset": subset,
        "queries": base64.b64encode(np.ascontiguousarray(q, dtype="<f4").tobytes()).decode(),
        "expected_ids": ids.astype(np.int64).tolist(),
        "expected_distances": [[float(x) for x in row] for row in dist],
    }


def check_canaries(index: Any, canaries: dict[str, Any]) -> tuple[int, list[str]]:
    """Rerun the canary queries; returns (how many passed, problems)."""
    import numpy as np

    index = downcast(index)
    d = int(index.d)
    raw = base64.b64decode(canaries["queries"])
    q = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if q.size == 0 or q.size % d:
        return 0, [f"canary queries do not fit dimension {d}"]
    q = q.reshape(-1, d)
    k = int(canaries["k"])
    subset = canaries.get("subset")
    dist, ids = _canary_search(index, q, k, int(subset) if subset else None)
    exp_ids = np.asarray(canaries["expected_ids"], dtype=np.int64)
    exp_dist = np.asarray(canaries["expected_distances"], dtype=np.float64)
    passed, problems = 0, []
    for i in range(q.shape[0]):
        same_ids = set(ids[i].tolist()) == set(exp_ids[i].tolist())
        # Ties may swap ids of equal distance; the distances must then still agree.
        same_dist = bool(np.allclose(dist[i], exp_dist[i], rtol=1e-3, atol=1e-4))
        if same_ids or same_dist:
            passed += 1
        else:
            problems.append(
                f"canary query {i}: expected ids {exp_ids[i][:5].tolist()}..., "
                f"got {ids[i][:5].tolist()}..."
            )
    return passed, problems


def smoke_search(index: Any) -> None:
    """One small search: some damaged files load fine and only fail (or crash) at first search."""
    index = downcast(index)
    if int(index.ntotal) > 0:
        index.search(_queries(2, int(index.d), seed=7), min(3, int(index.ntotal)))


def metric_type(metric: str) -> int:
    f = faiss()
    return int(f.METRIC_L2 if metric == "l2" else f.METRIC_INNER_PRODUCT)


def build_index(dimension: int, factory: str, metric: str, *, with_ids: bool) -> Any:
    """
    Build an empty index from a faiss factory string.

    Raises:
        ValueError: When faiss does not understand the factory string.
    """
    f = faiss()
    try:
        index = f.index_factory(int(dimension), factory, metric_type(metric))
    except RuntimeError as err:
        raise ValueError(f"faiss cannot build {factory!r}: {str(err).splitlines()[0]}") from err
    # index_factory returns the concrete class; downcast_index would return a non-owning wrapper.
    if with_ids and not isinstance(index, f.IndexIDMap):
        index = f.IndexIDMap2(index)
    return index


def reserve(index: Any, n: int) -> None:
    """Pre-size a flat index's storage for ``n`` more vectors, so that batched adds never regrow it."""
    f = faiss()
    index = downcast(index)
    target = downcast(index.index) if isinstance(index, f.IndexIDMap) else index
    if not isinstance(target, f.IndexFlatCodes) or not hasattr(target.codes, "resize"):
        return
    used = int(target.codes.size())
    # std::vector keeps its capacity when shrunk: grow once, shrink back, then adds fit.
    target.codes.resize(used + n * int(target.code_size))
    target.codes.resize(used)


def nlist(index: Any) -> int | None:
    f = faiss()
    index = downcast(index)
    while index is not None and not isinstance(index, f.IndexIVF):
        index = _inner(index)
    return None if index is None else int(index.nlist)


def normalize(x: npt.NDArray[np.float32]) -> None:
    faiss().normalize_L2(x)


def set_threads(n: int) -> None:
    with contextlib.suppress(AttributeError):
        faiss().omp_set_num_threads(int(n))
