"""Issue "Valid input always accepted, bad input always named", CLI items: bad arguments of matrix and derive are
refused before any work starts, with exit 2 and one line that names the option; never a traceback of ours."""

import time

import pytest

from rnnspec.spec import cli


def rnnspec(capsys, *args):
    """``rnnspec ARGS`` in this process: (exit code, stderr), with no traceback, and the seconds it took."""
    start = time.monotonic()
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, err, time.monotonic() - start


@pytest.mark.parametrize("seeds", ["a", "", "1,,2", "1.5", "-1", str(2**32)])
def test_matrix_seeds_must_be_integers(capsys, seeds):
    code, err, _ = rnnspec(capsys, "matrix", "--targets", "torch", "--seeds", seeds, "--quiet")
    assert code == 2 and "--seeds" in err, err


def test_matrix_out_is_checked_before_the_run(capsys, tmp_path):
    for out, says in ((tmp_path / "no" / "m.md", "does not exist"), (tmp_path, "is a folder")):
        code, err, seconds = rnnspec(capsys, "matrix", "--targets", "torch", "--out", str(out), "--quiet")
        assert code == 2 and "--out" in err and says in err, err
        assert seconds < 5, "refused only after running"


def test_matrix_names_a_known_target_that_is_not_installed(capsys, monkeypatch):
    from rnnspec.spec import matrix

    monkeypatch.setattr(matrix.Row, "installed", lambda row: row.target != "torch-cuda")
    code, err, _ = rnnspec(capsys, "matrix", "--targets", "torch-cuda", "--quiet")
    assert code == 2 and "torch-cuda is not installed here" in err and "CUDA GPU" in err, err


def test_matrix_with_no_targets_is_refused(capsys):
    code, err, _ = rnnspec(capsys, "matrix", "--targets", ",", "--quiet")
    assert code == 2 and "--targets" in err


def test_derive_refuses_a_file_as_out_before_rendering(capsys, tmp_path):
    file = tmp_path / "x.md"
    file.write_text("")
    code, err, seconds = rnnspec(capsys, "derive", "--out", str(file), "--quiet")
    assert code == 2 and "is a file" in err and seconds < 5, err


def test_derive_check_against_a_missing_folder_is_a_usage_error_not_stale_files(capsys, tmp_path):
    code, err, seconds = rnnspec(capsys, "derive", "--check", "--out", str(tmp_path / "missing"), "--quiet")
    assert code == 2 and "no such folder" in err and "stale" not in err and seconds < 5, err


@pytest.mark.parametrize("variant,says", [("layers=" + "9" * 5000, "5000 digits"),
                                          ("lengths=zero,lengths=carry", "lengths is given twice"),
                                          ("layers=2,layers=3", "layers is given twice")])
def test_a_variant_is_read_whole_or_refused_by_name(capsys, variant, says):
    code, err, _ = rnnspec(capsys, "check", "--variant", variant, "--quiet")
    assert code == 2 and says in err and len(err) < 400 and "set_int_max_str_digits" not in err, err
