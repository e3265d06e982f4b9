"""Real faiss indexes and the ways their files get damaged, for the corruption battery."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np

KINDS = ("Flat", "IVF", "HNSW", "IDMap2")
DIM = 16


def make_index(kind: str, *, n: int = 300, d: int = DIM, seed: int = 0) -> Any:
    """A small real index of the given kind, with n vectors of dimension d."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    if kind == "Flat":
        index = faiss.IndexFlatL2(d)
        index.add(x)
    elif kind == "IVF":
        index = faiss.index_factory(d, "IVF4,Flat")
        index.train(x)
        index.add(x)
    elif kind == "HNSW":
        index = faiss.IndexHNSWFlat(d, 8)
        index.add(x)
    elif kind == "IDMap2":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(x, np.arange(1000, 1000 + n, dtype=np.int64))
    else:  # pragma: no cover
        raise ValueError(kind)
    return index


def serialize(index: Any) -> bytes:
    return bytes(faiss.serialize_index(index))


def damages(data: bytes, *, full: bool, seed: int = 1) -> Iterator[tuple[str, bytes]]:
    """
    (label, damaged bytes) for one healthy file.

    Truncations at many offsets (the header included), single bit flips in the header and in
    the data, a zeroed 4 KiB page, a random file, an empty file and garbage appended. ``full``
    takes many more offsets and bits than the default sample.
    """
    rng = random.Random(seed)
    size = len(data)
    header = min(128, size)
    if full:
        cuts = sorted({*range(1, header, 3), *range(header, size, max(1, size // 64)), size - 1})
    else:
        cuts = sorted(
            {1, 4, 8, 13, 25, 45, 63, 64, 100, size // 4, size // 2, (3 * size) // 4, size - 1}
        )
    for cut in cuts:
        if 0 < cut < size:
            yield f"truncated at {cut}", data[:cut]
    header_flips = [(i, b) for i in range(header) for b in range(8)]
    data_positions = list(range(header, size))
    if full:
        flips = rng.sample(header_flips, min(200, len(header_flips)))
        flips += [(rng.choice(data_positions), rng.randrange(8)) for _ in range(60)]
    else:
        flips = rng.sample(header_flips, 10)
        flips += [(rng.choice(data_positions), rng.randrange(8)) for _ in range(4)]
    for pos, bit in flips:
        b = bytearray(data)
        b[pos] ^= 1 << bit
        yield f"bit {bit} flipped at {pos}", bytes(b)
    for page in [4096, 8192] if full else [4096]:
        if page + 4096 <= size:
            b = bytearray(data)
            b[page : page + 4096] = bytes(4096)
            yield f"zeroed page at {page}", bytes(b)
    yield "random file", rng.randbytes(size)
    yield "empty file", b""
    yield "garbage appended", data + rng.randbytes(100)
    yield "one byte appended", data + b"\x00"
