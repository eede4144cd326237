"""An Elman RNN in JAX (XLA's tanh), gradients by jax.vjp, written as a user would."""
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)


def _states(x, h0, U, W, b):
    def step(h, xt):
        h = jnp.tanh(xt @ U.T + h @ W.T + b)
        return h, h
    return jax.lax.scan(step, h0, x)[1]


def _loss(x, h0, U, W, b, V, c, y):
    logits = _states(x, h0, U, W, b) @ V.T + c
    return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], axis=-1))


class JaxElman:
    cell, activation, dtypes = "elman", "tanh", ("float32", "float64")

    def forward(self, x, state0, params):
        return {"h": np.asarray(_states(x, state0["h0"], params["U"], params["W"], params["b"]))}

    def vjp(self, x, state0, params, cotangents):
        args = (x, state0["h0"], params["U"], params["W"], params["b"])
        _, pull = jax.vjp(_states, *args)
        return dict(zip(("x", "h0", "U", "W", "b"), map(np.asarray, pull(jnp.asarray(cotangents["h"])))))

    def loss(self, x, state0, params, targets):
        p = params
        value, grads = jax.value_and_grad(_loss, argnums=range(7))(x, state0["h0"], p["U"], p["W"], p["b"], p["V"],
                                                                    p["c"], jnp.asarray(targets))
        return float(value), dict(zip(("x", "h0", "U", "W", "b", "V", "c"), map(np.asarray, grads)))


impl = JaxElman()
