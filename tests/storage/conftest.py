"""Fixtures for the storage tests: a fresh DuckDB file per test and whole-table readers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from gladly_sync.storage.database import Database

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
T2 = datetime(2024, 5, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which store the test runs on: DuckDB (embedded) or PostgreSQL (a throwaway cluster)."""
    return request.param


@pytest.fixture
def db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Database:
    if backend == "postgres":
        from gladly_sync.storage.postgres import PostgresDatabase

        where = request.getfixturevalue("postgres_schema")
        return PostgresDatabase(where.url, schema=where.schema, organization="test")  # type: ignore[return-value]
    return Database(tmp_path / "data" / "gladly.duckdb")


@pytest.fixture
def con(db: Database) -> Iterator[duckdb.DuckDBPyConnection]:
    with db.connect() as connection:
        yield connection


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def _compact(text: Any) -> Any:
    """``content`` as compact JSON text: DuckDB's json_extract minifies, PostgreSQL's ``->`` keeps
    the source's spacing (``raw`` itself is compared as stored, byte for byte)."""
    if not isinstance(text, str):
        return text
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def table(con: duckdb.DuckDBPyConnection, name: str, columns: str, order: str = "1") -> list[tuple]:
    """Every row of ``name`` (the given columns), ordered; JSON columns come back as text.

    The default order is the first column's text (PostgreSQL cannot order by a ``json`` column)."""
    result = con.execute(f"SELECT {columns} FROM {name}" + ("" if order == "1" else f" ORDER BY {order}"))
    names = [d[0] for d in result.description]
    rows = [
        tuple(_compact(v) if n == "content" else _plain(v) for n, v in zip(names, row, strict=True))
        for row in result.fetchall()
    ]
    if order == "1":
        rows.sort(key=lambda row: (row[0] is not None, str(row[0]) if row[0] is not None else ""))
    return rows


def parsed(text: str | None) -> Any:
    return json.loads(text) if text is not None else None
