"""``gladly-sync export --format parquet|csv --to DIR [--tables ...]``: files for BI tools.

It reads the read snapshot when ``storage.snapshot_path`` is set (so it never waits for a running
sync), else the store read-only (PostgreSQL: always the store), and writes one file per analyst
table or view (``storage/export_files.py``). The outbox is read where it lives: its own SQLite
database beside a DuckDB store, the store itself on PostgreSQL.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from gladly_sync.storage.export_files import FORMATS, RELATIONS, choose_relations, export_relations

from gladly_sync.config import Settings
from gladly_sync.errors import NotSynced

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, required=True, help="the file format")
    parser.add_argument("--to", metavar="DIR", required=True, type=Path, help="the folder to write into")
    parser.add_argument(
        "--tables",
        nargs="+",
        metavar="NAME",
        help=f"only these tables and views (default: all of {', '.join(RELATIONS)})",
    )


def _source(settings: Settings) -> Any:
    """The snapshot when configured (it must have been published), else the store."""
    from gladly_sync.storage.backend import open_database
    from gladly_sync.storage.database import Database

    snapshot = settings.storage.snapshot_path
    if snapshot is None:
        return open_database(settings.storage, settings.gladly.organization)
    if not Path(snapshot).exists():
        raise NotSynced(
            f"no read snapshot at {snapshot} yet: run `gladly-sync sync` first "
            "(export reads the snapshot when storage.snapshot_path is set)"
        )
    return Database(snapshot, lock_wait_seconds=settings.storage.lock_wait_seconds)


def _export_outbox(settings: Settings, folder: Path, fmt: str) -> list[Any]:
    """A DuckDB store's outbox lives in its own database: copy it into an in-memory DuckDB and
    write it from there."""
    import duckdb
    from gladly_sync.storage.database import Database
    from gladly_sync.storage.outbox.bridge import copy_into_snapshot, outbox_for_store

    store = Database(settings.storage.path, lock_wait_seconds=settings.storage.lock_wait_seconds)
    outbox_db = outbox_for_store(store, settings.storage.outbox_path, wait_for_store=False)
    with duckdb.connect() as con:
        copy_into_snapshot(con, outbox_db)
        return export_relations(con, folder, fmt, ["outbox"])


def run_export(
    args: argparse.Namespace,
    settings: Settings,
    *,
    emit: Callable[[str], None],
    emit_json: Callable[[Any], None],
) -> int:
    relations = choose_relations(args.tables)
    db = _source(settings)
    source = db.where
    outbox_apart = getattr(db, "outbox_engine", None) is None  # not a store that holds its outbox
    stored = [name for name in relations if name != "outbox" or not outbox_apart]
    written = []
    if stored:
        with db.connect(read_only=True) as con:
            written += export_relations(con, args.to, args.format, stored)
    if "outbox" in relations and outbox_apart:
        written += _export_outbox(settings, args.to, args.format)
    written.sort(key=lambda exported: relations.index(exported.relation))
    log.info("export_written", source=str(source), files=len(written), format=args.format)
    if args.json:
        emit_json(
            {
                "source": str(source),
                "format": args.format,
                "files": [{"table": f.relation, "path": str(f.path), "rows": f.rows} for f in written],
            }
        )
    else:
        for exported in written:
            emit(f"{exported.path}  {exported.rows:,} rows")
    return 0
