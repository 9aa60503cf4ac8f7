"""The test PostgreSQL cluster itself: it starts, it isolates tests, it stops."""

from __future__ import annotations

import psycopg
import pytest

from tests.pg import PostgresCluster


class TestCluster:
    def test_schema_per_test(self, postgres_schema):
        """Each test gets an empty schema of its own in the session's database."""
        with psycopg.connect(postgres_schema.url) as con:
            tables = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
                [postgres_schema.schema],
            ).fetchone()
            version = con.execute("SHOW server_version_num").fetchone()
        assert tables == (0,)
        assert int(version[0]) >= 150000

    def test_tcp_and_socket(self, postgres_cluster):
        """The cluster answers on its Unix socket and on 127.0.0.1."""
        for url in (postgres_cluster.url(), postgres_cluster.tcp_url()):
            with psycopg.connect(url) as con:
                assert con.execute("SELECT 1").fetchone() == (1,)

    def test_stop_removes_everything(self):
        """A stopped cluster leaves no server and no folder behind."""
        cluster = PostgresCluster().start()
        url = cluster.url()
        cluster.stop()
        assert not cluster.folder.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)


class TestUnavailable:
    def test_ci_fails_instead_of_skipping(self, monkeypatch):
        """With CI=true a missing PostgreSQL fails the test; elsewhere it skips, saying why."""
        from tests.conftest import _unavailable

        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="required in CI.*no initdb"):
            _unavailable("no initdb")
        monkeypatch.delenv("CI")
        with pytest.raises(pytest.skip.Exception, match="PostgreSQL unavailable: no initdb"):
            _unavailable("no initdb")

    def test_missing_binaries_are_named(self, monkeypatch):
        """A machine without initdb gets ClusterUnavailable naming the binary and what to install."""
        import tests.pg as pg

        monkeypatch.setattr(pg.shutil, "which", lambda name: None)
        monkeypatch.setattr(pg, "_BIN_DIRS", ("/nonexistent",))
        with pytest.raises(pg.ClusterUnavailable, match="initdb not found.*install postgresql"):
            pg._binary("initdb")
