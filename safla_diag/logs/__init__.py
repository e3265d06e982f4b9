"""Log analysis: streaming level counts, time windows and message templates."""

from __future__ import annotations

from ._analyze import LogReport, aanalyze_logs, analyze_logs
from ._mine import mine_templates

__all__ = ["LogReport", "aanalyze_logs", "analyze_logs", "mine_templates"]
