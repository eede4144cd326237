"""Weights of the wrong shape, or with keys missing or extra, are refused by every conversion with a
ConversionError that names the cell, the key, the shape found and the shape expected (issue 32, item 8).

The expected shapes here are written out where a reader can check them against the frameworks' documents
(nn.LSTM's weight_ih_l0 is (4·H, I)); the sweep over every framework and cell compares a weight set with
one key grown against the shapes the layout itself makes of the known sizes.
"""

import re

import numpy as np
import pytest

from rnnspec.derivations.registry import cell as registered_cell
from rnnspec.derivations.variants import Variant
from rnnspec.spec import conventions as cv
from rnnspec.spec.conventions import pytorch

PAIRS = [(f, c) for f in cv.FRAMEWORKS for c in cv.cells_of(f)]
#: distinct sizes, so that a shape in a message says which size it holds
SIZES = {"I": 3, "H": 5, "P": 2}


def canonical(cell: str, sizes: dict[str, int] = SIZES, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.key: rng.standard_normal(tuple(sizes[n] for n in v.shape)) for v in registered_cell(cell).params}


def flat(weights: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in weights.items():
        out.update(flat(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return out


def nest(flat_weights: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for name, v in flat_weights.items():
        *path, last = name.split("/")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = v
    return out


def grown(array: np.ndarray, axis: int) -> np.ndarray:
    """``array`` with one more entry along ``axis``."""
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, 1)
    return np.pad(array, pad)


# a GRU of input size 8 and hidden size 16, as nn.GRU(8, 16).state_dict() holds it (r, z, n stacked: 3·16 rows)
GRU_8_16 = {"weight_ih_l0": np.zeros((48, 8), np.float32), "weight_hh_l0": np.zeros((48, 16), np.float32),
            "bias_ih_l0": np.zeros(48, np.float32), "bias_hh_l0": np.zeros(48, np.float32)}
LSTM_8_16 = {"weight_ih_l0": np.zeros((64, 8), np.float32), "weight_hh_l0": np.zeros((64, 16), np.float32),
             "bias_ih_l0": np.zeros(64, np.float32), "bias_hh_l0": np.zeros(64, np.float32)}


def test_a_gru_state_dict_ported_as_an_lstm_is_refused_naming_key_shape_found_and_expected():
    with pytest.raises(cv.ConversionError) as error:
        cv.port(GRU_8_16, "lstm", source="torch", target="keras")
    message = str(error.value)
    assert "lstm" in message
    assert "weight_ih_l0 has shape (48, 8), expected (64, 8)" in message
    assert "weight_hh_l0 has shape (48, 16), expected (64, 16)" in message
    assert "bias_hh_l0 has shape (48,), expected (64,)" in message


def test_an_lstm_state_dict_ported_as_a_gru_is_refused_not_left_to_numpy():
    with pytest.raises(cv.ConversionError) as error:
        cv.port(LSTM_8_16, "gru-reset-after", source="torch", target="keras")
    message = str(error.value)
    assert "gru-reset-after" in message and "equal division" not in message
    assert "weight_ih_l0 has shape (64, 8), expected (48, 8)" in message
    assert "bias_ih_l0 has shape (64,), expected (48,)" in message


def test_the_issues_reproducers_with_pytorch_modules():
    torch = pytest.importorskip("torch")
    gru = {k: v.detach().numpy() for k, v in torch.nn.GRU(8, 16).state_dict().items()}
    lstm = {k: v.detach().numpy() for k, v in torch.nn.LSTM(8, 16).state_dict().items()}
    with pytest.raises(cv.ConversionError, match=re.escape("weight_hh_l0 has shape (48, 16), expected (64, 16)")):
        cv.port(gru, "lstm", source="torch", target="keras")
    with pytest.raises(cv.ConversionError, match=re.escape("weight_hh_l0 has shape (64, 16), expected (48, 16)")):
        cv.port(lstm, "gru-reset-after", source="torch", target="keras")
    assert cv.port(lstm, "lstm", source="torch", target="keras")["kernel"].shape == (8, 64)


def _assert_names(message: str, cell: str, key: str, axis: int, bad: tuple, good: tuple) -> None:
    """The message names the cell and the grown key with the shape found and the one expected; or, where
    the grown axis is where a size is read (the first axis that is H alone, say), it says so, and names
    another key as not fitting that size."""
    assert cell in message, message
    if f"{key} has shape {bad}, expected {good}" in message:
        return
    assert re.search(rf"\w = \d+ from {re.escape(key)}'s axis {axis}", message), message
    assert re.search(r"has shape \([\d, ]*\), expected \([\d, ]*\)", message), message


@pytest.mark.parametrize("framework, cell", PAIRS)
def test_every_key_of_every_layout_grown_along_any_axis_is_refused_both_ways(framework, cell):
    """from_framework, gradients_from_framework and port read framework weights; to_framework reads canonical
    parameters: each is given every key in turn with one axis grown by one."""
    params = canonical(cell)
    weights = flat(cv.to_framework(framework, cell, params))
    # another framework with the cell, or the same one (only PyTorch has lstm-proj, only ONNX lstm-peephole)
    other = next((f for f in cv.FRAMEWORKS if f != framework and cell in cv.cells_of(f)), framework)
    checked = 0
    for key, value in weights.items():
        for axis in range(value.ndim):
            bad = {**weights, key: grown(value, axis)}
            read = [lambda w: cv.from_framework(framework, cell, w),
                    lambda w: cv.gradients_from_framework(framework, cell, w),
                    lambda w: cv.port(w, cell, source=framework, target=other)]
            if value.shape[axis] == SIZES["I"] and sum(v.shape.count(SIZES["I"]) for v in weights.values()) == 1:
                # the one axis of input size: the weights of a layer of input size I + 1, which is no error
                assert cv.from_framework(framework, cell, nest(bad))[next(iter(params))].shape[-1] == SIZES["I"] + 1
                continue
            for reader in read:
                with pytest.raises(cv.ConversionError) as error:
                    reader(nest(bad))
                _assert_names(str(error.value), cell, key, axis, bad[key].shape, value.shape)
                checked += 1
    assert checked >= 3 * (len(weights) - 1)  # all but the one that holds I alone
    for key, value in params.items():
        for axis in range(value.ndim):
            bad = {**params, key: grown(value, axis)}
            if value.shape[axis] == SIZES["I"] and sum(v.shape.count(SIZES["I"]) for v in params.values()) == 1:
                continue  # as above: an Elman layer of input size I + 1
            with pytest.raises(cv.ConversionError) as error:
                cv.to_framework(framework, cell, bad)
            _assert_names(str(error.value), cell, key, axis, bad[key].shape, value.shape)


@pytest.mark.parametrize("framework, cell", PAIRS)
def test_a_missing_or_unexpected_key_is_named(framework, cell):
    params = canonical(cell)
    weights = flat(cv.to_framework(framework, cell, params))
    for key in weights:
        with pytest.raises(cv.ConversionError, match=rf"{cell} .*lack \[{re.escape(repr(key))}\]"):
            cv.from_framework(framework, cell, nest({k: v for k, v in weights.items() if k != key}))
    with pytest.raises(cv.ConversionError, match=r"unexpected keys \['weight_ih_l1'\]"):
        cv.from_framework(framework, cell, nest({**weights, "weight_ih_l1": np.zeros((4, 4))}))
    for key in params:
        with pytest.raises(cv.ConversionError, match=rf"{cell} .*lack \[{re.escape(repr(key))}\]"):
            cv.to_framework(framework, cell, {k: v for k, v in params.items() if k != key})
    with pytest.raises(cv.ConversionError, match=r"unexpected keys \['U_x'\]"):
        cv.to_framework(framework, cell, {**params, "U_x": np.zeros((5, 3))})
    # the head's parameters are no step parameters, but the targets pass them along: ignored
    assert cv.to_framework(framework, cell, {**params, "V": np.zeros((2, 5)), "c": np.zeros(2)}).keys() == \
        cv.to_framework(framework, cell, params).keys()


def test_a_layer_of_a_stacked_pytorch_module_is_checked_under_its_own_names():
    variant = Variant(layers=2, bidirectional=True)
    params = {}
    for layer, d in variant.runs():
        sizes = {**SIZES, "I": SIZES["I"] if layer == 0 else 2 * SIZES["H"]}
        params.update({k + variant.suffix(layer, d): v for k, v in canonical("gru-reset-after", sizes).items()})
    weights = pytorch.to_runs("gru-reset-after", params, variant)
    assert set(pytorch.from_runs("gru-reset-after", weights, cv.add, variant)) == set(params)
    bad = {**weights, "weight_hh_l1_reverse": np.zeros((16, 5))}
    with pytest.raises(cv.ConversionError, match=re.escape("weight_hh_l1_reverse has shape (16, 5), expected (15, 5)")):
        pytorch.from_runs("gru-reset-after", bad, cv.add, variant)
    with pytest.raises(cv.ConversionError, match=r"unexpected keys \['weight_ih_l2'\]"):
        pytorch.from_runs("gru-reset-after", {**weights, "weight_ih_l2": np.zeros((15, 10))}, cv.add, variant)
    with pytest.raises(cv.ConversionError, match=r"lack \['bias_hh_l1'\]"):
        pytorch.from_runs("gru-reset-after", {k: v for k, v in weights.items() if k != "bias_hh_l1"}, cv.add, variant)
    bad_params = {**params, "W_n_l1": np.zeros((5, 6))}
    with pytest.raises(cv.ConversionError, match=re.escape("W_n_l1 has shape (5, 6), expected (5, 5)")):
        pytorch.to_runs("gru-reset-after", bad_params, variant)


def test_a_check_modifies_nothing_it_is_given():
    weights = {k: v.copy() for k, v in GRU_8_16.items()}
    with pytest.raises(cv.ConversionError):
        cv.from_framework("torch", "lstm", weights)
    assert weights.keys() == GRU_8_16.keys() and all(np.array_equal(weights[k], GRU_8_16[k]) for k in weights)
