"""The clause catalogue of a cell: an id, a one-line normative statement, and a check, all from the cell.

Ids are ``<CELL>-FWD-<state>``, ``<CELL>-VJP-<input>``, ``<CELL>-LOSS-VALUE``, ``<CELL>-LOSS-<input>``
(``ELMAN-VJP-W``, ``LSTM-VJP-W_F``, ``GRU-RESET-AFTER-LOSS-B_HN``) and ``<CELL>-SHAPE``, ``-FINITE``,
``-DETERMINISTIC``, ``-PURE``. Statements are rendered from the cell's forward equations and the
engine's derived backward equations, never typed.

Value clauses compare one output against the oracle with the per-case tolerance of
:mod:`rnnspec.spec.tolerance`: ``16 x (deviation of correct computations in the tested dtype on this
case) + 256 eps``. The other clauses are exact: structure (keys, shape, dtype), finiteness where the
spec is finite in the tested dtype, bitwise determinism, and inputs left unmodified.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from rnnspec.spec.contract import Key, contract

VALUE_RULE = ("normwise relative error against the oracle in the next wider precision, within 16 x the "
              "largest deviation of four correct computations on the same case (the oracle in the tested dtype; "
              "the wider oracle with its elementwise functions accurate to the target's accuracy class but "
              "rounded away from zero, toward zero, each on inputs perturbed by one unit roundoff, and at "
              "random) + 256 eps; cases decide nothing (undetermined) where the tolerance is 0.1 or more, and "
              "for gradient clauses where a ReLU pre-activation is within rounding reach of 0")
EXACT_RULE = "exact: no tolerance"


@dataclass(frozen=True)
class Clause:
    id: str
    statement: str
    kind: str  # "value", "shape", "finite", "deterministic", "pure"
    key: Key | None = None

    @property
    def method(self) -> str | None:
        return self.key[0] if self.key else None

    @property
    def tolerance_rule(self) -> str:
        """How this clause's tolerance is set (rnnspec.spec.tolerance has the reasoning)."""
        if self.kind == "value":
            return VALUE_RULE
        if self.kind == "finite":
            return ("exact, where the oracle's value is finite in the tested dtype; cases near the overflow "
                    "threshold are undetermined")
        return EXACT_RULE


@cache
def clauses(cell: str = "elman", variant: str = "") -> tuple[Clause, ...]:
    """Every clause of ``cell`` run as ``variant`` (ids ``LSTM-L2-BIDIR-LEN-ZERO-VJP-U_I_L1_REVERSE``), in
    report order."""
    from rnnspec.spec.statements import Statements

    c = contract(cell, variant)
    say = Statements(c)
    p = c.prefix
    return (
        *(Clause(f"{p}-FWD-{k.upper()}", say.forward(k), "value", ("forward", k)) for k in c.states),
        *(Clause(f"{p}-VJP-{k.upper()}", say.gradient("vjp", k), "value", ("vjp", k)) for k in c.vjp_keys),
        Clause(f"{p}-LOSS-VALUE", say.loss_value(), "value", ("loss", "value")),
        *(Clause(f"{p}-LOSS-{k.upper()}", say.gradient("loss", k), "value", ("loss", k)) for k in c.loss_keys),
        Clause(f"{p}-SHAPE", "every output has the contract's keys, is a numpy array of the declared shape, in the "
               "dtype of the inputs (the loss a real scalar)", "shape"),
        Clause(f"{p}-FINITE", "outputs are finite wherever the spec's values are finite in the tested dtype", "finite"),
        Clause(f"{p}-DETERMINISTIC", "the same call twice returns bitwise identical results", "deterministic"),
        Clause(f"{p}-PURE", "no call modifies the arrays it is given", "pure"),
    )


@cache
def by_id(cell: str = "elman", variant: str = "") -> dict[str, Clause]:
    return {c.id: c for c in clauses(cell, variant)}


def all_ids() -> dict[str, str]:
    """Every clause id of every registered cell -> its cell."""
    from rnnspec.catalogue import NAMES as CELL_NAMES

    return {clause.id: cell for cell in CELL_NAMES for clause in clauses(cell)}
