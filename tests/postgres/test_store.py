"""The configured store: storage.url picks PostgreSQL for the CLI and for Applied's ``Store``."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from gladly_sync.storage import Store, upserts
from gladly_sync.storage.postgres import PostgresDatabase
from gladly_sync.storage.rows import conversation_row

from tests.e2e.conftest import ROOT

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CONVERSATION = {"id": "conv-1", "customerId": "cust-1", "status": "OPEN", "createdAt": "2024-05-01T12:00:00Z"}


def _config(tmp_path, storage: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        "gladly:\n  organization: acme\n  email: api@acme.com\n  api_token: ${GLADLY_API_TOKEN}\n"
        f"storage:\n{storage}",
        encoding="utf-8",
    )
    return str(path)


def _cli(config: str, *argv: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "GLADLY_API_TOKEN": "tok-1234"}
    return subprocess.run(
        [sys.executable, "-m", "gladly_sync", "--config", config, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=ROOT,
    )


class TestConfiguredStore:
    def test_store_from_config_reads_postgres(self, tmp_path, postgres_schema, monkeypatch):
        """Store.from_config with storage.url reads the PostgreSQL store; no DuckDB file appears."""
        db = PostgresDatabase(postgres_schema.url, schema=postgres_schema.schema)
        with db.transaction() as con:
            upserts.upsert_conversations(con, [conversation_row(CONVERSATION, synced_at=T0, source_at=T0)])
        storage = f"  url: {postgres_schema.url}\n  schema: {postgres_schema.schema}\n"
        monkeypatch.setenv("GLADLY_API_TOKEN", "tok-1234")
        store = Store.from_config(_config(tmp_path, storage))
        context = store.conversation_context("conv-1")
        assert (context["conversation"]["id"], context["items"], context["outbox"]) == ("conv-1", [], [])
        assert "PostgresDatabase" in repr(store)
        assert not (tmp_path / "data" / "gladly.duckdb").exists()

    def test_cli_status_on_postgres(self, tmp_path, postgres_schema):
        """The CLI's status reads the PostgreSQL store named by storage.url (env override works too)."""
        config = _config(tmp_path, "  path: data/gladly.duckdb\n")
        environ_url = {"GLADLY_SYNC__STORAGE__URL": postgres_schema.url}
        db = PostgresDatabase(postgres_schema.url, schema=postgres_schema.schema)
        with db.connect():
            pass
        done = subprocess.run(
            [sys.executable, "-m", "gladly_sync", "--config", config, "status", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "GLADLY_API_TOKEN": "tok-1234",
                **environ_url,
                "GLADLY_SYNC__STORAGE__SCHEMA": postgres_schema.schema,
            },
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert '"rows"' in done.stdout
        assert not (tmp_path / "data" / "gladly.duckdb").exists()

    @pytest.mark.parametrize(
        "url,message,code",
        [
            ("mysql://root:pw-55-SECRET@db/gladly", "storage.url: 'mysql://root:***@db/gladly' is not a", 2),
            (
                "postgresql://u:pw-55-SECRET@127.0.0.1:1/g?connect_timeout=2",
                "cannot connect to PostgreSQL",
                1,
            ),
        ],
    )
    def test_bad_url_is_a_clear_error(self, tmp_path, url, message, code):
        """A URL of another scheme exits 2 naming storage.url; an unreachable server says so; no
        password is ever printed."""
        done = _cli(_config(tmp_path, f"  url: {url}\n"), "status")
        assert message in done.stderr
        assert done.returncode == code
        assert "pw-55-SECRET" not in done.stdout + done.stderr
