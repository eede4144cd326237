"""The CUDA kernels' entry points name a bad cell or a missing head parameter as the CPU kernels do (issue "Valid
input always accepted, bad input always named"), under numba-cuda's simulator."""

import numpy as np
import pytest

cuda = pytest.importorskip("rnnspec.kernels.cuda")

X, STATE0 = np.zeros((2, 1, 2)), {"h0": np.zeros((1, 2))}
PARAMS = {"U": np.zeros((2, 2)), "W": np.zeros((2, 2)), "b": np.zeros(2)}


@pytest.mark.parametrize("cell,says", [(np.array(["lstm", "gru"]), "cell: expected one of"),
                                       ("gru", "ambiguous"), ("no-such-cell", "cell: expected one of")])
@pytest.mark.parametrize("function", ["forward", "backward", "loss"])
def test_a_bad_cell_is_named(function, cell, says):
    last = {"forward": (), "backward": ({"h": np.zeros((2, 1, 2))},), "loss": (np.zeros((2, 1), dtype=np.int64),)}
    with pytest.raises(ValueError, match=says):
        getattr(cuda, function)(cell, X, STATE0, PARAMS, *last[function])


def test_the_elman_loss_without_its_head_names_what_is_missing():
    with pytest.raises(ValueError, match=r"params: missing \['V', 'c'\]"):
        cuda.loss("elman", X, STATE0, PARAMS, np.zeros((2, 1), dtype=np.int64))
