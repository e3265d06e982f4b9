"""The read budget of a probe: what a peer may make it read, and the error past it."""

from __future__ import annotations

from ._net import Outcome, ProbeFailure

__all__ = ["READ_BUDGET", "oversized"]

READ_BUDGET = 64 * 1024
"""Bytes one probe reads from a peer at most: what a peer announces beyond is a protocol error."""


def oversized(what: str, size: int, hint: str) -> ProbeFailure:
    """A peer announced more than :data:`READ_BUDGET` bytes: stop, without reading them."""
    shown = f"{size} bytes" if size < 10**15 else "an absurd size"
    return ProbeFailure(
        Outcome(
            False,
            "protocol",
            f"{what} of {shown}, more than a probe reads ({READ_BUDGET // 1024} KiB)",
            hint,
        )
    )
