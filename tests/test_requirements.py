"""The lower bounds of the ML libraries are versions the suite runs on, not older ones
whose APIs the code does not support (transformers 4 has no cache layers; TRL 0.x other
trainer arguments)."""

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
REQUIREMENTS = {
    Requirement(line).name: Requirement(line)
    for line in [
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["project"]["optional-dependencies"]["test"],
    ]
}


@pytest.mark.parametrize("name", ["transformers", "trl", "datasets"])
def test_the_lowest_allowed_version_is_of_the_tested_major_release(name):
    installed = Version(version(name))
    lowest = [Version(s.version) for s in REQUIREMENTS[name].specifier if s.operator == ">="]
    assert lowest, f"{name} has no lower bound"
    assert installed in REQUIREMENTS[name].specifier
    assert lowest[0].major == installed.major
