"""Validating a task and encoding it as the JSON payload the queue stores."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

__all__ = ["decode_task", "encode_task", "new_task_id"]

_MAX_DEPTH = 64

# One encoder for every task (json.dumps builds one per call). Without a circular-reference
# check: a task is checked for nesting depth before it is encoded.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
)
_C_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, False
    )
)


# The decoder's scanner (C where built): json.loads also looks for whitespace before and after
# the value, with a regex each time; the payloads written here have none.
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_task(payload: str) -> Any:
    """A stored payload back to the task it encodes (``json.loads``, quicker for the compact
    JSON :func:`encode_task` writes; other text goes to ``json.loads`` itself)."""
    try:
        value, end = _SCAN(payload, 0)
    except StopIteration:
        end = -1
    if end == len(payload):
        return value
    return json.loads(payload)


def _dumps(task: dict[str, Any]) -> str:
    if _C_ENCODE is None:  # no C accelerator (another Python implementation)
        return _ENCODER.encode(task)
    return "".join(_C_ENCODE(task, 0))


def _plain(value: object, depth: int = 0) -> bool:
    """
    Whether a value is plain JSON (dicts with str keys, lists, tuples, str, int, bool, None,
    finite floats) nested at most :data:`_MAX_DEPTH` deep: the fast check of every save, without
    the field names; anything else (a problem, or a Mapping or str subclass) goes to
    :func:`_check_json`, which decides and names the field. :data:`_PLAIN` is this check, in C
    where the package's extension is built.
    """
    t = type(value)
    if t is dict:
        for k in value:  # type: ignore[attr-defined]
            if type(k) is not str:
                return False
        items = value.values()  # type: ignore[attr-defined]
    elif t is list or t is tuple:
        items = value
    elif t is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    else:
        return t is str or t is int or t is bool or value is None
    if depth >= _MAX_DEPTH:
        return False
    for v in items:
        tv = type(v)
        if tv is str or tv is int or tv is bool or v is None:
            continue
        if not _plain(v, depth + 1):
            return False
    return True


def _native_plain() -> Callable[[object], bool]:
    """The compiled :func:`_plain` (same answers, a fifth of the time), else :func:`_plain`."""
    if os.environ.get("SAFLA_DIAG_PURE", "") not in ("", "0"):
        return _plain
    try:
        from ._native import plain
    except ImportError:  # not built, or Windows (where the module is empty)
        return _plain
    return plain


_PLAIN = _native_plain()


def _check_json(value: object, where: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not valid JSON")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string (JSON keys are strings)")
            _check_json(v, f"{where}[{k!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
        return
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


_MS_MASK = (1 << 48) - 1
_LOW62 = (1 << 62) - 1
_LOW_MAX = (1 << 74) - 1
_id_lock = threading.Lock()
_last_ms = -1
_last_low = 0


def new_task_id() -> str:
    """
    A fresh task id, time-ordered (a UUIDv7 as 32 hex digits): ids saved together sort together,
    so a batch of new tasks lands on the tail of the primary-key index, whatever the backlog.
    """
    global _last_ms, _last_low
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        if ms <= _last_ms and _last_low < _LOW_MAX:
            # Same millisecond (or the clock stepped back): count on, so ids stay in order.
            ms, low = _last_ms, _last_low + 1
        else:
            low = int.from_bytes(os.urandom(10), "big") >> 8  # 72 random bits, top one clear
        _last_ms, _last_low = ms, low
    # 48 bits of milliseconds, version 7, 12 bits then (variant 0b10) 62 bits of `low`.
    value = (ms & _MS_MASK) << 80 | 0x7 << 76 | (low >> 62) << 64 | 0b10 << 62
    return f"{value | (low & _LOW62):032x}"


def _bad_text(value: object, where: str) -> str | None:
    """Where the first string (or key) that is not valid UTF-8 (a lone surrogate) is, if any."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = _bad_text(k, f"{where} key {k!r}") or _bad_text(v, f"{where}[{k!r}]")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _bad_text(v, f"{where}[{i}]")
            if found:
                return found
    return None


def encode_task(task: Mapping[str, Any]) -> tuple[str, str]:
    """
    Validate a task and return ``(id, payload_json)``; a missing id gets a fresh uuid.

    Raises:
        TypeError: The task is not a mapping, or holds something JSON cannot represent.
        ValueError: NaN or infinity, a bad id, nesting too deep, a number too long to write, or
            text that is not valid UTF-8 (a lone surrogate, as ``os.fsdecode`` makes of a bad byte):
            the message names the field.
    """
    if type(task) is not dict and not isinstance(task, Mapping):
        raise TypeError(f"a task must be a mapping, got {type(task).__name__}")
    t = dict(task)
    task_id = t.get("id")
    if task_id is None:
        task_id = t["id"] = new_task_id()
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):
        raise TypeError(f"task id must be a string or an int, got {type(task_id).__name__}")
    key = str(task_id)
    if not key or len(key) > 1024:
        raise ValueError("task id must be a non-empty string of at most 1024 characters")
    if not _PLAIN(t):
        _check_json(t, "task")
    try:
        payload = _dumps(t)
    except ValueError as err:  # an int longer than Python will write as text
        raise ValueError(f"task: {err}") from None
    if not payload.isascii():
        try:
            payload.encode("utf-8")
        except UnicodeEncodeError:
            where = _bad_text(t, "task") or "task"
            raise ValueError(
                f"{where}: holds a lone surrogate, not valid UTF-8 text "
                "(decode bytes with errors='replace', or store them as hex)"
            ) from None
    return key, payload
