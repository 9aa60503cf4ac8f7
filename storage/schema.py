"""Create and migrate the store's schema: the tables of ``storage/tables.py`` plus analyst views.

The newest migration ends by applying every ``COMMENT`` (:func:`describe`), so comments follow
whatever a migration created or replaced.

``schema_version`` holds one row per applied migration; the store's version is the highest one.
:data:`MIGRATIONS` is an ordered list of ``(version, description, apply)``. Version 1 creates every
table from the current ``storage/tables.py`` (``CREATE TABLE IF NOT EXISTS``), so a later migration
that adds a column must be idempotent (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``): on a fresh
store version 1 already created it. A store whose version is higher than the newest migration was
written by a newer gladly-sync and is refused with :class:`~storage.errors.SchemaTooNew`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import duckdb
from gladly_sync.storage import tables
from gladly_sync.storage.dialect import dialect_specific
from gladly_sync.storage.views import METRIC_VIEWS

from gladly_sync.errors import SchemaTooNew

if TYPE_CHECKING:
    from sqlalchemy.schema import Table

Migration = tuple[int, str, Callable[[duckdb.DuckDBPyConnection], None]]

_dialect = None


def _duckdb_dialect():  # type: ignore[no-untyped-def]
    global _dialect
    if _dialect is None:
        from duckdb_engine import Dialect
        from sqlalchemy.sql.compiler import DDLCompiler

        class DuckDBDDLCompiler(Dialect.ddl_compiler):  # type: ignore[name-defined,misc]
            # DuckDB's generated columns are VIRTUAL; duckdb_engine inherits PostgreSQL's DDL, which
            # refuses VIRTUAL before SQLAlchemy 2.1. The generic rendering is DuckDB's syntax.
            visit_computed_column = DDLCompiler.visit_computed_column

        class DuckDBDialect(Dialect):  # type: ignore[misc]
            ddl_compiler = DuckDBDDLCompiler

        _dialect = DuckDBDialect()
    return _dialect


def create_table_statements() -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every SQLModel table, compiled for DuckDB.

    SQLAlchemy and the table models are imported here (and in the other functions that need them),
    not with this module: opening a store that is up to date (every short command) never needs
    them, and they are most of a command's start.
    """
    from gladly_sync.storage import tables  # noqa: F401  (registers the models)
    from sqlmodel import SQLModel

    return [create_table_statement(table) for table in SQLModel.metadata.sorted_tables]


def create_table_statement(table: Table) -> str:
    from sqlalchemy.schema import CreateTable

    return str(CreateTable(table, if_not_exists=True).compile(dialect=_duckdb_dialect())).strip()


CONVERSATION_TIMELINE = """
CREATE OR REPLACE VIEW conversation_timeline AS
SELECT
    i.conversation_id,
    i.id AS item_id,
    i.timestamp,
    i.content_type,
    i.initiator_type,
    i.initiator_id,
    CASE WHEN i.initiator_type = 'AGENT' THEN a.name END AS agent_name,
    i.text,
    coalesce(c.customer_id, i.customer_id) AS customer_id,
    cu.name AS customer_name,
    c.inbox_id,
    ib.name AS inbox_name,
    c.status
FROM conversation_items AS i
LEFT JOIN conversations AS c ON c.id = i.conversation_id
LEFT JOIN customers AS cu ON cu.id = coalesce(c.customer_id, i.customer_id)
LEFT JOIN inboxes AS ib ON ib.id = c.inbox_id
LEFT JOIN agents AS a ON a.id = i.initiator_id AND i.initiator_type = 'AGENT'
WHERE i.deleted_at IS NULL AND c.deleted_at IS NULL
ORDER BY i.timestamp, i.id
"""

OPEN_CONVERSATIONS = """
CREATE OR REPLACE VIEW open_conversations AS
SELECT
    c.id AS conversation_id,
    c.status,
    c.customer_id,
    cu.name AS customer_name,
    c.inbox_id,
    ib.name AS inbox_name,
    c.agent_id,
    a.name AS agent_name,
    c.created_at,
    last.last_item_at
FROM conversations AS c
LEFT JOIN customers AS cu ON cu.id = c.customer_id
LEFT JOIN inboxes AS ib ON ib.id = c.inbox_id
LEFT JOIN agents AS a ON a.id = c.agent_id
LEFT JOIN (
    SELECT conversation_id, max(timestamp) AS last_item_at
    FROM conversation_items
    WHERE deleted_at IS NULL
      AND conversation_id IN (SELECT id FROM conversations WHERE status IN ('OPEN', 'WAITING'))
    GROUP BY conversation_id
) AS last ON last.conversation_id = c.id
WHERE c.status IN ('OPEN', 'WAITING') AND c.deleted_at IS NULL
ORDER BY c.created_at, c.id
"""


@dialect_specific
def _create(con: duckdb.DuckDBPyConnection) -> None:
    for statement in create_table_statements():
        con.execute(statement)
    con.execute(CONVERSATION_TIMELINE)
    con.execute(OPEN_CONVERSATIONS)


def _analysts(con: duckdb.DuckDBPyConnection) -> None:
    from gladly_sync.storage import tables

    con.execute(create_table_statement(tables.Organization.__table__))
    for view in METRIC_VIEWS:
        con.execute(view)


@dialect_specific
def _create_missing_tables(con: duckdb.DuckDBPyConnection) -> None:
    """A later version's new tables (``IF NOT EXISTS``: a fresh store has them from version 1)."""
    for statement in create_table_statements():
        con.execute(statement)


def _run_hosts(con: duckdb.DuckDBPyConnection) -> None:
    """``sync_runs.host``: several hosts may run jobs on one (PostgreSQL) store, and a pid means
    something only on its own host. (Also the COMMENT on PostgreSQL's ``run_progress``.)"""
    con.execute("ALTER TABLE sync_runs ADD COLUMN IF NOT EXISTS host VARCHAR")
    describe(con)


MIGRATIONS: Sequence[Migration] = (
    (1, "create tables and views", _create),
    (2, "organization table, conversation_metrics and daily_volume views, comments", _analysts),
    (3, "export_skipped_lines", _create_missing_tables),
    (4, "sync_runs.host", _run_hosts),
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dialect_specific
def catalog(con: duckdb.DuckDBPyConnection) -> tuple[set[str], dict[str, set[str]]]:
    """The store's view names, and every table's and view's column names."""
    views = {
        row[0]
        for row in con.execute(
            "SELECT view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal"
        ).fetchall()
    }
    columns: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall():
        columns.setdefault(table, set()).add(column)
    return views, columns


def comment_statements(con: duckdb.DuckDBPyConnection) -> list[str]:
    """``COMMENT ON`` every table, view and column described in ``storage/tables.py`` that exists."""
    views, columns = catalog(con)
    described = {**tables.ANALYST_TABLES, **tables.ANALYST_VIEWS}
    statements = [
        f"COMMENT ON TABLE {name} IS {_literal(comment)}"
        for name, comment in tables.BOOKKEEPING_TABLES.items()
        if name in columns
    ]
    for name, description in described.items():
        if name not in columns:
            continue
        kind = "VIEW" if name in views else "TABLE"
        statements.append(f"COMMENT ON {kind} {name} IS {_literal(description.comment)}")
        statements += [
            f"COMMENT ON COLUMN {name}.{column} IS {_literal(comment)}"
            for column, comment in description.columns.items()
            if column in columns[name]
        ]
    return statements


def describe(con: duckdb.DuckDBPyConnection) -> None:
    """Apply every COMMENT (idempotent; ``CREATE OR REPLACE VIEW`` drops a view's comments)."""
    for statement in comment_statements(con):
        con.execute(statement)


@dialect_specific
def stored_version(con: duckdb.DuckDBPyConnection) -> int:
    """The store's schema version; 0 for a store without a ``schema_version`` table."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dialect_specific
def store_location(con: duckdb.DuckDBPyConnection) -> str:
    """Where the store is, for messages: the DuckDB file's path."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return path[0] if path and path[0] else "the store"


def check_version(con: duckdb.DuckDBPyConnection, latest: int | None = None) -> int:
    """Refuse a store written by a newer gladly-sync (newer than ``latest``, by default the newest
    migration); return the store's version."""
    latest = MIGRATIONS[-1][0] if latest is None else latest
    version = stored_version(con)
    if version > latest:
        where = store_location(con)
        raise SchemaTooNew(
            f"{where} was written by a newer gladly-sync (schema {version} > {latest}): upgrade gladly-sync"
        )
    return version


def migrate(con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the store up to the newest migration, each in its own transaction; return its version."""
    latest = migrations[-1][0]
    current = check_version(con, latest)
    for version, _description, apply in migrations:
        if version <= current:
            continue
        con.begin()
        try:
            apply(con)
            if version == latest:
                describe(con)
            con.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                [version, datetime.now(UTC)],
            )
        except BaseException:
            con.rollback()
            raise
        con.commit()
        current = version
    return current
