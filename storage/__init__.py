"""gladly-sync's local store: SQLModel tables in DuckDB, bulk upserts, the outbox and read API.

``Store`` is the surface for Python callers (Applied); ``Database`` opens the file for one batch.
``storage`` never imports ``sync``.
"""

from gladly_sync.storage.database import Database
from gladly_sync.storage.store import Store

__all__ = ["Database", "Store"]
