"""Text renderings of reports for the terminal, through :mod:`._term` (aligned, coloured)."""

from __future__ import annotations

from typing import Any

from . import _term

__all__ = ["services_text"]


def services_text(report: Any) -> str:
    """
    A ServiceReport as aligned columns: status, name, target, latency, result, detail.

    The next step is printed under each failure, under the name column.
    """
    results = list(report.results)
    n_ok = sum(bool(r.ok) for r in results)
    head = (
        f"services: {n_ok} of {len(results)} ok in {report.elapsed_s:.2f} s "
        f"(timeout {report.timeout:g} s)"
    )
    rows = [
        (
            "ok" if r.ok else "FAIL",
            r.name,
            r.target,
            f"{r.latency_s * 1000:.1f} ms",
            r.status,
            r.detail,
        )
        for r in results
    ]
    lines = _term.table(None, rows, indent="  ", status_column=0).splitlines()
    status_width = max((len(row[0]) for row in rows), default=0)
    out = [head]
    for r, line in zip(results, lines, strict=True):
        out.append(line)
        if r.hint and not r.ok:
            out.append(f"  {'':<{status_width}}  next: {r.hint}")
    return "\n".join(out)
