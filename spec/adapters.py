"""Built-in targets over rnnspec's own kernels and over PyTorch, speaking the implementation contract."""

from __future__ import annotations

import numpy as np

from rnnspec.spec.targets import TargetError


class RnnspecCPU:
    """The Numba CPU kernels (rnnspec.kernels)."""

    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "sigmoid", "relu", "identity")
    #: its float32 tanh is a rational approximation within 6.5 ulps (kernels/loops.py); float64 uses libm
    accuracy = {"float32": 8, "float64": "accurate"}

    def __init__(self, activation: str = "tanh") -> None:
        self.activation = activation

    def forward(self, x, state0, params):
        from rnnspec.kernels import elman_forward

        return {"h": elman_forward(x, state0["h0"], params["U"], params["W"], params["b"],
                                   activation=self.activation)}

    def vjp(self, x, state0, params, cotangents):
        from rnnspec.kernels import elman_backward

        return elman_backward(x, state0["h0"], params["U"], params["W"], params["b"], cotangents["h"],
                              activation=self.activation)

    def loss(self, x, state0, params, targets):
        from rnnspec.kernels import elman_loss

        value, grads = elman_loss(x, state0["h0"], params["U"], params["W"], params["b"], params["V"], params["c"],
                                  targets, activation=self.activation)
        return float(value), grads


def _cuda_kernels():
    """rnnspec.kernels.cuda, or TargetError saying what to install."""
    try:
        from rnnspec.kernels import cuda
    except ImportError as exc:
        raise TargetError(f"target 'rnnspec-cuda': {exc} (pip install numba-cuda, and a GPU or "
                          "NUMBA_ENABLE_CUDASIM=1)") from exc
    return cuda


class RnnspecCUDA(RnnspecCPU):
    """The numba-cuda kernels (rnnspec.kernels.cuda): on a GPU, or under NUMBA_ENABLE_CUDASIM=1."""

    device = "cuda"
    #: CUDA's tanhf and expf, within 2 ulps (float32 does not use the CPU's rational tanh)
    accuracy = "accurate"

    def __init__(self, activation: str = "tanh") -> None:
        _cuda_kernels()  # a clear error now, not at the first call
        super().__init__(activation)

    @property
    def kernels(self):
        """rnnspec.kernels.cuda, looked up when used: a module held as an attribute would make the
        target unpicklable, and a process holding a CUDA context must spawn (pickle) its worker."""
        return _cuda_kernels()

    def forward(self, x, state0, params):
        return {"h": self.kernels.elman_forward(x, state0["h0"], params["U"], params["W"], params["b"],
                                                activation=self.activation)}

    def vjp(self, x, state0, params, cotangents):
        return self.kernels.elman_backward(x, state0["h0"], params["U"], params["W"], params["b"], cotangents["h"],
                                           activation=self.activation)

    def loss(self, x, state0, params, targets):
        value, grads = self.kernels.elman_loss(x, state0["h0"], params["U"], params["W"], params["b"], params["V"],
                                               params["c"], targets, activation=self.activation)
        return float(value), grads


class TorchRNN:
    """torch.nn.RNN (tanh or relu) with nn.Linear and cross_entropy; gradients by autograd."""

    cell = "elman"
    dtypes = ("float32", "float64")
    activations = ("tanh", "relu")

    def __init__(self, activation: str = "tanh") -> None:
        try:
            import torch
        except ImportError as exc:
            raise TargetError("target 'torch': PyTorch is not installed (pip install torch)") from exc
        if activation not in self.activations:
            raise TargetError(f"target 'torch': nn.RNN has no {activation!r} nonlinearity")
        self.torch = torch
        self.activation = activation

    def _module(self, params, dtype):
        torch = self.torch
        H, I = params["U"].shape
        rnn = torch.nn.RNN(I, H, nonlinearity=self.activation).to(dtype)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(np.asarray(params["U"])))
            rnn.weight_hh_l0.copy_(torch.from_numpy(np.asarray(params["W"])))
            rnn.bias_ih_l0.copy_(torch.from_numpy(np.asarray(params["b"])))
            rnn.bias_hh_l0.zero_()
        return rnn

    def _run(self, x, state0, params):
        torch = self.torch
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        rnn = self._module(params, dtype)
        xt = torch.from_numpy(np.array(x)).requires_grad_(True)
        h0 = torch.from_numpy(np.array(state0["h0"]))[None].requires_grad_(True)
        out, _ = rnn(xt, h0)
        return rnn, xt, h0, out

    def _grads(self, rnn, xt, h0):
        return {"x": xt.grad.numpy(), "h0": h0.grad[0].numpy(), "U": rnn.weight_ih_l0.grad.numpy(),
                "W": rnn.weight_hh_l0.grad.numpy(), "b": rnn.bias_ih_l0.grad.numpy()}

    def forward(self, x, state0, params):
        with self.torch.no_grad():
            _, _, _, out = self._run(x, state0, params)
        return {"h": out.numpy()}

    def vjp(self, x, state0, params, cotangents):
        rnn, xt, h0, out = self._run(x, state0, params)
        out.backward(self.torch.from_numpy(np.array(cotangents["h"])))
        return self._grads(rnn, xt, h0)

    def loss(self, x, state0, params, targets):
        torch = self.torch
        rnn, xt, h0, out = self._run(x, state0, params)
        V = torch.from_numpy(np.array(params["V"])).requires_grad_(True)
        c = torch.from_numpy(np.array(params["c"])).requires_grad_(True)
        T, B, H = out.shape
        logits = torch.nn.functional.linear(out, V, c).reshape(T * B, -1)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.asarray(targets).reshape(-1)),
                                                 reduction="sum")
        loss.backward()
        grads = self._grads(rnn, xt, h0)
        grads.update(V=V.grad.numpy(), c=c.grad.numpy())
        return float(loss.item()), grads
