"""
The postgresql probe: the protocol's startup handshake, classified like ``pg_isready``.

No driver is needed: a StartupMessage goes out and the first answer says it all: an
authentication request means the server accepts connections; an ErrorResponse carries an SQLSTATE
(57P03 starting up, 53300 too many clients, 3D000 no such database, 28xxx authentication). With
trust authentication the probe then runs ``SELECT 1`` itself; when the server asks for a password
and psycopg (the ``postgres`` extra) is installed, psycopg runs it with the URL's credentials.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import ssl
import struct
import time
from typing import Any

from .._lazy import import_optional
from .._redact import redact
from ._budget import READ_BUDGET, oversized
from ._net import Outcome, Phase, ProbeFailure, connect, printable, ssl_context
from ._targets import Target

__all__ = ["classify_sqlstate", "probe_postgres"]

log = logging.getLogger("safla_diag.checks")

_PROTOCOL_3 = 196608
_SSL_REQUEST = 80877103

_AUTH_NAMES = {3: "password", 5: "md5", 10: "SCRAM", 7: "GSSAPI", 9: "SSPI", 2: "Kerberos"}


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in the environment (containers)
        return "postgres"


def _names(target: Target) -> tuple[str, str]:
    user = target.username or target.query.get("user") or _default_user()
    db = target.path.lstrip("/") or target.query.get("dbname") or user
    return user, db


def classify_sqlstate(code: str, message: str, user: str, db: str) -> Outcome:
    """
    The outcome for an ErrorResponse received during startup.

    Args:
        code: The SQLSTATE.
        message: The server's message (redacted before use).
        user: The user the probe connected as.
        db: The database it asked for.
    """
    msg = redact(message)[:200]
    if code == "57P03":
        return Outcome(
            False,
            "rejecting",
            f"rejecting connections: {msg}",
            "the server is starting up, shutting down or in recovery; wait, then check its log",
        )
    if code == "53300":
        return Outcome(
            False,
            "rejecting",
            f"rejecting connections: too many clients ({msg})",
            "raise max_connections or put a pooler (pgbouncer) in front; look for leaked connections",
        )
    if code == "3D000":
        return Outcome(
            False,
            "not_found",
            f"accepting connections, but database {db!r} does not exist",
            f"create it (createdb -U postgres {db}) or fix the database name in database_url",
        )
    if code == "28P01":
        return Outcome(
            False,
            "auth_failed",
            f"reachable, password authentication failed for user {user!r}",
            "fix the password in database_url, or reset it: ALTER USER ... PASSWORD '...'",
        )
    if code.startswith("28"):
        return Outcome(
            False,
            "auth_failed",
            f"reachable, authentication rejected: {msg}",
            "check the user in database_url and the server's pg_hba.conf entry for this host",
        )
    if code == "08P01":
        return Outcome(False, "protocol", f"protocol violation: {msg}", None)
    return Outcome(False, "error", f"server error {code}: {msg}", None)


def _fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


async def _message(reader: asyncio.StreamReader, phase: Phase) -> tuple[bytes, bytes]:
    head = await reader.readexactly(1)
    if head not in b"RENSKZvCDTIt123nsG":
        rest = await _read_some(reader)
        raise ProbeFailure(
            Outcome(
                False,
                "protocol",
                f"not a PostgreSQL server: it answered {printable(head + rest)!r}",
                "the port belongs to another service; check the port in database_url",
            )
        )
    raw = await reader.readexactly(4)
    (size,) = struct.unpack("!i", raw)
    if size < 4 or size > READ_BUDGET:
        rest = await _read_some(reader)
        raise ProbeFailure(
            Outcome(
                False,
                "protocol",
                f"not a PostgreSQL server: it answered {printable(head + raw + rest)!r}",
                "the port belongs to another service; check the port in database_url",
            )
        )
    return head, await reader.readexactly(size - 4)


async def _read_some(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(64), 0.2)
    except (TimeoutError, OSError):
        return b""


def _startup(user: str, db: str) -> bytes:
    params = b"".join(
        k + b"\0" + v.encode() + b"\0"
        for k, v in ((b"user", user), (b"database", db), (b"application_name", "safla-diag"))
    )
    body = struct.pack("!i", _PROTOCOL_3) + params + b"\0"
    return struct.pack("!i", len(body) + 4) + body


async def _open(target: Target, phase: Phase) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert target.port is not None
    if not target.host:
        folder = target.query.get("host", "/var/run/postgresql")
        path = f"{folder}/.s.PGSQL.{target.port}"
        phase.name = f"connecting to {path}"
        return await asyncio.open_unix_connection(path)
    sslmode = target.query.get("sslmode", "prefer").lower()
    reader, writer = await connect(target.host, target.port, phase)
    if sslmode in ("require", "verify-ca", "verify-full"):
        phase.name = "negotiating SSL"
        writer.write(struct.pack("!ii", 8, _SSL_REQUEST))
        await writer.drain()
        answer = await reader.readexactly(1)
        if answer != b"S":
            writer.close()
            raise ProbeFailure(
                Outcome(
                    False,
                    "tls",
                    f"the server does not accept SSL, and sslmode={sslmode}",
                    "enable ssl on the server, or lower sslmode in database_url",
                )
            )
        ctx = ssl_context()
        if sslmode == "require":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif sslmode == "verify-ca":
            ctx.check_hostname = False
        phase.name = "TLS handshake"
        await writer.start_tls(ctx, server_hostname=target.host)
    return reader, writer


async def probe_postgres(target: Target, phase: Phase, *, use_driver: bool = True) -> Outcome:
    """
    Classify a PostgreSQL server the way ``pg_isready`` does, then try ``SELECT 1`` when possible.

    Returns:
        ``ok`` when it accepts connections (with the ``SELECT 1`` latency when it ran);
        ``rejecting``, ``not_found``, ``auth_failed`` or ``protocol`` otherwise.
    """
    user, db = _names(target)
    reader, writer = await _open(target, phase)
    try:
        phase.name = "sending the startup message"
        writer.write(_startup(user, db))
        await writer.drain()
        phase.name = "waiting for the startup answer"
        # NoticeResponse or NegotiateProtocolVersion may come first: skipped.
        kind, payload = await _until(reader, phase, b"R")
        if kind == b"E":
            return _classify(payload, user, db)
        (code,) = struct.unpack("!i", payload[:4])
        if code == 0:
            return await _after_trust(reader, writer, phase, user, db)
        method = _AUTH_NAMES.get(code, f"method {code}")
    finally:
        writer.close()
    # The server wants credentials: only a driver can tell whether ours are right.
    if use_driver:
        try:
            psycopg = import_optional("psycopg")
        except Exception:
            psycopg = None
        if psycopg is not None:
            return await _select_with_psycopg(psycopg, target, phase, user, db)
    note = (
        "credentials not checked: install safla-diag[postgres] to run SELECT 1"
        if target.password is not None
        else "the URL has no password"
    )
    return Outcome(True, "ok", f"accepting connections ({method} authentication; {note})")


async def _until(reader: asyncio.StreamReader, phase: Phase, wanted: bytes) -> tuple[bytes, bytes]:
    """Read messages until one of kind ``wanted`` or an ErrorResponse (``E``); skip the rest."""
    read = 0
    while True:
        kind, payload = await _message(reader, phase)
        if kind in (wanted, b"E"):
            return kind, payload
        read += 5 + len(payload)
        if read > READ_BUDGET:  # endless small messages: bounded time is not enough
            raise oversized(
                "messages before the answer",
                read,
                "a PostgreSQL server answers in a few hundred bytes: check the port",
            )


def _classify(error_payload: bytes, user: str, db: str) -> Outcome:
    """The finding for an ErrorResponse, by its SQLSTATE."""
    f = _fields(error_payload)
    return classify_sqlstate(f.get("C", ""), f.get("M", ""), user, db)


async def _after_trust(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    phase: Phase,
    user: str,
    db: str,
) -> Outcome:
    phase.name = "waiting for the server to be ready"
    kind, payload = await _until(reader, phase, b"Z")
    if kind == b"E":
        return _classify(payload, user, db)
    phase.name = "running SELECT 1"
    t0 = time.perf_counter()
    writer.write(b"Q" + struct.pack("!i", 4 + 9) + b"SELECT 1\0")
    await writer.drain()
    kind, payload = await _until(reader, phase, b"Z")
    if kind == b"E":
        message = _fields(payload).get("M", "")
        return Outcome(False, "error", f"SELECT 1 failed: {redact(message)}", None)
    took = time.perf_counter() - t0
    writer.write(b"X" + struct.pack("!i", 4))
    return Outcome(True, "ok", f"accepting connections; SELECT 1 in {took * 1000:.1f} ms")


_PSYCOPG_PHRASES = (
    ("password authentication failed", "28P01"),
    ("no password supplied", "28P01"),
    ("does not exist", "3D000"),
    ("too many", "53300"),
    ("starting up", "57P03"),
    ("shutting down", "57P03"),
    ("pg_hba.conf", "28000"),
)


async def _select_with_psycopg(
    psycopg: Any, target: Target, phase: Phase, user: str, db: str
) -> Outcome:
    phase.name = "authenticating with psycopg"
    t0 = time.perf_counter()
    # psycopg wants a plain postgresql:// URL; the +driver suffix is SQLAlchemy's.
    url = "postgresql" + target.url[target.url.index("://") :]
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as err:
        text = str(err)
        code = getattr(err, "sqlstate", None) or next(
            (c for phrase, c in _PSYCOPG_PHRASES if phrase in text), ""
        )
        if code == "3D000" and "role" in text:
            code = "28000"
        return classify_sqlstate(code, text.strip().splitlines()[-1] if text else "", user, db)
    try:
        phase.name = "running SELECT 1"
        t1 = time.perf_counter()
        async with conn.cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchone()
        took = time.perf_counter() - t1
    finally:
        await conn.close()
    log.debug("postgres %s: connected in %.3f s", redact(target.url), t1 - t0)
    return Outcome(True, "ok", f"accepting connections; SELECT 1 in {took * 1000:.1f} ms")
