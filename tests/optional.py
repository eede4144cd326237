"""Skipping a test whose optional package (an extra: onnx, keras, ...) is not installed."""

import importlib.util

import pytest


def needs(*modules: str) -> None:
    """Skip unless the modules are installed, without importing them here (Keras picks its backend at import;
    the targets import them in their own worker processes)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing}")
