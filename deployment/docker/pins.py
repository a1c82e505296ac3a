"""Print the requirements pyproject.toml declares for the named distributions, one per line.

The Dockerfile installs torch from PyTorch's CPU wheel index before the project, and dagster-k8s
(a dev extra) beside it. Reading their pins from pyproject.toml keeps the image on the versions
the project declares instead of on copies in the Dockerfile that drift.

    python deployment/docker/pins.py pyproject.toml torch dagster-k8s
"""

import re
import sys
import tomllib
from pathlib import Path


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def pins(pyproject: Path, names: list[str]) -> list[str]:
    """The requirement of each name in ``names``, from the dependencies or any extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    declared = {_name(r): r.split(";")[0].strip() for r in requirements}
    missing = [n for n in names if _name(n) not in declared]
    if missing:
        raise SystemExit(f"{pyproject} declares no requirement for: {', '.join(missing)}")
    return [declared[_name(n)] for n in names]


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    print("\n".join(pins(Path(sys.argv[1]), sys.argv[2:])))
