"""Generated logs whose true counts, templates and time windows are known."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from safla_diag import mine_templates

START = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC)

# level -> [(format string, expected template)]
MESSAGES: dict[str, list[tuple[str, str]]] = {
    "ERROR": [
        ("failed to connect to {ip}:5432 after {n} ms", "failed to connect to <IP> after <NUM> ms"),
        (
            "task {uuid} failed: server {q} returned {n}",
            "task <UUID> failed: server <STR> returned <NUM>",
        ),
        ("index {path} corrupted (checksum {hex})", "index <PATH> corrupted (checksum <HEX>)"),
    ],
    "CRITICAL": [
        ("memory at {n}% of {n} MB, giving up", "memory at <NUM>% of <NUM> MB, giving up")
    ],
    "WARNING": [("slow query took {n} ms", "slow query took <NUM> ms")],
    "INFO": [
        ("request {uuid} handled in {n} ms", "request <UUID> handled in <NUM> ms"),
        ("connected to redis at {ip6}", "connected to redis at <IP>"),
    ],
    "DEBUG": [("cache hit key=user:{n}", "cache hit key=user:<NUM>")],
}
WEIGHTS = {"DEBUG": 20, "INFO": 60, "WARNING": 10, "ERROR": 8, "CRITICAL": 2}
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/srv/safla/core.py", line 42, in run',
    "    raise ConnectionError('boom')",
    "ConnectionError: boom",
]


@dataclass
class Truth:
    """What a generated log contains."""

    counts: Counter[str] = field(default_factory=Counter)
    templates: Counter[tuple[str, str]] = field(default_factory=Counter)
    records: list[tuple[datetime, str, str]] = field(default_factory=list)  # (ts, level, message)
    shapes: list[str] = field(default_factory=list)  # the message shape of each record
    lines: int = 0
    grep: Counter[str] = field(default_factory=Counter)  # substring -> lines containing it

    def counts_since(self, since: datetime) -> Counter[str]:
        return Counter(level for ts, level, _ in self.records if ts >= since)

    def templates_since(
        self, since: datetime | None = None, chosen: tuple[str, ...] = ("ERROR", "CRITICAL")
    ) -> Counter[tuple[str, str]]:
        """(level, template) -> records, the templates as mine_templates groups the messages."""
        picked = [
            (lv, msg)
            for ts, lv, msg in self.records
            if lv in chosen and (since is None or ts >= since)
        ]
        templates = mine_templates([msg for _, msg in picked])
        return Counter((lv, t) for (lv, _), t in zip(picked, templates, strict=True))

    def template_times(self) -> dict[tuple[str, str], list[datetime]]:
        picked = [(ts, lv, msg) for ts, lv, msg in self.records if lv in ("ERROR", "CRITICAL")]
        templates = mine_templates([msg for _, _, msg in picked])
        out: dict[tuple[str, str], list[datetime]] = {}
        for (ts, lv, _), t in zip(picked, templates, strict=True):
            out.setdefault((lv, t), []).append(ts)
        return out


def _fill(fmt: str, rng: random.Random) -> str:
    return fmt.format(
        ip=".".join(str(rng.randint(0, 255)) for _ in range(4)),
        ip6=f"2001:db8::{rng.randint(1, 0xFFFF):x}",
        n=rng.randint(0, 10 ** rng.randint(1, 7)),
        uuid=uuid.UUID(int=rng.getrandbits(128)),
        q=f"'{rng.choice(['alpha', 'beta', 'gamma delta'])}'",
        path=f"/var/lib/safla/idx_{rng.randint(0, 999)}.faiss",
        hex=f"{rng.getrandbits(28):07x}f",
    )


def _line(kind: str, ts: datetime, level: str, msg: str, rng: random.Random) -> str:
    ms = ts.microsecond // 1000
    if kind == "logging":
        return f"{ts:%Y-%m-%d %H:%M:%S},{ms:03d} {level} safla.core: {msg}"
    if kind == "named":
        name = rng.choice(["safla", "safla.vector.index", "mcp", "db.pool.worker"])
        return f"{ts:%Y-%m-%d %H:%M:%S},{ms:03d} - {name} - {level} - {msg}"
    if kind == "named_many":  # a dozen logger names: the level moves too much for the fast path
        name = "mod" + "x" * rng.randint(0, 11)
        return f"{ts:%Y-%m-%d %H:%M:%S},{ms:03d} - {name} - {level} - {msg}"
    if kind == "structlog":  # the message first: the level's offset varies with it
        return json.dumps({"event": msg, "level": level.lower(), "timestamp": ts.isoformat()})
    if kind == "iso":
        return f"{ts:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z [{level}] {msg}"
    if kind == "syslog":
        return (
            f"{ts:%b} {ts.day:2d} {ts:%H:%M:%S} host safla[{rng.randint(100, 999)}]: {level} {msg}"
        )
    if kind == "json":
        keys = rng.choice(
            [
                ("timestamp", "level", "message"),
                ("time", "levelname", "msg"),
                ("@timestamp", "level", "message"),
            ]
        )
        obj = {keys[0]: ts.isoformat(), keys[1]: level.lower() if rng.random() < 0.3 else level}
        obj[keys[2]] = msg
        obj["logger"] = "safla.core"
        return json.dumps(obj)
    raise ValueError(kind)


def message_of(kind: str, msg: str) -> str:
    """The message analyze_logs reads from a line of this kind (the logger leads in one)."""
    return f"safla.core: {msg}" if kind == "logging" else msg


def make_log(
    path: Path,
    kind: str = "logging",
    n: int = 2000,
    *,
    seed: int = 1,
    step_s: float = 1.0,
    traceback_every: int = 0,
    start: datetime = START,
) -> Truth:
    """Write ``n`` records of one format to ``path``; return the truth about them."""
    rng = random.Random(seed)
    truth = Truth()
    levels = list(WEIGHTS)
    weights = [WEIGHTS[lv] for lv in levels]
    out: list[str] = []
    for i in range(n):
        ts = start + timedelta(seconds=i * step_s)
        level = rng.choices(levels, weights)[0]
        fmt, tmpl = rng.choice(MESSAGES[level])
        msg = _fill(fmt, rng)
        out.append(_line(kind, ts, level, msg, rng))
        truth.counts[level] += 1
        truth.records.append((ts, level, message_of(kind, msg)))
        truth.shapes.append(tmpl)
        if traceback_every and level == "ERROR" and i % traceback_every == 0 and kind != "json":
            out.extend(TRACEBACK)
    truth.templates = truth.templates_since()
    truth.lines = len(out)
    for word in ("slow", "Traceback", "redis"):
        truth.grep[word] = sum(1 for line in out if word in line)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return truth
