"""Which local process holds a port: the "address already in use" diagnosis, with psutil."""

from __future__ import annotations

import logging

import attrs

__all__ = ["PortHolder", "describe_holders", "port_holders"]

log = logging.getLogger("safla_diag.checks")


@attrs.frozen(kw_only=True)
class PortHolder:
    """A socket bound to the port, and the process behind it when we may see it."""

    address: str
    port: int
    status: str
    pid: int | None
    name: str | None = None
    username: str | None = None

    def describe(self) -> str:
        """One line: ``python3 (pid 4242, user app) listening on 127.0.0.1:6379``."""
        where = (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else f"{self.address}:{self.port}"
        )
        state = "listening on" if self.status == "LISTEN" else f"{self.status.lower()} on"
        if self.pid is None:
            return f"a process we may not see (run as root to name it) {state} {where}"
        user = f", user {self.username}" if self.username else ""
        return f"{self.name or '?'} (pid {self.pid}{user}) {state} {where}"


def port_holders(port: int, *, listening_only: bool = True) -> list[PortHolder]:
    """
    List the local sockets bound to ``port`` and the processes holding them.

    Blocking (it scans the process table): call it through ``run_in_executor`` from async code.

    Args:
        port: The TCP or UDP port.
        listening_only: Only sockets in LISTEN state (and unconnected UDP ones).

    Returns:
        The holders; empty when the port is free or the system will not tell us
        (some platforms need root to list other users' sockets).
    """
    import psutil  # type: ignore[import-untyped,unused-ignore]

    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError) as err:
        log.debug("cannot list sockets: %s", err)
        return []
    out: list[PortHolder] = []
    for c in conns:
        if not c.laddr or c.laddr.port != port:
            continue
        if listening_only and c.status not in (psutil.CONN_LISTEN, psutil.CONN_NONE):
            continue
        name = user = None
        if c.pid is not None:
            try:
                proc = psutil.Process(c.pid)
                name, user = proc.name(), proc.username()
            except (psutil.Error, OSError):
                pass
        holder = PortHolder(
            address=str(c.laddr.ip),
            port=port,
            status=str(c.status),
            pid=c.pid,
            name=name,
            username=user,
        )
        if holder not in out:
            out.append(holder)
    return out


def describe_holders(port: int) -> str | None:
    """One line naming who holds ``port``, or None when nobody (visible) does."""
    holders = port_holders(port)
    if not holders:
        return None
    return "port held by " + "; ".join(h.describe() for h in holders)
