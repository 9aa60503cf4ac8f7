"""Where a storage function differs per backend: the seam's one switch.

Storage functions take an open connection ``con`` and speak DuckDB's SQL. A backend whose SQL
differs too much for its connection adapter to translate gives its own version of that function:
its connection carries ``implementations`` (``{function name: callable}``), and a function marked
``@dialect_specific`` runs the backend's version when the connection names it. DuckDB's own
connections carry none, so nothing changes for the embedded store; code above storage never knows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def dialect_specific(function: F) -> F:
    """Let the connection's backend replace ``function`` (looked up by name)."""
    name = function.__name__

    @functools.wraps(function)
    def dispatch(con: Any, *args: Any, **kwargs: Any) -> Any:
        implementations = getattr(con, "implementations", None)
        chosen = implementations.get(name, function) if implementations else function
        return chosen(con, *args, **kwargs)

    dispatch.portable = function  # type: ignore[attr-defined]
    return dispatch  # type: ignore[return-value]
