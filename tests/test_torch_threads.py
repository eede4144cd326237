"""The torch target runs PyTorch on one thread during its calls and leaves the caller's setting as it was
(issue 32, item 5; benchmarks/torch_threads.log has the measurements behind one thread)."""

import numpy as np
import pytest

from rnnspec.spec.contract import contract
from rnnspec.spec.conventions import ConversionError


def _arrays(cell: str, T: int = 3, B: int = 2, I: int = 3, H: int = 4, K: int = 3):
    rng = np.random.default_rng(0)
    shapes = contract(cell).param_shapes(I, H, K)
    params = {k: rng.standard_normal(shapes[k]) for k in contract(cell).step_params + contract(cell).head_params}
    state0 = {k: rng.standard_normal(v) for k, v in contract(cell).state_shapes(B, H).items()}
    cotangents = {k: rng.standard_normal((T, B, H)) for k in contract(cell).states}
    return rng.standard_normal((T, B, I)), state0, params, cotangents, rng.integers(0, K, (T, B))


def test_each_call_of_the_torch_target_sees_one_thread_and_the_callers_setting_comes_back():
    torch = pytest.importorskip("torch")
    from rnnspec.spec.frameworks.torch_layers import TorchRNN

    seen = []

    class Recording(TorchRNN):
        def _module(self, params, dtype):  # inside every call: forward, vjp and loss all build the module
            seen.append(torch.get_num_threads())
            return super()._module(params, dtype)

    before = torch.get_num_threads()
    # the caller's own setting: two threads, as PyTorch's default is on a 2-core machine (set here so that
    # the test means the same on a 1-core one)
    torch.set_num_threads(2)
    try:
        target = Recording()
        target.cell = "lstm"
        x, state0, params, cotangents, labels = _arrays("lstm")
        target.forward(x, state0, params)
        target.vjp(x, state0, params, cotangents)
        target.loss(x, state0, params, labels)
        assert seen == [1, 1, 1]
        assert torch.get_num_threads() == 2
        target.threads = None  # PyTorch's own setting, untouched
        target.forward(x, state0, params)
        assert seen[-1] == 2
    finally:
        torch.set_num_threads(before)


def test_a_call_that_raises_still_gives_the_callers_setting_back():
    torch = pytest.importorskip("torch")
    from rnnspec.spec.frameworks.torch_layers import TorchRNN

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        target = TorchRNN()
        target.cell = "lstm"
        x, state0, params, _, _ = _arrays("lstm")
        with pytest.raises(ConversionError, match="W_f"):
            target.forward(x, state0, {k: v for k, v in params.items() if k != "W_f"})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_torch_target_is_not_hung_by_the_parallel_torch_of_the_process_that_forked_its_worker(tmp_path):
    """GNU OpenMP is not fork-safe: once this process has run a parallel region, a forked worker hung at its own
    first one (CI: the README's LSTM timed out on loss() from its first large case). The worker runs torch on one
    thread, so the check finishes (before the fix: inconclusive, every loss() timing out)."""
    torch = pytest.importorskip("torch")
    from rnnspec.spec.runner import check
    from rnnspec.spec.worker import TargetName

    torch.ones(512, 512) @ torch.ones(512, 512)  # this process's OpenMP threads start
    (tmp_path / "elman_in_torch.py").write_text(
        "from rnnspec.spec.wrap import from_torch\n"
        "def rnn(x, h0, U, W, b):\n"
        "    import torch\n"
        "    hs, h = [], h0\n"
        "    for x_t in x:\n"
        "        h = torch.tanh(x_t @ U.T + h @ W.T + b)\n"
        "        hs.append(h)\n"
        "    return torch.stack(hs)\n"
        "impl = from_torch(rnn)\n")
    report = check(TargetName(f"{tmp_path / 'elman_in_torch.py'}:impl"), examples=12, timeout=20)
    assert report.verdict == "conformant", [(r.clause.id, r.status) for r in report.results if r.status != "passed"]
