"""Network plumbing shared by the probes: resolve, connect, TLS, and what a failure means."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
from collections.abc import Mapping

import attrs

from .._redact import redact

__all__ = [
    "Outcome",
    "Phase",
    "ProbeFailure",
    "classify_error",
    "connect",
    "hostport",
    "printable",
    "resolve",
    "ssl_context",
]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"})


@attrs.define
class Phase:
    """What a probe is doing right now, so that a timeout can say where it stuck."""

    name: str = "starting"
    addresses: tuple[str, ...] = ()
    dns_s: float | None = None


@attrs.frozen
class Outcome:
    """What a probe found: ok, a status word, one line of detail, and the next step."""

    ok: bool
    status: str
    detail: str
    hint: str | None = None


class ProbeFailure(Exception):
    """Raised inside a probe to stop it with a ready-made outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


def printable(data: bytes, limit: int = 48) -> str:
    """A short, safe rendering of bytes a peer sent, for 'it answered ...' messages."""
    text = data[:limit].decode("latin-1")
    text = "".join(c if c.isprintable() else "." for c in text)
    return redact(text + ("..." if len(data) > limit else ""))


def ssl_context(query: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A verifying client TLS context; ``ssl_cert_reqs=none`` in the URL turns verification off."""
    ctx = ssl.create_default_context()
    reqs = (query or {}).get("ssl_cert_reqs", "").lower()
    if reqs in ("none", "cert_none"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def resolve(host: str, port: int, phase: Phase) -> list[tuple[int, str]]:
    """
    Resolve ``host`` to (family, address) pairs, recording the time taken in ``phase``.

    Raises:
        ProbeFailure: When the name does not resolve, or is not a valid host name.
    """
    try:  # an address literal needs no resolver (and no executor thread)
        literal = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        phase.addresses = (host,)
        return [(int(family), host)]
    loop = asyncio.get_running_loop()
    phase.name = f"resolving {host}"
    t0 = loop.time()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as err:
        raise ProbeFailure(
            Outcome(
                False,
                "invalid",
                f"{host!r} is not a valid host name ({err.__class__.__name__}: {err})",
                "fix the host in the URL",
            )
        ) from err
    except socket.gaierror as err:
        raise ProbeFailure(
            Outcome(
                False,
                "dns_failed",
                f"name {host!r} does not resolve ({err.strerror or err})",
                "check the host name, DNS and /etc/hosts; the service itself was not reached",
            )
        ) from err
    phase.dns_s = loop.time() - t0
    seen: list[tuple[int, str]] = []
    for family, _t, _p, _c, sockaddr in infos:
        pair = (int(family), str(sockaddr[0]))
        if pair not in seen:
            seen.append(pair)
    phase.addresses = tuple(a for _, a in seen)
    return seen


async def connect(
    host: str,
    port: int,
    phase: Phase,
    *,
    tls: ssl.SSLContext | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """
    Resolve, then connect to each address in turn (and do the TLS handshake when asked).

    Name resolution failures and connection failures are different outcomes: ``dns_failed`` says
    the name does not resolve, ``refused`` that nothing listens on the port.

    Raises:
        ProbeFailure: With the classified outcome when no address accepts the connection.
    """
    addresses = await resolve(host, port, phase)
    last: BaseException | None = None
    for _family, address in addresses:
        phase.name = f"connecting to {hostport(address, port)}"
        try:
            reader, writer = await asyncio.open_connection(address, port)
        except OSError as err:
            last = err
            continue
        if tls is not None:
            phase.name = f"TLS handshake with {hostport(address, port)}"
            try:
                await writer.start_tls(tls, server_hostname=host)
            except (ssl.SSLError, ssl.CertificateError, OSError, asyncio.IncompleteReadError):
                writer.close()
                raise
        return reader, writer
    assert last is not None
    raise last


def hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# errno -> (status, message with {where} and {why}, next step), for the OSErrors a probe meets.
_ERRNO_OUTCOMES: dict[int, tuple[str, str, str]] = {
    code: outcome
    for codes, outcome in (
        (
            (errno.ENETUNREACH, errno.EHOSTUNREACH),
            (
                "unreachable",
                "{where} is unreachable ({why})",
                "check routes, firewalls and security groups between here and the host",
            ),
        ),
        (
            (errno.ENOENT,),
            ("refused", "socket {where} does not exist", "start the service or fix the path"),
        ),
        (
            (errno.EACCES, errno.EPERM),
            (
                "error",
                "permission denied connecting to {where}",
                "check file permissions of the socket, or firewall rules",
            ),
        ),
    )
    for code in codes
}


def classify_error(err: BaseException, where: str, phase: Phase) -> Outcome:
    """
    Turn an exception a probe met into an outcome with the next step.

    Args:
        err: The exception.
        where: ``host:port`` (or the socket path) for messages.
        phase: What the probe was doing.
    """
    if isinstance(err, ProbeFailure):
        return err.outcome
    if isinstance(err, ssl.SSLCertVerificationError):
        return Outcome(
            False,
            "tls",
            f"TLS certificate of {where} rejected ({err.verify_message or err.reason})",
            "install the CA certificate, fix the host name, or add ssl_cert_reqs=none for a test",
        )
    if isinstance(err, ssl.SSLError):
        return Outcome(
            False,
            "tls",
            f"TLS handshake with {where} failed ({err.reason or err})",
            "check that the port speaks TLS (rediss:// and https:// need a TLS listener)",
        )
    if isinstance(err, asyncio.LimitOverrunError | ValueError):
        # StreamReader.readline: a "line" longer than the reader's 64 KiB limit.
        return Outcome(
            False,
            "protocol",
            f"{where} sent more than a probe reads without the line end its protocol needs",
            "the port may belong to another service; check the port in the URL",
        )
    if isinstance(err, ConnectionRefusedError):
        return Outcome(
            False,
            "refused",
            f"connection refused at {where}: nothing listens there",
            "start the service, or fix the host/port in the URL",
        )
    if isinstance(err, asyncio.IncompleteReadError | ConnectionResetError | BrokenPipeError):
        how = "reset the connection" if isinstance(err, ConnectionResetError) else "hung up"
        return Outcome(
            False,
            "reset",
            f"{where} {how} while {phase.name}",
            "the port may belong to another service, a proxy, or need TLS; check the service log",
        )
    if isinstance(err, OSError) and (known := _ERRNO_OUTCOMES.get(err.errno or 0)) is not None:
        status, message, hint = known
        return Outcome(False, status, message.format(where=where, why=err.strerror), hint)
    if isinstance(err, UnicodeError):
        return Outcome(
            False, "invalid", f"invalid host name ({err})", "fix the host in the URL (IDNA)"
        )
    text = str(err) or err.__class__.__name__
    return Outcome(
        False, "error", f"{err.__class__.__name__} while {phase.name}: {redact(text)[:160]}"
    )


def is_local(host: str | None) -> bool:
    """True for loopback names and addresses, where a port holder can be looked up."""
    if not host:
        return False
    return host.lower() in LOOPBACK_NAMES or host.startswith("127.")
