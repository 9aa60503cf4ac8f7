"""The rate budget (Pacer) and the retry delays (Backoff)."""

from __future__ import annotations

import random
import threading

import pytest
from gladly_sync.sync.pacer import Backoff, Pacer

from tests.clocks import MonotonicClock


def pacer_at(rps: float, clock: MonotonicClock) -> Pacer:
    return Pacer(rps, clock=clock, sleep=clock.sleep)


class TestPacer:
    def test_sequential_callers_reach_exactly_the_rate(self):
        """10 back-to-back acquires at 10 req/s sleep 0.9 s in all and use ten distinct 0.1 s slots."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        sent = []
        for _ in range(10):
            pacer.acquire("GET")
            sent.append(clock())  # the moment the request goes out
        assert sum(clock.sleeps) == pytest.approx(0.9)
        assert len({round(t * 10) for t in sent}) == 10
        assert all(b - a == pytest.approx(0.1) for a, b in zip(sent, sent[1:], strict=False))

    def test_slow_requests_are_not_slowed_further(self):
        """A caller whose requests take longer than a slot never sleeps."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        for _ in range(5):
            pacer.acquire("GET")
            clock.now += 0.25  # the request itself
        assert clock.sleeps == []

    def test_requests_shorter_than_a_slot_still_get_the_full_rate(self):
        """Time spent in the request counts toward the slot: sleep only the remainder."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        pacer.acquire("GET")
        clock.now += 0.04
        pacer.acquire("GET")
        assert clock.sleeps == [pytest.approx(0.06)]

    def test_each_method_has_its_own_budget(self):
        """Gladly counts per HTTP method, so a GET never waits for a POST."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        assert [pacer.acquire(method) for method in ("GET", "POST", "patch", "PATCH")] == [0.0, 0.0, 0.0, 0.1]

    def test_concurrent_callers_never_share_a_slot(self):
        """Eight threads acquiring at once get evenly spaced slots: no burst above the rate."""
        clock = MonotonicClock(advance_on_sleep=False)
        pacer = pacer_at(10, clock)
        slots: list[float] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def worker():
            start.wait()
            for _ in range(5):
                slot = pacer.acquire("GET")
                with lock:
                    slots.append(slot)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(round(slot, 6) for slot in slots) == [round(n * 0.1, 6) for n in range(40)]

    def test_no_one_second_window_holds_more_than_the_rate(self):
        """Any 1 s window of send times holds at most requests_per_second requests."""
        clock = MonotonicClock()
        pacer = pacer_at(8, clock)
        sent = [pacer.acquire("GET") for _ in range(40)]
        assert max(sum(1 for t in sent if start <= t < start + 1 - 1e-9) for start in sent) == 8

    def test_remaining_zero_waits_one_second_after_our_earliest_recent_request(self):
        """Others spent the org's budget: wait until 1 s after our earliest request of the last second."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        pacer.acquire("GET")  # sent at 0.0
        clock.now = 0.05
        pacer.observe("GET", 0)
        assert pacer.acquire("GET") == pytest.approx(1.0)

    def test_remaining_zero_costs_nothing_when_we_alone_use_the_budget(self):
        """At exactly the limit, the tenth request's remaining=0 leaves the eleventh slot where it was."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        for _ in range(10):
            pacer.acquire("GET")
        clock.now += 0.01
        pacer.observe("GET", 0)
        assert pacer.acquire("GET") == pytest.approx(1.0)

    def test_requests_older_than_a_second_do_not_steer(self):
        """Only our requests within the last second count; otherwise the next slot is one interval away."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        pacer.acquire("GET")
        clock.now = 5.0
        pacer.observe("GET", 0)
        assert pacer.acquire("GET") == pytest.approx(5.1)

    @pytest.mark.parametrize("remaining", [None, 9, 20])
    def test_a_remaining_budget_at_or_above_our_share_changes_nothing(self, remaining):
        """Remaining plus our own requests of the last second at or above our share: pacing as before."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        pacer.acquire("GET")
        pacer.observe("GET", remaining)
        assert pacer.acquire("GET") == pytest.approx(0.1)

    @pytest.mark.parametrize(("remaining", "slot"), [(7, 1 / 8), (4, 1 / 5), (1, 1 / 2)])
    def test_a_remaining_budget_below_our_share_slows_us_to_what_is_left(self, remaining, slot):
        """Others use part of our share (remaining + ours < requests_per_second): the next slot
        paces at what they leave us, before the budget is spent."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        pacer.acquire("GET")  # ours within the second: 1
        pacer.observe("GET", remaining)
        assert pacer.acquire("GET") == pytest.approx(slot)

    def test_our_own_requests_do_not_count_against_us(self):
        """Alone at exactly our share, the falling remaining is our own doing: no slowdown."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        slots = []
        for sent in range(10):
            slots.append(pacer.acquire("GET"))
            pacer.observe("GET", 9 - sent)
        assert slots == pytest.approx([n / 10 for n in range(10)])

    def test_remaining_zero_steers_only_that_method(self):
        """An exhausted GET budget does not hold back POSTs."""
        clock = MonotonicClock()
        pacer = pacer_at(10, clock)
        pacer.acquire("GET")
        pacer.observe("GET", 0)
        assert pacer.acquire("POST") == 0.0

    def test_penalize_holds_back_the_method(self):
        """After a 429 the method's next slot is pushed back by the given delay."""
        clock = MonotonicClock(advance_on_sleep=False)
        pacer = pacer_at(10, clock)
        pacer.acquire("POST")
        pacer.penalize("POST", 2.5)
        assert pacer.acquire("POST") == pytest.approx(2.5)
        assert pacer.acquire("GET") == 0.0

    def test_penalize_never_pulls_a_slot_forward(self):
        """A short penalty does not undo a later slot already reserved."""
        clock = MonotonicClock(advance_on_sleep=False)
        pacer = pacer_at(1, clock)
        pacer.acquire("GET")
        pacer.acquire("GET")  # reserves 1.0; the next is 2.0
        pacer.penalize("GET", 0.5)
        assert pacer.acquire("GET") == pytest.approx(2.0)

    @pytest.mark.parametrize("rps", [0, -1, float("nan")])
    def test_rate_must_be_positive(self, rps):
        """A non-positive rate is refused."""
        with pytest.raises(ValueError):
            Pacer(rps)


class RecordingRandom(random.Random):
    def __init__(self):
        super().__init__(1)
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a, b):
        self.bounds.append((a, b))
        return super().uniform(a, b)


class TestBackoff:
    @pytest.mark.parametrize(
        ("attempt", "ceiling"),
        [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (20, 30.0), (10_000, 30.0)],
    )
    def test_full_jitter_draws_between_zero_and_the_capped_exponential(self, attempt, ceiling):
        """delay(n) is uniform in [0, min(cap, base * 2**n)]."""
        rng = RecordingRandom()
        backoff = Backoff(base=0.5, cap=30.0, rng=rng)
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert rng.bounds[0] == (0.0, ceiling)
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 2  # spread over the whole range, not a fixed step

    def test_seeded_rng_makes_delays_reproducible(self):
        """The same seed gives the same delays (tests inject one)."""
        first = [Backoff(rng=random.Random(3)).delay(n) for n in range(6)]
        second = [Backoff(rng=random.Random(3)).delay(n) for n in range(6)]
        assert first == second
