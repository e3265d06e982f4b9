"""
The report types of a diagnosis: Finding, SectionResult and DiagnosisReport.

They follow the report contract of ``safla_diag/_report.py``: ``to_dict()`` is the truth (JSON-safe,
redacted), ``to_json`` derives from it, ``to_text`` is what ``safla-diag doctor`` prints and
``_repr_html_`` is built with the shared HTML helpers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .._redact import redact
from .._report import JsonMixin, html_block, html_table

__all__ = ["DiagnosisReport", "Finding", "SectionResult", "Severity", "finding"]

Severity = Literal["info", "warning", "error"]
_RANK = {"info": 0, "warning": 1, "error": 2}


@attrs.frozen(kw_only=True)
class Finding:
    """
    One thing the diagnosis found.

    Attributes:
        section: The section that found it (``services``, ``memory``, ...).
        severity: ``info`` (a fact, healthy), ``warning`` (needs attention) or ``error``
            (something is broken).
        message: One line, redacted.
        hint: The next step, when there is one, redacted.
    """

    section: str
    severity: Severity
    message: str = attrs.field(converter=redact)
    hint: str | None = attrs.field(default=None, converter=attrs.converters.optional(redact))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


def finding(section: str, severity: Severity, message: str, hint: str | None = None) -> Finding:
    """A Finding, positionally: the sections make many."""
    return Finding(section=section, severity=severity, message=message, hint=hint)


@attrs.frozen(kw_only=True)
class SectionResult:
    """The facts and findings of one section, and how long it took."""

    name: str
    findings: tuple[Finding, ...]
    facts: Mapping[str, Any] = attrs.field(factory=dict)
    elapsed_s: float = 0.0

    @property
    def severity(self) -> Severity:
        """The worst severity among the findings (``info`` when there are none)."""
        worst: Severity = "info"
        for f in self.findings:
            if _RANK[f.severity] > _RANK[worst]:
                worst = f.severity
        return worst


@attrs.frozen(kw_only=True)
class DiagnosisReport(JsonMixin):
    """
    What ``doctor`` found, section by section.

    Attributes:
        sections: The sections, in a fixed order.
        elapsed_s: Wall time of the diagnosis.
        config_source: Where the configuration came from (a file, ``mapping``, or None).
    """

    sections: tuple[SectionResult, ...]
    elapsed_s: float
    config_source: str | None = None

    @property
    def findings(self) -> list[Finding]:
        """Every finding, info ones included, in section order."""
        return [f for s in self.sections for f in s.findings]

    @property
    def problems(self) -> list[Finding]:
        """The warnings and errors."""
        return [f for f in self.findings if f.severity != "info"]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong: no warning and no error."""
        return not self.problems

    @property
    def config_ok(self) -> bool:
        """False when the configuration section found errors."""
        return all(
            f.severity != "error"
            for s in self.sections
            if s.name == "configuration"
            for f in s.findings
        )

    @property
    def exit_code(self) -> int:
        """The ``doctor`` exit code: 0 healthy, 1 findings, 2 configuration errors."""
        if not self.config_ok:
            return 2
        return 0 if self.ok else 1

    def section(self, name: str) -> SectionResult:
        """The section called ``name``; KeyError when it did not run."""
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        """``{"ok", "exit_code", "elapsed_s", "summary", "sections": [...], "findings": [...]}``."""
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "elapsed_s": self.elapsed_s,
            "config_source": self.config_source,
            "summary": self.summary,
            "sections": [
                {
                    "name": s.name,
                    "severity": s.severity,
                    "elapsed_s": s.elapsed_s,
                    "facts": _jsonable(s.facts),
                    "findings": [f.to_dict() for f in s.findings],
                }
                for s in self.sections
            ],
            "findings": [f.to_dict() for f in self.findings],
        }

    @property
    def summary(self) -> str:
        """One line: ``healthy: N checks passed`` or ``E errors, W warnings``."""
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = sum(f.severity == "warning" for f in self.findings)
        if not errors and not warnings:
            n = len(self.sections)
            return f"healthy: {n} check{'s' * (n != 1)} passed"
        return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"

    def to_text(self) -> str:
        """One block per section: its worst severity, then its findings with their next step."""
        label = {"info": "ok", "warning": "WARN", "error": "ERROR"}
        width = max((len(s.name) for s in self.sections), default=8)
        lines = []
        for s in self.sections:
            head = f"{s.name:<{width}}  {label[s.severity]:<5}  "
            shown = [f for f in s.findings if f.severity != "info"] or list(s.findings)
            for i, f in enumerate(shown):
                mark = (
                    "" if f.severity == s.severity or f.severity == "info" else f"[{f.severity}] "
                )
                lines.append((head if i == 0 else " " * len(head)) + mark + f.message)
                if f.hint and f.severity != "info":
                    lines.append(" " * len(head) + f"  next: {f.hint}")
            if not shown:
                lines.append(head.rstrip())
        lines.append(f"doctor: {self.summary} in {self.elapsed_s:.2f} s")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            (s.name, f.severity, f.message, f.hint or "") for s in self.sections for f in s.findings
        ]
        table = html_table(("section", "severity", "finding", "next step"), rows)
        return html_block(f"doctor: {self.summary} in {self.elapsed_s:.2f} s", table, ok=self.ok)

    def __repr__(self) -> str:
        return (
            f"<DiagnosisReport ok={self.ok} sections={len(self.sections)} "
            f"problems={len(self.problems)}>"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return redact(str(value))
