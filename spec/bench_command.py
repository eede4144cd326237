"""``rnnspec bench``: time the kernels against plain NumPy and PyTorch (CPU) or cuDNN (CUDA).

Every option is checked here, before anything is timed, compiled or loaded beyond the lists it is checked
against: a bad value is refused with exit code 2 and one line naming the option, what it takes and what
was given.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROG = "rnnspec bench"
DEFAULT_REPEATS = 5
#: the CPU options that --device cuda does not take (it times its own sizes, in float32, against cuDNN)
CPU_ONLY = ("sizes", "phases", "dtypes", "impls", "variant")


class Refused(Exception):
    """A bad option value: the one line to print (without the program's name)."""


def _lists() -> dict[str, str]:
    """The names each option takes, for the help (read from the benchmark, imported only to print help)."""
    from rnnspec.kernels.cpu import bench
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import bench_gated

    return {"cells": ", ".join(bench.CELLS), "gpu_cells": ", ".join(bench_gated.CELLS),
            "min_repeats": str(bench_cuda.MIN_REPEATS),
            "sizes": ", ".join(bench.SIZES), "phases": ", ".join(bench.PHASES), "dtypes": ", ".join(bench.DTYPES),
            "impls": ", ".join(bench.RUNNERS)}


def _filled_help(parser: argparse.ArgumentParser):
    """``parser.format_help`` with the {names} of its help strings filled in from :func:`_lists` when help is
    asked for: building the parser (every ``rnnspec`` command does) must not import the kernels."""
    plain = parser.format_help

    def format_help() -> str:
        names = _lists()
        for action in parser._actions:
            if action.help and "{" in action.help:
                action.help = action.help.format(**names)
        return plain()

    return format_help


def add_parser(sub) -> None:
    """The ``bench`` subcommand on ``sub`` (the top-level parser's subparsers)."""
    bench = sub.add_parser(
        "bench", help="time the kernels against plain NumPy and PyTorch",
        description="Time the kernels against plain NumPy and PyTorch (--device cpu) or cuDNN (--device cuda). "
        "Exit code 0: done (cuda: every result correct); 1: cuda: a result incorrect; 2: a bad option, a missing "
        "GPU or PyTorch, or a report that could not be written.")
    bench.add_argument("--cell", help="cpu: one of {cells}; cuda: elman, or a comma-separated list of {gpu_cells} "
                       "(run in one process); default elman")
    bench.add_argument("--sizes", help="cpu: comma-separated, of {sizes} (S: the Elman sizes; G: the gated cells', "
                       "the same shapes); default: the cell's five")
    bench.add_argument("--phases", help="cpu: comma-separated, of {phases} (train: forward, loss and every "
                       "gradient); default: all")
    bench.add_argument("--dtypes", help="cpu: comma-separated, of {dtypes}; default: all")
    bench.add_argument("--impls", help="cpu: comma-separated, of {impls}; default: all (those that cannot run "
                       "here, or this cell, are named and skipped)")
    bench.add_argument("--repeats", help=f"timed calls per result, at least 1 (default {DEFAULT_REPEATS}; cuda: "
                       "at least {min_repeats}, whatever is asked)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                       help="cuda: numba-cuda's kernels on the GPU against cuDNN; without a GPU, set "
                       "NUMBA_ENABLE_CUDASIM=1 for numba-cuda's simulator (PyTorch then runs on the CPU)")
    bench.add_argument("--variants", action="store_true", help="cuda: also time other recurrence layouts")
    bench.add_argument("--variant", help="cpu: run the cell as a variant, e.g. layers=2,bidirectional,lengths=zero "
                       "(PyTorch with num_layers, bidirectional, packed sequences)")
    bench.add_argument("--json", help="write the results here (a file in an existing folder)")
    bench.format_help = _filled_help(bench)
    bench.set_defaults(run=run)


def _names(option: str, text: str, allowed) -> list[str]:
    """The comma-separated names of ``text``, each one of ``allowed``, none twice, at least one."""
    names = [name for name in text.split(",") if name]
    if not names:
        raise Refused(f"{option}: expected comma-separated names of {', '.join(allowed)}; got {text!r}")
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise Refused(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise Refused(f"{option}: {', '.join(twice)} given twice in {text!r}")
    return names


def _repeats(text: str | None) -> int:
    if text is None:
        return DEFAULT_REPEATS
    try:
        value = int(text)
    except ValueError:
        raise Refused(f"--repeats: expected a whole number of timed calls, at least 1; got {text!r}") from None
    if value < 1:
        raise Refused(f"--repeats: expected a whole number of timed calls, at least 1; got {value}")
    return value


def _json_path(path: str | None) -> None:
    """Refused where the report could not be written: a folder, a folder that does not exist or is not writable."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise Refused(f"--json {path}: is a folder; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise Refused(f"--json {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise Refused(f"--json {path}: folder {folder} is not writable")


def _cpu_plan(args: argparse.Namespace) -> dict:
    """The CPU benchmark's arguments from ``args``, every one checked."""
    from rnnspec.kernels.cpu import bench

    if args.variants:
        raise Refused("--variants: times other GPU layouts, with --device cuda only (the CPU's cell variants: "
                      "--variant)")
    cell = args.cell or "elman"
    if cell not in bench.CELLS:
        raise Refused(f"--cell: unknown {cell!r}; choose from {', '.join(bench.CELLS)}"
                      + (" (--device cpu runs one cell at a time)" if "," in cell else ""))
    plan = {"cell": cell, "repeats": _repeats(args.repeats),
            "sizes": _names("--sizes", args.sizes, bench.SIZES) if args.sizes is not None
            else bench.default_sizes(cell),
            "phases": _names("--phases", args.phases, bench.PHASES) if args.phases is not None else list(bench.PHASES),
            "dtypes": _names("--dtypes", args.dtypes, bench.DTYPES) if args.dtypes is not None else list(bench.DTYPES),
            "impls": _names("--impls", args.impls, bench.RUNNERS) if args.impls is not None else list(bench.RUNNERS),
            "variant": None}
    if args.variant is not None:
        from rnnspec.derivations.variants import parse_variant

        try:
            parsed = parse_variant(args.variant)
        except ValueError as exc:
            raise Refused(f"--variant: {exc}") from None
        if parsed.default_state:  # the kernels take their initial states: zeros are a case of the plain run
            raise Refused(f"--variant: {parsed.name!r}: state0=default is a conformance variant; the bench times the "
                          "kernels, whose initial states are arguments (zeros or not, the same work)")
        if not parsed.plain:
            plan["variant"] = {"layers": parsed.layers, "bidirectional": parsed.bidirectional,
                               "lengths": parsed.lengths, "name": parsed.name}
    have, missing = bench.available(plan["impls"], cell, plan["variant"])
    if not have:
        raise Refused(f"--impls: none of {', '.join(plan['impls'])} can run here: {'; '.join(missing)}")
    _json_path(args.json)
    return plan


def _torch_device(module) -> str:
    """Where PyTorch's side of the GPU benchmark runs: ``module.TORCH_DEVICE``, or "cpu (no CUDA in PyTorch)"
    where PyTorch has no CUDA and the kernels run on numba-cuda's simulator (whose times measure nothing, but
    every step runs)."""
    from numba import config

    if module.TORCH_DEVICE != "cuda":
        return module.TORCH_DEVICE
    try:
        import torch
    except ImportError:
        raise Refused("--device cuda: the cuDNN baseline needs PyTorch (pip install torch)") from None
    if torch.cuda.is_available():
        return "cuda"
    if config.ENABLE_CUDASIM:
        return "cpu (no CUDA in PyTorch)"
    raise Refused(f"--device cuda: PyTorch {torch.__version__} has no CUDA, and the cuDNN baseline needs it")


def _cuda_plan(args: argparse.Namespace) -> dict:
    """The GPU benchmark's arguments from ``args``, every one checked; Refused without a GPU (or the simulator)."""
    given = [f"--{name}" for name in CPU_ONLY if getattr(args, name) is not None]
    if given:
        raise Refused(f"{', '.join(given)}: --device cpu only (--device cuda times its own sizes in float32, "
                      "the kernels against cuDNN)")
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import bench_gated

    text = args.cell or "elman"
    cells = [c for c in text.split(",") if c]
    if cells != ["elman"]:
        unknown = [c for c in cells if c not in bench_gated.CELLS]
        if unknown or not cells:
            raise Refused(f"--cell: {'unknown ' + ', '.join(unknown) if unknown else f'no cell in {text!r}'}; "
                          f"choose elman alone, or any of {', '.join(bench_gated.CELLS)}")
        cells = _names("--cell", text, bench_gated.CELLS)
    repeats = max(_repeats(args.repeats), bench_cuda.MIN_REPEATS)
    _json_path(args.json)
    from rnnspec.kernels.numpy_compat import cuda_module

    cuda = cuda_module()
    try:  # is_available() alone says yes where a driver loads but no device answers
        found = cuda.is_available() and cuda.get_current_device() is not None
    except Exception:  # numba-cuda's CudaSupportError and driver errors: none of them is ours to show
        found = False
    if not found:
        raise Refused("--device cuda: no CUDA GPU here (numba-cuda finds no usable driver or device); "
                      "set NUMBA_ENABLE_CUDASIM=1 to run on numba-cuda's simulator")
    return {"cells": cells, "repeats": repeats,
            "torch_device": _torch_device(bench_cuda if cells == ["elman"] else bench_gated)}


def run(args: argparse.Namespace) -> int:
    try:
        plan = _cuda_plan(args) if args.device == "cuda" else _cpu_plan(args)
    except Refused as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        return _bench_cuda(args, plan)
    from rnnspec.kernels.cpu import bench

    report = bench.run(plan["sizes"], plan["phases"], plan["dtypes"], plan["impls"], plan["repeats"],
                       cell=plan["cell"], variant=plan["variant"])
    print(bench.table(report))
    if args.json:
        try:
            bench.write_json(args.json, report)
        except OSError as exc:
            print(f"{PROG}: could not write --json {args.json}: {exc}", file=sys.stderr)
            return 2
    return 0


def _bench_cuda(args: argparse.Namespace, plan: dict) -> int:
    """``rnnspec bench --device cuda``: Elman (rnnspec.kernels.cuda.bench) or gated cells, a comma-separated
    list of them in one process (rnnspec.kernels.cuda.bench_gated). A report that cannot be written stops
    being written (one line says why) and is printed at the end instead: the measurements are not lost."""
    import json

    from rnnspec.derivations.oracle import Oracle
    from rnnspec.kernels.cpu import bench
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import bench_gated

    failed: list[str] = []

    def save(report: dict) -> None:
        if args.json and not failed:
            try:
                bench.write_json(args.json, report)
            except OSError as exc:
                failed.append(f"{PROG}: could not write --json {args.json}: {exc}; the report follows on stdout")
                print(failed[0], file=sys.stderr)

    device = plan["torch_device"]
    if device.startswith("cpu ("):
        print(f"{PROG}: PyTorch has no CUDA: its side runs on the CPU beside numba-cuda's simulator", file=sys.stderr)
    common = {"repeats": plan["repeats"], "with_variants": args.variants, "save": save,
              "torch_device": device.split()[0]}
    if plan["cells"] == ["elman"]:
        report = bench_cuda.run(reference=Oracle().vjp, **common)
    else:
        report = bench_gated.run(plan["cells"], reference=lambda cell: Oracle(cell=cell).vjp, **common)
    if not args.json or failed:
        print(json.dumps(report, indent=1))
    if failed:
        return 2
    return 0 if all(r.get("correct") for r in report["results"]) else 1
