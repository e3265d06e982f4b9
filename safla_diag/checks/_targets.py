"""Turn what the caller gives ``check_external_services`` into a list of probe targets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import attrs

from .._redact import redact

__all__ = ["DEFAULT_PORTS", "Target", "TargetError", "parse_targets"]

# scheme -> probe kind
_KINDS = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "postgresql": "postgres",
    "postgres": "postgres",
    "http": "http",
    "https": "http",
    "tcp": "tcp",
    "dns": "dns",
    "mysql": "tcp",
    "mcp": "mcp",
}

DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "postgresql": 5432,
    "postgres": 5432,
    "http": 80,
    "https": 443,
    "mysql": 3306,
}

# Configuration keys that name a service, and the name each one gets in the report.
_CONFIG_URL_KEYS = {"database_url": "database", "redis_url": "redis"}
_CONFIG_KEYS = frozenset({*_CONFIG_URL_KEYS, "mcp_servers", "services", "mcp_task_queue"})


class TargetError(ValueError):
    """A target that cannot be probed: the message says why (already redacted)."""


@attrs.frozen(kw_only=True)
class Target:
    """One thing to probe: a service name, its probe kind and the parsed URL."""

    name: str
    url: str = attrs.field(repr=redact)
    kind: str
    scheme: str
    host: str | None
    port: int | None
    username: str | None = attrs.field(default=None, repr=False)
    password: str | None = attrs.field(default=None, repr=False)
    path: str = ""
    query: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    # Set when the URL cannot be probed; the orchestrator turns it into an "invalid" result.
    error: str | None = None

    @property
    def display(self) -> str:
        """The URL with its secrets masked, for reports."""
        return redact(self.url)


def _base_scheme(scheme: str) -> str:
    # postgresql+psycopg -> postgresql
    return scheme.lower().partition("+")[0]


def make_target(name: str, url: object, *, kind: str | None = None) -> Target:
    """
    Parse one URL into a Target; never raises (a bad URL gives a Target with ``error`` set).

    Args:
        name: The service name shown in the report.
        url: The URL; anything else is reported as invalid.
        kind: Force a probe kind (``"mcp"`` for MCP servers); by default the scheme decides.

    Returns:
        The target.
    """
    if not isinstance(url, str) or not url.strip():
        return Target(
            name=name,
            url=str(url)[:200],
            kind="invalid",
            scheme="",
            host=None,
            port=None,
            error=f"not a URL: {type(url).__name__} {redact(str(url))[:80]!r}",
        )
    url = url.strip()
    if "://" not in url:
        return _bad(name, url, "no scheme (expected e.g. redis://host:6379)")
    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as err:
        return _bad(name, url, f"malformed URL ({err})")
    if _junk_after_bracket(parts.netloc):
        return _bad(name, url, "malformed URL (text after the IPv6 address's ']')")
    scheme = _base_scheme(parts.scheme)
    probe = kind or _KINDS.get(scheme)
    if probe is None:
        return _bad(name, url, f"unsupported scheme {parts.scheme!r}", scheme=scheme)
    if probe == "mcp" and scheme not in ("http", "https"):
        if scheme in ("ws", "wss"):
            probe = "tcp"
        else:
            return _bad(name, url, f"MCP servers are probed over http or https, not {scheme!r}")
    try:
        port = parts.port
    except ValueError as err:
        return _bad(name, url, f"bad port ({err})", scheme=scheme)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    host = parts.hostname
    if scheme == "unix":
        if not parts.path:
            return _bad(name, url, "unix URL needs a socket path", scheme=scheme)
    elif probe == "postgres" and not host and query.get("host", "").startswith("/"):
        pass  # a unix socket folder, libpq style: postgresql:///db?host=/var/run/postgresql
    elif not host:
        return _bad(name, url, "no host in URL", scheme=scheme)
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    if port is None and probe == "tcp":
        return _bad(name, url, "tcp URL needs a port (tcp://host:port)", scheme=scheme)
    if port == 0:
        return _bad(name, url, "port 0 is not a service port", scheme=scheme)
    return Target(
        name=name,
        url=url,
        kind=probe,
        scheme=scheme,
        host=host,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=parts.path,
        query=query,
    )


def _junk_after_bracket(netloc: str) -> bool:
    # urlsplit accepts "http://[::1]x/" and then connects to [::1]:80; after ']' only ":port" fits.
    host = netloc.rpartition("@")[2]
    return "]" in host and host.rpartition("]")[2][:1] not in ("", ":")


def _bad(name: str, url: str, why: str, *, scheme: str = "") -> Target:
    return Target(
        name=name,
        url=url,
        kind="invalid",
        scheme=scheme,
        host=None,
        port=None,
        error=why,
    )


def _unique(name: str, seen: set[str]) -> str:
    out, i = name, 2
    while out in seen:
        out, i = f"{name}#{i}", i + 1
    seen.add(out)
    return out


def _mcp_entries(servers: object) -> Iterable[tuple[str, object]]:
    if isinstance(servers, str):
        servers = [s for s in servers.split(",") if s.strip()]
    if not isinstance(servers, list | tuple):
        yield "mcp", servers
        return
    for i, entry in enumerate(servers):
        if isinstance(entry, Mapping):
            label = entry.get("name") or f"{i + 1}"
            yield f"mcp:{label}", entry.get("url")
        else:
            yield f"mcp:{i + 1}", entry


def _as_mapping(targets: object) -> Mapping[str, Any] | None:
    if isinstance(targets, Mapping):
        return targets
    to_dict = getattr(targets, "to_dict", None)
    if callable(to_dict):  # a SaflaConfig: its unredacted values are needed to connect
        try:
            out = to_dict(redact=False)
        except TypeError:
            out = to_dict()
        if isinstance(out, Mapping):
            return out
    return None


def is_config(m: Mapping[str, Any]) -> bool:
    """Tell a SAFLA configuration mapping from a plain ``{name: url}`` mapping."""
    return any(k in _CONFIG_KEYS for k in m)


def parse_targets(targets: object) -> list[Target]:
    """
    Build the probe targets from a configuration, a ``{name: url}`` mapping or a list of URLs.

    The one target model of the library: the API, the doctor and the CLI all probe what this
    returns, so an MCP server is probed as one everywhere. A list may also hold Targets already
    parsed (kept as they are, renamed ``name#2`` when a name repeats).

    From a configuration: ``database_url`` (as ``database``), ``redis_url`` (as ``redis``), each
    of ``mcp_servers`` (as ``mcp:<name>``), ``mcp_task_queue`` when it is a PostgreSQL URL, and
    every entry of ``services``.

    Args:
        targets: What the caller passed.

    Returns:
        The targets, bad ones included with ``error`` set.

    Raises:
        TypeError: When ``targets`` is neither a mapping, a config object nor a list of URLs.
    """
    seen: set[str] = set()
    out: list[Target] = []
    m = _as_mapping(targets)
    if m is None:
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise TypeError(
                "targets must be a configuration mapping, a {name: url} mapping or a list of "
                f"URLs, not {type(targets).__name__}"
            )
        for url in targets:
            if isinstance(url, Target):  # already parsed (the CLI merges config and URLs)
                out.append(attrs.evolve(url, name=_unique(url.name, seen)))
                continue
            scheme = url.partition(":")[0].lower() if isinstance(url, str) else "target"
            out.append(make_target(_unique(scheme or "target", seen), url))
        return out
    if not is_config(m):
        for name, url in m.items():
            out.append(make_target(_unique(str(name), seen), url))
        return out
    for key, name in _CONFIG_URL_KEYS.items():
        if m.get(key) is not None:
            out.append(make_target(_unique(name, seen), m[key]))
    if m.get("mcp_servers") is not None:
        for name, url in _mcp_entries(m["mcp_servers"]):
            out.append(make_target(_unique(name, seen), url, kind="mcp"))
    queue = m.get("mcp_task_queue")
    if isinstance(queue, str) and _base_scheme(queue.partition(":")[0]) in (
        "postgresql",
        "postgres",
    ):
        out.append(make_target(_unique("mcp_task_queue", seen), queue))
    services = m.get("services")
    if isinstance(services, Mapping):
        for name, url in services.items():
            out.append(make_target(_unique(str(name), seen), url))
    elif services is not None:
        out.append(make_target(_unique("services", seen), services))
    return out
