"""A case as a file a user can step through: its inputs, the spec's expected outputs and the target's, as ``.npz``.

``rnnspec check --save-cases DIR`` writes one file per failure block (the smallest case found);
:func:`read_case` reads it back; :func:`case_inputs` gives the inputs and expected outputs of any case (the JSON a
report prints) without running a target. Keys, all NumPy arrays:

- ``case``: the case's JSON (a 0-d string array);
- the inputs under the names of :meth:`rnnspec.spec.cases.Case.arrays`: ``x``, the initial states (``h0``,
  ``c0``), every parameter (``U``, ``W_f``, ...), the head's ``V`` and ``c``, ``targets``, a cotangent
  ``cot_<output>`` per forward output (what ``vjp`` receives), and ``lengths`` for a variant with lengths;
- ``expected.<method>.<output>``: the float64 oracle's value (``expected.loss.value``, ``expected.vjp.W``);
- ``got.<method>.<output>``: the target's, where it returned one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from rnnspec.spec.cases import Case
from rnnspec.spec.expected import Expected, expected
from rnnspec.spec.judge import extract


def _case(case: Case | str | dict) -> Case:
    if isinstance(case, Case):
        return case
    return Case(**(json.loads(case) if isinstance(case, str) else case))


def case_inputs(case: Case | str | dict) -> dict[str, np.ndarray]:
    """The inputs and the oracle's expected outputs of ``case`` (a Case, or its JSON as a report prints it)."""
    case = _case(case)
    arrays = dict(case.arrays())
    arrays.update({f"expected.{m}.{k}": np.asarray(v) for (m, k), v in expected(case).values.items()})
    arrays["case"] = np.array(case.describe())
    return arrays


def write_case(folder: str, case: Case, outcomes, spec: Expected) -> str:
    """``<folder>/<case digest>.npz`` with the case's inputs, ``spec``'s values and what ``outcomes`` returned."""
    arrays = dict(case.arrays())
    arrays.update({f"expected.{m}.{k}": np.asarray(v) for (m, k), v in spec.values.items()})
    for method, key in spec.values:
        first = outcomes[method][0]
        if first.status != "ok":
            continue
        raw, problem = extract((method, key), first.value)
        if problem:
            continue
        try:
            got = np.asarray(raw)
        except Exception:  # whatever the target returned that NumPy cannot hold is left out
            continue
        if got.dtype.kind in "biufc":  # numbers only: the file is read back without pickle
            arrays[f"got.{method}.{key}"] = got
    arrays["case"] = np.array(case.describe())
    digest = hashlib.sha1(case.describe().encode()).hexdigest()[:12]
    path = Path(folder) / f"{case.cell}-{case.dtype}-{digest}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return str(path)


def read_case(path: str) -> dict:
    """The arrays of a saved case (``case`` as a dict)."""
    with np.load(path, allow_pickle=False) as saved:
        out = {k: saved[k] for k in saved.files}
    out["case"] = json.loads(str(out["case"]))
    return out
