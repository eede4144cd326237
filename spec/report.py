"""Reports of a run: the terminal table, JSON and JUnit XML (both written atomically)."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from rnnspec.spec.runner import Report


def _atomic_write(path: str, text: str) -> None:
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, target)


def table(report: Report) -> str:
    rows = [f"rnnspec check {report.target}: seed {report.seed}, {report.cases} cases, {report.seconds:.1f} s", "",
            f"{'clause':22s} {'status':13s} {'worst error':>12s} {'tolerance':>10s} {'examples':>8s} "
            f"{'undetermined':>12s}"]
    for r in report.results:
        worst = r.worst
        err = f"{worst.error:.2e}" if worst and worst.error is not None else "-"
        tol = f"{worst.tolerance:.2e}" if worst and worst.tolerance is not None else "-"
        rows.append(f"{r.clause.id:22s} {r.status:13s} {err:>12s} {tol:>10s} {r.examples:8d} {r.undetermined:12d}")
    problems = [r for r in report.results if r.status in ("failed", "error")]
    for r in problems:
        rows += ["", f"{r.clause.id} {r.status}: {r.clause.statement}"]
        if r.worst and r.worst.message:
            rows.append("  " + r.worst.message.replace("\n", "\n  "))
        if r.counterexample:
            ce = r.counterexample
            rows.append(f"  smallest case found: {json.dumps(ce['case'])}")
            if ce["message"]:
                rows.append(f"  there: {ce['message'].splitlines()[0]}")
            rows.append(f"  reproduce: {ce['reproduce']}")
    if any(r.undetermined for r in report.results):
        rows += ["", "undetermined: cases not judged by a clause because the tested dtype cannot decide them (a "
                     "ReLU pre-activation within rounding reach of 0; values near the overflow threshold)"]
    rows += ["", "CONFORMANT" if report.conformant else "NOT CONFORMANT"]
    return "\n".join(rows)


def write_json(report: Report, path: str) -> None:
    _atomic_write(path, json.dumps(report.to_json(), indent=2, default=float) + "\n")


def write_junit(report: Report, path: str) -> None:
    failures = sum(r.status == "failed" for r in report.results)
    errors = sum(r.status == "error" for r in report.results)
    skipped = sum(r.status == "not provided" for r in report.results)
    suite = ET.Element("testsuite", name=f"rnnspec {report.target}", tests=str(len(report.results)),
                       failures=str(failures), errors=str(errors), skipped=str(skipped),
                       time=f"{report.seconds:.3f}")
    for r in report.results:
        case = ET.SubElement(suite, "testcase", classname=f"rnnspec.{report.target}", name=r.clause.id)
        message = r.worst.message if r.worst else ""
        detail = json.dumps(r.counterexample, indent=2, default=float) if r.counterexample else message
        if r.status == "failed":
            ET.SubElement(case, "failure", message=message.splitlines()[0] if message else "").text = detail
        elif r.status == "error":
            ET.SubElement(case, "error", message=message.splitlines()[0] if message else "").text = detail
        elif r.status == "not provided":
            ET.SubElement(case, "skipped", message="not provided")
    _atomic_write(path, ET.tostring(suite, encoding="unicode") + "\n")
