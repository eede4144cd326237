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
