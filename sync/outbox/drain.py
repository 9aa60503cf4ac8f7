"""One outbox drain pass: deliver queued replies, notes and escalations to Gladly, effectively once.

Gladly takes no idempotency key on replies or notes, so a blind retry would send the customer a
second message. The drain therefore:

1. marks a row ``sending`` (with ``last_attempt_at``) and commits BEFORE its request, so a crash
   leaves evidence: rows found ``sending`` when a drain starts become ``unknown``;
2. never resends a row whose outcome is ``unknown`` before reconciling it: it reads the
   conversation's items and looks for one authored by our API user (AGENT with our agent id, or
   API), no earlier than ``last_attempt_at`` minus 2 minutes, whose normalised text equals the
   queued body and that no other row has claimed. Found → ``sent``. Not found → sent again (a new
   attempt). When the list is capped (1000 items) the events of the last 24 h are searched too;
   when even they cannot settle it the row stays ``unknown``, ``last_error`` says so, and it is
   checked again 10 minutes later (``outbox cancel`` it once checked by hand in Gladly);
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
Every database write is its own short transaction (the workers take turns for those); no connection
is held during a request.

Only one drain may run at a time (the CLI and the scheduler make sure): a second drain would take
the first one's in-flight rows for crashed ones.
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
from gladly_sync.sync.outbox.payloads import (
    escalation_patch,
    normalise_text,
    note_body,
    reply_content,
    reply_text,
)
from gladly_sync.sync.runs import run_job

from gladly_sync.errors import (
    AuthError,
    DeadlineExceeded,
    GladlyError,
    GladlyNotFound,
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
CLOCK_SKEW = timedelta(minutes=2)  # an item may carry a timestamp this much before our attempt
EVENTS_WINDOW = timedelta(hours=24) - timedelta(minutes=1)  # Gladly rejects startAt 24 h back exactly
MAX_RETRY_DELAY = 300.0  # seconds: min(5 min, 1 s * 2^n)
UNVERIFIABLE_RECHECK = timedelta(minutes=10)


@dataclass(frozen=True)
class DrainSummary:
    sent: int = 0
    retried: int = 0  # rows put back to pending for a later drain
    unknown: int = 0
    failed: int = 0
    reconciled: int = 0  # unknown rows found in Gladly (marked sent, or an escalation's note)
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
        with ctx.db.transaction() as con:
            recovered = outbox.recover_stale_sending(con, started)
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
        "requests": summary.requests,
        "rate_limited": summary.rate_limited,
    }


@dataclass
class _Attempt:
    reached: bool = False  # a request that changes Gladly may have reached it


class _Found:
    def __init__(self, item_id: str):
        self.item_id = item_id


class _Gone:
    def __init__(self, reason: str):
        self.reason = reason


class _Unverifiable:
    def __init__(self, reason: str):
        self.reason = reason


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
        self._counts = dict.fromkeys(("sent", "retried", "unknown", "failed", "reconciled"), 0)
        self._agent_lock = threading.Lock()
        self._agent: tuple[str | None] | None = None
        self._tx = _Transactions(ctx.db)

    # ------------------------------------------------------------------ the pass

    def run(self, workers: int) -> None:
        heads = self._tx.run(lambda con: outbox.due_actions(con, self.ctx.clock()))
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
                row, claimed = self._tx.run(lambda con: self._next(con, conversation_id, seen))
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
        return row, outbox.mark_sending(con, row["id"], now)

    def _stopping(self) -> bool:
        return self._stop.is_set() or self.ctx.shutdown.requested or self.ctx.clock() >= self.deadline

    # ------------------------------------------------------------------ one row

    def _process(self, row: dict[str, Any], claimed: dict[str, Any] | None) -> bool:
        """Work one row; True when it is settled (sent, failed, gone) and the next row may follow."""
        if claimed is not None:
            return self._send(row, claimed)
        if row["status"] == "unknown" and not self._move_only(row):
            verdict = self._reconcile(row)
            if verdict is None:  # could not read Gladly now; try again next drain
                return False
            if isinstance(verdict, _Gone):
                return self._fail(row, verdict.reason)
            if isinstance(verdict, _Unverifiable):
                recheck = self.ctx.clock() + UNVERIFIABLE_RECHECK
                self._tx.run(
                    lambda con: outbox.mark_unknown(con, row["id"], verdict.reason, next_attempt_at=recheck)
                )
                self._count("unknown")
                self.log.warning("outbox_unverifiable", **_ids(row), attempts=row["attempts"])
                return False
            if isinstance(verdict, _Found):
                self._count("reconciled")
                self.log.info("outbox_reconciled", **_ids(row), gladly_item_id=verdict.item_id)
                item_id = verdict.item_id
                if row["kind"] != "escalation":
                    self._tx.run(lambda con: outbox.mark_sent(con, row["id"], item_id, self.ctx.clock()))
                    return True
                row = self._tx.run(lambda con: outbox.record_note_sent(con, row["id"], item_id))
        if row["attempts"] >= self.max_attempts:
            error = f"gave up after {row['attempts']} attempts" + (
                f"; last error: {row['last_error']}" if row["last_error"] else ""
            )
            return self._fail(row, error)
        return self._send(row)

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
            claimed = self._tx.run(lambda con: outbox.mark_sending(con, row["id"], self.ctx.clock()))
        if claimed is None:  # cancelled or settled meanwhile
            return True
        attempt = _Attempt()
        try:
            if row["kind"] == "reply":
                attempt.reached = True
                item_id = self._call(lambda: self.client.reply(row["reply_to_item_id"], content))
            elif row["kind"] == "note":
                attempt.reached = True
                item_id = self._call(
                    lambda: self.client.add_note(row["conversation_id"], note_body(row["body"]))
                )
            else:
                return self._escalate(claimed, attempt)
        except AuthError as exc:
            error = str(exc)
            self._tx.run(
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
            return self._fail(claimed, _gladly_said(exc), status=exc.status, code=exc.code)
        except TransientError as exc:  # a GET/PATCH the client gave up on; a PATCH may have applied
            return self._defer(row, exc, counted=attempt.reached)
        except GladlyError as exc:  # e.g. a 201 without a usable Location: the item may well exist
            return self._unknown(claimed, str(exc))
        self._tx.run(lambda con: outbox.mark_sent(con, row["id"], item_id, self.ctx.clock()))
        self._count("sent")
        self.log.info("outbox_sent", **_ids(row), gladly_item_id=item_id, attempts=claimed["attempts"])
        return True

    def _escalate(self, row: dict[str, Any], attempt: _Attempt) -> bool:
        """The note (once), then the move, verified; True when the row is ``sent``."""
        conversation_id = row["conversation_id"]
        target = row["target_inbox_id"]
        if row["body"] and not row["note_item_id"]:
            attempt.reached = True
            note_id = self._call(lambda: self.client.add_note(conversation_id, note_body(row["body"])))
            row = self._tx.run(lambda con: outbox.record_note_sent(con, row["id"], note_id))
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
        self._tx.run(lambda con: outbox.mark_sent(con, row["id"], None, self.ctx.clock()))
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
        self._tx.run(lambda con: outbox.mark_failed(con, row["id"], error))
        self._count("failed")
        self.log.warning("outbox_failed", **_ids(row), attempts=row["attempts"], **fields)
        return True

    def _unknown(self, row: dict[str, Any], error: str) -> bool:
        self._tx.run(lambda con: outbox.mark_unknown(con, row["id"], error))
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
        updated = self._tx.run(lambda con: outbox.mark_pending(con, row["id"], retry_at, str(exc), counted))
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

    def _call(self, request: Callable[[], T]) -> T:
        """Run a request; after the client's own 429 retries, keep retrying it until the deadline."""
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

    # ------------------------------------------------------------------ reconciliation

    def _reconcile(self, row: dict[str, Any]) -> _Found | _Unverifiable | _Gone | bool | None:
        """Look for the row's item in Gladly: ``_Found``, ``False`` (not there: send again),
        ``_Unverifiable`` (cannot tell), or None (Gladly could not be read now)."""
        conversation_id = row["conversation_id"]
        try:
            agent_id = self._agent_id()
            page = self._call(lambda: self.client.list_conversation_items(conversation_id))
            claimed = self._tx.run(
                lambda con: outbox.claimed_item_ids(con, conversation_id, exclude_id=row["id"])
            )
            match = _Matcher(row, agent_id, claimed)
            for item in page.items:
                if match(item):
                    return _Found(item["id"])
            if not page.limited:
                if agent_id is None:
                    return _Unverifiable(
                        f"outcome cannot be verified: the API user {self.ctx.settings.gladly.email} is not "
                        "among Gladly's agents, so its items cannot be told apart; check gladly.email"
                    )
                return False
            return self._reconcile_from_events(row, match, {item.get("id") for item in page.items})
        except AuthError:
            self._stop.set()
            raise
        except GladlyNotFound as exc:
            return _Gone(f"the conversation is gone in Gladly ({_gladly_said(exc)}); cannot verify or send")
        except GladlyError as exc:
            self.log.warning(
                "outbox_reconcile_failed", **_ids(row), error=type(exc).__name__, status=exc.status
            )
            return None

    def _reconcile_from_events(
        self, row: dict[str, Any], match: _Matcher, listed: set[Any]
    ) -> _Found | _Unverifiable:
        now = self.ctx.clock()
        since = match.since
        if since < now - EVENTS_WINDOW:
            return _Unverifiable(
                "outcome cannot be verified: the conversation has more items than Gladly lists (1000) and "
                "the attempt is older than the 24 h events window; check the conversation in Gladly, "
                "then cancel this action (and queue it again if it was not sent)"
            )
        is_note = match.is_note
        events = self._call(
            lambda: self.client.list_events(since, now, ["CONVERSATION" if is_note else "CONTACT"])
        )
        wanted_type, id_key = (
            ("CONVERSATION/NOTE_CREATED", "noteId") if is_note else ("CONTACT/MESSAGE_SENT", "messageId")
        )
        candidates = []
        for event in events:
            content = event.get("content") or {}
            item_id = content.get(id_key)
            if (
                event.get("type") == wanted_type
                and content.get("conversationId") == row["conversation_id"]
                and item_id
                and item_id not in listed
                and item_id not in match.claimed
                and item_id not in candidates
            ):
                candidates.append(item_id)
        for item_id in candidates:
            try:
                item = self._call(lambda item_id=item_id: self.client.get_item(item_id))
            except GladlyNotFound:
                continue
            if match(item):
                return _Found(item["id"])
        return _Unverifiable(
            "outcome cannot be verified: the conversation has more items than Gladly lists (1000) and no "
            "matching item was found through the events of the last 24 h; check the conversation in "
            "Gladly, then cancel this action (and queue it again if it was not sent)"
        )

    def _agent_id(self) -> str | None:
        """Our API user's agent id (``GET /agents``, matched by email), read once per drain."""
        with self._agent_lock:
            if self._agent is None:
                email = self.ctx.settings.gladly.email.casefold()
                agents = self._call(self.client.list_agents)
                found = next(
                    (a.get("id") for a in agents if str(a.get("emailAddress") or "").casefold() == email),
                    None,
                )
                if found is None:
                    self.log.warning("outbox_agent_not_found", agents=len(agents))
                self._agent = (found,)
            return self._agent[0]


class _Transactions:
    """The drain's database work: short transactions, shared by the workers that arrive together.

    The store is opened for each batch (so other processes can write between them), a process can
    have it open only once at a time, and each open costs tens of milliseconds. So workers queue
    their operations and one of them runs every queued operation in a single transaction (group
    commit); each caller returns only once the transaction holding its operation has committed.
    If that transaction fails, its operations are run again one by one, so one bad operation
    fails only its own caller.
    """

    def __init__(self, db: Any):
        self._db = db
        self._queue_lock = threading.Lock()
        self._queue: list[_Operation] = []
        self._leader = threading.Lock()

    def run(self, op: Callable[[Any], T]) -> T:
        operation = _Operation(op)
        with self._queue_lock:
            self._queue.append(operation)
        with self._leader:
            if not operation.done.is_set():
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        return operation.result()

    def _commit(self, batch: list[_Operation]) -> None:
        try:
            failing: _Operation | None = None
            try:
                with self._db.transaction() as con:
                    results = []
                    for operation in batch:
                        failing = operation
                        results.append(operation.op(con))
                    failing = None
            except Exception as exc:
                if failing is None or len(batch) == 1:  # opening or committing failed: everyone's error
                    for operation in batch:
                        operation.fail(exc)
                    return
                for operation in batch:
                    self._commit([operation])
                return
            for operation, result in zip(batch, results, strict=True):
                operation.succeed(result)
        finally:
            for operation in batch:  # e.g. KeyboardInterrupt: nobody may wait forever
                if not operation.done.is_set():
                    operation.fail(RuntimeError("the drain's transaction was interrupted"))


class _Operation:
    def __init__(self, op: Callable[[Any], Any]):
        self.op = op
        self.done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    def succeed(self, result: Any) -> None:
        self._result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self.done.set()

    def result(self) -> Any:
        self.done.wait()
        if self._error is not None:
            raise self._error
        return self._result


class _Matcher:
    """Does a Gladly item look like the one this row created?"""

    def __init__(self, row: dict[str, Any], agent_id: str | None, claimed: set[str]):
        self.row = row
        self.agent_id = agent_id
        self.claimed = claimed
        self.is_note = row["kind"] in ("note", "escalation")
        if self.is_note:
            self.content_type = "CONVERSATION_NOTE"
            self.expected = normalise_text(note_body(row["body"]))
        else:
            self.content_type = row["channel"]
            self.expected = normalise_text(reply_text(row))
        attempted = row["last_attempt_at"] or row["created_at"]
        self.since: datetime = attempted - CLOCK_SKEW

    def __call__(self, item: dict[str, Any]) -> bool:
        if not item.get("id") or item["id"] in self.claimed:
            return False
        if item.get("conversationId", self.row["conversation_id"]) != self.row["conversation_id"]:
            return False  # Gladly's list may hold another conversation's item
        initiator = item.get("initiator") or {}
        ours = initiator.get("type") == "API" or (
            initiator.get("type") == "AGENT"
            and self.agent_id is not None
            and initiator.get("id") == self.agent_id
        )
        if not ours:
            return False
        timestamp = _parse_time(item.get("timestamp"))
        if timestamp is None or timestamp < self.since:
            return False
        content = item.get("content") or {}
        if content.get("type") != self.content_type:
            return False
        if self.is_note:
            text = content.get("body")
        else:
            text = content.get("content") if content.get("content") is not None else content.get("body")
        return normalise_text(text) == self.expected


def _payload_ok(row: dict[str, Any]) -> bool:
    """Whether a request body can be built for the row (a reply needs a channel Gladly replies on)."""
    if row["kind"] != "reply":
        return True
    try:
        reply_content(row)
    except ValueError:
        return False
    return True


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _gladly_said(exc: Rejected) -> str:
    if exc.code or exc.detail:
        return ": ".join(part for part in (exc.code, exc.detail) if part)
    return str(exc)


def _ids(row: dict[str, Any]) -> dict[str, Any]:
    return {"action_id": row["id"], "kind": row["kind"], "conversation_id": row["conversation_id"]}
