"""The README stays true: every command, option and config key is documented, and the two commands lead."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml
from gladly_sync.sync.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix}{name}", sub))
                found.extend(_subcommands(sub, f"{prefix}{name} "))
    return found


COMMANDS = _subcommands(build_parser())


def _config_keys() -> list[str]:
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return [f"{section}.{key}" for section, keys in data.items() for key in keys]


class TestReadme:
    def test_first_screen_has_the_two_commands(self):
        """The demo command and the test command come before anything else."""
        head = README.split("---")[0]
        assert "gladly-sync demo" in head
        assert "python3 -m pytest" in head

    def test_ci_runs_the_readme_test_command(self):
        """.ci/run runs exactly the README's test command."""
        assert "python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'" in CI_RUN
        assert "python3 -m pytest" in CI_RUN
        assert "python3 -m pip install -e '.[test]' && python3 -m pytest" in README

    @pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
    def test_every_command_is_documented(self, name: str):
        """Every CLI command appears in the README's command table."""
        assert re.search(rf"`{re.escape(name)}[ `\]]", README), f"`{name}` is not in the README"

    @pytest.mark.parametrize(
        "name,option",
        [
            (name, option)
            for name, sub in COMMANDS
            for action in sub._actions
            for option in action.option_strings
            if option.startswith("--") and option not in ("--help", "--json", "--config", "--debug")
        ],
    )
    def test_every_option_is_documented(self, name: str, option: str):
        """Every command option appears in the README."""
        assert option in README, f"{name} {option} is not in the README"

    @pytest.mark.parametrize("key", _config_keys())
    def test_every_config_key_is_documented(self, key: str):
        """Every key of the shipped config.yaml is in the README's configuration table."""
        assert f"`{key}`" in README
