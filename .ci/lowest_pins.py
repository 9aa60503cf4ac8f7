"""Print pip constraints pinning every dependency to the lowest version pyproject.toml admits.

``.ci/run`` installs the project with these constraints into a second virtualenv and runs the
suite there, so the floors in ``[project] dependencies`` are proven, not guessed. Every runtime
dependency and every optional extra but ``test`` (our own tools) must name its floor with ``>=``:

    python3 .ci/lowest_pins.py [pyproject.toml] > constraints.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<specs>[^;]*)(?P<marker>;.*)?$"
)
OWN_TOOLS = {"test"}


def floor_pin(requirement: str) -> str:
    """``"httpx>=0.25,<1; python_version>='3.11'"`` -> ``"httpx==0.25; python_version>='3.11'"``."""
    match = REQUIREMENT.match(requirement)
    if not match:
        raise ValueError(f"{requirement!r} is not a requirement this script can read")
    floors = [spec.strip()[2:].strip() for spec in match["specs"].split(",") if spec.strip().startswith(">=")]
    if len(floors) != 1:
        raise ValueError(
            f"{requirement!r} names no single floor; write it as name>=X (an upper bound may follow)"
        )
    return f"{match['name']}=={floors[0]}{match['marker'] or ''}"


def lowest_pins(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra, extra_requirements in project.get("optional-dependencies", {}).items():
        if extra not in OWN_TOOLS:
            requirements.extend(extra_requirements)
    return [floor_pin(requirement) for requirement in requirements]


def main(argv: list[str]) -> int:
    pyproject = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        pins = lowest_pins(pyproject)
    except ValueError as exc:
        print(f"lowest_pins: {pyproject}: {exc}", file=sys.stderr)
        return 2
    print("\n".join(pins))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
