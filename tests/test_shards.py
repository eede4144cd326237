"""The matrix as work units: shards and runs in other environments merged into one matrix, and variant rows."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from rnnspec.spec import matrix
from rnnspec.spec.cli import main

CLIENT = Path(__file__).resolve().parent / "clients" / "rnn_client.py"


def program(*flags: str) -> str:
    """A matrix row: the protocol client of tests/clients, declaring what ``flags`` say."""
    return "exec:" + shlex.join([sys.executable, str(CLIENT), *flags])


#: two programs, standing for two framework environments: one right, one wrong (a missing transpose)
RIGHT = program("--cells", "elman", "--dtypes", "float64", "--activations", "tanh")
WRONG = program("--cells", "elman", "--dtypes", "float64", "--activations", "tanh", "--mutant", "MissingTranspose")
DEPTH = ["--seeds", "0,1", "--examples", "4", "--unit-cases", "2", "--quiet"]


def _matrix(*args: str, out: Path, command: str = "matrix") -> str:
    """The Markdown written, its own path (in the command line it shows) replaced by OUT."""
    assert main([command, *args, "--out", str(out)]) == 0
    return out.read_text().replace(str(out), "OUT")


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("plain") / "m.md"
    return _matrix("--targets", RIGHT, *DEPTH, out=out)


def test_the_plain_matrix_has_the_program_s_row(plain):
    assert "| rnn_client oracle | - | a program over docs/protocol.md | elman | float64 | **conformant** |" in plain
    # 2 seeds x 4 cases: every unit's cases counted once
    assert plain.count("| **conformant** |") == 1 and "| 8 |" in plain


@pytest.mark.parametrize("n", [2, 3])
def test_a_sharded_matrix_merged_is_the_plain_one(tmp_path, plain, n):
    folders = [str(tmp_path / f"s{k}") for k in range(1, n + 1)]
    for k, folder in enumerate(folders, 1):
        assert main(["matrix", "--targets", RIGHT, *DEPTH, "--results", folder, "--shard", f"{k}/{n}"]) == 0
    assert sum(len(list(Path(f, "units").iterdir())) for f in folders) == 4  # 2 seeds x 2 units, each once
    merged = _matrix("--from", *folders, out=tmp_path / "merged.md")
    # the command line in the header names the run's options, not how it was sharded
    assert merged == plain
    assert _matrix(*folders, out=tmp_path / "by-merge.md", command="merge") == plain


def test_runs_in_two_environments_make_one_matrix(tmp_path):
    right, wrong = str(tmp_path / "right"), str(tmp_path / "wrong")
    _matrix("--targets", RIGHT, *DEPTH, "--results", right, out=tmp_path / "a.md")
    _matrix("--targets", WRONG, *DEPTH, "--results", wrong, out=tmp_path / "b.md")
    text = _matrix("--from", right, wrong, out=tmp_path / "both.md")
    rows = [line for line in text.splitlines() if line.startswith("| rnn_client") and "| elman | float64 |" in line]
    assert len(rows) == 2
    assert "**conformant**" in rows[0] and "not conformant | VJP-* (5); LOSS-* (5) [failed]" in rows[1]
    assert f"--targets {RIGHT},{WRONG}" in text


def test_a_matrix_folder_and_a_check_folder_do_not_merge(tmp_path, capsys):
    m, c = str(tmp_path / "m"), str(tmp_path / "c")
    _matrix("--targets", RIGHT, *DEPTH, "--results", m, out=tmp_path / "m.md")
    assert main(["check", "oracle", "--examples", "2", "--quiet", "--results", c]) == 0
    assert main(["merge", m, c]) == 2
    assert "runs of different kinds" in capsys.readouterr().err


def test_variant_rows_are_each_declared_variant_of_a_row():
    """--variants: one more row per feature the target declares (torch: layers, bidirectional, ...), planned
    without running anything; the default plan has the plain rows only."""
    from rnnspec.spec.frameworks.torch_layers import TorchRNN

    torch_row = next(r for r in matrix.ROWS if r.target == "torch")
    plain_entries, _ = matrix.plan([torch_row], (0,), 4)
    entries, units = matrix.plan([torch_row], (0,), 4, variants=True)
    assert {e.variant for e in plain_entries} == {""}
    names = matrix.row_variants(torch_row, "lstm")
    assert len(names) == len(TorchRNN.variants) and "layers=2" in names and "bidirectional" in names
    provided = sum(not e.reason for e in plain_entries)
    # a variant row per provided (cell, dtype); a cell or dtype the target lacks stays one row
    assert len(entries) == len(plain_entries) + provided * len(names)
    assert sum(e.reason != "" for e in entries) == sum(e.reason != "" for e in plain_entries)
    stacked = [e for e in entries if e.variant == "layers=2" and not e.reason]
    assert stacked and all(units[e.key][0].variant == "layers=2" for e in stacked)
    assert all("L2" in units[e.key][0].clauses[0] for e in stacked)  # the variant's own clause ids


def test_variant_rows_spell_each_onnx_attribute_for_its_cell():
    """ONNX's clip and activations are declared as features but run with a value: clip at 1 on every cell, the
    activations list with one entry per nonlinearity the cell has (three for an LSTM, two for a GRU) and none on the
    Elman cell, whose nonlinearity is its activation."""
    row = next(r for r in matrix.ROWS if r.target == "onnxruntime")
    assert "clip=1" in matrix.row_variants(row, "elman")
    assert not any(v.startswith("activations") for v in matrix.row_variants(row, "elman"))
    assert "activations=sigmoid/relu/relu" in matrix.row_variants(row, "lstm")
    assert "activations=sigmoid/relu" in matrix.row_variants(row, "gru-reset-before")
    entries, units = matrix.plan([row], (0,), 4, variants=True)
    lstm = {e.variant for e in entries if e.cell == "lstm" and not e.reason}
    assert {"clip=1", "activations=sigmoid/relu/relu"} <= lstm
