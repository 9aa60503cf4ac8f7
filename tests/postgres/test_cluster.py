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
