"""One outbox drain pass: deliver queued replies, notes and escalations to Gladly, effectively once.

Gladly takes no idempotency key on replies or notes, so a blind retry would send the customer a
second message. The drain therefore:

1. marks a row ``sending`` (with ``last_attempt_at``) and commits BEFORE its request, so a crash
   leaves evidence: rows found ``sending`` when a drain starts, their attempt older than the
   request timeout (``gladly.timeout_seconds``), become ``unknown``;
2. never resends a row whose outcome is ``unknown`` before reconciling it (``reconcile``): its
   item is looked for among the conversation's items (authored by our API user's agent id only);
   found → ``sent``; not found → sent again only once ``outbox.unknown_settle`` has passed since
   the attempt (Gladly may apply a request after our timeout fired), every drain meanwhile looking
   again with one GET; unverifiable (a capped list without evidence) → checked again 10 minutes
   later (``outbox cancel`` it once checked by hand in Gladly);
3. maps each outcome: 201 → ``sent``; 429 (after the client's own retries, and ours until the
   drain's deadline) and errors that prove the request never left → ``pending`` with a backoff,
   not counted; 400/404 → ``failed`` with Gladly's code and detail; 401/403 → the row goes back to
   ``pending`` and the drain stops (the error is re-raised; the CLI exits 3); anything that may
   have reached Gladly → ``unknown``. ``attempts`` counts only requests that may have reached
   Gladly; a row is ``failed`` instead of being sent an ``outbox.max_attempts + 1``-th time.

An escalation is one row: its optional note first (its item id is stored at once, so a later
attempt resumes at the move and never sends the note twice), then ``GET`` the conversation,
``PATCH`` the assignee (reopening a CLOSED conversation in the same request; on 400
``invalid_state``, reopen and reassign in two PATCHes), and verify with ``GET``. A verified move is
``sent`` with ``gladly_item_id`` NULL (the note's id is in ``note_item_id``); a move the GET does not
confirm is ``unknown`` and redone by the next drain (PATCH is idempotent).

Per conversation, rows go out in queue order (one worker owns a conversation at a time); up to four
conversations are worked on at once, so the client's pacer, not the round trips, sets the pace.
Every database write is its own short transaction of the outbox database; none is held during a
request, and the DuckDB store is not touched (except the run record).

Two drains at once (a cron ``drain`` beside a daemon, two replicas) never send one row twice: a
claim is a compare-and-set on the row as the drain saw it, and a ``sending`` row is taken for a
crashed one only when its attempt is older than the request timeout (a live drain restamps a row
it keeps retrying on 429).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from gladly_sync.storage import outbox
from gladly_sync.sync.context import Context
from gladly_sync.sync.logs import ContextPool
from gladly_sync.sync.outbox.payloads import escalation_patch, note_body, reply_content
from gladly_sync.sync.outbox.reconcile import (
    Found,
    Gone,
    Missing,
    Reconciler,
    Unverifiable,
    claimed_ids_from,
    gladly_said,
    settled,
)
from gladly_sync.sync.runs import run_job

from gladly_sync.errors import (
    AuthError,
    DeadlineExceeded,
    GladlyError,
    Interrupted,
    NeverSent,
    RateLimited,
    Rejected,
    TransientError,
    UnknownOutcome,
)

__all__ = ["DrainSummary", "drain_once"]

T = TypeVar("T")

WORKERS = 4
MAX_RETRY_DELAY = 300.0  # seconds: min(5 min, 1 s * 2^n)
UNVERIFIABLE_RECHECK = timedelta(minutes=10)


@dataclass(frozen=True)
class DrainSummary:
    sent: int = 0
    retried: int = 0  # rows put back to pending for a later drain
    unknown: int = 0
    failed: int = 0
    reconciled: int = 0  # unknown rows found in Gladly (marked sent, or an escalation's note)
    settling: int = 0  # unknown rows not found yet, inside outbox.unknown_settle: looked at again later
    skipped_disabled: bool = False
    requests: int = 0
    rate_limited: int = 0


def drain_once(
    ctx: Context,
    *,
    deadline_seconds: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    workers: int = WORKERS,
) -> DrainSummary:
    """One pass over the due outbox rows; returns what happened. ``AuthError`` stops it (re-raised)."""
    if not ctx.settings.outbox.enabled:
        ctx.log.info("outbox_disabled", reason="outbox.enabled is false; nothing sent")
        return DrainSummary(skipped_disabled=True)
    started = ctx.clock()
    with run_job(ctx, "drain") as run, ctx.client_factory() as client:
        timeout = timedelta(seconds=ctx.settings.gladly.timeout_seconds)
        with ctx.outbox.transaction() as con:
            recovered = outbox.recover_stale_sending(con, started, older_than=timeout)
        if recovered:
            ctx.log.warning("outbox_recovered_sending", actions=recovered)
        drain = _Drain(
            ctx,
            client,
            deadline=started + timedelta(seconds=deadline_seconds),
            sleep=sleep,
            rng=rng or random.Random(),
        )
        try:
            drain.run(workers)
        except BaseException as exc:
            stopped = drain.summary(requests=client.requests, rate_limited=client.rate_limited)
            ctx.log.error("drain_stopped", error=type(exc).__name__, **_counts(stopped), recovered=recovered)
            run.requests, run.rate_limited = client.requests, client.rate_limited
            raise
        summary = drain.summary(requests=client.requests, rate_limited=client.rate_limited)
        run.requests, run.rate_limited = client.requests, client.rate_limited
        run.rows = {"outbox": summary.sent + summary.failed + summary.unknown + summary.reconciled}
    ctx.log.info("drain_finished", run_id=run.run_id, **_counts(summary), recovered=recovered)
    return summary


def _counts(summary: DrainSummary) -> dict[str, int]:
    return {
        "sent": summary.sent,
        "retried": summary.retried,
        "unknown": summary.unknown,
        "failed": summary.failed,
        "reconciled": summary.reconciled,
        "settling": summary.settling,
        "requests": summary.requests,
        "rate_limited": summary.rate_limited,
    }


@dataclass
class _Attempt:
    reached: bool = False  # a request that changes Gladly may have reached it


class _Drain:
    def __init__(
        self,
        ctx: Context,
        client: Any,
        *,
        deadline: datetime,
        sleep: Callable[[float], None],
        rng: random.Random,
    ):
        self.ctx = ctx
        self.client = client
        self.log = ctx.log
        self.deadline = deadline
        self.max_attempts = ctx.settings.outbox.max_attempts
        self._sleep = sleep
        self._rng = rng
        self._rng_lock = threading.Lock()
        self._stop = threading.Event()
        self._counts_lock = threading.Lock()
        self._counts = dict.fromkeys(("sent", "retried", "unknown", "failed", "reconciled", "settling"), 0)
        self.settle = ctx.settings.outbox.unknown_settle
        self.reconciler = Reconciler(
            client,
            email=ctx.settings.gladly.email,
            claimed_ids=claimed_ids_from(ctx.outbox),
            call=self._call,
            clock=ctx.clock,
            log=ctx.log,
        )

    # ------------------------------------------------------------------ the pass

    def run(self, workers: int) -> None:
        heads = self._tx(lambda con: outbox.due_actions(con, self.ctx.clock()))
        conversations = list(dict.fromkeys(row["conversation_id"] for row in heads))
        if not conversations:
            return
        errors: list[BaseException] = []
        with ContextPool(max_workers=max(1, min(workers, len(conversations)))) as pool:
            futures = [pool.submit(self._work_conversation, conv) for conv in conversations]
            for future in futures:
                error = future.exception()
                if error is not None:
                    errors.append(error)
        if errors:
            # An auth failure is the reason to stop; report it first (the CLI exits 3).
            raise next((e for e in errors if isinstance(e, AuthError)), errors[0])

    def summary(self, *, requests: int, rate_limited: int) -> DrainSummary:
        with self._counts_lock:
            return DrainSummary(**self._counts, requests=requests, rate_limited=rate_limited)

    def _work_conversation(self, conversation_id: str) -> None:
        """Work the conversation's rows in queue order until one is left open or none is due."""
        seen: set[str] = set()
        try:
            while not self._stopping():
                row, claimed = self._tx(lambda con: self._next(con, conversation_id, seen))
                if row is None:
                    return
                seen.add(row["id"])
                if not self._process(row, claimed):
                    return
        except BaseException:
            self._stop.set()
            raise

    def _next(
        self, con: Any, conversation_id: str, seen: set[str]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The conversation's next due row, already claimed (``sending``) when it is a plain send."""
        now = self.ctx.clock()
        heads = outbox.due_actions(con, now, conversation_id=conversation_id)
        if not heads or heads[0]["id"] in seen:
            return None, None
        row = heads[0]
        if row["status"] != "pending" or row["attempts"] >= self.max_attempts or not _payload_ok(row):
            return row, None
        return row, outbox.mark_sending(con, row["id"], now, seen=row)

    def _tx(self, op: Callable[[Any], T]) -> T:
        """Run ``op`` in one short transaction of the outbox database."""
        with self.ctx.outbox.transaction() as con:
            return op(con)

    def _stopping(self) -> bool:
        return self._stop.is_set() or self.ctx.shutdown.requested or self.ctx.clock() >= self.deadline

    # ------------------------------------------------------------------ one row

    def _process(self, row: dict[str, Any], claimed: dict[str, Any] | None) -> bool:
        """Work one row; True when it is settled (sent, failed, gone) and the next row may follow."""
        if claimed is not None:
            return self._send(row, claimed)
        if row["status"] == "unknown" and not self._move_only(row):
            outcome = self._reconcile(row)
            if not isinstance(outcome, dict):
                return outcome
            row = outcome
        if row["attempts"] >= self.max_attempts:
            error = f"gave up after {row['attempts']} attempts" + (
                f"; last error: {row['last_error']}" if row["last_error"] else ""
            )
            return self._fail(row, error)
        return self._send(row)

    def _reconcile(self, row: dict[str, Any]) -> dict[str, Any] | bool:
        """Settle an ``unknown`` row from what Gladly holds: the row to send (again, or an
        escalation's move) or, when this drain is done with it, whether it is settled."""
        verdict = self.reconciler.verdict(row)
        now = self.ctx.clock()
        if verdict is None:  # could not read Gladly now; try again next drain
            return False
        if isinstance(verdict, Gone):
            return self._fail(row, verdict.reason)
        if isinstance(verdict, Unverifiable):
            recheck = now + UNVERIFIABLE_RECHECK
            self._tx(lambda con: outbox.mark_unknown(con, row["id"], verdict.reason, next_attempt_at=recheck))
            self._count("unknown")
            self.log.warning("outbox_unverifiable", **_ids(row), attempts=row["attempts"])
            return False
        if isinstance(verdict, Missing):
            if settled(row, now, self.settle):
                return row
            return self._settling(row, now)
        assert isinstance(verdict, Found)
        self._count("reconciled")
        self.log.info("outbox_reconciled", **_ids(row), gladly_item_id=verdict.item_id)
        if row["kind"] != "escalation":
            self._tx(lambda con: outbox.mark_sent(con, row["id"], verdict.item_id, now))
            return True
        return self._tx(lambda con: outbox.record_note_sent(con, row["id"], verdict.item_id))

    def _settling(self, row: dict[str, Any], now: datetime) -> bool:
        """Not in Gladly yet, inside the settle period: stays ``unknown``; the next drain looks again."""
        attempted = row["last_attempt_at"] or row["created_at"]
        error = (
            f"not found in Gladly as of {now.isoformat(timespec='seconds')}; Gladly may still apply the "
            f"request, so it is sent again only if still missing at "
            f"{(attempted + self.settle).isoformat(timespec='seconds')} (outbox.unknown_settle)"
        )
        self._tx(lambda con: outbox.mark_unknown(con, row["id"], error))
        self._count("settling")
        self.log.info("outbox_settling", **_ids(row), attempts=row["attempts"])
        return False

    @staticmethod
    def _move_only(row: dict[str, Any]) -> bool:
        """An escalation whose note is done (or that has none): its unknown step is the idempotent move."""
        return row["kind"] == "escalation" and (bool(row["note_item_id"]) or not row["body"])

    def _send(self, row: dict[str, Any], claimed: dict[str, Any] | None = None) -> bool:
        """Claim the row (``sending``, committed) unless already claimed, make its requests, and
        record the outcome."""
        if not _payload_ok(row):
            return self._fail(row, f"cannot reply on channel {row['channel']!r}")
        content = reply_content(row) if row["kind"] == "reply" else None
        if claimed is None:
            claimed = self._tx(lambda con: outbox.mark_sending(con, row["id"], self.ctx.clock(), seen=row))
        if claimed is None:  # cancelled, settled or taken by another drain meanwhile
            return False
        attempt = _Attempt()
        try:
            if row["kind"] == "reply":
                attempt.reached = True
                item_id = self._call(
                    lambda: self.client.reply(row["reply_to_item_id"], content), claimed_id=row["id"]
                )
            elif row["kind"] == "note":
                attempt.reached = True
                item_id = self._call(
                    lambda: self.client.add_note(row["conversation_id"], note_body(row["body"])),
                    claimed_id=row["id"],
                )
            else:
                return self._escalate(claimed, attempt)
        except AuthError as exc:
            error = str(exc)
            self._tx(
                lambda con: outbox.mark_pending(con, row["id"], self.ctx.clock(), error, counted=False)
            )
            self._count("retried")
            self._stop.set()
            self.log.error("outbox_auth_failed", **_ids(row), status=exc.status)
            raise
        except (RateLimited, NeverSent, DeadlineExceeded, Interrupted) as exc:  # nothing reached Gladly
            return self._defer(row, exc, counted=False)
        except UnknownOutcome as exc:
            return self._unknown(claimed, str(exc))
        except Rejected as exc:
            return self._fail(claimed, gladly_said(exc), status=exc.status, code=exc.code)
        except TransientError as exc:  # a GET/PATCH the client gave up on; a PATCH may have applied
            return self._defer(row, exc, counted=attempt.reached)
        except GladlyError as exc:  # e.g. a 201 without a usable Location: the item may well exist
            return self._unknown(claimed, str(exc))
        self._tx(lambda con: outbox.mark_sent(con, row["id"], item_id, self.ctx.clock()))
        self._count("sent")
        self.log.info("outbox_sent", **_ids(row), gladly_item_id=item_id, attempts=claimed["attempts"])
        return True

    def _escalate(self, row: dict[str, Any], attempt: _Attempt) -> bool:
        """The note (once), then the move, verified; True when the row is ``sent``."""
        conversation_id = row["conversation_id"]
        target = row["target_inbox_id"]
        if row["body"] and not row["note_item_id"]:
            attempt.reached = True
            note_id = self._call(
                lambda: self.client.add_note(conversation_id, note_body(row["body"])), claimed_id=row["id"]
            )
            row = self._tx(lambda con: outbox.record_note_sent(con, row["id"], note_id))
            self.log.info("outbox_note_sent", **_ids(row), gladly_item_id=note_id)
        conversation = self._call(lambda: self.client.get_conversation(conversation_id))
        attempt.reached = True
        try:
            patch = escalation_patch(conversation, target)
            self._call(lambda: self.client.update_conversation(conversation_id, patch))
        except Rejected as exc:
            if exc.status != 400 or exc.code != "invalid_state":
                raise
            # "closed conversation cannot be reassigned": reopen first, then move.
            self._call(
                lambda: self.client.update_conversation(conversation_id, {"status": {"value": "OPEN"}})
            )
            self._call(
                lambda: self.client.update_conversation(conversation_id, {"assignee": {"inboxId": target}})
            )
        after = self._call(lambda: self.client.get_conversation(conversation_id))
        if after.get("inboxId") != target:
            return self._unknown(
                row,
                f"after the move the conversation is in inbox {after.get('inboxId')}, not {target}; "
                "the move is retried by the next drain",
            )
        self._tx(lambda con: outbox.mark_sent(con, row["id"], None, self.ctx.clock()))
        self._count("sent")
        self.log.info(
            "outbox_sent",
            **_ids(row),
            inbox_id=target,
            note_item_id=row["note_item_id"],
            attempts=row["attempts"],
        )
        return True

    # ------------------------------------------------------------------ outcomes

    def _fail(self, row: dict[str, Any], error: str, **fields: Any) -> bool:
        self._tx(lambda con: outbox.mark_failed(con, row["id"], error))
        self._count("failed")
        self.log.warning("outbox_failed", **_ids(row), attempts=row["attempts"], **fields)
        return True

    def _unknown(self, row: dict[str, Any], error: str) -> bool:
        self._tx(lambda con: outbox.mark_unknown(con, row["id"], error))
        self._count("unknown")
        self.log.warning("outbox_unknown", **_ids(row), attempts=row["attempts"])
        return False

    def _defer(self, row: dict[str, Any], exc: GladlyError, *, counted: bool) -> bool:
        """Back to ``pending`` with ``next_attempt_at = now + min(5 min, 1 s * 2^n) +/- 20 %``.

        ``row`` is the row as it was before this attempt. ``n`` grows with each consecutive deferral:
        the previous delay (``next_attempt_at - last_attempt_at``) is doubled; a first deferral waits
        ``2^attempts`` seconds. ``counted`` rows that reach ``max_attempts`` are ``failed`` instead.
        """
        now = self.ctx.clock()
        previous = None
        if row["next_attempt_at"] is not None and row["last_attempt_at"] is not None:
            previous = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
        base = 2.0 * previous if previous and previous > 0 else 2.0 ** min(row["attempts"], 16)
        base = max(1.0, min(MAX_RETRY_DELAY, base))
        with self._rng_lock:
            delay = base * self._rng.uniform(0.8, 1.2)
        retry_at = now + timedelta(seconds=delay)
        updated = self._tx(lambda con: outbox.mark_pending(con, row["id"], retry_at, str(exc), counted))
        if updated is not None and counted and updated["attempts"] >= self.max_attempts:
            return self._fail(updated, f"gave up after {updated['attempts']} attempts; last error: {exc}")
        self._count("retried")
        self.log.info(
            "outbox_deferred",
            **_ids(row),
            error=type(exc).__name__,
            status=exc.status,
            delay=round(delay, 1),
            counted=counted,
        )
        return False

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    # ------------------------------------------------------------------ requests

    def _call(self, request: Callable[[], T], *, claimed_id: str | None = None) -> T:
        """Run a request; after the client's own 429 retries, keep retrying it until the deadline.

        ``claimed_id``: the ``sending`` row the request is for, restamped before each retry so it
        never looks like a crashed drain's row to another drain."""
        tries = 0
        while True:
            try:
                return request()
            except RateLimited:
                with self._rng_lock:
                    delay = self._rng.uniform(0.0, min(30.0, 0.5 * 2.0**tries))
                if self._stop.is_set() or self.ctx.clock() + timedelta(seconds=delay) >= self.deadline:
                    raise
                self._sleep(delay)
                tries += 1
                if claimed_id is not None:
                    self._tx(lambda con: outbox.touch_attempt(con, claimed_id, self.ctx.clock()))


def _payload_ok(row: dict[str, Any]) -> bool:
    """Whether a request body can be built for the row (a reply needs a channel Gladly replies on)."""
    if row["kind"] != "reply":
        return True
    try:
        reply_content(row)
    except ValueError:
        return False
    return True


def _ids(row: dict[str, Any]) -> dict[str, Any]:
    return {"action_id": row["id"], "kind": row["kind"], "conversation_id": row["conversation_id"]}
