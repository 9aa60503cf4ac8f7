"""Every outbox test runs on both backends: a DuckDB store with its SQLite outbox file, and a
PostgreSQL store whose schema holds the outbox table (a throwaway cluster, ``tests/pg.py``).

A test of the embedded backend's own files (the SQLite file, the first release's DuckDB outbox,
the read snapshot) is marked ``duckdb_only`` and runs on DuckDB alone; one of PostgreSQL's own
(its table files) is marked ``postgres`` and runs on PostgreSQL alone.
"""

from __future__ import annotations

from typing import Any

import pytest

import tests.outbox


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = ["duckdb", "postgres"]
        if metafunc.definition.get_closest_marker("duckdb_only") is not None:
            backends = ["duckdb"]
        elif metafunc.definition.get_closest_marker("postgres") is not None:
            backends = ["postgres"]
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture(autouse=True)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Where ``open_db``/``open_outbox``/``make_settings`` put this test's store and outbox."""
    if request.param == "postgres":
        monkeypatch.setattr(tests.outbox, "POSTGRES", request.getfixturevalue("postgres_schema"))
    return request.param
