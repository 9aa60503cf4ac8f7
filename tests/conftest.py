"""Fixtures every test folder can use: a throwaway PostgreSQL cluster (see ``tests/pg.py``).

``postgres_cluster`` starts one cluster per test session and stops it at the end; ``postgres_url``
is a database created for the session; ``postgres_schema`` gives each test its own schema
(dropped after it). Without a server these skip, except in CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.pg import ClusterUnavailable, PostgresCluster


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI and could not start: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed: pip install -e '.[test,postgres]'")
    cluster = PostgresCluster()
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        cluster.stop()
        _unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A database of its own for this test session."""
    return postgres_cluster.url(postgres_cluster.create_database())


@dataclass(frozen=True)
class PostgresSchema:
    """Where one test's tables live: ``storage.url`` + ``storage.schema``."""

    url: str
    schema: str


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[PostgresSchema]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield PostgresSchema(postgres_url, schema)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
