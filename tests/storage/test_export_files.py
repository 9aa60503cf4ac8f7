"""Files for BI tools: which relations are written, where, and with which permissions."""

from __future__ import annotations

import stat

import duckdb
import pytest
from gladly_sync.storage.database import Database
from gladly_sync.storage.export_files import RELATIONS, choose_relations, export_relations

from gladly_sync.errors import NotFound, UsageError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestChooseRelations:
    def test_default_is_every_analyst_table_and_view(self):
        """Without --tables every analyst table and view is written, bookkeeping never."""
        assert choose_relations(None) == list(RELATIONS)
        assert "sync_runs" not in RELATIONS and "daily_volume" in RELATIONS

    def test_names_come_space_or_comma_separated_each_once(self):
        """--tables a,b c a → a, b, c in the order given."""
        assert choose_relations(["daily_volume,customers", "organization", "daily_volume"]) == [
            "daily_volume",
            "customers",
            "organization",
        ]

    @pytest.mark.parametrize("names", [["sync_state"], ["customers,nope"], [","]])
    def test_anything_else_is_a_usage_error_listing_the_choices(self, names):
        """An unknown or empty name exits 2 and lists what may be exported."""
        with pytest.raises(UsageError) as caught:
            choose_relations(names)
        assert caught.value.exit_code == 2 and "conversation_metrics" in str(caught.value)


class TestExportRelations:
    def test_an_existing_folder_keeps_its_mode_and_files_are_private(self, tmp_path):
        """Only folders export creates are made 0700; every file it writes is 0600."""
        folder = tmp_path / "shared"
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
        with Database(tmp_path / "store.duckdb").connect() as con:
            written = export_relations(con, folder, "csv", ["organization"])
        assert [(f.relation, f.rows) for f in written] == [("organization", 0)]
        assert mode(folder) == 0o755 and mode(folder / "organization.csv") == 0o600

    def test_a_store_without_the_views_says_to_sync(self, tmp_path):
        """A store from before the analyst views names what is missing and what to run."""
        with duckdb.connect() as con, pytest.raises(NotFound) as caught:
            export_relations(con, tmp_path / "out", "parquet", ["daily_volume"])
        assert "no daily_volume" in str(caught.value) and "gladly-sync sync" in str(caught.value)
        assert not (tmp_path / "out").exists()

    def test_a_file_in_the_way_of_the_folder_is_a_usage_error(self, tmp_path):
        """--to naming a file is refused before anything is written."""
        (tmp_path / "file").write_text("x")
        with Database(tmp_path / "store.duckdb").connect() as con, pytest.raises(UsageError):
            export_relations(con, tmp_path / "file", "csv", ["organization"])
