"""The CPU kernels' variants (layers, directions, lengths) against the oracle's composition, and their
argument checks. The suite's own check of rnnspec-cpu on variants is in tests/test_variants_targets.py."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rnnspec import catalogue, kernels
from rnnspec.derivations.composed import Composed
from rnnspec.derivations.variants import Variant
from rnnspec.kernels.cpu import elman, gated
from rnnspec.spec.tolerance import perturbed, relative_error, tolerance

#: the cells whose variants run generated cases; every other cell of the catalogue runs fixed ones
CELLS = ["elman", "lstm", "gru-reset-after", "gru-reset-before"]
OTHERS = [cell for cell in catalogue.NAMES if cell not in CELLS]
TOL64 = 1e-12


def make_case(cell, variant: Variant, T, B, I, H, K, seed, dtype="float64", lengths=None):
    """Arrays of the variant contract: suffixed parameters (shapes from the catalogue, layer l > 0 reading the
    D P features below), stacked initial states, cotangents on every output."""
    rng = np.random.default_rng(seed)
    f = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(dtype)
    entry = catalogue.cell(cell)
    P = max(H - 1, 1) if entry.width == "P" else H  # the width of h
    params = {}
    for layer, d in variant.runs():
        sizes = {"I": I if layer == 0 else variant.directions * P, "H": H, "P": P}
        for p in entry.params:
            params[p.key + variant.suffix(layer, d)] = f(*(sizes[size] for size in p.shape))
    head = {"V": f(K, variant.directions * P), "c": f(K)}
    runs = (len(variant.runs()),) if variant.stacked else ()
    state0 = {"h0": f(*runs, B, P)}
    if "c" in entry.states:
        state0["c0"] = f(*runs, B, H)
    if variant.lengths and lengths is None:
        lengths = rng.integers(0, T + 1, B)
    cot = {"h": f(T, B, variant.directions * P), **{k[0] + "_n": f(*v.shape) for k, v in state0.items()}}
    return {"cell": cell, "variant": variant, "x": f(T, B, I), "state0": state0, "params": params, "head": head,
            "lengths": lengths, "cot": cot, "y": rng.integers(0, K, (T, B))}


def options(case):
    v = case["variant"]
    return {"layers": v.layers, "bidirectional": v.bidirectional, "lengths": case["lengths"],
            "padding": v.lengths or "zero"}


def run_kernels(case):
    cell, x, s, p, o = case["cell"], case["x"], case["state0"], case["params"], options(case)
    return (kernels.forward(cell, x, s, p, **o), kernels.backward(cell, x, s, p, case["cot"], **o),
            kernels.loss(cell, x, s, {**p, **case["head"]}, case["y"], **o))


def run_oracle(case):
    oracle = Composed(case["cell"], case["variant"])
    x, s, p, n = case["x"], case["state0"], case["params"], case["lengths"]
    return (oracle.forward(x, s, p, lengths=n), oracle.vjp(x, s, p, case["cot"], lengths=n),
            oracle.loss(x, s, {**p, **case["head"]}, case["y"], lengths=n))


def flat(result):
    fwd, vjp, (value, grads) = result
    out = {("forward", k): v for k, v in fwd.items()}
    out.update({("vjp", k): v for k, v in vjp.items()})
    out.update({("loss", k): v for k, v in grads.items()})
    out[("loss", "value")] = np.asarray(value)
    return out


def _rounded_once(case, rng):
    """The case with every float input moved by one float64 rounding (spec.tolerance.perturbed)."""
    out = dict(case)
    for key in ("x", "state0", "params", "head", "cot"):
        value = case[key]
        out[key] = perturbed(value, "float64", rng) if isinstance(value, dict) else \
            perturbed({key: value}, "float64", rng)[key]
    return out


def agree(case):
    """Every output within TOL64 of the oracle's composition, or, where the case is so ill-conditioned that
    correct float64 computations land further apart (a reset gate driven shut cancels dL/dU_r: a random CI
    case once gave 2.0e-12), within the suite's tolerance from the oracle's own spread under one rounding of
    every input."""
    got, want = flat(run_kernels(case)), flat(run_oracle(case))
    assert set(got) == set(want), set(got) ^ set(want)
    spread = None
    for key, ref in want.items():
        assert got[key].shape == np.shape(ref), (key, got[key].shape, np.shape(ref))
        err = relative_error(got[key], ref, "float64")
        if err > TOL64 and spread is None:
            spread = flat(run_oracle(_rounded_once(case, np.random.default_rng(0))))
        bound = TOL64 if err <= TOL64 else max(TOL64, tolerance(relative_error(spread[key], ref, "float64"),
                                                               "float64"))
        assert err <= bound, (f"{case['cell']} {case['variant'].name} {key}: relative error {err:.3e} > {bound:.3e}; "
                              f"lengths {case['lengths']}")


@st.composite
def variant_cases(draw, cell):
    variant = Variant(draw(st.integers(1, 3)), draw(st.booleans()), draw(st.sampled_from([None, "zero", "carry"])))
    assume(not variant.plain)  # the plain run keeps the plain contract (h and c at every step): test_gated_kernels
    T, B = draw(st.integers(1, 9)), draw(st.integers(1, 5))
    lengths = None
    if variant.lengths:
        lengths = np.array(draw(st.lists(st.integers(0, T), min_size=B, max_size=B)), dtype=np.int64)
    return make_case(cell, variant, T, B, draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(2, 5)),
                     draw(st.integers(0, 2**31)), lengths=lengths)


@pytest.mark.parametrize("cell", CELLS)
def test_every_variant_matches_the_oracles_composition(cell):
    """float64 within 1e-12 of rnnspec.derivations.composed over layers 1-3, both directions and both paddings,
    lengths 0..T in any order (float32 is the suite's job: test_variants_targets, and the long run)."""
    settings(max_examples=15, deadline=None)(given(variant_cases(cell))(agree))()


@pytest.mark.parametrize("cell", OTHERS)
def test_the_other_cells_run_every_variant(cell):
    """The LSTM's relatives and the MGUs: stacked both ways with lengths (either padding), and three layers."""
    for variant, lengths in ((Variant(2, True, "zero"), [4, 0, 6]), (Variant(1, True, "carry"), [6, 2, 0]),
                             (Variant(3, False, None), None)):
        agree(make_case(cell, variant, 6, 3, 2, 4, 3, seed=7,
                        lengths=None if lengths is None else np.array(lengths)))


@pytest.mark.parametrize("cell", catalogue.NAMES)
def test_the_blas_path_of_every_cell_handles_held_rows(cell, monkeypatch):
    """The recurrent product by BLAS on a prefix of rows (and Elman's large regime, its loop in Python)."""
    monkeypatch.setattr(gated, "SMALL_STEP", -1)
    monkeypatch.setattr(elman, "SMALL_STEP", -1)
    monkeypatch.setattr(elman, "LARGE_STEP", 0)
    for padding in ("zero", "carry"):
        agree(make_case(cell, Variant(2, True, padding), 7, 5, 3, 4, 3, seed=1, lengths=np.array([3, 7, 0, 1, 7])))


@pytest.mark.parametrize("cell", ["lstm", "gru-reset-before"])
def test_layouts_are_bit_identical_and_inputs_never_modified(cell):
    case = make_case(cell, Variant(2, True, "zero"), 6, 4, 3, 5, 3, seed=2, lengths=np.array([2, 6, 0, 6]))
    snapshot = {k: {kk: vv.copy() for kk, vv in case[k].items()} for k in ("state0", "params", "head", "cot")}
    before = case["x"].copy(), case["lengths"].copy()
    want = flat(run_kernels(case))
    for k, v in snapshot.items():
        for name, value in v.items():
            np.testing.assert_array_equal(case[k][name], value, err_msg=f"{k}[{name}] was modified")
    np.testing.assert_array_equal(case["x"], before[0])
    np.testing.assert_array_equal(case["lengths"], before[1])
    relaid = {**case, "x": np.asfortranarray(case["x"]),
              **{k: {n: np.asfortranarray(v) for n, v in case[k].items()} for k in ("state0", "params", "head", "cot")}}
    got = flat(run_kernels(relaid))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))


@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_empty_runs_and_sequences_of_length_zero(cell):
    variant = Variant(2, True, "carry")
    none = make_case(cell, variant, 3, 2, 2, 3, 3, seed=3, lengths=np.array([0, 0]))
    fwd, vjp, (value, grads) = run_kernels(none)
    assert not fwd["h"].any() and value == 0
    np.testing.assert_array_equal(fwd["h_n"], none["state0"]["h0"])
    np.testing.assert_array_equal(vjp["h0"], none["cot"]["h_n"])  # the final state is the initial one
    assert not any(g.any() for k, g in grads.items())
    for T, B in ((0, 2), (3, 0)):
        case = make_case(cell, variant, T, B, 2, 3, 3, seed=4, lengths=np.zeros(B, np.int64))
        fwd, vjp, (value, grads) = run_kernels(case)
        assert fwd["h"].shape == (T, B, 6) and value == 0
        np.testing.assert_array_equal(vjp["h0"], case["cot"]["h_n"])
        agree(case) if B else None


def _call(case, **change):
    merged = {**options(case), **change}
    return kernels.forward(case["cell"], case["x"], case["state0"], case["params"], **merged)


@pytest.mark.parametrize("corrupt,error,message", [
    (lambda c: {"lengths": c["lengths"].astype(float)}, TypeError, r"lengths: expected a numpy.ndarray of integers"),
    (lambda c: {"lengths": c["lengths"][:2]}, ValueError, r"lengths: expected shape \(B,\)=\(3,\)"),
    (lambda c: {"lengths": c["lengths"] + 5}, ValueError, r"lengths: each must lie in \[0, T=4\]"),
    (lambda c: {"padding": "repeat"}, ValueError, r"padding: expected one of \('zero', 'carry'\)"),
    (lambda c: {"layers": 0}, ValueError, r"layers: expected an integer >= 1"),
    (lambda c: {"bidirectional": "yes"}, TypeError, r"bidirectional: expected True or False"),
])
def test_bad_variant_arguments_are_named(corrupt, error, message):
    case = make_case("lstm", Variant(2, True, "zero"), 4, 3, 2, 3, 3, seed=5)
    with pytest.raises(error, match=message):
        _call(case, **corrupt(case))


def test_bad_stacked_parameters_and_states_are_named_with_their_layer_and_direction():
    case = make_case("gru-reset-after", Variant(2, True, "zero"), 4, 3, 2, 3, 3, seed=6)
    p = case["params"]
    with pytest.raises(ValueError, match=r"params: missing \['W_z_l1_reverse'\] \(layer 1, reverse direction"):
        kernels.forward("gru-reset-after", case["x"], case["state0"], {k: v for k, v in p.items()
                                                                       if k != "W_z_l1_reverse"}, **options(case))
    with pytest.raises(ValueError, match=r"params: unexpected \['U_r'\]"):
        kernels.forward("gru-reset-after", case["x"], case["state0"], {**p, "U_r": p["U_r_l0"]}, **options(case))
    wrong = {**p, "U_n_l1": p["U_n_l0"]}  # (H, I) where layer 1 reads D * H = 6 features
    with pytest.raises(ValueError, match=r"layer 1, forward direction .*U_n: expected shape \(H, I\)=\(3, 6\).*"
                                         r"layer 1 reads the D \* H = 6 features"):
        kernels.forward("gru-reset-after", case["x"], case["state0"], wrong, **options(case))
    with pytest.raises(ValueError, match=r"state0\['h0'\]: expected shape \(L \* D, B, H\) with L \* D = 4"):
        kernels.forward("gru-reset-after", case["x"], {"h0": case["state0"]["h0"][:2]}, p, **options(case))
    with pytest.raises(ValueError, match=r"cotangents\['h'\]: expected shape \(T, B, D \* H\)=\(4, 3, 6\)"):
        kernels.backward("gru-reset-after", case["x"], case["state0"], p, {"h": case["cot"]["h"][..., :3]},
                         **options(case))
    with pytest.raises(ValueError, match=r"padding='carry' applies to runs with lengths"):
        kernels.forward("lstm", case["x"], case["state0"], p, padding="carry")


VARIANT_BASELINE_AGREES = """
import sys
import numpy as np
from rnnspec.kernels.cpu.baselines_variants import RUNNERS, make_variant_case

cell = sys.argv[1]
for lengths in (None, "zero"):
    variant = {"layers": 2, "bidirectional": True, "lengths": lengths}
    case = make_variant_case(cell, variant, 7, 4, 5, 6, 3, "float64")
    if lengths:
        case["lengths"][0] = 1
    ours_forward, ours_train = RUNNERS["rnnspec-cpu"](case, cell, variant)
    value, grads = ours_train()
    forward_, train = RUNNERS["torch"](case, cell, variant)
    np.testing.assert_allclose(forward_().numpy(), ours_forward()["h"], rtol=1e-12, atol=1e-14)
    their_value, their_grads = train()
    assert abs(their_value - value) <= 1e-12 * abs(value), (their_value, value)
    for key, got in zip(["x", "h0", "c0"], their_grads):
        np.testing.assert_allclose(got.numpy(), grads[key], rtol=1e-10, atol=1e-12, err_msg=key)
print("compared", cell)
"""


@pytest.mark.parametrize("cell", ["lstm-proj", "elman"])  # the LSTM's plain case: test_gated_kernels
def test_the_variant_benchmark_compares_like_with_like(cell):
    """`rnnspec bench --variant`'s PyTorch rows (num_layers=2, bidirectional, packed sequences, unsorted) compute
    the kernels' outputs, loss and gradients. In a process of its own (PyTorch's OpenMP threads and fork)."""
    pytest.importorskip("torch")
    run = subprocess.run([sys.executable, "-c", VARIANT_BASELINE_AGREES, cell], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and f"compared {cell}" in run.stdout, run.stdout + run.stderr


def test_bench_runs_a_variant_and_names_it(capsys, monkeypatch):
    """The variant's rows, named; the peak's measurement (about 15 s) is test_gated_kernels' bench test's."""
    from rnnspec.kernels.cpu import peak
    from rnnspec.spec import cli

    monkeypatch.setattr(peak, "measure", lambda dtype: {"numpy_gemm": 1.0, "kernels_gemm": 1.0,
                                                        "fma_microkernel": 1.0, "peak_gflops": 1.0})

    assert cli.main(["bench", "--cell", "gru-reset-before", "--variant", "bidirectional,lengths=carry", "--sizes",
                     "G1", "--dtypes", "float64", "--impls", "rnnspec-cpu,numpy", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "cell: gru-reset-before, variant bidirectional,lengths=carry" in out, out
    assert "skipped: numpy (the textbook loop runs one forward layer over full sequences)" in out, out
    assert len([line for line in out.splitlines() if line.startswith("G1")]) == 2, out
    assert cli.main(["bench", "--cell", "lstm", "--variant", "layers=two"]) == 2
