"""Print a pip constraints file that pins every dependency of fmclient to its declared floor.

CI installs the adapter extras under these constraints in a second venv and runs the adapter
tests, so a lower bound in pyproject.toml is a version the code is known to work with, not a
guess. Only direct dependencies are pinned (what ``--resolution lowest-direct`` means in uv);
their own dependencies resolve as usual.

Usage: python .ci/lowest_constraints.py EXTRA [EXTRA ...] > constraints.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project supports 3.10, where the parser is the tomli backport
    import tomli as tomllib

FLOOR = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(?:;\s*(.+))?$")


def floors(requirements: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for requirement in requirements:
        match = FLOOR.match(requirement.strip())
        if match is None:
            continue  # a reference to another extra (fmclient[...]) or an unbounded requirement
        name, version, marker = match.groups()
        if marker and "python_version" in marker and sys.version_info >= (3, 11):
            continue  # e.g. tomli, needed on 3.10 only
        found[name.lower()] = version
    return found


def main(extras: list[str]) -> int:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        print(f"unknown extra(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    pins = floors(project["dependencies"])
    for extra in extras:
        pins.update(floors(optional[extra]))
    for name, version in sorted(pins.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
