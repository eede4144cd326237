"""||dL_T/dh_k|| against T-k: the vanishing/exploding product of step Jacobians, measured.

v_T is a fixed unit vector (the cotangent dL_T/dh_T); v_{k-1} = J_k^T v_k with J_k the derived step
Jacobian dh_k/dh_{k-1}, evaluated on a trajectory. W = rho Q with Q orthogonal, so ||W||_2 = rho.
For the comparison of cells (:func:`cell_series`), the same cotangent is carried back by each cell's
derived backward step (the LSTM's through both h and c), every recurrent matrix rho Q.
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


#: the curves compared: (cell, bias offsets), at the same sizes, inputs and recurrent scale; a gate bias
#: of 3 holds the LSTM's forget gate (the GRU's update gate) near sigma(3) = 0.95
CURVES = (("elman", ()), ("lstm", ()), ("lstm", (("b_f", 3.0),)), ("gru-reset-after", ()),
          ("gru-reset-after", (("b_z", 3.0),)))
CELL_RADIUS = 1.0


def curve_name(cell: str, offsets: tuple) -> str:
    return cell + "".join(f", {name} = {value:g}" for name, value in offsets)


def cell_gradient_norms(cell: str, offsets: tuple = (), radius: float = CELL_RADIUS, seed: int = 0) -> np.ndarray:
    """||dL_T/dh_k|| for k = T..0 of ``cell`` (tanh Elman), every recurrent matrix radius x orthogonal,
    input weights of scale 0.3, biases 0 but for ``offsets``, the same inputs and unit cotangent for every
    cell."""
    from rnnspec.derivations.registry import cell as registered

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((STEPS, 1, INPUTS))
    v = rng.standard_normal(HIDDEN)
    v /= np.linalg.norm(v)
    params = {}
    for var in registered(cell).params:
        draw = np.random.default_rng([seed, len(params)])
        if var.shape == ("H", "H"):
            params[var.key] = radius * np.linalg.qr(draw.standard_normal((HIDDEN, HIDDEN)))[0]
        elif var.shape == ("H", "I"):
            params[var.key] = draw.standard_normal((HIDDEN, INPUTS)) * 0.3
        else:
            params[var.key] = np.full(HIDDEN, dict(offsets).get(var.key, 0.0))
    oracle = Oracle("tanh", head=None, cell=cell)
    state0 = {k: np.zeros((1, HIDDEN)) for k in oracle.spec.state0_keys}
    tapes, sizes = oracle._forward(x, state0, params)
    seeds = [{} for _ in tapes]
    seeds[-1] = {"h": v[None]}
    carried: list[dict] = []
    oracle._backward(tapes, seeds, sizes, oracle._step_params(params), record=carried)
    return np.array([1.0] + [float(np.linalg.norm(c["h"])) for c in carried])


def cell_series() -> dict[str, np.ndarray]:
    return {curve_name(cell, offsets): cell_gradient_norms(cell, offsets) for cell, offsets in CURVES}


def cells_csv_text(data: dict[str, np.ndarray]) -> str:
    lines = ["t_minus_k," + ",".join(name.replace(", ", " ").replace(" = ", "=") for name in data)]
    lines += [f"{n}," + ",".join(f"{data[c][n]:.4g}" for c in data) for n in range(STEPS + 1)]
    return "\n".join(lines) + "\n"


def cells_png_bytes(data: dict[str, np.ndarray]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(STEPS + 1)
    for n, (cell, norms) in enumerate(data.items()):
        ax.semilogy(steps, norms, color=f"C{n}", label=cell)
    ax.set_title(f"||dL_T / dh_k||, every recurrent matrix {CELL_RADIUS:g} x orthogonal, H = {HIDDEN}", fontsize=10)
    ax.set_xlabel("T - k")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


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
