"""
Profiling statistics in pstats' own layout: rows, sort keys, and reading, merging, filtering.

:class:`~safla_diag.profiling._report.ProfileReport` wraps what this module builds; the layout is
pstats', so that a saved report is what ``pstats.Stats`` and snakeviz read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

if TYPE_CHECKING:
    import cProfile

__all__ = [
    "SORTERS",
    "SORT_KEYS",
    "CallerStats",
    "FuncKey",
    "FuncStats",
    "ProfileRow",
    "StatsDict",
    "check_sort",
    "check_top",
    "merge_stats",
    "normalise",
    "stats_from_profile",
    "without",
]

# pstats' own layout, so that save() writes what pstats.Stats and snakeviz read:
#   (filename, firstlineno, funcname) -> (primitive calls, total calls, tottime, cumtime, callers)
#   callers: (filename, firstlineno, funcname) -> (total calls, primitive calls, tottime, cumtime)
FuncKey: TypeAlias = tuple[str, int, str]
CallerStats: TypeAlias = tuple[int, int, float, float]
FuncStats: TypeAlias = tuple[int, int, float, float, dict[FuncKey, CallerStats]]
StatsDict: TypeAlias = dict[FuncKey, FuncStats]


class ProfileRow(NamedTuple):
    """
    One function of a profile: how often it ran and where its time went.

    Times are float seconds. ``tottime`` excludes the functions it called, ``cumtime`` includes
    them. ``ncalls`` counts every call, ``primitive_calls`` only the non-recursive ones (pstats
    shows both as ``ncalls/primitive``). A coroutine counts one call per resumption.
    """

    function: str
    file: str
    line: int
    ncalls: int
    primitive_calls: int
    tottime: float
    cumtime: float

    @property
    def location(self) -> str:
        """``file:line``, or ``~`` for builtins (which have no source)."""
        return "~" if self.file == "~" else f"{self.file}:{self.line}"

    @property
    def percall_tottime(self) -> float:
        """``tottime`` per call (0.0 when never called)."""
        return self.tottime / self.ncalls if self.ncalls else 0.0

    @property
    def percall_cumtime(self) -> float:
        """``cumtime`` per primitive call, as pstats computes it."""
        return self.cumtime / self.primitive_calls if self.primitive_calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (JSON-ready), with ``location`` added."""
        d = self._asdict()
        d["location"] = self.location
        return d


_NUMERIC_DESC = {
    "cumulative": lambda r: (-r.cumtime, r.function),
    "cumtime": lambda r: (-r.cumtime, r.function),
    "tottime": lambda r: (-r.tottime, r.function),
    "time": lambda r: (-r.tottime, r.function),
    "ncalls": lambda r: (-r.ncalls, r.function),
    "calls": lambda r: (-r.ncalls, r.function),
    "pcalls": lambda r: (-r.primitive_calls, r.function),
}
_TEXT_ASC = {
    "name": lambda r: (r.function, r.file, r.line),
    "function": lambda r: (r.function, r.file, r.line),
    "filename": lambda r: (r.file, r.line, r.function),
    "file": lambda r: (r.file, r.line, r.function),
    "line": lambda r: (r.line, r.file, r.function),
}
SORTERS: dict[str, Any] = {**_NUMERIC_DESC, **_TEXT_ASC}
SORT_KEYS: tuple[str, ...] = tuple(SORTERS)
"""Accepted ``sort`` values: pstats' names (cumulative, tottime, ncalls, ...) and our aliases."""


def check_sort(sort: object) -> str:
    """Return ``sort`` if it is a known sort key; raise ValueError (TypeError for a non-str)."""
    if not isinstance(sort, str):
        raise TypeError(f"sort must be a str, one of {', '.join(SORT_KEYS)}; got {sort!r}")
    if sort not in SORTERS:
        raise ValueError(f"unknown sort key {sort!r}; expected one of {', '.join(SORT_KEYS)}")
    return sort


def check_top(top: object) -> int:
    """Return ``top`` if it is a positive int; raise ValueError (TypeError for a non-int)."""
    if isinstance(top, bool) or not isinstance(top, int):
        raise TypeError(f"top must be a positive int, got {top!r}")
    if top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    return top


def _label(code: object) -> FuncKey:
    # cProfile.label(): builtins are reported by a description string, functions by their code.
    if isinstance(code, str):
        return ("~", 0, code)
    return (code.co_filename, code.co_firstlineno, code.co_name)  # type: ignore[attr-defined]


def stats_from_profile(profile: cProfile.Profile) -> StatsDict:
    """
    The pstats-layout statistics of a finished ``cProfile.Profile``.

    Unlike ``pstats.Stats(profile)`` this never calls ``profile.disable()``, which on Python 3.11
    would also switch off whatever profiler is active on the *calling* thread.
    """
    entries = profile.getstats()
    stats: StatsDict = {}
    callers_of: dict[int, dict[FuncKey, CallerStats]] = {}
    for entry in entries:
        callers: dict[FuncKey, CallerStats] = {}
        callers_of[id(entry.code)] = callers
        nc = int(entry.callcount)
        cc = nc - int(entry.reccallcount)
        stats[_label(entry.code)] = (
            cc,
            nc,
            float(entry.inlinetime),
            float(entry.totaltime),
            callers,
        )
    for entry in entries:
        if not entry.calls:
            continue
        func = _label(entry.code)
        for sub in entry.calls:
            sub_callers = callers_of.get(id(sub.code))
            if sub_callers is None:
                continue
            nc = int(sub.callcount)
            cc = nc - int(sub.reccallcount)
            tt, ct = float(sub.inlinetime), float(sub.totaltime)
            if func in sub_callers:
                pnc, pcc, ptt, pct = sub_callers[func]
                nc, cc, tt, ct = nc + pnc, cc + pcc, tt + ptt, ct + pct
            sub_callers[func] = (nc, cc, tt, ct)
    return stats


def without(stats: StatsDict, drop: Iterable[FuncKey]) -> StatsDict:
    """A copy of ``stats`` without the ``drop`` entries, nor any caller links to them."""
    gone = set(drop) & stats.keys()
    if not gone:
        return stats
    out: StatsDict = {}
    for key, (cc, nc, tt, ct, callers) in stats.items():
        if key in gone:
            continue
        out[key] = (cc, nc, tt, ct, {k: v for k, v in callers.items() if k not in gone})
    return out


def _add_caller(a: CallerStats, b: CallerStats) -> CallerStats:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def merge_stats(into: StatsDict, other: Mapping[FuncKey, FuncStats]) -> None:
    """Add ``other`` into ``into`` in place, as ``pstats.Stats.add`` does."""
    for key, (cc, nc, tt, ct, callers) in other.items():
        if key in into:
            pcc, pnc, ptt, pct, pcallers = into[key]
            merged = dict(pcallers)
            for ck, cv in callers.items():
                merged[ck] = _add_caller(merged[ck], cv) if ck in merged else cv
            into[key] = (pcc + cc, pnc + nc, ptt + tt, pct + ct, merged)
        else:
            into[key] = (cc, nc, tt, ct, dict(callers))


def _normalise_callers(callers: Mapping[Any, Any]) -> dict[FuncKey, CallerStats]:
    out: dict[FuncKey, CallerStats] = {}
    for key, value in callers.items():
        if isinstance(value, tuple):
            out[_key(key)] = (int(value[0]), int(value[1]), float(value[2]), float(value[3]))
        else:  # old profile-module files keep a bare call count
            out[_key(key)] = (int(value), int(value), 0.0, 0.0)
    return out


def _key(key: Any) -> FuncKey:
    file, line, name = key
    return (str(file), int(line), str(name))


def normalise(stats: Mapping[Any, Any]) -> StatsDict:
    if not isinstance(stats, Mapping):
        raise TypeError(f"stats must be a mapping in pstats' layout, got {type(stats).__name__}")
    out: StatsDict = {}
    try:
        for key, value in stats.items():
            cc, nc, tt, ct, callers = value
            if not isinstance(callers, Mapping):
                raise TypeError("callers must be a mapping")
            out[_key(key)] = (int(cc), int(nc), float(tt), float(ct), _normalise_callers(callers))
    except (TypeError, ValueError, IndexError, OverflowError) as err:
        raise TypeError(f"stats are not in pstats' layout: {err}") from err
    return out
