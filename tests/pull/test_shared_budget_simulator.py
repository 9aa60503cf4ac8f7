"""The daemon's jobs share one rate budget: sync and drain running side by side against the
simulator's per-method limiter stay within requests_per_second per method together."""

from __future__ import annotations

import threading
from datetime import timedelta

from gladly_sync.simulator import Simulator
from gladly_sync.sync.context import Context
from gladly_sync.sync.daemon import Daemon, Job
from gladly_sync.sync.outbox.drain import drain_once
from gladly_sync.sync.pull.run import sync_once

from gladly_sync import Store
from gladly_sync.config import load_settings
from tests.pull.test_pull_simulator import write_config

SHARE = 8  # requests_per_second: our share of the simulator's 10 per method
HOUR = timedelta(hours=1)


def busiest_second(times: list[float]) -> int:
    """The most requests in any half-open one-second window."""
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0)


class TestOneBudgetPerProcess:
    def test_sync_and_drain_together_stay_within_the_share(self, tmp_path):
        """With 24 changed conversations to sync and 12 escalations to drain at once, the GETs of
        both jobs together never exceed requests_per_second in any second, and none is refused."""
        with Simulator(seed=4, customers=30, conversations=40, rate_limit_per_second=10) as sim:
            world = sim.world
            escalation = world.inbox_id("Escalations")
            config = write_config(tmp_path, sim, requests_per_second=SHARE, escalation=escalation)
            settings = load_settings(config, environ={})
            ctx = Context.from_settings(settings)
            sync_once(ctx)
            store = Store.from_config(config)  # the outbox the daemon's drain reads
            conversations = [c["id"] for c in world.conversations()]
            for conversation_id in conversations[:12]:
                store.enqueue_escalation(conversation_id)
            for conversation_id in conversations[12:36]:
                world.add_note(conversation_id, "seen by a supervisor")
            sim.reset_requests()

            done = {name: threading.Event() for name in ("sync", "drain")}

            def job(name, function):
                def run(context):
                    try:
                        function(context)
                    finally:
                        done[name].set()

                return Job(name, run, HOUR)

            daemon = Daemon(ctx, jobs=[job("sync", sync_once), job("drain", drain_once)])
            thread = threading.Thread(target=daemon.serve, kwargs={"install_signals": False})
            thread.start()
            try:
                assert all(event.wait(60) for event in done.values())
            finally:
                daemon.stop()
                thread.join(30)
            requests = sim.requests
        gets = [r.timestamp for r in requests if r.method == "GET"]
        assert len(gets) > 3 * SHARE  # long enough to measure
        assert [r for r in requests if r.status == 429] == []
        # Slots are 1/SHARE s apart; arrival jitter on a loaded machine may squeeze one more in.
        assert busiest_second(gets) <= SHARE + 1
        assert any(r.method == "PATCH" and r.status == 204 for r in requests)  # the drain did move some
