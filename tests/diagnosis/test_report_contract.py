"""The diagnosis and checks reports follow the one report contract of safla_diag/_report.py."""

from __future__ import annotations

import json

import pytest

from safla_diag import Diagnostics, check_dependencies
from safla_diag._report import Report
from safla_diag.checks import ServiceReport, ServiceResult


def _reports() -> list[object]:
    service = ServiceResult(
        name="redis", target="redis://:***@h:6379/0", ok=False, latency_s=0.01, detail="refused"
    )
    return [
        Diagnostics({}, sections=["platform"]).doctor(),
        ServiceReport(results=[service], timeout=1.0, elapsed_s=0.02),
        check_dependencies(["attrs", "safla-diag-nope"]),
    ]


@pytest.mark.parametrize("report", _reports(), ids=lambda r: type(r).__name__)
def test_report_contract(report: Report) -> None:
    """Data, JSON (indent and extra json.dumps arguments), text and escaped HTML, all agree."""
    assert isinstance(report, Report)
    data = report.to_dict()
    assert json.loads(report.to_json()) == json.loads(json.dumps(data))
    one_line = report.to_json(indent=None, sort_keys=True)
    assert "\n" not in one_line and json.loads(one_line) == json.loads(report.to_json())
    assert report.to_text()
    html = report._repr_html_()
    assert html.startswith("<div>") and "<table>" in html and "<script" not in html
