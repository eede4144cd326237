"""The clause catalogue of the Elman cell: an id, a one-line normative statement, and a check.

Value clauses (``ELMAN-FWD-*``, ``ELMAN-VJP-*``, ``ELMAN-LOSS-*``) compare one output against the
oracle with the per-case tolerance of :mod:`rnnspec.spec.tolerance`:
``16 x (deviation of correct computations in the tested dtype on this case) + 256 eps``. The other
clauses are exact: structure (keys, shape, dtype), finiteness where the spec is finite in the
tested dtype, bitwise determinism, and inputs left unmodified.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnspec.spec.expected import Key

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


_VJP = {
    "x": "dL/dx_t = U^T delta_t, delta_t = f'(z_t) * (cot_t + W^T delta_{t+1})",
    "h0": "dL/dh0 = W^T delta_1",
    "U": "dL/dU = sum_t delta_t x_t^T (summed over the batch)",
    "W": "dL/dW = sum_t delta_t h_{t-1}^T (summed over the batch)",
    "b": "dL/db = sum_t delta_t (summed over the batch)",
}
_LOSS = {
    "x": "dL/dx_t = U^T delta_t with cot_t = V^T (o_t - y_t)",
    "h0": "dL/dh0 = W^T delta_1 with cot_t = V^T (o_t - y_t)",
    "U": "dL/dU = sum_t delta_t x_t^T with cot_t = V^T (o_t - y_t)",
    "W": "dL/dW = sum_t delta_t h_{t-1}^T with cot_t = V^T (o_t - y_t)",
    "b": "dL/db = sum_t delta_t with cot_t = V^T (o_t - y_t)",
    "V": "dL/dV = sum_t (o_t - y_t) h_t^T",
    "c": "dL/dc = sum_t (o_t - y_t)",
}

CLAUSES: tuple[Clause, ...] = (
    Clause("ELMAN-FWD-H", "forward returns h_t = f(U x_t + W h_{t-1} + b) for t = 1..T, from h_0 = state0['h0']",
           "value", ("forward", "h")),
    *(Clause(f"ELMAN-VJP-{k.upper()}", f"vjp, for cotangents cot_t on every h_t, returns {s}", "value", ("vjp", k))
      for k, s in _VJP.items()),
    Clause("ELMAN-LOSS-VALUE", "loss returns L = sum over t and batch of -log softmax(V h_t + c)[y_t]",
           "value", ("loss", "value")),
    *(Clause(f"ELMAN-LOSS-{k.upper()}", f"loss returns {s}", "value", ("loss", k)) for k, s in _LOSS.items()),
    Clause("ELMAN-SHAPE", "every output has the contract's keys, is a numpy array of the declared shape, in the "
           "dtype of the inputs (the loss a real scalar)", "shape"),
    Clause("ELMAN-FINITE", "outputs are finite wherever the spec's values are finite in the tested dtype", "finite"),
    Clause("ELMAN-DETERMINISTIC", "the same call twice returns bitwise identical results", "deterministic"),
    Clause("ELMAN-PURE", "no call modifies the arrays it is given", "pure"),
)

BY_ID = {c.id: c for c in CLAUSES}
