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
    "make_canaries",
    "read_index_stream",
    "smoke_search",
    "write_index_stream",
]

METRICS = {0: "inner_product", 1: "l2"}
#: Classes faiss serialises in no fixed order (hash tables): a re-serialisation differs.
NONCANONICAL = frozenset({"IndexBinaryHash", "IndexBinaryMultiHash"})
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


def is_binary(index: Any) -> bool:
    """Whether ``index`` is a binary index (``faiss.IndexBinary*``: bit codes, Hamming distance)."""
    return isinstance(index, faiss().IndexBinary)


def downcast(index: Any) -> Any:
    """The concrete class of a float or binary index (faiss hands out base-class proxies)."""
    f = faiss()
    if isinstance(index, f.IndexBinary):
        return f.downcast_IndexBinary(index)
    return f.downcast_index(index)


def describe(index: Any) -> dict[str, Any]:
    """Kind (float or binary), class, dimension, ntotal, metric and is_trained of an index."""
    index = downcast(index)
    name = type(index).__name__
    binary = is_binary(index)
    if name == "IndexFlat":  # index_factory's class; faiss reads it back as IndexFlatL2 / IP
        name = {0: "IndexFlatIP", 1: "IndexFlatL2"}.get(int(index.metric_type), name)
    if binary:
        metric = "hamming"
    else:
        metric = METRICS.get(int(index.metric_type), f"metric {int(index.metric_type)}")
    return {
        "kind": "binary" if binary else "float",
        "class": name,
        "dimension": int(index.d),
        "ntotal": int(index.ntotal),
        "metric": metric,
        "is_trained": bool(index.is_trained),
    }


def write_index_stream(index: Any, write: Callable[[bytes], int]) -> None:
    """Serialise ``index`` through faiss's Python writer: ``write`` gets each block of bytes."""
    f = faiss()
    writer = f.PyCallbackIOWriter(write, WRITE_BLOCK)
    try:
        if is_binary(index):
            f.write_index_binary(index, writer)
        else:
            f.write_index(index, writer)
    finally:
        del writer  # flushes the last block


def binary_magic(head: bytes) -> bool:
    """Whether the first bytes of an index file are a binary index's (fourcc ``IB..``)."""
    return head[:2] == b"IB"


def read_index_file(path: str) -> Any:
    """Read an index file, float or binary (told apart by its first bytes)."""
    f = faiss()
    with open(path, "rb") as fh:
        head = fh.read(4)
    return f.read_index_binary(path) if binary_magic(head) else f.read_index(path)


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
    head = read(4)
    pending = bytearray(head)

    def replay(n: int) -> bytes:  # the peeked bytes first, then the rest of the stream
        if not pending:
            return read(n)
        out = bytes(pending[:n])
        del pending[:n]
        return out + (read(n - len(out)) if len(out) < n else b"")

    reader = f.PyCallbackIOReader(replay, WRITE_BLOCK)
    with vector_byte_limit(byte_limit):
        try:
            # Already the concrete class; it owns its data.
            return f.read_index_binary(reader) if binary_magic(head) else f.read_index(reader)
        finally:
            del reader


def inner(index: Any) -> Any | None:
    """The index a wrapper holds (IDMap, PreTransform, HNSW storage, Refine base), or None."""
    for attr in ("index", "storage", "base_index"):
        sub = getattr(index, attr, None)
        if sub is not None:
            return downcast(sub)
    return None


def _queries(n: int, d: int, seed: int = 20240611, *, binary: bool = False) -> npt.NDArray[Any]:
    """Fixed queries: unit vectors of dimension ``d``, or random codes of ``d`` bits."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if binary:
        codes: npt.NDArray[np.uint8] = rng.integers(0, 256, (n, d // 8), dtype=np.uint8)
        return codes
    q = rng.standard_normal((n, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q


# An exhaustive (flat) index larger than this gets its canaries run over an evenly spaced subset
# of its vectors: a full scan of a 500 MB index costs as much as writing it.
_SUBSET_ABOVE = 50_000
_SUBSET_COUNT = 8192


def _canary_search(index: Any, q: npt.NDArray[Any], k: int, subset: int | None) -> tuple[Any, Any]:
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
    if is_binary(index):
        return None
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
    binary = is_binary(index)
    q = _queries(n, d, binary=binary)
    dist, ids = _canary_search(index, q, k, subset)
    raw = q.tobytes() if binary else np.ascontiguousarray(q, dtype="<f4").tobytes()
    return {
        "k": k,
        "subset": subset,
        "binary": binary,
        "queries": base64.b64encode(raw).decode(),
        "expected_ids": ids.astype(np.int64).tolist(),
        "expected_distances": [[float(x) for x in row] for row in dist],
    }


def check_canaries(index: Any, canaries: dict[str, Any]) -> tuple[int, list[str]]:
    """Rerun the canary queries; returns (how many passed, problems)."""
    import numpy as np

    index = downcast(index)
    binary = is_binary(index)
    if bool(canaries.get("binary", False)) != binary:
        return 0, ["canary queries were recorded for another kind of index"]
    d = int(index.d) // 8 if binary else int(index.d)
    raw = base64.b64decode(canaries["queries"])
    flat = np.frombuffer(raw, dtype=np.uint8 if binary else "<f4").copy()
    if flat.size == 0 or flat.size % d:
        return 0, [f"canary queries do not fit dimension {int(index.d)}"]
    q = flat.reshape(-1, d) if binary else flat.astype(np.float32).reshape(-1, d)
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
        q = _queries(2, int(index.d), seed=7, binary=is_binary(index))
        index.search(q, min(3, int(index.ntotal)))


def metric_type(metric: str) -> int:
    """faiss's metric constant for ``l2`` or ``inner_product``."""
    f = faiss()
    return int(f.METRIC_L2 if metric == "l2" else f.METRIC_INNER_PRODUCT)


def build_index(dimension: int, factory: str, metric: str, *, with_ids: bool) -> Any:
    """
    Build an empty index from a faiss factory string.

    Raises:
        ValueError: When faiss does not understand the factory string.
    """
    f = faiss()
    binary = metric == "hamming"
    try:
        if binary:
            index = f.index_binary_factory(int(dimension), binary_factory(factory))
        else:
            index = f.index_factory(int(dimension), factory, metric_type(metric))
    except RuntimeError as err:
        raise ValueError(f"faiss cannot build {factory!r}: {str(err).splitlines()[0]}") from err
    # index_factory returns the concrete class; downcast_index would return a non-owning wrapper.
    if with_ids and not isinstance(index, (f.IndexIDMap, f.IndexBinaryIDMap)):
        index = f.IndexBinaryIDMap2(index) if binary else f.IndexIDMap2(index)
    return index


def binary_factory(factory: str) -> str:
    """The binary factory string for ``factory`` (``Flat`` -> ``BFlat``, ``IVF64`` -> ``BIVF64``)."""
    return factory if factory.startswith("B") else "B" + factory


def reserve(index: Any, n: int) -> None:
    """Pre-size a flat index's storage for ``n`` more vectors, so that batched adds never regrow it."""
    f = faiss()
    index = downcast(index)
    if is_binary(index):
        return
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
    while index is not None and not isinstance(index, (f.IndexIVF, f.IndexBinaryIVF)):
        index = inner(index)
    return None if index is None else int(index.nlist)


def normalize(x: npt.NDArray[np.float32]) -> None:
    faiss().normalize_L2(x)


def set_threads(n: int) -> None:
    with contextlib.suppress(AttributeError):
        faiss().omp_set_num_threads(int(n))
