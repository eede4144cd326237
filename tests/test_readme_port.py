"""The weight-porting example of docs/frameworks.md (PyTorch LSTM into Keras LSTM) runs and agrees to float32
rounding."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = Path(__file__).parent.parent / "docs" / "frameworks.md"


def test_the_readme_port_from_pytorch_to_keras_gives_the_same_outputs():
    missing = [m for m in ("torch", "keras") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"not installed: {missing}")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", FRAMEWORKS.read_text(), re.S) if "port(weights" in b]
    # in its own process: Keras picks its backend when first imported
    run = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KERAS_BACKEND": "torch"})
    assert run.returncode == 0, run.stderr
    difference = float(run.stdout.split("largest difference:")[1])
    assert difference < 1e-5, run.stdout
