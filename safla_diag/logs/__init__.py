"""Log analysis: streaming level counts, time windows and message templates."""

from __future__ import annotations

from ._analyze import LogReport, analyze_logs

__all__ = ["LogReport", "analyze_logs"]
