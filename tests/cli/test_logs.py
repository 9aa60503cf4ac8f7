"""Logging: structlog's processor chain, stderr only, JSON lines off a TTY, secrets scrubbed."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
import structlog
from gladly_sync.sync.logs import (
    configure_logging,
    register_credentials,
    register_secret,
    scrub_secrets,
    scrub_text,
)
from structlog.testing import LogCapture

from tests.cli import reset_logging

TOKEN = "tok-logs-5ecret-771"


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    reset_logging()


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestRendering:
    def test_json_lines_off_a_tty(self):
        """format auto off a TTY writes one JSON object per line with level and an ISO UTC timestamp."""
        stream = io.StringIO()
        configure_logging("info", "auto", stream=stream)
        structlog.get_logger().info("job_finished", job="sync", rows=3)
        [line] = _lines(stream)
        assert line["event"] == "job_finished"
        assert (line["level"], line["job"], line["rows"]) == ("info", "sync", 3)
        assert line["timestamp"].endswith("Z")

    def test_console_on_a_tty(self):
        """format auto on a TTY renders for people, not JSON."""
        stream = TTY()
        configure_logging("info", "auto", stream=stream)
        structlog.get_logger().info("job_finished", job="sync")
        text = stream.getvalue()
        assert "job_finished" in text and "job" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

    @pytest.mark.parametrize(("fmt", "tty", "is_json"), [("json", True, True), ("console", False, False)])
    def test_format_setting_wins_over_the_tty_test(self, fmt, tty, is_json):
        """logging.format json/console is used whatever the stream is."""
        stream = TTY() if tty else io.StringIO()
        configure_logging("info", fmt, stream=stream)
        structlog.get_logger().info("probe")
        text = stream.getvalue().strip()
        assert text.startswith("{") is is_json

    def test_level_filters(self):
        """Below the configured level nothing is written."""
        stream = io.StringIO()
        configure_logging("warning", "json", stream=stream)
        log = structlog.get_logger()
        log.info("quiet")
        log.warning("loud")
        assert [line["event"] for line in _lines(stream)] == ["loud"]

    def test_run_id_from_contextvars(self):
        """A run_id bound with contextvars appears on every event of the run."""
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        with structlog.contextvars.bound_contextvars(run_id="r-1"):
            structlog.get_logger().info("inside")
        structlog.get_logger().info("outside")
        inside, outside = _lines(stream)
        assert inside["run_id"] == "r-1" and "run_id" not in outside

    def test_nothing_goes_to_stdout(self, capsys):
        """The default stream is stderr: stdout belongs to machine output."""
        configure_logging("info", "json")
        structlog.get_logger().info("to_stderr")
        logging.getLogger("apscheduler.scheduler").warning("library warning")
        out, err = capsys.readouterr()
        assert out == ""
        assert "to_stderr" in err and "library warning" in err

    def test_library_info_is_quiet(self, capsys):
        """httpx's INFO lines (request URLs can carry a customer's email) are not written."""
        configure_logging("debug", "json")
        logging.getLogger("httpx").info("HTTP Request: GET /customer-profiles?email=a@b.c")
        assert "a@b.c" not in capsys.readouterr().err


class TestSecrets:
    def test_token_scrubbed_from_every_value(self):
        """A registered token is replaced in the event, nested values and exception text."""
        register_secret(TOKEN)
        stream = io.StringIO()
        configure_logging("info", "json", stream=stream)
        log = structlog.get_logger()
        log.info(f"event {TOKEN}", detail=f"token={TOKEN}", nested={"list": [TOKEN], "n": 1})
        try:
            raise RuntimeError(f"failed with {TOKEN}")
        except RuntimeError:
            log.exception("job_failed")
        text = stream.getvalue()
        assert TOKEN not in text
        first, second = _lines(stream)
        assert first["detail"] == "token=***" and first["nested"] == {"list": ["***"], "n": 1}
        assert "failed with ***" in second["exception"]

    def test_authorization_header_scrubbed(self):
        """An Authorization header value is blanked by key and inside text; so is the Basic value."""
        register_credentials("api@acme.test", TOKEN)
        event = scrub_secrets(
            None,
            "info",
            {"event": "x", "headers": {"Authorization": "Basic abc"}, "text": "Authorization: Bearer xyz"},
        )
        assert event["headers"] == {"Authorization": "***"}
        assert event["text"] == "Authorization: Bearer ***"
        basic = base64.b64encode(f"api@acme.test:{TOKEN}".encode()).decode()
        assert scrub_text(f"sent {basic}") == "sent ***"

    def test_capture_logs_with_the_scrubber(self):
        """The scrubber is a plain processor: events captured through it carry no token."""
        register_secret(TOKEN)
        capture = LogCapture()
        log = structlog.wrap_logger(None, processors=[scrub_secrets, capture])
        log.info("job_failed", error=f"bad {TOKEN}")
        assert capture.entries == [{"event": "job_failed", "error": "bad ***", "log_level": "info"}]

    def test_short_values_are_not_secrets(self):
        """A value under 4 characters is not registered (it would blank ordinary words)."""
        register_secret("ab")
        assert scrub_text("about") == "about"
