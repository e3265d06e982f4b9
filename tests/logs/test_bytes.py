"""The fast path's byte tables agree with the plain byte tests they stand for."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from safla_diag.logs._bytes import swar


@given(
    st.lists(st.sampled_from([0, 45, 58, 32]), min_size=1, max_size=16),
    st.binary(min_size=16, max_size=16),
)
def test_swar_prefix_is_the_byte_by_byte_test(classes: list[int], line: bytes) -> None:
    """The 8-byte masks accept a line exactly when each byte is a digit (class 0) or equal."""
    prefix = tuple(enumerate(classes))
    buf = np.frombuffer(line + b"\0" * 16, dtype=np.uint8)
    words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    ok = True
    for k, (exact_m, exact_v, dig_m, dig_v, add6) in enumerate(swar(prefix)):
        w = words[8 * k : 8 * k + 1]  # an array: uint64 adds wrap silently, as in the scanner
        ok &= bool(
            (((w & exact_m) == exact_v) & ((w & dig_m) == dig_v) & (((w + add6) & dig_m) == dig_v))[
                0
            ]
        )
    want = all((48 <= line[p] <= 57) if v == 0 else line[p] == v for p, v in prefix)
    assert ok == want
