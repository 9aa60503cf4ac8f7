"""Which store the configuration names: DuckDB at ``storage.path``, or PostgreSQL at ``storage.url``.

Both backends offer the same surface (``connect``, ``transaction``, ``publish_snapshot``, ``engine``);
the CLI, the daemon and ``Store`` get theirs here and never ask which one it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gladly_sync.storage.database import Database

if TYPE_CHECKING:
    from gladly_sync.storage.postgres import PostgresDatabase

    from gladly_sync.config import StorageSettings


def open_database(storage: StorageSettings, organization: str = "") -> Database | PostgresDatabase:
    """The configured store (nothing is opened until its first ``connect()``)."""
    if storage.url:
        from gladly_sync.storage.postgres import PostgresDatabase

        return PostgresDatabase(
            storage.url,
            schema=storage.schema,
            organization=organization,
            lock_wait_seconds=storage.lock_wait_seconds,
        )
    return Database(storage.path, lock_wait_seconds=storage.lock_wait_seconds)
