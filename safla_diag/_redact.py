"""
redact(): the one place that decides what a secret looks like.

Every URL, configuration value or message that the library shows, logs or raises passes through it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "describe_error", "is_secret_key", "redact", "redact_value"]

MASK = "***"

# Key names whose values are secrets. Matched as substrings of the lower-cased key, so
# "DB_PASSWORD", "apiKey" and "x-auth-token" are all covered.
_SECRET_WORDS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "credential",
    "auth",
    "session_key",
    "signature",
    "cookie",
    "dsn_password",
)

_KEY_NORMALISE = re.compile(r"[^a-z0-9]+")
# What every secret key holds once lower-cased and stripped of separators (see _secret_key): text
# without any of these holds no secret key, whatever its shape.
_SECRET_CORES = tuple(sorted({w.replace("_", "").replace("-", "") for w in _SECRET_WORDS}))


def _may_hold_secret_key(lowered: str) -> bool:
    # Keys are ASCII tokens of letters, digits and "_.-" (_KV_KEY, _QUERY_SECRET): a secret key's
    # core survives in the text lower-cased without those separators. Substring tests, not one
    # regex alternation (and a plain loop, not any() over a generator): a third of the time.
    t = lowered.replace("_", "").replace(".", "").replace("-", "")
    for core in _SECRET_CORES:  # noqa: SIM110
        if core in t:
            return True
    return False


# scheme://user:password@host  -> scheme://user:***@host
# The patterns start only at a token boundary (lookbehind) and use possessive quantifiers, so a
# long run of word characters costs linear time, not quadratic (a 20 kB value took seconds).
# URL parsers split the userinfo at the LAST '@' of the authority and the user from the password
# at the first ':', so a raw '@' may sit in the user name or the password ("u:p@ss@host" sends
# the password "p@ss"): the password runs greedily to the last '@' before the path. It stops at
# '/', so the backtracking stays within one authority.
# A password may also hold spaces or tabs ("redis://:s3 cret@h" sends "s3 cret"): that form is
# tried first, without '@' in it, and never when the "password" is digits then a space, which is
# a port followed by prose ("http://host:8080 and admin@corp").
_URL_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.\-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*+://)"
    r"(?P<user>[^:/?#\s]*+):"
    r"(?P<pw>(?!\d+[ \t])[^/?#\s@]*+(?:[ \t]++[^/?#\s@]*+)++|[^/?#\s]*)@"
)
# ?token=abc&x=1 -> ?token=***&x=1 (and any secret-looking parameter name)
_QUERY_SECRET = re.compile(
    r"(?P<pre>[?&;](?P<key>[A-Za-z0-9_.\-]*+)=)(?P<val>[^&;#\s'\"]*+)",
)
# password=abc, "token": "abc", api_key: abc, PASSWORD='abc': a key and its separator, then the
# value matched on its own only when the key is secret, so that every character is looked at a
# bounded number of times (a 20 kB run of "x:x:x:" must not cost quadratic time).
_KV_KEY = re.compile(
    r"""(?<![A-Za-z0-9_.\-])(?P<key>[A-Za-z0-9_.\-]++)(?P<sep>["']?\s*+[:=]\s*+)(?P<q>["']?)"""
)
_KV_VALUE = re.compile(r"""[^\s"',;&}]++""")
# A quoted value runs to its closing quote, spaces and all ("correct horse battery staple").
_KV_QUOTED = {q: re.compile(rf"[^{q}\r\n]++") for q in ('"', "'")}
# Authorization: Bearer <token>
# (any length after Bearer/Basic; after the plain word "token" only what looks like one)
_BEARER = re.compile(
    r"(?P<pre>\b(?:bearer|basic)\s+)(?P<val>[^\s\"',;]++)"
    r"|(?P<tpre>\btoken\s+)(?P<tval>[A-Za-z0-9\-._~+/=]{8,}+)",
    re.I,
)


def is_secret_key(key: object) -> bool:
    """
    Tell whether a mapping key names a secret (password, token, api_key, ...).

    Args:
        key: The key; anything that is not a string is never secret.

    Returns:
        True when values stored under this key must never be shown.
    """
    if not isinstance(key, str):
        return False
    return _secret_key(key)


@functools.lru_cache(maxsize=4096)
def _secret_key(key: str) -> bool:
    # Cached: a log's templates repeat the same few keys (id=, user=) thousands of times.
    k = _KEY_NORMALISE.sub("_", key.lower())
    compact = k.replace("_", "")
    return any(
        w.replace("-", "_") in k or w.replace("_", "").replace("-", "") in compact
        for w in _SECRET_WORDS
    )


def _query_sub(m: re.Match[str]) -> str:
    if is_secret_key(m.group("key")) and m.group("val"):
        return m.group("pre") + MASK
    return m.group(0)


_AUTH_SCHEMES = ("bearer", "basic", "token")


def _redact_pairs(s: str) -> str:
    # A scan rather than re.sub: when a key is not secret, scanning resumes right after its
    # separator, so "Error: token=abc" still finds "token=abc" inside the value of "Error".
    out: list[str] = []
    pos = 0
    while (m := _KV_KEY.search(s, pos)) is not None:
        value = (
            _KV_QUOTED.get(m.group("q"), _KV_VALUE).match(s, m.end())
            if is_secret_key(m.group("key"))
            else None
        )
        if value is None or value.group() == MASK:
            out.append(s[pos : m.end()])
            pos = m.end()
            continue
        after = s[value.end() :].lstrip(" \t")
        if value.group().lower() in _AUTH_SCHEMES and after.startswith(MASK):
            # "Authorization: Bearer ***" is already masked: keep the scheme word
            out.append(s[pos : value.end()])
        else:
            out.append(s[pos : m.end()] + MASK)
        pos = value.end()
    out.append(s[pos:])
    return "".join(out)


# The log kernel's mask_simple (logs/_native.c) passes template keys through unredacted when
# they hold none of _AUTH_SCHEMES and, with "=" or ":", none of _SECRET_CORES (it is given both
# lists): a new kind of secret recognised below must be refused there too.
def redact(text: object) -> str:
    """
    Return ``text`` as a string with every secret in it replaced by ``***``.

    Passwords in URLs (``redis://:s3cret@host`` -> ``redis://:***@host``), secret-looking query
    parameters (``?token=...``), ``key=value`` and ``"key": "value"`` pairs whose key looks secret,
    and bearer tokens are masked. Anything else is left as it is.

    Args:
        text: Any object; non-strings are converted with ``str()`` first.

    Returns:
        The redacted string.
    """
    s = text if isinstance(text, str) else str(text)
    if not s:
        return s
    # Each pattern runs only where the ASCII it cannot match without is there (log templates
    # pass through here by the thousand).
    if "@" in s and "://" in s:
        s = _URL_USERINFO.sub(
            lambda m: (
                f"{m.group('scheme')}{m.group('user')}:{MASK}@" if m.group("pw") else m.group(0)
            ),
            s,
        )
    has_eq = "=" in s
    lowered = s.lower()
    # A key=value or query pair is masked only under a secret key: without a secret key's core
    # in the text, neither pattern can mask anything (log examples and templates: most text).
    keyed = (has_eq or ":" in s) and _may_hold_secret_key(lowered)
    if has_eq and keyed:
        s = _QUERY_SECRET.sub(_query_sub, s)
        lowered = s.lower()
    # Bearer first: "Authorization: Bearer abc" must lose abc, not the word Bearer.
    if not s.isascii() or any(w in lowered for w in _AUTH_SCHEMES):  # re.I: ASCII only
        s = _BEARER.sub(lambda m: (m.group("pre") or m.group("tpre")) + MASK, s)
    if keyed:
        s = _redact_pairs(s)
    return s


def redact_value(value: Any, key: object = None) -> Any:
    """
    Redact a configuration value, recursively.

    Mappings keep their keys, and values under secret-looking keys become ``***``; sequences are
    redacted item by item; strings go through :func:`redact`; other scalars are returned as they are.

    Args:
        value: The value to redact.
        key: The key the value is stored under, if any.

    Returns:
        A redacted copy (mappings become dicts, sequences lists).
    """
    if key is not None and is_secret_key(key) and value not in (None, ""):
        return MASK
    if isinstance(value, Mapping):
        return {k: redact_value(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


_MAX_ERROR_CHARS = 2000


def describe_error(err: BaseException) -> str:
    """
    Describe an exception on one short, redacted line: ``"TypeName: message"``.

    For logging a host callback's failure: a traceback would carry the host's unredacted
    message (and its locals' reprs, with some formatters), so we log this line instead.

    Args:
        err: The exception.

    Returns:
        The type name and the message, whitespace collapsed, secrets masked, at most 2000 chars.
    """
    text = str(err).strip()
    out = f"{type(err).__name__}: {text}" if text else type(err).__name__
    out = redact(" ".join(out.split()))
    if len(out) > _MAX_ERROR_CHARS:
        out = out[: _MAX_ERROR_CHARS - 3] + "..."
    return out
