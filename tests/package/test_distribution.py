"""The distribution: one import package, ``gladly_sync``, a console script, and ``--version``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "gladly-sync = gladly_sync.sync.cli.main:main"
# What a checkout may hold that is not source: never copied into the build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "*.egg-info", "build", "dist", "data", "__pycache__", ".pytest_cache", ".ruff_cache", "*.duckdb*"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """A wheel built by pip from a copy of the checkout (the checkout itself stays clean)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    done = subprocess.run(
        [*pip_wheel, "-w", str(folder / "out"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = (folder / "out").glob("gladly_sync-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


class TestWheel:
    def test_one_top_level_import_package(self, wheel: zipfile.ZipFile):
        """Besides its metadata, the wheel holds exactly one top-level entry: the gladly_sync package."""
        tops = {name.split("/")[0] for name in wheel.namelist()}
        assert {top for top in tops if not top.endswith(".dist-info")} == {"gladly_sync"}
        assert "gladly_sync/__init__.py" in wheel.namelist()

    @pytest.mark.parametrize(
        "module",
        [
            "gladly_sync/config.py",
            "gladly_sync/errors.py",
            "gladly_sync/sync/cli/main.py",
            "gladly_sync/sync/pull/run.py",
            "gladly_sync/sync/outbox/drain.py",
            "gladly_sync/storage/store.py",
            "gladly_sync/simulator/server.py",
        ],
    )
    def test_every_layer_is_inside_the_namespace(self, wheel: zipfile.ZipFile, module: str):
        """sync/, storage/ and simulator/ (the demo needs it) are packaged below gladly_sync."""
        assert module in wheel.namelist()

    def test_tests_and_bench_are_not_packaged(self, wheel: zipfile.ZipFile):
        """The wheel carries no tests and no benchmarks."""
        assert not [name for name in wheel.namelist() if "/tests/" in name or "/bench/" in name]

    def test_console_script(self, wheel: zipfile.ZipFile):
        """Installing the wheel puts a gladly-sync command on PATH that runs the CLI's main."""
        (entry_points,) = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
        lines = [line.strip() for line in wheel.read(entry_points).decode().splitlines()]
        assert lines[lines.index("[console_scripts]") + 1] == SCRIPT


class TestVersion:
    def test_version_flag_prints_the_distribution_version(self):
        """`gladly-sync --version` prints the installed distribution's version and exits 0."""
        done = subprocess.run(
            [sys.executable, "-m", "gladly_sync", "--version"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"gladly-sync {version('gladly-sync')}\n"

    def test_version_needs_no_config(self, tmp_path: Path):
        """--version works in a folder with no config.yaml and no token in the environment."""
        done = subprocess.run(
            [sys.executable, "-m", "gladly_sync", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("gladly-sync ")

    def test_package_version_is_the_distribution_version(self):
        """gladly_sync.__version__ is the installed distribution's version."""
        import gladly_sync

        assert gladly_sync.__version__ == version("gladly-sync")
