"""The whole library behind Diagnostics: real index, queue, logs, services and monitors together."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from safla_diag import DiagnosisReport, Diagnostics, SaflaConfig
from safla_diag.diagnosis._sections import SECTION_NAMES

from ..checks._servers import closed_port, fake_http, mcp_routes, serve
from ..mcp_retry._pg import pg_queue_url_fixture, pg_schema_fixture, sql  # noqa: F401
from . import _world as world

pytestmark = pytest.mark.anyio

SECRET = "pg-Pa55word-x9"
# Everything but the machine's own sections (cpu, memory, disk), which a busy test machine may
# legitimately warn about.
DEPLOYMENT = tuple(s for s in SECTION_NAMES if s not in world.MACHINE)


@pytest.fixture
async def mcp_url() -> AsyncIterator[str]:
    """A tiny MCP-over-HTTP server on loopback (initialize, ping), for the configuration."""
    async with serve(fake_http(mcp_routes())) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def cfg(tmp_path: Path, redis_url: str, postgres_url: str, mcp_url: str) -> dict[str, Any]:
    """A valid configuration: the real Redis and PostgreSQL, the MCP server, a healthy index."""
    pytest.importorskip("faiss")
    return world.base_config(
        tmp_path, redis_url=redis_url, postgres_url=postgres_url, mcp_url=mcp_url
    )


def problems(report: DiagnosisReport) -> list[str]:
    return [f"{f.section}: {f.message}" for f in report.problems]


@pytest.mark.parametrize("form", ["mapping", "SaflaConfig", "file"])
async def test_healthy_deployment_is_ok(cfg: dict[str, Any], tmp_path: Path, form: str) -> None:
    """Services up, a saved index, nothing queued: every deployment section is info, exit 0."""
    source: dict[str, Any] | SaflaConfig | Path = cfg
    if form == "SaflaConfig":
        source = SaflaConfig.from_mapping(cfg)
    elif form == "file":
        source = world.write_config(tmp_path / "safla.json", cfg)
    report = await Diagnostics(source, sections=DEPLOYMENT).adoctor()
    assert report.ok and report.exit_code == 0, problems(report)
    assert [s.name for s in report.sections] == [
        "platform",
        "configuration",
        "dependencies",
        "services",
        "vector",
    ]
    services = {f.message.split(": ")[0] for f in report.section("services").findings}
    assert services == {"database", "redis", "mcp:main"}
    (vector,) = report.section("vector").findings
    assert vector.severity == "info"
    assert f"{world.VECTORS} vectors" in vector.message
    assert f"dimension {world.DIMENSION}" in vector.message
    assert "checksum verified" in vector.message and "0 usable backups" in vector.message
    facts = report.section("vector").facts
    assert facts["ok"] is True and facts["checksum_ok"] is True and facts["backups"] == 0


async def test_corrupted_index_is_an_error_with_the_way_back(cfg: dict[str, Any]) -> None:
    """Bytes flipped in a saved index: an error naming the checksum, and the restore command."""
    data, backups = Path(cfg["data_dir"]), Path(cfg["backup_dir"])
    backup = Path(world.backup_index(data, backups))
    world.corrupt(data / "vector_index.faiss")
    report = await Diagnostics(cfg, sections=["vector"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "error" and report.exit_code == 1
    assert "checksum" in finding.message and "damaged" in finding.message
    assert finding.hint is not None
    assert f"safla-diag vector restore {data} --backup-dir {backups}" in finding.hint
    assert backup.name in finding.hint
    assert report.section("vector").facts["checksum_ok"] is False


async def test_damaged_index_without_backups_says_rebuild(cfg: dict[str, Any]) -> None:
    """A truncated index and no backup: the hint is the rebuild command, not a restore."""
    path = Path(cfg["data_dir"]) / "vector_index.faiss"
    path.write_bytes(path.read_bytes()[:-100])
    report = await Diagnostics(cfg, sections=["vector"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "error" and "truncated" in finding.message
    assert finding.hint is not None and "rebuild-index" in finding.hint
    assert "no usable backup" in finding.hint


async def test_index_of_another_dimension_is_unusable(cfg: dict[str, Any]) -> None:
    """The configured vector_dimension is the one the index must have."""
    report = await Diagnostics({**cfg, "vector_dimension": 16}, sections=["vector"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "error" and "16" in finding.message


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_dead_lettered_tasks_are_a_warning_and_the_queue_is_only_read(
    tmp_path: Path,
) -> None:
    """A real SQLite queue with dead letters: a warning with counts; the file is not touched."""
    path = tmp_path / "mcp_tasks.db"
    await world.dead_letter_queue(path)
    before = _digest(path)
    report = await Diagnostics({"mcp_task_queue": str(path)}, sections=["mcp_queue"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "warning" and report.exit_code == 1
    assert "2 tasks dead-lettered" in finding.message and "1 pending" in finding.message
    assert finding.hint == f"read their last errors: safla-diag mcp queue {path} --show 10"
    facts = report.section("mcp_queue").facts
    assert (facts["pending"], facts["in_flight"], facts["dead"]) == (1, 0, 2)
    assert _digest(path) == before
    assert not (tmp_path / "mcp_tasks.db-wal").exists() or _digest(path) == before


async def test_overdue_tasks_mean_no_worker(tmp_path: Path) -> None:
    """A task due an hour ago and still waiting: the doctor says no worker is retrying."""
    from safla_diag import MCPTaskRecovery

    path = tmp_path / "q.db"

    async def never(task: dict[str, Any]) -> None:
        raise AssertionError("not run")

    queue = MCPTaskRecovery(path, execute=never, clock=lambda: time.time() - 3600)
    async with queue:
        await queue.save_failed_task({"id": "stuck"}, delay=0)
    report = await Diagnostics({"mcp_task_queue": str(path)}, sections=["mcp_queue"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "warning" and "no worker" in finding.message
    assert finding.hint is not None and "retry_failed_tasks" in finding.hint


async def test_a_foreign_queue_file_is_an_error(tmp_path: Path) -> None:
    """A file that is not a queue is an error naming why, and it is left as it was."""
    path = tmp_path / "mcp_tasks.db"
    path.write_text('{"tasks": []}')
    report = await Diagnostics({"mcp_task_queue": str(path)}, sections=["mcp_queue"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "error" and "not a SQLite database" in finding.message
    assert path.read_text() == '{"tasks": []}'


async def test_recent_log_errors_are_a_warning_with_the_top_template(tmp_path: Path) -> None:
    """ERROR records of the last hour are counted (older ones are not); the top template leads."""
    log = tmp_path / "safla.log"
    world.write_log(log)
    cfg = {"log_paths": [str(log), str(tmp_path / "gone.log"), "-"]}
    report = await Diagnostics(cfg, sections=["logs"]).adoctor()
    first, *rest = report.findings
    assert first.severity == "warning"
    assert first.message.startswith("4 ERROR/CRITICAL records in the last hour")
    assert "3x ERROR" in first.message and world.TOP_TEMPLATE in first.message
    assert first.hint == f"safla-diag logs scan {log} {tmp_path / 'gone.log'} --since 1h"
    assert any("gone.log" in f.message and f.severity == "warning" for f in rest)
    assert any("standard input" in f.message for f in rest)
    facts = report.section("logs").facts
    assert facts["counts"]["ERROR"] == 4 and facts["templates"][0]["count"] == 3


async def test_quiet_logs_are_info(tmp_path: Path) -> None:
    """Only old errors: nothing in the last hour, an info finding."""
    log = tmp_path / "old.log"
    log.write_text("2020-01-01 00:00:00 ERROR safla.core: long ago\n")
    report = await Diagnostics({"log_paths": [str(log)]}, sections=["logs"]).adoctor()
    assert report.ok and "no ERROR or CRITICAL records" in report.findings[0].message


async def test_async_with_runs_the_real_monitors_in_this_loop(cfg: dict[str, Any]) -> None:
    """Inside the block the detector samples and the memory monitor checks; on exit both stop."""
    before = set(asyncio.all_tasks())
    diag = Diagnostics(cfg, sections=["monitors"])
    assert diag.leak_detector is None and diag.memory_monitor is None
    async with diag:
        detector, monitor = diag.leak_detector, diag.memory_monitor
        assert detector is not None and monitor is not None
        assert detector.monitoring
        names = {t.get_name() for t in asyncio.all_tasks() - before}
        assert names >= {"safla_diag.MemoryLeakDetector", "safla_diag.Diagnostics.memory"}
        report = await diag.adoctor()
        section = report.section("monitors")
        assert section.facts["running"] and not section.facts["errors"]
        assert section.facts["memory"]["checks"] >= 1
        assert monitor.last_percent is not None and detector.samples >= 1
        messages = [f.message for f in section.findings]
        assert any(m.startswith("memory monitor: this process uses") for m in messages)
        assert any(m.startswith("no leak trend") for m in messages)
    assert not detector.monitoring and diag.leak_detector is None
    assert set(asyncio.all_tasks()) - before == set()
    with pytest.raises(RuntimeError, match="only once"):
        async with diag:
            pass


async def test_a_leak_heading_for_the_limit_is_an_error() -> None:
    """A steep ramp close to the memory limit: an error with the time left."""
    async with Diagnostics(sections=["monitors"]) as diag:
        detector = diag.leak_detector
        assert detector is not None
        limit = detector.analyze().memory_limit_mb
        assert limit is not None
        t0 = time.monotonic() + 1.0
        for minute in range(90):  # 30 MB a minute for 90 minutes, ending 300 MB short
            detector.add_sample(limit - 3000 + 30 * minute, t0 + 60 * minute)
        report = await diag.adoctor()
    leak = next(f for f in report.findings if "leaking" in f.message)
    assert leak.severity == "error", leak
    assert "MB/h" in leak.message and "to the" in leak.message and "limit" in leak.message
    assert report.section("monitors").facts["leak"]["time_to_limit_s"] < 3600


async def test_cancelling_the_block_stops_the_monitors() -> None:
    """A host task cancelled inside `async with` stops the monitors and re-raises the cancel."""
    before = set(asyncio.all_tasks())
    started = asyncio.Event()
    seen: list[Diagnostics] = []

    async def host() -> None:
        async with Diagnostics(sections=["monitors"]) as diag:
            seen.append(diag)
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(host())
    async with asyncio.timeout(10):
        await started.wait()
    detector = seen[0].leak_detector
    assert detector is not None and detector.monitoring
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not detector.monitoring
    assert set(asyncio.all_tasks()) - before == set()


async def test_the_whole_library_in_one_report(
    cfg: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    """Every section at once: only the queue and the logs need attention; no secret shows."""
    queue, log = tmp_path / "mcp_tasks.db", tmp_path / "safla.log"
    await world.dead_letter_queue(queue)
    world.write_log(log)
    full = {
        **cfg,
        "database_url": postgres_url.replace("postgres@", f"postgres:{SECRET}@"),
        "mcp_task_queue": str(queue),
        "log_paths": [str(log)],
    }
    async with Diagnostics(full) as diag:
        report = await diag.adoctor()
    assert [s.name for s in report.sections] == list(SECTION_NAMES)
    deployment = [f for f in report.problems if f.section not in world.MACHINE]
    assert sorted(f.section for f in deployment) == ["logs", "mcp_queue"], problems(report)
    assert report.exit_code == 1 and report.config_ok
    text = report.to_text()
    assert "dead-lettered" in text and world.TOP_TEMPLATE in text and "next: " in text
    for shown in (text, report.to_json(), report._repr_html_(), repr(report), repr(diag)):
        assert SECRET not in shown


async def test_a_monitor_that_cannot_start_is_a_finding_and_the_other_runs() -> None:
    """Thresholds the memory monitor refuses: a warning naming them; the leak detector still runs."""
    cfg = {"memory_threshold_percent": 90, "memory_critical_percent": 80}
    async with Diagnostics(cfg, sections=["monitors"]) as diag:
        assert diag.memory_monitor is None
        assert diag.leak_detector is not None and diag.leak_detector.monitoring
        report = await diag.adoctor()
    section = report.section("monitors")
    (problem,) = report.problems
    assert problem.severity == "warning" and "memory monitor" in problem.message
    assert "critical_percent" in problem.message
    assert "leak" in section.facts and "memory" not in section.facts


# --- a shared queue in PostgreSQL -------------------------------------------------------------


async def test_postgres_queue_with_dead_letters(pg_queue_url: str, postgres_url: str) -> None:
    """A PostgreSQL queue (its own schema) is read like a file: dead letters are a warning."""
    url = pg_queue_url.replace("postgres@", f"postgres:{SECRET}@")
    await world.dead_letter_queue(url)
    cfg = {"mcp_task_queue": url}
    report = await Diagnostics(cfg, sections=["mcp_queue", "services"]).adoctor()
    (finding,) = report.section("mcp_queue").findings
    assert finding.severity == "warning" and "2 tasks dead-lettered" in finding.message
    assert finding.hint is not None and "safla-diag mcp queue postgresql://" in finding.hint
    facts = report.section("mcp_queue").facts
    assert (facts["pending"], facts["in_flight"], facts["dead"]) == (1, 0, 2)
    (probe,) = report.section("services").findings
    assert probe.severity == "info" and probe.message.startswith("mcp_task_queue:")
    assert SECRET not in report.to_json() and SECRET not in report.to_text()


async def test_postgres_queue_not_created_yet_is_left_alone(
    pg_queue_url: str, pg_schema: str, postgres_url: str
) -> None:
    """No queue in the schema yet: nothing has failed, and the doctor creates no schema."""
    report = await Diagnostics({"mcp_task_queue": pg_queue_url}, sections=["mcp_queue"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "info" and "nothing has failed" in finding.message
    rows = sql(
        postgres_url,
        "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
        (pg_schema,),
    )
    assert rows == []


async def test_postgres_queue_unreachable_is_an_error() -> None:
    """A queue URL nothing answers at: an error naming the connection failure."""
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/test?schema=q"
    report = await Diagnostics({"mcp_task_queue": url}, sections=["mcp_queue"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "error" and "cannot connect" in finding.message
    assert SECRET not in report.to_json()


async def test_queue_url_of_another_kind_is_an_error() -> None:
    """A URL that is neither a file nor postgresql:// is reported, not opened as a file."""
    url = "postgresql+psycopg://postgres@127.0.0.1/test"
    report = await Diagnostics({"mcp_task_queue": url}, sections=["mcp_queue"]).adoctor()
    (finding,) = report.findings
    assert finding.severity == "error" and "postgresql:// URL" in finding.message


async def test_an_index_written_without_the_library_is_loaded_in_a_child(tmp_path: Path) -> None:
    """No manifest (the guide's faiss.write_index): checked in an isolated child, noted as such."""
    faiss = pytest.importorskip("faiss")
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    index = faiss.IndexFlatL2(world.DIMENSION)
    index.add(np.random.default_rng(1).random((10, world.DIMENSION), dtype=np.float32))
    faiss.write_index(index, str(data / "vector_index.faiss"))
    cfg = {"data_dir": str(data), "vector_dimension": world.DIMENSION}
    report = await Diagnostics(cfg, sections=["vector"]).adoctor()
    assert report.ok, problems(report)
    first, *notes = report.findings
    assert "10 vectors" in first.message and "no manifest" in first.message
    assert any("checksum could not be verified" in n.message for n in notes)
    assert report.section("vector").facts["deep"] is True


async def test_cancelled_while_entering_leaves_nothing_running() -> None:
    """A host cancelled in the middle of `async with`'s enter: the monitors it started stop."""
    before = set(asyncio.all_tasks())
    diag = Diagnostics(sections=["monitors"])
    entered = asyncio.Event()

    async def host() -> None:
        async with diag:
            entered.set()

    task = asyncio.create_task(host())
    await asyncio.sleep(0)  # the task runs up to the enter's first tick
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not entered.is_set() and "state=closed" in repr(diag)
    assert set(asyncio.all_tasks()) - before == set()
