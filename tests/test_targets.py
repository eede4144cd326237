import pytest

from rnnspec.derivations.oracle import Oracle
from rnnspec.spec import TargetError, load_target


def test_builtin_oracle():
    assert isinstance(load_target("oracle"), Oracle)


def test_module_attr_object_and_class():
    assert isinstance(load_target("rnnspec.derivations.oracle:Oracle"), Oracle)


def test_file_attr(tmp_path):
    file = tmp_path / "mine.py"
    file.write_text("import numpy as np\nclass Mine:\n    cell = 'elman'\n    def forward(self, x, s, p):\n"
                    "        return {'h': np.zeros(1)}\nINSTANCE = Mine()\n")
    assert load_target(f"{file}:Mine").cell == "elman"
    assert load_target(f"{file}:INSTANCE").forward(None, None, None)["h"].shape == (1,)


@pytest.mark.parametrize("name,message", [("nonsense", "unknown target"), ("no/such.py:X", "no file"),
                                          ("rnnspec.derivations.oracle:Nope", "no attribute"),
                                          ("no_such_module_xyz:X", "importing")])
def test_bad_targets_say_why(name, message):
    with pytest.raises(TargetError, match=message):
        load_target(name)


def test_constructor_failure_is_reported(tmp_path):
    file = tmp_path / "broken.py"
    file.write_text("class Broken:\n    def __init__(self):\n        raise RuntimeError('nope')\n")
    with pytest.raises(TargetError, match="nope"):
        load_target(f"{file}:Broken")
