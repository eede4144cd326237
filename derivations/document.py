"""The Elman derivation document: forward equations, derived BPTT, bound, proof certificate."""

from __future__ import annotations

import sympy as sp

from rnnspec.derivations.cells import ACTIVATIONS, HEADS, elman
from rnnspec.derivations.derive import Derivation, activation_derivative, activation_gain, derive
from rnnspec.derivations.page import Page, forward_equations
from rnnspec.derivations.proof import Certificate
from rnnspec.derivations.render import matrix_form
from rnnspec.derivations.tensors import Equation

#: what a document citing the notes must say of them
THE_NOTES = (
    "\"The notes\" are the project's source notes on the Elman RNN (in Chinese; they write S for h); their BP1-BP4"
    " are the four equations of backpropagation: BP1, the error at the output is the loss's derivative times the"
    " output nonlinearity's; BP2, the error of a layer is the next layer's error carried back through the transposed"
    " weights, times f'; BP3, a bias's gradient is the error; BP4, a weight's gradient is the error times the"
    " transposed input of that weight."
)

#: how each quantity is written, at step t; cotangents are bars, the notes' delta is dL/dz_t.
NAMES = {
    "x": "x_{t}", "h_prev": "h_{t-1}", "z": "z_{t}", "h": "h_{t}", "a": "a_{t}", "y": "y_{t}",
    "o": "o_{t}", "mu": r"\mu_{t}", "s": "s_{t}", "ell": r"\ell_{t}",
    "g_z": r"\delta_{t}", "g_h": r"\bar{h}_{t}", "g_h_prev": r"\bar{h}_{t-1}", "g_x": r"\bar{x}_{t}",
    "g_U": r"\bar{U}_{t}", "g_W": r"\bar{W}_{t}", "g_b": r"\bar{b}_{t}", "g_a": r"\bar{a}_{t}",
    "g_s": r"\bar{s}_{t}", "g_ell": r"\bar{\ell}_{t}", "g_V": r"\bar{V}_{t}", "g_c": r"\bar{c}_{t}",
    "J_h_h_prev": r"\frac{\partial h_t}{\partial h_{t-1}}",
}


#: the total loss, which every document states, and what its L is (:meth:`rnnspec.derivations.page.Page.program`)
TOTAL_LOSS = r"L = \sum_{t=1}^{T} \ell_{t}"
LOSS = {"L": "loss"}

#: the run-level quantities the assembled BPTT and the bound write: each gradient of L (by the contract's name of
#: what it differentiates; x_t at every step), the loss, h_t's Jacobian by h_k, and the gain gamma_f of f
RUN_NAMES = {
    **{rf"\frac{{\partial L}}{{\partial {q}}}": f"grad:{key}"
       for q, key in (("U", "U"), ("W", "W"), ("b", "b"), ("V", "V"), ("c", "c"), ("h_0", "h0"), ("x_t", "x"))},
    **LOSS, r"\frac{\partial h_t}{\partial h_k}": "jacobian:h", r"\gamma_f": "gain",
}


def loss_cotangent(derivation: Derivation) -> sp.Expr:
    """dl_t/da_t with the per-step loss weight 1, scalar cotangents inlined and o_t abbreviated."""
    head = derivation.cell.head
    values = {sp.Symbol("g_" + head.loss.name): sp.Integer(1)}
    g_a = None
    for eq in derivation.head_backward:
        rhs = eq.rhs.xreplace(values)
        if not eq.indices:
            values[eq.target.scalar] = rhs
        elif eq.target.name == "g_a":
            g_a = rhs
    (output,) = head.outputs
    i = output.indices[0]
    w = sp.Wild("w")
    return g_a.replace(output.rhs.xreplace({i: w}), output.target.base[w])


def _bptt(page: Page, derivation: Derivation) -> list[str]:
    """The derived step and head equations assembled over time, each display checked as a program over a run."""
    step = {eq.target.name: eq for eq in derivation.step_backward}
    head = {eq.target.name: eq for eq in derivation.head_backward}
    i = sp.Symbol("i", integer=True)
    residual = loss_cotangent(derivation)
    head_g_h = head["g_h"].rhs.xreplace({sp.IndexedBase("g_a")[sp.Symbol("j", integer=True)]:
                                         residual.xreplace({i: sp.Symbol("j", integer=True)})})
    defined = forward_equations(derivation.cell)

    def rhs(eq: Equation, names: dict[str, str] = NAMES) -> str:
        return matrix_form(eq, names, defined=defined).split(" = ")[1]

    # the same derived equations with the error term of another step: delta_{t+1} (the recurrence), delta_1
    at = lambda when: {**NAMES, "g_z": rf"\delta_{{{when}}}"}
    e = rhs(Equation(head["g_a"].target, head["g_a"].indices, residual))
    direct = rhs(Equation(head["g_h"].target, head["g_h"].indices, head_g_h))

    def total(name: str, per_step: str) -> str:
        return rf"\frac{{\partial L}}{{\partial {name}}} = \sum_{{t=1}}^{{T}} {per_step}"

    shown = [
        rf"{NAMES['g_h']} = {direct} + {rhs(step['g_h_prev'], at('t+1'))}, \qquad \delta_{{T+1}} = 0",
        f"{NAMES['g_z']} = {rhs(step['g_z'])}",
        total("U", rhs(step["g_U"])),
        total("W", rhs(step["g_W"])),
        total("b", rhs(step["g_b"])),
        total("V", rhs(head["g_V"]).replace(NAMES["g_a"], f"({e})")),
        total("c", rhs(head["g_c"]).replace(NAMES["g_a"], f"({e})")),
        rf"\frac{{\partial L}}{{\partial h_0}} = {rhs(step['g_h_prev'], at(1))}, \qquad "
        rf"\frac{{\partial L}}{{\partial x_t}} = {rhs(step['g_x'])}",
    ]
    return [f"$$ {page.program(text, RUN_NAMES, NAMES, derivation.cell)} $$" for text in shown]


def _activation_rows(page: Page) -> list[str]:
    u = sp.Symbol("u", real=True)
    rows = [r"| f | f(u) | f'(u) (derived) | $\gamma_f = \sup_u \lvert f'(u) \rvert$ |", "|---|---|---|---|"]
    for name, function in ACTIVATIONS.items():
        shown = [page.expression(function(u)), page.expression(activation_derivative(name), reader=True),
                 page.expression(activation_gain(name))]
        rows.append(f"| {name} | " + " | ".join(f"${text}$" for text in shown) + " |")
    return rows


def certificate_rows(certificates: list[Certificate]) -> list[str]:
    """The proof certificates, a row each, led by the cell it proves."""
    rows = ["| cell | f | head | T | B | I | H | K | gradient entries | exact | numeric (50 digits) "
            "| worst residual | proved |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in certificates:
        rows.append(f"| {c.cell} | {c.activation} | {c.head} | {c.T} | {c.B} | {c.I} | {c.H} | {c.K} | {c.entries} "
                    f"| {c.exact} | {c.numeric} | {c.worst_residual:.1e} | {'yes' if c.proved else 'NO'} |")
    return rows


def elman_document(certificates: list[Certificate], figure: str, page: Page | None = None) -> str:
    """``elman.md``; every formula it prints is recorded in ``page`` (:mod:`rnnspec.derivations.page`)."""
    page = page if page is not None else Page()
    generic = derive(elman("f"))
    se = derive(elman("f", head="identity-se"))
    cell = generic.cell
    lines = [
        "# The Elman RNN: forward equations, derived BPTT, proof",
        "",
        "*Generated by `rnnspec derive` from `derivations/cells.py`; do not edit. Every backward formula"
        " below was derived by SymPy from the forward equations (`derivations/engine.py`); none is typed"
        " by hand.*",
        "",
        "Notation: batch rows are handled by the code; here everything is one example, vectors are columns"
        " (the notes' S is h). A bar is a cotangent, $\\bar{q} = \\partial L / \\partial q$; the notes' error"
        " term is $\\delta_t = \\bar{z}_t$; $\\sigma(u) = 1 / (1 + e^{-u})$ is the logistic function. A sum"
        " $\\sum_k$ runs over the factors after it, up to the next + or -. " + THE_NOTES,
        "",
        "## 1. Forward equations",
        "",
        *[page.display(eq, NAMES, cell) for eq in cell.step],
        "",
        "Head `softmax-ce` (softmax output, cross-entropy loss; $y_t$ one-hot; $\\mu_t = \\max_k a_{t,k}$"
        " only keeps the exponentials in range, and the loss does not depend on it):",
        "",
        *[page.display(eq, NAMES, cell) for eq in cell.head.equations + cell.head.outputs],
        "",
        "Head `identity-se` (identity output, squared error):",
        "",
        *[page.display(eq, NAMES, se.cell) for eq in se.cell.head.equations],
        "",
        f"$$ {page.program(TOTAL_LOSS, RUN_NAMES, NAMES, cell)} $$",
        "",
        "## 2. Derived: the backward equations of one step",
        "",
        "Given the cotangent $\\bar{h}_t$ of a step's new state, the engine derives (reverse mode over the"
        " step's equations, one SymPy derivative per equation and quantity):",
        "",
        *page.table(generic.step_backward, NAMES, cell),
        "",
        "and of the `softmax-ce` head, given $\\bar{\\ell}_t$:",
        "",
        *page.table(generic.head_backward, NAMES, cell),
        "",
        "and of the `identity-se` head:",
        "",
        *page.table(se.head_backward, NAMES, se.cell),
        "",
        "## 3. BPTT assembled",
        "",
        "With $\\bar{\\ell}_t = 1$ and $o_t$ substituted, the head gives $\\bar{a}_t = o_t - y_t$ (for"
        " both heads). The cotangent of $h_t$ collects the head of step t and the recurrence from step t+1;"
        " each parameter's gradient sums its per-step cotangent over time (and over the batch):",
        "",
        *_bptt(page, generic),
        "",
        "These are the source notes' formulas: $\\partial L/\\partial V = \\sum_t (o_t - y_t) h_t^T$ is BP1 with"
        " BP4, and $\\partial L/\\partial W = \\sum_t \\delta_t h_{t-1}^T$ is BP2 with BP4, where the error"
        " $\\delta_t$ now also arrives through time, $W^T \\delta_{t+1}$.",
        "",
        "Derivatives of the activations, as SymPy derives them:",
        "",
        *_activation_rows(page),
        "",
        "## 4. Where did the bias gradient go?",
        "",
        "The notes ask whether the bias b is folded into U, V, W. It is not: their forward equations simply"
        " leave b and c out. With them in, the derivation gives their gradients directly, the same error terms"
        " multiplied by 1 instead of an input:",
        "",
        "$$ " + page.program(r"\frac{\partial L}{\partial b} = \sum_{t=1}^{T} \delta_{t}, \qquad"
                             r" \frac{\partial L}{\partial c} = \sum_{t=1}^{T} (o_{t} - y_{t})", RUN_NAMES, NAMES,
                             cell) + " $$",
        "",
        "(BP3: the bias gradient is the error). The only sense in which b is 'fused' is the augmentation"
        " trick: append a constant 1 to $x_t$ and b becomes one more column of U, whose gradient is that column"
        " of $\\partial L/\\partial U = \\sum_t \\delta_t [x_t; 1]^T$, which is again $\\sum_t \\delta_t$.",
        "",
        "## 5. The step Jacobian and the vanishing/exploding bound",
        "",
        "Derived by the chain rule through the step's equations (forward mode):",
        "",
        page.display(generic.step_jacobian, NAMES, cell, kind="jacobian"),
        "",
        "so the product the notes single out is (its factor of step t on the left, of step k + 1 on the right)",
        "",
        "$$ " + page.program(
            r"\frac{\partial h_t}{\partial h_k} = \prod_{j=k+1}^{t} \operatorname{diag}\left(f'(z_j)\right) W,"
            r" \qquad \left\lVert \frac{\partial h_t}{\partial h_k} \right\rVert"
            r" \le \prod_{j=k+1}^{t} \lVert \operatorname{diag}(f'(z_j)) \rVert \lVert W \rVert"
            r" \le \left(\gamma_f \lVert W \rVert\right)^{t-k}", RUN_NAMES, NAMES, cell) + " $$",
        "",
        "with $\\gamma_f$ from the table in section 3 ($\\gamma_{tanh} = 1$, $\\gamma_{sigmoid} = 1/4$). When"
        " $\\gamma_f \\lVert W \\rVert < 1$ the gradient reaching back t-k steps shrinks geometrically"
        " (vanishing); when the largest singular value of the product exceeds 1 it can grow geometrically"
        " (exploding), which needs $\\lVert W \\rVert > 1/\\gamma_f$. Measured on a trajectory"
        f" (T = 60, H = 32, $W = \\rho Q$ with Q orthogonal; `{figure}`):",
        "",
        f"![norm of dL_T/dh_k against T-k]({figure})",
        "",
        "With sigmoid the gradient vanishes at every radius shown, as the bound says ($\\gamma \\rho < 1$)."
        " With tanh it decays at all three radii, slower the larger $\\rho$; at $\\rho \\ge 1$ the bound"
        " allows no decay, and it is the factors $f'(z_j) < 1$ of the visited states that make it.",
        "",
        "## 6. Proof certificate",
        "",
        "For each activation and head, every parameter, input and initial-state entry is a SymPy symbol;"
        " the forward equations give the whole unrolled loss as one expression, `sympy.diff` differentiates it"
        " by each symbol, and the result is compared with the derived BPTT run on the same symbols. *Exact*:"
        " the difference expands to 0 (tanh, exp, log subterms and ReLU's piecewise indicators taken as"
        " independent symbols, which makes a zero a proof). *Numeric*: at random rational points in 50-digit"
        " arithmetic (`derivations/proof.py`).",
        "",
        *certificate_rows(certificates),
        "",
    ]
    return "\n".join(lines)


#: unrolled sizes (T, B, I, H, K) of the proof: the issue's T <= 3, H <= 2, I <= 2, K <= 2, and a
#: second shape with a batch of two and I != H != K.
PROOF_SIZES = ((3, 1, 2, 2, 2), (2, 2, 1, 2, 3))


#: the gated cells' unrolled sizes: two steps with H = 2 (the recurrence and a transpose can show), and
#: one step with a batch of two, H = 1 and I = 2
GATED_PROOF_SIZES = ((2, 1, 1, 2, 2), (1, 2, 2, 1, 3))


def all_certificates_cases() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(cell, activation, head, sizes) of every proof, Elman's first."""
    from rnnspec.derivations.registry import CELL_NAMES

    elman_cases = [("elman", a, h, size) for size in PROOF_SIZES for a in ACTIVATIONS for h in HEADS]
    gated = [(c, "tanh", "softmax-ce", size) for c in CELL_NAMES if c != "elman" for size in GATED_PROOF_SIZES]
    # the projected LSTM's state h has P = 1 entry, which needs H >= 2
    gated = [(c, a, h, (T, B, I, max(H, 2), K) if c == "lstm-proj" else (T, B, I, H, K)) for c, a, h, (T, B, I, H, K)
             in gated]
    return elman_cases + gated
