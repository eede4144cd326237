"""What the spec says for one case: the oracle's values and a tolerance for each output."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from rnnspec.spec import tolerance as tol
from rnnspec.spec.cases import Case
from rnnspec.spec.contract import Contract, Key, contract

__all__ = ["Expected", "Key", "call_args", "expected", "expected_shapes"]


def call_args(method: str, arrays: dict[str, np.ndarray], cell: str = "elman", variant: str = "") -> tuple:
    """The arguments of ``method`` in the implementation contract of ``cell`` run as ``variant``."""
    return contract(cell, variant).call_args(method, arrays)


def expected_shapes(case: Case) -> dict[Key, tuple[int, ...]]:
    return contract(case.cell, case.variant).shapes(case.T, case.B, case.I, case.H, case.K, case.P)


#: the step quantities, stacked over time, that feed a nonlinearity (overflow, ReLU's kink)
TRACE = "trace"


def _flatten(cell: Contract, states, vjp, loss) -> dict[Key, np.ndarray]:
    value, grads = loss
    keys = cell.output_names
    out = {("forward", k): np.asarray(states[keys[k]], dtype=np.float64) for k in cell.states}
    out[("loss", "value")] = np.float64(value)
    out.update({(TRACE, n): np.asarray(states[n], dtype=np.float64) for n in cell.cell.pre_activations})
    out.update({("vjp", k): np.asarray(vjp[k], dtype=np.float64) for k in cell.vjp_keys})
    out.update({("loss", k): np.asarray(grads[k], dtype=np.float64) for k in cell.loss_keys})
    return out


@dataclass
class Expected:
    values: dict[Key, np.ndarray]
    tolerances: dict[Key, float]
    #: why the gradients of this case are not determined in the tested dtype ("" when they are)
    undetermined: str = ""
    #: why finiteness is not judged on this case ("" when it is)
    overflow: str = ""

    def finite_in(self, key: Key, dtype: str) -> np.ndarray:
        """Where the spec's value must come out finite in the tested dtype (nowhere on an overflow case)."""
        if self.overflow:
            return np.zeros(np.shape(self.values[key]), dtype=bool)
        return np.abs(self.values[key]) < np.finfo(dtype).max


def _oracle_everything(case: Case, backend: str, arrays: dict[str, np.ndarray], rounding=None):
    from rnnspec.derivations.composed import Composed
    from rnnspec.derivations.oracle import Oracle

    cell = contract(case.cell, case.variant)
    if not cell.variant.plain:
        oracle = Composed(case.cell, case.variant, case.activation, backend, rounding)
    else:  # one forward layer over full sequences: the cell's own oracle, from zeros under state0=default
        oracle = Oracle(case.activation, backend=backend, rounding=rounding, cell=case.cell)
        oracle.default_state = cell.variant.default_state
    f = lambda a: np.asarray(a, dtype=backend)
    x, state0, params, targets, *keywords = cell.call_args("loss", arrays)
    cotangents = {k: f(arrays["cot_" + k]) for k in cell.states}
    with np.errstate(all="ignore"):
        return _flatten(cell, *oracle.everything(f(x), {k: f(v) for k, v in state0.items()},
                                                 {k: f(v) for k, v in params.items()}, cotangents, targets,
                                                 **(keywords[0] if keywords else {})))


#: the precision the oracle's value is taken in, for each tested dtype
WIDER = {"float32": "float64", "float64": "longdouble"}


#: the expectations of the most recent cases: a run's shrinking, and the corpus of mutants checked on
#: the same generated cases, meet the same cases again
_RECENT: OrderedDict = OrderedDict()
RECENT_CASES = 1024


def expected(case: Case, arrays: dict[str, np.ndarray] | None = None,
             ulps: float = tol.ACCURACY_CLASSES[tol.DEFAULT_ACCURACY]) -> Expected:
    """:func:`compute_expected` for ``arrays`` (by default the case's own, remembered for recent cases)."""
    if arrays is not None:
        return compute_expected(case, arrays, ulps)
    key = (case, float(ulps))
    if key in _RECENT:
        _RECENT.move_to_end(key)
    else:
        _RECENT[key] = compute_expected(case, case.arrays(), ulps)
        if len(_RECENT) > RECENT_CASES:
            _RECENT.popitem(last=False)
    return _RECENT[key]


def compute_expected(case: Case, arrays: dict[str, np.ndarray], ulps: float) -> Expected:
    """The oracle in a wider precision, and a tolerance from correct computations' errors on this case.

    Four samples of a correct computation's error: the oracle's equations in the tested dtype; the
    wider oracle with its elementwise functions accurate to ``ulps`` ulps of the tested dtype, rounded
    all away from zero and all toward zero, each on inputs perturbed by one unit roundoff (two sign
    draws); and the wider oracle with them rounded at random within ``ulps``. The perturbed inputs
    catch what one rounding pattern can miss, such as a ReLU pre-activation within rounding reach of 0,
    where f' jumps between 0 and 1; the rounded functions, another library's accurate tanh or exp
    (f' = 1 - h^2 from a rounded h near 1 amplifies one ulp of h a thousandfold).
    """
    from rnnspec.derivations.rounding import Rounding

    wider = WIDER[case.dtype]
    exact = _oracle_everything(case, wider, arrays)
    rng = np.random.default_rng(case.seed)
    samples = [_oracle_everything(case, case.dtype, arrays)]
    samples += [_oracle_everything(case, wider, tol.perturbed(arrays, case.dtype, rng),
                                   Rounding(ulps, case.dtype, mode)) for mode in ("away", "toward")]
    samples.append(_oracle_everything(case, wider, arrays, Rounding(ulps, case.dtype, "random", case.seed)))
    traces = [k for k in exact if k[0] == TRACE]
    z = np.stack([exact.pop(k) for k in traces])
    tolerances = {k: tol.tolerance(max(tol.relative_error(s[k], exact[k], case.dtype) for s in samples), case.dtype)
                  for k in exact}
    kink = _kink_reason(case, z, [np.stack([s[k] for k in traces]) for s in samples])
    return Expected(exact, tolerances, kink, _overflow_reason(case, z, samples[0]))


def _overflow_reason(case: Case, z: np.ndarray, sample: dict[Key, np.ndarray]) -> str:
    """Non-empty when the case comes near the dtype's overflow threshold.

    There a correct implementation may overflow in a partial sum (the order of summation decides)
    and inf then turns into NaN across entries, so finiteness is not judged: when the oracle's own
    computation in the tested dtype is not finite, or a pre-activation exceeds max / (16 (H + I + 1)).
    """
    limit = np.finfo(case.dtype).max / (16 * (case.H + case.I + 1))
    if not all(np.all(np.isfinite(v)) for v in sample.values()):
        return f"the oracle's own {case.dtype} computation overflows on this case"
    if z.size and np.max(np.abs(z)) > limit:
        return f"pre-activations reach {np.max(np.abs(z)):.3g}, within a partial sum of {case.dtype}'s overflow"
    return ""


def _kink_reason(case: Case, z: np.ndarray, noisy: list[np.ndarray]) -> str:
    """Non-empty when a pre-activation lies within rounding reach of a kink of f (ReLU's 0).

    There f' jumps, so a correct implementation may take either side and its gradients are not
    determined in the tested dtype. Reach at step t: SAFETY x the largest deviation of the correct
    samples' z_t from the exact z_t.
    """
    import sympy as sp

    from rnnspec.derivations.derive import activation_derivative

    if not isinstance(activation_derivative(case.activation), sp.Piecewise) or not z.size:
        return ""
    # z: (pre-activations, T, B, H); the reach is per step
    reach = tol.SAFETY * np.max([np.max(np.abs(n - z), axis=(0, 2, 3)) for n in noisy], axis=0)
    near = np.abs(z) <= reach[None, :, None, None]
    if np.any(near):
        p, t, b, i = np.argwhere(near)[0]
        return (f"undetermined in {case.dtype}: z[{t}, {b}, {i}] = {z[p, t, b, i]:.3g} lies within rounding reach "
                f"({reach[t]:.3g}) of {case.activation}'s kink at 0, where f' jumps")
    return ""
