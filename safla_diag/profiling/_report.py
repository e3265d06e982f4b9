"""ProfileReport: profiling results as data first (rows to sort, filter, save, plot), text second."""

from __future__ import annotations

import itertools
import marshal
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._redact import redact
from .._report import JsonMixin, Num, html_block, html_table
from ._stats import (
    SORT_KEYS,
    SORTERS,
    ProfileRow,
    StatsDict,
    check_sort,
    check_top,
    merge_stats,
    normalise,
    stats_from_profile,
    without,
)

if TYPE_CHECKING:
    import cProfile
    import pstats

__all__ = [
    "SORT_KEYS",
    "ProfileReport",
    "ProfileRow",
    "check_sort",
    "check_top",
    "stats_from_profile",
]

_ids = itertools.count(1)

_HTML_SCRIPT = """<script>
(function () {
  var t = document.getElementById("%(id)s");
  if (!t || t.dataset.sortable) { return; }
  t.dataset.sortable = "1";
  var heads = t.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, i) {
    th.style.cursor = "pointer";
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var desc = th.dataset.dir !== "desc";
      th.dataset.dir = desc ? "desc" : "asc";
      var num = th.style.textAlign === "right";
      rows.sort(function (a, b) {
        var x = a.cells[i].textContent, y = b.cells[i].textContent;
        var r = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return desc ? -r : r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
</script>"""


class ProfileReport(JsonMixin):
    """
    The result of profiling: one row per function, in pstats' data layout.

    Build one with ``CPUProfiler``/``profile``, or from a ``cProfile.Profile``, a
    ``pstats.Stats`` or a saved file (``from_profile``, ``from_pstats``, ``load``). Reports are
    immutable values; ``merge`` (or ``a + b``) adds reports up across calls.

    Attributes:
        label: What was profiled (a function's qualified name, or the caller's label).
        wall_time: Elapsed wall-clock seconds of the profiled span(s), awaits included; None when
            unknown (a report loaded from a file).
        sort: Default sort key of ``rows``, ``top()``, ``to_text()`` and the HTML table.
        top_n: Default number of rows in ``to_text()``.
        sessions: How many profiled spans were merged into this report.
    """

    __slots__ = ("_rows", "_stats", "label", "sessions", "sort", "top_n", "wall_time")

    def __init__(
        self,
        stats: Mapping[Any, Any],
        *,
        label: str = "",
        wall_time: float | None = None,
        sort: str = "cumulative",
        top: int = 20,
        sessions: int = 1,
    ) -> None:
        """
        Wrap pstats-layout statistics.

        Args:
            stats: ``{(file, line, function): (primitive calls, calls, tottime, cumtime,
                callers)}``, as ``pstats.Stats.stats`` holds them.
            label: What was profiled (stored redacted).
            wall_time: Elapsed wall-clock seconds, if known.
            sort: Default sort key (see ``SORT_KEYS``).
            top: Default number of rows for ``to_text()``.
            sessions: How many profiled spans the statistics cover.

        Raises:
            ValueError: For an unknown sort key or a top that is not positive.
        """
        self._stats: StatsDict = normalise(stats)
        # Redacted once, here: the label reaches reprs, text, JSON, HTML and log records.
        self.label = redact(str(label))
        self.wall_time = None if wall_time is None else float(wall_time)
        self.sort = check_sort(sort)
        self.top_n = check_top(top)
        self.sessions = int(sessions)
        self._rows: tuple[ProfileRow, ...] | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_profile(
        cls,
        profile: cProfile.Profile,
        *,
        label: str = "",
        wall_time: float | None = None,
        sort: str = "cumulative",
        top: int = 20,
    ) -> ProfileReport:
        """
        Build a report from a ``cProfile.Profile`` (disabled, or never enabled).

        Args:
            profile: The profiler whose statistics to read.
            label: What was profiled.
            wall_time: Elapsed wall-clock seconds, if known.
            sort: Default sort key.
            top: Default number of rows for ``to_text()``.

        Returns:
            The report.
        """
        return cls(
            stats_from_profile(profile), label=label, wall_time=wall_time, sort=sort, top=top
        )

    @classmethod
    def from_pstats(
        cls, stats: pstats.Stats, *, label: str = "", sort: str = "cumulative", top: int = 20
    ) -> ProfileReport:
        """
        Build a report from a ``pstats.Stats`` object.

        Args:
            stats: The statistics (e.g. ``pstats.Stats("out.prof")``).
            label: What was profiled.
            sort: Default sort key.
            top: Default number of rows for ``to_text()``.

        Returns:
            The report.
        """
        return cls(stats.stats, label=label, sort=sort, top=top)  # type: ignore[attr-defined]

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, sort: str = "cumulative", top: int = 20
    ) -> ProfileReport:
        """
        Read a pstats file, as written by ``save()``, ``cProfile`` or ``python -m cProfile -o``.

        Args:
            path: The file.
            sort: Default sort key.
            top: Default number of rows for ``to_text()``.

        Returns:
            The report, labelled with the file's name.

        Raises:
            OSError: When the file cannot be read.
            ValueError: When it is not a pstats file.
        """
        data = Path(path).read_bytes()
        try:
            stats = marshal.loads(data)
            return cls(stats, label=Path(path).name, sort=sort, top=top)
        except (EOFError, TypeError, ValueError) as err:
            raise ValueError(f"{Path(path).name!r} is not a pstats file: {err}") from err

    @classmethod
    def merge(cls, *reports: ProfileReport, label: str | None = None) -> ProfileReport:
        """
        Add reports up: calls and times per function are summed, as ``pstats.Stats.add`` does.

        Args:
            *reports: At least one report.
            label: Label of the result; by default the first report's.

        Returns:
            A new report; ``wall_time`` is the sum of the known wall times and ``sessions`` the
            total number of spans. Sort and top come from the first report.

        Raises:
            ValueError: When no report is given.
            TypeError: When something other than a ProfileReport is given.
        """
        if not reports:
            raise ValueError("merge() needs at least one report")
        for r in reports:
            if not isinstance(r, ProfileReport):
                raise TypeError(f"can only merge ProfileReport objects, got {type(r).__name__}")
        stats: StatsDict = {}
        for r in reports:
            merge_stats(stats, r._stats)
        walls = [r.wall_time for r in reports if r.wall_time is not None]
        first = reports[0]
        return cls(
            stats,
            label=first.label if label is None else label,
            wall_time=sum(walls) if walls else None,
            sort=first.sort,
            top=first.top_n,
            sessions=sum(r.sessions for r in reports),
        )

    def __add__(self, other: object) -> ProfileReport:
        if not isinstance(other, ProfileReport):
            return NotImplemented
        return ProfileReport.merge(self, other)

    # -- data ---------------------------------------------------------------------------------
    @property
    def stats(self) -> StatsDict:
        """A copy of the raw statistics in pstats' layout."""
        return {k: (cc, nc, tt, ct, dict(c)) for k, (cc, nc, tt, ct, c) in self._stats.items()}

    @property
    def rows(self) -> tuple[ProfileRow, ...]:
        """Every function, sorted by ``sort``."""
        if self._rows is None:
            rows = [
                ProfileRow(name, file, line, nc, cc, tt, ct)
                for (file, line, name), (cc, nc, tt, ct, _) in self._stats.items()
            ]
            rows.sort(key=SORTERS[self.sort])
            self._rows = tuple(rows)
        return self._rows

    def sorted_rows(self, sort: str) -> list[ProfileRow]:
        """
        Every function, sorted by ``sort`` (see ``SORT_KEYS``).

        Raises:
            ValueError: For an unknown sort key.
        """
        return sorted(self.rows, key=SORTERS[check_sort(sort)])

    def top(self, n: int | None = None, *, sort: str | None = None) -> list[ProfileRow]:
        """
        The first ``n`` rows by ``sort``.

        Args:
            n: How many rows; defaults to the report's ``top_n``.
            sort: Sort key; defaults to the report's ``sort``.

        Returns:
            Up to ``n`` rows (fewer when fewer functions ran).

        Raises:
            ValueError: For a non-positive ``n`` or an unknown sort key.
        """
        n = self.top_n if n is None else check_top(n)
        rows = self.rows if sort is None or sort == self.sort else self.sorted_rows(sort)
        return list(rows[:n])

    def filter(self, match: str | Callable[[ProfileRow], bool]) -> ProfileReport:
        """
        A report with only some functions, e.g. your own code: ``report.filter("my_service/")``.

        Args:
            match: A substring of the function name or of its file path, or a predicate on rows.

        Returns:
            A new report with the matching functions (caller links to the others removed).
        """
        keep: Callable[[ProfileRow], bool]
        if isinstance(match, str):
            needle = match
            keep = lambda r: needle in r.function or needle in r.file  # noqa: E731
        else:
            keep = match
        drop = [(r.file, r.line, r.function) for r in self.rows if not keep(r)]
        return ProfileReport(
            without(self._stats, drop),
            label=self.label,
            wall_time=self.wall_time,
            sort=self.sort,
            top=self.top_n,
            sessions=self.sessions,
        )

    def find(self, function: str) -> list[ProfileRow]:
        """Rows whose function name is ``function`` (several when defined in several places)."""
        return [r for r in self.rows if r.function == function]

    def __getitem__(self, function: str) -> ProfileRow:
        """
        The one row named ``function``.

        Raises:
            KeyError: When no function, or more than one, has that name.
        """
        found = self.find(function)
        if len(found) != 1:
            raise KeyError(function if not found else f"{function!r} is ambiguous: {len(found)}")
        return found[0]

    def __contains__(self, function: object) -> bool:
        return any(r.function == function for r in self.rows)

    def __len__(self) -> int:
        return len(self._stats)

    @property
    def total_time(self) -> float:
        """Seconds spent in profiled code (sum of ``tottime``); awaits are not included."""
        return sum(v[2] for v in self._stats.values())

    @property
    def total_calls(self) -> int:
        """Function calls seen, recursive ones included."""
        return sum(v[1] for v in self._stats.values())

    @property
    def primitive_calls(self) -> int:
        """Function calls seen, excluding recursive re-entries."""
        return sum(v[0] for v in self._stats.values())

    # -- output -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """
        The report as plain data: header fields and every row (``rows``), sorted by ``sort``.

        ``pandas.DataFrame(report.to_dict()["rows"])`` gives a table to filter and plot.
        """
        return {
            "label": self.label,
            "wall_time": self.wall_time,
            "total_time": self.total_time,
            "total_calls": self.total_calls,
            "primitive_calls": self.primitive_calls,
            "functions": len(self),
            "sessions": self.sessions,
            "sort": self.sort,
            "rows": [r.to_dict() for r in self.rows],
        }

    def _header(self) -> str:
        wall = "unknown" if self.wall_time is None else f"{self.wall_time * 1000:.3f} ms"
        calls = f"{self.total_calls} calls"
        if self.primitive_calls != self.total_calls:
            calls += f" ({self.primitive_calls} primitive)"
        spans = f", {self.sessions} sessions" if self.sessions != 1 else ""
        label = f"Profile of {self.label}" if self.label else "Profile"
        return (
            f"{label}: wall {wall}, {calls}, {self.total_time * 1000:.3f} ms in profiled "
            f"code{spans}; {len(self)} functions, sorted by {self.sort}"
        )

    def to_text(self, n: int | None = None, *, sort: str | None = None) -> str:
        """
        A fixed-width table of the top rows, like ``pstats.print_stats`` but with times in ms.

        Args:
            n: How many rows; defaults to ``top_n``.
            sort: Sort key; defaults to ``sort``.

        Returns:
            The text, ending with a newline.
        """
        rows = self.top(n, sort=sort)
        lines = [
            self._header(),
            f"{'ncalls':>12} {'tottime ms':>11} {'percall ms':>11} {'cumtime ms':>11} "
            f"{'percall ms':>11}  function (file:line)",
        ]
        for r in rows:
            lines.append(
                f"{_ncalls(r):>12} {r.tottime * 1000:>11.3f} {r.percall_tottime * 1000:>11.3f} "
                f"{r.cumtime * 1000:>11.3f} {r.percall_cumtime * 1000:>11.3f}  "
                f"{r.function} ({r.location})"
            )
        if len(rows) < len(self):
            lines.append(f"... {len(self) - len(rows)} more functions")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython's text/plain display (a terminal IPython): the table, not the short repr.
        printer.text(repr(self) if cycle else self.to_text().rstrip("\n"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """
        Write the statistics as a pstats file (what ``pstats.Stats(path)`` and snakeviz open).

        Args:
            path: Where to write; parent folders must exist. Written to a temporary file first
                and renamed, so readers never see half a file.

        Returns:
            The path written.

        Raises:
            OSError: When the file cannot be written.
        """
        target = Path(path)
        # Unique per process and thread: two threads saving to one path must not share it.
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with tmp.open("wb") as f:
                marshal.dump(self._stats, f)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def _repr_html_(self, max_rows: int | None = None) -> str:
        """
        Call tree, icicle and a sortable table (click a header) of the top ``top_n`` rows (or
        ``max_rows``) for Jupyter; inline script, no downloads.
        """
        table_id = f"safla-profile-{next(_ids)}-{id(self):x}"
        rows = self.rows[: self.top_n if max_rows is None else max_rows]
        more = f" (showing {len(rows)} of {len(self)} functions)" if len(rows) < len(self) else ""
        table = html_table(
            (
                "function",
                "file:line",
                "ncalls",
                "tottime ms",
                "percall ms",
                "cumtime ms",
                "cum/call ms",
            ),
            (
                (
                    r.function,
                    r.location,
                    Num(_ncalls(r)),
                    Num(f"{r.tottime * 1000:.3f}"),
                    Num(f"{r.percall_tottime * 1000:.3f}"),
                    Num(f"{r.cumtime * 1000:.3f}"),
                    Num(f"{r.percall_cumtime * 1000:.3f}"),
                )
                for r in rows
            ),
            caption=self._header() + more,
            table_id=table_id,
        )
        from ._tree import pictures_html

        return html_block(
            self.label or "Profile",
            pictures_html(self._stats),
            table,
            _HTML_SCRIPT % {"id": table_id},
        )

    def to_speedscope(self) -> dict[str, Any]:
        """
        The profile in speedscope's file format (``json.dump`` it and open it in speedscope).

        Returns:
            A ``sampled`` profile in seconds: the call tree rebuilt from the caller edges, one
            sample per frame weighted by its own time.
        """
        from ._tree import speedscope_of

        return speedscope_of(self._stats, name=self.label or "profile")

    def __repr__(self) -> str:
        wall = "None" if self.wall_time is None else f"{self.wall_time:.6f}"
        return (
            f"<ProfileReport label={self.label!r} wall_time={wall} functions={len(self)} "
            f"calls={self.total_calls}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProfileReport):
            return NotImplemented
        return (self.label, self.wall_time, self.sessions, self._stats) == (
            other.label,
            other.wall_time,
            other.sessions,
            other._stats,
        )

    __hash__ = None  # type: ignore[assignment]


def _ncalls(r: ProfileRow) -> str:
    return str(r.ncalls) if r.ncalls == r.primitive_calls else f"{r.ncalls}/{r.primitive_calls}"
