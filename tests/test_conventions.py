"""The framework layouts (rnnspec.spec.conventions): exact round trips, random bias splits, refusals."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnspec.spec import conventions as cv
from rnnspec.spec.contract import contract

CELLS = ("elman", "lstm", "gru-reset-after", "gru-reset-before")
PAIRS = [(f, c) for f in cv.FRAMEWORKS for c in CELLS if c in cv.cells_of(f)]


def params(cell: str, dtype: str, I: int = 3, H: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = contract(cell).param_shapes(I, H, 2)
    return {k: rng.standard_normal(shapes[k]).astype(dtype) for k in contract(cell).step_params}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("framework, cell", PAIRS)
def test_a_round_trip_through_every_framework_is_bit_exact(framework, cell, dtype):
    canonical = params(cell, dtype)
    given = {k: v.copy() for k, v in canonical.items()}
    back = cv.from_framework(framework, cell, cv.to_framework(framework, cell, given))
    assert sorted(back) == sorted(canonical)
    for k in canonical:
        assert back[k].dtype == canonical[k].dtype and back[k].tobytes() == canonical[k].tobytes(), (framework, k)
        assert given[k].tobytes() == canonical[k].tobytes(), f"packing for {framework} modified its argument's {k}"


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["float32", "float64"]), st.integers(0, 2**32 - 1), st.floats(-30, 30))
def test_a_split_bias_adds_back_exactly_and_neither_part_is_the_bias(dtype, seed, log_scale):
    bias = (np.random.default_rng(seed).standard_normal(64) * 2.0**log_scale).astype(dtype)
    first, second = cv.split_bias(bias)
    assert np.array_equal(first + second, bias)
    assert np.array_equal(cv.split_bias(bias)[0], first)  # deterministic: the same values, the same split
    # random parts: neither is the bias, nor half of it, except on the rare entries a split cannot take
    assert np.mean(first == bias / 2) < 0.05 and np.mean(second == bias) < 0.05


def test_the_torch_layout_stacks_ifgo_rows_and_keeps_b_hn_in_bias_hh():
    p = params("gru-reset-after", "float64")
    w = cv.to_framework("torch", "gru-reset-after", p)
    H = 4
    assert np.array_equal(w["weight_ih_l0"][H:2 * H], p["U_z"]) and np.array_equal(w["weight_hh_l0"][:H], p["W_r"])
    assert np.array_equal(w["bias_ih_l0"][2 * H:], p["b_n"]) and np.array_equal(w["bias_hh_l0"][2 * H:], p["b_hn"])
    assert np.allclose(w["bias_ih_l0"][:H] + w["bias_hh_l0"][:H], p["b_r"], rtol=0, atol=0)


def test_keras_and_onnx_orders_are_their_own():
    p = params("lstm", "float64")
    H = 4
    keras = cv.to_framework("keras", "lstm", p)
    onnx = cv.to_framework("onnx", "lstm", p)
    assert np.array_equal(keras["kernel"][:, 2 * H:3 * H], p["U_g"].T)  # Keras: i, f, c, o along columns
    assert np.array_equal(onnx["W"][0, H:2 * H], p["U_o"])  # ONNX: i, o, f, c along rows
    assert np.array_equal(onnx["R"][0, 3 * H:], p["W_g"])
    gru = cv.to_framework("keras", "gru-reset-after", params("gru-reset-after", "float64"))
    assert gru["bias"].shape == (2, 3 * H)  # input row, recurrent row
    assert cv.to_framework("keras", "gru-reset-before", params("gru-reset-before", "float64"))["bias"].shape == (12,)


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_a_framework_without_a_reset_before_gru_says_why(framework):
    with pytest.raises(cv.ConversionError, match="reset gate after the recurrent product|multiplies r into"):
        cv.to_framework(framework, "gru-reset-before", params("gru-reset-before", "float64"))


def test_porting_a_reset_after_gru_into_a_reset_before_one_is_refused_with_the_reason():
    torch_gru = cv.to_framework("torch", "gru-reset-after", params("gru-reset-after", "float64"))
    with pytest.raises(cv.ConversionError, match=r"W_n \(r \* h\)"):
        cv.port(torch_gru, "gru-reset-after", source="torch", target="keras", target_cell="gru-reset-before")
    with pytest.raises(cv.ConversionError, match="ambiguous"):
        cv.to_framework("keras", "gru", {})
    with pytest.raises(cv.ConversionError, match="lack"):
        cv.to_framework("keras", "lstm", {"U_i": np.zeros((4, 3))})


def test_porting_keeps_the_canonical_parameters():
    p = params("gru-reset-after", "float32")
    keras = cv.port(cv.to_framework("torch", "gru-reset-after", p), "gru-reset-after", source="torch", target="keras")
    assert all(np.array_equal(v, p[k]) for k, v in cv.from_framework("keras", "gru-reset-after", keras).items())


def test_gradients_of_a_split_bias_are_read_from_one_part():
    p = params("elman", "float64")
    w = cv.to_framework("torch", "elman", p)
    grads = {k: np.full_like(v, 2.0) for k, v in w.items()}
    assert np.array_equal(cv.gradients_from_framework("torch", "elman", grads)["b"], np.full(4, 2.0))
    assert np.array_equal(cv.from_framework("torch", "elman", grads)["b"], np.full(4, 4.0))


def test_sequences_reach_batch_major_frameworks_transposed_and_come_back():
    x = np.arange(24.0).reshape(2, 3, 4)  # (T, B, I)
    assert cv.sequence_to("keras", x).shape == (3, 2, 4) and cv.sequence_to("onnx", x) is x
    assert np.array_equal(cv.sequence_from("flax", cv.sequence_to("flax", x)), x)
