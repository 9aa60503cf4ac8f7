"""Pins as loose as the code allows, and CI proves the floors by running the suite on them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# The only upper bounds we keep: a known major break.
KNOWN_BREAKS = {"apscheduler": "<4"}

_spec = importlib.util.spec_from_file_location("lowest_pins", ROOT / ".ci" / "lowest_pins.py")
lowest_pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lowest_pins)


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


class TestPins:
    @pytest.mark.parametrize("requirement", PROJECT["dependencies"])
    def test_every_dependency_names_its_floor(self, requirement: str):
        """Every runtime dependency has a >= floor that CI installs and tests."""
        assert ">=" in requirement

    @pytest.mark.parametrize("requirement", PROJECT["dependencies"])
    def test_upper_bounds_only_for_known_breaks(self, requirement: str):
        """No upper bound moves a host app's packages, unless a known major break needs it."""
        uppers = [
            spec.strip() for spec in requirement.split(",") if spec.strip().startswith(("<", "~=", "=="))
        ]
        assert uppers == ([KNOWN_BREAKS[_name(requirement)]] if _name(requirement) in KNOWN_BREAKS else [])


class TestLowestPins:
    @pytest.mark.parametrize(
        "requirement,pin",
        [
            ("httpx>=0.25", "httpx==0.25"),
            ("apscheduler>=3.10,<4", "apscheduler==3.10"),
            ("psycopg[binary]>=3.1", "psycopg==3.1"),
            ("duckdb >= 1.5", "duckdb==1.5"),
            ("tomli>=2; python_version < '3.11'", "tomli==2; python_version < '3.11'"),
        ],
    )
    def test_floor_becomes_an_exact_pin(self, requirement: str, pin: str):
        """`>=X` becomes `==X`; extras are dropped (constraints take none), markers kept."""
        assert lowest_pins.floor_pin(requirement) == pin

    @pytest.mark.parametrize("requirement", ["httpx", "httpx<1", "httpx==0.28", "httpx>=0.25,>=0.26"])
    def test_a_dependency_without_one_floor_is_refused(self, requirement: str):
        """A requirement with no single >= floor is an error naming it, not a silent skip."""
        with pytest.raises(ValueError, match=re.escape(repr(requirement))):
            lowest_pins.floor_pin(requirement)

    def test_pins_every_runtime_dependency_and_no_test_tool(self):
        """The script's output pins each runtime dependency (and user extras), never the test tools."""
        done = subprocess.run(
            [sys.executable, str(ROOT / ".ci" / "lowest_pins.py")], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        pinned = [_name(line) for line in done.stdout.splitlines()]
        extras = [
            r
            for name, reqs in PROJECT.get("optional-dependencies", {}).items()
            if name != "test"
            for r in reqs
        ]
        assert pinned == [_name(r) for r in PROJECT["dependencies"] + extras]
        test_tools = {_name(r) for r in PROJECT["optional-dependencies"]["test"]} - {_name(r) for r in extras}
        assert not set(pinned) & test_tools  # psycopg is a user extra too, so it is pinned

    def test_ci_runs_the_suite_again_on_the_floor(self):
        """.ci/run installs the project under the floor constraints in a second venv and runs pytest there."""
        ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
        assert 'python3 .ci/lowest_pins.py > "$lowest/constraints.txt"' in ci
        assert "-c \"$lowest/constraints.txt\" -e '.[test]'" in ci
        assert ci.rstrip().endswith('"$lowest/venv/bin/python" -m pytest')
