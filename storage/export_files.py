"""Write the analyst tables and views as Parquet or CSV files for BI tools (``gladly-sync export``).

One file per table or view, ``<name>.parquet`` or ``<name>.csv``, written by DuckDB's ``COPY`` to
a temporary name and renamed into place, so a BI tool never reads half a file. Every file, and the
folder when this creates it, is private to its owner (0600 / 0700): the tables hold personal data.
CSV has a header row; times are ISO 8601 in UTC, JSON columns their JSON text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
from gladly_sync.storage.dialect import dialect_specific
from gladly_sync.storage.private import private_folder
from gladly_sync.storage.tables import ANALYST_TABLES, ANALYST_VIEWS

from gladly_sync.errors import NotSynced, UsageError

FORMATS = ("parquet", "csv")
RELATIONS = (*ANALYST_TABLES, *ANALYST_VIEWS)
_COPY_OPTIONS = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER true"}


@dataclass(frozen=True)
class ExportedFile:
    relation: str
    path: Path
    rows: int


def choose_relations(requested: Sequence[str] | None) -> list[str]:
    """The tables and views to write: all of :data:`RELATIONS` by default, else the named ones
    (names may also come comma-separated), in the order given, each once."""
    if not requested:
        return list(RELATIONS)
    names = [name.strip() for entry in requested for name in entry.split(",") if name.strip()]
    unknown = [name for name in names if name not in RELATIONS]
    if unknown:
        raise UsageError(
            f"--tables: {', '.join(unknown)} is not an analyst table or view; "
            f"choose from {', '.join(RELATIONS)}"
        )
    if not names:
        raise UsageError(f"--tables names no table; choose from {', '.join(RELATIONS)}")
    return list(dict.fromkeys(names))


@dialect_specific
def export_relations(
    con: duckdb.DuckDBPyConnection, folder: Path, fmt: str, relations: Sequence[str]
) -> list[ExportedFile]:
    """Write each relation to ``folder/<name>.<fmt>``; return what was written."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported; choose {' or '.join(FORMATS)}")
    _require(con, relations)
    _private_folder(folder)
    return [_write(con, folder, fmt, relation) for relation in relations]


def _require(con: duckdb.DuckDBPyConnection, relations: Sequence[str]) -> None:
    present = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "UNION SELECT view_name FROM duckdb_views() WHERE database_name = current_database()"
        ).fetchall()
    }
    missing = [name for name in relations if name not in present]
    if missing:
        raise NotSynced(
            f"the store has no {', '.join(missing)}: it was written by an older gladly-sync; "
            "run `gladly-sync sync` once to migrate it (and publish a new snapshot)"
        )


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (and missing parents) 0700; an existing folder is left as it is."""
    private_folder(folder)
    if not folder.is_dir():
        raise UsageError(f"--to {folder} is not a folder")


@contextmanager
def _private_files() -> Iterator[None]:
    """Files created meanwhile are 0600 from the start (DuckDB creates them with the umask)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _write(con: duckdb.DuckDBPyConnection, folder: Path, fmt: str, relation: str) -> ExportedFile:
    target = folder / f"{relation}.{fmt}"
    temp = folder / f".{relation}.{fmt}.{os.getpid()}.tmp"
    quoted = str(temp).replace("'", "''")
    try:
        with _private_files():
            result = con.execute(
                f"COPY (SELECT * FROM {relation}) TO '{quoted}' ({_COPY_OPTIONS[fmt]})"
            ).fetchone()
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()
    return ExportedFile(relation, target, int(result[0]) if result else 0)
