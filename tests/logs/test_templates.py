"""Templates: the masker, the merge, and mine_templates' promises (order independence above all)."""

from __future__ import annotations

import io
import ipaddress
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safla_diag import analyze_logs, mine_templates
from safla_diag.logs._mine import template_of
from safla_diag.logs._templates import TemplateCache, keys_of


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("took 35 ms", "took <NUM> ms"),
        ("ratio 0.75 after 3 tries", "ratio <NUM> after <NUM> tries"),
        ("boot = -12 and +3", "boot = <NUM> and <NUM>"),
        ("task 5f3a9c1b2e failed", "task <NUM> failed"),
        ("task deadbeef failed", "task deadbeef failed"),
        ("at 0x7ffd5e8c", "at <HEX>"),
        ("job 123e4567-e89b-12d3-a456-426614174000 done", "job <*> done"),
        ("connect 10.0.0.12:6379 refused", "connect <IP> refused"),
        ("peer 2001:db8::1 gone", "peer <IP> gone"),
        ("peer fe80:0:0:0:202:b3ff:fe1e:8329 gone", "peer <IP> gone"),
        ("can't open /var/lib/safla/idx_3.faiss", "can't open <PATH>"),
        ("GET https://api.example.com/v1/x?id=3 failed", "GET <URL> failed"),
        ("block blk_-1608999687919862906 and blk_38865049064139660", "block <*> and <*>"),
        ("node Thunderbird_A8 and R02-M1-N0-C:J12-U11", "node <*> and <*>:<*>"),
        ("size=67108864 (uid=0)", "size=<NUM> (uid=<NUM>)"),
        ("plain words stay", "plain words stay"),
        ("  spaces   collapse ", "spaces collapse"),
        ("login password=hunter2 ok", "login password=*** ok"),
    ],
)
def test_mask(message: str, template: str) -> None:
    """Each kind of variable part has its placeholder; ordinary words and signs are kept right."""
    assert template_of(message) == template


def test_quoted_requests_are_not_merged() -> None:
    """'"GET /a"' and '"POST /a"' are different events: quoted strings are not masked whole."""
    got = mine_templates(['request "GET /a" done', 'request "POST /a" done'])
    assert got[0] != got[1]


def test_words_with_few_values_stay_apart_and_many_merge() -> None:
    """Two words in one place are two events; many values in one place are one variable."""
    two = mine_templates(
        ["Starting TrustedInstaller initialization.", "Starting TrustedInstaller finalization."]
    )
    assert two[0] != two[1]
    users = [
        f"session opened for user {name} by cron"
        for name in ("root", "alice", "bob", "carol", "dave")
    ]
    assert len(set(mine_templates(users))) == 1


KINDS = {
    "uuid": st.uuids().map(str),
    "number": st.integers(-(2**40), 2**40).map(str),
    # An id holds a decimal digit somewhere: a run of a-f alone ("deadbeef") reads as a word.
    # (Built with one, not filtered: hypothesis favours all-ones integers, "ffffffff" here, and
    # a filter rejecting them can fail the health check.)
    "hex id": st.builds(
        lambda n, w, d: f"{n % 16 ** (w - 1):0{w - 1}x}{d}",
        st.integers(0, 2**128),
        st.sampled_from([8, 12, 16, 32]),
        st.integers(0, 9),
    ),
    "ipv4": st.ip_addresses(v=4).map(str),
    "ipv6": st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a))),
    "float": st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:.3f}"),
    "path": st.lists(st.from_regex(r"[a-z0-9_.]{1,8}", fullmatch=True), min_size=1, max_size=4).map(
        lambda p: "/" + "/".join(p)
    ),
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
    a, b = mine_templates([first, second])
    assert a == b


SHAPES = [
    "Receiving block blk_{n} src: /{ip}:{p} dest: /{ip}:{p}",
    "PacketResponder {d} for block blk_{n} terminating",
    "Verification succeeded for blk_{n}",
    "session opened for user {user} by (uid={d})",
    "session closed for user {user}",
    "Starting TrustedInstaller {phase}.",
    'request "{verb} /api/{d}" took {d} ms',
    "connection from {ip} port {p} closed",
]
messages = st.builds(
    lambda shape, n, ip, p, d, user, phase, verb: shape.format(
        n=n, ip=ip, p=p, d=d, user=user, phase=phase, verb=verb
    ),
    st.sampled_from(SHAPES),
    st.integers(-(2**62), 2**62),
    st.ip_addresses(v=4).map(str),
    st.integers(1, 65535),
    st.integers(0, 999),
    st.sampled_from(["root", "alice", "bob", "carol", "www-data"]),
    st.sampled_from(["initialization", "finalization"]),
    st.sampled_from(["GET", "POST", "DELETE"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(messages, min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_templates_do_not_depend_on_order(msgs: list[str], rnd: object) -> None:
    """Any permutation of the messages gives each message the same template."""
    shuffled = list(range(len(msgs)))
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    before = dict(zip(msgs, mine_templates(msgs), strict=True))
    after = mine_templates([msgs[i] for i in shuffled])
    assert [before[msgs[i]] for i in shuffled] == after


def test_three_hdfs_lines_in_any_order() -> None:
    """The issue's case: the same three HDFS lines give the same grouping in every order."""
    lines = [
        "PacketResponder 1 for block blk_38865049064139660 terminating",
        "PacketResponder 0 for block blk_-6952295868487656571 terminating",
        "PacketResponder 2 for block blk_8229193803249955061 terminating",
    ]
    assert len(set(mine_templates(lines))) == 1
    assert len(set(mine_templates(lines[::-1]))) == 1


@settings(max_examples=25, deadline=None)
@given(st.lists(messages, min_size=1, max_size=40))
def test_mine_templates_is_the_grouping_analyze_logs_reports(msgs: list[str]) -> None:
    """Two messages share a template exactly when analyze_logs counts them in one row."""
    data = "".join(f"2026-11-28 10:00:00,000 ERROR {m}\n" for m in msgs).encode()
    report = analyze_logs(io.BytesIO(data), top=10_000, levels=("ERROR",))
    want: dict[str, int] = {}
    for t in mine_templates(msgs):
        want[t] = want.get(t, 0) + 1
    assert {t.template: t.count for t in report.templates} == want


def test_keys_collapse_digit_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner's key: every run of hex digits holding a digit is one 0 (natively, and on
    the numpy path)."""
    for pure in ("0", "1"):
        monkeypatch.setenv("SAFLA_DIAG_PURE", pure)
        assert keys_of(b"\x01x 123 b45c 6 face\n\x01x") == [b"\x01x 0 0 0 face", b"\x01x"]


@given(
    st.lists(
        st.binary(max_size=40)
        | st.text(alphabet=st.sampled_from(list("0123456789abcdefABCDEFxg -\n")), max_size=40).map(
            str.encode
        ),
        min_size=1,
        max_size=6,
    ).map(b"".join)
)
def test_keys_native_and_numpy_agree(joined: bytes) -> None:
    """The kernel's collapse and the numpy path key any bytes alike, record by record."""
    import os

    from safla_diag.logs import _kernel

    if _kernel.kernel() is None:
        pytest.skip("the native kernel was not built here")
    native = keys_of(joined)
    os.environ["SAFLA_DIAG_PURE"] = "1"
    try:
        assert keys_of(joined) == native
    finally:
        del os.environ["SAFLA_DIAG_PURE"]


def test_cache_is_bounded() -> None:
    """The key memory is cleared when full, so it never grows without bound."""
    cache = TemplateCache(max_keys=10)
    for i in range(50):
        cache.keyed(f"\x01distinct word{chr(97 + i % 26)}{chr(97 + i // 26)}".encode())
    assert len(cache._known) <= 10


def test_uuid_is_one_variable(tmp_path: Path) -> None:
    """A uuid is one variable whatever its letters."""
    a, b = mine_templates([f"id {uuid.UUID(int=0)} x", f"id {uuid.UUID(int=2**128 - 1 - 2**64)} x"])
    assert a == b


@pytest.mark.parametrize("max_keys", [5, 100_000])
def test_cache_shared_by_threads_masks_each_key_once_and_answers_every_key(
    monkeypatch: pytest.MonkeyPatch, max_keys: int
) -> None:
    """The two halves of a file ask for the same keys at once: each returned table holds every
    key asked for, and (when the memory is large enough) no key is masked twice."""
    import threading
    import time

    from safla_diag.logs import _templates
    from safla_diag.logs._mine import key_masker, mask

    calls: list[bytes] = []
    real = mask

    def counting_masker() -> Callable[[bytes, int], str]:
        masked = key_masker()

        def counted(key: bytes, start: int) -> str:
            calls.append(key)
            time.sleep(0.0002)  # let the other threads run meanwhile, as a long batch would
            return masked(key, start)

        return counted

    monkeypatch.setattr(_templates, "key_masker", counting_masker)
    cache = TemplateCache(max_keys=max_keys)
    keys = [b"\x01event %d of user" % i + bytes([97 + i % 26]) for i in range(200)]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run(seed: int) -> None:
        try:
            start.wait()
            for j in range(0, 200, 3):
                batch = keys[(j + seed) % 200 : (j + seed) % 200 + 4]
                table = cache.masks(batch)
                assert all(table[k] == real(k[1:].decode()) for k in batch)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    if max_keys > 200:
        assert sorted(calls) == sorted(set(calls))  # no key masked twice


# -- mine_templates on many messages: shapes made natively in one batch, each masked once --------

hexish = st.text(
    alphabet=st.sampled_from(list("0123456789abcdefABCDEFxyz -_:./=é€😀\t")), max_size=60
)


@given(hexish)
def test_native_collapse_is_the_regex_shape(text: str) -> None:
    """The kernel's collapse gives shape()'s answer, byte for byte (UTF-8 never hides a digit)."""
    from safla_diag.logs import _kernel
    from safla_diag.logs._mine import shape

    mod = _kernel.kernel()
    if mod is None:
        pytest.skip("the native kernel was not built here")
    assert mod.collapse(text.encode()) == shape(text).encode()
    assert mod.collapse(bytearray(text.encode())) == shape(text).encode()


@given(st.binary(max_size=200))
def test_native_collapse_of_any_bytes_is_the_bytes_regex(data: bytes) -> None:
    """Bytes that are not text (a log's garbage): the kernel's collapse is shape_bytes'."""
    from safla_diag.logs import _kernel
    from safla_diag.logs._mine import shape_bytes

    mod = _kernel.kernel()
    if mod is None:
        pytest.skip("the native kernel was not built here")
    assert mod.collapse(data) == shape_bytes(data)


def _one_by_one(msgs: list[str]) -> list[str]:
    """mine_templates as it was: one regex shape and one mask per message."""
    from collections import Counter

    from safla_diag.logs._mine import merge

    masked = [template_of(m) for m in msgs]
    final = merge(Counter(masked))
    return [final[t] for t in masked]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(messages, hexish), min_size=16, max_size=120), st.sampled_from([5, 64]))
def test_batched_shapes_give_the_one_by_one_templates(msgs: list[str], batch: int) -> None:
    """Batches (shapes made natively, masks memoised) give each message the template that
    shaping and masking it alone gives."""
    from safla_diag.logs import _mine

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_mine, "_BATCH", batch)
        assert mine_templates(msgs) == _one_by_one(msgs)


@pytest.mark.parametrize(
    "odd",
    ["a multi-line message 12\n  with a traceback 0x1f", "a lone surrogate \udc80 in 42", ""],
)
@pytest.mark.parametrize("batch", [7, 1 << 16])
def test_a_batch_that_does_not_join_cleanly_is_shaped_one_by_one(
    monkeypatch: pytest.MonkeyPatch, odd: str, batch: int
) -> None:
    """A newline inside a message, or text that is not UTF-8, takes the per-message path (in
    the first batch or a later one): the same templates, one per message, none lost or shifted."""
    from safla_diag.logs import _mine

    monkeypatch.setattr(_mine, "_BATCH", batch)
    monkeypatch.setattr(_mine, "_BATCH_CHARS", 200)  # and batches cut by size
    msgs = [f"task {i} failed on node-{i % 3}" for i in range(40)]
    msgs.insert(17, odd)
    got = mine_templates(msgs)
    assert len(got) == len(msgs)
    assert got == _one_by_one(msgs)


def test_mine_templates_takes_any_iterable_and_names_what_is_not_text() -> None:
    """A generator is read once; a message that is not a str gets a TypeError naming its place."""
    gen = (f"job {i} done" for i in range(50))
    assert mine_templates(gen) == ["job <NUM> done"] * 50
    with pytest.raises(TypeError, match="message 20 is bytes"):
        mine_templates([*(f"job {i} done" for i in range(20)), b"job 1 done"])  # type: ignore[list-item]


def test_the_shape_memory_of_one_call_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its bound the memory restarts, and the templates stay the same."""
    from safla_diag.logs import _mine

    msgs = [
        f"user u{chr(97 + i % 26)}{chr(97 + i // 26 % 26)} logged in from 10.0.0.{i % 9}"
        for i in range(300)
    ]
    want = mine_templates(msgs)
    monkeypatch.setattr(_mine, "_MAX_SHAPES", 7)
    assert mine_templates(msgs) == want


def test_without_the_kernel_the_templates_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAFLA_DIAG_PURE (or no compiler at install time): the regex path, the same answer."""
    msgs = [f"PacketResponder {i} for block blk_{-(i**7)} terminating" for i in range(64)]
    msgs += [f"session opened for user {n} by (uid=0)" for n in ("root", "alice", "bob")]
    want = mine_templates(msgs)
    monkeypatch.setenv("SAFLA_DIAG_PURE", "1")
    assert mine_templates(msgs) == want


# -- the kernel's mask for the common keys ------------------------------------------------------

mask_text = st.lists(
    st.sampled_from(
        [
            *"0000000123-+.=:,;()[]{}\"'<>|_/\\ \t\r\n\x0b\x0c\x1c\x1f\x00xXabAB@é€",
            "0.0",
            "-0",
            "+0.0",
            "0x",
            "::",
            "token",
            "Bearer",
            "basic",
            "pass",
            "word",
            "secret",
            "auth",
            "api_key",
            "api-key",
            "id",
            "user",
            "://",
            "0.0.0.0",
            " - ",
            "Token",
            "PASS_WORD",
            # fragments that join into the secret words, or stop one byte short of them
            "pw",
            "pwd",
            "se",
            "cret",
            "ap",
            "ikey",
            "to",
            "ken",
            "bea",
            "rer",
        ]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.sampled_from([0, 1]))
def test_the_kernel_s_mask_of_any_bytes_is_python_s(key: bytes, start: int) -> None:
    """A key that is not UTF-8 (a log's garbage) is masked as mask() masks it decoded with
    replacement characters, by the kernel or not."""
    from safla_diag.logs._mine import key_masker, mask

    assert key_masker()(key, start) == mask(key[start:].decode("utf-8", "replace"))


@settings(max_examples=600, deadline=None)
@given(mask_text, st.sampled_from([b"", b"\x01", b"\x05"]))
def test_the_kernel_s_mask_is_python_s(text: str, tag: bytes) -> None:
    """Where the kernel answers a key alone, its template is mask()'s, character for character;
    where redact() or another rule could change the text, it leaves the key to mask()."""
    from safla_diag.logs import _kernel
    from safla_diag.logs._mine import _AUTH_WORDS, _CORES, key_masker, mask

    mod = _kernel.kernel()
    if mod is None:
        pytest.skip("the native kernel was not built here")
    key = tag + text.encode("utf-8", "surrogatepass")
    got = mod.mask_simple(key, len(tag), _AUTH_WORDS, _CORES)
    want = mask(text)
    if got is not None:
        assert got == want
    assert key_masker()(key, len(tag)) == want


@pytest.mark.parametrize(
    ("text", "answered"),
    [
        ("  - kappa lambda id=0 took 0.0 ms", True),
        ("a=-0 b=+0.0 c=0.0.0 x-0 -- 0 (0) [0,0]", True),
        ("\x0b spaces \t\r\n collapse \x1c", True),
        ("login password=hunter0 ok", False),  # redact() masks it
        ("Authorization: Bearer abc", False),
        ("token 0 expired", False),
        ("open /var/lib/x_0.faiss", False),  # a path
        ("peer 0:0::0 gone", False),  # an address
        ("at 0x0f", False),
        ("héllo 0", False),  # not ASCII
    ],
)
def test_the_kernel_answers_the_common_keys_and_leaves_the_rest(text: str, answered: bool) -> None:
    """Plain words, numbers and ids: the kernel; secrets, paths, addresses, hex, non-ASCII: mask()."""
    from safla_diag.logs import _kernel
    from safla_diag.logs._mine import _AUTH_WORDS, _CORES, mask

    mod = _kernel.kernel()
    if mod is None:
        pytest.skip("the native kernel was not built here")
    got = mod.mask_simple(text.encode(), 0, _AUTH_WORDS, _CORES)
    assert (got is not None) == answered
    if got is not None:
        assert got == mask(text)
    with pytest.raises(ValueError, match="start outside"):
        mod.mask_simple(b"abc", 4, _AUTH_WORDS, _CORES)


def test_a_long_key_is_left_to_mask() -> None:
    """A key over 64 KiB (a message of megabytes) is masked by mask(), with the same result,
    rather than by a kernel buffer five times its size."""
    from safla_diag.logs import _kernel
    from safla_diag.logs._mine import _AUTH_WORDS, _CORES, key_masker, mask

    mod = _kernel.kernel()
    if mod is None:
        pytest.skip("the native kernel was not built here")
    key = b"\x01" + b"id 0 " * 20_000
    assert mod.mask_simple(key, 1, _AUTH_WORDS, _CORES) is None
    assert mod.mask_simple(key[:60_000], 1, _AUTH_WORDS, _CORES) == mask(key[1:60_000].decode())
    assert key_masker()(key, 1) == mask(key[1:].decode())


def _merge_every_bucket(counts: dict[str, int]) -> dict[str, str]:
    """merge() as it was: every bucket clustered, a lone template too."""
    from safla_diag.logs._mine import WILD, _cluster, _is_var, _split

    order = sorted(counts, key=lambda t: (-counts[t], t))
    buckets: dict[tuple[int, str], list[str]] = {}
    for text in order:
        tokens = text.split(" ")
        buckets.setdefault((len(tokens), tokens[0] if not _is_var(tokens[0]) else WILD), []).append(
            text
        )
    out: dict[str, str] = {}
    for key in sorted(buckets):
        for cluster in _cluster(buckets[key], 0.5):
            for part in _split(cluster):
                tmpl = list(part[0])
                for m in part[1:]:
                    tmpl = [a if a == b else WILD for a, b in zip(tmpl, m, strict=True)]
                for m in part:
                    out[" ".join(m)] = " ".join(tmpl)
    return out


_WORDS = st.sampled_from(["a", "b", "task", "failed", "<NUM>", "<*>", "<IP>", "id=<NUM>", "x y"])


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.lists(_WORDS, min_size=1, max_size=6).map(" ".join), st.integers(1, 50), max_size=30
    )
)
def test_a_template_alone_in_its_bucket_is_its_own(counts: dict[str, int]) -> None:
    """merge() skips the clustering of a bucket of one template: the same answer as clustering
    every bucket."""
    from safla_diag.logs._mine import merge

    assert merge(counts) == _merge_every_bucket(counts)
