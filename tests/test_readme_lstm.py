"""A user's LSTM written from the README alone passes; the same with a gate-order slip fails, reproducibly."""

import json
import re
import shlex
from pathlib import Path

import pytest

from rnnspec.spec.cli import main

README = Path(__file__).parent.parent / "README.md"
# the LSTM's default cases are those of tests/test_mutants.py's LSTM group: computed once in that process
pytestmark = pytest.mark.xdist_group("lstm")


def _readme_lstm() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if "def my_lstm" in b]
    return block


def test_the_readme_lstm_passes(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "my_lstm.py"
    path.write_text(_readme_lstm())
    code = main(["check", f"{path}:impl", "--quiet", "--report", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and report["cell"] == "lstm" and report["verdict"] == "conformant", capsys.readouterr().out


def test_the_readme_lstm_with_input_and_forget_gates_swapped_fails_and_reproduces(tmp_path, capsys):
    pytest.importorskip("torch")
    right = 'torch.sigmoid(gate("i")), torch.sigmoid(gate("f"))'
    text = _readme_lstm()
    assert right in text
    path = tmp_path / "my_lstm.py"
    path.write_text(text.replace(right, 'torch.sigmoid(gate("f")), torch.sigmoid(gate("i"))'))
    assert main(["check", f"{path}:impl", "--quiet"]) == 1
    out = capsys.readouterr().out
    failed = {line.split()[0] for line in out.splitlines() if re.match(r"LSTM-\S+ +failed", line)}
    assert {"LSTM-FWD-H", "LSTM-FWD-C", "LSTM-VJP-W_I", "LSTM-VJP-W_F", "LSTM-LOSS-B_F"} <= failed, out
    reproduce = next(line.split("reproduce: ", 1)[1] for line in out.splitlines() if "reproduce: rnnspec" in line)
    assert '"cell":"lstm"' in reproduce
    assert main(shlex.split(reproduce)[1:] + ["--quiet"]) == 1


def test_the_readme_kernels_from_a_trained_lstm_agree_with_torch(capsys):
    """The kernels section's block: an nn.LSTM's weights through from_framework into rnnspec.kernels.forward
    give torch's own outputs (the block prints the largest difference; float32 rounding is about 1e-7)."""
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if "from_framework(" in b and "rnnspec.kernels" in b]
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_block"})
    out = capsys.readouterr().out
    difference = float(out.split("largest difference:")[1])
    assert difference < 1e-5, out
