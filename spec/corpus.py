"""The portable case corpus: generated cases, their inputs and the spec's expected outputs as files.

``rnnspec cases`` writes, for one cell and variant, the cases ``rnnspec check`` generates for the same seed,
dtypes, activations and number of examples (:func:`rnnspec.spec.cases.generate`), each with its inputs, the
oracle's values and the tolerance of every output (:func:`rnnspec.spec.expected.expected`, for one accuracy
class), as a JSON manifest, one ``case.json`` per case and ``.npy`` arrays (NumPy's format 1.0, little-endian),
readable from any language. docs/corpus.md is the format; :mod:`rnnspec.spec.corpus_judge` judges what a
program writes beside it. The same arguments and versions (rnnspec, Hypothesis, NumPy: the manifest records
them) write the same bytes on the same platform.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rnnspec.spec import tolerance as tol
from rnnspec.spec.cases import Case, generate
from rnnspec.spec.contract import Contract, Key, contract
from rnnspec.spec.declared import METHODS, UsageError
from rnnspec.spec.expected import Expected, expected, expected_shapes

#: the format this module writes and the judge reads; a new layout or meaning gets a new number
FORMAT = "rnnspec.corpus/1"
MANIFEST = "manifest.json"
CASE_FILE = "case.json"
EXPECTED = "expected"


class CorpusError(UsageError):
    """A corpus folder that cannot be read: missing, of another format, or damaged (exit code 2)."""


def method_inputs(c: Contract, method: str) -> tuple[str, ...]:
    """The arrays ``method`` takes, by file name (without ``.npy``), in the order of the process protocol:
    x, the initial states, the step parameters; vjp adds ``cot_<state>``; loss the head's parameters and
    ``targets``; a variant with lengths adds ``lengths``."""
    names = ("x", *c.state0, *c.step_params)
    if method == "vjp":
        names += tuple("cot_" + k for k in c.states)
    elif method == "loss":
        names += (*c.head_params, "targets")
    return names + (("lengths",) if c.variant.lengths else ())


def method_outputs(c: Contract, method: str) -> tuple[str, ...]:
    """The outputs of ``method`` in the contract (``value`` for the loss itself)."""
    return tuple(name for m, name in c.shapes(1, 1, 1, 1, 2) if m == method)  # the keys, whatever the sizes


def file_name(key: Key) -> str:
    """``forward.h.npy``, ``vjp.U_i.npy``, ``loss.value.npy``: an output's file, expected or result."""
    return f"{key[0]}.{key[1]}.npy"


def case_ids(count: int) -> list[str]:
    """``0000``, ``0001``, ...: zero-padded so that a folder listing is the corpus's order."""
    width = max(4, len(str(count - 1)))
    return [f"{n:0{width}d}" for n in range(count)]


def rnnspec_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rnnspec")
    except PackageNotFoundError:  # a source tree that was not installed
        return "unknown"


def _generators() -> dict[str, str]:
    """The versions that decide the cases' bytes besides rnnspec's: Hypothesis draws the cases, NumPy the arrays."""
    import hypothesis

    return {"hypothesis": hypothesis.__version__, "numpy": np.__version__}


def _json_number(value: float) -> str:
    """A float as JSON: the shortest text that reads back to the same double; inf as 1e999 (which every JSON
    reader turns into the largest value or infinity), since JSON has no infinity."""
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "1e999" if value > 0 else "-1e999"
    return repr(float(value))


def dumps(value, indent: int = 0) -> str:
    """JSON with one key per line (nested objects too) and lists on one line: a reader without a JSON parser
    finds ``"dtype": "float32"`` by its line. Deterministic: keys in the order given."""
    if isinstance(value, dict) and value:
        pad = "  " * (indent + 1)
        rows = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(rows) + "\n" + "  " * indent + "}"
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dumps(v, indent) for v in value) + "]"
    return json.dumps(value)


def _save(path: Path, array) -> None:
    """``array`` as .npy format 1.0, little-endian, C order (integers as int64)."""
    array = np.asarray(array)
    kind = "<i8" if array.dtype.kind in "iu" else array.dtype.newbyteorder("<")
    with open(path, "wb") as stream:
        # asarray, not ascontiguousarray: that one makes a 0-d array (the loss value) 1-d
        np.lib.format.write_array(stream, np.asarray(array, dtype=kind, order="C"), version=(1, 0))


def load_array(path: Path) -> np.ndarray:
    """A .npy file (never a pickle), in native byte order; OSError or ValueError when it cannot be read."""
    array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise ValueError("not a single .npy array")
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def parse_accuracy(value: str | float, option: str = "--accuracy") -> str | float:
    """An accuracy class by name (``accurate``, ``fast``) or a positive number of ulps; UsageError naming
    ``option`` otherwise."""
    if isinstance(value, str) and value not in tol.ACCURACY_CLASSES:
        try:
            value = float(value)
        except ValueError:
            raise UsageError(f"{option}: expected one of {sorted(tol.ACCURACY_CLASSES)} or a positive number of "
                             f"ulps, got {value!r}") from None
    try:
        tol.accuracy_ulps(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    return value


def _case_json(case_id: str, case: Case, c: Contract, spec: Expected) -> dict:
    fields = dataclasses.asdict(case)
    return {"format": FORMAT, "id": case_id, **fields,
            "inputs": {m: list(method_inputs(c, m)) for m in METHODS},
            "outputs": {m: list(method_outputs(c, m)) for m in METHODS},
            "tolerances": {f"{m}.{k}": float(spec.tolerances[(m, k)]) for m in METHODS for k in method_outputs(c, m)},
            "undetermined": spec.undetermined, "overflow": spec.overflow}


def _write_case(folder: Path, case_id: str, case: Case, ulps: float) -> None:
    c = contract(case.cell, case.variant)
    arrays = case.arrays()
    spec = expected(case, ulps=ulps)
    here = folder / case_id
    (here / EXPECTED).mkdir(parents=True)
    for name in dict.fromkeys(n for m in METHODS for n in method_inputs(c, m)):
        _save(here / f"{name}.npy", arrays[name])
    for m in METHODS:
        for k in method_outputs(c, m):
            _save(here / EXPECTED / file_name((m, k)), np.asarray(spec.values[(m, k)], dtype=np.float64))
    (here / CASE_FILE).write_text(dumps(_case_json(case_id, case, c, spec)) + "\n")


def command(cell: str, variant: str, dtypes: tuple[str, ...], activations: tuple[str, ...] | None, examples: int,
            seed: int, accuracy: str | float) -> str:
    """The ``rnnspec cases`` command that writes this corpus (without ``--out``)."""
    parts = ["rnnspec cases", f"--cell {cell}", *(f"--variant {variant}",) * bool(variant),
             f"--dtype {','.join(dtypes)}", *([f"--activations {','.join(activations)}"] if activations else []),
             f"--examples {examples}", f"--seed {seed}",
             f"--accuracy {accuracy if isinstance(accuracy, str) else format(accuracy, 'g')}"]
    return " ".join(parts)


def write_corpus(out: str | os.PathLike, cell: str, *, variant: str = "", dtypes: tuple[str, ...] | None = None,
                 activations: tuple[str, ...] | None = None, examples: int = 50, seed: int = 0,
                 accuracy: str | float = tol.DEFAULT_ACCURACY,
                 progress: Callable[[int, int, Case], None] | None = None) -> Path:
    """Write the corpus of ``cell`` run as ``variant`` into the new (or empty) folder ``out``.

    The cases are ``generate(examples, seed, dtypes, activations, cell, variant)``: those ``rnnspec check``
    draws for a target declaring ``dtypes`` (default: every dtype of the catalogue, in its order) and
    ``activations`` (an Elman cell's, default tanh, as for a target that declares none; a gated cell's are
    its own). Tolerances are for ``accuracy`` (a class name or a number of ulps). The folder is written
    under a temporary name beside ``out`` and renamed when complete, so a failed run leaves no half corpus.
    """
    from rnnspec import catalogue
    from rnnspec.derivations.registry import cell as registered
    from rnnspec.derivations.variants import parse_variant
    from rnnspec.spec.clauses import clauses

    check_out(str(out))
    out = Path(out)
    dtypes = tuple(dtypes or catalogue.DTYPES)
    own = registered(cell).activations
    if activations is not None and any(a not in own for a in activations):
        raise UsageError(f"--activations: cell {cell!r} has the activations {own}, got {activations}")
    activations_used = tuple(activations or ("tanh",)) if cell == "elman" else own
    variant = parse_variant(variant).name
    accuracy = parse_accuracy(accuracy)
    ulps = tol.accuracy_ulps(accuracy)
    cases = generate(examples, seed, dtypes, activations_used, cell, variant)
    ids = case_ids(len(cases))
    temporary = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        for n, (case_id, case) in enumerate(zip(ids, cases), 1):
            if progress:
                progress(n, len(cases), case)
            _write_case(temporary, case_id, case, ulps)
        manifest = {"format": FORMAT, "rnnspec": rnnspec_version(), "generated_with": _generators(),
                    "command": command(cell, variant, dtypes, activations, examples, seed, accuracy),
                    "cell": cell, "variant": variant, "dtypes": list(dtypes), "activations": list(activations_used),
                    "seed": seed, "examples": examples, "accuracy": accuracy, "ulps": ulps,
                    "accuracy_label": tol.describe_accuracy(accuracy),
                    "clauses": [cl.id for cl in clauses(cell, variant)], "cases": ids}
        (temporary / MANIFEST).write_text(dumps(manifest) + "\n")
        (temporary / "cases.txt").write_text("".join(i + "\n" for i in ids))
        if out.exists():
            out.rmdir()  # checked empty by the caller; a folder that filled meanwhile is an OSError, not lost
        os.rename(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return out


def check_out(out: str) -> None:
    """A UsageError, before any case is generated, unless ``out`` can become a corpus folder."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out}: is a file; expected a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"--out {out}: is not empty; expected a new or empty folder (a corpus is written whole, "
                         "never merged into an older one)")
    if not path.exists() and not path.parent.is_dir():
        raise UsageError(f"--out {out}: folder {path.parent} does not exist")


# -- reading ---------------------------------------------------------------------------------------------------


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of the corpus in ``folder``; CorpusError naming the folder when it is not one this version
    reads."""
    path = Path(folder)
    if not path.exists():
        raise CorpusError(f"CORPUS {folder}: no such folder; expected the folder `rnnspec cases --out` wrote")
    if not path.is_dir():
        raise CorpusError(f"CORPUS {folder}: is a file; expected the folder `rnnspec cases --out` wrote")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise CorpusError(f"CORPUS {folder}: no {MANIFEST}; expected a folder written by `rnnspec cases`") from None
    except (OSError, ValueError) as exc:
        raise CorpusError(f"CORPUS {folder}: {MANIFEST} cannot be read ({exc})") from None
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        raise CorpusError(f"CORPUS {folder}: format {found!r}; this rnnspec ({rnnspec_version()}) reads {FORMAT!r}: "
                          "write the corpus again with this version's `rnnspec cases`"
                          + (f" ({manifest['command']})" if isinstance(manifest, dict) and "command" in manifest
                             else ""))
    missing = [k for k in ("cell", "variant", "seed", "ulps", "accuracy", "cases") if k not in manifest]
    if missing:
        raise CorpusError(f"CORPUS {folder}: {MANIFEST} lacks {missing}")
    return manifest


def read_case(folder: str | os.PathLike, case_id: str) -> tuple[Case, dict]:
    """The case ``case_id`` of the corpus in ``folder``, and its case.json."""
    path = Path(folder) / case_id / CASE_FILE
    try:
        data = json.loads(path.read_text())
        case = Case(**{f.name: data[f.name] for f in dataclasses.fields(Case)})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"CORPUS {folder}: {path} cannot be read as a case ({type(exc).__name__}: {exc}); "
                          "the corpus is damaged: write it again") from None
    return case, data


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def read_expected(folder: str | os.PathLike, case_id: str, case: Case, data: dict) -> Expected:
    """The spec's values and tolerances of a case as the corpus holds them."""
    values, tolerances = {}, {}
    shapes = expected_shapes(case)
    for key, shape in shapes.items():
        path = Path(folder) / case_id / EXPECTED / file_name(key)
        try:
            values[key] = load_array(path)
            tolerances[key] = _number(data["tolerances"][f"{key[0]}.{key[1]}"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorpusError(f"CORPUS {folder}: case {case_id}: {path} or its tolerance cannot be read "
                              f"({type(exc).__name__}: {exc}); the corpus is damaged: write it again") from None
        if values[key].shape != shape:
            raise CorpusError(f"CORPUS {folder}: {path} has shape {values[key].shape}, expected {shape}; the corpus is "
                              "damaged: write it again")
    return Expected(values, tolerances, str(data.get("undetermined", "")), str(data.get("overflow", "")))


def read_inputs(folder: str | os.PathLike, case_id: str, case: Case) -> dict[str, np.ndarray]:
    """Every input array of a case, by name."""
    c = contract(case.cell, case.variant)
    out = {}
    for name in dict.fromkeys(n for m in METHODS for n in method_inputs(c, m)):
        path = Path(folder) / case_id / f"{name}.npy"
        try:
            out[name] = load_array(path)
        except (OSError, ValueError) as exc:
            raise CorpusError(f"CORPUS {folder}: {path} cannot be read ({exc}); the corpus is damaged") from None
    return out
