"""
Rebuilding an index from source vectors: a function from vectors (and ids) to a new faiss index.

Nothing here touches the live index; the facade saves what :func:`build` returns.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import RecoveryError
from .._redact import redact
from ._fs import hash_file
from ._live import first_line

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "METRICS",
    "Progress",
    "build",
    "check_factory",
    "load_ids",
    "load_npy",
    "load_vectors",
    "source_record",
    "trial_build",
]

logger = logging.getLogger("safla_diag.vector")

Progress = Callable[[int, int], object]

METRICS = {
    "cosine": "inner_product",
    "l2": "l2",
    "inner_product": "inner_product",
    "ip": "inner_product",
    "hamming": "hamming",
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
    source: str | os.PathLike[str] | npt.ArrayLike, *, dimension: int | None, binary: bool = False
) -> tuple[npt.NDArray[Any], Path | None]:
    """
    The source vectors as an array of shape (n, d), and the file they came from.

    Binary sources (``binary=True``, for ``metric="hamming"``) are uint8 codes of shape
    (n, d / 8): each row holds the d bits of one vector, packed.

    Raises:
        ValueError: For a bad shape, dtype or dimension.
    """
    import numpy as np

    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    x = load_npy(path) if path is not None else np.asarray(source)
    if x.ndim != 2 or x.shape[1] <= 0:
        raise ValueError(f"expected vectors of shape (n, d), got shape {x.shape}")
    if binary and x.dtype != np.uint8:
        raise ValueError(f"expected uint8 codes (packed bits) for metric hamming, got {x.dtype}")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"expected numeric vectors, got dtype {x.dtype}")
    d = int(x.shape[1]) * (8 if binary else 1)
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

    n, binary = int(x.shape[0]), metric == "hamming"
    d = int(x.shape[1]) * (8 if binary else 1)
    cosine = metric == "cosine"
    check_factory(factory, n, with_ids=ids is not None)
    trial_build(d, factory, METRICS[metric])
    index = _faiss.build_index(d, factory, METRICS[metric], with_ids=ids is not None)
    t0 = time.perf_counter()
    if not index.is_trained:
        if n == 0:
            raise ValueError(f"cannot train {factory!r} on an empty source")
        nl = _faiss.nlist(index) or 1
        size = min(n, train_size or max(10_000, 64 * nl))
        rows = np.sort(np.random.default_rng(0).choice(n, size=size, replace=False))
        sample = _batch(x, rows, cosine, start=0, binary=binary)
        logger.info("training %s on %d sampled vectors", redact(factory), size)
        _faiss_call(index.train, sample, what=f"training {factory!r}")
    _faiss.reserve(index, n)
    step_log = max(1, n // 10)
    next_log = step_log
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        xb = _batch(x, slice(start, stop), cosine, start=start, binary=binary)
        if ids is not None:
            batch_ids = np.ascontiguousarray(ids[start:stop], dtype=np.int64)
            _faiss_call(index.add_with_ids, xb, batch_ids, what=f"adding to {factory!r}")
        else:
            _faiss_call(index.add, xb, what=f"adding to {factory!r}")
        if progress is not None:
            progress(stop, n)
        elif stop >= next_log or stop == n:
            logger.info("rebuild: %d / %d vectors added", stop, n)
            next_log = stop + step_log
    logger.info(
        "rebuilt %s with %d vectors in %.3f s", redact(factory), n, time.perf_counter() - t0
    )
    return index


_HNSW = re.compile(r"HNSW(\d+)")
_IVF = re.compile(r"IVF(\d+)")


def check_factory(factory: str, n: int, *, with_ids: bool) -> None:
    """
    Refuse, before faiss sees it, a factory string that faiss would abort on or cannot build
    over ``n`` vectors (an abort kills the host: no exception to catch).

    Raises:
        RecoveryError: One line saying what is wrong.
    """
    for m in _HNSW.finditer(factory):
        if int(m[1]) < 2:
            raise RecoveryError(
                f"factory {factory!r}: HNSW needs at least 2 links per node (HNSW{m[1]} aborts faiss)"
            )
    for m in _IVF.finditer(factory):
        nlist = int(m[1])
        if nlist < 1:
            raise RecoveryError(f"factory {factory!r}: IVF needs at least 1 list")
        if nlist > n:
            raise RecoveryError(
                f"factory {factory!r}: IVF{nlist} needs at least {nlist} vectors to train its "
                f"lists, the source has {n}; use fewer lists (about sqrt(n): IVF{_isqrt(n)})"
            )
    if "IDMap" in factory and not with_ids:
        raise RecoveryError(
            f"factory {factory!r} maps ids but no ids were given (pass ids= / --ids FILE.npy), "
            "or drop IDMap from the factory"
        )


def _isqrt(n: int) -> int:
    import math

    return max(1, math.isqrt(max(n, 1)))


_TRIAL = """
import sys
import numpy as np, faiss
d, factory, metric = int(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    if metric == "hamming":
        index = faiss.index_binary_factory(d, factory if factory.startswith("B") else "B" + factory)
        x = np.random.default_rng(0).integers(0, 256, (16, d // 8), dtype=np.uint8)
    else:
        m = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.index_factory(d, factory, m)
        x = np.random.default_rng(0).standard_normal((16, d)).astype("float32")
    if index.is_trained and "IDMap" not in factory:
        index.add(x)
        index.search(x[:2], 2)
except Exception:
    pass  # an exception is the host's to report; only an abort matters here
"""


def trial_build(d: int, factory: str, metric: str) -> None:
    """
    Build ``factory`` on a few vectors in a child process first: a factory that makes faiss abort
    (SIGABRT, SIGSEGV) kills the child, not the host. ``Flat`` is known good and skipped.

    Raises:
        RecoveryError: When the child died of a signal.
    """
    import subprocess
    import sys

    if factory in ("Flat", "BFlat"):
        return
    try:
        done = subprocess.run(
            [sys.executable, "-c", _TRIAL, str(d), factory, metric],
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.info("factory trial skipped: %s", redact(str(err)))
        return
    if done.returncode < 0:
        last = first_line(done.stderr.decode("utf-8", "replace")) or f"signal {-done.returncode}"
        raise RecoveryError(f"faiss aborts when it builds {factory!r}: {last[:200]}")


def _faiss_call(fn: Callable[..., Any], *args: Any, what: str) -> Any:
    """Call into faiss; its RuntimeError (with a C++ stack) becomes one line."""
    try:
        return fn(*args)
    except RuntimeError as err:
        raise RecoveryError(f"faiss failed {what}: {_faiss_reason(str(err))}") from err


def _faiss_reason(text: str) -> str:
    line = first_line(text)
    return line.split("Error: ", 1)[-1].strip()[:300] if "Error: " in line else line[:300]


def _batch(
    x: npt.NDArray[Any],
    rows: slice | npt.NDArray[Any],
    cosine: bool,
    *,
    start: int,
    binary: bool = False,
) -> npt.NDArray[Any]:
    import numpy as np

    xb = x[rows]
    if binary:
        codes: npt.NDArray[np.uint8] = np.ascontiguousarray(xb, dtype=np.uint8)
        return codes
    if cosine or xb.dtype != np.float32 or not xb.flags.c_contiguous:
        xb = np.array(xb, dtype=np.float32, order="C")  # a private, writable copy
    # A sum propagates NaN and infinity in one fast pass; only a non-finite sum (which a huge but
    # finite vector could also cause) pays for the exact check.
    if xb.size and not np.isfinite(xb.sum()) and not np.isfinite(xb).all():
        bad = int(np.flatnonzero(~np.isfinite(xb).all(axis=1))[0])
        where = start + bad if isinstance(rows, slice) else int(np.asarray(rows)[bad])
        raise RecoveryError(f"source vector {where} contains NaN or infinity; not indexing it")
    if cosine:
        from . import _faiss

        _faiss.normalize(xb)
    out: npt.NDArray[np.float32] = xb
    return out


def source_record(
    source: str | os.PathLike[str] | None,
    ids_source: str | os.PathLike[str] | None,
    algorithm: str,
) -> dict[str, Any] | None:
    """What the manifest records of the source vectors (and ids): path, size, checksum."""
    if source is None:
        return None
    size, digest = hash_file(source, algorithm)
    info: dict[str, Any] = {
        "path": str(Path(source).resolve()),
        "size": size,
        "checksum": digest,
        "checksum_algorithm": algorithm,
    }
    if ids_source is not None:
        isize, idigest = hash_file(ids_source, algorithm)
        info["ids"] = {
            "path": str(Path(ids_source).resolve()),
            "size": isize,
            "checksum": idigest,
        }
    return info
