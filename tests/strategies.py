"""Hypothesis strategies for Elman cases used by the project's own tests."""

import numpy as np
from hypothesis import strategies as st

from rnnspec.derivations.cells import ACTIVATIONS as CELL_ACTIVATIONS

ACTIVATIONS = tuple(CELL_ACTIVATIONS)


@st.composite
def elman_cases(draw, max_T=12, max_B=4, max_I=5, max_H=6, max_K=5, activations=ACTIVATIONS,
                radii=(0.5, 0.95, 1.5)):
    T = draw(st.integers(1, max_T))
    B = draw(st.integers(1, max_B))
    I = draw(st.integers(1, max_I))
    H = draw(st.integers(1, max_H))
    K = draw(st.integers(1, max_K))
    activation = draw(st.sampled_from(activations))
    radius = draw(st.sampled_from(radii))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((H, H))
    W *= radius / max(np.max(np.abs(np.linalg.eigvals(W))), 1e-12)
    if activation == "identity":
        W *= 0.9 / max(radius, 0.9)  # keep the linear recurrence from overflowing
    params = {"U": rng.standard_normal((H, I)) * 0.5, "W": W, "b": rng.standard_normal(H) * 0.2,
              "V": rng.standard_normal((K, H)), "c": rng.standard_normal(K) * 0.2}
    return {
        "activation": activation,
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)) * 0.5,
        "params": params,
        "targets": rng.integers(0, K, size=(T, B)),
        "cot": rng.standard_normal((T, B, H)),
        "seed": seed,
    }


def rel_err(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


def small_arrays(dtype=np.float64, T=5, B=3, I=4, H=6, K=3, seed=0, recurrent_scale=0.3):
    """Arrays of one Elman case (x, h0, U, W, b, V, c, targets y, cotangent gh) for example tests."""
    rng = np.random.default_rng(seed)
    f = lambda a: np.asarray(a, dtype=dtype)
    return {"x": f(rng.standard_normal((T, B, I))), "h0": f(rng.standard_normal((B, H))),
            "U": f(rng.standard_normal((H, I))), "W": f(rng.standard_normal((H, H)) * recurrent_scale),
            "b": f(rng.standard_normal(H)), "V": f(rng.standard_normal((K, H))), "c": f(rng.standard_normal(K)),
            "y": rng.integers(0, K, (T, B)), "gh": f(rng.standard_normal((T, B, H)))}
