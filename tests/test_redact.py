"""redact(), redact_value() and is_secret_key(): secrets never survive, other text does."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from safla_diag import _redact as _r
from safla_diag import redact
from safla_diag._redact import MASK, is_secret_key, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://user:pw@db/x", "postgresql://user:***@db/x"),
        ("postgresql+psycopg://user:pw@db/x", "postgresql+psycopg://user:***@db/x"),
        ("postgresql://user@db/x", "postgresql://user@db/x"),
        ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
        ("https://h/x?api_key=abc;sig=1", "https://h/x?api_key=***;sig=1"),
        ("password=abc", "password=***"),
        ("DB_PASSWORD='abc'", "DB_PASSWORD='***'"),
        ('{"api_key": "abc", "user": "bob"}', '{"api_key": "***", "user": "bob"}'),
        ("x-auth-token: abc", "x-auth-token: ***"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("the token expired", "the token expired"),
        ("nothing secret here: host=db port=5432", "nothing secret here: host=db port=5432"),
        ("", ""),
    ],
)
def test_redact_examples(text: str, expected: str) -> None:
    """Each known form of secret is masked, and only the secret."""
    assert redact(text) == expected


def test_non_strings_are_converted() -> None:
    """Anything is converted with str() first."""
    assert redact(42) == "42"
    assert redact(["redis://:pw@h"]) == "['redis://:***@h']"


secrets = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$*+%"
    ),
    min_size=4,
    max_size=40,
).filter(lambda s: s != MASK and "***" not in s)

TEMPLATES = [
    "{scheme}://user:{s}@db.example:5432/x",
    "{scheme}://:{s}@cache",
    "{scheme}://h/path?token={s}",
    "{scheme}://h/path?a=1&client_secret={s}#frag",
    "password={s}",
    "PASSWORD: {s}",
    "db.password = '{s}'",
    '{{"api_key": "{s}"}}',
    "Authorization: Bearer {s}",
    "SAFLA_REDIS_PASSWORD={s}",
    "config: {{'token': '{s}', 'x': 1}}",
]


@given(
    secret=secrets,
    template=st.sampled_from(TEMPLATES),
    scheme=st.sampled_from(
        ["redis", "rediss", "postgresql", "postgresql+asyncpg", "https", "mysql"]
    ),
    before=st.text(alphabet=" \n\t,;()[]<>|#", max_size=20),
    after=st.text(alphabet=" \n\t,;()[]<>|#", max_size=20),
)
def test_the_secret_never_survives(
    secret: str, template: str, scheme: str, before: str, after: str
) -> None:
    """Whatever surrounds it, a secret in a known position is gone after redact()."""
    text = f"{before} {template.format(s=secret, scheme=scheme)} {after}"
    assume(secret not in f"{before} {template.format(s=MASK, scheme=scheme)} {after}")
    out = redact(text)
    assert secret not in out
    assert MASK in out


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:p@ss@db/x",
        "redis://:a@b@c@cache:6379/0",
        "postgresql://me@corp:hunter2@db/x",
        "mysql://u:pa:ss@h/x",
    ],
)
def test_userinfo_with_at_signs(url: str) -> None:
    """A raw '@' in a password or user name hides the whole password (urlsplit splits at the last)."""
    password = urlsplit(url).password
    assert password
    out = redact(url)
    assert password not in out
    assert out.split(MASK, 1)[1] == url[url.rindex("@") :]


@given(
    user=st.text(alphabet="abc@.-_", max_size=10),
    password=st.text(alphabet="xyz@:!$%~", min_size=1, max_size=20),
    scheme=st.sampled_from(["redis", "postgresql", "https", "mysql"]),
)
def test_no_part_of_a_parsed_password_survives(user: str, password: str, scheme: str) -> None:
    """What a URL parser would send as the password never appears in the redacted URL."""
    url = f"{scheme}://{user}:{password}@db.example:5432/x"
    parts = urlsplit(url)
    assume(parts.password and "***" not in password)
    # Exactly the password is masked: the user name as the parser reads it, then ***@host.
    assert redact(url) == f"{scheme}://{parts.username}:{MASK}@db.example:5432/x"


@given(st.text(max_size=300))
def test_redact_is_idempotent_and_total(text: str) -> None:
    """redact() accepts any text, and redacting twice changes nothing more."""
    once = redact(text)
    assert isinstance(once, str)
    assert redact(once) == once


@pytest.mark.parametrize("unit", ["x", "a.", "?x", "token ", "a://", "x:", "password", "@"])
def test_long_inputs_are_handled(unit: str) -> None:
    """Long runs of the characters the patterns scan for finish (the patterns are linear)."""
    text = unit * 100_000
    assert len(redact(text)) >= len(text) // 2


@pytest.mark.parametrize(
    ("key", "secret"),
    [("password", True), ("DB_PASSWORD", True), ("apiKey", True), ("x-auth-token", True),
     ("client_secret", True), ("private_key", True), ("database_url", False), ("host", False),
     ("vector_dimension", False), (3, False), (None, False)],
)  # fmt: skip
def test_is_secret_key(key: object, secret: bool) -> None:
    """Secret-looking keys are recognised whatever their case and separators."""
    assert is_secret_key(key) is secret


def test_redact_value_recurses() -> None:
    """Mappings keep their keys, secret keys lose their values, strings are redacted."""
    value = {
        "password": "pw",
        "empty_token": "",
        "nested": {"api_key": 123, "url": "redis://:pw@h", "list": ["https://u:p@h", 1]},
        "port": 5432,
    }
    assert redact_value(value) == {
        "password": MASK,
        "empty_token": "",
        "nested": {"api_key": MASK, "url": "redis://:***@h", "list": ["https://u:***@h", 1]},
        "port": 5432,
    }


def test_secret_inside_the_value_of_an_ordinary_key() -> None:
    """A secret pair inside another pair's value is still found ("Error: token=abc")."""
    assert redact("ConnectionError: token=abc") == "ConnectionError: token=***"
    assert "hunter2" not in redact("detail: password=hunter2, retry=3")


# Words of a passphrase: letters only, so that none of them can be a port or a URL part.
_words = st.lists(
    st.text(alphabet="bcdfghjklmnpqrstvwxz", min_size=4, max_size=9), min_size=2, max_size=5
)

SPACED_TEMPLATES = [
    "{scheme}://app:{s}@db.example:5432/x",
    "{scheme}://:{s}@cache:6379/0",
    '{{"password": "{s}"}}',
    "password='{s}'",
    "config: {{'token': '{s}', 'x': 1}}",
    "DSN ({scheme}://u:{s}@h/x): refused",
]


@given(
    words=_words,
    sep=st.sampled_from([" ", "  ", "\t", " \t"]),
    template=st.sampled_from(SPACED_TEMPLATES),
    scheme=st.sampled_from(["redis", "postgresql", "postgresql+psycopg", "https", "mysql"]),
)
def test_a_secret_with_spaces_is_masked_whole(
    words: list[str], sep: str, template: str, scheme: str
) -> None:
    """A passphrase with spaces, in a URL or a quoted value, loses every word, not just the first."""
    secret = sep.join(words)
    text = template.format(s=secret, scheme=scheme)
    masked = template.format(s=MASK, scheme=scheme)
    out = redact(text)
    assert out == masked
    for word in words:
        assert word not in out or word in masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:s3 cret@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://app:correct horse battery@db/x", "postgresql://app:***@db/x"),
        ('"password": "correct horse battery staple"', '"password": "***"'),
        # A port followed by prose is not a password.
        ("http://host:8080 and admin@corp", "http://host:8080 and admin@corp"),
        ("see http://u:pw@h and mail a@b", "see http://u:***@h and mail a@b"),
    ],
)
def test_spaced_secret_examples(text: str, expected: str) -> None:
    """The shapes of issue 12 item 4, and prose that only looks like them."""
    assert redact(text) == expected


def _redact_unguarded(text: str) -> str:
    """redact() as it was before its ASCII guards: every pattern runs on every string."""
    s = text
    if not s:
        return s
    s = _r._URL_USERINFO.sub(
        lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@" if m.group("pw") else m.group(0),
        s,
    )
    s = _r._QUERY_SECRET.sub(_r._query_sub, s)
    s = _r._BEARER.sub(lambda m: (m.group("pre") or m.group("tpre")) + MASK, s)
    return _r._redact_pairs(s)


_pieces = st.sampled_from(
    ["token", "TOKEN", "Bearer", "bAsIc", "ba\u017fic", "to\u212aen", "bas\u0130c", "Authorization",
     ":", "=", "://", "@", "?", "&", ";", " ", "\t", "'", '"', "password", "pwd", "x", "0",
     "redis", "abcdefgh12", "ü", "\u017f", "pass_word", "Api-Key", "A.u.t.h", "session.key",
     "PASS-wd", "to_ken", "cred", "ential", "_", ".", "-", "\u0130", "\u212a"]
)  # fmt: skip


@given(st.lists(_pieces | st.text(max_size=6), max_size=14).map("".join))
def test_guards_change_nothing(text: str) -> None:
    """The guards skip a pattern only where it cannot match: same output as running them all
    (case-folded look-alikes such as the long s and the Kelvin sign included)."""
    assert redact(text) == _redact_unguarded(text)
