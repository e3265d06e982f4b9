"""Byte tables and 8-byte (SWAR) masks for the scanner's vectorised fast path."""

from __future__ import annotations

import functools
from typing import Any

from ._levels import LEVEL_WORDS

__all__ = ["CTRL", "LEFT", "PREFIX_BYTES", "RIGHT", "byte_table", "luts", "spellings", "swar"]

PREFIX_BYTES = 16  # the fast path tests at most this much of a record's prefix
#: Bytes before a level word, after one, and the control bytes that make a line garbage.
LEFT = b' \t[<("'
RIGHT = b' \t]>):,|"\r\n'
CTRL = bytes([*range(9), 11, 12, *range(14, 27), *range(28, 32), 127])


def byte_table(members: bytes) -> bytes:
    """A 256-byte table: 1 at each byte of ``members``, else 0 (the kernel's form, no numpy)."""
    out = bytearray(256)
    for b in members:
        out[b] = 1
    return bytes(out)


def swar(prefix: tuple[tuple[int, int], ...]) -> list[tuple[Any, ...]]:
    """Per 8-byte word of the prefix: masks and values for the exact and the digit tests."""
    import numpy as np

    out = []
    for k in range(0, len(prefix), 8):
        exact_m = exact_v = dig_m = dig_v = add6 = 0
        for pos, val in prefix[k : k + 8]:
            shift = 8 * (pos - k)
            if val == 0:
                dig_m |= 0xF0 << shift
                dig_v |= 0x30 << shift
                add6 |= 0x06 << shift
            else:
                exact_m |= 0xFF << shift
                exact_v |= val << shift
        out.append(tuple(np.uint64(x) for x in (exact_m, exact_v, dig_m, dig_v, add6)))
    return out


@functools.lru_cache(maxsize=8)
def spellings(cases: frozenset[str]) -> tuple[tuple[bytes, str], ...]:
    """Every level word's spellings the scanner tests (its case forms), with its level; made
    once per set of cases (every file's scan asks for them, some more than once)."""
    out: list[tuple[bytes, str]] = []
    for word, level in LEVEL_WORDS.items():
        if len(word) > 8:
            continue
        forms = {word, word.title()} | ({word.lower()} if "lower" in cases else set())
        out.extend((f.encode(), level) for f in sorted(forms))
    return tuple(out)


class _Luts:
    """Byte tables built once per process."""

    def __init__(self) -> None:
        import numpy as np

        self.left = np.zeros(256, dtype=bool)
        self.left[list(LEFT)] = True
        self.right = np.zeros(256, dtype=bool)
        self.right[list(RIGHT)] = True
        self.digit = np.zeros(256, dtype=bool)
        self.digit[48:58] = True
        self.bit_index = np.zeros(1 << 16, dtype=np.int64)
        for k in range(16):
            self.bit_index[1 << k] = k
        self.letter = np.zeros(256, dtype=bool)
        self.letter[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")] = True
        self.initial = np.zeros(256, dtype=bool)
        for word in LEVEL_WORDS:
            self.initial[[ord(word[0]), ord(word[0].lower())]] = True
        self.ctrl = np.zeros(256, dtype=bool)
        self.ctrl[list(CTRL)] = True


_LUTS: list[_Luts] = []


def luts() -> _Luts:
    if not _LUTS:
        _LUTS.append(_Luts())
    return _LUTS[0]
