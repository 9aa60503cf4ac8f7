"""PostgreSQL's dialect for the store: statement translation, column types, schema and migrations.

Storage functions are written in DuckDB's SQL. The differences they use that can be translated
statement by statement are translated here, once, for :class:`~storage.postgres.PgConnection`:

* placeholders: ``?`` and ``$1`` / ``$name`` become psycopg's ``%s`` / ``%(name)s``;
* ``QUALIFY row_number() OVER (PARTITION BY k ORDER BY o) = 1`` (a batch's last version of each id)
  becomes ``SELECT DISTINCT ON (k) ... ORDER BY k, o`` (``* EXCLUDE (_ord)`` keeps ``_ord``, which
  no caller reads);
* ``CREATE OR REPLACE TEMP TABLE t AS`` becomes ``DROP TABLE IF EXISTS`` + ``CREATE TEMP TABLE``.

The tables are created from the same SQLModel definitions as DuckDB's, compiled for PostgreSQL:
``json`` (not ``jsonb``: ``raw`` stays the text Gladly sent), ``timestamptz``, ``text[]``;
``conversation_items.content`` is a STORED generated column (PostgreSQL 15 has no virtual ones);
``conversation_items`` and ``events`` get a UNIQUE index on ``id`` (DuckDB's reason for having none,
an in-memory index, does not apply), which the item upsert's ``ON CONFLICT`` uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from gladly_sync.storage import schema as duckdb_schema
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable
from sqlmodel import SQLModel

from gladly_sync.errors import NotFound

if TYPE_CHECKING:
    from gladly_sync.storage.postgres import PgConnection

Statement = tuple[str, Any]

# --------------------------------------------------------------------------- statement translation

_QUALIFY = re.compile(
    r"\bQUALIFY\s+row_number\(\)\s+OVER\s*\(\s*PARTITION\s+BY\s+(?P<key>[\w.]+)\s+"
    r"ORDER\s+BY\s+(?P<order>[^()]*?)\s*\)\s*=\s*1",
    re.IGNORECASE,
)
_SELECT_HEAD = re.compile(r"SELECT\s+(?P<star>\*\s+EXCLUDE\s*\([^)]*\)\s*)?", re.IGNORECASE)
_TRAILING_ORDER = re.compile(r"\s*ORDER\s+BY\s+(?P<order>[^()]*?)\s*(?=\)|$)", re.IGNORECASE)
_ALIASED = re.compile(r"\s*\)\s*AS\s", re.IGNORECASE)
_CREATE_OR_REPLACE_TEMP = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+TEMP(?:ORARY)?\s+TABLE\s+(\w+)", re.I)
_NAMED = re.compile(r"\$(\d+|[A-Za-z_]\w*)")


def translate(sql: str, parameters: Any = None) -> list[Statement]:
    """One DuckDB statement → the PostgreSQL statements (with psycopg parameters) that do the same."""
    statements: list[Statement] = []
    temp = _CREATE_OR_REPLACE_TEMP.match(sql)
    if temp:
        statements.append((f"DROP TABLE IF EXISTS pg_temp.{temp.group(1)}", None))
        sql = f"CREATE TEMP TABLE {temp.group(1)}" + sql[temp.end() :]
    sql = _rewrite_qualify(sql)
    statements.append(_placeholders(sql, parameters))
    return statements


def _open_paren_before(sql: str, index: int) -> int:
    """The index just after the unmatched ``(`` enclosing ``index`` (0 at top level)."""
    depth = 0
    for position in range(index - 1, -1, -1):
        if sql[position] == ")":
            depth += 1
        elif sql[position] == "(":
            if depth == 0:
                return position + 1
            depth -= 1
    return 0


def _rewrite_qualify(sql: str) -> str:
    while match := _QUALIFY.search(sql):
        key, order = match.group("key"), match.group("order")
        start = _open_paren_before(sql, match.start())
        head = _SELECT_HEAD.search(sql, start)
        if head is None or head.start() > match.start():
            raise ValueError(f"QUALIFY without a SELECT: {sql[:200]!r}")
        select = (
            sql[start : head.start()]
            + f"SELECT DISTINCT ON ({key}) "
            + ("* " if head.group("star") else "")
            + sql[head.end() : match.start()]
        )
        rest = sql[match.end() :]
        trailing = _TRAILING_ORDER.match(rest)
        ordered = f"{select.rstrip()} ORDER BY {key}, {order}"
        if trailing and trailing.group("order").strip() != key:
            ordered = f"SELECT * FROM ({ordered}) AS qualified ORDER BY {trailing.group('order')}"
        rest = rest[trailing.end() :] if trailing else rest
        if start and not _ALIASED.match(rest):
            rest = rest.replace(")", ") AS last_wins", 1)  # PostgreSQL names every FROM subquery
        sql = sql[:start] + ordered + rest
    return sql


def _placeholders(sql: str, parameters: Any) -> Statement:
    """``?`` → ``%s``; ``$1`` / ``$name`` → ``%(p1)s`` / ``%(name)s``; literal ``%`` doubled.

    Quoted strings and identifiers are copied as they are (``'$.content'`` is a JSON path)."""
    if parameters is None:
        return sql, None
    out: list[str] = []
    named = isinstance(parameters, dict)
    index, length = 0, len(sql)
    while index < length:
        char = sql[index]
        if char in "'\"":
            end = sql.index(char, index + 1) + 1
            while end < length and sql[end] == char:  # doubled quote inside the literal
                end = sql.index(char, end + 1) + 1
            out.append(sql[index:end].replace("%", "%%"))
            index = end
            continue
        if char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        elif char == "$" and (match := _NAMED.match(sql, index)):
            name = match.group(1)
            named = True
            out.append(f"%(p{name})s" if name.isdigit() else f"%({name})s")
            index = match.end()
            continue
        else:
            out.append(char)
        index += 1
    if named and not isinstance(parameters, dict):
        parameters = {f"p{n}": value for n, value in enumerate(parameters, 1)}
    return "".join(out), parameters


# --------------------------------------------------------------------------- column types

_ARROW_TYPES = (
    (pa.types.is_string, "text"),
    (pa.types.is_large_string, "text"),
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double precision"),
    (pa.types.is_timestamp, "timestamptz"),
)


@cache
def store_column_types() -> dict[str, str]:
    """``{column name: PostgreSQL type}`` over every store table (a name has one type everywhere)."""
    dialect = postgresql.dialect()
    types: dict[str, str] = {}
    for table in SQLModel.metadata.sorted_tables:
        for column in table.columns:
            types.setdefault(column.name, column.type.compile(dialect=dialect))
    return types


def column_type(field: pa.Field) -> str:
    """A staged Arrow column's PostgreSQL type: the store's type for that column name (so JSON text
    lands in ``json``), else one from the Arrow type."""
    known = store_column_types().get(field.name)
    if known:
        return known
    if pa.types.is_list(field.type):
        return "text[]"
    for test, name in _ARROW_TYPES:
        if test(field.type):
            return name
    raise TypeError(f"no PostgreSQL type for staged column {field.name} ({field.type})")


# --------------------------------------------------------------------------- schema

_GENERATED = re.compile(r"GENERATED ALWAYS AS \(json_extract\(raw, '\$\.content'\)\)( VIRTUAL| STORED)?")
INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS conversation_items_id ON conversation_items (id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id)",
    "CREATE INDEX IF NOT EXISTS conversation_items_conversation ON conversation_items (conversation_id)",
    "CREATE INDEX IF NOT EXISTS conversation_items_customer ON conversation_items (customer_id)",
    "CREATE INDEX IF NOT EXISTS conversations_customer ON conversations (customer_id)",
)


def create_table_statements() -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every SQLModel table, compiled for PostgreSQL."""
    dialect = postgresql.dialect()
    statements = []
    for table in SQLModel.metadata.sorted_tables:
        ddl = _compile_stored(table, dialect)
        statements.append(_GENERATED.sub("GENERATED ALWAYS AS ((raw -> 'content')) STORED", ddl))
    return statements


def _compile_stored(table: Any, dialect: Any) -> str:
    """``CREATE TABLE`` with DuckDB's VIRTUAL generated columns compiled as STORED: SQLAlchemy
    before 2.1 refuses VIRTUAL for PostgreSQL, and PostgreSQL 15 has only STORED."""
    virtual = [c.computed for c in table.columns if c.computed is not None and c.computed.persisted is False]
    for computed in virtual:
        computed.persisted = True
    try:
        return str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip()
    finally:
        for computed in virtual:
            computed.persisted = False


def create_tables(con: PgConnection) -> None:
    """Migration 1 on PostgreSQL (``schema._create`` there): every table, their indexes, the views."""
    for statement in (*create_table_statements(), *INDEXES):
        con.execute(statement)
    con.execute(duckdb_schema.CONVERSATION_TIMELINE)
    con.execute(duckdb_schema.OPEN_CONVERSATIONS)


def create_missing_tables(con: PgConnection) -> None:
    """A later migration's new tables on PostgreSQL (``schema._create_missing_tables`` there)."""
    for statement in create_table_statements():
        con.execute(statement)


def stored_version(con: PgConnection) -> int:
    """The store's schema version; 0 when the schema has no ``schema_version`` table yet."""
    exists = con.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def store_location(con: PgConnection) -> str:
    return con.where


def catalog(con: PgConnection) -> tuple[set[str], dict[str, set[str]]]:
    """The views, and every table's and view's columns, of the schema first on the search path."""
    views = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = current_schema()"
        ).fetchall()
    }
    columns: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
    ).fetchall():
        columns.setdefault(table, set()).add(column)
    return views, columns


def require_store(con: PgConnection) -> int:
    """For read-only use: the store must exist and not be newer than this gladly-sync."""
    if stored_version(con) == 0:
        raise NotFound(f"no store at {con.where}: run `gladly-sync sync` first")
    return duckdb_schema.check_version(con)


# A running run's progress for `status` on every host (a DuckDB store keeps it in a file instead).
RUN_PROGRESS = """
CREATE TABLE IF NOT EXISTS run_progress (
    job VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, state JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL
)
"""


def migrate_store(con: PgConnection, schema: str | None) -> int:
    """Create the schema if needed and apply the missing migrations (``storage/schema.py``'s, run
    through the adapter), one process at a time."""
    if schema:
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    lock = ["gladly-sync:migrate:" + (schema or "")]
    con.execute("SELECT pg_advisory_lock(hashtextextended(?, 0))", lock)
    try:
        con.execute(RUN_PROGRESS)
        return duckdb_schema.migrate(con)
    finally:
        con.execute("SELECT pg_advisory_unlock(hashtextextended(?, 0))", lock)


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "_create": create_tables,
    "_create_missing_tables": create_missing_tables,
    "stored_version": stored_version,
    "store_location": store_location,
    "catalog": catalog,
}
