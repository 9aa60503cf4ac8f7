"""``gladly-sync check``: prove the connection works, one check (and one line of evidence) at a time.

    environment        production (.gladly.com), sandbox (.gladly.qa) or a custom base_url; the API URL
    credentials        GET /organization                 → the organization's name
    api user           GET /agents, matched by email     → the API user's agent id
    inboxes            GET /inboxes: every inbox of the organization, id and name, marked ingested /
                       escalation (so a first-time user can fill in inboxes.ingest)
    ingest inbox ID    GET /inboxes/{id} per configured id
    escalation inbox   GET /inboxes/{id}
    customer           GET /customer-profiles?email=     (only with --customer)
    conversation       GET /conversations/{id} + items   (only with --conversation)
    test reply         POST /conversation-items/{id}/reply (only with --send-test-reply; sandbox, or
                       production with --yes-production)

The checks stop after a failed credentials check, and after any authentication or permission error:
nothing further could pass. ``CheckResult.error`` keeps the exception so the CLI can pick the exit code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gladly_sync.storage.outbox import REPLYABLE_TYPES
from gladly_sync.sync.client import GladlyClient
from gladly_sync.sync.outbox.payloads import reply_content

from gladly_sync.config import Settings
from gladly_sync.errors import AuthError, GladlyError, GladlyNotFound, UnknownOutcome, UsageError

__all__ = ["CheckResult", "refuse_production_reply", "run_checks"]

TEST_REPLY_TEXT = "gladly-sync check: test reply sent at {at}. Please ignore."
UNKNOWN_ID_EXIT = 2  # an unknown conversation id is exit 2, for every command


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    evidence: str
    error: GladlyError | None = field(default=None, repr=False, compare=False)
    details: tuple[str, ...] = ()  # one line each, printed under the check
    exit_code: int = 1  # what the command exits with when this check fails

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "ok": self.ok, "evidence": self.evidence}
        if self.details:
            data["details"] = list(self.details)
        return data


def refuse_production_reply(settings: Settings, send_test_reply: str | None, yes_production: bool) -> None:
    """A test reply reaches a real customer unless sandbox is on; production needs ``--yes-production``."""
    if send_test_reply is None or settings.gladly.sandbox or yes_production:
        return
    raise UsageError(
        f"--send-test-reply would message a real customer in production ({settings.gladly.api_url}); "
        "set gladly.sandbox: true, or pass --yes-production if that is what you want"
    )


def describe_environment(settings: Settings) -> str:
    gladly = settings.gladly
    if gladly.base_url:
        return (
            f"custom base_url {gladly.host_url} (gladly.sandbox: {str(gladly.sandbox).lower()}, "
            f"treated as {gladly.environment}); API {gladly.api_url}"
        )
    domain = ".gladly.qa" if gladly.sandbox else ".gladly.com"
    return f"{gladly.environment} ({domain}) for organization {gladly.organization}; API {gladly.api_url}"


class _Checks:
    def __init__(self, settings: Settings, client: GladlyClient, clock: Callable[[], datetime]):
        self.settings = settings
        self.client = client
        self.clock = clock
        self.where = str(settings.config_path)

    def credentials(self) -> tuple[bool, str]:
        org = self.client.get_organization()
        name = org.get("name") or "(no name)"
        return (
            True,
            f"authenticated as {self.settings.gladly.email}; organization {name!r} ({org.get('id', '?')})",
        )

    def api_user(self) -> tuple[bool, str]:
        agents = self.client.list_agents()
        email = self.settings.gladly.email.casefold()
        for agent in agents:
            if str(agent.get("emailAddress") or "").casefold() == email:
                return True, f"agent {agent.get('name') or '(no name)'!r} ({agent.get('id')})"
        return False, (
            f"no agent with email {self.settings.gladly.email} among {len(agents)} agents; the API user "
            "must also be an agent (keep its Agent role) so sent replies can be recognised"
        )

    def inbox(self, inbox_id: str, key: str) -> tuple[bool, str]:
        try:
            inbox = self.client.get_inbox(inbox_id)
        except GladlyNotFound:
            return False, f"inbox {inbox_id} not found in Gladly; fix {key} in {self.where}"
        evidence = f"{inbox_id}: {inbox.get('name') or '(no name)'!r}"
        if inbox.get("disabled"):
            evidence += " (disabled in Gladly)"
        return True, evidence

    def all_inboxes(self) -> tuple[bool, str, tuple[str, ...]]:
        """Every inbox, id and name: what ``inboxes.ingest`` and ``inboxes.escalation`` take."""
        inboxes = sorted(
            self.client.list_inboxes(), key=lambda i: (str(i.get("name") or ""), str(i.get("id")))
        )
        ingest, escalation = self.settings.inboxes.ingest, self.settings.inboxes.escalation
        lines = []
        for inbox in inboxes:
            inbox_id = str(inbox.get("id"))
            marks = [
                mark
                for mark, on in (
                    ("ingested", not ingest or inbox_id in ingest),
                    ("escalation", inbox_id == escalation),
                    ("disabled in Gladly", bool(inbox.get("disabled"))),
                )
                if on
            ]
            lines.append(
                f"{inbox_id}  {inbox.get('name') or '(no name)'!r}"
                + (f"  ({', '.join(marks)})" if marks else "")
            )
        scope = (
            "all ingested (inboxes.ingest is empty)"
            if not ingest
            else f"{len(ingest)} listed in inboxes.ingest"
        )
        return True, f"{len(inboxes)} inboxes in the organization, {scope}", tuple(lines)

    def customer(self, email: str) -> tuple[bool, str]:
        found = self.client.find_customers(email=email)
        if not found:
            return False, f"no customer profile with email {email}"
        ids = ", ".join(str(profile.get("id")) for profile in found[:5])
        return True, f"{len(found)} customer profile(s): {ids}"

    def conversation(self, conversation_id: str) -> tuple[bool, str]:
        try:
            conversation = self.client.get_conversation(conversation_id)
            page = self.client.list_conversation_items(conversation_id)
        except GladlyNotFound:
            return False, f"conversation {conversation_id} not found in Gladly", (), UNKNOWN_ID_EXIT
        capped = " (Gladly capped the list at 1000)" if page.limited else ""
        return True, (
            f"{conversation_id}: {conversation.get('status')} in inbox {conversation.get('inboxId')}, "
            f"{len(page.items)} items{capped}"
        )

    def test_reply(self, conversation_id: str) -> tuple[bool, str]:
        try:
            page = self.client.list_conversation_items(conversation_id)
        except GladlyNotFound:
            return False, f"conversation {conversation_id} not found in Gladly", (), UNKNOWN_ID_EXIT
        target = reply_target(page.items)
        if target is None:
            return False, (
                f"conversation {conversation_id} has no customer message to reply to "
                f"(one of {', '.join(REPLYABLE_TYPES)}; voice items cannot be replied to)"
            )
        channel = target["content"]["type"]
        text = TEST_REPLY_TEXT.format(at=self.clock().astimezone(UTC).isoformat(timespec="seconds"))
        try:
            item_id = self.client.reply(target["id"], reply_content({"channel": channel, "body": text}))
        except UnknownOutcome as exc:
            return False, f"{exc}; the reply may have been sent: look in Gladly before trying again"
        return True, f"sent {item_id} ({channel} reply to item {target['id']})"


def reply_target(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest customer message a reply can go to (Gladly lists items oldest first)."""
    for item in reversed(items):
        initiator = item.get("initiator") or {}
        content = item.get("content") or {}
        if initiator.get("type") == "CUSTOMER" and content.get("type") in REPLYABLE_TYPES:
            return item
    return None


def run_checks(
    settings: Settings,
    client: GladlyClient,
    *,
    customer_email: str | None = None,
    conversation_id: str | None = None,
    send_test_reply: str | None = None,
    yes_production: bool = False,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[CheckResult]:
    """Run the checks in order; raise ``UsageError`` (before any request) for a refused test reply."""
    refuse_production_reply(settings, send_test_reply, yes_production)
    checks = _Checks(settings, client, clock)
    results = [CheckResult("environment", True, describe_environment(settings))]

    planned: list[tuple[str, Callable[[], tuple[Any, ...]]]] = [
        ("credentials", checks.credentials),
        ("api user", checks.api_user),
    ]
    planned.append(("inboxes", checks.all_inboxes))
    planned += [
        (f"ingest inbox {inbox_id}", lambda i=inbox_id: checks.inbox(i, "inboxes.ingest"))
        for inbox_id in settings.inboxes.ingest
    ]
    escalation = settings.inboxes.escalation
    if escalation:
        planned.append(("escalation inbox", lambda: checks.inbox(escalation, "inboxes.escalation")))
    else:
        planned.append(
            ("escalation inbox", lambda: (True, "not configured; `enqueue escalate` needs --inbox ID"))
        )
    if customer_email:
        planned.append(("customer", lambda: checks.customer(customer_email)))
    if conversation_id:
        planned.append(("conversation", lambda: checks.conversation(conversation_id)))
    if send_test_reply:
        planned.append(("test reply", lambda: checks.test_reply(send_test_reply)))

    for name, check in planned:
        try:
            ok, evidence, *more = check()
        except GladlyError as exc:
            results.append(CheckResult(name, False, str(exc), error=exc))
            if name == "credentials" or isinstance(exc, AuthError):
                break
            continue
        details = more[0] if more else ()
        exit_code = more[1] if len(more) > 1 else 1
        results.append(CheckResult(name, ok, evidence, details=tuple(details), exit_code=exit_code))
    return results
