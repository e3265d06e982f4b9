"""The redis probe: RESP ``PING``, ``AUTH`` when the URL has a password, TLS for ``rediss://``."""

from __future__ import annotations

import asyncio

from ._budget import READ_BUDGET, oversized
from ._net import Outcome, Phase, ProbeFailure, connect, printable, ssl_context
from ._targets import Target

__all__ = ["probe_redis"]

_NOT_REDIS = "a Redis PING answers in a few bytes: check that the port in redis_url is Redis"


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for p in parts:
        b = p.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def _reply(reader: asyncio.StreamReader, phase: Phase, what: str) -> bytes:
    phase.name = f"waiting for the reply to {what}"
    line = await reader.readline()
    if not line:
        raise asyncio.IncompleteReadError(b"", None)
    if line[:1] not in (b"+", b"-", b":", b"$", b"*", b"_", b"%"):
        raise ProbeFailure(
            Outcome(
                False,
                "protocol",
                f"not a Redis server: it answered {printable(line)!r}",
                "the port belongs to another service; check the port in redis_url",
            )
        )
    if line[:1] == b"$":  # a bulk string: consume its body too, when it is of a sane size
        digits = line[1:].strip()
        if not digits.lstrip(b"-").isdigit() or len(digits) > 18:
            raise oversized(
                f"a bulk reply announced as {printable(digits, 24)!r}", 10**18, _NOT_REDIS
            )
        size = int(digits)
        if size > READ_BUDGET:
            raise oversized("a bulk reply", size, _NOT_REDIS)
        if size >= 0:
            await reader.readexactly(size + 2)
    return line.rstrip(b"\r\n")


def _auth_failed(reply: bytes) -> Outcome:
    text = printable(reply[1:], 120)
    return Outcome(
        False,
        "auth_failed",
        f"reachable, authentication failed ({text})",
        "check the password (and user) in redis_url against the server's requirepass/ACL",
    )


def _db_index(target: Target) -> int | None:
    raw = target.query.get("db") or target.path.strip("/")
    if target.scheme == "unix":
        raw = target.query.get("db", "")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProbeFailure(
            Outcome(False, "invalid", f"database index {raw!r} is not a number", "use /0../15")
        ) from None


async def probe_redis(target: Target, phase: Phase) -> Outcome:
    """
    PING a Redis server, authenticating first when the URL carries a password.

    Returns:
        ``ok`` on ``+PONG``; ``auth_failed`` on NOAUTH / WRONGPASS (reachable, but the
        credentials are wrong or missing); ``rejecting`` while it loads its dataset;
        ``protocol`` when the peer is not Redis.
    """
    db = _db_index(target)
    if target.scheme == "unix":
        phase.name = f"connecting to {target.path}"
        reader, writer = await asyncio.open_unix_connection(target.path)
    else:
        assert target.host is not None and target.port is not None
        tls = ssl_context(target.query) if target.scheme == "rediss" else None
        reader, writer = await connect(target.host, target.port, phase, tls=tls)
    try:
        notes: list[str] = []
        if target.password is not None:
            args = ["AUTH", target.password]
            if target.username:
                args.insert(1, target.username)
            writer.write(_command(*args))
            reply = await _reply(reader, phase, "AUTH")
            upper = reply.upper()
            if upper.startswith((b"-WRONGPASS", b"-NOAUTH", b"-ERR INVALID PASSWORD")):
                return _auth_failed(reply)
            if upper.startswith(b"-ERR") and b"PASSWORD" in upper:
                # "AUTH called without any password configured": it works, but the URL is wrong.
                notes.append("the URL has a password but the server requires none")
            elif reply.startswith(b"-"):
                return _auth_failed(reply)
        if db:
            writer.write(_command("SELECT", str(db)))
            reply = await _reply(reader, phase, "SELECT")
            if reply.upper().startswith((b"-NOAUTH", b"-WRONGPASS")):
                return _auth_failed(reply)
            if reply.startswith(b"-"):
                return Outcome(
                    False,
                    "not_found",
                    f"database {db} cannot be selected ({printable(reply[1:], 80)})",
                    "use a database index below the server's 'databases' setting",
                )
        writer.write(_command("PING"))
        await writer.drain()
        reply = await _reply(reader, phase, "PING")
        upper = reply.upper()
        if upper == b"+PONG" or upper.startswith(b"$"):
            detail = "PONG" + (f" ({'; '.join(notes)})" if notes else "")
            return Outcome(True, "ok", detail)
        if upper.startswith((b"-NOAUTH", b"-WRONGPASS")):
            out = _auth_failed(reply)
            if target.password is None:
                return Outcome(
                    False,
                    "auth_failed",
                    "reachable, authentication required (NOAUTH) and the URL has no password",
                    "put the password in redis_url: redis://:PASSWORD@host:6379/0",
                )
            return out
        if upper.startswith(b"-LOADING"):
            return Outcome(
                False,
                "rejecting",
                "reachable, still loading its dataset into memory",
                "wait for the load to finish; check the server log for progress",
            )
        if upper.startswith(b"-DENIED"):
            return Outcome(
                False,
                "rejecting",
                "reachable, refuses clients in protected mode",
                "set a password or bind Redis to the right interface (protected-mode)",
            )
        return Outcome(False, "error", f"unexpected reply to PING: {printable(reply, 120)!r}", None)
    finally:
        writer.close()
