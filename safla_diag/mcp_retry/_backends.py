"""
Choosing a queue backend from where the queue lives: a file path (SQLite) or a PostgreSQL URL.

``MCPTaskRecovery("postgresql://...")`` and ``safla-diag mcp queue postgresql://...`` both go through
:func:`store_for`, so every place that takes a queue file also takes a shared queue's URL.
"""

from __future__ import annotations

import os
from typing import Literal

from ._model import QueueView, TaskStore
from ._postgres import PostgresQueueView, PostgresTaskStore, is_postgres_url
from ._sqlite import SQLiteQueue
from ._sqlite_store import SQLiteTaskStore

__all__ = ["inspect_store", "is_postgres_url", "open_store_for", "postgres_store_for", "store_for"]


def postgres_store_for(location: object, *, readonly: bool = False) -> PostgresTaskStore | None:
    """
    A :class:`PostgresTaskStore` when ``location`` is a ``postgresql://`` URL, else None.

    Args:
        location: A file path or a URL (``?schema=NAME`` picks the schema).
        readonly: Inspect only; never create or migrate the schema.

    Raises:
        ValueError: A PostgreSQL URL with a schema name that is not a plain identifier.
    """
    if not is_postgres_url(location):
        return None
    assert isinstance(location, str)
    return PostgresTaskStore(location, readonly=readonly)


def store_for(
    location: str | os.PathLike[str],
    *,
    readonly: bool = False,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
) -> TaskStore:
    """
    The backend for a queue location: PostgreSQL for a ``postgresql://`` URL, else a SQLite file.

    Args:
        location: A queue file or a PostgreSQL URL.
        readonly: Inspect only (never creates anything).
        synchronous: SQLite's durability mode (``"NORMAL"`` or ``"FULL"``); unused for PostgreSQL,
            whose commits follow the server's ``synchronous_commit``.

    Returns:
        The store, not yet opened.
    """
    pg = postgres_store_for(location, readonly=readonly)
    if pg is not None:
        return pg
    return SQLiteTaskStore(location, readonly=readonly, synchronous=synchronous)


async def open_store_for(location: str | os.PathLike[str], *, readonly: bool = True) -> TaskStore:
    """
    Open the queue at ``location`` (read-only by default), for tools such as the CLI.

    Raises:
        QueueStoreError: The queue is missing, corrupt, foreign or unreachable.
    """
    store = store_for(location, readonly=readonly)
    await store.open()
    return store


def inspect_store(location: str | os.PathLike[str]) -> QueueView:
    """
    A blocking, read-only view of the queue at ``location``, for tools without an event loop.

    Nothing is created or changed (a missing file or schema raises QueueStoreError on first use).
    """
    if is_postgres_url(location):
        assert isinstance(location, str)
        return PostgresQueueView(location)
    return SQLiteQueue(location, readonly=True)
