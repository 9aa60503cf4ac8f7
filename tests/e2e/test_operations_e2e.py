"""The README's cron lines and systemd unit work as written.

The cron lines run exactly as the README prints them, under cron's environment (``env -i``, cron's
``PATH=/usr/bin:/bin``, ``/bin/sh``, the home folder as working directory), with only the install
path ``/opt/gladly-sync`` replaced by a temporary folder that holds the same layout: the virtualenv's
``gladly-sync`` at ``.venv/bin/``, ``config.yaml``, the token file and the log.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gladly_sync.simulator import DEFAULT_API_TOKEN, Simulator
from gladly_sync.sync.cli.main import STOP_GRACE

from tests.e2e.conftest import ROOT, write_config

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL = "/opt/gladly-sync"
CRON_PATH = "/usr/bin:/bin"
STOP_WITHIN = 10  # seconds: SPEC, Operators


def _block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", README, re.DOTALL)
    assert match, f"the README has no ```{language} block"
    return match.group(1)


def cron_commands() -> dict[str, str]:
    """The command of each README cron line (after the five schedule fields), by subcommand."""
    commands = {}
    for line in _block("cron").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = line.split(None, 5)[5]
        name = re.search(r"--config \S+ (\w+)", command)
        assert name, line
        commands[name.group(1)] = command
    return commands


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=("#",))
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string(_block("ini"))
    return parser


def installed_gladly_sync() -> Path:
    """The ``gladly-sync`` console script of the environment running the tests."""
    found = shutil.which("gladly-sync", path=str(Path(sys.executable).parent)) or shutil.which("gladly-sync")
    assert found, "gladly-sync is not installed as a console script (pip install -e '.[test]')"
    return Path(found)


@pytest.fixture
def install(sim: Simulator, tmp_path: Path) -> Path:
    """The README's install layout in a temporary folder: venv script, config, token file (0600)."""
    root = tmp_path / "opt-gladly-sync"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "gladly-sync").symlink_to(installed_gladly_sync())
    write_config(root, sim.base_url)  # storage paths are relative to the config's folder
    token = root / "token"
    token.write_text(DEFAULT_API_TOKEN + "\n")
    token.chmod(0o600)
    (root / "gladly-sync.env").write_text(f"GLADLY_API_TOKEN={DEFAULT_API_TOKEN}\n")
    (tmp_path / "home").mkdir()
    return root


def run_as_cron(command: str, install: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """One crontab command, as cron runs it: ``/bin/sh -c`` in an empty environment."""
    home = install.parent / "home"
    return subprocess.run(
        [
            "env",
            "-i",
            f"PATH={CRON_PATH}",
            f"HOME={home}",
            "SHELL=/bin/sh",
            "LOGNAME=cron",
            "/bin/sh",
            "-c",
            command.replace(INSTALL, str(install)),
        ],
        capture_output=True,
        text=True,
        cwd=home,
        timeout=timeout,
    )


def log_lines(install: Path) -> list[dict]:
    lines = (install / "gladly-sync.log").read_text().splitlines()
    assert lines, "nothing was logged"
    bad = [line for line in lines if not line.startswith("{")]
    assert not bad, f"the log mixes formats: {bad[:3]}"
    return [json.loads(line) for line in lines]


class TestCronLines:
    def test_the_lines_do_not_inline_the_token(self):
        """Every cron line names the venv's gladly-sync by absolute path and reads the token from a file."""
        commands = cron_commands()
        assert set(commands) == {"sync", "drain", "status"}
        for command in commands.values():
            assert f"{INSTALL}/.venv/bin/gladly-sync " in command
            assert "GLADLY_API_TOKEN=$(cat " in command and DEFAULT_API_TOKEN not in command

    def test_cron_lines_run_as_written_and_stay_quiet(self, install: Path):
        """Under cron's minimal environment the sync, drain and status lines succeed, print nothing
        (cron mails nothing) and leave one log format, JSON lines."""
        commands = cron_commands()
        for name in ("sync", "drain", "status"):
            done = run_as_cron(commands[name], install)
            assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), (name, done)
        events = log_lines(install)
        assert {"sync_finished", "drain_finished"} <= {event["event"] for event in events}
        assert DEFAULT_API_TOKEN not in (install / "gladly-sync.log").read_text()

    def test_a_failure_is_mailed_and_logged_as_json(self, install: Path):
        """A failing run prints one line (cron mails it) and logs the error as a JSON event."""
        (install / "token").write_text("wrong-token\n")
        done = run_as_cron(cron_commands()["sync"], install)
        assert done.returncode == 0  # the `|| echo` line is the mail
        assert done.stdout.startswith("gladly-sync sync failed") and done.stderr == ""
        failed = [event for event in log_lines(install) if event["event"] == "command_failed"]
        assert failed and failed[-1]["code"] == "authentication_failed"


class TestSystemdUnit:
    def test_unit_matches_the_stop_bound(self):
        """ExecStart is the venv's gladly-sync; SIGTERM stops it well inside TimeoutStopSec; the token
        comes from an EnvironmentFile, never the unit."""
        service = unit()["Service"]
        assert service["ExecStart"] == f"{INSTALL}/.venv/bin/gladly-sync run"
        assert service["KillSignal"] == "SIGTERM"
        assert STOP_GRACE < STOP_WITHIN < int(service["TimeoutStopSec"])
        assert service["EnvironmentFile"].startswith(INSTALL + "/")
        assert "TOKEN" not in service.get("Environment", "")

    def test_the_daemon_runs_and_stops_as_the_unit_starts_it(self, install: Path):
        """Started as systemd would (its environment, working directory and ExecStart), the daemon
        syncs, and SIGTERM ends it with exit 0 within 10 s."""
        service = unit()["Service"]
        environment = dict(
            line.split("=", 1)
            for line in (install / "gladly-sync.env").read_text().splitlines()
            if "=" in line
        )
        key, value = service["Environment"].split("=", 1)
        environment[key] = value.replace(INSTALL, str(install))
        environment["PATH"] = CRON_PATH
        daemon = subprocess.Popen(
            service["ExecStart"].replace(INSTALL, str(install)).split(),
            cwd=service["WorkingDirectory"].replace(INSTALL, str(install)),
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while not (install / "store" / "gladly_read.duckdb").exists():
                assert daemon.poll() is None and time.monotonic() < deadline, "the daemon published nothing"
                time.sleep(0.2)
        finally:
            sent = time.monotonic()
            daemon.send_signal(getattr(signal, service["KillSignal"]))
            _, err = daemon.communicate(timeout=60)
        assert daemon.returncode == 0, err[-2000:]
        assert time.monotonic() - sent < STOP_WITHIN
