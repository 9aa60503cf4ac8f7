"""Shape checks on the JSON bodies clients send, answering as Gladly's documented 400s.

Domain refusals (closed conversation, not a customer message, unknown inbox) are the World's;
this module only says whether a body is well-formed.
"""

from __future__ import annotations

from typing import Any

from gladly_sync.simulator.errors import ApiError, error_entry

REPLY_TYPES = ("EMAIL", "CHAT_MESSAGE", "SMS", "WHATSAPP", "FACEBOOK_MESSAGE",
               "INSTAGRAM_DIRECT", "TWITTER")
VOICE_TYPES = ("VOICEMAIL", "PHONE_CALL")
MAX_MESSAGE_BODY = 2048
MAX_QUICK_REPLY_OPTIONS = 10
MAX_OPTION_LABEL = 50


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def reply_content(body: Any) -> dict[str, Any]:
    """The `content` of a reply request, checked; raises ApiError 400."""
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict):
        raise ApiError.blank("content", "content cannot be blank")
    content_type = content.get("type")
    if not _text(content_type):
        raise ApiError.blank("content.type", "content.type cannot be blank")
    if content_type not in REPLY_TYPES:
        raise ApiError.invalid(f"type [{content_type}] is not supported")
    text = content.get("body")
    if not _text(text):
        raise ApiError.blank("content.body", "content.body cannot be blank")
    # Gladly documents the 2048 limit without naming channels; email bodies are HTML
    # documents, so the simulator applies it to the other channels only (gladly-api.md §5.5).
    if content_type != "EMAIL" and len(text) > MAX_MESSAGE_BODY:
        raise ApiError.too_long("content.body",
                                f"content.body cannot be larger than {MAX_MESSAGE_BODY} characters")
    if "bodyPlain" in content and not isinstance(content["bodyPlain"], str):
        raise ApiError.invalid("content.bodyPlain must be a string", "content.bodyPlain")
    if content_type == "CHAT_MESSAGE":
        _chat_message_type(content)
    return content


def _chat_message_type(content: dict[str, Any]) -> None:
    message_type = content.get("messageType", "TEXT")
    if message_type == "TEXT":
        return
    if message_type != "QUICK_REPLY_REQUEST":
        raise ApiError.invalid(f"messageType [{message_type}] is not supported",
                               "content.messageType")
    data = content.get("messageData")
    options = data.get("options") if isinstance(data, dict) else None
    if not isinstance(options, list) or not 1 <= len(options) <= MAX_QUICK_REPLY_OPTIONS:
        raise ApiError.invalid("messageData.options must have between 1 and 10 options",
                               "content.messageData.options")
    for option in options:
        if not (isinstance(option, dict) and _text(option.get("id"))
                and _text(option.get("label")) and len(option["label"]) <= MAX_OPTION_LABEL):
            raise ApiError.invalid("each option needs an id and a label of at most 50 characters",
                                   "content.messageData.options")


def note_body(body: Any) -> str:
    """The note text from `{"content": {"body"}}` or `{"body"}`; raises ApiError 400.

    Gladly's OpenAPI declares a top-level `body` but requires `content`, and its example sends
    `{"content": {"body": ...}}`: the example is followed and the top-level form is accepted too.
    """
    if isinstance(body, dict):
        content = body.get("content")
        text = content.get("body") if isinstance(content, dict) else body.get("body")
        if _text(text):
            return text
    raise ApiError.blank("content.body", "content.body cannot be blank")


def conversation_update(body: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(assignee, status) of a PATCH body, each complete when present; raises ApiError 400."""
    if not isinstance(body, dict):
        raise ApiError.invalid("request body must be a JSON object")
    errors = []
    assignee = body.get("assignee")
    status = body.get("status")
    if assignee is not None:
        if not isinstance(assignee, dict) or not _text(assignee.get("inboxId")):
            errors.append(error_entry("blank", "'inboxId' cannot be blank when updating assignee",
                                      "assignee.inboxId"))
        elif assignee.get("agentId") is not None and not _text(assignee.get("agentId")):
            errors.append(error_entry("invalid", "'agentId' must be an agent id",
                                      "assignee.agentId"))
    if status is not None:
        value = status.get("value") if isinstance(status, dict) else None
        if not _text(value):
            errors.append(error_entry("blank", "'value' cannot be blank when updating status",
                                      "status.value"))
        elif value not in ("OPEN", "CLOSED"):
            errors.append(error_entry("invalid", f"status [{value}] is not supported",
                                      "status.value"))
        elif not isinstance(status.get("force", False), bool):
            errors.append(error_entry("invalid", "'force' must be a boolean", "status.force"))
    if errors:
        raise ApiError(400, errors)
    if assignee is not None:
        # WHX sends `"agentId": null` to leave the conversation unassigned: same as omitting it.
        assignee = {"inboxId": assignee["inboxId"], "agentId": assignee.get("agentId")}
    if status is not None:
        status = {"value": status["value"], "force": bool(status.get("force", False))}
    return assignee, status
