"""The LSTM and GRU derivation documents: forward equations, derived BPTT, gradient flow, proof."""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from rnnspec.derivations.cells import Cell
from rnnspec.derivations.derive import Derivation, derive
from rnnspec.derivations.document import NAMES as ELMAN_NAMES
from rnnspec.derivations.document import THE_NOTES, certificate_rows
from rnnspec.derivations.engine import jacobian
from rnnspec.derivations.proof import Certificate
from rnnspec.derivations.registry import cell as registered
from rnnspec.derivations.render import index_form, matrix_form
from rnnspec.derivations.tensors import Equation

#: the head's quantities as the Elman document writes them, but its softmax output is p_t here (o_t is
#: the LSTM's output gate) and its output bias c stays c (the LSTM's cell state is c_t)
HEAD_NAMES = {k: ELMAN_NAMES[k] for k in ("a", "y", "mu", "s", "ell", "g_a", "g_s", "g_ell", "g_V", "g_c")}
HEAD_NAMES["o"] = "p_{t}"

INTRO = (
    "Notation: batch rows are handled by the code; here everything is one example, vectors are columns, $\\odot$ is"
    " the elementwise product and $\\sigma(u) = 1 / (1 + e^{-u})$. A bar is a cotangent, $\\bar{q} = \\partial L /"
    " \\partial q$; a hat is a gate's pre-activation ($\\hat{f}_t$ is the forget gate's argument). Indices repeated on"
    " the right and absent on the left are summed. " + THE_NOTES + " `elman.md` derives the notes' own formulas."
)


def _split(latex: str) -> tuple[str, str]:
    """``("c", "t")`` from ``c_t`` or ``c_{t}``; ``(latex, "")`` when there is no trailing subscript."""
    match = re.fullmatch(r"(.*?)_(\{(.*)\}|([A-Za-z0-9]))", latex)
    if not match or "(" in latex:
        return latex, ""
    return match.group(1), match.group(3) or match.group(4)


def names(derivation: Derivation) -> dict[str, str]:
    """How each quantity is written: its Var's LaTeX with the subscript braced (c_{t}), a cotangent as a bar
    over the base (\\bar{c}_{t}), the head's quantities as in the Elman document."""
    out = {}
    for name, var in derivation.quantities.items():
        base = derivation.quantities.get(name.removeprefix("g_").removesuffix("_in"))
        if name.startswith("g_") and base is not None:
            stem, sub = _split(base.latex or base.name)
            mark = r"^{\,\mathrm{in}}" if name.endswith("_in") else ""
            bar = r"\overline" if stem.startswith("(") else r"\bar"
            out[name] = rf"{bar}{{{stem}}}{mark}" + (f"_{{{sub}}}" if sub else "")
        else:
            stem, sub = _split(var.latex or name)
            out[name] = stem + (f"_{{{sub}}}" if sub else "")
    out.update(HEAD_NAMES)
    return out


def _display(eq: Equation, written: dict[str, str]) -> str:
    matrix = matrix_form(eq, written)
    return f"$$ {matrix} $$" if matrix else f"$$ {index_form(eq, written)} $$"


def _table(equations, written: dict[str, str]) -> list[str]:
    rows = ["| quantity | index form (derived) | matrix form |", "|---|---|---|"]
    for eq in equations:
        matrix = matrix_form(eq, written)
        rows.append(f"| `{eq.target.name}` | ${index_form(eq, written)}$ | {'$' + matrix + '$' if matrix else '—'} |")
    return rows


def _forward(cell: Cell, written: dict[str, str]) -> list[str]:
    return [_display(eq, written) for eq in cell.step]


def _head(cell: Cell, written: dict[str, str]) -> list[str]:
    return [
        "The head is the one every cell shares (`derivations/heads.py`): the softmax cross-entropy of"
        " $a_t = V h_t + c$, with the output bias c, a parameter, not the LSTM's cell state $c_t$:",
        "",
        *[_display(eq, written) for eq in cell.head.equations + cell.head.outputs],
        "",
        "$$ L = \\sum_{t=1}^{T} \\ell_t $$",
    ]


def _jacobian(cell: Cell, of: str, wrt: str, written: dict[str, str]) -> str:
    quantities = cell.quantities
    eq = jacobian(cell.step, quantities, quantities[of], quantities[wrt])
    label = rf"\left(\frac{{\partial {written[of]}}}{{\partial {written[wrt]}}}\right)"
    shown = {**written, eq.target.name: label}
    return _display(eq, shown)


def _inlined(derivation: Derivation, target: str, through: str) -> Equation:
    """The backward equation of ``target`` with the cotangent ``through`` replaced by its own equation."""
    equations = {eq.target.name: eq for eq in derivation.step_backward}
    inner = equations[through]
    w = sp.Wild("w")
    rhs = equations[target].rhs.replace(sp.IndexedBase(through)[w], lambda w: inner.rhs.xreplace({inner.indices[0]: w}))
    return Equation(equations[target].target, equations[target].indices, rhs)


def _curve_lines(data: dict[str, np.ndarray], steps: tuple[int, ...] = (10, 30, 60)) -> list[str]:
    rows = ["| cell | " + " | ".join(f"T-k = {k}" for k in steps) + " |", "|---|" + "---|" * len(steps)]
    for name, norms in data.items():
        rows.append(f"| {name} | " + " | ".join(f"{norms[k]:.2g}" for k in steps) + " |")
    return rows


def lstm_document(certificates: list[Certificate], figure: str, curves: dict[str, np.ndarray]) -> str:
    cell = registered("lstm")
    derivation = derive(cell)
    written = names(derivation)
    by_name = {eq.target.name: eq for eq in derivation.step_backward}
    lines = [
        "# The LSTM: forward equations, derived BPTT, gradient flow, proof",
        "",
        "*Generated by `rnnspec derive` from `derivations/gated.py`; do not edit. Every backward formula below was"
        " derived by SymPy from the forward equations (`derivations/engine.py`); none is typed by hand.*",
        "",
        INTRO,
        "",
        "## 1. Forward equations",
        "",
        "Gates in PyTorch's order i, f, g, o; per-gate parameters $U_k$ (input), $W_k$ (recurrent), $b_k$:",
        "",
        *_forward(cell, written),
        "",
        *_head(cell, written),
        "",
        "## 2. Derived: the backward equations of one step",
        "",
        "Given the cotangents of a step's new states, $\\bar{h}_t$ and $\\bar{c}^{\\,\\mathrm{in}}_t$ (what step t+1"
        " and the caller send to $c_t$), the engine derives:",
        "",
        *_table(derivation.step_backward, written),
        "",
        "## 3. BPTT assembled",
        "",
        "For t = T..1, the step receives $\\bar{h}_t$ = (the head's $V^T (p_t - y_t)$, or the caller's cotangent)"
        " + the $\\bar{h}_{t-1}$ of step t+1, and $\\bar{c}^{\\,\\mathrm{in}}_t$ = (the caller's cotangent on $c_t$)"
        " + the $\\bar{c}_{t-1}$ of step t+1 (zero after the last step). Every parameter's gradient is its per-step"
        " cotangent summed over t (and the batch); $\\partial L / \\partial h_0$ and $\\partial L / \\partial c_0$ are"
        " the $\\bar{h}_{t-1}$, $\\bar{c}_{t-1}$ of step 1. Per gate k, the notes' rules hold with the gate's"
        " pre-activation cotangent as the error: $\\bar{b}_k = \\bar{\\hat{k}}_t$ (BP3),"
        " $\\bar{W}_k = \\bar{\\hat{k}}_t h_{t-1}^T$ and $\\bar{U}_k = \\bar{\\hat{k}}_t x_t^T$ (BP4), and the"
        " error reaches $h_{t-1}$ through every gate's transposed recurrent matrix (BP2):",
        "",
        _display(by_name["g_h_prev"], written),
        "",
        "The second carried cotangent is new: the cell state's, through the forget gate alone,",
        "",
        _display(by_name["g_C_prev"], written),
        "",
        "## 4. Gradient flow: the cell-state path",
        "",
        "The step Jacobians, derived by the chain rule through the step's equations (forward mode):",
        "",
        _jacobian(cell, "C", "C_prev", written),
        _jacobian(cell, "C", "h_prev", written),
        _jacobian(cell, "h", "C_prev", written),
        _jacobian(cell, "h", "h_prev", written),
        "",
        "The Elman product $\\partial h_t / \\partial h_k = \\prod_{j} \\operatorname{diag}(f'(z_j)) W$"
        " (see `elman.md`, section 5) multiplies a matrix and a derivative at every step, and shrinks or grows"
        " geometrically. The"
        " LSTM's cell state has a path with no matrix and no derivative: $\\partial c_t / \\partial c_{t-1} ="
        " \\operatorname{diag}(f_t)$ when $h_{t-1}$ is held, so along it"
        " $\\partial c_t / \\partial c_k = \\prod_j \\operatorname{diag}(f_j)$, which stays near 1 while the forget"
        " gate stays open. The terms through h ($\\partial c_t / \\partial h_{t-1}$, and h's own path) still carry"
        " the factors of the Elman kind. Measured, the norm of the cotangent $\\partial L_T / \\partial h_k$ carried"
        " back by each cell's derived backward step (T = 60, H = 32, every recurrent matrix orthogonal, biases 0"
        f" except where named; `{figure}`):",
        "",
        f"![norm of dL_T/dh_k against T-k for the three cells]({figure})",
        "",
        *_curve_lines(curves),
        "",
        "With biases 0 the forget gate sits near $\\sigma(0) = 1/2$ and the LSTM's gradient decays as fast as the"
        " others'; with $b_f = 3$ ($f \\approx 0.95$) it stops decaying after the first steps, because the cell-state"
        " path $\\prod_j f_j$ then carries it.",
        "",
        *_proof_section(certificates),
    ]
    return "\n".join(lines)


PROOF_TEXT = (
    "Every parameter, input and initial-state entry is a symbol; the forward equations give the whole unrolled loss"
    " as one expression, which is differentiated by each symbol and compared with the derived BPTT run on the same"
    " symbols (`derivations/proof.py`; SymEngine, whose expressions share subexpressions, builds both). *Exact*: the"
    " difference expands to 0 with tanh, exp and log subterms taken as independent symbols (a zero is then a proof)."
    " *Numeric*: where the expansion does not cancel (the logistic function's rational form), the difference at two"
    " random rational points, evaluated in 50-digit arithmetic (MPFR)."
)


def _proof_section(certificates: list[Certificate]) -> list[str]:
    return ["## 5. Proof certificate", "", PROOF_TEXT, "", *certificate_rows(certificates), ""]


def gru_document(certificates: list[Certificate], figure: str, curves: dict[str, np.ndarray]) -> str:
    after, before = registered("gru-reset-after"), registered("gru-reset-before")
    d_after, d_before = derive(after), derive(before)
    w_after, w_before = names(d_after), names(d_before)
    lines = [
        "# The GRU, reset gate after and before the recurrent product: forward equations, derived BPTT, proof",
        "",
        "*Generated by `rnnspec derive` from `derivations/gated.py`; do not edit. Every backward formula below was"
        " derived by SymPy from the forward equations (`derivations/engine.py`); none is typed by hand.*",
        "",
        INTRO,
        "",
        "Two cells are called GRU. `gru-reset-after` applies the reset gate to the recurrent product"
        " $W_n h_{t-1} + b_{hn}$ (PyTorch, cuDNN, Keras 3 with `reset_after=True`, Flax); `gru-reset-before` applies it"
        " to $h_{t-1}$ before $W_n$ and has no $b_{hn}$ (ONNX's default `linear_before_reset=0`, Keras"
        " `reset_after=False`, TensorFlow 1, the 2014 paper). They compute different functions; weights of one cannot"
        " be copied into the other.",
        "",
        "## 1. Forward equations",
        "",
        "**gru-reset-after** ($m_t$ is the recurrent product before the reset gate):",
        "",
        *_forward(after, w_after),
        "",
        "**gru-reset-before**:",
        "",
        *_forward(before, w_before),
        "",
        *_head(after, w_after),
        "",
        "## 2. Derived: the backward equations of one step",
        "",
        "**gru-reset-after**:",
        "",
        *_table(d_after.step_backward, w_after),
        "",
        "**gru-reset-before**:",
        "",
        *_table(d_before.step_backward, w_before),
        "",
        "## 3. The difference, in the gradients",
        "",
        "With the intermediate cotangents inlined, the derived gradients of $W_n$ differ in where the reset gate"
        " sits, and only the reset-after cell has a $b_{hn}$:",
        "",
        "| | gru-reset-after | gru-reset-before |",
        "|---|---|---|",
        f"| $\\bar{{W}}_n$ | ${_matrix(_inlined(d_after, 'g_W_n', 'g_m'), w_after)}$ "
        f"| ${_matrix(by(d_before, 'g_W_n'), w_before)}$ |",
        f"| $\\bar{{b}}_{{hn}}$ | ${_matrix(_inlined(d_after, 'g_b_hn', 'g_m'), w_after)}$ | (no such parameter) |",
        f"| $\\bar{{r}}_t$ | ${_matrix(by(d_after, 'g_rg'), w_after)}$ "
        f"| ${_matrix(_inlined(d_before, 'g_rg', 'g_rh'), w_before)}$ |",
        "",
        "**Highlighted:** after the product, the error of $\\hat{n}_t$ is gated by $r_t$ before it reaches $W_n$ and"
        " $b_{hn}$, and $W_n$ pairs it with $h_{t-1}$ itself; before the product, the error reaches $W_n$ ungated and"
        " pairs with $r_t \\odot h_{t-1}$. An implementation that adds $b_{hn}$ outside the reset product"
        " (apple/coremltools#1124) or drops `linear_before_reset` (microsoft/onnxscript#2852) computes the other"
        " column; the suite's mutants `GruBhnOutsideReset` and `GruAfterResetBeforeProduct` are rejected on"
        " every forward and gradient clause.",
        "",
        "## 4. Gradient flow",
        "",
        "The step Jacobians, derived:",
        "",
        _jacobian(after, "h", "h_prev", w_after),
        _jacobian(before, "h", "h_prev", w_before),
        "",
        "The term $\\operatorname{diag}(z_t)$ is the GRU's path with no matrix and no derivative: while the update"
        " gate stays near 1, $h_t \\approx h_{t-1}$ and the gradient passes through as the LSTM's does through"
        f" $c_t$. Measured as in `lstm.md` (`{figure}`):",
        "",
        *_curve_lines(curves),
        "",
        *_proof_section(certificates),
    ]
    return "\n".join(lines)


def by(derivation: Derivation, target: str) -> Equation:
    return next(eq for eq in derivation.step_backward if eq.target.name == target)


def _matrix(eq: Equation, written: dict[str, str]) -> str:
    return matrix_form(eq, written) or index_form(eq, written)
