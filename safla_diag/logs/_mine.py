"""
Message templates: mask the variable parts of a message, then merge what differs in few places.

Two stages, both functions of the *set* of messages, never of their order:

1. ``shape(message)``: every run of hex digits holding a decimal digit becomes one ``0`` (numpy
   does this for a whole chunk at once in the scanner; ``re`` does it here), then ``mask`` replaces the variable parts of that
   shape by placeholders: URLs ``<URL>``, IPv4/IPv6 addresses with a port ``<IP>``, paths
   ``<PATH>``, ``0x`` hex ``<HEX>``, signed and decimal numbers ``<NUM>``, and any other token that
   holds a digit (ids such as ``blk_-0``, ``Thunderbird_A0``, ``R0-M0-N0``, uuids, hosts like
   ``node-0``) ``<*>``. Because the template is computed from the digit-collapsed shape, messages
   that differ only in their digits share it, and the scanner masks each distinct shape once.
   Quoted strings are *not* masked whole: ``"GET /a"`` and ``"POST /a"`` stay apart.
2. ``merge``: the distinct masked templates are clustered the way Drain does (same token count,
   same leading token, at least half of the other tokens equal), but in a canonical order (most
   frequent first, then by text) instead of arrival order, so the result depends only on the
   multiset of templates. Positions where members of a cluster differ become ``<*>``. This is
   what catches variables without digits: user names, host names, words in a list.

Memory is one entry per distinct masked template (bounded by the caller).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from .._redact import _AUTH_SCHEMES, _SECRET_CORES, redact

__all__ = ["merge", "mine_templates", "shape", "template_of"]

# A run of hex digits holding at least one decimal digit: a number, a hex id, a piece of a uuid.
_DIGITS = re.compile(r"[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*")
_DIGITS_B = re.compile(rb"[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*")
_DELIM = r"\s=:,;()\[\]{}\"'<>|"
# Order matters: whole URLs, addresses and paths first (they contain everything else).
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s\"'<>]+"), "<URL>"),
    (re.compile(r"(?<![\w.])0\.0\.0\.0(?::0)?(?![\w.])"), "<IP>"),
    (
        re.compile(
            r"(?<![\w:.])(?=[0-9a-fA-F:]*0)(?:[0-9a-fA-F]{1,4}:){5,7}[0-9a-fA-F]{1,4}(?![\w:])"
            r"|(?<![\w:.])(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?::"
            r"(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?(?![\w:])"
        ),
        "<IP>",
    ),
    (re.compile(r"(?<![\w.~/\\])(?:~|\.{1,2})?(?:/[\w.\-@%+=,~$#]+){1,}/?"), "<PATH>"),
    (re.compile(r"\b[A-Za-z]:\\[^\s\"'<>|]*"), "<PATH>"),
    (re.compile(rf"(?<![^{_DELIM}])0[xX][0-9a-fA-F]+(?![^{_DELIM}])"), "<HEX>"),
    (re.compile(rf"(?<![^{_DELIM}])[-+]?0(?:\.0)?(?![^{_DELIM}])"), "<NUM>"),
    # A run of non-delimiters holding a 0, found from the run's start only (the lookbehind) and
    # without backtracking (possessive): the same matches as ``[^D]*0[^D]*``, which tries every
    # position of a run with no 0 and backtracks through it.
    (re.compile(rf"(?<![^{_DELIM}])[^{_DELIM}0]*+0[^{_DELIM}]*+"), "<*>"),
)
# What each rule's match must contain, tested before the rule runs (same results, less work).
_NEEDS: tuple[Callable[[str], bool], ...] = (
    lambda t: "://" in t,
    lambda t: "0.0.0.0" in t,
    lambda t: "::" in t or t.count(":") >= 5,
    lambda t: "/" in t,
    lambda t: ":\\" in t,
    lambda t: "0x" in t or "0X" in t,
    lambda t: "0" in t,
    lambda t: "0" in t,
)
_SPACES = re.compile(r"[ \t\r\n]+")
_LEAD = " \t-:|]>)"
WILD = "<*>"


def shape(message: str) -> str:
    """
    The message with every run of hex digits that holds a decimal digit (``42``, ``5f3a9c1b``,
    each part of a uuid) collapsed to one ``0``: what the scanner keys by.
    """
    return _DIGITS.sub("0", message)


def shape_bytes(message: bytes) -> bytes:
    """:func:`shape` for UTF-8 bytes."""
    return _DIGITS_B.sub(b"0", message)


def mask(shaped: str) -> str:
    """
    The masked template of a digit-collapsed message (see :func:`shape`).

    Secrets are masked as :func:`redact` does; then the rules above, then runs of blanks collapse.
    """
    text = redact(shaped.lstrip(_LEAD))
    for (pattern, repl), needs in zip(_RULES, _NEEDS, strict=True):
        if needs(text):  # a rule runs only where it could match: a third of the cost
            text = pattern.sub(repl, text)
    return _SPACES.sub(" ", text).strip()


# What the kernel's mask_simple needs to know of redact(): the words that call for its bearer
# pattern, and the cores of secret key names ("\0"-separated).
_AUTH_WORDS = b"\0".join(w.encode() for w in _AUTH_SCHEMES)
_CORES = b"\0".join(c.encode() for c in _SECRET_CORES)


def key_masker() -> Callable[[bytes, int], str]:
    """
    A masker of byte keys for one batch: ``masked(key, start)`` is
    ``mask(key[start:].decode("utf-8", "replace"))``, answered by the native kernel for the keys
    it can answer alone (ASCII text redact() leaves as it is and only the last two rules touch:
    most keys), by :func:`mask` for the others.
    """
    from ._kernel import kernel

    mod = kernel()
    simple = mod.mask_simple if mod is not None else None

    def masked(key: bytes, start: int = 0) -> str:
        if simple is not None:
            text: str | None = simple(key, start, _AUTH_WORDS, _CORES)
            if text is not None:
                return text
        return mask(key[start:].decode("utf-8", "replace"))

    return masked


def template_of(message: str) -> str:
    """The masked template of one message (stage 1 only)."""
    return mask(shape(message))


def _is_var(token: str) -> bool:
    return token.startswith("<") and token.endswith(">") and len(token) <= 6


def _similar(tokens: list[str], tmpl: list[str]) -> float:
    """Share of positions where the cluster's template and the tokens agree (Drain's seqDist)."""
    same = 0
    for a, b in zip(tokens, tmpl, strict=True):
        if a == b or (_is_var(a) and _is_var(b)):
            same += 1
    return same / len(tokens)


def _is_word(token: str) -> bool:
    return not _is_var(token)


# A position whose words take fewer distinct values than this splits a cluster (see _split).
_FEW = 3
_THRESHOLD = 0.5  # Drain's similarity threshold
_MAX_COMPARED = 64  # clusters of one bucket a template is compared with


def _cluster(texts: list[str], threshold: float) -> list[list[list[str]]]:
    """Drain's similarity clustering of one bucket, in the given (canonical) order."""
    clusters: list[tuple[list[str], list[list[str]]]] = []
    for text in texts:
        tokens = text.split(" ")
        best, best_sim = -1, -1.0
        # The most frequent clusters come first (canonical order); comparing with a bounded
        # number of them keeps a bucket of many distinct templates from costing D * C.
        for k, (tmpl, _m) in enumerate(clusters[:_MAX_COMPARED]):
            sim = _similar(tokens, tmpl)
            if sim > best_sim:
                best, best_sim = k, sim
        if best >= 0 and best_sim >= threshold and len(tokens) > 1:
            tmpl, mem = clusters[best]
            for i, (a, b) in enumerate(zip(tokens, tmpl, strict=True)):
                if a != b:
                    tmpl[i] = WILD
            mem.append(tokens)
        else:
            clusters.append((list(tokens), [tokens]))
    return [m for _t, m in clusters]


def _split(members: list[list[str]]) -> list[list[list[str]]]:
    """
    Split a cluster at positions that hold only a few distinct words (Brain's insight: a
    variable takes many values, a constant few): ``initialization``/``finalization`` are two
    events, while ten user names are one variable.
    """
    if len(members) == 1:  # most clusters of a large scan: nothing to split
        return [members]
    width = len(members[0])
    keep: list[int] = []
    for i in range(width):
        values = {m[i] for m in members}
        if 1 < len(values) < _FEW and all(_is_word(v) for v in values):
            keep.append(i)
    if not keep:
        return [members]
    parts: dict[tuple[str, ...], list[list[str]]] = {}
    for m in members:
        parts.setdefault(tuple(m[i] for i in keep), []).append(m)
    return list(parts.values())


def merge(counts: Mapping[str, int], *, threshold: float = _THRESHOLD) -> dict[str, str]:
    """
    Cluster masked templates; return each one's final template.

    Args:
        counts: Masked template -> how many messages had it.
        threshold: The share of equal tokens two templates need to merge.

    Returns:
        masked template -> final template (``<*>`` where the cluster's members differ).
    """
    # Templates of one length and first token may merge; each bucket is clustered on its own,
    # most frequent first (so the answer depends on the counts, never on their order here).
    buckets: dict[tuple[int, str], list[str]] = {}
    for text in counts:
        cut = text.find(" ")
        lead = text if cut < 0 else text[:cut]
        if _is_var(lead):
            lead = WILD
        buckets.setdefault((text.count(" ") + 1, lead), []).append(text)
    out: dict[str, str] = {}
    for texts in buckets.values():
        if len(texts) == 1:  # alone in its bucket: its own template (most of a large scan's)
            out[texts[0]] = texts[0]
            continue
        texts.sort(key=lambda t: (-counts[t], t))
        for cluster in _cluster(texts, threshold):
            for part in _split(cluster):
                tmpl = list(part[0])
                for m in part[1:]:
                    for i, tok in enumerate(m):
                        if tok != tmpl[i]:
                            tmpl[i] = WILD
                final = " ".join(tmpl)
                for m in part:
                    out[" ".join(m)] = final
    return out


#: Messages from which mine_templates computes shapes a batch at a time, natively, and the batch.
_BATCH_MIN = 16
_BATCH = 1 << 16
_BATCH_CHARS = 8 << 20
#: Distinct shapes remembered by one mine_templates call (the memory restarts when full).
_MAX_SHAPES = 100_000


def _shapes(messages: list[str]) -> list[bytes] | list[str]:
    """
    The shape of each message: by the native kernel, a batch of messages at a time (the same
    collapse, on UTF-8 bytes), when it is built and every batch joins cleanly; else one regex
    each. Batches (65 536 messages, or some 8 M characters) keep the joined copies small
    whatever the number and size of the messages.
    """
    if len(messages) >= _BATCH_MIN:
        from ._kernel import kernel

        mod = kernel()
        if mod is not None:
            keys: list[bytes] = []
            at, n = 0, len(messages)
            try:
                while at < n:
                    end, size = at, 0
                    while end < n and end - at < _BATCH and size < _BATCH_CHARS:
                        size += len(messages[end])
                        end += 1
                    batch = messages[at:end]
                    joined = "\n".join(batch)
                    if joined.count("\n") != len(batch) - 1:  # a message holds a newline
                        break
                    keys += mod.collapse(joined.encode("utf-8")).split(b"\n")
                    at = end
                else:
                    return keys
            except UnicodeEncodeError:
                pass  # a lone surrogate: each message on its own
    return [shape(m) for m in messages]


def mine_templates(messages: Iterable[str]) -> list[str]:
    """
    The template of each message, in order: the grouping :func:`analyze_logs` reports.

    Two messages share a template exactly when analyze_logs would count them in one row (for
    one level). The result depends only on the multiset of messages, not on their order.
    Messages that differ only in their digits are masked once.

    Args:
        messages: Log messages (the part after the header), one per record.

    Returns:
        One template per message.

    Raises:
        TypeError: A message is not a string.
    """
    msgs = messages if type(messages) is list else list(messages)
    for i, m in enumerate(msgs):
        if not isinstance(m, str):
            raise TypeError(f"message {i} is {type(m).__name__}, not str")
    memo: dict[object, str] = {}
    masked: list[str] = []
    append = masked.append
    masker = key_masker()
    for k in _shapes(msgs):
        t = memo.get(k)
        if t is None:
            if len(memo) >= _MAX_SHAPES:
                memo.clear()
            t = memo[k] = masker(k, 0) if isinstance(k, bytes) else mask(k)
        append(t)
    final = merge(Counter(masked))
    return [final[t] for t in masked]
