"""Hypothesis strategies shared by the tests of parsers and validators."""

from __future__ import annotations

from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=200)

json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
"""Arbitrary JSON-like values: what a config file or an API caller may hand us."""

KNOWN_KEYS = (
    "database_url", "redis_url", "vector_dimension", "mcp_servers", "data_dir", "backup_dir",
    "index_file", "mcp_task_queue", "log_paths", "services", "service_timeout",
    "memory_threshold_percent", "memory_critical_percent", "leak_check_interval", "log_level",
    "environment",
)  # fmt: skip

nasty_text = st.one_of(
    st.text(max_size=50),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.just("x" * 20_000),
    st.sampled_from(["", " ", "\x00", "://", "redis://", "http://[::1", "postgresql://h:99999/db",
                     "redis://:pw@", "unix://", "ü://ß", "a" * 300 + "://h"]),
)  # fmt: skip
"""Strings that break naive parsers: empty, huge, unicode, half-URLs."""

weird_scalars = st.one_of(
    json_scalars,
    nasty_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=10),
)
"""Scalars of every type a config value could wrongly be."""

urls = st.builds(
    lambda scheme, user, pw, host, port, path: (
        f"{scheme}://{user}{':' + pw if pw else ''}{'@' if user or pw else ''}{host}"
        f"{':' + str(port) if port else ''}{path}"
    ),
    st.sampled_from(
        ["postgresql", "postgres", "mysql", "redis", "rediss", "http", "https", "tcp", "ftp"]
    ),
    st.sampled_from(["", "user", "u"]),
    st.sampled_from(["", "pw", "p@ss"]),
    st.sampled_from(["localhost", "db.example", "127.0.0.1", "[::1]", ""]),
    st.one_of(st.none(), st.integers(min_value=0, max_value=70000)),
    st.sampled_from(["", "/", "/0", "/db", "/x?token=abc"]),
)
"""URLs, valid and not, of every scheme we know and some we don't."""

config_values = st.one_of(weird_scalars, urls, json_values)

configs = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=20), config_values, max_size=8),
    st.fixed_dictionaries(
        {},
        optional={k: config_values | st.lists(urls | json_values, max_size=4) for k in KNOWN_KEYS},
    ),
)
"""Configurations: garbage, near-misses and mixtures of known and unknown keys."""


def valid_configs() -> st.SearchStrategy[dict[str, object]]:
    """Configurations that must validate."""
    server = st.one_of(
        st.builds(lambda p: f"http://mcp{p}.local:{p}", st.integers(1, 65535)),
        st.builds(
            lambda p: {"name": f"s{p}", "url": f"https://mcp.local:{p}/sse"}, st.integers(1, 65535)
        ),
    )
    return st.fixed_dictionaries(
        {
            "database_url": st.sampled_from(
                ["postgresql://u:pw@db:5432/safla", "postgres://db/x", "mysql://h/db",
                 "postgresql+psycopg://h:1/db"]
            ),
            "redis_url": st.sampled_from(["redis://localhost:6379/0", "rediss://:tok@r:6380",
                                          "unix:///run/redis.sock"]),
            "vector_dimension": st.integers(1, 65536),
            "mcp_servers": st.lists(server, min_size=1, max_size=4, unique_by=lambda s: str(s)).filter(
                lambda xs: len({s if isinstance(s, str) else s["name"] for s in xs}) == len(xs)
            ),
        },
        optional={
            "data_dir": st.just("/var/lib/safla"),
            "service_timeout": st.floats(0.001, 60),
            "memory_threshold_percent": st.floats(0, 50),
            "memory_critical_percent": st.floats(85, 100),
            "log_level": st.sampled_from(["debug", "INFO", "Warning"]),
            "log_paths": st.lists(st.sampled_from(["/var/log/*.log", "app.log"]), max_size=3),
            "services": st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(
                ["redis://h:1", "tcp://h:2", "http://h/health"])),
        },
    )  # fmt: skip


def near_valid_configs() -> st.SearchStrategy[dict[str, object]]:
    """A valid configuration with one or two keys (known or not) set to anything at all."""
    return st.builds(
        lambda base, changes: {**base, **changes},
        valid_configs(),
        st.dictionaries(
            st.sampled_from(KNOWN_KEYS) | st.text(max_size=10),
            config_values | st.lists(config_values, max_size=3),
            min_size=1,
            max_size=2,
        ),
    )
