"""Reports of a run: the terminal table, JSON and JUnit XML (both written atomically)."""

from __future__ import annotations

import json
import os
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from rnnspec.spec.runner import Report


def _atomic_write(path: str, text: str) -> None:
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


#: a failure block gives --clause flags for at most this many clauses; more, and its command reruns every clause
#: on the case (a shorter command that fails the same way)
MAX_CLAUSE_FLAGS = 3


def _problem_blocks(report: Report, problems: list) -> list[str]:
    """One block per root cause: clauses that fail the same way on the same smallest case share it."""
    from rnnspec.spec.defects import known

    groups: dict[tuple, list] = {}
    for r in problems:
        case = (r.counterexample or {}).get("case")
        key = (r.status, json.dumps(case, sort_keys=True) if case else r.clause.id)
        groups.setdefault(key, []).append(r)
    rows = []
    for (status, _), members in groups.items():
        ids = [m.clause.id for m in members]
        rows += ["", f"{', '.join(ids)} {status}:"]
        messages = {m.message for m in members}
        for m in members:
            rows.append(f"  {m.clause.id}: {m.clause.statement}")
            if len(messages) > 1 and m.message:
                rows.append("    " + m.message.replace("\n", "\n    "))
        if len(messages) == 1 and members[0].message:
            rows.append("  " + members[0].message.replace("\n", "\n  "))
        ce = members[0].counterexample
        if ce:
            dtype = ce["case"].get("dtype", "")
            for defect in known(report.target, dtype, report.cell, report.variant):
                rows.append(f"  known defect of {report.target} in {dtype}: {defect.summary} (COMPATIBILITY.md has "
                            "the reproducer)")
            clauses = "".join(f" --clause {i}" for i in ids) if len(ids) <= MAX_CLAUSE_FLAGS else ""
            case = json.dumps(ce["case"], separators=(",", ":"))
            rows.append(f"  smallest case found: {json.dumps(ce['case'])}")
            rows.append(f"  reproduce: rnnspec check {shlex.quote(report.target)}{clauses} --case '{case}'")
            if ce.get("saved"):
                rows.append(f"  saved: {ce['saved']} (inputs, expected, got: rnnspec.spec.casefile.read_case)")
    return rows


def _verdict_line(report: Report) -> str:
    """The verdict, with what it covers: the methods not provided, and why a run is inconclusive."""
    missing = [m.upper() for m in report.unprovided_methods]
    provided = [m if m == "forward" else m.upper() for m in ("forward", "vjp", "loss") if m.upper() not in missing]
    scope = f" ({' and '.join(provided)} only; {', '.join(missing)} not provided)" if missing else ""
    verdict = report.verdict
    if verdict == "conformant":
        return f"CONFORMANT{scope}"
    if verdict == "not conformant":
        statuses = {r.status for r in report.results}
        if not statuses & {"failed", "error"}:
            return (f"NOT CONFORMANT{scope}: --require-all asks for every method of the contract, and "
                    f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not provided")
        return f"NOT CONFORMANT{scope}"
    timed_out = [r.clause.id for r in report.results if r.status == "timeout"]
    if timed_out:
        return (f"INCONCLUSIVE{scope}: {len(timed_out)} clauses could not be judged because calls timed out, even "
                "retried (slow is not wrong: see the timeout above; rerun with a longer --timeout, or when the "
                "machine is quieter)")
    return (f"INCONCLUSIVE{scope}: nothing failed, but a clause had too few decisive cases (or none passed); "
            "run more --examples")


def table(report: Report) -> str:
    cell = "" if report.cell == "elman" else f", cell {report.cell}"
    cell += f", variant {report.variant}" if report.variant else ""
    width = max([22] + [len(r.clause.id) for r in report.results])
    rows = [f"rnnspec check {report.target}{cell}: seed {report.seed}, {_plural(report.cases, 'case')}, "
            f"{report.seconds:.1f} s; elementwise functions assumed accurate to: {report.accuracy}", "",
            f"{'clause':{width}s} {'status':13s} {'decisive':>9s} {'undetermined':>12s} {'worst ratio':>11s} "
            f"{'error':>9s} {'tolerance':>9s}  worst case"]
    for r in report.results:
        worst = r.worst
        measured = worst is not None and worst.error is not None
        ratio = f"{worst.ratio:.3g}" if measured else "-"
        err = f"{worst.error:.2e}" if measured else "-"
        tol = f"{worst.tolerance:.2e}" if measured else "-"
        # the activation says most of an Elman case; the regime (which gate is saturated) of a gated one
        how = (r.worst_case.activation if r.worst_case.cell == "elman" else r.worst_case.regime) if r.worst_case else ""
        where = f"{r.worst_case.dtype} {how}" if measured and r.worst_case else ""
        rows.append(f"{r.clause.id:{width}s} {r.status:13s} {f'{r.decisive}/{r.examples}':>9s} {r.undetermined:12d} "
                    f"{ratio:>11s} {err:>9s} {tol:>9s}  {where}")
    rows += ["", "decisive: cases that could have failed the clause, of those judged. worst ratio: the largest "
                 "error / tolerance of any case, with that case's error, tolerance, dtype and activation (regime for a "
                 "gated cell)."]
    problems = [r for r in report.results if r.status in ("failed", "error")]
    rows += _problem_blocks(report, problems)
    timeouts = {r.message for r in report.results if r.status == "timeout"}
    for message in timeouts:
        ids = [r.clause.id for r in report.results if r.status == "timeout" and r.message == message]
        rows += ["", f"{', '.join(ids)} timeout (not judged):", "  " + message]
    unsure = [r for r in report.results if r.status == "undetermined"]
    for r in unsure:
        rows += ["", f"{r.clause.id} undetermined: {r.message}"]
    if any(r.undetermined for r in report.results):
        rows += ["", "undetermined cases decide nothing: the tested dtype cannot (a ReLU pre-activation within "
                     "rounding reach of 0; values near overflow), or the case is so ill-conditioned that its "
                     "tolerance would pass an output unrelated to the spec's"]
    if problems and report.rerun:
        rows += ["", f"rerun the whole run: {report.rerun}"]
    rows += ["", _verdict_line(report)]
    return "\n".join(rows)


def write_json(report: Report, path: str) -> None:
    _atomic_write(path, json.dumps(report.to_json(), indent=2, default=float) + "\n")


def write_junit(report: Report, path: str) -> None:
    failures = sum(r.status == "failed" for r in report.results)
    errors = sum(r.status in ("error", "timeout") for r in report.results)
    # "not judged": a clause that needs a live call, in a report judged from a corpus's result files
    unjudged = ("not provided", "undetermined", "not judged")
    skipped = sum(r.status in unjudged for r in report.results)
    suite = ET.Element("testsuite", name=f"rnnspec {report.target}", tests=str(len(report.results)),
                       failures=str(failures), errors=str(errors), skipped=str(skipped),
                       time=f"{report.seconds:.3f}")
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=f"rnnspec.{report.target}", name=r.clause.id)
        message = r.message
        detail = json.dumps(r.counterexample, indent=2, default=float) if r.counterexample else message
        if r.status == "failed":
            ET.SubElement(case, "failure", message=message.splitlines()[0] if message else "").text = detail
        elif r.status in ("error", "timeout"):
            ET.SubElement(case, "error", message=message.splitlines()[0] if message else "").text = detail
        elif r.status in unjudged:
            ET.SubElement(case, "skipped", message=f"{r.status}: {message}")
    _atomic_write(path, ET.tostring(suite, encoding="unicode") + "\n")
