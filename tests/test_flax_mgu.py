"""flax.linen's MGUCell as the cell mgu-flax (issue 33): the packing round-trips and puts each parameter in the
Dense that MGUCell reads it from, the paper's mgu is refused with the reason, and the flax target is conformant
on mgu-flax while MGUCell read as the paper's cell, or without its reset gate, is not.

The packing's tests need no Flax; those that run MGUCell skip where flax is not installed (CI does not install
it), and the target's runs, which compile a JAX program per case shape, are behind ``-m slow``.
"""

import numpy as np
import pytest

from rnnspec import catalogue
from rnnspec.spec import conventions as cv
from rnnspec.spec.contract import contract

CELL = "mgu-flax"
I, H = 3, 4


def params(cell: str = CELL, dtype: str = "float64", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = contract(cell).param_shapes(I, H, 2)
    return {k: (rng.standard_normal(shapes[k]) * 0.5).astype(dtype) for k in contract(cell).step_params}


@pytest.mark.parametrize("dtype", catalogue.DTYPES)
def test_the_flax_mgu_packing_round_trips_bit_exact(dtype):
    canonical = params(dtype=dtype)
    given = {k: v.copy() for k, v in canonical.items()}
    back = cv.from_framework("flax", CELL, cv.to_framework("flax", CELL, given))
    assert sorted(back) == sorted(canonical) == sorted(catalogue.cell(CELL).param_keys)
    for k in canonical:
        assert back[k].dtype == canonical[k].dtype and back[k].tobytes() == canonical[k].tobytes(), k
        assert given[k].tobytes() == canonical[k].tobytes(), f"the packing modified its argument's {k}"


def test_the_flax_mgu_packing_puts_each_parameter_in_the_dense_mgucell_reads_it_from():
    """flax 0.12.8's MGUCell: f = sigmoid(if(x) + hf(h)), n = tanh(in(x) + f * hn(h)); hf has no bias."""
    p = params()
    w = cv.to_framework("flax", CELL, p)
    assert {k: sorted(v) for k, v in w.items()} == {"if": ["bias", "kernel"], "hf": ["kernel"],
                                                    "in": ["bias", "kernel"], "hn": ["bias", "kernel"]}
    assert np.array_equal(w["if"]["kernel"], p["U_f"].T) and np.array_equal(w["if"]["bias"], p["b_f"])
    assert np.array_equal(w["hf"]["kernel"], p["W_f"].T)
    assert np.array_equal(w["in"]["kernel"], p["U_n"].T) and np.array_equal(w["in"]["bias"], p["b_n"])
    assert np.array_equal(w["hn"]["kernel"], p["W_n"].T) and np.array_equal(w["hn"]["bias"], p["b_hn"])


def test_flax_mgu_weights_that_do_not_fit_are_refused_naming_the_key_and_shape():
    w = cv.to_framework("flax", CELL, params())
    w["hn"] = {"kernel": np.zeros((H + 1, H))}
    expected = r"lack \['hn/bias'\].*hn/kernel has shape \(5, 4\), expected \(4, 4\)"
    with pytest.raises(cv.ConversionError, match=expected):
        cv.from_framework("flax", CELL, w)
    wrong = params()
    wrong["b_hn"] = np.zeros(H + 1)
    with pytest.raises(cv.ConversionError, match=r"b_hn has shape \(5,\), expected \(4,\)"):
        cv.to_framework("flax", CELL, wrong)


def test_the_papers_mgu_has_no_flax_layer_and_the_refusal_says_why():
    assert "mgu" not in cv.cells_of("flax") and CELL in cv.cells_of("flax")
    with pytest.raises(cv.ConversionError, match=r"Flax has no mgu layer: .*W_n \(f \* h\)"):
        cv.to_framework("flax", "mgu", params("mgu"))


def _one_step_by_hand(p: dict, x: np.ndarray, h: np.ndarray, flax: bool) -> np.ndarray:
    """One step written from the equations (rows are batch entries): mgu-flax's, or the paper's mgu's."""
    f = 1 / (1 + np.exp(-(x @ p["U_f"].T + h @ p["W_f"].T + p["b_f"])))
    if flax:
        n = np.tanh(x @ p["U_n"].T + p["b_n"] + f * (h @ p["W_n"].T + p["b_hn"]))
        return (1 - f) * n + f * h
    n = np.tanh(x @ p["U_n"].T + (f * h) @ p["W_n"].T + p["b_n"])
    return (1 - f) * h + f * n


def test_mgucell_with_the_packed_weights_computes_mgu_flax_and_not_the_papers_mgu():
    pytest.importorskip("flax")
    import jax.numpy as jnp
    from flax import linen as nn

    p = params(dtype="float32")
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((2, I)).astype("float32"), rng.standard_normal((2, H)).astype("float32")
    weights = cv.to_framework("flax", CELL, p)
    got, _ = nn.MGUCell(features=H).apply({"params": weights}, jnp.asarray(h), jnp.asarray(x))
    got = np.asarray(got, dtype="float64")
    p64 = {k: v.astype("float64") for k, v in p.items()}
    x64, h64 = x.astype("float64"), h.astype("float64")
    assert np.allclose(got, _one_step_by_hand(p64, x64, h64, flax=True), rtol=1e-5, atol=1e-6)
    paper = _one_step_by_hand({**p64, "b_hn": np.zeros(H)}, x64, h64, flax=False)
    assert np.max(np.abs(got - paper)) > 0.05  # far beyond float32 rounding: another function


def test_flax_s_own_mgucell_declares_the_parameters_the_packing_makes():
    pytest.importorskip("flax")
    import jax
    from flax import linen as nn

    from rnnspec.spec.conventions._shapes import flat

    # the shapes of what MGUCell.init would make, without running its initializers
    made = jax.eval_shape(nn.MGUCell(features=H).init, jax.random.key(0), jax.ShapeDtypeStruct((2, H), "float32"),
                          jax.ShapeDtypeStruct((2, I), "float32"))
    declared = {k: tuple(v.shape) for k, v in flat(made["params"]).items()}
    packed = {k: np.shape(v) for k, v in flat(cv.to_framework("flax", CELL, params())).items()}
    assert declared == packed


MUTANTS = '''
import numpy as np

from rnnspec.spec.frameworks.flax_cells import FlaxRNN


class WithoutResetGate(FlaxRNN):
    """MGUCell(reset_gate=False): n = tanh(U_n x + b_n + W_n h), its hn bias unused."""

    cells = ("mgu-flax",)
    cell = "mgu-flax"

    def _rnn(self, hidden, every_c):
        return self.nn.RNN(self.nn.MGUCell(features=hidden, reset_gate=False))


class PaperReadFromMGUCell(FlaxRNN):
    """The paper's mgu computed by MGUCell with b_hn = 0: the two names for one function the issue forbids."""

    cells = ("mgu",)
    cell = "mgu"

    def _function(self, x, state0, params, targets=None):
        self.cell = "mgu-flax"
        try:
            f, args, constants, unpack = super()._function(
                x, state0, {**params, "b_hn": np.zeros_like(params["b_n"])}, targets)
        finally:
            self.cell = "mgu"

        def without_b_hn(grads):
            out = unpack(grads)
            del out["b_hn"]
            return out

        return f, args, constants, without_b_hn
'''


def _failing(report) -> list:
    return [(r.clause.id, r.status, r.message.splitlines()[:1]) for r in report.results
            if r.status not in ("passed", "not provided")]


@pytest.mark.slow
def test_the_flax_target_is_conformant_on_mgu_flax_in_every_dtype():
    pytest.importorskip("flax")
    from rnnspec.spec.runner import check
    from rnnspec.spec.worker import TargetName

    report = check(TargetName("flax"), target="flax", cell=CELL, examples=6)
    assert report.conformant, _failing(report)
    assert {r.status for r in report.results} == {"passed"}  # forward, vjp and loss all provided and checked


@pytest.mark.slow
@pytest.mark.parametrize("mutant, cell", [("WithoutResetGate", CELL), ("PaperReadFromMGUCell", "mgu")])
def test_mgucell_fails_the_papers_cell_and_fails_without_its_reset_gate(tmp_path, mutant, cell):
    pytest.importorskip("flax")
    from rnnspec.spec.runner import check
    from rnnspec.spec.worker import TargetName

    (tmp_path / "mutants.py").write_text(MUTANTS)
    target = f"{tmp_path / 'mutants.py'}:{mutant}"
    report = check(TargetName(target), target=target, cell=cell, dtype="float64", examples=3)
    assert not report.conformant
    assert {r.status for r in report.results if "-FWD-" in r.clause.id} == {"failed"}
