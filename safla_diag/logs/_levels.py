"""
Level names: every spelling a log may use, mapped to one canonical upper-case name.

The canonical names are Python logging's, plus syslog's NOTICE: ``DEBUG``, ``INFO``, ``NOTICE``,
``WARNING``, ``ERROR``, ``CRITICAL``. The mapping is a fixed table, so a level is recognised
wherever it first appears in a file (docs/logs.md shows the table).
"""

from __future__ import annotations

__all__ = [
    "CANONICAL",
    "LETTER_LEVELS",
    "LEVEL_WORDS",
    "SYSLOG_SEVERITY",
    "canonical",
    "level_word",
]

CANONICAL = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")

# Spelling (upper case) -> canonical name. Words, recognised in any case the formats allow.
LEVEL_WORDS: dict[str, str] = {
    "TRACE": "DEBUG",
    "DEBUG": "DEBUG",
    "VERBOSE": "DEBUG",
    "FINE": "DEBUG",
    "FINER": "DEBUG",
    "FINEST": "DEBUG",
    "INFO": "INFO",
    "INFORMATION": "INFO",
    "NOTICE": "NOTICE",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERR": "ERROR",
    "ERROR": "ERROR",
    "FAILURE": "ERROR",
    "SEVERE": "CRITICAL",
    "CRIT": "CRITICAL",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
    "ALERT": "CRITICAL",
    "EMERG": "CRITICAL",
    "EMERGENCY": "CRITICAL",
    "PANIC": "CRITICAL",
}
# One-letter levels: Android's logcat (V D I W E F A), glog (I W E F), and "E " style prefixes.
# Only formats that put a letter in a known place use these.
LETTER_LEVELS: dict[str, str] = {
    "V": "DEBUG",
    "D": "DEBUG",
    "I": "INFO",
    "N": "NOTICE",
    "W": "WARNING",
    "E": "ERROR",
    "F": "CRITICAL",
    "A": "CRITICAL",
    "C": "CRITICAL",
}
# Redis server logs: . debug, - verbose, * notice, # warning.
REDIS_LEVELS: dict[str, str] = {".": "DEBUG", "-": "DEBUG", "*": "NOTICE", "#": "WARNING"}
# PostgreSQL: LOG is its informational level; DEBUG1..5 are debug.
PG_LEVELS: dict[str, str] = {"LOG": "INFO", "INFO": "INFO", "STATEMENT": "INFO"}
# Syslog severity (PRI & 7) -> canonical.
SYSLOG_SEVERITY = (
    "CRITICAL",
    "CRITICAL",
    "CRITICAL",
    "ERROR",
    "WARNING",
    "NOTICE",
    "INFO",
    "DEBUG",
)


def canonical(name: str) -> str:
    """
    The canonical upper-case name of a level: ``warn`` -> ``WARNING``, ``fatal`` -> ``CRITICAL``.

    Unknown names are returned upper-cased, so a caller's own level (``AUDIT``) still works.

    Args:
        name: A level name in any case (one-letter names such as ``E`` too).

    Returns:
        The canonical name.
    """
    up = name.strip().upper()
    if up in LEVEL_WORDS:
        return LEVEL_WORDS[up]
    if len(up) == 1 and up in LETTER_LEVELS:
        return LETTER_LEVELS[up]
    if up.startswith("DEBUG") and up[5:].isdigit():
        return "DEBUG"
    return up


def level_word(token: str, *, first: bool = False) -> str | None:
    """
    The canonical level a header token spells, or None.

    Upper-case and Title-case words count anywhere in a header (``ERROR``, ``Error``,
    ``[WARN]``, ``INFO:``); lower-case ones only when bracketed (``[error]``, ``<notice>``) or
    first in the line, so that a message's words are not taken for levels.

    Args:
        token: One whitespace-separated token of a line's header.
        first: Whether it is the first token of the header.
    """
    bracketed = token[:1] in "[<(" and token[-1:] in "]>):"
    word = token.strip("[]<>():,|")
    if not word or len(word) > 11:
        return None
    up = word.upper()
    level = LEVEL_WORDS.get(up)
    if level is None:
        return None
    if word.isupper() or word.istitle() or (word.islower() and (bracketed or first)):
        return level
    return None
