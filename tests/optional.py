"""Skipping a test whose optional package (an extra: onnx, keras, ...) is not installed; failing it instead under CI
when .ci/run installs that package, so that a broken install cannot pass as skipped tests."""

import functools
import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def installed_by_ci() -> frozenset[str]:
    """The import names of what .ci/run installs: the distributions of the extras in its ``pip install -e ".[...]"``
    line (read from pyproject.toml) and the packages named after them (``torch==2.13.0``)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli, the same parser
        import tomli as tomllib

    line = re.search(r'pip install [^\n]*-e "\.\[([\w,-]+)\]"([^\n]*)', (ROOT / ".ci/run").read_text())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    requirements = [r for extra in line[1].split(",") for r in extras[extra]] + line[2].split()
    return frozenset(re.match(r"[\w.-]+", r)[0].lower().replace("-", "_") for r in requirements)


def needs(*modules: str) -> None:
    """Skip unless the modules are installed, without importing them here (Keras picks its backend at import;
    the targets import them in their own worker processes). Under CI a missing module that .ci/run installs fails
    the test: there it is a broken environment, not an optional extra (as the C client's missing compiler)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing and os.environ.get("CI") and set(missing) & installed_by_ci():
        pytest.fail(f"not installed: {missing}, which .ci/run installs: the environment is broken")
    if missing:
        pytest.skip(f"not installed: {missing}")
