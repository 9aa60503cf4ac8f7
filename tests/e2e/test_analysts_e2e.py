"""Analysts through the real CLI: the views in the store and the snapshot, and ``export`` files that
read back equal to what they were written from."""

from __future__ import annotations

import json
import stat

import duckdb
import pytest

from gladly_sync.errors import NotSynced
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e

VIEWS = ("conversation_metrics", "daily_volume")
RELATIONS = (
    "organization", "customers", "conversations", "conversation_items", "events", "inboxes", "agents",
    "topics", "outbox", "conversation_timeline", "open_conversations", "conversation_metrics", "daily_volume",
)  # fmt: skip


def read(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=path != ":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestViews:
    def test_both_views_exist_in_the_store_and_the_snapshot(self, cli: Cli):
        """After a sync the snapshot answers both views with the store's rows."""
        cli.ok("sync")
        snapshot = cli.db_path.with_name("gladly_read.duckdb")
        for view in VIEWS:
            in_store = read(cli.db_path, f"SELECT * FROM {view}")
            assert in_store and read(snapshot, f"SELECT * FROM {view}") == in_store
        assert read(snapshot, "SELECT timezone FROM organization") == [("America/Los_Angeles",)]


class TestExport:
    def test_parquet_files_read_back_equal_the_tables_and_views(self, cli: Cli, tmp_path):
        """Every analyst table and view becomes a private Parquet file equal to its source."""
        cli.ok("sync")
        cli.ok(
            "enqueue", "note", read(cli.db_path, "SELECT id FROM conversations LIMIT 1")[0][0], "--body", "hi"
        )
        cli.ok("sync")  # the snapshot is published by a sync
        folder = tmp_path / "bi" / "parquet"
        done = cli.json("export", "--format", "parquet", "--to", str(folder))
        snapshot = cli.db_path.with_name("gladly_read.duckdb")
        assert done["source"] == str(snapshot)
        assert [f["table"] for f in done["files"]] == list(RELATIONS)
        for relation in RELATIONS:
            path = folder / f"{relation}.parquet"
            if relation == "outbox":  # written from the outbox's own database, newer than the snapshot
                queued = {row["id"] for row in cli.json("outbox", "list")}
                expected = read(":memory:", f"SELECT * FROM read_parquet('{path}')")
                assert {row[0] for row in expected} == queued and len(queued) == 1
            else:
                expected = read(snapshot, f"SELECT * FROM {relation}")
                assert read(":memory:", f"SELECT * FROM read_parquet('{path}')") == expected, relation
            assert next(f["rows"] for f in done["files"] if f["table"] == relation) == len(expected)
            assert mode(path) == 0o600
        assert mode(folder) == mode(folder.parent) == 0o700
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left

    def test_csv_files_have_a_header_and_every_row(self, cli: Cli, tmp_path):
        """--tables picks relations (comma or space separated); CSV keeps the view's columns."""
        cli.ok("sync")
        folder = tmp_path / "csv"
        cli.ok(
            "export", "--format", "csv", "--to", str(folder), "--tables", "daily_volume,conversation_metrics"
        )
        assert sorted(p.name for p in folder.iterdir()) == ["conversation_metrics.csv", "daily_volume.csv"]
        snapshot = cli.db_path.with_name("gladly_read.duckdb")
        for view in VIEWS:
            header = (folder / f"{view}.csv").read_text().splitlines()[0].split(",")
            columns = [r[0] for r in read(snapshot, f"DESCRIBE {view}")]
            assert header == columns
            assert read(":memory:", f"SELECT count(*) FROM read_csv('{folder / view}.csv')") == read(
                snapshot, f"SELECT count(*) FROM {view}"
            )
            assert mode(folder / f"{view}.csv") == 0o600

    def test_an_unknown_table_is_a_usage_error_naming_the_choices(self, cli: Cli, tmp_path):
        """A wrong --tables name exits 2 and lists the analyst tables and views; nothing is written."""
        cli.ok("sync")
        done = cli("export", "--format", "csv", "--to", str(tmp_path / "out"), "--tables", "sync_runs")
        assert done.returncode == 2
        assert "sync_runs is not an analyst table or view" in done.stderr and "daily_volume" in done.stderr
        assert not (tmp_path / "out").exists()

    def test_export_before_the_first_sync_says_what_to_do(self, cli: Cli, tmp_path):
        """With a snapshot configured but not published yet, export fails (NotSynced, exit 1: not an
        unknown id) and says to sync first."""
        done = cli("export", "--format", "parquet", "--to", str(tmp_path / "out"), "--json")
        assert done.returncode == NotSynced.exit_code == 1
        assert "run `gladly-sync sync` first" in done.stderr + done.stdout
        assert json.dumps(done.stdout).count("conversation_metrics") == 0


@pytest.mark.parametrize("backend", ["postgres"])
class TestExportFromPostgres:
    def test_every_file_equals_its_relation_on_the_server(self, cli: Cli, tmp_path):
        """On PostgreSQL, export reads the server itself (there is no snapshot), the outbox table
        included: every Parquet file reads back equal to its relation, row for row, private, with no
        scratch file left behind."""
        cli.ok("sync")
        conversation = cli.query("SELECT id FROM conversations ORDER BY id LIMIT 1")[0][0]
        queued = cli.json("enqueue", "note", conversation, "--body", "for the export")["id"]
        folder = tmp_path / "bi"
        done = cli.json("export", "--format", "parquet", "--to", str(folder))
        assert "postgresql://" in done["source"] and [f["table"] for f in done["files"]] == list(RELATIONS)
        for relation in RELATIONS:
            path = folder / f"{relation}.parquet"
            expected = sorted(cli.query(f"SELECT * FROM {relation}"), key=repr)
            assert sorted(read(":memory:", f"SELECT * FROM read_parquet('{path}')"), key=repr) == expected, (
                relation
            )
            assert next(f["rows"] for f in done["files"] if f["table"] == relation) == len(expected)
            assert mode(path) == 0o600
        assert read(":memory:", f"SELECT id FROM read_parquet('{folder / 'outbox.parquet'}')") == [(queued,)]
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r}.parquet" for r in RELATIONS)

    def test_csv_has_the_views_columns_and_rows(self, cli: Cli, tmp_path):
        """CSV from PostgreSQL: a header naming the view's columns and one line per row."""
        cli.ok("sync")
        folder = tmp_path / "csv"
        cli.ok("export", "--format", "csv", "--to", str(folder), "--tables", "conversation_metrics")
        lines = (folder / "conversation_metrics.csv").read_text().splitlines()
        columns = [
            r[0]
            for r in cli.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'conversation_metrics' ORDER BY ordinal_position"
            )
        ]
        assert lines[0].split(",") == columns
        assert len(lines) - 1 == cli.query("SELECT count(*) FROM conversation_metrics")[0][0] > 0
