"""gladly-sync: a local copy of a Gladly support organization, and an outbox back to it.

The one import package of the distribution. The repository's folders map into it
(``pyproject.toml``): ``sync/`` is ``gladly_sync.sync`` (Gladly client, pull, outbox drain,
daemon, CLI), ``storage/`` is ``gladly_sync.storage`` and ``simulator/`` is
``gladly_sync.simulator``; configuration (``gladly_sync.config``) and the error tree
(``gladly_sync.errors``) sit at the root because they belong to no one layer.

    from gladly_sync import Store
    store = Store.from_config("config.yaml")      # no API token needed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gladly_sync.storage.store import Store

__all__ = ["Store", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `gladly-sync enqueue` and `python -m gladly_sync` do not pay for DuckDB and
    # SQLModel before they need them, nor for reading the installed metadata (the version).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("gladly-sync")
        except PackageNotFoundError:  # a source checkout that was never installed
            return "0+unknown"
    if name == "Store":
        from gladly_sync.storage.store import Store

        return Store
    raise AttributeError(f"module 'gladly_sync' has no attribute {name!r}")
