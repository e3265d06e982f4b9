"""Diagnostics and DiagnosisReport: independent sections, safe failures, monitors in the host loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from safla_diag import DiagnosisReport, Diagnostics
from safla_diag.diagnosis._context import Context as _Context
from safla_diag.diagnosis._context import Section as _Section
from safla_diag.diagnosis._sections import SECTION_NAMES
from safla_diag.diagnosis._sections import run_section as _run_section

from ..checks._servers import closed_port, fake_http, mcp_routes, serve

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-Pa55"
BASE = ("platform", "configuration", "dependencies", "memory", "cpu", "disk")


def names(report: DiagnosisReport) -> list[str]:
    return [s.name for s in report.sections]


def test_defaults_without_configuration() -> None:
    """No configuration: the base sections, no services, and a consistent exit code."""
    report = Diagnostics().doctor()
    assert names(report) == list(BASE)
    assert report.section("configuration").findings[0].message.startswith("no configuration")
    assert report.exit_code == (0 if report.ok else 1)
    assert report.ok == (not report.problems)
    doc = json.loads(report.to_json())
    assert doc["ok"] == report.ok and [s["name"] for s in doc["sections"]] == list(BASE)
    assert "doctor:" in report.to_text() and "<table>" in report._repr_html_()


async def test_services_section_reports_failures_with_hints(redis_url: str) -> None:
    """A configured service that is down is an error finding with the next step."""
    port = closed_port()
    async with serve(fake_http(mcp_routes())) as mcp_port:
        cfg = {
            "database_url": f"postgresql://app:{SECRET}@127.0.0.1:{port}/safla",
            "redis_url": redis_url,
            "vector_dimension": 8,
            "mcp_servers": [{"name": "main", "url": f"http://127.0.0.1:{mcp_port}/mcp"}],
            "service_timeout": 2,
        }
        report = await Diagnostics(cfg, sections=["services"]).adoctor()
    services = report.section("services")
    errors = [f for f in services.findings if f.severity == "error"]
    assert len(errors) == 1 and "database" in errors[0].message and "refused" in errors[0].message
    assert errors[0].hint and "start the service" in errors[0].hint
    assert not report.ok and report.exit_code == 1
    for text in (report.to_json(), report.to_text(), report._repr_html_(), repr(report)):
        assert SECRET not in text


async def test_memory_thresholds_from_configuration() -> None:
    """memory_threshold_percent / memory_critical_percent decide warning and error."""
    warn = await Diagnostics(
        {"memory_threshold_percent": 1e-6, "memory_critical_percent": 100}, sections=["memory"]
    ).adoctor()
    crit = await Diagnostics(
        {"memory_threshold_percent": 1e-6, "memory_critical_percent": 2e-6}, sections=["memory"]
    ).adoctor()
    assert warn.section("memory").severity == "warning"
    assert crit.section("memory").severity == "error" and crit.problems[0].hint


async def test_disk_where_the_data_folder_will_be(tmp_path: Path) -> None:
    """A data folder that does not exist yet is measured on its nearest existing parent."""
    data = tmp_path / "not" / "yet"
    report = await Diagnostics({"data_dir": str(data)}, sections=["disk"]).adoctor()
    facts = report.section("disk").facts
    assert facts["exists"] is False and facts["measured_at"] == str(tmp_path)
    assert facts["free_mb"] > 0 and "not created yet" in report.findings[0].message


async def test_layers_that_fail_become_findings(tmp_path: Path) -> None:
    """Vector, queue and logs sections run when configured and never raise, whatever the layer does."""
    (tmp_path / "queue.db").write_bytes(b"not a database")
    cfg = {
        "data_dir": str(tmp_path),
        "mcp_task_queue": str(tmp_path / "queue.db"),
        "log_paths": [str(tmp_path / "app.log")],
    }
    report = await Diagnostics(cfg, sections=["vector", "mcp_queue", "logs"]).adoctor()
    assert names(report) == ["vector", "mcp_queue", "logs"]
    assert all(s.findings for s in report.sections)


async def test_queue_file_absent_is_fine(tmp_path: Path) -> None:
    """No queue file yet means nothing has failed: info."""
    cfg = {"mcp_task_queue": str(tmp_path / "q.db")}
    report = await Diagnostics(cfg, sections=["mcp_queue"]).adoctor()
    assert report.ok and "nothing has failed" in report.findings[0].message


@pytest.mark.parametrize(
    ("exc", "severity", "word"),
    [
        (NotImplementedError(), "warning", "NotImplementedError"),
        (RuntimeError("boom"), "warning", "RuntimeError: boom"),
        (OSError("redis://:s3cr3t-Pa55@h"), "warning", "OSError"),
    ],
)
async def test_a_raising_section_is_a_finding(exc: Exception, severity: str, word: str) -> None:
    """A section whose layer raises gives one finding of its own; secrets stay out."""

    async def fn(ctx: _Context) -> tuple[dict[str, object], list[object]]:
        raise exc

    ctx = _Context(config={}, given=False, source=None, timeout=1, monitors=None, started=0.0)
    result = await _run_section(_Section("boom", fn), ctx, 1.0)
    (finding,) = result.findings
    assert finding.severity == severity and word in finding.message
    assert SECRET not in finding.message


async def test_a_hanging_section_is_cut_at_its_budget() -> None:
    """A section that never finishes is reported as unfinished when its budget runs out."""
    never = asyncio.Event()

    async def fn(ctx: _Context) -> tuple[dict[str, object], list[object]]:
        await never.wait()
        raise AssertionError

    ctx = _Context(config={}, given=False, source=None, timeout=1, monitors=None, started=0.0)
    result = await _run_section(_Section("slow", fn), ctx, 0.1)
    assert result.severity == "warning" and "did not finish" in result.findings[0].message


async def test_async_with_runs_monitors_in_the_host_loop() -> None:
    """Inside `async with`, a monitors section appears; on exit the tasks are gone; no re-entry."""
    diag = Diagnostics({"leak_check_interval": 0.05}, sections=["monitors"])
    before = set(asyncio.all_tasks())
    async with diag as d:
        assert d is diag
        report = await diag.adoctor()
        assert names(report) == ["monitors"]
        monitors = report.section("monitors")
        assert monitors.facts["running"] and "leak" in monitors.facts, monitors.findings
        assert not monitors.facts["errors"]
    assert set(asyncio.all_tasks()) - before == set()
    with pytest.raises(RuntimeError, match="only once"):
        async with diag:
            pass
    outside = await diag.adoctor()
    assert names(outside) == []


async def test_doctor_refuses_a_running_loop() -> None:
    """The sync doctor() inside a running loop says to await adoctor()."""
    with pytest.raises(RuntimeError, match="adoctor"):
        Diagnostics().doctor()


def test_bad_arguments() -> None:
    """Unknown sections, odd config types and bad timeouts are programmer errors."""
    with pytest.raises(ValueError, match="unknown sections"):
        Diagnostics(sections=["nope"])
    with pytest.raises(TypeError):
        Diagnostics(42)
    with pytest.raises(ValueError):
        Diagnostics(timeout=0)
    assert "services" in SECTION_NAMES


def test_config_property_is_redacted() -> None:
    """The configuration a Diagnostics shows has its secrets masked."""
    diag = Diagnostics({"redis_url": f"redis://:{SECRET}@h:6379", "api_token": SECRET})
    assert SECRET not in repr(diag.config) and SECRET not in repr(diag)


async def test_auth_failure_finding_keeps_its_words() -> None:
    """An authentication failure reads as such in the finding: redaction masks secrets, not words."""
    from ..checks._servers import fake_redis

    wrong = b"-WRONGPASS invalid username-password pair\r\n"
    async with serve(fake_redis({"AUTH": wrong})) as port:
        cfg = {"redis_url": f"redis://:{SECRET}@127.0.0.1:{port}/0"}
        report = await Diagnostics(cfg, sections=["services"]).adoctor()
    (finding,) = report.problems
    assert (
        "reachable, authentication failed" in finding.message and "auth_failed" in finding.message
    )
    assert SECRET not in report.to_json()


async def test_vector_section_on_a_real_index(tmp_path: Path) -> None:
    """A saved index is healthy; the same file damaged is an error with the layer's advice."""
    faiss = pytest.importorskip("faiss")
    import numpy as np

    from safla_diag import VectorIndexRecovery

    data = tmp_path / "data"
    data.mkdir()
    index = faiss.IndexFlatL2(8)
    index.add(np.random.default_rng(0).random((50, 8), dtype=np.float32))
    VectorIndexRecovery(data, tmp_path / "backups", dimension=8).save_index(index)
    cfg = {"data_dir": str(data), "backup_dir": str(tmp_path / "backups"), "vector_dimension": 8}
    healthy = await Diagnostics(cfg, sections=["vector"]).adoctor()
    assert healthy.ok and "50 vectors" in healthy.findings[0].message
    path = data / "vector_index.faiss"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    damaged = await Diagnostics(cfg, sections=["vector"]).adoctor()
    (finding,) = damaged.problems
    assert finding.severity == "error" and finding.hint
    wrong_dim = await Diagnostics({**cfg, "vector_dimension": 16}, sections=["vector"]).adoctor()
    assert not wrong_dim.ok


async def test_mcp_queue_section_counts_dead_letters(tmp_path: Path) -> None:
    """A real queue with a dead-lettered task is a warning naming the command to inspect it."""
    from safla_diag import MCPTaskRecovery

    path = tmp_path / "mcp_tasks.db"

    async def fail(task: object) -> None:
        raise ConnectionError("MCP server down")

    queue = MCPTaskRecovery(path, execute=fail, max_retries=1, retry_delay=0, max_delay=0)
    async with queue:
        await queue.save_failed_task({"id": "dead", "tool": "search"}, delay=0)
        await queue.retry_once()
        await queue.save_failed_task({"id": "waiting", "tool": "search"}, delay=3600)
    report = await Diagnostics({"mcp_task_queue": str(path)}, sections=["mcp_queue"]).adoctor()
    section = report.section("mcp_queue")
    assert (section.facts["pending"], section.facts["dead"]) == (1, 1)
    assert section.severity == "warning" and "mcp queue" in (report.problems[0].hint or "")


async def test_logs_section_counts_recent_errors(tmp_path: Path) -> None:
    """Recent ERROR records are a warning with the most frequent template; a missing file too."""
    from datetime import datetime

    now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    log = tmp_path / "safla.log"
    log.write_text(
        f"{now} ERROR safla.mcp: request 17 to 10.0.0.5:3001 failed\n"
        f"{now} ERROR safla.mcp: request 18 to 10.0.0.5:3001 failed\n"
        f"{now} INFO safla.core: fine\n"
    )
    cfg = {"log_paths": [str(log), str(tmp_path / "missing.log")]}
    report = await Diagnostics(cfg, sections=["logs"]).adoctor()
    messages = [f.message for f in report.problems]
    assert any("2 ERROR/CRITICAL records" in m and "failed" in m for m in messages)
    assert any("missing.log" in m for m in messages)


async def test_a_configuration_without_services_probes_nothing(tmp_path: Path) -> None:
    """Keys that name no service (data_dir, thresholds) are not taken for service URLs."""
    cfg = {"data_dir": str(tmp_path), "memory_threshold_percent": 85, "log_paths": []}
    report = await Diagnostics(cfg).adoctor()
    assert "services" not in names(report)
    assert all("not a URL" not in f.message for f in report.findings)


@pytest.mark.parametrize(
    ("busy", "load", "severity"),
    [
        (12.0, (0.5, 0.5, 0.5), "info"),
        (89.9, (1.0, 1.0, 1.0), "info"),
        (90.0, (1.0, 1.0, 1.0), "warning"),
        (100.0, (float("nan"),) * 3, "warning"),
        (5.0, (9.0, 8.0, 7.0), "warning"),
    ],
)
def test_cpu_line_warns_when_busy_or_loaded(
    busy: float, load: tuple[float, float, float], severity: str
) -> None:
    """100% busy is not ok: from CPU_BUSY_WARN_PERCENT busy, or twice the cores of load, a warning."""
    from safla_diag.diagnosis._sections._host import cpu_findings

    (found,) = cpu_findings(busy, 2, load)
    assert found.severity == severity
    assert f"{busy:.0f}% busy" in found.message
    if severity == "warning":
        assert found.hint
