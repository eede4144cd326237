"""Derivatives by perturbation, to check derived gradients against.

- central differences with Richardson extrapolation: D(h) = (F(p + h v) - F(p - h v)) / 2h has
  error c2 h^2 + c4 h^4 + ...; the Romberg table over h, h/2, h/4, ... cancels those terms;
- complex step: F'(p) v = Im F(p + i h v) / h, exact to rounding for real-analytic F
  (no subtraction, so h = 1e-30 is fine).

``func`` maps a dict of arrays to an array (or scalar); directions are dicts of the same shapes
(missing keys mean zero).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Func = Callable[[dict[str, np.ndarray]], object]


def _moved(point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], step) -> dict:
    return {k: (v + step * direction[k] if k in direction else v) for k, v in point.items()}


def richardson(func: Func, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray],
               step: float = 1e-2, levels: int = 4) -> tuple[np.ndarray, float]:
    """The directional derivative and an error estimate (last two diagonal entries' difference)."""
    table: list[list[np.ndarray]] = []
    for n in range(levels):
        h = step / 2**n
        plus = np.asarray(func(_moved(point, direction, h)), dtype=float)
        minus = np.asarray(func(_moved(point, direction, -h)), dtype=float)
        row = [(plus - minus) / (2 * h)]
        for j in range(1, n + 1):
            row.append(row[j - 1] + (row[j - 1] - table[n - 1][j - 1]) / (4**j - 1))
        table.append(row)
    best = table[-1][-1]
    error = float(np.max(np.abs(best - table[-2][-2]))) if levels > 1 else float("nan")
    return best, error


def complex_step(func: Func, point: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray],
                 step: float = 1e-30) -> np.ndarray:
    """Im F(p + i h v) / h; ``func`` must accept complex arrays."""
    complex_point = {k: np.asarray(v, dtype=complex) for k, v in point.items()}
    return np.imag(np.asarray(func(_moved(complex_point, direction, 1j * step)))) / step


def directional(func: Func, point, direction, method: str = "complex") -> np.ndarray:
    if method == "complex":
        return complex_step(func, point, direction)
    if method == "richardson":
        return richardson(func, point, direction)[0]
    raise ValueError(f"method must be 'complex' or 'richardson', got {method!r}")


def full_jacobian(func: Func, point: Mapping[str, np.ndarray], wrt: str, method: str = "complex") -> np.ndarray:
    """dF/d point[wrt], of shape F.shape + point[wrt].shape, one direction per entry."""
    shape = np.shape(point[wrt])
    columns = []
    for n in range(int(np.prod(shape))):
        unit = np.zeros(shape)
        unit.flat[n] = 1.0
        columns.append(directional(func, point, {wrt: unit}, method))
    out = np.stack(columns, axis=-1)
    return out.reshape(out.shape[:-1] + shape)


def bilinear(func: Func, point, u: np.ndarray, v: Mapping[str, np.ndarray], method: str = "complex") -> float:
    """u^T J v: the derivative along v of u . F, one evaluation pair whatever the sizes."""
    return float(np.sum(np.asarray(u) * directional(func, point, v, method)))
