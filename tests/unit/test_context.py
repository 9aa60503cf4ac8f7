"""The Context: one process-wide rate budget shared by every client its factory builds."""

from __future__ import annotations

from gladly_sync.sync.context import Context

from tests.cli import make_settings


class TestSharedPacer:
    def test_every_client_of_a_context_shares_one_pacer(self, tmp_path):
        """Clients built for different jobs and runs pace against the same per-method slots."""
        ctx = Context.from_settings(make_settings(tmp_path))
        first, second = ctx.client_factory(), ctx.client_factory()
        try:
            assert ctx.pacer is not None
            assert first._pacer is ctx.pacer and second._pacer is ctx.pacer
            assert ctx.pacer.requests_per_second == ctx.settings.gladly.requests_per_second
            ctx.pacer._clock = lambda: 0.0
            ctx.pacer._sleep = lambda _: None
            assert [first._pacer.acquire("GET"), second._pacer.acquire("GET")] == [0.0, ctx.pacer.interval]
        finally:
            first.close()
            second.close()
