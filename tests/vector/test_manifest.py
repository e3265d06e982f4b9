"""The manifest parser and the durable-write primitives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag.vector._fs import atomic_write_bytes, hash_file, new_hasher
from safla_diag.vector._manifest import Manifest, ManifestError


def _manifest() -> Manifest:
    return Manifest.new(
        generation=3,
        index={
            "class": "IndexFlatL2",
            "dimension": 8,
            "ntotal": 2,
            "metric": "l2",
            "is_trained": True,
        },
        files={"vector_index.faiss": {"size": 10, "checksum": "ab"}},
        algorithm="xxh3_128",
        faiss_version="1.15.1",
    )


def test_round_trip() -> None:
    """A manifest reads back as written."""
    m = _manifest()
    again = Manifest.from_bytes(m.to_bytes())
    assert again.generation == 3 and again.files == m.files and again.index == m.index


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_manifest_error(data: bytes) -> None:
    """Whatever the bytes, the parser returns a Manifest or raises ManifestError."""
    try:
        Manifest.from_bytes(data)
    except ManifestError:
        pass


@given(json_values)
def test_arbitrary_json_is_rejected_cleanly(value: object) -> None:
    """Any JSON that is not a manifest raises ManifestError, never KeyError or TypeError."""
    with pytest.raises(ManifestError):
        Manifest.from_bytes(json.dumps(value).encode())


@given(st.sampled_from(["generation", "index", "files", "checksum_algorithm"]), json_values)
def test_tampered_fields_fail_the_self_checksum(key: str, value: object) -> None:
    """Changing any field without updating the self-checksum is detected."""
    body = json.loads(_manifest().to_bytes())
    if body.get(key) == value:
        return
    body[key] = value
    with pytest.raises(ManifestError):
        Manifest.from_bytes(json.dumps(body).encode())


def test_missing_fields_are_named() -> None:
    """A structurally incomplete (but self-consistent) manifest names what is missing."""
    m = _manifest()
    del m.body["index"]["ntotal"]
    with pytest.raises(ManifestError, match="ntotal"):
        Manifest.from_bytes(m.to_bytes())


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    """atomic_write_bytes writes the content and leaves nothing else behind."""
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"abc")
    atomic_write_bytes(target, b"defg")
    assert target.read_bytes() == b"defg"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_hashers_agree_with_reference(tmp_path: Path) -> None:
    """xxh3_128 and sha256 give the library's reference digests; unknown names are refused."""
    import hashlib

    import xxhash

    path = tmp_path / "x"
    path.write_bytes(b"q" * 10_000_000)
    assert hash_file(path, "sha256") == (10_000_000, hashlib.sha256(b"q" * 10_000_000).hexdigest())
    assert hash_file(path)[1] == xxhash.xxh3_128(b"q" * 10_000_000).hexdigest()
    with pytest.raises(ValueError):
        new_hasher("md5")
