"""The backoff's precomputed delays are tenacity's, for every n."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st
from tenacity.wait import wait_exponential

from safla_diag.mcp_retry._backoff import Backoff


class _State:
    def __init__(self, n: int) -> None:
        self.attempt_number = n + 1


@given(
    first=st.floats(0, 1e6, allow_nan=False),
    cap=st.floats(0, 1e9, allow_nan=False),
    n=st.integers(-5, 300),
)
def test_base_is_tenacity_exponential_wait(first: float, cap: float, n: int) -> None:
    b = Backoff(first, cap)
    want = wait_exponential(multiplier=first, max=max(first, cap), exp_base=2)(_State(max(0, n)))  # type: ignore[arg-type]
    assert b.base(n) == float(want)


def test_delays_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() -> None:
    b = Backoff(0.5, 10.0, jitter=True, rng=random.Random(7))
    assert [b.base(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.base(10**6) == 10.0
    for n in range(100):
        d = b.delay(n)
        assert b.base(n) / 2 <= d <= b.base(n)
