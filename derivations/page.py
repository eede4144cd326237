"""A document's formulas, each kept with what it was rendered from.

Every formula a generated document prints (a display, or a formula in a table) is made through a
:class:`Page`, which returns the text to print and records a :class:`Formula`: that text and its source.
``tests/test_rendered_formulas.py`` reads the printed text back, evaluates it on random numbers, and
compares it with its source, and checks that the committed documents hold exactly the recorded formulas.

Kinds of formula, and what the test compares the printed text with:

- ``equation``: an :class:`~rnnspec.derivations.tensors.Equation` in index or matrix form (``form``); the
  equation evaluated by :func:`~rnnspec.derivations.evaluate.evaluate`, on values of the cell's forward
  quantities computed by its step (so that a gate written r_t equals sigma of its argument) and random
  cotangents;
- ``jacobian``: a step Jacobian; the Jacobian of the cell's forward step by complex step;
- ``program``: statements over time (BPTT assembled, the total loss), ``, \\qquad``-separated within a display;
  the oracle's loss and gradients;
- ``expression``: a SymPy expression of scalar symbols (an activation's derivative); the expression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from rnnspec.derivations.cells import Cell
from rnnspec.derivations.render import index_form, latex, logistic_form, matrix_form
from rnnspec.derivations.tensors import Equation

KINDS = ("equation", "jacobian", "program", "expression")


@dataclass(frozen=True)
class Formula:
    """A formula as printed (``latex``, between its ``$`` or ``$$`` and without them) and what it renders."""

    latex: str
    kind: str
    #: the Equation (equation, jacobian), the SymPy expression (expression), or the run-level names (program)
    source: object = None
    #: how each quantity is written (quantity name -> LaTeX), for the reader of ``latex``
    names: Mapping[str, str] = field(default_factory=dict)
    #: whose forward step gives consistent values (equation, jacobian, program)
    cell: Cell | None = None
    #: "index" or "matrix" (equation, jacobian)
    form: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"formula kind must be one of {KINDS}, got {self.kind!r}")


def forward_equations(cell: Cell) -> tuple[Equation, ...]:
    """The equations that define the cell's forward quantities (step, then head), which name their right sides in
    the other equations (:func:`~rnnspec.derivations.render.for_reader`)."""
    head = cell.head.equations + cell.head.outputs if cell.head else ()
    return cell.step + head


class Page:
    """Renders a document's formulas and records each (``formulas``, in the order printed)."""

    def __init__(self) -> None:
        self.formulas: list[Formula] = []

    def _keep(self, formula: Formula) -> str:
        self.formulas.append(formula)
        return formula.latex

    def equation(self, eq: Equation, names: Mapping[str, str], cell: Cell, form: str, kind: str = "equation") -> str:
        """``eq`` in ``form`` ("index", or "matrix" and else index), recorded."""
        defined = forward_equations(cell)
        text = matrix_form(eq, names, defined=defined) if form == "matrix" else None
        form = "matrix" if text else "index"
        text = text or index_form(eq, names, defined)
        return self._keep(Formula(text, kind, eq, dict(names), cell, form))

    def display(self, eq: Equation, names: Mapping[str, str], cell: Cell, kind: str = "equation") -> str:
        """``$$ ... $$`` of ``eq``: matrix form where it has one, else index form."""
        return f"$$ {self.equation(eq, names, cell, 'matrix', kind)} $$"

    def table(self, equations: Sequence[Equation], names: Mapping[str, str], cell: Cell) -> list[str]:
        """A table of ``equations``: the quantity, its index form and its matrix form (— where it has none)."""
        rows = ["| quantity | index form (derived) | matrix form |", "|---|---|---|"]
        for eq in equations:
            index = self.equation(eq, names, cell, "index")
            matrix = matrix_form(eq, names, defined=forward_equations(cell))
            shown = "$" + self.equation(eq, names, cell, "matrix") + "$" if matrix else "—"
            rows.append(f"| `{eq.target.name}` | ${index}$ | {shown} |")
        return rows

    def program(self, text: str, run_names: Mapping[str, str], names: Mapping[str, str], cell: Cell) -> str:
        """Statements over a run of ``cell`` (``text``). ``run_names``: what the LaTeX of each run-level quantity it
        writes is, so that a test knows what to compare it with: ``"grad:<key>"`` (dL/d of the contract's key),
        ``"loss"``, ``"jacobian:<state>"`` (d state_t / d state_k), ``"gain"`` (gamma_f = sup |f'|)."""
        return self._keep(Formula(text, "program", dict(run_names), dict(names), cell))

    def expression(self, expr: sp.Expr, lhs: str = "", reader: bool = False) -> str:
        """``lhs = <expr>`` (or ``<expr>``) in the documents' LaTeX, recorded; with ``reader``, the logistic function
        and its derivative written with sigma (:func:`~rnnspec.derivations.render.logistic_form`)."""
        text = (lhs + " = " if lhs else "") + latex(logistic_form(expr) if reader else expr)
        return self._keep(Formula(text, "expression", expr))
