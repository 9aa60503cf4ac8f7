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

# The DuckDB versions by name, for a backend that runs one of them on a DuckDB of its own.
_PORTABLE: dict[str, Callable[..., Any]] = {}


def duckdb_version(name: str) -> Callable[..., Any]:
    """The ``@dialect_specific`` function ``name`` as written for DuckDB (not dispatched)."""
    return _PORTABLE[name]


def dialect_specific(function: F) -> F:
    """Let the connection's backend replace ``function`` (looked up by name)."""
    name = function.__name__
    _PORTABLE[name] = function

    @functools.wraps(function)
    def dispatch(con: Any, *args: Any, **kwargs: Any) -> Any:
        implementations = getattr(con, "implementations", None)
        chosen = implementations.get(name, function) if implementations else function
        return chosen(con, *args, **kwargs)

    return dispatch  # type: ignore[return-value]
