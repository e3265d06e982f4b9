"""The masker and the template cache."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safla_diag.logs._templates import TemplateCache, group_key, mask, mask_many


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("took 35 ms", "took <NUM> ms"),
        ("ratio 0.75 after 3 tries", "ratio <NUM> after <NUM> tries"),
        ("task 5f3a9c1b2e failed", "task <HEX> failed"),
        ("at 0x7ffd5e8c", "at <HEX>"),
        ("job 123e4567-e89b-12d3-a456-426614174000 done", "job <UUID> done"),
        ("connect 10.0.0.12:6379 refused", "connect <IP> refused"),
        ("peer 2001:db8::1 gone", "peer <IP> gone"),
        ("peer fe80:0:0:0:202:b3ff:fe1e:8329 gone", "peer <IP> gone"),
        ("peer ::1 gone", "peer <IP> gone"),
        ('key "user:42" missing', "key <STR> missing"),
        ("server 'alpha' returned 503", "server <STR> returned <NUM>"),
        ("can't open /var/lib/safla/idx_3.faiss", "can't open <PATH>"),
        ("GET https://api.example.com/v1/x?id=3 failed", "GET <URL> failed"),
        ("at 10:00:00 ok", "at <NUM>:<NUM>:<NUM> ok"),
        ("plain words stay", "plain words stay"),
        ("  spaces   collapse ", "spaces collapse"),
    ],
)
def test_mask(message: str, template: str) -> None:
    """Each kind of variable part has its placeholder; ordinary words are kept."""
    assert mask(message) == template


def test_mask_many_keeps_order_and_lines() -> None:
    """A batch gives one template per message, newlines inside messages flattened."""
    assert mask_many(["a 1", "b\n2", "c"]) == ["a <NUM>", "b <NUM>", "c"]
    assert mask_many([]) == []


KINDS = {
    "uuid": st.uuids().map(str),
    # Hex ids as services print them: fixed width, 8 digits or more. (A run of six or seven a-f
    # letters alone, "facade", is taken for a word.)
    "number or hex id": st.one_of(
        st.integers(0, 2**32).map(str),
        st.builds(
            lambda n, w: f"{n % 16**w:0{w}x}",
            st.integers(0, 2**128),
            st.sampled_from([8, 12, 16, 32]),
        ),
    ),
    "ipv4": st.ip_addresses(v=4).map(str),
    "ipv6": st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))),
    "float": st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.3f}"),
    "path": st.lists(st.from_regex(r"[a-z0-9_.]{1,8}", fullmatch=True), min_size=1, max_size=4).map(
        lambda p: "/" + "/".join(p)
    ),
    "quoted": st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="'\n\r"), max_size=12
    ).map(lambda t: f"'{t}'"),
}
words = st.sampled_from(["failed", "task", "connect", "to", "retry", "in", "ms", "server", "="])


@given(
    st.lists(st.tuples(words, st.sampled_from(sorted(KINDS))), min_size=1, max_size=6), st.data()
)
def test_messages_differing_only_in_ids_share_a_template(
    parts: list[tuple[str, str]], data: st.DataObject
) -> None:
    """Two messages of the same words with other ids, numbers, addresses, paths group as one."""
    one = [data.draw(KINDS[kind]) for _, kind in parts]
    two = [data.draw(KINDS[kind]) for _, kind in parts]
    first = " ".join(f"{w} {v}" for (w, _), v in zip(parts, one, strict=True))
    second = " ".join(f"{w} {v}" for (w, _), v in zip(parts, two, strict=True))
    cache = TemplateCache()
    a, b = cache.templates([first.encode(), second.encode()])
    assert group_key(a) == group_key(b)
    assert group_key(mask(first)) == group_key(mask(second))


@given(st.text(max_size=120))
def test_cache_agrees_with_mask(message: str) -> None:
    """For one message, the cache's template is mask()'s (leading separators dropped)."""
    flat = message.replace("\n", " ").replace("\r", " ").lstrip(" \t-:|]>)")
    [got] = TemplateCache().templates([flat.encode("utf-8", "surrogatepass")])
    assert got == mask(flat.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))


def test_all_digit_and_lettered_hex_ids_group_together() -> None:
    """An 8-digit id that happens to have no hex letters groups with the lettered ones."""
    cache = TemplateCache()
    got = cache.templates(
        [b"task 1234abcd failed", b"task 12345678 failed", b"task 9f9f9f9f failed"]
    )
    assert len({group_key(t) for t in got}) == 1


def test_cache_is_bounded() -> None:
    """The key memory is cleared when full, so it never grows without bound."""
    cache = TemplateCache(max_keys=10)
    for i in range(50):
        cache.templates([f"distinct word{chr(97 + i % 26)}{chr(97 + i // 26)}".encode()])
    assert len(cache._known) <= 10


def test_uuid_strategy_sanity() -> None:
    """The placeholder for a uuid is <UUID>, whatever its letters."""
    assert mask(f"id {uuid.UUID(int=0)}") == "id <UUID>"
    assert mask(f"id {uuid.UUID(int=2**128 - 1)}") == "id <UUID>"
