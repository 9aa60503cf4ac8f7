"""No import cycles, every module importable on its own, and the layers point one way."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.package.layout import PACKAGES, find_cycle, import_graph, modules, package_folders

MODULES = sorted(modules())
GRAPH = import_graph()
STORAGE = [name for name in MODULES if name.startswith("gladly_sync.storage")]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, subprocess.CompletedProcess]:
    """``python -c "import X"`` for every module, each in a fresh interpreter, a few at a time."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        done = pool.map(lambda name: _python(f"import {name}"), MODULES)
        return dict(zip(MODULES, done, strict=True))


class TestModules:
    def test_every_package_folder_is_packaged(self):
        """Each folder with an __init__.py below a mapped root is a listed package (or the wheel lacks it)."""
        assert sorted(package_folders().values()) == sorted(PACKAGES)

    def test_the_layout_is_found(self):
        """The module list covers every layer (so the checks below check something)."""
        for name in (
            "gladly_sync.config",
            "gladly_sync.sync.cli.main",
            "gladly_sync.storage.store",
            "gladly_sync.simulator.server",
            "gladly_sync.sync.pull.export",
        ):
            assert name in MODULES


class TestImportAlone:
    @pytest.mark.parametrize("name", MODULES)
    def test_module_imports_in_a_fresh_interpreter(self, imported_alone, name: str):
        """Each module imports first, alone: no cycle that only one import order would hide."""
        done = imported_alone[name]
        assert done.returncode == 0, done.stderr[-2000:]


class TestNoCycles:
    def test_no_module_imports_one_that_imports_it_back(self):
        """The runtime import graph (module level and inside functions) has no cycle."""
        assert find_cycle(GRAPH) is None

    def test_a_cycle_would_be_found(self):
        """The cycle finder reports a cycle, so the test above can fail."""
        assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


class TestLayers:
    @pytest.mark.parametrize("name", STORAGE)
    def test_storage_never_imports_sync(self, name: str):
        """No storage module imports anything from gladly_sync.sync, not even inside a function."""
        assert not {module for module in GRAPH[name] if module.startswith("gladly_sync.sync")}

    def test_importing_all_of_storage_loads_no_sync_module(self):
        """A fresh interpreter that imports every storage module has no gladly_sync.sync module loaded."""
        code = "import sys\n" + "".join(f"import {name}\n" for name in STORAGE)
        code += "print(sorted(m for m in sys.modules if m.startswith('gladly_sync.sync')))"
        done = _python(code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"

    @pytest.mark.parametrize("name", ["gladly_sync.config", "gladly_sync.errors"])
    def test_config_and_errors_belong_to_no_layer(self, name: str):
        """Config and the error tree import none of the layers they serve (sync, storage, simulator)."""
        assert GRAPH[name] <= {"gladly_sync.errors"}
