"""The code is formatted and linted with ruff (pinned in requirements.txt, configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_running_python_is_one_pyproject_admits():
    """requires-python names what CI tests: a Python outside it fails here rather than in a user's run."""
    import tomllib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec.startswith(">="), spec
    minimum = tuple(int(part) for part in spec[2:].split("."))
    assert sys.version_info[: len(minimum)] >= minimum
