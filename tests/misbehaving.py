"""Implementations that misbehave in every way the runner must survive (not numerically wrong: broken)."""

import os
import signal
import time

import numpy as np

from mutants import Elman


class Raises(Elman):
    def vjp(self, x, state0, params, cotangents):
        raise RuntimeError("vjp exploded")


class ReturnsNaN(Elman):
    def forward(self, x, state0, params):
        out = super().forward(x, state0, params)
        return {"h": np.full_like(out["h"], np.nan)}


class WrongShape(Elman):
    def forward(self, x, state0, params):
        return {"h": super().forward(x, state0, params)["h"][:, :, :1].copy()}


class WrongDtype(Elman):
    def vjp(self, x, state0, params, cotangents):
        return {k: v.astype(np.float16) for k, v in super().vjp(x, state0, params, cotangents).items()}


class ReturnsList(Elman):
    def forward(self, x, state0, params):
        return {"h": super().forward(x, state0, params)["h"].tolist()}


class MissingKey(Elman):
    def vjp(self, x, state0, params, cotangents):
        grads = super().vjp(x, state0, params, cotangents)
        del grads["b"]
        return grads


class Mutates(Elman):
    def loss(self, x, state0, params, targets):
        params["W"][...] = 0
        return super().loss(x, state0, params, targets)


class Hangs(Elman):
    def loss(self, x, state0, params, targets):
        time.sleep(3600)


class KillsItself(Elman):
    def vjp(self, x, state0, params, cotangents):
        os.kill(os.getpid(), signal.SIGKILL)


class NoVjpNoLoss:
    cell = "elman"
    dtypes = ("float64",)
    activation = "tanh"

    def forward(self, x, state0, params):
        full = Elman()
        full.activation = self.activation
        return full.forward(x, state0, params)
