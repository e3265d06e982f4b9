"""
Plausibility checks on a loaded index, run in the isolated probe child: cross-checks faiss's loader
does not make, and the signs a zeroed page or flipped bits leave in stored vectors, codes, ids and
graphs, reaching inside composites (IDMap, HNSW, IVF, RefineFlat, PreTransform), float and binary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._faiss import METRICS, downcast, faiss, inner, is_binary

__all__ = ["finite_problems", "structural_problems"]


def _check_metric(f: Any, name: str, metric: int) -> list[str]:
    problems = []
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
    return problems


def _same_shape(name: str, what: str, sub: Any, d: int, ntotal: int | None) -> list[str]:
    """The inner index ``sub`` must have dimension ``d`` (and ``ntotal`` vectors, when given)."""
    problems = []
    if int(sub.d) != d:
        problems.append(f"{name}: dimension {d} but its {what} has {int(sub.d)}")
    if ntotal is not None and int(sub.ntotal) != ntotal:
        problems.append(f"{name}: ntotal {ntotal} but its {what} holds {int(sub.ntotal)}")
    return problems


def structural_problems(index: Any) -> list[str]:
    """
    Cross-checks faiss's loader does not make, reaching inside composites: IDMap's inner index and
    ids, HNSW's storage and levels, IVF's quantizer and lists, RefineFlat's base and refine
    storage, PreTransform's chain, the code sizes of flat storage; float and binary alike.
    """
    f = faiss()
    index = downcast(index)
    problems: list[str] = []
    name = type(index).__name__
    d, ntotal = int(index.d), int(index.ntotal)
    if d <= 0:
        problems.append(f"{name}: dimension {d} is not positive")
    if ntotal < 0:
        problems.append(f"{name}: ntotal {ntotal} is negative")
    binary = is_binary(index)
    if not binary:
        problems += _check_metric(f, name, int(index.metric_type))
    if isinstance(index, (f.IndexIDMap, f.IndexBinaryIDMap)):
        sub = downcast(index.index)
        problems += _same_shape(name, "inner index", sub, d, ntotal)
        if int(index.id_map.size()) != ntotal:
            problems.append(f"{name}: ntotal {ntotal} but {int(index.id_map.size())} ids")
        problems += structural_problems(sub)
    elif isinstance(index, (f.IndexHNSW, f.IndexBinaryHNSW)):
        storage = downcast(index.storage)
        if int(storage.d) != d or int(storage.ntotal) != ntotal:
            problems.append(
                f"{name}: header says d={d} ntotal={ntotal}, storage has "
                f"d={int(storage.d)} ntotal={int(storage.ntotal)}"
            )
        if int(index.hnsw.levels.size()) != ntotal:
            problems.append(f"{name}: {int(index.hnsw.levels.size())} graph levels for {ntotal}")
        elif (repeated := _repeated_neighbours(index.hnsw, ntotal)) > 0:
            # A neighbour list names each node once; a zeroed page names node 0 over and over.
            problems.append(
                f"{name}: {repeated} nodes list a neighbour more than once (a zeroed disk page?)"
            )
        problems += structural_problems(storage)
    elif isinstance(index, (f.IndexIVF, f.IndexBinaryIVF)):
        problems += _ivf_problems(index, name, d, ntotal)
    elif isinstance(index, f.IndexRefine):
        base, refine = downcast(index.base_index), downcast(index.refine_index)
        problems += _same_shape(name, "base index", base, d, ntotal)
        problems += _same_shape(name, "refine storage", refine, d, ntotal)
        problems += structural_problems(base) + structural_problems(refine)
    elif isinstance(index, f.IndexPreTransform):
        problems += _chain_problems(f, index, name)
    elif isinstance(index, (f.IndexFlatCodes, f.IndexBinaryFlat)):
        codes = index.codes if hasattr(index, "codes") else index.xb
        expected = ntotal * int(index.code_size)
        if int(codes.size()) != expected:
            problems.append(
                f"{name}: {int(codes.size())} code bytes for {ntotal} vectors (expected {expected})"
            )
    return problems


def _repeated_neighbours(hnsw: Any, ntotal: int) -> int:
    """How many nodes repeat a neighbour in their level-0 list (counted in blocks of nodes)."""
    import numpy as np

    f = faiss()
    nb0 = int(hnsw.nb_neighbors(0))
    if ntotal == 0 or nb0 < 2 or int(hnsw.offsets.size()) != ntotal + 1:
        return 0
    offsets = f.rev_swig_ptr(hnsw.offsets.data(), ntotal + 1)
    neighbours = f.rev_swig_ptr(hnsw.neighbors.data(), int(hnsw.neighbors.size()))
    if int(offsets[-1]) != len(neighbours) or int(offsets[:-1].max()) + nb0 > len(neighbours):
        return 0  # the loader's own checks cover a malformed table
    repeated = 0
    for start in range(0, ntotal, 65536):
        rows = np.asarray(offsets[start : min(ntotal, start + 65536)], dtype=np.int64)
        block = np.sort(neighbours[rows[:, None] + np.arange(nb0)], axis=1)
        dup = (block[:, 1:] == block[:, :-1]) & (block[:, 1:] >= 0)
        repeated += int(np.count_nonzero(dup.any(axis=1)))
    return repeated


def _ivf_problems(index: Any, name: str, d: int, ntotal: int) -> list[str]:
    problems = []
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
    elif (zeros := _zero_ids(invlists)) > 1:
        # Ids are unique in practice; many ids of 0 are what a zeroed page over the ids leaves.
        problems.append(f"{name}: {zeros} vectors have id 0 (a zeroed disk page over the ids?)")
    return problems + structural_problems(quantizer)


def _zero_ids(invlists: Any) -> int:
    import numpy as np

    f = faiss()
    zeros = 0
    for i in range(int(invlists.nlist)):
        n = int(invlists.list_size(i))
        if n:
            ids = f.rev_swig_ptr(invlists.get_ids(i), n)
            zeros += int(np.count_nonzero(np.asarray(ids) == 0))
    return zeros


def _chain_problems(f: Any, index: Any, name: str) -> list[str]:
    """A PreTransform's chain must lead from its dimension to its inner index's, finitely."""
    import numpy as np

    problems = []
    d = int(index.d)
    for i in range(int(index.chain.size())):
        vt = f.downcast_VectorTransform(index.chain.at(i))
        if int(vt.d_in) != d:
            problems.append(f"{name}: transform {i} takes d={int(vt.d_in)}, gets d={d}")
        for attr in ("A", "b"):
            values = getattr(vt, attr, None)
            if values is not None and values.size():
                arr = f.vector_to_array(values)
                if not np.isfinite(arr).all():
                    problems.append(
                        f"{name}: transform {i} ({type(vt).__name__}) holds NaN or infinity"
                    )
        d = int(vt.d_out)
    sub = downcast(index.index)
    if int(sub.d) != d:
        problems.append(f"{name}: the chain ends at d={d} but the inner index has d={int(sub.d)}")
    return problems + structural_problems(sub)


def _storages(index: Any, label: str = "") -> Iterator[tuple[str, Any]]:
    """
    (where, raw vectors or codes) of every flat storage inside ``index``, composites included:
    float vectors as float32 arrays of shape (n, d), binary codes as uint8 arrays of (n, bytes).
    """
    f = faiss()
    index = downcast(index)
    name = label or type(index).__name__
    if isinstance(index, f.IndexBinaryFlat):
        n, cs = int(index.ntotal), int(index.code_size)
        if n and int(index.xb.size()) == n * cs:
            yield name, f.rev_swig_ptr(index.xb.data(), n * cs).reshape(n, cs)
        return
    if isinstance(index, f.IndexFlat):
        n, d = int(index.ntotal), int(index.d)
        if n and int(index.codes.size()) == n * d * 4:
            yield name, f.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)
        return
    if isinstance(index, f.IndexFlatCodes):  # PQ, SQ, LSH...: rows of codes
        n, cs = int(index.ntotal), int(index.code_size)
        if n and int(index.codes.size()) == n * cs:
            yield name, f.rev_swig_ptr(index.codes.data(), n * cs).reshape(n, cs)
        return
    if isinstance(index, f.IndexRefine):
        yield from _storages(index.base_index, f"{name} base index")
        yield from _storages(index.refine_index, f"{name} refine storage")
        return
    if isinstance(index, (f.IndexIVF, f.IndexBinaryIVF)):
        yield from _storages(index.quantizer, f"{name} quantizer")
        if isinstance(index, f.IndexIVFFlat):
            yield from _ivf_flat_lists(f, index, name)
        return
    sub = inner(index)
    if sub is not None:
        yield from _storages(sub, f"{name} > {type(sub).__name__}")


def _ivf_flat_lists(f: Any, index: Any, name: str) -> Iterator[tuple[str, Any]]:
    import numpy as np

    invlists, d = index.invlists, int(index.d)
    for i in range(int(invlists.nlist)):
        n = int(invlists.list_size(i))
        if n == 0 or int(invlists.code_size) != 4 * d:
            continue
        raw = f.rev_swig_ptr(invlists.get_codes(i), n * 4 * d)
        yield f"{name} list {i}", np.frombuffer(raw, dtype=np.float32).reshape(n, d)


def finite_problems(index: Any) -> list[str]:
    """
    Non-finite values, or a run of all-zero vectors (a zeroed disk page), in every flat storage
    inside the index (RefineFlat's refine storage, IDMap's inner index, IVF's quantizer and
    lists, HNSW's storage, a PreTransform's inner index); bit codes of binary indexes too.
    """
    problems: list[str] = []
    for where, xb in _storages(index):
        problems += [f"{where}: {p}" for p in _vector_problems(xb)]
    return problems


def _vector_problems(xb: Any) -> list[str]:
    import numpy as np

    n, width = xb.shape
    floats = xb.dtype.kind == "f"  # otherwise codes (binary, PQ, SQ): only zero runs count
    row_bytes = width * xb.dtype.itemsize
    problems: list[str] = []
    bad = 0
    zero_run = longest_zero_run = 0
    step = max(1, (16 * 1024 * 1024) // row_bytes)
    for start in range(0, n, step):
        block = xb[start : start + step]
        if floats:
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
    # A zeroed 4 KiB page covers at least 4096 // row_bytes - 1 whole vectors; real embeddings
    # (and real hashes) are almost never exactly zero, and zero vectors become everyone's nearest
    # neighbour.
    threshold = max(2, 4096 // row_bytes - 1)
    if longest_zero_run >= threshold:
        what = "codes" if not floats else "vectors"
        problems.append(
            f"{longest_zero_run} consecutive stored {what} are all zeros (a zeroed disk page?)"
        )
    return problems
