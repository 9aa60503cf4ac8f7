"""The package layout as pyproject.toml maps it: every module of gladly_sync, its file, its imports."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
PACKAGES: list[str] = _SETUPTOOLS["packages"]
PACKAGE_DIRS: dict[str, str] = _SETUPTOOLS["package-dir"]


def package_folder(package: str) -> Path:
    """The repository folder a package lives in: gladly_sync.sync.cli -> sync/cli."""
    roots = [name for name in PACKAGE_DIRS if package == name or package.startswith(name + ".")]
    mapped = max(roots, key=len)
    rest = package[len(mapped) :].lstrip(".")
    return ROOT / PACKAGE_DIRS[mapped] / rest.replace(".", "/")


def modules() -> dict[str, Path]:
    """Every module of the distribution (packages by their ``__init__.py``), by import name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted(package_folder(package).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def package_folders() -> dict[Path, str]:
    """Every folder with an ``__init__.py`` below the mapped roots, and the import name it has."""
    found: dict[Path, str] = {}
    for package, folder in PACKAGE_DIRS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rest = init.parent.relative_to(ROOT / folder).parts
            found[init.parent] = ".".join((package, *rest))
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node that runs when the module (or any of its functions) runs: not ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (child for orelse in node.orelse for child in [orelse, *_runtime_nodes(orelse)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gladly_sync modules ``name`` imports at run time, at module level or inside functions.

    ``from package import module`` counts as importing the module, not the package's ``__init__``.
    """
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*trail, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None
