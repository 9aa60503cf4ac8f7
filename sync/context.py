"""What every job (sync, drain, reconcile) needs, built once by the CLI or the daemon: the settings,
the DuckDB store, the outbox database, a Gladly client factory, a clock and a logger.

``sync_once(ctx)``, ``drain_once(ctx)`` and ``reconcile_once(ctx)`` take a ``Context`` and nothing
else, so the CLI, the scheduler and the tests call the same plain functions.

The rate budget belongs to the process, not to a client: ``from_settings`` builds one ``Pacer`` and
every client the factory makes (each job's, each run's) shares it, so jobs running side by side in
the daemon never add up to more than ``requests_per_second`` per method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from gladly_sync.storage.backend import open_database
from gladly_sync.storage.database import Database
from gladly_sync.storage.outbox.bridge import copy_into_snapshot, outbox_for_store
from gladly_sync.storage.outbox.database import OutboxDatabase
from gladly_sync.sync.pacer import Pacer
from gladly_sync.sync.shutdown import Shutdown

from gladly_sync.config import Settings

if TYPE_CHECKING:
    from gladly_sync.sync.client import GladlyClient


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    db: Database
    client_factory: Callable[[], GladlyClient]
    clock: Callable[[], datetime] = utcnow
    log: structlog.typing.FilteringBoundLogger = field(default_factory=structlog.get_logger)
    pacer: Pacer | None = None  # the process's one pacer, shared by every client of client_factory
    shutdown: Shutdown = field(default_factory=Shutdown)
    outbox_db: OutboxDatabase | None = None  # None: the one at settings.storage.outbox_path

    def __post_init__(self) -> None:
        if self.db is not None and self.db.on_publish is None:
            self.db.on_publish = lambda con: copy_into_snapshot(con, self.outbox)

    @property
    def outbox(self) -> OutboxDatabase:
        """The outbox database (its own transactions; never the store's lock)."""
        if self.outbox_db is None:
            self.outbox_db = outbox_for_store(self.db, self.settings.storage.outbox_path)
        return self.outbox_db

    @classmethod
    def from_settings(cls, settings: Settings, *, shutdown: Shutdown | None = None) -> Context:
        """The context of one process; its clients stop sending once ``shutdown`` is requested."""
        from gladly_sync.sync.client import GladlyClient

        shutdown = shutdown or Shutdown()
        db = open_database(settings.storage, settings.gladly.organization)
        pacer = Pacer(settings.gladly.requests_per_second)
        return cls(
            settings=settings,
            db=db,
            client_factory=lambda: GladlyClient.from_settings(
                settings.gladly, pacer=pacer, shutdown=shutdown
            ),
            pacer=pacer,
            shutdown=shutdown,
        )
