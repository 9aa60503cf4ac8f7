"""Gladly's error answers, raised by the World and written out by the server.

    ApiError(status, errors)    -> {"errors": [ {attr?, code, detail?, meta?}, ... ]}
    ApiError.not_exist_single   -> {"errors": {code, detail}}   (the single-object 404 form
                                   that Gladly's OpenAPI shows for customer profiles)
"""

from __future__ import annotations

from typing import Any


def error_entry(code: str, detail: str | None = None, attr: str | None = None,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of an `errors` list, keys in Gladly's order."""
    entry: dict[str, Any] = {}
    if attr is not None:
        entry["attr"] = attr
    entry["code"] = code
    if detail is not None:
        entry["detail"] = detail
    if meta is not None:
        entry["meta"] = meta
    return entry


class ApiError(Exception):
    """A refusal with an HTTP status and Gladly's JSON error body."""

    def __init__(self, status: int, errors: list[dict[str, Any]] | dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {errors}")
        self.status = status
        self.body: dict[str, Any] = {"errors": errors}
        self.headers = headers or {}

    @classmethod
    def blank(cls, attr: str, detail: str | None = None) -> ApiError:
        return cls(400, [error_entry("blank", detail or f"{attr} cannot be blank", attr)])

    @classmethod
    def invalid(cls, detail: str, attr: str | None = None) -> ApiError:
        return cls(400, [error_entry("invalid", detail, attr)])

    @classmethod
    def invalid_state(cls, detail: str, attr: str | None = None) -> ApiError:
        return cls(400, [error_entry("invalid_state", detail, attr)])

    @classmethod
    def too_long(cls, attr: str, detail: str) -> ApiError:
        return cls(400, [error_entry("too_long", detail, attr)])

    @classmethod
    def not_exist(cls, detail: str) -> ApiError:
        return cls(404, [error_entry("not_exist", detail)])

    @classmethod
    def not_exist_single(cls, detail: str) -> ApiError:
        return cls(404, error_entry("not_exist", detail))

    @classmethod
    def moved(cls, old: str, new: str, location: str) -> ApiError:
        entry = error_entry("moved", "customer id has changed", "customerId", {"old": old, "new": new})
        return cls(301, [entry], {"Location": location})
