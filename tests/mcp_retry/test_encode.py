"""The task validator: every JSON mapping is accepted and round-trips; anything else is refused."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag.mcp_retry import _encode
from safla_diag.mcp_retry._encode import decode_task, encode_task

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
BAD_LEAVES = st.sampled_from([{1, 2}, b"bytes", object(), math.nan, math.inf, -math.inf, 1j])


@given(JSON, st.sampled_from(["", " ", "\n\t "]), st.sampled_from(["", " ", "\r\n"]))
def test_a_payload_decodes_as_json_loads_decodes_it(value: Any, before: str, after: str) -> None:
    """The worker's decoder reads what json.loads reads, compact or not, the same."""
    for text in (json.dumps(value, separators=(",", ":")), json.dumps(value, indent=1)):
        padded = before + text + after
        assert decode_task(padded) == json.loads(padded)


@pytest.mark.parametrize("text", ["", "{} x", '{"a": 1', "nul", "[1,]", '{"a":1}}', "NaNx"])
def test_a_bad_payload_fails_as_json_loads_fails(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        decode_task(text)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert (ours.value.msg, ours.value.pos) == (theirs.value.msg, theirs.value.pos)


@given(st.dictionaries(st.text(max_size=8), JSON, max_size=6))
def test_json_mappings_round_trip(task: dict[str, Any]) -> None:
    """Any JSON mapping is accepted; the stored payload decodes to it (with its id)."""
    task.pop("id", None)
    key, payload = encode_task(task)
    back = json.loads(payload)
    assert decode_task(payload) == back
    assert back.pop("id") == key
    assert back == json.loads(json.dumps(task))


@given(
    st.dictionaries(st.text(max_size=8), JSON, max_size=4),
    st.text(max_size=8),
    BAD_LEAVES,
    st.integers(0, 3),
)
def test_non_json_refused(task: dict[str, Any], key: str, bad: Any, depth: int) -> None:
    """A non-JSON value anywhere in the task is refused with TypeError or ValueError."""
    value: Any = bad
    for _ in range(depth):
        value = [value]
    task = {**task, "id": "x", key or "k": value}
    with pytest.raises((TypeError, ValueError)):
        encode_task(task)


def test_too_deep_refused() -> None:
    """Nesting deeper than the limit is refused instead of overflowing the stack."""
    value: Any = 1
    for _ in range(200):
        value = [value]
    with pytest.raises(ValueError, match="deeper"):
        encode_task({"v": value})


class _Str(str):
    pass


class _Int(int):
    pass


class _Dict(dict):  # type: ignore[type-arg]
    pass


ANY_LEAVES = (
    JSON_LEAVES
    | BAD_LEAVES
    | st.floats()  # NaN and infinities too
    | st.builds(_Str, st.text(max_size=4))
    | st.builds(_Int, st.integers())
)
ANY = st.recursive(
    ANY_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4) | st.integers() | st.builds(_Str), inner, max_size=4)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3).map(_Dict)
    ),
    max_leaves=24,
)


try:
    from safla_diag.mcp_retry._native import plain as compiled_plain
except ImportError:  # not built, or Windows
    compiled_plain = None

needs_compiled = pytest.mark.skipif(compiled_plain is None, reason="the extension was not built")


def _nested(depth: int, leaf: Any, kind: str) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value] if kind == "list" else (value,)
    return value


@needs_compiled
@given(ANY)
def test_the_compiled_check_answers_as_the_python_one(value: Any) -> None:
    """Differential: the C check of every save says plain exactly when the Python one does (an
    answer that differed either way would let a value past the full check, or slow every save)."""
    assert compiled_plain is not None
    assert compiled_plain(value) is _encode._plain(value)


@needs_compiled
@pytest.mark.parametrize("kind", ["dict", "list", "tuple"])
@pytest.mark.parametrize("depth", [0, 1, 63, 64, 65, 500])
@pytest.mark.parametrize("leaf", [1, "x", None, 1.5, math.nan, [], {}])
def test_the_compiled_check_stops_at_the_same_depth(kind: str, depth: int, leaf: Any) -> None:
    """Containers nest at most 64 deep in both; deeper (500: past C's comfort) is not plain."""
    value = _nested(depth, leaf, kind)
    containers = depth + (1 if isinstance(leaf, (list, dict)) else 0)
    expected = containers <= 64 and not (isinstance(leaf, float) and math.isnan(leaf))
    assert compiled_plain is not None
    assert _encode._plain(value) is expected
    assert compiled_plain(value) is expected


def test_saves_check_in_c_where_built_and_in_python_when_pure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SAFLA_DIAG_PURE", raising=False)
    assert _encode._native_plain() is (compiled_plain or _encode._plain)
    monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
    assert _encode._native_plain() is _encode._plain
