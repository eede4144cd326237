"""The compatibility matrix: every installed framework target, cell and dtype through the suite, as Markdown.

``rnnspec matrix`` runs ``check`` once per (target, cell, dtype, seed) in worker processes, so that
every framework is imported only where its target runs, and writes one row per (target, cell,
dtype): conformant, the clauses that fail or break (with the framework's message), or not provided
(with the reason: a layer the framework lacks, a dtype its kernels lack).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

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
    """One (target, cell, dtype) of the matrix, over every seed."""

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


def _run(args: tuple[str, str, str, int, int]) -> dict:
    from rnnspec.spec.runner import check
    from rnnspec.spec.worker import TargetName

    target, cell, dtype, seed, examples = args
    report = check(TargetName(target), target=target, cell=cell, dtype=dtype, seed=seed, examples=examples,
                   timeout=300.0)
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


def build(targets: tuple[str, ...] | None = None, seeds: tuple[int, ...] = (0,), examples: int = 50,
          jobs: int = 1, progress: Callable[[str], None] | None = None) -> list[Cell]:
    """Every (installed target, cell, dtype), checked over ``seeds``; an ``exec:COMMAND`` among ``targets`` is a row
    of its own (:func:`program_row`)."""
    from rnnspec.spec.contract import contract
    from rnnspec.spec.targets import EXEC_PREFIX

    rows = [r for r in ROWS if (targets is None or r.target in targets) and r.installed()]
    rows += [program_row(t) for t in targets or () if t.startswith(EXEC_PREFIX)]
    for row in rows:
        row.version()  # anything the Markdown needs fails now, not after hours of checks
    entries, work = [], []
    for row in rows:
        for cell in catalogue.NAMES:
            for dtype in catalogue.DTYPES:
                entry = Cell(row, cell, dtype)
                entry.reason = not_provided(row, cell, dtype)
                entry.verdict = "not provided" if entry.reason else "conformant"
                entries.append(entry)
                if not entry.reason:
                    work += [(entry, (row.target, cell, dtype, seed, examples)) for seed in seeds]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [(entry, args, pool.submit(_run, args)) for entry, args in work]
        for n, (entry, args, future) in enumerate(futures, 1):
            run = future.result()
            _merge(entry, run, contract(entry.cell).prefix + "-")
            if progress:
                progress(f"[{n}/{len(futures)}] {args[0]} {args[1]} {args[2]} seed {args[3]}: {run['verdict']} "
                         f"({run['seconds']:.0f} s)")
    return entries


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
        r, where = e.row, f"{e.row.target} {e.cell} {e.dtype}"
        version = r.version()
        if e.reason:
            lines.append(f"| {r.framework} | {version} | {r.where} | {e.cell} | {e.dtype} | not provided "
                         f"{ref(e.reason, where)} | | | |")
            continue
        verdict = {"conformant": "**conformant**"}.get(e.verdict, e.verdict)
        if e.missing:
            verdict += f" ({', '.join(sorted(e.missing))} not provided)"
        known = [d.text for d in defects.known(r.target, e.dtype, e.cell)] if e.verdict != "conformant" else []
        refs = "".join(f" {ref(m, where)}" for m in known + e.messages)
        ratio = f"{e.worst_ratio:.2g}" if e.worst_ratio else "-"
        lines.append(f"| {r.framework} | {version} | {r.where} | {e.cell} | {e.dtype} | {verdict}{refs} | "
                     f"{_failing(e)} | {ratio} | {e.cases} |")
    lines += ["", "Notes (the framework's own message, or why a cell or dtype is not provided):", ""]
    lines += [f"{n}. {text.replace('|', '/')} ({', '.join(where)})" for n, (text, where) in enumerate(notes.items(), 1)]
    return "\n".join(lines) + "\n"
