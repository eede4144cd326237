"""A known defect is attached only to the failures it can explain: its targets, dtypes, cells and variant features."""

from rnnspec import catalogue
from rnnspec.spec import defects


def test_a_defect_of_one_cell_is_not_attached_to_another_cells_failure():
    peepholes = [d for d in defects.DEFECTS if d.cells == ("lstm-peephole",) and "openvino" in d.targets]
    assert peepholes, "the OpenVINO peephole defect is recorded"
    assert peepholes[0] in defects.known("openvino", "float32", "lstm-peephole")
    assert peepholes[0] not in defects.known("openvino", "float32", "elman")


def test_a_defect_that_needs_a_variant_is_attached_only_to_runs_of_it():
    (padded,) = [d for d in defects.DEFECTS if "paddle" in d.targets and d.variants == ("lengths=zero",)]
    assert padded in defects.known("paddle", "float32", "lstm-proj", "layers=2,lengths=zero")
    assert padded not in defects.known("paddle", "float32", "lstm-proj")
    assert padded not in defects.known("paddle", "float32", "lstm", "lengths=zero")


def test_every_defect_names_known_targets_dtypes_cells_and_features():
    from rnnspec.spec.declared import VARIANT_FEATURES
    from rnnspec.spec.targets import BUILTIN

    for d in defects.DEFECTS:
        assert set(d.targets) <= set(BUILTIN), d.targets
        assert d.dtypes and set(d.dtypes) <= set(catalogue.DTYPES), d.dtypes
        assert set(d.cells) <= set(catalogue.NAMES), d.cells
        assert set(d.variants) <= set(VARIANT_FEATURES), d.variants


def test_every_defect_is_pinned_by_tests_that_exist_and_can_fail():
    """A documented defect goes stale loudly when the framework fixes it: each names the tests that pin it in the
    framework's own code, and each named test exists and asserts something (a ``Pinned by`` in its text agrees)."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for d in defects.DEFECTS:
        assert d.pinned_by, f"no test pins the defect {d.summary[:60]!r}"
        for pin in d.pinned_by:
            path, name = pin.split("::")
            tree = ast.parse((root / path).read_text())
            (test,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name] or [None]
            assert test is not None, f"{pin} (pinning {d.summary[:60]!r}) does not exist"
            checks = ("fail", "assert_allclose", "assert_array_equal")
            asserts = [n for n in ast.walk(test) if isinstance(n, ast.Assert)
                       or (isinstance(n, ast.Attribute) and n.attr in checks)]
            assert asserts, f"{pin} asserts nothing"
        for named in re.findall(r"Pinned by (tests/\S+?::\w+)", d.text):
            assert named in d.pinned_by, (named, d.pinned_by)
