"""The committed documents are what `rnnspec derive` renders now, and show what they must."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnspec import catalogue

from latex_reader import Context, Names, evaluate, read

GENERATED = Path(__file__).parent.parent / "derivations" / "generated"


def test_generated_documents_are_fresh():
    run = subprocess.run([sys.executable, "-m", "rnnspec.spec.cli", "derive", "--check"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"rnnspec derive --check: {run.stderr or run.stdout}"


def test_document_shows_the_derived_formulas_and_certificate():
    text = (GENERATED / "elman.md").read_text()
    for formula in [r"\delta_{t} h_{t-1}^{T}", r"\delta_{t} x_{t}^{T}", r"\left(o_{t} - y_{t}\right)",
                    r"W^{T} \delta_{t+1}", r"\operatorname{diag}\left(f'{\left(z_{t} \right)}\right) W",
                    "Where did the bias gradient go?", "elman_gradient_norms.png"]:
        assert formula in text, f"elman.md lacks {formula!r}"
    certificate = text.split("## 6. Proof certificate")[1]
    rows = [line for line in certificate.splitlines() if "| softmax-ce |" in line or "| identity-se |" in line]
    assert len(rows) == 16 and all(line.endswith("| yes |") for line in rows), rows
    assert (GENERATED / "elman_gradient_norms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gated_documents_show_the_derived_gradient_flow_and_certificates():
    lstm = (GENERATED / "lstm.md").read_text()
    for formula in [r"\left(\frac{\partial c_{t}}{\partial c_{t-1}}\right) = \operatorname{diag}\left(f_{t}\right)",
                    r"\bar{c}_{t-1} = f_{t} \odot \bar{c}_{t}", "gradient_flow.png", "BP1", "output bias c"]:
        assert formula in lstm, f"lstm.md lacks {formula!r}"
    gru = (GENERATED / "gru.md").read_text()
    for formula in [r"\bar{W}_{n} = \left(\bar{\hat{n}}_{t} \odot r_{t}\right) h_{t-1}^{T}",
                    r"\bar{W}_{n} = \bar{\hat{n}}_{t} (r_{t} \odot h_{t-1})^{T}", r"\bar{b}_{hn} = ", "Highlighted"]:
        assert formula in gru, f"gru.md lacks {formula!r}"
    for text, cells in ((lstm, len(catalogue.documents()["lstm"])), (gru, len(catalogue.documents()["gru"]))):
        rows = [line for line in text.split("## 5. Proof certificate")[1].splitlines() if "| softmax-ce |" in line]
        assert len(rows) == 2 * cells and all(line.endswith("| yes |") for line in rows), rows
    assert (GENERATED / "gradient_flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_reports_a_stale_file(tmp_path):
    from rnnspec.derivations import generate

    files = {"elman.md": b"new"}
    (tmp_path / "elman.md").write_bytes(b"old")
    assert generate.stale(tmp_path, files) == ["elman.md"]
    generate.write(tmp_path, files)
    assert generate.stale(tmp_path, files) == []


def test_variants_document_shows_the_derived_composition_rules_and_certificates():
    text = (GENERATED / "variants.md").read_text()
    for formula in [r"h_{t} = m_{t} \tilde{h}_{t} + \left(1 - m_{t}\right) h_{t-1}",
                    r"\bar{h}_{t-1} = \left(1 - m_{t}\right) \bar{h}_{t} + W^{T} \bar{z}_{t}",
                    r"\bar{c}_{t-1} = \left(1 - m_{t}\right) \bar{c}_{t} + f_{t} \odot \bar{\tilde{c}}_{t}",
                    r"$\bar{h}_0 = \bar{y}_2$", r"$\bar{h}_0 = \bar{y}_0 m_{0}$"]:
        assert formula in text, f"variants.md lacks {formula!r}"
    rows = [line for line in text.split("## 4. Proof certificate")[1].splitlines() if "| layers=2 |" in line
            or "| bidirectional,lengths=zero |" in line]
    from rnnspec import catalogue

    # two variants of every cell of the catalogue, each proved
    assert len(rows) == 2 * len(catalogue.NAMES) and all(line.endswith("| yes |") for line in rows), rows



# -- gru.md: its Jacobians, their labels, the certificate table's cells, the notation --------------------------------

def _section(text: str, number: int) -> str:
    return text.split(f"\n## {number}. ")[1].split("\n## ")[0]


def _gru_cells(text: str) -> list[str]:
    """The cells gru.md derives, as its forward equations label them."""
    return re.findall(r"^\*\*([a-z-]+)\*\*", _section(text, 1), re.M)


JACOBIAN_LABEL = r"\left(\frac{\partial h_{t}}{\partial h_{t-1}}\right)"
SIZES = {"I": 2, "H": 3, "K": 4}


def _forward(cell, start, be):
    from rnnspec.derivations.evaluate import evaluate as run

    env = dict(start)
    for eq in cell.step:
        env[eq.target.name] = run(eq, env, cell.quantities, SIZES, 1, be)
    return env


def test_gru_jacobians_are_the_complex_step_jacobians_of_their_cells():
    """Each printed step Jacobian, read as written (``tests/latex_reader.py``), against the Jacobian of its cell's
    step by complex step. At 77676b5 the reset-before one summed W_{n,ij} r_{t,j} over k: H times too much."""
    from rnnspec.derivations.derive import derive
    from rnnspec.derivations.evaluate import backend
    from rnnspec.derivations.gated_document import names
    from rnnspec.derivations.registry import cell as registered

    text = (GENERATED / "gru.md").read_text()
    displays = [line[3:-3] for line in _section(text, 4).splitlines() if line.startswith("$$ " + JACOBIAN_LABEL)]
    cells = _gru_cells(text)
    assert len(displays) == len(cells) == 2, (cells, len(displays))
    rng = np.random.default_rng(5)
    for name, display in zip(cells, displays):
        cell = registered(name)
        written = {text: key for key, text in names(derive(cell)).items()}
        (statement,) = read(display, Names({**written, JACOBIAN_LABEL: "J"}))
        lhs, rhs = statement[2]
        start = {v.name: rng.standard_normal(((1,) if v.per_example else ()) + tuple(SIZES[s] for s in v.shape))
                 for v in cell.params + cell.inputs + cell.state_in}
        env = _forward(cell, start, backend("float64"))
        lookup = lambda key, step, env=env, cell=cell: env[key][0] if cell.quantities[key].per_example else env[key]
        want = np.empty((SIZES["H"], SIZES["H"]))
        for k in range(SIZES["H"]):
            moved = {n: np.asarray(v, dtype=complex) for n, v in start.items()}
            moved["h_prev"][0, k] += 1e-30j
            want[:, k] = _forward(cell, moved, backend("complex128"))["h"][0].imag / 1e-30
        if lhs[2]:  # index form: every entry
            got = np.array([[evaluate(rhs, Context(lookup, False, bind=dict(zip(lhs[2], (i, j)))))
                             for j in range(SIZES["H"])] for i in range(SIZES["H"])])
        else:
            got = evaluate(rhs, Context(lookup, True))
        assert np.allclose(got, want, rtol=1e-10, atol=1e-10), f"{name}: gru.md prints {got}, complex step {want}"


def test_gru_jacobians_are_labelled_with_their_cell():
    text = (GENERATED / "gru.md").read_text()
    lines = _section(text, 4).splitlines()
    labels = [lines[n - 2] for n, line in enumerate(lines) if line.startswith("$$ " + JACOBIAN_LABEL)]
    assert labels == [f"**{cell}**:" for cell in _gru_cells(text)], labels


@pytest.mark.parametrize("document", ["elman.md", "lstm.md", "gru.md", "variants.md"])
def test_every_certificate_row_names_its_cell(document):
    from rnnspec.derivations.registry import CELL_NAMES

    text = (GENERATED / document).read_text()
    tables = [block for block in text.split("\n\n") if "| proved |" in block]
    assert tables
    for table in tables:
        header, _, *rows = table.strip().splitlines()
        assert header.startswith("| cell |"), f"{document}: {header}"
        assert rows and all(row.split(" | ")[0].removeprefix("| ") in CELL_NAMES for row in rows), rows
    if document == "gru.md":
        rows = tables[0].strip().splitlines()[2:]
        assert sorted({row.split(" | ")[0].removeprefix("| ") for row in rows}) == sorted(_gru_cells(text))


def _notation(text: str) -> str:
    (paragraph,) = [p for p in text.split("\n\n") if p.startswith("Notation:")]
    return paragraph


@pytest.mark.parametrize("document,cells", [("gru.md", None), ("lstm.md", ("lstm",))])
def test_notation_names_only_the_gates_its_cells_have(document, cells):
    """gru.md once explained the hat by "the forget gate f^", which a GRU does not have."""
    from rnnspec.derivations.registry import cell as registered

    text = (GENERATED / document).read_text()
    made = [registered(name) for name in (cells or _gru_cells(text))]
    gates = {g.meaning: g.name for cell in made for g in cell.gates}
    hats = {cell.quantities[p].latex.split("}")[0].removeprefix(r"\hat{") for cell in made
            for p in cell.pre_activations if cell.quantities[p].latex.startswith(r"\hat{")}
    paragraph = _notation(text)
    named = re.findall(r"the (\w+) gate", paragraph)
    assert named and set(named) <= set(gates), f"{document} names gates {named}; its cells have {sorted(gates)}"
    assert set(re.findall(r"\\hat\{(\w)\}", paragraph)) <= hats | {"q"}, paragraph
    for meaning, name in gates.items():
        assert f"the {meaning} gate ${name}_" in paragraph, f"{document} does not name the {meaning} gate {name}"


@pytest.mark.parametrize("document", ["elman.md", "lstm.md", "gru.md", "variants.md"])
def test_the_logistic_derivative_is_written_sigma_times_one_minus_sigma(document):
    """sigma'(u) as sigma (1 - sigma), and a gate's as q_t (1 - q_t), not e^{-u} / (1 + e^{-u})^2."""
    from rnnspec.derivations.registry import cell as registered

    text = (GENERATED / document).read_text()
    assert not re.search(r"\\left\(1 \+ e\^\{- [^$]*\\right\)\^\{2\}", text), f"{document} prints e^-u/(1+e^-u)^2"
    if document == "gru.md":
        for name in _gru_cells(text):
            for gate in registered(name).gates:
                q = f"{gate.name}_{{t}}"
                assert rf"{q} \odot \left(1 - {q}\right)" in text, f"{document}: no {q} (1 - {q})"
