"""Diagnosis: the Diagnostics facade behind doctor, and performance diagnosis."""

from __future__ import annotations

from ._diagnostics import Diagnostics
from ._performance import PerformanceDiagnostic
from ._report import DiagnosisReport, Finding, SectionResult

__all__ = ["DiagnosisReport", "Diagnostics", "Finding", "PerformanceDiagnostic", "SectionResult"]
