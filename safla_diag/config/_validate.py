"""validate_configuration: the single source of truth for what a valid configuration is."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ._keys import KEYS, MAX_ISSUES_PER_KEY, show

__all__ = ["validate_configuration"]

logger = logging.getLogger("safla_diag.config")

_REQUIRED = [k.name for k in KEYS.values() if k.required]


def validate_configuration(config: object) -> list[str]:
    """
    Check a configuration and report every problem at once.

    Each issue names the key and what was expected, e.g.
    ``"vector_dimension: expected a positive int, got True"``. Unknown keys are reported with a
    did-you-mean when a known key is close. Values are never echoed in a way that could show a
    secret.

    Args:
        config: The configuration, normally a mapping; anything else is reported, not raised.

    Returns:
        The issues, in the order of the known keys; ``[]`` when the configuration is valid.
    """
    try:
        return _validate(config)
    except Exception as err:  # never raise, whatever the input (a mapping that fails to iterate...)
        logger.debug("configuration could not be walked: %s", type(err).__name__)
        return [f"configuration: could not be read ({type(err).__name__})"]


def _validate(config: object) -> list[str]:
    if not isinstance(config, Mapping):
        return [f"configuration: expected a mapping of keys to values, got {show(config)}"]
    issues: list[str] = []
    for name in _REQUIRED:
        if name not in config:
            issues.append(f"{name}: missing (required)")
    for key in KEYS.values():
        if key.name not in config:
            continue
        value = config[key.name]
        if value is None and not key.required:
            continue  # an optional key set to null means "use the default"
        found = key.check(key.name, value)
        if len(found) > MAX_ISSUES_PER_KEY:
            more = len(found) - MAX_ISSUES_PER_KEY
            found = [*found[:MAX_ISSUES_PER_KEY], f"{key.name}: ... and {more} more issues"]
        issues += found
    issues += _cross_checks(config)
    unknown = [k for k in config if k not in KEYS]
    for k in unknown[:MAX_ISSUES_PER_KEY]:
        issues.append(_unknown(k))
    if len(unknown) > MAX_ISSUES_PER_KEY:
        issues.append(
            f"configuration: ... and {len(unknown) - MAX_ISSUES_PER_KEY} more unknown keys"
        )
    return issues


def _unknown(key: object) -> str:
    if not isinstance(key, str):
        return f"unknown key {show(key)}: keys must be str"
    hint = ""
    if len(key) <= 64:  # difflib is quadratic; nobody misspells a key into a novel
        import difflib  # only when a key is unknown: it costs import time

        close = difflib.get_close_matches(key.lower(), KEYS, n=1, cutoff=0.75)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    return f"unknown key {show(key)}{hint}"


def _cross_checks(config: Mapping[object, object]) -> list[str]:
    threshold = config.get("memory_threshold_percent")
    critical = config.get("memory_critical_percent")
    threshold = KEYS["memory_threshold_percent"].default if threshold is None else threshold
    critical = KEYS["memory_critical_percent"].default if critical is None else critical
    if (
        not KEYS["memory_threshold_percent"].check("", threshold)
        and not KEYS["memory_critical_percent"].check("", critical)
        and critical < threshold  # type: ignore[operator]
    ):
        return [
            f"memory_critical_percent: expected a value >= memory_threshold_percent "
            f"({show(threshold)}), got {show(critical)}"
        ]
    return []
