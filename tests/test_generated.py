"""The committed documents are what `rnnspec derive` renders now, and show what they must."""

import subprocess
import sys
from pathlib import Path

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
    for text, cells in ((lstm, 3), (gru, 2)):  # lstm.md: the LSTM, the projected one (6), with peepholes (7)
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
    for formula in [r"h_{t} = m_{t} \tilde{h}_{t} + \left(- m_{t} + 1\right) h_{t-1}",
                    r"\bar{h}_{t-1} = \left(- m_{t} + 1\right) \bar{h}_{t} + W^{T} \bar{z}_{t}",
                    r"\bar{c}_{t-1} = \left(- m_{t} + 1\right) \bar{c}_{t} + f_{t} \odot \bar{\tilde{c}}_{t}",
                    r"$\bar{h}_0 = \bar{y}_2$", r"$\bar{h}_0 = \bar{y}_0 m_{0}$"]:
        assert formula in text, f"variants.md lacks {formula!r}"
    rows = [line for line in text.split("## 4. Proof certificate")[1].splitlines() if "| layers=2 |" in line
            or "| bidirectional,lengths=zero |" in line]
    assert len(rows) == 8 and all(line.endswith("| yes |") for line in rows), rows
