"""Correct NumPy Elman references whose float32 activations are accurate but rounded otherwise.

TensorFlow's and XLA's float32 tanh are within about 1 ulp, but not NumPy's neighbour. Each
reference here computes tanh and the logistic function in float64 and rounds the result to a
float32 within 1 ulp (or, at the bound of the default accuracy class, 2 ulps) of the exact value:
toward zero, away from zero, or at random. The suite must find each conformant (a false failure
otherwise).
"""

from __future__ import annotations

import zlib

import numpy as np

from mutants import Elman


def _steps(value: np.ndarray, steps: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``value`` moved ``steps`` float32 spacings toward ``direction`` (+inf or -inf), elementwise."""
    for k in range(int(steps.max(initial=0))):
        value = np.where(steps > k, np.nextafter(value, direction.astype(np.float32)), value)
    return value


def neighbour(exact: np.ndarray, mode: str, rng: np.random.Generator, ulps: int = 1) -> np.ndarray:
    """A float32 within ``ulps`` ulps of float64 ``exact``: ``ulps`` ulps toward zero or away from zero
    (counting the rounding to a neighbour as the first), or any of those within reach, at random."""
    nearest = exact.astype(np.float32)
    below = np.where(nearest > exact, np.nextafter(nearest, np.float32(-np.inf)), nearest)
    above = np.where(nearest < exact, np.nextafter(nearest, np.float32(np.inf)), nearest)
    more = np.full(exact.shape, ulps - 1)
    down, up = np.full(exact.shape, -np.inf), np.full(exact.shape, np.inf)
    if mode == "toward":
        return np.where(exact >= 0, _steps(below, more, down), _steps(above, more, up))
    if mode == "away":
        return np.where(exact >= 0, _steps(above, more, up), _steps(below, more, down))
    further = rng.integers(0, ulps, exact.shape)
    pick_up = rng.random(exact.shape) < 0.5
    return np.where(pick_up, _steps(above, further, up), _steps(below, further, down)).astype(np.float32)


class RoundedActivation(Elman):
    """The correct reference with float32 tanh / sigmoid rounded as ``mode`` says, within ``ulps``."""

    mode = "toward"
    ulps = 1

    def f(self, z):
        if z.dtype != np.float32 or self.activation not in ("tanh", "sigmoid"):
            return super().f(z)
        exact = super().f(z.astype(np.float64))
        # "random", but the same for the same input, as a library's rounding is
        return neighbour(exact, self.mode, np.random.default_rng(zlib.crc32(z.tobytes())), self.ulps)


class TowardZero(RoundedActivation):
    mode = "toward"


class AwayFromZero(RoundedActivation):
    mode = "away"


class RandomNeighbour(RoundedActivation):
    mode = "random"


class TwoUlpsTowardZero(RoundedActivation):
    """As far off as the default accuracy class allows, every time."""

    mode, ulps = "toward", 2


class TwoUlpsAwayFromZero(RoundedActivation):
    mode, ulps = "away", 2


class WithinTwoUlps(RoundedActivation):
    mode, ulps = "random", 2


REFERENCES = [TowardZero, AwayFromZero, RandomNeighbour]
#: references at the bound of the default accuracy class (2 ulps)
AT_THE_BOUND = [TwoUlpsTowardZero, TwoUlpsAwayFromZero, WithinTwoUlps]
