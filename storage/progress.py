"""Where a running run's progress waits for ``status``: beside a DuckDB store, in a file.

    files = ProgressFiles("data/gladly.duckdb")
    files.save("sync", run_id, {"stage": "resolving", "jobs_total": 3})   # data/gladly.duckdb.sync.progress
    files.load("sync", run_id)     # {"stage": ...}, or None when another run (or none) wrote it
    files.clear("sync", run_id)    # at the run's end, if the file is still this run's

A file, not the store: writing the store every second would take the DuckDB lock a waiting
reader needs. It is JSON, replaced atomically, private to its owner. A PostgreSQL store keeps the
same records in its ``run_progress`` table instead (``PostgresDatabase.save_progress``), so every
host's ``status`` sees them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gladly_sync.storage.private import open_private

__all__ = ["ProgressFiles", "progress_path"]


def progress_path(db_path: Path | str, job: str) -> Path:
    """``data/gladly.duckdb`` + ``sync`` → ``data/gladly.duckdb.sync.progress``."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.name}.{job}.progress")


class ProgressFiles:
    """The progress files beside the DuckDB store at ``db_path``."""

    def __init__(self, db_path: Path | str):
        self.db_path = Path(db_path)

    def save(self, job: str, run_id: str, state: dict[str, Any]) -> None:
        """Replace the job's file with ``state`` (``OSError`` when it cannot be written)."""
        path = progress_path(self.db_path, job)
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        handle = open_private(temp, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump({"run_id": run_id, **state}, file, default=str)
        os.replace(temp, path)

    def load(self, job: str, run_id: str) -> dict[str, Any] | None:
        """The progress run ``run_id`` last saved, if that run is the one that wrote the file."""
        data = _read_json(progress_path(self.db_path, job))
        if data.get("run_id") != run_id:
            return None
        return {key: value for key, value in data.items() if key != "run_id"}

    def clear(self, job: str, run_id: str) -> None:
        """Remove the job's file, if it is still run ``run_id``'s."""
        path = progress_path(self.db_path, job)
        if _read_json(path).get("run_id") == run_id:
            path.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
