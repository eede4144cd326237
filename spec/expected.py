"""What the spec says for one case: the oracle's values and a tolerance for each output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnspec.spec import tolerance as tol
from rnnspec.spec.cases import Case

STEP_PARAMS = ("U", "W", "b")
ALL_PARAMS = ("U", "W", "b", "V", "c")
VJP_KEYS = ("x", "h0", "U", "W", "b")
LOSS_KEYS = ("x", "h0", "U", "W", "b", "V", "c")

Key = tuple[str, str]  # (method, output)


def call_args(method: str, arrays: dict[str, np.ndarray]) -> tuple:
    """The positional arguments of ``method`` in the implementation contract."""
    state0 = {"h0": arrays["h0"]}
    if method == "forward":
        return arrays["x"], state0, {k: arrays[k] for k in STEP_PARAMS}
    if method == "vjp":
        return arrays["x"], state0, {k: arrays[k] for k in STEP_PARAMS}, {"h": arrays["gh"]}
    return arrays["x"], state0, {k: arrays[k] for k in ALL_PARAMS}, arrays["targets"]


def expected_shapes(case: Case) -> dict[Key, tuple[int, ...]]:
    T, B, I, H, K = case.T, case.B, case.I, case.H, case.K
    sizes = {"x": (T, B, I), "h0": (B, H), "U": (H, I), "W": (H, H), "b": (H,), "V": (K, H), "c": (K,)}
    out = {("forward", "h"): (T, B, H), ("loss", "value"): ()}
    out.update({("vjp", k): sizes[k] for k in VJP_KEYS})
    out.update({("loss", k): sizes[k] for k in LOSS_KEYS})
    return out


def _flatten(states, vjp, loss) -> dict[Key, np.ndarray]:
    value, grads = loss
    out = {("forward", "h"): np.asarray(states["h"], dtype=np.float64), ("loss", "value"): np.float64(value),
           ("trace", "z"): np.asarray(states["z"], dtype=np.float64)}
    out.update({("vjp", k): np.asarray(vjp[k], dtype=np.float64) for k in VJP_KEYS})
    out.update({("loss", k): np.asarray(grads[k], dtype=np.float64) for k in LOSS_KEYS})
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


def _oracle_everything(activation: str, backend: str, arrays: dict[str, np.ndarray], rounding=None):
    from rnnspec.derivations.oracle import Oracle

    oracle = Oracle(activation, backend=backend, rounding=rounding)
    f = lambda a: np.asarray(a, dtype=backend)
    params = {k: f(arrays[k]) for k in ALL_PARAMS}
    with np.errstate(all="ignore"):
        return _flatten(*oracle.everything(f(arrays["x"]), {"h0": f(arrays["h0"])}, params,
                                           {"h": f(arrays["gh"])}, arrays["targets"]))


#: the precision the oracle's value is taken in, for each tested dtype
WIDER = {"float32": "float64", "float64": "longdouble"}


def expected(case: Case, arrays: dict[str, np.ndarray], ulps: float = tol.ACCURACY_CLASSES[tol.DEFAULT_ACCURACY]
             ) -> Expected:
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
    exact = _oracle_everything(case.activation, wider, arrays)
    rng = np.random.default_rng(case.seed)
    samples = [_oracle_everything(case.activation, case.dtype, arrays)]
    samples += [_oracle_everything(case.activation, wider, tol.perturbed(arrays, case.dtype, rng),
                                   Rounding(ulps, case.dtype, mode)) for mode in ("away", "toward")]
    samples.append(_oracle_everything(case.activation, wider, arrays, Rounding(ulps, case.dtype, "random", case.seed)))
    z = exact.pop(("trace", "z"))
    tolerances = {k: tol.tolerance(max(tol.relative_error(s[k], exact[k], case.dtype) for s in samples), case.dtype)
                  for k in exact}
    kink = _kink_reason(case, z, [s[("trace", "z")] for s in samples])
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
    reach = tol.SAFETY * np.max([np.max(np.abs(n - z), axis=(1, 2)) for n in noisy], axis=0)
    near = np.abs(z) <= reach[:, None, None]
    if np.any(near):
        t, b, i = np.argwhere(near)[0]
        return (f"undetermined in {case.dtype}: z[{t}, {b}, {i}] = {z[t, b, i]:.3g} lies within rounding reach "
                f"({reach[t]:.3g}) of {case.activation}'s kink at 0, where f' jumps")
    return ""
