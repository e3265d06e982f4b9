"""Peers that lie about sizes, drip bytes, or come by the thousand: bounded memory, no false failures."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from safla_diag import acheck_external_services
from safla_diag.checks._http import _Lines

from ..conftest import cli_env
from ._servers import serve

pytestmark = pytest.mark.anyio

_ENDLESS = b"x" * 65536


async def _endless(writer: asyncio.StreamWriter, first: bytes) -> None:
    """Send ``first``, then bytes until the client goes away."""
    writer.write(first)
    while True:
        writer.write(_ENDLESS)
        await writer.drain()


async def huge_bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 'Redis' that announces a 100 GB bulk reply to PING and then sends bytes forever."""
    await reader.read(1024)
    await _endless(writer, b"$100000000000\r\n")


async def _drain_request(reader: asyncio.StreamReader) -> None:
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)


async def huge_chunk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An 'MCP server' whose answer is a chunk of FFFFFFFFFF bytes, then endless bytes."""
    await _drain_request(reader)
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFF\r\n"
    )
    await _endless(writer, head)


async def _child(script: str, *, limits: str) -> dict[str, Any]:
    """Run ``script`` in a child Python under resource limits; it prints one JSON document."""
    code = f"import resource\n{limits}\n{script}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    doc: dict[str, Any] = json.loads(out)
    return doc


_PROBE = """
import json
from safla_diag import check_external_services
report = check_external_services({targets!r}, timeout={timeout})
print(json.dumps(report.to_dict()))
"""
# 768 MiB of address space: a Python with asyncio needs far less; the old probes needed gigabytes.
_MEMORY = "resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))"


@pytest.mark.parametrize(
    ("handler", "scheme", "words"),
    [(huge_bulk, "redis", "bulk reply"), (huge_chunk, "http", "HTTP chunk")],
)
async def test_announced_sizes_are_protocol_errors_in_bounded_memory(
    handler: Any, scheme: str, words: str
) -> None:
    """A 100 GB bulk reply or a FFFFFFFFFF chunk, then endless bytes: 'protocol', under 768 MiB."""
    async with serve(handler) as port:
        targets: object = [f"redis://127.0.0.1:{port}/0"]
        if scheme == "http":  # an MCP server of the configuration, probed as one
            targets = {"mcp_servers": [f"http://127.0.0.1:{port}/mcp"]}
        doc = await _child(_PROBE.format(targets=targets, timeout=5), limits=_MEMORY)
    (result,) = doc["results"]
    assert result["status"] == "protocol", result
    assert words in result["detail"] and "more than a probe reads" in result["detail"]


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An SSE answer sent one byte at a time, never the awaited answer."""
    await _drain_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    event = b'data: {"jsonrpc": "2.0", "method": "notifications/progress"}\n\n'
    while True:
        for i in range(len(event)):
            writer.write(event[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)


async def test_a_dripping_sse_stream_times_out_beside_a_healthy_probe() -> None:
    """
    One-byte chunks never make the probe ok: a timeout, or a protocol error once the stream fills
    the read budget (which comes first depends on the machine's speed); a healthy peer probed in
    the same call is ok.
    """

    async def quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async with serve(drip) as slow, serve(quiet) as fine:
        async with asyncio.timeout(60):  # a hang guard, not a timing assertion
            report = await acheck_external_services(
                {
                    "mcp_servers": [{"name": "drip", "url": f"http://127.0.0.1:{slow}/mcp"}],
                    "services": {"tcp": f"tcp://127.0.0.1:{fine}"},
                },
                timeout=1,
            )
    drip_result = report["mcp:drip"]
    assert not drip_result.ok
    assert drip_result.status in {"timeout", "protocol"}, drip_result
    if drip_result.status == "protocol":
        assert "without the awaited message" in drip_result.detail
    assert report["tcp"].ok


def test_stream_lines_are_checked_once_each() -> None:
    """Fed one byte at a time, the SSE check sees every complete line exactly once (linear work)."""
    seen: list[bytes] = []

    def done(fresh: bytes) -> bool:
        seen.append(fresh)
        return False

    lines = _Lines(done)
    body = bytearray()
    stream = b"event: x\ndata: 1\n\ndata: 2\n"
    for byte in stream:
        body.append(byte)
        lines(body)
    assert b"".join(seen) == stream
    assert sum(len(s) for s in seen) == len(stream)


async def test_a_thousand_targets_under_ulimit_256() -> None:
    """1 000 targets with 256 file descriptors: probes wait their turn; none fails for want of one."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async with serve(accept) as port:
        urls = [f"tcp://127.0.0.1:{port}"] * 1000
        doc = await _child(
            _PROBE.format(targets=urls, timeout=20),
            limits="resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))",
        )
    statuses = [r["status"] for r in doc["results"]]
    assert len(statuses) == 1000
    assert not [r["detail"] for r in doc["results"] if "open files" in r["detail"]]
    assert statuses.count("ok") == 1000, {s: statuses.count(s) for s in set(statuses)}
