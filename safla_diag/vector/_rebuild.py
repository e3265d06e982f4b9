"""
Rebuilding an index from source vectors: a function from vectors (and ids) to a new faiss index.

Nothing here touches the live index; the facade saves what :func:`build` returns.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import RecoveryError
from .._redact import redact
from ._live import first_line

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["METRICS", "Progress", "build", "load_ids", "load_npy", "load_vectors"]

logger = logging.getLogger("safla_diag.vector")

Progress = Callable[[int, int], object]

METRICS = {
    "cosine": "inner_product",
    "l2": "l2",
    "inner_product": "inner_product",
    "ip": "inner_product",
}


def load_npy(path: Path) -> npt.NDArray[Any]:
    """Open a ``.npy`` file memory-mapped, without pickles."""
    import numpy as np

    if path.suffix == ".npz":
        raise ValueError(f"{path.name}: expected a .npy file, not .npz")
    try:
        arr: npt.NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError) as err:
        raise ValueError(
            f"{path.name} is not a readable .npy file: {first_line(str(err))}"
        ) from err
    return arr


def load_vectors(
    source: str | os.PathLike[str] | npt.ArrayLike, *, dimension: int | None
) -> tuple[npt.NDArray[Any], Path | None]:
    """
    The source vectors as an array of shape (n, d), and the file they came from.

    Raises:
        ValueError: For a bad shape, dtype or dimension.
    """
    import numpy as np

    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    x = load_npy(path) if path is not None else np.asarray(source)
    if x.ndim != 2 or x.shape[1] <= 0:
        raise ValueError(f"expected vectors of shape (n, d), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"expected numeric vectors, got dtype {x.dtype}")
    d = int(x.shape[1])
    if dimension is not None and d != dimension:
        raise ValueError(f"the source vectors have dimension {d}, expected {dimension}")
    return x, path


def load_ids(
    ids: str | os.PathLike[str] | npt.ArrayLike, n: int
) -> tuple[npt.NDArray[Any], Path | None]:
    """
    ``n`` unique integer ids, and the file they came from.

    Raises:
        ValueError: For a bad shape or dtype, or repeated ids.
    """
    import numpy as np

    path = Path(ids) if isinstance(ids, (str, os.PathLike)) else None
    id_array = load_npy(path) if path is not None else np.asarray(ids)
    if id_array.shape != (n,) or not np.issubdtype(id_array.dtype, np.integer):
        raise ValueError(
            f"expected {n} integer ids, got shape {id_array.shape} dtype {id_array.dtype}"
        )
    if n and np.unique(id_array).size != n:
        raise ValueError("the ids are not unique")
    return id_array, path


def build(
    x: npt.NDArray[Any],
    *,
    ids: npt.NDArray[Any] | None,
    factory: str,
    metric: str,
    batch_size: int,
    train_size: int | None = None,
    progress: Progress | None = None,
) -> Any:
    """
    A new index over ``x`` (with ``ids``), trained on a sample when it needs training.

    Raises:
        ValueError: For a factory faiss cannot build, or an untrainable source.
        RecoveryError: When a source vector contains NaN or infinity.
    """
    import numpy as np

    from . import _faiss

    n, d = int(x.shape[0]), int(x.shape[1])
    cosine = metric == "cosine"
    index = _faiss.build_index(d, factory, METRICS[metric], with_ids=ids is not None)
    t0 = time.perf_counter()
    if not index.is_trained:
        if n == 0:
            raise ValueError(f"cannot train {factory!r} on an empty source")
        nl = _faiss.nlist(index) or 1
        size = min(n, train_size or max(10_000, 64 * nl))
        rows = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
        sample = _batch(x, rows, cosine, start=0)
        logger.info("training %s on %d sampled vectors", redact(factory), size)
        index.train(sample)
    _faiss.reserve(index, n)
    step_log = max(1, n // 10)
    next_log = step_log
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        xb = _batch(x, slice(start, stop), cosine, start=start)
        if ids is not None:
            index.add_with_ids(xb, np.ascontiguousarray(ids[start:stop], dtype=np.int64))
        else:
            index.add(xb)
        if progress is not None:
            progress(stop, n)
        elif stop >= next_log or stop == n:
            logger.info("rebuild: %d / %d vectors added", stop, n)
            next_log = stop + step_log
    logger.info(
        "rebuilt %s with %d vectors in %.3f s", redact(factory), n, time.perf_counter() - t0
    )
    return index


def _batch(
    x: npt.NDArray[Any], rows: slice | npt.NDArray[Any], cosine: bool, *, start: int
) -> npt.NDArray[np.float32]:
    import numpy as np

    xb = x[rows]
    if cosine or xb.dtype != np.float32 or not xb.flags.c_contiguous:
        xb = np.array(xb, dtype=np.float32, order="C")  # a private, writable copy
    # A sum propagates NaN and infinity in one fast pass; only a non-finite sum (which a huge but
    # finite vector could also cause) pays for the exact check.
    if xb.size and not np.isfinite(np.add.reduce(xb, axis=None)) and not np.isfinite(xb).all():
        bad = int(np.flatnonzero(~np.isfinite(xb).all(axis=1))[0])
        where = start + bad if isinstance(rows, slice) else int(np.asarray(rows)[bad])
        raise RecoveryError(f"source vector {where} contains NaN or infinity; not indexing it")
    if cosine:
        from . import _faiss

        _faiss.normalize(xb)
    out: npt.NDArray[np.float32] = xb
    return out
