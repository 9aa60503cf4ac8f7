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


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path / "data" / "gladly.duckdb")


@pytest.fixture
def con(db: Database) -> Iterator[duckdb.DuckDBPyConnection]:
    with db.connect() as connection:
        yield connection


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def table(con: duckdb.DuckDBPyConnection, name: str, columns: str, order: str = "1") -> list[tuple]:
    """Every row of ``name`` (the given columns), ordered; JSON columns come back as text."""
    rows = con.execute(f"SELECT {columns} FROM {name} ORDER BY {order}").fetchall()
    return [tuple(_plain(v) for v in row) for row in rows]


def parsed(text: str | None) -> Any:
    return json.loads(text) if text is not None else None
