"""The portable case corpus (docs/corpus.md): `rnnspec cases` writes it, a program answers it, `rnnspec judge` judges.

The program here is :func:`answer`, which reads the corpus as a reader in another language would (case.json and
.npy files by their documented names, nothing of rnnspec.spec.corpus) and answers with the hand-written NumPy
models of tests/gated.py and tests/variants_reference.py, which share no code with the oracle.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from variants_reference import Reference

from rnnspec import catalogue
from rnnspec.spec import expected as expected_module
from rnnspec.spec.cases import generate
from rnnspec.spec.corpus import write_corpus
from rnnspec.spec.corpus_judge import judge_corpus
from rnnspec.spec.runner import check

import mutants
from cli_runner import rnnspec
from gated import LSTM, MODELS
from mutants_gated import LstmLastStepSkipped

EXAMPLES, SEED = 6, 0


def answer(corpus: Path, results: Path, impl, methods=("forward", "vjp", "loss")) -> None:
    """Run ``impl`` on every case of ``corpus`` and write its answers as results/<id>/<method>.<output>.npy."""
    for case_id in (corpus / "cases.txt").read_text().split():
        case = json.loads((corpus / case_id / "case.json").read_text())
        out = results / case_id
        out.mkdir(parents=True)
        for method in methods:
            arrays = {n: np.load(corpus / case_id / f"{n}.npy") for n in case["inputs"][method]}
            lengths = {"lengths": arrays.pop("lengths")} if "lengths" in arrays else {}
            x = arrays.pop("x")
            state0 = {n: arrays.pop(n) for n in list(arrays) if n in ("h0", "c0")}
            if method == "forward":
                got = impl.forward(x, state0, arrays, **lengths)
            elif method == "vjp":
                cot = {n[4:]: arrays.pop(n) for n in list(arrays) if n.startswith("cot_")}
                got = impl.vjp(x, state0, arrays, cot, **lengths)
            else:
                targets = arrays.pop("targets")
                value, got = impl.loss(x, state0, arrays, targets, **lengths)
                got = {"value": np.float64(value), **got}
            for name in case["outputs"][method]:
                # results in the case's dtype, as docs/corpus.md asks (the reference computes some in float64)
                np.save(out / f"{method}.{name}.npy", np.asarray(got[name], dtype=case["dtype"]))


@pytest.fixture(scope="module")
def lstm_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "lstm", "lstm", examples=EXAMPLES, seed=SEED)


@pytest.fixture(scope="module")
def lstm_results(lstm_corpus, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results") / "lstm"
    answer(lstm_corpus, results, LSTM())
    return results


def _copy(results: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(results, tmp_path / "results"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _row(out: str, clause: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(clause + " "))


def test_same_seed_writes_the_same_bytes_and_another_seed_other_bytes(capsys, lstm_corpus, tmp_path, monkeypatch):
    # the expectations are computed afresh, not taken from the cache the fixture filled
    monkeypatch.setattr(expected_module, "_RECENT", OrderedDict())
    code, out, err = rnnspec(capsys, "cases", "--cell", "lstm", "--examples", str(EXAMPLES), "--seed", str(SEED),
                             "--out", str(tmp_path / "again"), "--quiet")
    assert code == 0, err
    again = _files(tmp_path / "again")
    assert again == _files(lstm_corpus)
    assert len(again) > EXAMPLES * 30  # inputs, expected outputs and case.json of every case
    code, _, err = rnnspec(capsys, "cases", "--cell", "lstm", "--examples", str(EXAMPLES), "--seed", "1",
                           "--out", str(tmp_path / "other"), "--quiet")
    assert code == 0, err
    other = _files(tmp_path / "other")
    # Hypothesis draws the smallest case first whatever the seed (0000 and 0001, one per dtype); the others differ
    differing = [k for k in again if k.endswith("case.json") and other.get(k) != again[k]]
    assert len(differing) >= EXAMPLES - 2, differing
    assert other["manifest.json"] != again["manifest.json"]


def test_the_corpus_holds_the_cases_check_generates(lstm_corpus):
    manifest = json.loads((lstm_corpus / "manifest.json").read_text())
    cases = generate(EXAMPLES, SEED, ("float32", "float64"), ("tanh",), "lstm")
    assert manifest["cases"] == (lstm_corpus / "cases.txt").read_text().split() and len(cases) == len(manifest["cases"])
    assert manifest["accuracy"] == "accurate" and manifest["ulps"] == 2.0
    for case_id, case in zip(manifest["cases"], cases):
        data = json.loads((lstm_corpus / case_id / "case.json").read_text())
        assert (data["T"], data["B"], data["H"], data["dtype"], data["regime"], data["seed"]) == \
            (case.T, case.B, case.H, case.dtype, case.regime, case.seed)
        for name, array in case.arrays().items():
            stored = np.load(lstm_corpus / case_id / f"{name}.npy")
            assert stored.dtype == array.dtype and stored.tobytes() == array.tobytes(), name
        # found by its line without a JSON parser, as docs/corpus.md promises
        assert f'  "dtype": "{case.dtype}",' in (lstm_corpus / case_id / "case.json").read_text().splitlines()


def test_independent_results_are_conformant(capsys, lstm_corpus, lstm_results):
    code, out, err = rnnspec(capsys, "judge", str(lstm_corpus), str(lstm_results), "--quiet")
    assert code == 0, out + err
    assert out.splitlines()[-1] == "CONFORMANT"
    assert _row(out, "LSTM-VJP-W_F").split()[1] == "passed"
    for clause in ("LSTM-DETERMINISTIC", "LSTM-PURE"):
        assert "not judged" in _row(out, clause)
    assert out.startswith(f"rnnspec judge {lstm_corpus} {lstm_results}, cell lstm")


def _summary(result) -> tuple:
    """A clause's status and its cases by verdict and by undetermined reason."""
    return result.status, dict(result.counts), dict(result.reasons)


def test_judging_the_corpus_agrees_with_a_live_check(lstm_corpus, tmp_path):
    """The same answers, through files and through calls: the same status for every clause files can judge."""
    results = tmp_path / "results"
    answer(lstm_corpus, results, LstmLastStepSkipped())
    from_files = {r.clause.id: _summary(r) for r in judge_corpus(lstm_corpus, results).results}
    live = check(LstmLastStepSkipped(), cell="lstm", examples=EXAMPLES, seed=SEED)
    judged = {r.clause.id: _summary(r) for r in live.results if not r.clause.id.endswith(("DETERMINISTIC", "PURE"))}
    assert {"failed", "passed"} <= {status for status, _, _ in judged.values()}
    assert {k: from_files[k] for k in judged} == judged


def _decisive_case(corpus: Path, key: str) -> tuple[str, float]:
    """A case whose tolerance on ``key`` decides, and that tolerance."""
    for case_id in (corpus / "cases.txt").read_text().split():
        tolerance = json.loads((corpus / case_id / "case.json").read_text())["tolerances"][key]
        if tolerance < 1e-3 and np.load(corpus / case_id / "expected" / f"{key}.npy").size > 1:
            return case_id, tolerance
    raise AssertionError(f"no decisive case for {key}")


def test_one_array_beyond_its_tolerance_fails_that_clause_on_that_case(capsys, lstm_corpus, lstm_results, tmp_path):
    results = _copy(lstm_results, tmp_path)
    case_id, tolerance = _decisive_case(lstm_corpus, "vjp.W_f")
    path = results / case_id / "vjp.W_f.npy"
    good = np.load(path)
    bad = good.copy()
    bad.flat[0] += 20 * tolerance * np.max(np.abs(good))  # normwise relative error 20 x the tolerance
    np.save(path, bad)
    code, out, _ = rnnspec(capsys, "judge", str(lstm_corpus), str(results), "--quiet")
    assert code == 1
    assert out.splitlines()[-1] == "NOT CONFORMANT"
    assert _row(out, "LSTM-VJP-W_F").split()[1] == "failed"
    assert f"case {case_id}: {path}: relative error" in out
    assert _row(out, "LSTM-LOSS-W_F").split()[1] == "passed"  # the other clauses still pass
    np.save(path, good)  # the array as it was: conformant again (the perturbation decided)
    assert rnnspec(capsys, "judge", str(lstm_corpus), str(results), "--quiet")[0] == 0


def test_a_method_without_results_is_not_provided(capsys, lstm_corpus, lstm_results, tmp_path):
    results = _copy(lstm_results, tmp_path)
    for path in results.glob("*/loss.*.npy"):
        path.unlink()
    code, out, _ = rnnspec(capsys, "judge", str(lstm_corpus), str(results), "--quiet")
    assert code == 0
    assert _row(out, "LSTM-LOSS-VALUE").split()[1:3] == ["not", "provided"]
    assert out.splitlines()[-1] == "CONFORMANT (forward and VJP only; LOSS not provided)"
    code, out, _ = rnnspec(capsys, "judge", str(lstm_corpus), str(results), "--quiet", "--require-all")
    assert code == 1 and "NOT CONFORMANT" in out.splitlines()[-1]


def test_a_missing_unreadable_or_misshapen_file_or_answer_fails_its_case(capsys, lstm_corpus, lstm_results, tmp_path):
    results = _copy(lstm_results, tmp_path)
    missing = results / "0001" / "forward.c.npy"
    missing.unlink()
    garbled = results / "0002" / "vjp.b_i.npy"
    garbled.write_bytes(b"not an npy file")
    misshapen = results / "0003" / "loss.V.npy"
    np.save(misshapen, np.load(misshapen)[:, :-1])
    for path in (results / "0005").glob("loss.*.npy"):  # the program wrote no loss answer for this one case
        path.unlink()
    code, out, _ = rnnspec(capsys, "judge", str(lstm_corpus), str(results), "--quiet")
    assert code == 1
    assert _row(out, "LSTM-FWD-C").split()[1] == "error" and f"case 0001: {missing}: no such file" in out
    assert _row(out, "LSTM-VJP-B_I").split()[1] == "error" and f"case 0002: {garbled}: unreadable" in out
    assert _row(out, "LSTM-LOSS-V").split()[1] == "error" and f"case 0003: {misshapen} has shape (" in out
    assert _row(out, "LSTM-LOSS-VALUE").split()[1] == "error"
    assert f"case 0005: no results: {results / '0005'}: no loss.*.npy" in out
    assert _row(out, "LSTM-SHAPE").split()[1] == "failed"
    assert _row(out, "LSTM-FWD-H").split()[1] == "passed"


def test_reports_json_and_junit(capsys, lstm_corpus, lstm_results, tmp_path):
    results = _copy(lstm_results, tmp_path)
    (results / "0000" / "vjp.x.npy").unlink()
    code, _, err = rnnspec(capsys, "judge", str(lstm_corpus), str(results), "--quiet",
                           "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"))
    assert code == 1, err
    report = json.loads((tmp_path / "r.json").read_text())
    statuses = {c["id"]: c["status"] for c in report["clauses"]}
    assert report["verdict"] == "not conformant" and report["cell"] == "lstm" and report["cases"] == EXAMPLES
    assert statuses["LSTM-VJP-X"] == "error" and statuses["LSTM-SHAPE"] == "failed"
    assert statuses["LSTM-DETERMINISTIC"] == statuses["LSTM-PURE"] == "not judged"
    assert report["environment"]["tolerances"] == "the corpus's, for accurate (2 ulps)"
    suite = ET.parse(tmp_path / "r.xml").getroot()
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["LSTM-SHAPE"].find("failure") is not None
    assert cases["LSTM-VJP-X"].find("error") is not None
    assert cases["LSTM-PURE"].find("skipped") is not None  # never a passed test
    assert cases["LSTM-FWD-H"].find("*") is None
    assert int(suite.get("skipped")) == 2 and int(suite.get("failures")) == 1


def test_no_results_at_all_is_inconclusive(capsys, lstm_corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    code, out, _ = rnnspec(capsys, "judge", str(lstm_corpus), str(tmp_path / "empty"), "--quiet")
    assert code == 3
    assert out.splitlines()[-1].startswith("INCONCLUSIVE")


def test_another_accuracy_class_recomputes_the_tolerances(lstm_corpus, lstm_results):
    report = judge_corpus(lstm_corpus, lstm_results, accuracy="fast")
    assert report.conformant
    assert report.environment["tolerances"] == "recomputed for fast (4096 ulps)"
    assert report.accuracy == "float32: fast (4096 ulps), float64: fast (4096 ulps)"


def test_a_corpus_for_another_accuracy_class_says_so_and_widens_the_tolerances(lstm_corpus, tmp_path):
    fast = write_corpus(tmp_path / "fast", "lstm", examples=2, seed=SEED, accuracy="fast")
    manifest = json.loads((fast / "manifest.json").read_text())
    assert (manifest["accuracy"], manifest["ulps"], manifest["accuracy_label"]) == ("fast", 4096.0, "fast (4096 ulps)")
    assert "--accuracy fast" in manifest["command"]
    for case_id in manifest["cases"]:  # the same cases as the default corpus's first two
        wide = json.loads((fast / case_id / "case.json").read_text())
        narrow = json.loads((lstm_corpus / case_id / "case.json").read_text())
        assert wide["seed"] == narrow["seed"]
        assert all(wide["tolerances"][k] >= narrow["tolerances"][k] for k in narrow["tolerances"])
        assert any(wide["tolerances"][k] > 10 * narrow["tolerances"][k] for k in narrow["tolerances"])


def test_a_variant_corpus(capsys, tmp_path):
    code, out, err = rnnspec(capsys, "cases", "--cell", "elman", "--variant", "lengths=zero", "--examples", "4",
                             "--out", str(tmp_path / "corpus"), "--quiet")
    assert code == 0, err
    case = json.loads((tmp_path / "corpus" / "0000" / "case.json").read_text())
    assert case["variant"] == "lengths=zero" and "lengths" in case["inputs"]["forward"]
    assert case["outputs"]["forward"] == ["h", "h_n"]
    answer(tmp_path / "corpus", tmp_path / "results", Reference("elman", lengths="zero"))
    code, out, _ = rnnspec(capsys, "judge", str(tmp_path / "corpus"), str(tmp_path / "results"), "--quiet")
    assert code == 0, out
    assert ", variant lengths=zero: seed 0, 4 cases" in out.splitlines()[0]
    assert _row(out, "ELMAN-LEN-ZERO-FWD-H_N").split()[1] == "passed"


@pytest.mark.parametrize("cell", catalogue.NAMES)
def test_every_cell_round_trips(cell, tmp_path):
    """Each cell's names (b_hn, a projection's P, peepholes) make files a reader finds, judged conformant."""
    corpus = write_corpus(tmp_path / "corpus", cell, examples=2, seed=1)
    answer(corpus, tmp_path / "results", mutants.Elman() if cell == "elman" else MODELS[cell]())
    report = judge_corpus(corpus, tmp_path / "results")
    assert report.verdict == "conformant", [(r.clause.id, r.message) for r in report.results if r.status != "passed"]
    assert {r.status for r in report.results} == {"passed", "not judged"}


@pytest.mark.parametrize("args, message", [
    (["judge", "{tmp}/nothing", "{tmp}"], "CORPUS {tmp}/nothing: no such folder"),
    (["judge", "{corpus}", "{tmp}/file"], "RESULTS {tmp}/file: is a file; expected the folder"),
    (["judge", "{corpus}", "{tmp}/nothing"], "RESULTS {tmp}/nothing: no such folder"),
    (["judge", "{tmp}/old", "{tmp}"], "CORPUS {tmp}/old: format 'rnnspec.corpus/0'; this rnnspec"),
    (["judge", "{tmp}", "{tmp}"], "CORPUS {tmp}: no manifest.json"),
    (["judge", "{corpus}", "{tmp}", "--accuracy", "sloppy"], "--accuracy: expected one of ['accurate', 'fast']"),
    (["cases", "--cell", "lstm", "--out", "{tmp}"], "--out {tmp}: is not empty"),
    (["cases", "--cell", "lstm", "--out", "{tmp}/file"], "--out {tmp}/file: is a file"),
    (["cases", "--cell", "lstm", "--out", "{tmp}/a/b"], "--out {tmp}/a/b: folder {tmp}/a does not exist"),
    (["cases", "--cell", "gru", "--out", "{tmp}/new"], "--cell: "),
    (["cases", "--cell", "lstm", "--dtype", "float16", "--out", "{tmp}/new"],
     "--dtype: expected comma-separated names from ('float32', 'float64'), got 'float16'"),
    (["cases", "--cell", "lstm", "--activations", "relu", "--out", "{tmp}/new"], "--activations: cell 'lstm'"),
    (["cases", "--cell", "lstm", "--variant", "layers=0", "--out", "{tmp}/new"], "--variant: "),
    (["cases", "--cell", "lstm", "--accuracy", "-1", "--out", "{tmp}/new"], "--accuracy: "),
])
def test_usage_errors_are_named(capsys, lstm_corpus, tmp_path, args, message):
    (tmp_path / "file").write_text("")
    (tmp_path / "old").mkdir()
    manifest = json.loads((lstm_corpus / "manifest.json").read_text())
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({**manifest, "format": "rnnspec.corpus/0"}))
    fill = lambda text: text.format(tmp=tmp_path, corpus=lstm_corpus)
    code, out, err = rnnspec(capsys, *map(fill, args))
    assert code == 2
    assert fill(message) in err
    assert not (tmp_path / "new").exists()
