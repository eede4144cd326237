"""The compatibility matrix: every installed framework target, cell and dtype through the suite, as Markdown.

``rnnspec matrix`` runs the work units of a ``check`` per (target, cell, dtype, seed) (and, with ``--variants``,
per declared variant) in worker processes, so that every framework is imported only where its target runs, and
writes one row per (target, cell, dtype, variant): conformant, the clauses that fail or break (with the
framework's message), or not provided (with the reason: a layer the framework lacks, a dtype its kernels lack).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rnnspec import catalogue
from rnnspec.spec import defects
from rnnspec.spec.conventions import FRAMEWORKS as LAYOUTS
from rnnspec.spec.targets import BUILTIN


@dataclass(frozen=True)
class Row:
    """A framework target of the matrix: its built-in name, the packages it needs, where it runs."""

    target: str
    framework: str
    layout: str  # its key in rnnspec.spec.conventions
    packages: tuple[str, ...]
    where: str
    gpu: bool = False

    def installed(self) -> bool:
        if not all(importlib.util.find_spec(p) is not None for p in self.packages):
            return False
        return not self.gpu or _torch_sees_a_gpu()

    def requirement(self) -> str:
        """What the row needs that may be missing: its packages, and a GPU that torch sees."""
        return ", ".join(self.packages) + (" and a CUDA GPU that torch sees" if self.gpu else "")

    def version(self) -> str:
        return ", ".join(f"{p} {_version(p)}" for p in self.packages)


ROWS = (
    Row("torch", "PyTorch", "torch", ("torch",), "CPU"),
    Row("torch-cuda", "PyTorch", "torch", ("torch",), "CUDA (cuDNN), PyTorch's default allow_tf32=True", gpu=True),
    Row("torch-cuda-no-tf32", "PyTorch", "torch", ("torch",), "CUDA (cuDNN), allow_tf32=False", gpu=True),
    Row("keras-torch", "Keras 3", "keras", ("keras", "torch"), "torch backend, CPU"),
    Row("keras-jax", "Keras 3", "keras", ("keras", "jax"), "jax backend, CPU"),
    Row("keras-tensorflow", "Keras 3", "keras", ("keras", "tensorflow"), "tensorflow backend, CPU"),
    Row("keras-onnx", "Keras 3 → ONNX (model.export, tf2onnx)", "keras",
        ("keras", "tensorflow", "tf2onnx", "onnxruntime"),
        "TensorFlow backend, model.export(format='onnx'), ONNX Runtime CPU"),
    Row("keras-tf2onnx", "Keras 3 → ONNX (tf2onnx.convert.from_keras)", "keras",
        ("keras", "tensorflow", "tf2onnx", "onnxruntime"),
        "TensorFlow backend, tf2onnx.convert.from_keras, ONNX Runtime CPU"),
    Row("flax", "Flax (linen)", "flax", ("flax", "jax"), "JAX, CPU"),
    Row("onnxruntime", "ONNX Runtime", "onnx", ("onnxruntime", "onnx"), "CPU provider"),
    Row("torch-onnx", "PyTorch → ONNX (dynamo exporter)", "torch", ("torch", "onnxscript", "onnxruntime"),
        "torch.onnx.export(dynamo=True), ONNX Runtime CPU"),
    Row("torch-onnx-torchscript", "PyTorch → ONNX (TorchScript exporter)", "torch", ("torch", "onnxruntime", "onnx"),
        "torch.onnx.export(dynamo=False), ONNX Runtime CPU"),
    Row("openvino", "OpenVINO", "onnx", ("openvino", "onnx"),
        "ONNX frontend, CPU plugin, default precision (bf16 on CPUs with native bfloat16)"),
    Row("openvino-f32", "OpenVINO", "onnx", ("openvino", "onnx"),
        "ONNX frontend, CPU plugin, INFERENCE_PRECISION_HINT f32"),
    Row("onnxruntime-batch-major", "ONNX Runtime", "onnx", ("onnxruntime", "onnx"),
        "CPU provider, layout=1 (refused by 1.32.0)"),
    Row("openvino-batch-major", "OpenVINO", "onnx", ("openvino", "onnx"),
        "ONNX frontend, CPU plugin, layout=1, INFERENCE_PRECISION_HINT f32"),
    Row("mlx", "MLX", "mlx", ("mlx",), "CPU (mlx-cpu)"),
    Row("paddle", "PaddlePaddle", "paddle", ("paddle",), "CPU"),
    Row("torch-compile", "PyTorch torch.compile", "torch", ("torch",), "inductor, CPU, allow_rnn"),
    Row("torch-compile-loop", "PyTorch torch.compile", "torch", ("torch",),
        "inductor, CPU, a cell loop's step compiled"),
    Row("onnx2pytorch", "ONNX → PyTorch (onnx2pytorch)", "onnx", ("onnx2pytorch", "onnx", "torch"), "CPU, autograd"),
)


@dataclass(frozen=True)
class NodeRow(Row):
    """A framework of npm packages run by Node (tfjs): its module says whether they are installed, and which."""

    module: str = ""

    def installed(self) -> bool:
        return importlib.import_module(self.module).installed()

    def requirement(self) -> str:
        return f"node and the npm packages ({importlib.import_module(self.module).INSTALL_COMMAND})"

    def version(self) -> str:
        return importlib.import_module(self.module).version()


ROWS += (NodeRow("tfjs", "TensorFlow.js", "tfjs", (), "Node.js, pure-JS CPU backend",
                 module="rnnspec.spec.frameworks.tfjs_layers"),)


@dataclass(frozen=True)
class ProgramRow(Row):
    """A program speaking docs/protocol.md (``exec:COMMAND``) as a row: it implements what its hello declares."""

    name: str = ""
    cells: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()

    def installed(self) -> bool:
        return True  # it answered its hello when the row was made

    def requirement(self) -> str:
        return "the program"

    def version(self) -> str:
        return "-"  # the name it gives in its hello is the framework column


def program_row(target: str) -> ProgramRow:
    """The row of ``exec:COMMAND``: the program is started once here for its hello (a TargetError or UsageError
    if it cannot start or declares nonsense), then closed; the checks start their own."""
    from rnnspec.spec.declared import declarations, declared
    from rnnspec.spec.targets import _from_program

    impl = _from_program(target, timeout=300.0)  # the checks' timeout (_run)
    try:
        decl = declared(declarations(impl))
    finally:
        impl.close()
    return ProgramRow(target, impl.name, "", (), "a program over docs/protocol.md", name=impl.name, cells=decl.cells,
                      dtypes=decl.dtypes)


def _version(module: str) -> str:
    """The installed version of the distribution that provides ``module`` (tensorflow-cpu provides tensorflow)."""
    for distribution in importlib.metadata.packages_distributions().get(module, [module]):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "(version unknown)"


def _torch_sees_a_gpu() -> bool:
    """Asked in a child process: initialising CUDA here would make the workers' fork unsafe."""
    probe = "import torch; print(torch.cuda.is_available())"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "True"


@dataclass
class Cell:
    """One (target, cell, dtype, variant) of the matrix, over every seed."""

    row: Row
    cell: str
    dtype: str
    verdict: str = "conformant"
    failing: dict[str, str] = field(default_factory=dict)  # clause id -> status
    messages: list[str] = field(default_factory=list)
    worst_ratio: float = 0.0
    cases: int = 0
    reason: str = ""  # why it is not provided
    missing: set[str] = field(default_factory=set)  # the clause groups (VJP, LOSS) the target has no method for
    variant: str = ""  # "" one forward layer over full sequences

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.row.target, self.cell, self.variant, self.dtype)


def _target_class(name: str):
    module, attr = BUILTIN[name]
    return getattr(importlib.import_module(module), attr)  # the target modules import no framework at import


def not_provided(row: Row, cell: str, dtype: str) -> str:
    """Why the target does not provide (cell, dtype), or "" if it declares both."""
    if isinstance(row, ProgramRow):
        if cell not in row.cells:
            return f"the program declares cells {', '.join(row.cells)}"
        return "" if dtype in row.dtypes else f"the program declares {', '.join(row.dtypes)} only"
    cls = _target_class(row.target)
    if cell not in cls.cells:
        # the target's own reason first: an exporter may refuse a cell its framework has (lstm-proj)
        reason = getattr(cls, "not_provided", {}).get(cell)
        if reason:
            return reason
        layout = LAYOUTS[row.layout]
        return layout.CANNOT.get(cell, f"{row.framework} has no {cell} layer")
    if dtype not in cls.dtypes:
        return getattr(cls, "not_provided", {}).get(dtype, f"the target declares {cls.dtypes} only")
    return ""


def _summary(report) -> dict:
    return {"verdict": report.verdict, "cases": report.cases, "seconds": report.seconds,
            "clauses": [(r.clause.id, r.status, r.worst.ratio if r.worst else None, r.message.splitlines()[:1])
                        for r in report.results]}


def _merge(entry: Cell, run: dict, prefix: str) -> None:
    entry.cases += run["cases"]
    order = {"conformant": 0, "inconclusive": 1, "not conformant": 2}
    if order[run["verdict"]] > order[entry.verdict]:
        entry.verdict = run["verdict"]
    for clause, status, ratio, message in run["clauses"]:
        if status in ("failed", "error", "timeout", "undetermined"):
            entry.failing.setdefault(clause.removeprefix(prefix), status)
            if status in ("error", "timeout") and message and message[0] not in entry.messages:
                entry.messages.append(message[0])
        elif status == "not provided":
            entry.missing.add(clause.removeprefix(prefix).split("-")[0])
        elif status == "passed" and ratio is not None:
            entry.worst_ratio = max(entry.worst_ratio, ratio)


#: the per-call timeout of the matrix's checks (a framework's first call may compile)
TIMEOUT = 300.0


def _spelled(feature: str, cell: str) -> str | None:
    """One variant that exercises ``feature`` on ``cell`` (None where the feature does not apply to the cell):
    stacked layers as two; ONNX's clip at 1, which about half the gates' pre-activations of a case exceed; ONNX's
    activations as ReLU for the candidate (and the LSTM's cell output), which every runtime that takes the list
    runs (OpenVINO refuses HardSigmoid)."""
    entry = catalogue.cell(cell)
    if feature == "layers":
        return "layers=2"
    if feature == "clip":
        return "clip=1"
    if feature == "activations":
        if not entry.gates:
            return None  # the Elman cell's nonlinearity is its activation, not a list
        return "activations=sigmoid/relu/relu" if "c" in entry.states else "activations=sigmoid/relu"
    return feature


def row_variants(row: Row, cell: str) -> tuple[str, ...]:
    """The variants a row's target declares, one matrix row each (``--variants``): each declared feature alone,
    spelled for ``cell`` (:func:`_spelled`)."""
    if isinstance(row, ProgramRow):
        return ()
    from rnnspec.derivations.variants import parse_variant

    features = getattr(_target_class(row.target), "variants", ())
    spelled = (_spelled(f, cell) for f in features)
    return tuple(parse_variant(v).name for v in spelled if v is not None)


def _rows(targets: tuple[str, ...] | None, programs: dict | None = None, installed: bool = True) -> list[Row]:
    """The rows of ``targets`` (every row if None), installed ones only when ``installed``; a program row is made by
    asking the program (:func:`program_row`) unless ``programs`` holds what it declared."""
    from rnnspec.spec.targets import EXEC_PREFIX

    rows = [r for r in ROWS if (targets is None or r.target in targets) and (not installed or r.installed())]
    for t in targets or ():
        if t.startswith(EXEC_PREFIX):
            known = (programs or {}).get(t)
            rows.append(ProgramRow(t, known["name"], "", (), "a program over docs/protocol.md", name=known["name"],
                                   cells=tuple(known["cells"]), dtypes=tuple(known["dtypes"])) if known
                        else program_row(t))
    return rows


def plan(rows: list[Row], seeds: tuple[int, ...], examples: int, variants: bool = False,
         unit_cases: int | None = None) -> tuple[list[Cell], dict[tuple, list]]:
    """The matrix's entries (row, cell, dtype and, with ``variants``, each declared variant), and the work units of
    each entry that is provided, by (target, cell, variant, dtype)."""
    from rnnspec.spec.clauses import clauses
    from rnnspec.spec.units import DEFAULT_UNIT_CASES, units_of

    entries, units = [], {}
    for row in rows:
        for cell in catalogue.NAMES:
            for dtype in catalogue.DTYPES:
                reason = not_provided(row, cell, dtype)
                # a cell or dtype the target lacks is one row, not one per variant too
                for variant in ("", *(row_variants(row, cell) if variants and not reason else ())):
                    entry = Cell(row, cell, dtype, variant=variant)
                    entry.reason = reason
                    entry.verdict = "not provided" if reason else "conformant"
                    entries.append(entry)
                    if reason:
                        continue
                    ids = tuple(c.id for c in clauses(cell, variant))
                    units[entry.key] = [u for seed in seeds for u in
                                        units_of(row.target, cell, variant, dtype, seed, examples, None, ids,
                                                 unit_cases or DEFAULT_UNIT_CASES, TIMEOUT)]
    return entries, units


def fill(entries: list[Cell], units: dict[tuple, list], records: dict[str, dict]) -> list[Cell]:
    """Each provided entry's verdict from its units' records (every seed's report merged into the entry)."""
    from rnnspec.spec.contract import contract
    from rnnspec.spec.units import report_from

    for entry in entries:
        if entry.reason:
            continue
        by_seed: dict[int, list] = {}
        for unit in units[entry.key]:
            by_seed.setdefault(unit.seed, []).append(records[unit.key])
        for found in by_seed.values():
            _merge(entry, _summary(report_from(found)), contract(entry.cell, entry.variant).prefix + "-")
    return entries


def parameters(rows: list[Row], seeds: tuple[int, ...], examples: int, variants: bool, unit_cases: int | None) -> dict:
    """What a matrix's results folder records of its command (a program row with what it declared)."""
    programs = {r.target: {"name": r.name, "cells": list(r.cells), "dtypes": list(r.dtypes)}
                for r in rows if isinstance(r, ProgramRow)}
    return {"targets": [r.target for r in rows], "programs": programs, "seeds": list(seeds), "examples": examples,
            "variants": variants, "unit_cases": unit_cases}


def build(targets: tuple[str, ...] | None = None, seeds: tuple[int, ...] = (0,), examples: int = 50,
          jobs: int = 1, progress: Callable[[str], None] | None = None, *, variants: bool = False,
          results: str | None = None, shard: tuple[int, int] | None = None, engine: str = "local",
          address: str | None = None, unit_cases: int | None = None) -> list[Cell]:
    """Every (installed target, cell, dtype), checked over ``seeds``; an ``exec:COMMAND`` among ``targets`` is a row
    of its own (:func:`program_row`); with ``variants``, a row per variant each target declares too.

    The checks run as work units (:mod:`rnnspec.spec.units`) on ``engine`` with ``jobs`` local processes, stored in
    the folder ``results`` when given (a rerun resumes); ``shard=(K, N)`` runs the K-th slice of the units and raises
    :class:`~rnnspec.spec.runner.ShardDone` if others are missing (``rnnspec merge`` or ``matrix --from``).
    ``progress`` gets the live count of units done, failed and left."""
    from rnnspec.spec.engines import check_shard, execute
    from rnnspec.spec.runner import ShardDone
    from rnnspec.spec.store import FolderStore, MemoryStore

    check_shard(shard, results)
    rows = _rows(targets)
    for row in rows:
        row.version()  # anything the Markdown needs fails now, not after hours of checks
    entries, units = plan(rows, seeds, examples, variants, unit_cases)
    every = [u for group in units.values() for u in group]
    store = (FolderStore.open(results, "matrix", parameters(rows, seeds, examples, variants, unit_cases), every)
             if results is not None else MemoryStore())
    packages = {r.target: r.packages for r in rows}
    refusals: dict[str, str] = {}
    execute(every, store, engine=engine, workers=jobs, address=address, shard=shard, stream=progress,
            requirements=lambda unit: packages.get(unit.target, ()), refusals=refusals)
    if results is not None:  # for matrix --from; beside the records, not among them: a rerun asks the target again
        (Path(results) / REFUSED).write_text(json.dumps(refusals, indent=1, sort_keys=True) + "\n")
    _refused(entries, units, refusals)
    missing = [u for u in every if not store.has(u) and u.key not in refusals]
    if missing:
        raise ShardDone(f"shard {shard[0]}/{shard[1]}: its units are stored in {results}; {len(missing)} of the "
                        f"matrix's {len(every)} units are not (the other shards'): put the folders together with "
                        "rnnspec merge DIR... (or rnnspec matrix --from DIR...)")
    return fill(entries, units, {u.key: store.get(u) for u in every if u.key not in refusals})


#: the file of a results folder that keeps, by unit key, why a target refused to run the unit (not stored as a record)
REFUSED = "refused.json"


def _refused(entries: list[Cell], units: dict[tuple, list], refusals: dict[str, str]) -> None:
    """A target that refuses to be built is a row of its own, with its reason."""
    for entry in entries:
        refused = [refusals[u.key] for u in units.get(entry.key, ()) if u.key in refusals]
        if refused and not entry.reason:
            entry.reason, entry.verdict = f"the target refuses to run it: {refused[0]}", "not provided"


def merged(folders: list[str]) -> tuple[list[Cell], dict]:
    """The matrix of the results folders of matrix runs (shards, or runs in other environments: each folder's rows
    once, in the order of ROWS), and the parameters the first folder was run with."""
    from rnnspec.spec import store as stores
    from rnnspec.spec.declared import UsageError

    kind, first, _, records = stores.gather(folders)
    if kind != "matrix":
        raise UsageError(f"{folders[0]} holds a {kind} run, not a matrix: merge it with rnnspec merge")
    entries, units, targets = {}, {}, []
    for folder in folders:
        p = stores.read_manifest(folder)["parameters"]
        if (p["seeds"], p["examples"]) != (first["seeds"], first["examples"]):
            raise UsageError(f"{folder}: a matrix of seeds {p['seeds']} and {p['examples']} examples; {folders[0]}: "
                             f"seeds {first['seeds']}, {first['examples']} examples: one matrix has one depth")
        rows = _rows(tuple(p["targets"]), p["programs"], installed=False)
        found, planned = plan(rows, tuple(p["seeds"]), p["examples"], p["variants"], p["unit_cases"])
        for entry in found:
            entries.setdefault(entry.key, entry)
        for key, group in planned.items():
            units.setdefault(key, group)
        targets += [t for t in p["targets"] if t not in targets]
    refusals: dict[str, str] = {}
    for folder in folders:
        file = Path(folder) / REFUSED
        refusals.update(json.loads(file.read_text()) if file.is_file() else {})
    refusals = {key: why for key, why in refusals.items() if key not in records}  # a record from a later run wins
    lost = [u for group in units.values() for u in group if u.key not in records and u.key not in refusals]
    if lost:
        raise UsageError(f"{len(lost)} units of the matrix are in none of the folders (a shard not run, or not "
                         f"finished): {', '.join(u.describe() for u in lost[:5])}" + (" ..." if len(lost) > 5 else ""))
    order = {r.target: n for n, r in enumerate(ROWS)}
    ranked = sorted(entries.values(), key=lambda e: order.get(e.row.target, len(order) + targets.index(e.row.target)))
    _refused(ranked, units, refusals)
    return fill(ranked, units, records), {**first, "targets": targets}


def _failing(entry: Cell) -> str:
    if not entry.failing:
        return ""
    groups: dict[str, list[str]] = {}
    for clause in entry.failing:
        groups.setdefault(clause.split("-")[0], []).append(clause)
    parts = []
    for group, clauses in groups.items():
        parts.append(f"{group}-* ({len(clauses)})" if len(clauses) > 3 else ", ".join(clauses))
    statuses = sorted(set(entry.failing.values()))
    return f"{'; '.join(parts)} [{'/'.join(statuses)}]"


def markdown(entries: list[Cell], command: str) -> str:
    """The matrix as a Markdown document."""
    lines = ["# Compatibility matrix", "",
             "Which framework computes which recurrent cell as rnnspec's specification says: forward values and "
             "every gradient, each clause judged against the float64 oracle with the per-case tolerance of "
             "the tolerance model (docs/tolerances.md). Regenerate with:", "", f"    {command}", "",
             f"Run on {time.strftime('%Y-%m-%d')}, {platform.machine()} Linux, Python {platform.python_version()}. "
             "'worst ratio' is the largest error/tolerance of a passing clause (1 is the limit).", "",
             "| framework | version | backend / device | cell | dtype | verdict | failing clauses | worst ratio "
             "| cases |",
             "|---|---|---|---|---|---|---|---|---|"]
    notes: dict[str, list[str]] = {}

    def ref(text: str, where: str) -> str:
        notes.setdefault(text, []).append(where)
        return f"[{list(notes).index(text) + 1}]"

    for e in entries:
        cell = f"{e.cell} ({e.variant})" if e.variant else e.cell
        r, where = e.row, f"{e.row.target} {cell} {e.dtype}"
        version = r.version()
        if e.reason:
            lines.append(f"| {r.framework} | {version} | {r.where} | {cell} | {e.dtype} | not provided "
                         f"{ref(e.reason, where)} | | | |")
            continue
        verdict = {"conformant": "**conformant**"}.get(e.verdict, e.verdict)
        if e.missing:
            verdict += f" ({', '.join(sorted(e.missing))} not provided)"
        known = ([d.text for d in defects.known(r.target, e.dtype, e.cell, e.variant)] if e.verdict != "conformant"
                 else [])
        refs = "".join(f" {ref(m, where)}" for m in known + e.messages)
        ratio = f"{e.worst_ratio:.2g}" if e.worst_ratio else "-"
        lines.append(f"| {r.framework} | {version} | {r.where} | {cell} | {e.dtype} | {verdict}{refs} | "
                     f"{_failing(e)} | {ratio} | {e.cases} |")
    lines += ["", "Notes (the framework's own message, or why a cell or dtype is not provided):", ""]
    lines += [f"{n}. {text.replace('|', '/')} ({', '.join(where)})" for n, (text, where) in enumerate(notes.items(), 1)]
    return "\n".join(lines) + "\n"
