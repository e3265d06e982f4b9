"""
Message templates: mask the variable parts of a message so that one error pattern is one row.

A small ordered set of regular expressions, applied with constant replacements so that ``re.sub``
stays in C. ``mask_many`` masks a whole batch of messages with one pass per rule over their
newline-joined text, which is how the scanner calls it (one batch per chunk).

Why not Drain (``drain3``)? Drain learns templates by clustering token sequences one message at a
time in Python, with per-message tree walks; that costs tens of microseconds a message, its
templates depend on the order messages arrive in, and it still needs masking rules for ids first.
Masking the usual variable tokens gives stable, order-independent templates at a fraction of the cost.

Even so, regular expressions cost tens of nanoseconds per character, so ``TemplateCache`` first
reduces each message to a *key* with a few vectorised numpy operations over the whole batch: every
run of digits becomes one ``0`` and every run of six or more hex digits, dashes and colons (hex
ids, uuids, IPv6 addresses, long numbers) one ``h``. Messages that differ only in numbers and ids share a key, and only
a key not seen before is masked. The first message of a key names its template. (So words of six
or more letters a-f alone, like "facade" and "decade", in the same place of otherwise equal
messages would share a row: a rare and harmless confusion.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._redact import redact

__all__ = ["TemplateCache", "TemplateStats", "group_key", "mask", "mask_many"]

# Order matters: quoted strings and URLs first (they contain everything else), numbers last.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'"[^"\n]*"'), "<STR>"),
    (re.compile(r"(?<![\w'])'[^'\n]*'(?![\w'])"), "<STR>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+"), "<URL>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<UUID>",
    ),
    (
        re.compile(
            r"(?<![\w:.])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![\w:])"
            r"|(?<![\w:.])(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?::(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?(?![\w:])"
        ),
        "<IP>",
    ),
    (re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"), "<IP>"),
    (re.compile(r"(?<![\w.~/])(?:~|\.{1,2})?(?:/[\w.\-@%+=,~]+)+/?"), "<PATH>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<HEX>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<HEX>"),
    (re.compile(r"\b(?![0-9]+\b)[0-9a-fA-F]{8,}\b"), "<HEX>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<NUM>"),
)
_SPACES = re.compile(r"[ \t]+")


def mask(message: str) -> str:
    """
    The template of one message: variable parts replaced by placeholders.

    Secrets are masked as :func:`redact` does (``password=***``). Quoted strings become ``<STR>``, URLs ``<URL>``, uuids ``<UUID>``, IPv4 and IPv6 addresses
    (with a port) ``<IP>``, paths ``<PATH>``, hex ids ``<HEX>`` and numbers ``<NUM>``; runs of
    blanks collapse to one space.

    Args:
        message: One message (a single line).

    Returns:
        Its template.
    """
    return mask_many([message])[0]


def mask_many(messages: list[str]) -> list[str]:
    """
    Mask a batch of single-line messages, one regex pass per rule over the whole batch.

    Args:
        messages: Messages without newlines (newlines are turned into spaces).

    Returns:
        The templates, in the same order.
    """
    if not messages:
        return []
    # Secrets first (password=..., Bearer ..., token=...): a template is shown and grouped by,
    # so it must never hold one, and records differing only in a secret share a row. The scanner
    # masks each distinct key once, so this costs a few microseconds per new key, not per line.
    text = "\n".join(redact(m.replace("\n", " ").replace("\r", " ")) for m in messages)
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    text = _SPACES.sub(" ", text)
    return [t.strip() for t in text.split("\n")]


def group_key(template: str) -> str:
    """
    The key that templates are grouped by: ``<HEX>`` and ``<NUM>`` are the same variable.

    An id field holds hex ids that now and then have no letter (``12345678``), and a number field
    may hold a long number that looks like hex; one pattern must stay one row either way. The row
    shows the template as first seen.

    Args:
        template: A template from mask().

    Returns:
        The grouping key.
    """
    return template.replace("<HEX>", "<NUM>")


_LEAD = b" \t-:|]>)"
_HEXISH = b"0123456789abcdefABCDEF-:"
_DIGIT = b"0123456789"


_LUTS: list[Any] = []


def _luts() -> tuple[Any, Any]:
    if _LUTS:
        return _LUTS[0], _LUTS[1]
    import numpy as np

    hexish = np.zeros(256, dtype=np.int8)
    hexish[list(_HEXISH)] = 1
    digit = np.zeros(256, dtype=bool)
    digit[list(_DIGIT)] = True
    _LUTS[:] = [hexish, digit]
    return hexish, digit


def _keys(joined: bytes) -> list[bytes]:
    """
    Keys of newline-joined messages, in a few numpy passes over the batch.

    A run of digits becomes one ``0`` and a run of six or more hex digits, dashes and colons (hex
    ids, uuids, IPv6 addresses, long numbers) one ``h``, whatever their lengths.
    """
    import numpy as np

    hexish, digit = _luts()
    arr = np.frombuffer(joined, dtype=np.uint8)
    key = arr.copy()
    is_digit = digit[arr]
    key[is_digit] = ord("0")
    drop = np.zeros(len(arr), dtype=bool)
    drop[1:] = is_digit[1:] & is_digit[:-1]
    edges = np.flatnonzero(np.diff(hexish[arr], prepend=0, append=0))
    starts, ends = edges[0::2], edges[1::2]
    long = (ends - starts) >= 6
    if long.any():
        delta = np.zeros(len(arr) + 1, dtype=np.int32)
        delta[starts[long]] += 1
        delta[ends[long]] -= 1
        in_run = np.cumsum(delta[:-1]) > 0
        key[in_run] = ord("h")
        drop[1:] |= in_run[1:] & in_run[:-1]
    return key[~drop].tobytes().split(b"\n")


class TemplateCache:
    """Templates of message batches, by key, with a bounded memory of keys already masked."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._known: dict[bytes, str] = {}

    def templates(self, messages: Sequence[bytes | bytearray]) -> list[str]:
        """
        The templates of a batch of single-line messages (UTF-8 bytes, no newlines).

        Args:
            messages: The messages.

        Returns:
            Their templates, in order.
        """
        if not messages:
            return []
        keys, known = self.keyed(b"\n".join(b"\x01" + bytes(m) for m in messages))
        return [known[k] for k in keys]

    def keyed(self, joined: bytes) -> tuple[list[bytes], dict[bytes, str]]:
        """
        Key a batch and make sure every key in it has a template.

        Args:
            joined: Newline-joined records, each one tag byte (which the key keeps, so that
                records of different levels never share a key) followed by the message.

        Returns:
            The key of each record, and the key -> template memory (holding every key returned).
        """
        keys = _keys(joined)
        known = self._known
        missing = set(keys).difference(known)
        if missing:
            if len(known) + len(missing) > self.max_keys:
                known.clear()
                missing = set(keys)
            where = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
            records = joined.split(b"\n")
            order = list(missing)
            masked = mask_many(
                [records[where[k]][1:].lstrip(_LEAD).decode("utf-8", "replace") for k in order]
            )
            known.update(zip(order, masked, strict=True))
        return keys, known


@dataclass
class TemplateStats:
    """Running figures for one template."""

    template: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    example: str
    level: str

    def seen(self, when: datetime | None) -> None:
        """Widen first/last seen to include ``when``."""
        if when is None:
            return
        if self.first_seen is None or when < self.first_seen:
            self.first_seen = when
        if self.last_seen is None or when > self.last_seen:
            self.last_seen = when
