"""Diagnosis: the Diagnostics facade behind doctor, and performance diagnosis."""

from __future__ import annotations

from ._diagnostics import DiagnosisReport, Diagnostics
from ._performance import PerformanceDiagnostic

__all__ = ["DiagnosisReport", "Diagnostics", "PerformanceDiagnostic"]
