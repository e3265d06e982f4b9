"""Validating a task and encoding it as the JSON payload the queue stores."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["encode_task"]

_MAX_DEPTH = 64


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


def encode_task(task: Mapping[str, Any]) -> tuple[str, str]:
    """
    Validate a task and return ``(id, payload_json)``; a missing id gets a fresh uuid.

    Raises:
        TypeError: The task is not a mapping, or holds something JSON cannot represent.
        ValueError: NaN or infinity, a bad id, or nesting too deep.
    """
    if not isinstance(task, Mapping):
        raise TypeError(f"a task must be a mapping, got {type(task).__name__}")
    t = dict(task)
    task_id = t.get("id")
    if task_id is None:
        task_id = t["id"] = uuid.uuid4().hex
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):
        raise TypeError(f"task id must be a string or an int, got {type(task_id).__name__}")
    key = str(task_id)
    if not key or len(key) > 1024:
        raise ValueError("task id must be a non-empty string of at most 1024 characters")
    _check_json(t, "task")
    return key, json.dumps(t, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
