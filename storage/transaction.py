"""One atomic write on either store: a connection of the backend's, BEGIN, then COMMIT when the block
ends or ROLLBACK on any exception (``Database.transaction`` and ``PostgresDatabase.transaction``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar


class Transactional(Protocol):
    """What a backend's connection offers for a transaction (DuckDB's own, or ``PgConnection``)."""

    def begin(self) -> object: ...

    def commit(self) -> object: ...

    def rollback(self) -> object: ...


C = TypeVar("C", bound=Transactional)


@contextmanager
def open_transaction(connect: Callable[[], AbstractContextManager[C]]) -> Iterator[C]:
    """``connect()`` + BEGIN; COMMIT on success, ROLLBACK on any exception (then re-raised)."""
    with connect() as con:
        con.begin()
        try:
            yield con
        except BaseException:
            con.rollback()
            raise
        con.commit()
