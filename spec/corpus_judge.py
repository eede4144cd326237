"""Judging the results a program wrote beside a corpus, with the clauses, report and verdicts of ``rnnspec check``.

Each case's result files become the outcomes a live call would have given (a method's dict of arrays; the loss's
``(value, grads)``), and :func:`rnnspec.spec.judge.judge` judges them against the corpus's expectations, so a
program's answers get the same verdicts here as through a live check. Where files stand in for calls:

- a method with no result file in any case is "not provided" (as a target without ``vjp``);
- a method with no file in one case is an error on that case (as a call that raised);
- a missing, unreadable or wrong-shape file is its output's error on that case and a SHAPE failure, the message
  naming the file;
- the clauses that need a live call (:data:`LIVE`) are "not judged", never passed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnspec.spec import corpus as files
from rnnspec.spec import tolerance as tol
from rnnspec.spec.clauses import clauses as cell_clauses
from rnnspec.spec.contract import Key, contract
from rnnspec.spec.declared import METHODS, UsageError
from rnnspec.spec.judge import Verdict, judge
from rnnspec.spec.results import ClauseResult, Report
from rnnspec.spec.worker import Outcome

#: clause kinds judged from the calls themselves, not from their answers: why files cannot judge them
LIVE = {"deterministic": "needs the same call made twice in one process; files hold one answer",
        "pure": "needs the call's arguments before and after it; files hold neither"}

#: the outcome of a method with no file in one case while other cases have its files: an error there, as a call
#: that raised (judge() reports an outcome it does not know as "error: <status>: <message>")
NO_RESULTS = "no results"


@dataclass
class NotJudged(ClauseResult):
    """A clause a corpus cannot judge: never passed, never failed; JUnit reports it skipped."""

    why: str = ""

    @property
    def status(self) -> str:
        return "not judged"

    @property
    def message(self) -> str:
        return f"not judged from files: {self.why} (rnnspec check exec:... judges it)"


def check_results(results: str | os.PathLike) -> Path:
    """The results folder, or a UsageError naming it."""
    path = Path(results)
    if not path.exists():
        raise UsageError(f"RESULTS {results}: no such folder; expected the folder your program wrote its results "
                         "into (<case id>/<method>.<output>.npy)")
    if not path.is_dir():
        raise UsageError(f"RESULTS {results}: is a file; expected the folder your program wrote its results into")
    return path


def provided_methods(results: Path, ids: list[str]) -> set[str]:
    """The methods with at least one result file in any case's folder."""
    found = set()
    for case_id in ids:
        folder = results / case_id
        if folder.is_dir():
            found.update(p.name.split(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".npy"))
    return found & set(METHODS)


def _outcomes(results: Path, case_id: str, outputs: dict[str, tuple[str, ...]], provided: set[str]):
    """Each method's (Outcome, None) from the case's files, and a message per output whose file is unusable."""
    out, problems = {}, {}
    for method in METHODS:
        if method not in provided:
            out[method] = (Outcome("missing", message=f"no {method}.*.npy result in any case folder of {results}"),
                           None)
            continue
        paths = {name: results / case_id / files.file_name((method, name)) for name in outputs[method]}
        if not any(p.exists() for p in paths.values()):
            out[method] = (Outcome(NO_RESULTS, message=f"{results / case_id}: no {method}.*.npy (the program wrote "
                                   f"no {method} answer for this case)"), None)
            continue
        answer = {}
        for name, path in paths.items():
            try:
                answer[name] = files.load_array(path)
            except FileNotFoundError:
                problems[(method, name)] = f"{path}: no such file"
            except (OSError, ValueError) as exc:
                problems[(method, name)] = f"{path}: unreadable as .npy ({exc})"
        if method == "loss":
            # a missing loss value stays None: the judge says it is not a real scalar, the message names the file
            answer = (answer.pop("value", None), answer)
        out[method] = (Outcome("ok", answer), None)
    return out, problems


def _label(key: Key) -> str:
    """How :mod:`rnnspec.spec.judge` names an output of a Python call in its messages."""
    return "the loss value" if key == ("loss", "value") else f"{key[0]}()[{key[1]!r}]"


def _named(verdict: Verdict, case_id: str, key: Key | None, results: Path, problems: dict[Key, str],
           keys: tuple[Key, ...]) -> Verdict:
    """The verdict with its message naming the case and the files (not the Python call's outputs) involved."""
    if not verdict.message or verdict.status == "not provided":
        return verdict
    text = verdict.message
    for each in keys:
        text = text.replace(_label(each), str(results / case_id / files.file_name(each)))
    if key in problems:
        text = problems[key]
    elif key is not None and not text.startswith(f"{NO_RESULTS}:") and str(results / case_id) not in text:
        text = f"{results / case_id / files.file_name(key)}: {text}"
    elif key is None and problems:
        text += f" ({'; '.join(problems.values())})"
    return Verdict(verdict.status, f"case {case_id}: {text}", verdict.error, verdict.tolerance, verdict.reason)


def judge_corpus(corpus: str | os.PathLike, results: str | os.PathLike, *, accuracy: str | float | None = None,
                 require_all: bool = False, progress=None) -> Report:
    """Judge every clause of the corpus's cell and variant on every case from the files under ``results``.

    ``accuracy``: the accuracy class to judge under; by default the corpus's. Another class than the corpus's
    recomputes each case's expectation from its inputs with the oracle (as ``rnnspec check`` would for a target
    declaring it), since the tolerances depend on it.
    """
    start = time.monotonic()
    manifest = files.read_manifest(corpus)
    results = check_results(results)
    ulps = float(manifest["ulps"])
    label = manifest.get("accuracy_label") or tol.describe_accuracy(manifest["accuracy"])
    recompute = False
    if accuracy is not None:
        accuracy = files.parse_accuracy(accuracy)
        recompute = tol.accuracy_ulps(accuracy) != ulps
        ulps, label = tol.accuracy_ulps(accuracy), tol.describe_accuracy(accuracy)
    cell, variant, ids = manifest["cell"], manifest["variant"], list(manifest["cases"])
    c = contract(cell, variant)
    outputs = {m: files.method_outputs(c, m) for m in METHODS}
    keys = tuple((m, k) for m in METHODS for k in outputs[m])
    selected = cell_clauses(cell, variant)
    report_results = {cl.id: (NotJudged(cl, why=LIVE[cl.kind]) if cl.kind in LIVE else ClauseResult(cl))
                      for cl in selected}
    provided = provided_methods(results, ids)
    dtypes = []
    for n, case_id in enumerate(ids, 1):
        case, data = files.read_case(corpus, case_id)
        if progress:
            progress(n, len(ids), case)
        dtypes.append(case.dtype)
        if recompute:
            from rnnspec.spec.expected import compute_expected

            spec = compute_expected(case, files.read_inputs(corpus, case_id, case), ulps)
        else:
            spec = files.read_expected(corpus, case_id, case, data)
        outcomes, problems = _outcomes(results, case_id, outputs, provided)
        for clause in selected:
            if clause.kind in LIVE:
                continue
            verdict = judge(clause, case, outcomes, spec)
            report_results[clause.id].add(case, _named(verdict, case_id, clause.key, results, problems, keys))
    checked = tuple(dict.fromkeys(dtypes))
    environment = {**_environment(), "corpus": str(corpus), "corpus_format": manifest["format"],
                   "corpus_rnnspec": manifest.get("rnnspec", "unknown"),
                   "corpus_command": manifest.get("command", ""),
                   "tolerances": f"recomputed for {label}" if recompute else f"the corpus's, for {label}"}
    return Report(str(results), int(manifest["seed"]), list(report_results.values()), len(ids),
                  time.monotonic() - start, environment, ", ".join(f"{d}: {label}" for d in checked), cell, variant,
                  f"rnnspec judge {corpus} {results}", require_all)


def _environment() -> dict:
    import platform

    return {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "rnnspec": files.rnnspec_version()}


def table(report: Report, corpus: str) -> str:
    """The report as ``rnnspec check`` prints it, titled by the judge's command, with what was not judged."""
    from rnnspec.spec import report as reports

    rows = reports.table(report).split("\n")
    rows[0] = rows[0].replace(f"rnnspec check {report.target}", f"rnnspec judge {corpus} {report.target}", 1)
    unjudged = [r for r in report.results if r.status == "not judged"]
    notes = ["", f"{', '.join(r.clause.id for r in unjudged)} not judged: they need a live call (determinism: the "
             "same call twice; purity: the arguments before and after); `rnnspec check exec:...` judges them"]
    legend = next(n for n, row in enumerate(rows) if row.startswith("decisive:")) + 1  # after the table's legend
    return "\n".join(rows[:legend] + notes * bool(unjudged) + rows[legend:])

