"""``gladly-sync export`` on a PostgreSQL store: the rows come from the server, the files from DuckDB.

DuckDB writes the Parquet and CSV files on both backends (``storage/export_files.py``). Here each
relation is read through a server-side cursor in batches and appended, as Arrow, to a scratch DuckDB
file inside the target folder (private to its owner, removed at the end), so memory stays flat
whatever the store's size; then the embedded export writes the files from that scratch file. Column
types follow PostgreSQL's: ``json`` stays its text, ``timestamptz`` stays UTC, ``numeric`` (what
``EXTRACT`` returns) becomes a double as in DuckDB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from gladly_sync.storage.dialect import duckdb_version
from gladly_sync.storage.private import private_folder

if TYPE_CHECKING:
    from gladly_sync.storage.export_files import ExportedFile
    from gladly_sync.storage.postgres import PgConnection

BATCH_ROWS = 20_000
_UTC = pa.timestamp("us", tz="UTC")
# PostgreSQL type OIDs → Arrow types; any other type is exported as its text.
_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int32(),
    23: pa.int32(),
    700: pa.float64(),
    701: pa.float64(),
    1700: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: _UTC,
    1009: pa.list_(pa.string()),
    1015: pa.list_(pa.string()),
}


def export_relations(
    con: PgConnection, folder: Path, fmt: str, relations: Sequence[str]
) -> list[ExportedFile]:
    """Write each relation to ``folder/<name>.<fmt>`` as the embedded store does; return what was written."""
    write = duckdb_version("export_relations")
    private_folder(folder)
    scratch = folder / f".export-{os.getpid()}.duckdb"
    try:
        with duckdb.connect(str(scratch)) as duck:
            os.chmod(scratch, 0o600)
            duck.execute("SET TimeZone = 'UTC'")
            for relation in relations:
                _copy_relation(con, duck, relation)
            return write(duck, folder, fmt, relations)
    finally:
        for leftover in (scratch, scratch.with_name(scratch.name + ".wal")):
            leftover.unlink(missing_ok=True)


def _copy_relation(con: PgConnection, duck: duckdb.DuckDBPyConnection, relation: str) -> None:
    """``relation``'s rows, batch by batch, into the table of that name in ``duck``."""
    with con.raw.transaction(), con.raw.cursor(name=f"export_{relation}") as cursor:
        cursor.itersize = BATCH_ROWS
        cursor.execute(f"SELECT * FROM {relation}")  # the names are the analyst relations', not input
        schema = pa.schema(
            [(column.name, _TYPES.get(column.type_code, pa.string())) for column in cursor.description or ()]
        )
        convert = [_converter(field.type) for field in schema]
        duck.register("export_batch", pa.Table.from_pylist([], schema=schema))
        duck.execute(f"CREATE TABLE {relation} AS SELECT * FROM export_batch")
        while rows := cursor.fetchmany(BATCH_ROWS):
            columns = [[to(row[n]) for row in rows] for n, to in enumerate(convert)]
            duck.register("export_batch", pa.Table.from_arrays(columns, schema=schema))
            duck.execute(f"INSERT INTO {relation} SELECT * FROM export_batch")
        duck.unregister("export_batch")


def _converter(arrow_type: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_string(arrow_type):
        return lambda value: value if value is None or isinstance(value, str) else str(value)
    if pa.types.is_floating(arrow_type):
        return lambda value: None if value is None else float(value)
    return lambda value: value


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {"export_relations": export_relations}
