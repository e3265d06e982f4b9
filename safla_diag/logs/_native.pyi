from collections.abc import Sequence
from typing import NewType

Memo = NewType("Memo", object)

def scan(
    buf: bytes | bytearray | memoryview,
    cut: int,
    prefix: bytes,
    offsets: list[int],
    words: bytes,
    levels: bytes,
    left: bytes,
    right: bytes,
    initial: bytes,
    ctrl: bytes,
    tags: bytes,
    fast: bool,
    has_levels: bool,
    bare: bool,
    known: bytes,
    memo: Memo | None = None,
    order_base: int = 0,
    shapes: Sequence[
        tuple[bytes, Sequence[int], bool] | tuple[bytes, Sequence[int], bool, int]
    ] = (),
    stop_run: int = 0,
    /,
) -> tuple[int, int, int, tuple[int, ...], bytes, bytes, bytes, int]: ...
def memo(head_bytes: int, /) -> Memo: ...
def memo_items(
    memo: Memo, clear: bool, /
) -> list[tuple[bytes, int, int, bytes, int, bytes | None, int]]: ...
def memo_size(memo: Memo, /) -> tuple[int, int]: ...
def memo_merge(into: Memo, other: Memo, /) -> None: ...
def collapse(data: bytes | bytearray | memoryview, /) -> bytes: ...
def mask_simple(key: bytes, start: int, auth: bytes, cores: bytes, /) -> str | None: ...
