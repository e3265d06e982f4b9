"""Helpers for the PostgreSQL backend's tests: one schema per test, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest


def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def sql(url: str, query: str, params: object = None) -> list[tuple[object, ...]]:
    """Run one statement on its own connection and return its rows (empty when it has none)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name for this test (created by the store under test), dropped afterwards."""
    schema = "t_" + uuid.uuid4().hex[:12]
    yield schema
    drop_schema(postgres_url, schema)


@pytest.fixture
def pg_queue_url(postgres_url: str, pg_schema: str) -> str:
    """The URL of a queue in this test's own schema."""
    return f"{postgres_url}?schema={pg_schema}"
