"""The LSTM and GRU derivation documents: forward equations, derived BPTT, gradient flow, proof."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import sympy as sp

from rnnspec import catalogue
from rnnspec.derivations.cells import Cell
from rnnspec.derivations.derive import Derivation, derive
from rnnspec.derivations.document import LOSS, THE_NOTES, TOTAL_LOSS, certificate_rows
from rnnspec.derivations.document import NAMES as ELMAN_NAMES
from rnnspec.derivations.engine import jacobian
from rnnspec.derivations.page import Page
from rnnspec.derivations.proof import Certificate
from rnnspec.derivations.registry import cell as registered
from rnnspec.derivations.render import logistic_form
from rnnspec.derivations.tensors import Equation

#: the head's quantities as the Elman document writes them, but its softmax output is p_t here (o_t is
#: the LSTM's output gate) and its output bias c stays c (the LSTM's cell state is c_t); the cotangents of its
#: parameters are written as every parameter's here, \bar{V} and \bar{c} (not \bar{c}_{t}, the cell state's)
HEAD_NAMES = {k: ELMAN_NAMES[k] for k in ("a", "y", "mu", "s", "ell", "g_a", "g_s", "g_ell")}
HEAD_NAMES["o"] = "p_{t}"

#: the cells lstm.md and gru.md derive, as the catalogue files them
LSTM_CELLS = catalogue.documents()["lstm"]
GRU_CELLS = catalogue.documents()["gru"]

#: what a document written by :func:`family_document` says of its cells before the equations
INTROS = {
    "mgu": "Two cells are called MGU. `mgu` is the minimal gated unit of Zhou, Wu, Zhang and Zhou (2016): one"
           " forget gate $f_t$ resets $h_{t-1}$ before $W_n$ and mixes the candidate in, $h_t = (1 - f_t) \\odot"
           " h_{t-1} + f_t \\odot n_t$. `mgu-flax` is what flax.linen's `MGUCell` computes: $f_t$ multiplies the"
           " recurrent product $W_n h_{t-1} + b_{hn}$ (with a bias of its own) and keeps the old state,"
           " $h_t = (1 - f_t) \\odot n_t + f_t \\odot h_{t-1}$, a GRU whose one gate is both its reset and its"
           " update gate. They compute different functions; weights of one cannot be copied into the other.",
}



def _hats(cells: Sequence[Cell]) -> list[str]:
    """"$\\hat{r}_t$ that of the reset gate $r_t$", ... for each pre-activation u of ``cells`` that a step equation
    q = F(u) feeds to a nonlinearity, named after the cell's gate q where q is one (read from the cell definitions)."""
    found: dict[str, str] = {}
    for cell in cells:
        meaning = {gate.name: gate.meaning for gate in cell.gates}
        for eq in cell.step:
            rhs = logistic_form(eq.rhs)
            if not isinstance(rhs, sp.Function) or len(rhs.args) != 1 or not isinstance(rhs.args[0], sp.Indexed):
                continue
            name = rhs.args[0].base.label.name
            if name not in cell.pre_activations:
                continue
            (pre, at), (out, now) = _split(cell.quantities[name].latex), _split(eq.target.latex)
            whose = f"the {meaning[out]} gate ${out}_{now}$" if out in meaning else f"${out}_{now}$"
            found.setdefault(pre, f"${pre}_{at}$ that of {whose}")
    return list(found.values())


def notation(cells: Sequence[Cell]) -> str:
    """The notation paragraph of a document on ``cells``: its hats name the gates those cells have."""
    return (
        "Notation: batch rows are handled by the code; here everything is one example, vectors are columns, $\\odot$"
        " is the elementwise product and $\\sigma(u) = 1 / (1 + e^{-u})$, whose derivative is $\\sigma(1 - \\sigma)$:"
        " a gate $q_t = \\sigma(\\hat{q}_t)$ contributes $q_t \\odot (1 - q_t)$. A bar is a cotangent,"
        " $\\bar{q} = \\partial L / \\partial q$; a hat marks the argument of a nonlinearity: "
        + ", ".join(_hats(cells)) + ". A sum $\\sum_k$ runs over the factors after it, up to the next + or -. "
        + THE_NOTES + " `elman.md` derives the notes' own formulas."
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


def _preamble(title: str, cells: Sequence[Cell]) -> list[str]:
    return [f"# {title}", "", "*Generated by `rnnspec derive` from `derivations/gated.py`; do not edit. Every backward"
            " formula below was derived by SymPy from the forward equations (`derivations/engine.py`); none is typed"
            " by hand.*", "", notation(cells), ""]


def _forward(page: Page, cell: Cell, written: dict[str, str]) -> list[str]:
    return [page.display(eq, written, cell) for eq in cell.step]


def _head(page: Page, cell: Cell, written: dict[str, str]) -> list[str]:
    return [
        "The head is the one every cell shares (`derivations/heads.py`): the softmax cross-entropy of"
        " $a_t = V h_t + c$, with the output bias c, a parameter, not the LSTM's cell state $c_t$:",
        "",
        *[page.display(eq, written, cell) for eq in cell.head.equations + cell.head.outputs],
        "",
        f"$$ {page.program(TOTAL_LOSS, LOSS, written, cell)} $$",
    ]


def _jacobian(page: Page, cell: Cell, of: str, wrt: str, written: dict[str, str]) -> str:
    quantities = cell.quantities
    eq = jacobian(cell.step, quantities, quantities[of], quantities[wrt])
    label = rf"\left(\frac{{\partial {written[of]}}}{{\partial {written[wrt]}}}\right)"
    shown = {**written, eq.target.name: label}
    return page.display(eq, shown, cell, kind="jacobian")


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


def lstm_document(certificates: list[Certificate], figure: str, curves: dict[str, np.ndarray],
                  page: Page | None = None) -> str:
    """``lstm.md``; every formula it prints is recorded in ``page`` (:mod:`rnnspec.derivations.page`)."""
    page = page if page is not None else Page()
    cell = registered("lstm")
    derivation = derive(cell)
    written = names(derivation)
    by_name = {eq.target.name: eq for eq in derivation.step_backward}
    lines = [
        *_preamble("The LSTM: forward equations, derived BPTT, gradient flow, proof",
                   [registered(name) for name in LSTM_CELLS]),
        "## 1. Forward equations",
        "",
        "Gates in PyTorch's order i, f, g, o; per-gate parameters $U_k$ (input), $W_k$ (recurrent), $b_k$:",
        "",
        *_forward(page, cell, written),
        "",
        *_head(page, cell, written),
        "",
        "## 2. Derived: the backward equations of one step",
        "",
        "Given the cotangents of a step's new states, $\\bar{h}_t$ and $\\bar{c}^{\\,\\mathrm{in}}_t$ (what step t+1"
        " and the caller send to $c_t$), the engine derives:",
        "",
        *page.table(derivation.step_backward, written, cell),
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
        page.display(by_name["g_h_prev"], written, cell),
        "",
        "The second carried cotangent is new: the cell state's, through the forget gate alone,",
        "",
        page.display(by_name["g_C_prev"], written, cell),
        "",
        "## 4. Gradient flow: the cell-state path",
        "",
        f"The step Jacobians of `{cell.name}`, derived by the chain rule through the step's equations (forward mode):",
        "",
        _jacobian(page, cell, "C", "C_prev", written),
        _jacobian(page, cell, "C", "h_prev", written),
        _jacobian(page, cell, "h", "C_prev", written),
        _jacobian(page, cell, "h", "h_prev", written),
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
        *_proof_section([c for c in certificates if c.cell == "lstm"]),
        *_projection_section(page, [c for c in certificates if c.cell == "lstm-proj"]),
        *_peephole_section(page, [c for c in certificates if c.cell == "lstm-peephole"]),
        *_coupled_section(page, [c for c in certificates if c.cell == "lstm-coupled"]),
    ]
    return "\n".join(lines)


def _projection_section(page: Page, certificates: list[Certificate]) -> list[str]:
    """The cell ``lstm-proj``: its two new forward equations, their derived backward ones, its proof."""
    cell = registered("lstm-proj")
    derivation = derive(cell)
    written = names(derivation)
    new = [eq for eq in cell.step if eq.target.name in ("r", "h")]
    backward = [eq for eq in derivation.step_backward if eq.target.name in ("g_r", "g_W_hr", "g_C", "g_h_prev")]
    return [
        "## 6. With a projection (`lstm-proj`, PyTorch's `proj_size`)",
        "",
        "The output is projected to P < H entries by $W_{hr}$ (P, H), and that is the state the gates read back, so"
        " every $W_k$ is (H, P), $h_0$ is (B, P) while $c_0$ stays (B, H), and the head's V is (K, P). The step's last"
        " equation becomes two:",
        "",
        *[page.display(eq, written, cell) for eq in new],
        "",
        "and the engine derives, in place of the plain LSTM's first lines:",
        "",
        *page.table(backward, written, cell),
        "",
        "Proof certificate, as in section 5, with P = 1:",
        "",
        *certificate_rows(certificates),
        "",
    ]


def _peephole_section(page: Page, certificates: list[Certificate]) -> list[str]:
    """The cell ``lstm-peephole``: its gates' equations, the derived backward lines that change, its proof."""
    cell = registered("lstm-peephole")
    derivation = derive(cell)
    written = names(derivation)
    forward = [eq for eq in cell.step if eq.target.name in ("zi", "zf", "C", "zo")]
    backward = [eq for eq in derivation.step_backward if eq.target.name in ("g_C", "g_P_i", "g_P_f", "g_P_o",
                                                                          "g_C_prev")]
    return [
        "## 7. With peepholes (`lstm-peephole`, ONNX's P)",
        "",
        "The input and forget gates also read the previous cell state, and the output gate the new one, each"
        " through a diagonal $P_k$ (H,) (ONNX's `P`, in the order i, o, f), so $c_t$ comes before $\\hat{o}_t$:",
        "",
        *[page.display(eq, written, cell) for eq in forward],
        "",
        "The engine derives the peepholes' gradients and the two new paths into the cell state's cotangents:",
        "",
        *page.table(backward, written, cell),
        "",
        "Proof certificate, as in section 5:",
        "",
        *certificate_rows(certificates),
        "",
    ]


def _coupled_section(page: Page, certificates: list[Certificate]) -> list[str]:
    """The cell ``lstm-coupled``: the coupled forget gate, the derived backward lines that change, its proof."""
    cell = registered("lstm-coupled")
    derivation = derive(cell)
    written = names(derivation)
    forward = [eq for eq in cell.step if eq.target.name in ("fg", "C")]
    backward = [eq for eq in derivation.step_backward if eq.target.name in ("g_fg", "g_ig", "g_C_prev")]
    return [
        "## 8. With coupled input and forget gates (`lstm-coupled`, ONNX's `input_forget=1`)",
        "",
        "The forget gate is no gate of its own: it is the input gate's complement, after the logistic function"
        " (ONNX Runtime computes `pf[i] = 1.0f - pi[i]` from the input gate's value), so the cell has no"
        " $U_f$, $W_f$, $b_f$ and its gates are i, g, o:",
        "",
        *[page.display(eq, written, cell) for eq in forward],
        "",
        "The input gate now reaches $c_t$ twice, through $i_t g_t$ and through $f_t = 1 - i_t$; the engine derives:",
        "",
        *page.table(backward, written, cell),
        "",
        "ONNX's operator still takes the forget gate's blocks in W, R and B and ignores them; rnnspec's packing"
        " fills them with random values (`spec/conventions/onnx.py`), so a runtime that reads them computes"
        " something else.",
        "",
        "Proof certificate, as in section 5:",
        "",
        *certificate_rows(certificates),
        "",
    ]


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


def gru_document(certificates: list[Certificate], figure: str, curves: dict[str, np.ndarray],
                 page: Page | None = None) -> str:
    """``gru.md``; every formula it prints is recorded in ``page`` (:mod:`rnnspec.derivations.page`)."""
    page = page if page is not None else Page()
    after, before = (registered(name) for name in GRU_CELLS)
    d_after, d_before = derive(after), derive(before)
    w_after, w_before = names(d_after), names(d_before)
    lines = [
        *_preamble("The GRU, reset gate after and before the recurrent product: forward equations, derived BPTT, "
                   "proof", [after, before]),
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
        *_forward(page, after, w_after),
        "",
        "**gru-reset-before**:",
        "",
        *_forward(page, before, w_before),
        "",
        *_head(page, after, w_after),
        "",
        "## 2. Derived: the backward equations of one step",
        "",
        "**gru-reset-after**:",
        "",
        *page.table(d_after.step_backward, w_after, after),
        "",
        "**gru-reset-before**:",
        "",
        *page.table(d_before.step_backward, w_before, before),
        "",
        "## 3. The difference, in the gradients",
        "",
        "With the intermediate cotangents inlined, the derived gradients of $W_n$ differ in where the reset gate"
        " sits, and only the reset-after cell has a $b_{hn}$:",
        "",
        "| | gru-reset-after | gru-reset-before |",
        "|---|---|---|",
        f"| $\\bar{{W}}_n$ | ${page.equation(_inlined(d_after, 'g_W_n', 'g_m'), w_after, after, 'matrix')}$ "
        f"| ${page.equation(by(d_before, 'g_W_n'), w_before, before, 'matrix')}$ |",
        f"| $\\bar{{b}}_{{hn}}$ | ${page.equation(_inlined(d_after, 'g_b_hn', 'g_m'), w_after, after, 'matrix')}$ "
        "| (no such parameter) |",
        f"| $\\bar{{r}}_t$ | ${page.equation(by(d_after, 'g_rg'), w_after, after, 'matrix')}$ "
        f"| ${page.equation(_inlined(d_before, 'g_rg', 'g_rh'), w_before, before, 'matrix')}$ |",
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
        "The step Jacobians, derived, of each cell:",
        "",
        f"**{after.name}**:",
        "",
        _jacobian(page, after, "h", "h_prev", w_after),
        "",
        f"**{before.name}**:",
        "",
        _jacobian(page, before, "h", "h_prev", w_before),
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


def family_document(name: str, certificates: list[Certificate], page: Page | None = None) -> str:
    """``<name>.md`` for the cells the catalogue files under ``name``, each the same way: forward equations, the
    derived backward step, the step Jacobian, the proof. A new cell under a new document needs nothing here."""
    page = page if page is not None else Page()
    cells = [registered(c) for c in catalogue.documents()[name]]
    derived = {c.name: derive(c) for c in cells}
    written = {c.name: names(derived[c.name]) for c in cells}
    titles = ", ".join(c.title for c in cells)
    lines = [*_preamble(f"{titles}: forward equations, derived BPTT, proof", cells), INTROS.get(name, ""), "",
             "## 1. Forward equations", ""]
    for c in cells:
        lines += [f"**{c.name}**:", "", *_forward(page, c, written[c.name]), ""]
    lines += [*_head(page, cells[0], written[cells[0].name]), "", "## 2. Derived: the backward equations of one step",
              ""]
    for c in cells:
        lines += [f"**{c.name}**:", "", *page.table(derived[c.name].step_backward, written[c.name], c), ""]
    lines += ["## 3. BPTT assembled", "",
              "For t = T..1, the step receives $\\bar{h}_t$ = (the head's $V^T (p_t - y_t)$, or the caller's cotangent)"
              " + the $\\bar{h}_{t-1}$ of step t+1; every parameter's gradient is its per-step cotangent summed over t"
              " (and the batch), and $\\partial L / \\partial h_0$ is the $\\bar{h}_{t-1}$ of step 1.", "",
              "## 4. Gradient flow", "", "The step Jacobians, derived, of each cell:", ""]
    for c in cells:
        lines += [f"**{c.name}**:", "", _jacobian(page, c, "h", "h_prev", written[c.name]), ""]
    lines += _proof_section(certificates)
    return "\n".join(lines)


def by(derivation: Derivation, target: str) -> Equation:
    return next(eq for eq in derivation.step_backward if eq.target.name == target)

