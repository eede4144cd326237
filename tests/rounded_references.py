"""Correct NumPy Elman references whose float32 activations are accurate but rounded otherwise.

TensorFlow's and XLA's float32 tanh are within about 1 ulp, but not NumPy's neighbour. Each
reference here computes tanh and the logistic function in float64 and rounds the result to a
float32 neighbour (always within 1 ulp of the exact value): toward zero, away from zero, or at
random. The suite must find each conformant (a false failure otherwise).
"""

from __future__ import annotations

import zlib

import numpy as np

from mutants import Elman


def neighbour(exact: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """A float32 neighbour of float64 ``exact``: toward zero, away from zero, or either at random."""
    nearest = exact.astype(np.float32)
    below = np.where(nearest > exact, np.nextafter(nearest, np.float32(-np.inf)), nearest)
    above = np.where(nearest < exact, np.nextafter(nearest, np.float32(np.inf)), nearest)
    if mode == "toward":
        return np.where(exact >= 0, below, above)
    if mode == "away":
        return np.where(exact >= 0, above, below)
    return np.where(rng.random(exact.shape) < 0.5, below, above).astype(np.float32)


class RoundedActivation(Elman):
    """The correct reference with float32 tanh / sigmoid rounded as ``mode`` says."""

    mode = "toward"

    def f(self, z):
        if z.dtype != np.float32 or self.activation not in ("tanh", "sigmoid"):
            return super().f(z)
        exact = super().f(z.astype(np.float64))
        # "random", but the same for the same input, as a library's rounding is
        return neighbour(exact, self.mode, np.random.default_rng(zlib.crc32(z.tobytes())))


class TowardZero(RoundedActivation):
    mode = "toward"


class AwayFromZero(RoundedActivation):
    mode = "away"


class RandomNeighbour(RoundedActivation):
    mode = "random"


REFERENCES = [TowardZero, AwayFromZero, RandomNeighbour]
