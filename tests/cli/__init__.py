"""Tests of the command line, the daemon's scheduler, cron job locks, ``check`` and logging.

Builders shared by these tests: a config file in a temporary folder (Gladly at a fake host that
respx intercepts), the settings loaded from it, and a reset of the logging configuration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import structlog
import yaml

TOKEN = "tok-cli-5ecret-0042"
EMAIL = "api@acme.test"
HOST = "http://gladly.test"
API = f"{HOST}/api/v1"


def write_config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """``config.yaml`` in ``tmp_path``; each keyword is a section whose keys replace the defaults."""
    config: dict[str, dict[str, Any]] = {
        "gladly": {
            "organization": "acme",
            "email": EMAIL,
            "api_token": "${GLADLY_API_TOKEN}",
            "base_url": HOST,
            "requests_per_second": 1000,
            "timeout_seconds": 5,
        },
        "inboxes": {"ingest": ["in-1"], "escalation": "esc"},
        "storage": {"path": "data/gladly.duckdb", "snapshot_path": None, "lock_wait_seconds": 1},
        "logging": {"level": "info", "format": "json"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Any:
    from gladly_sync.config import load_settings

    return load_settings(write_config(tmp_path, **sections), environ={"GLADLY_API_TOKEN": TOKEN})


def reset_logging() -> None:
    """Undo ``configure_logging``: structlog's defaults, and no handler on a stream a test closed."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_gladly_sync", False)]:
        root.removeHandler(handler)
