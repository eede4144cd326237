"""Judging one clause on one case: the implementation's outcomes against the spec's expectation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rnnspec.spec.cases import Case
from rnnspec.spec.clauses import Clause
from rnnspec.spec.declared import METHODS
from rnnspec.spec.expected import Expected, Key, expected_shapes
from rnnspec.spec.tolerance import DECISIVE_LIMIT, relative_error
from rnnspec.spec.worker import Outcome

Outcomes = Mapping[str, tuple[Outcome, Outcome | None]]


@dataclass
class Verdict:
    status: str  # "passed", "failed", "error", "timeout", "not provided", "skipped", "undetermined"
    message: str = ""
    error: float | None = None
    tolerance: float | None = None
    #: why an undetermined case decides nothing: "ill-conditioned", "kink" or "overflow"
    reason: str = ""

    @property
    def ratio(self) -> float:
        if self.error is None or self.tolerance is None:
            return -1.0
        return self.error / self.tolerance if self.tolerance > 0 else float("inf")


def extract(key: Key, value: object) -> tuple[object, str]:
    """The output ``key`` from a method's return value, or a reason why it is not there."""
    method, name = key
    if method == "loss":
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return None, f"loss() returned {type(value).__name__}, expected a (loss, grads) pair"
        if name == "value":
            return value[0], ""
        value = value[1]
    if not isinstance(value, Mapping):
        return None, f"{method}() returned {type(value).__name__} where a dict was expected"
    if name not in value:
        return None, f"{method}() result lacks key {name!r} (has {sorted(map(str, value))})"
    return value[name], ""


def _as_array(key: Key, raw: object, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    method, name = key
    label = f"{method}()[{name!r}]" if name != "value" else "the loss value"
    if name == "value":
        if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, float, np.integer, np.floating, np.ndarray)):
            return None, f"{label} is {type(raw).__name__}, expected a real scalar"
        raw = np.asarray(raw)
    if not isinstance(raw, np.ndarray):
        return None, f"{label} is {type(raw).__name__}, expected numpy.ndarray"
    if raw.shape != shape:
        return None, f"{label} has shape {raw.shape}, expected {shape}"
    if raw.dtype.kind not in "fiu":
        return None, f"{label} has dtype {raw.dtype}, expected a real float dtype"
    return raw, ""


def _first(outcomes: Outcomes, method: str) -> tuple[Outcome | None, Verdict | None]:
    first = outcomes[method][0]
    if first.status == "missing":
        return None, Verdict("not provided", first.message)
    if first.status == "skipped":
        return None, Verdict("skipped", first.message)
    if first.status == "timeout":  # slow, perhaps only on a loaded machine: never read as a wrong value
        return None, Verdict("timeout", f"timeout: {first.message}")
    if first.status != "ok":
        return None, Verdict("error", f"{first.status}: {first.message}")
    return first, None


def distinct_digits(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with the fewest significant digits (at least 9) that tell them apart: a float64 value that
    differs in its 10th digit must not print as the same number."""
    for digits in range(9, 18):
        shown = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if shown[0] != shown[1]:
            return shown
    return repr(float(a)), repr(float(b))


def where(got: np.ndarray, ref: np.ndarray) -> str:
    """The entry of largest deviation: its index, the spec's value, the implementation's and their difference."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not ref.size:
        return ""
    with np.errstate(invalid="ignore", over="ignore"):
        deviation = np.abs(got - ref)
    deviation = np.where(np.isnan(deviation), np.inf, deviation)
    index = np.unravel_index(int(np.argmax(deviation)), ref.shape)
    at = f"[{', '.join(map(str, index))}]" if index else "the value"
    want, have = distinct_digits(ref[index], got[index])
    return f"largest deviation at {at}: expected {want}, got {have} (difference {deviation[index]:.3g})"


def judge(clause: Clause, case: Case, outcomes: Outcomes, spec: Expected) -> Verdict:
    shapes = expected_shapes(case)
    if clause.kind == "value":
        return _judge_value(clause, case, outcomes, spec, shapes)
    if clause.kind == "finite" and spec.overflow and any(outcomes[m][0].status == "ok" for m in METHODS):
        return Verdict("undetermined", spec.overflow, reason="overflow")
    return _judge_general(clause, case, outcomes, spec, shapes)


def _judge_value(clause: Clause, case: Case, outcomes: Outcomes, spec: Expected, shapes) -> Verdict:
    """One output against the oracle; a case whose tolerance could pass a wrong output decides nothing."""
    first, verdict = _first(outcomes, clause.method)
    if verdict:
        return verdict
    raw, problem = extract(clause.key, first.value)
    array, problem = (None, problem) if problem else _as_array(clause.key, raw, shapes[clause.key])
    if problem:
        return Verdict("error", problem)
    if spec.undetermined and clause.method != "forward" and clause.key != ("loss", "value"):
        return Verdict("undetermined", spec.undetermined, reason="kink")
    reference = spec.values[clause.key]
    err = relative_error(array, reference, case.dtype)
    tol = spec.tolerances[clause.key]
    if err > tol and spec.overflow and not np.all(np.isfinite(np.asarray(array, dtype=np.float64))):
        # near the dtype's overflow a correct implementation may overflow (FINITE decides nothing here either)
        return Verdict("undetermined", f"{spec.overflow}; the output has non-finite entries", err, tol,
                       reason="overflow")
    if err > tol:
        return Verdict("failed", f"relative error {err:.3g} > tolerance {tol:.3g}; {where(array, reference)}",
                       err, tol)
    if tol >= DECISIVE_LIMIT:
        return Verdict("undetermined", f"ill-conditioned: tolerance {tol:.3g} >= {DECISIVE_LIMIT} (an output "
                       "unrelated to the spec's could pass)", err, tol, reason="ill-conditioned")
    return Verdict("passed", "", err, tol)


def _judge_general(clause, case, outcomes, spec, shapes) -> Verdict:
    problems, provided, errors, timeouts = [], 0, [], []
    for method in METHODS:
        first, verdict = _first(outcomes, method)
        if verdict:
            if verdict.status in ("error", "timeout"):
                (errors if verdict.status == "error" else timeouts).append(f"{method}: {verdict.message}")
            continue
        provided += 1
        if clause.kind == "pure":
            second = outcomes[method][1]
            changed = first.mutated + (second.mutated if second and second.status == "ok" else [])
            if changed:
                problems.append(f"{method}() modified {', '.join(sorted(set(changed)))}")
            continue
        if clause.kind == "deterministic":
            second = outcomes[method][1]
            if second is None or second.status != "ok":
                errors.append(f"{method}: second call {second.status if second else 'not made'}")
                continue
        for key, shape in shapes.items():
            if key[0] != method:
                continue
            raw, problem = extract(key, first.value)
            array, problem = (None, problem) if problem else _as_array(key, raw, shape)
            if clause.kind == "shape":
                if problem:
                    problems.append(problem)
                elif key[1] != "value" and array.dtype != np.dtype(case.dtype):
                    problems.append(f"{method}()[{key[1]!r}] has dtype {array.dtype}, expected {case.dtype}")
            elif clause.kind == "finite" and not problem:
                with np.errstate(invalid="ignore"):
                    bad = spec.finite_in(key, case.dtype) & ~np.isfinite(np.asarray(array, dtype=np.float64))
                if np.any(bad):
                    problems.append(f"{method}()[{key[1]!r}] has {int(np.sum(bad))} non-finite entries where the spec "
                                    "is finite")
            elif clause.kind == "deterministic" and not problem:
                raw2, problem2 = extract(key, outcomes[method][1].value)
                array2, problem2 = (None, problem2) if problem2 else _as_array(key, raw2, shape)
                if problem2 or array2.tobytes() != array.tobytes():
                    problems.append(f"{method}()[{key[1]!r}] differs between two identical calls")
    if problems:
        return Verdict("failed", "; ".join(problems))
    if errors:
        return Verdict("error", "; ".join(errors))
    if timeouts:
        return Verdict("timeout", "; ".join(timeouts))
    if not provided:
        return Verdict("not provided", "no method of the contract answered")
    return Verdict("passed")
