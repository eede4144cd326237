"""||dL_T/dh_k|| against T-k: the vanishing/exploding product of step Jacobians, measured.

v_T is a fixed unit vector (the cotangent dL_T/dh_T); v_{k-1} = J_k^T v_k with J_k the derived step
Jacobian dh_k/dh_{k-1}, evaluated on a trajectory. W = rho Q with Q orthogonal, so ||W||_2 = rho.
"""

from __future__ import annotations

import io

import numpy as np

from rnnspec.derivations.cells import elman
from rnnspec.derivations.derive import activation_gain, derive
from rnnspec.derivations.evaluate import evaluate
from rnnspec.derivations.oracle import Oracle

RADII = (0.8, 1.0, 1.2)
ACTIVATIONS = ("tanh", "sigmoid")
STEPS, HIDDEN, INPUTS = 60, 32, 8


def gradient_norms(activation: str, radius: float, seed: int = 0) -> np.ndarray:
    """||dL_T/dh_k|| for k = T, T-1, ..., 0 (index T-k)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((HIDDEN, HIDDEN)))
    params = {"U": rng.standard_normal((HIDDEN, INPUTS)) * 0.3, "W": radius * q, "b": np.zeros(HIDDEN)}
    x = rng.standard_normal((STEPS, 1, INPUTS))
    oracle = Oracle(activation, head=None)
    tapes, sizes = oracle._forward(x, {"h0": np.zeros((1, HIDDEN))}, params)
    derivation = derive(elman(activation, head=None))
    v = rng.standard_normal(HIDDEN)
    v /= np.linalg.norm(v)
    norms = [1.0]
    for tape in reversed(tapes):
        jac = evaluate(derivation.step_jacobian, tape, derivation.quantities, sizes, 1, oracle.be)[0]
        v = jac.T @ v
        norms.append(float(np.linalg.norm(v)))
    return np.array(norms)


def series() -> dict[tuple[str, float], np.ndarray]:
    return {(a, r): gradient_norms(a, r) for a in ACTIVATIONS for r in RADII}


def csv_text(data: dict[tuple[str, float], np.ndarray]) -> str:
    keys = list(data)
    lines = ["t_minus_k," + ",".join(f"{a}_rho{r}" for a, r in keys)]
    for n in range(STEPS + 1):
        lines.append(f"{n}," + ",".join(f"{data[k][n]:.4g}" for k in keys))
    return "\n".join(lines) + "\n"


def png_bytes(data: dict[tuple[str, float], np.ndarray]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "rnnspec"
    fig, axes = plt.subplots(1, len(ACTIVATIONS), figsize=(10, 4), sharey=True)
    steps = np.arange(STEPS + 1)
    for ax, activation in zip(axes, ACTIVATIONS):
        gamma = float(activation_gain(activation))
        for n, radius in enumerate(RADII):
            color = f"C{n}"
            ax.semilogy(steps, data[(activation, radius)], color=color, label=f"rho = {radius}")
            ax.semilogy(steps, (gamma * radius) ** steps, color=color, linestyle="--", linewidth=0.8)
        ax.set_title(f"f = {activation}, gamma = {gamma:g}\ndashed: bound (gamma ||W||)^(T-k)", fontsize=10)
        ax.set_xlabel("T - k")
        ax.set_ylim(1e-40, 1e6)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower left")
    axes[0].set_ylabel("||dL_T / dh_k||")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
