"""The ``rnnspec`` command: check (an implementation against the spec), cases and judge (the same check through
files, for a program in any language), matrix (every installed framework through the suite), bench (the kernels
against NumPy and PyTorch), tune (the CPU kernels' thresholds on this machine), derive (the documents)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rnnspec.spec import bench_command


def _derive(args: argparse.Namespace) -> int:
    from rnnspec.derivations import generate

    start = time.perf_counter()
    out = Path(args.out) if args.out else generate.GENERATED
    # named before the minutes of rendering, not after them
    if out.exists() and not out.is_dir():
        print(f"rnnspec derive: --out {out}: is a file; give a folder", file=sys.stderr)
        return 2
    if args.check and not out.is_dir():
        print(f"rnnspec derive: --out {out}: no such folder to check against", file=sys.stderr)
        return 2
    if not out.exists() and not out.parent.is_dir():
        print(f"rnnspec derive: --out {out}: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    if not generate.can_draw():
        print(f"rnnspec derive: matplotlib is not installed (pip install 'rnnspec[docs]'): "
              f"{', '.join(generate.FIGURES)} are neither drawn nor checked", file=sys.stderr)
    progress = None if args.quiet else (lambda line: print(f"  {line} [{time.perf_counter() - start:.0f} s]",
                                                           file=sys.stderr, flush=True))
    if progress:
        progress("deriving the gradients and proving them against sympy.diff of the unrolled loss")
    files = generate.render(workers=args.workers, progress=progress)
    readme = generate.README.read_text() if generate.README.is_file() and not args.out else None
    if args.check:
        stale = generate.stale(out, files)
        if readme is not None and generate.with_cells_table(readme) != readme:
            stale.append(f"{generate.README} (its Cells section)")
        if stale:
            print(f"stale generated files in {out}: {', '.join(stale)}; run `rnnspec derive`", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files in {out} are up to date ({time.perf_counter() - start:.1f} s)")
        return 0
    generate.write(out, files)
    if readme is not None:
        generate.README.write_text(generate.with_cells_table(readme))
    print(f"wrote {', '.join(files)} to {out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _matrix_command(targets: str | None, seeds, examples: int, out: str | None, variants: bool) -> str:
    return " ".join(["rnnspec matrix", *(f"--targets {targets}",) * bool(targets),
                     f"--seeds {','.join(map(str, seeds))} --examples {examples}", *("--variants",) * variants,
                     *(f"--out {out}",) * bool(out)])


def _matrix_from(folders: list[str], out: str | None, args: argparse.Namespace) -> int:
    """The matrix of results folders (``matrix --from``, ``merge``)."""
    from rnnspec.spec import matrix
    from rnnspec.spec.runner import UsageError

    try:
        _output_path("--out", out)
        entries, p = matrix.merged(folders)
    except UsageError as exc:
        print(f"rnnspec {args.command}: {exc}", file=sys.stderr)
        return 2
    text = matrix.markdown(entries, _matrix_command(",".join(p["targets"]), p["seeds"], p["examples"], out,
                                                    p["variants"]))
    if out:
        Path(out).write_text(text)
    else:
        print(text)
    return 0


def _matrix(args: argparse.Namespace) -> int:
    from rnnspec.spec import matrix
    from rnnspec.spec.engines import RunError
    from rnnspec.spec.runner import ShardDone, UsageError
    from rnnspec.spec.targets import TargetError

    if args.sources:
        return _matrix_from(args.sources, args.out, args)
    targets = tuple(t for t in args.targets.split(",") if t) if args.targets is not None else None
    known = [r.target for r in matrix.ROWS]
    unknown = [t for t in targets or () if t not in known and not t.startswith("exec:")]
    if targets == () or unknown:
        print(f"rnnspec matrix: --targets: unknown targets {unknown or repr(args.targets)}; known: {known}",
              file=sys.stderr)
        return 2
    try:
        _output_path("--out", args.out)
        if args.address and args.engine != "ray":
            raise UsageError(f"--address {args.address}: is a Ray cluster's address; give it with --engine ray")
    except UsageError as exc:
        print(f"rnnspec matrix: {exc}", file=sys.stderr)
        return 2
    absent = [r for r in matrix.ROWS if (targets is None or r.target in targets) and not r.installed()]
    if targets is not None:
        for row in absent:
            print(f"rnnspec matrix: {row.target} is not installed here ({row.requirement()}); its rows are left out",
                  file=sys.stderr)
        if len(absent) == len(targets):
            print("rnnspec matrix: none of the targets asked for is installed: nothing to run", file=sys.stderr)
            return 2
    command = _matrix_command(args.targets, args.seeds, args.examples, args.out, args.variants)
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        entries = matrix.build(targets, args.seeds, args.examples, max(args.jobs, args.workers), say,
                               variants=args.variants, results=args.results, shard=args.shard, engine=args.engine,
                               address=args.address, unit_cases=args.unit_cases)
    except ShardDone as exc:
        print(f"rnnspec matrix: {exc}", file=sys.stderr)
        return 0
    except (UsageError, RunError, TargetError) as exc:
        print(f"rnnspec matrix: {exc}", file=sys.stderr)
        return 2
    text = matrix.markdown(entries, command)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


def _case(text: str, cell: str | None = None):
    """The case of ``--case`` (of ``cell`` unless it names its own), or a UsageError saying what is wrong."""
    import json

    from rnnspec.spec.cases import Case
    from rnnspec.spec.runner import UsageError

    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--case is not JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise UsageError(f"--case must be a JSON object, got {type(fields).__name__}")
    if cell is not None:
        if fields.setdefault("cell", cell) != cell:
            raise UsageError(f"--case is a case of cell {fields['cell']!r}, --cell says {cell!r}")
    try:
        return Case(**fields)
    except TypeError as exc:
        raise UsageError(f"--case: {exc} (fields: T, B, I, H, K, activation, dtype, regime, seed, and cell "
                         "unless it is elman)") from None
    except ValueError as exc:
        raise UsageError(f"--case: {exc}") from None


def _output_path(option: str, path: str | None) -> None:
    """A usage error, before the run, when a report could not be written to ``path``."""
    from rnnspec.spec.runner import UsageError

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {target.parent} does not exist")


def _output_folder(option: str, path: str | None) -> None:
    """A usage error, before the run, when files could not be written into folder ``path`` (made if missing)."""
    from rnnspec.spec.runner import UsageError

    if path is None:
        return
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{option} {path}: is a file; give a folder")
    if not target.exists() and not target.parent.is_dir():
        raise UsageError(f"{option} {path}: folder {target.parent} does not exist")


EXIT = {"conformant": 0, "not conformant": 1, "inconclusive": 3}


#: the GPU variant of a built-in target, for ``--device cuda``
ON_CUDA = {"torch": "torch-cuda", "rnnspec-cpu": "rnnspec-cuda"}


def _write_reports(command: str, result, args: argparse.Namespace) -> int:
    """--report (JSON) and --junit, then the verdict's exit code; exit 2 when a report cannot be written."""
    from rnnspec.spec import report as reports

    try:
        if args.report:
            reports.write_json(result, args.report)
        if args.junit:
            reports.write_junit(result, args.junit)
    except OSError as exc:
        print(f"rnnspec {command}: could not write the report: {exc}", file=sys.stderr)
        return 2
    return EXIT[result.verdict]


def _check(args: argparse.Namespace) -> int:
    from rnnspec.spec import report as reports
    from rnnspec.spec.engines import RunError
    from rnnspec.spec.runner import ShardDone, UsageError, check, print_progress
    from rnnspec.spec.targets import TargetError
    from rnnspec.spec.worker import TargetName

    if args.device == "cuda" and args.target not in ON_CUDA.values():
        if args.target not in ON_CUDA:
            print(f"rnnspec check: --device cuda: target {args.target!r} has no CUDA variant; those that do: "
                  f"{', '.join(f'{k} ({v})' for k, v in ON_CUDA.items())}", file=sys.stderr)
            return 2
        args.target = ON_CUDA[args.target]
    try:
        _output_path("--report", args.report)
        _output_path("--junit", args.junit)
        _output_folder("--save-cases", args.save_cases)
        cases = [_case(args.case, args.cell)] if args.case else None
        if args.address and args.engine != "ray":
            raise UsageError(f"--address {args.address}: is a Ray cluster's address; give it with --engine ray")
        result = check(TargetName(args.target), target=args.target, examples=args.examples, seed=args.seed,
                       timeout=args.timeout, clauses=args.clause or None, cases=cases,
                       progress=None if args.quiet else print_progress(), cell=args.cell, dtype=args.dtype,
                       variant=args.variant, require_all=args.require_all, save_cases=args.save_cases,
                       shapes=args.shapes, results=args.results, shard=args.shard, workers=args.workers,
                       engine=args.engine, address=args.address, unit_cases=args.unit_cases,
                       units_progress=None if args.quiet else sys.stderr)
    except ShardDone as exc:
        print(f"rnnspec check: {exc}", file=sys.stderr)
        return 0
    except (TargetError, UsageError, RunError) as exc:
        print(f"rnnspec check: {exc}", file=sys.stderr)
        return 2
    print(reports.table(result))
    return _write_reports("check", result, args)


def _merge(args: argparse.Namespace) -> int:
    """The report (or matrix) of results folders written by shards or runs elsewhere."""
    from rnnspec.spec import report as reports
    from rnnspec.spec import store as stores
    from rnnspec.spec.runner import UsageError

    try:
        kind = stores.read_manifest(args.folders[0])["kind"]
        if kind == "matrix":
            return _matrix_from(args.folders, args.out, args)
        _output_path("--report", args.report)
        _output_path("--junit", args.junit)
        result = merged_check(args.folders)
    except UsageError as exc:
        print(f"rnnspec merge: {exc}", file=sys.stderr)
        return 2
    print(reports.table(result))
    return _write_reports("merge", result, args)


def merged_check(folders: list[str]):
    """The report of a check whose units are in ``folders`` (its shards'), or a UsageError saying what is missing."""
    from rnnspec.spec import store as stores
    from rnnspec.spec.runner import UsageError, _rerun_command
    from rnnspec.spec.units import report_from

    kind, parameters, units, records = stores.gather(folders)
    for folder in folders[1:]:
        other = stores.read_manifest(folder)["parameters"]
        if other != parameters:
            changed = sorted(k for k in set(other) | set(parameters) if other.get(k) != parameters.get(k))
            raise UsageError(f"{folder} holds a check with other parameters than {folders[0]} (differing: "
                             f"{', '.join(changed)}): merge the shards of one run")
    missing = [u for u in units if u.key not in records]
    if missing:
        raise UsageError(f"{len(missing)} of the run's {len(units)} units are in none of the folders (a shard not "
                         f"run, or not finished): {', '.join(u.describe() for u in missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    found = [records[u.key] for u in units]
    p = parameters
    rerun = _rerun_command(p["target"], p["cell"], p["variant"], p["seed"], found[0]["total_cases"], p["dtype"],
                           bool(p["cases"]), p["shapes"])
    return report_from(found, require_all=p["require_all"], rerun=rerun)


def _names(option: str, text: str | None, known: tuple[str, ...]) -> tuple[str, ...] | None:
    """A comma-separated list of names from ``known``, or a UsageError naming ``option``."""
    from rnnspec.spec.runner import UsageError

    if text is None:
        return None
    names = tuple(t.strip() for t in text.split(","))
    unknown = [n for n in names if n not in known]
    if not text.strip() or unknown:
        raise UsageError(f"{option}: expected comma-separated names from {known}, got {text!r}")
    return names


def _cases(args: argparse.Namespace) -> int:
    from rnnspec import catalogue
    from rnnspec.derivations.cells import ACTIVATIONS
    from rnnspec.derivations.registry import check_name
    from rnnspec.derivations.variants import parse_variant
    from rnnspec.spec import corpus
    from rnnspec.spec.runner import UsageError, print_progress

    try:
        try:
            check_name(args.cell)
        except ValueError as exc:
            raise UsageError(f"--cell: {exc}") from None
        dtypes = _names("--dtype", args.dtype, catalogue.DTYPES)
        activations = _names("--activations", args.activations, tuple(ACTIVATIONS))
        variant = args.variant or ""
        try:
            variant = parse_variant(variant).name
        except ValueError as exc:
            raise UsageError(f"--variant: {exc}") from None
        accuracy = corpus.parse_accuracy(args.accuracy)
        start = time.perf_counter()
        out = corpus.write_corpus(args.out, args.cell, variant=variant, dtypes=dtypes, activations=activations,
                                  examples=args.examples, seed=args.seed, accuracy=accuracy,
                                  progress=None if args.quiet else print_progress())
    except UsageError as exc:
        print(f"rnnspec cases: {exc}", file=sys.stderr)
        return 2
    manifest = corpus.read_manifest(out)
    print(f"wrote {len(manifest['cases'])} cases of {args.cell}{f' ({variant})' if variant else ''} to {out} "
          f"({time.perf_counter() - start:.1f} s); tolerances for {manifest['accuracy_label']}; judge a program's "
          f"results with: rnnspec judge {out} RESULTS")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from rnnspec.spec import corpus_judge
    from rnnspec.spec.runner import UsageError, print_progress

    try:
        _output_path("--json", args.report)
        _output_path("--junit", args.junit)
        result = corpus_judge.judge_corpus(args.corpus, args.results, accuracy=args.accuracy,
                                           require_all=args.require_all,
                                           progress=None if args.quiet else print_progress())
    except UsageError as exc:
        print(f"rnnspec judge: {exc}", file=sys.stderr)
        return 2
    print(corpus_judge.table(result, args.corpus))
    return _write_reports("judge", result, args)


def _tune(args: argparse.Namespace) -> int:
    from rnnspec.kernels.cpu.tuning import main as tune

    return tune(["--show"] * args.show + ["--busy-ok"] * args.busy_ok)


def _shapes(text: str) -> int | str:
    """--shapes: a positive whole number of shapes, or 'all'."""
    if text == "all":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of shapes or 'all', got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seeds(text: str) -> tuple[int, ...]:
    """Comma-separated seeds, each an integer in [0, 2**32)."""
    parts = text.split(",")
    if not all(p.strip().isdigit() for p in parts) or not all(int(p) < 2**32 for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers in [0, 2**32), got {text!r}")
    return tuple(int(p) for p in parts)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"rnnspec {version('rnnspec')}"
    except PackageNotFoundError:  # run from a source tree without installing
        return "rnnspec (not installed)"


def _shard(text: str) -> tuple[int, int]:
    from rnnspec.spec.engines import parse_shard
    from rnnspec.spec.runner import UsageError

    try:
        return parse_shard(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--shard: ")) from None


def _run_options(command: argparse.ArgumentParser) -> None:
    """How a run's work units run and where their results go (docs/runs.md)."""
    from rnnspec.spec.engines import ENGINES
    from rnnspec.spec.units import DEFAULT_UNIT_CASES

    command.add_argument("--results", metavar="DIR", help="store each work unit's results in DIR as it finishes; "
                         "the same command run again resumes there (docs/runs.md)")
    command.add_argument("--shard", type=_shard, metavar="K/N", help="run only the K-th of N deterministic slices "
                         "of the units (one job of a CI matrix, a Slurm array...); then rnnspec merge DIR...")
    command.add_argument("--workers", type=_positive_int, default=1, help="local processes running units at once "
                         "(default 1)")
    command.add_argument("--engine", choices=ENGINES, default="local", help="local processes (default), or Ray tasks "
                         "on a cluster (pip install 'rnnspec[ray]')")
    command.add_argument("--address", help="the Ray cluster to join (--engine ray; default: a local one)")
    command.add_argument("--unit-cases", type=_positive_int, default=None,
                         help=f"cases per work unit (default {DEFAULT_UNIT_CASES})")


def parser() -> argparse.ArgumentParser:
    from rnnspec.catalogue import DTYPES
    from rnnspec.catalogue import NAMES as CELL_NAMES
    from rnnspec.spec.targets import BUILTIN

    top = argparse.ArgumentParser(prog="rnnspec", description=__doc__)
    top.add_argument("--version", action="version", version=_version())
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check an RNN implementation against the spec (default: rnnspec-cpu)",
                           description="Check an RNN implementation against the spec. Exit code 0: conformant; 1: "
                           "not conformant; 2: usage or loading error; 3: inconclusive (nothing failed, but a clause "
                           "had too few decisive cases).")
    check.add_argument("target", nargs="?", default="rnnspec-cpu",
                       help=f"built-in name ({', '.join(sorted(BUILTIN))}), package.module:attr or file.py:attr "
                       "(default rnnspec-cpu)")
    check.add_argument("--cell", help=f"the cell to check: {', '.join(CELL_NAMES)} (default: the target's first)")
    check.add_argument("--variant", help="run the cell stacked, both ways, on sequences of their own lengths: any of "
                       "layers=N, bidirectional, lengths=zero or lengths=carry, comma-separated "
                       "(e.g. layers=2,bidirectional,lengths=zero); default: one forward layer")
    check.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                       help="cuda: the target's GPU variant (torch -> torch-cuda, rnnspec-cpu -> rnnspec-cuda)")
    check.add_argument("--dtype", choices=DTYPES, help="only cases of this dtype (default: every "
                       "dtype the target declares)")
    check.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default 0)")
    check.add_argument("--examples", type=_positive_int, default=None, help="number of generated cases (default 50)")
    check.add_argument("--timeout", type=_seconds, default=60.0,
                       help="seconds allowed per call, and for loading the target (default 60)")
    check.add_argument("--shapes", type=_shapes, default=None, help="the generated cases on at most N shapes, or "
                       "'all' (every case its own); default: what the target declares (a target that compiles a "
                       "program per shape, flax and keras-jax, asks for 4, edge sizes among them)")
    check.add_argument("--clause", action="append", help="check only this clause id (repeatable)")
    check.add_argument("--case", help="run exactly this case (JSON, as a report prints it)")
    check.add_argument("--require-all", action="store_true", help="a method of the contract the target does not "
                       "provide (vjp, loss) makes it not conformant (for CI; by default its clauses are reported "
                       "'not provided' and the verdict says what was checked)")
    check.add_argument("--save-cases", metavar="DIR", help="write each failure's smallest case to DIR as .npz: its "
                       "inputs, the expected outputs and the target's (rnnspec.spec.casefile.read_case reads it)")
    _run_options(check)
    check.add_argument("--report", help="write a JSON report here")
    check.add_argument("--junit", help="write a JUnit XML report here")
    check.add_argument("--quiet", action="store_true", help="no live progress")
    check.set_defaults(run=_check)
    cases = sub.add_parser("cases", help="write generated cases, their expected outputs and tolerances as files any "
                           "language reads (docs/corpus.md)",
                           description="Write the cases `rnnspec check` generates, with the spec's expected outputs "
                           "and each output's tolerance, as a JSON manifest and .npy arrays (docs/corpus.md). The same "
                           "arguments and rnnspec version write the same bytes. Exit code 0, or 2 for a usage error.")
    cases.add_argument("--cell", required=True, help=f"the cell: {', '.join(CELL_NAMES)}")
    cases.add_argument("--variant", help="as rnnspec check --variant (e.g. layers=2,bidirectional,lengths=zero)")
    cases.add_argument("--dtype", help=f"comma-separated dtypes of the cases, in the order a target would declare "
                       f"them (default: {','.join(DTYPES)})")
    cases.add_argument("--activations", help="comma-separated activations of an Elman cell's cases (default tanh, as "
                       "for a target that declares none); a gated cell's are its own")
    cases.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default 0)")
    cases.add_argument("--examples", type=_positive_int, default=50, help="number of generated cases (default 50)")
    cases.add_argument("--accuracy", default="accurate", help="the accuracy class the tolerances are for: accurate "
                       "(default), fast, or a number of ulps")
    cases.add_argument("--out", required=True, help="the folder to write (new or empty)")
    cases.add_argument("--quiet", action="store_true", help="no live progress")
    cases.set_defaults(run=_cases)
    judge = sub.add_parser("judge", help="judge the results a program wrote beside a corpus of `rnnspec cases`",
                           description="Judge the results a program wrote (RESULTS/<case id>/<method>.<output>.npy) "
                           "against a corpus written by `rnnspec cases`, with the clauses, report and exit codes of "
                           "`rnnspec check`: 0 conformant; 1 not conformant; 2 usage error; 3 inconclusive. Clauses "
                           "that need a live call (determinism, purity) are reported 'not judged'.")
    judge.add_argument("corpus", help="the folder `rnnspec cases --out` wrote")
    judge.add_argument("results", help="the folder the program wrote its results into")
    judge.add_argument("--accuracy", help="judge under this accuracy class (accurate, fast, or a number of ulps; "
                       "default: the corpus's; another class recomputes the tolerances from the corpus's inputs)")
    judge.add_argument("--require-all", action="store_true", help="a method with no results (vjp, loss) makes the "
                       "run not conformant")
    judge.add_argument("--json", "--report", dest="report", help="write a JSON report here")
    judge.add_argument("--junit", help="write a JUnit XML report here")
    judge.add_argument("--quiet", action="store_true", help="no live progress")
    judge.set_defaults(run=_judge)
    merge = sub.add_parser("merge", help="one report (or matrix) from the results folders of a run's shards",
                           description="Combine the results folders that `rnnspec check --results DIR --shard K/N` "
                           "(or `rnnspec matrix --results DIR`) wrote, anywhere, into the report (or matrix) of the "
                           "whole run, with check's exit codes (2: a unit is in none of the folders).")
    merge.add_argument("folders", nargs="+", metavar="DIR", help="results folders")
    merge.add_argument("--report", help="write a JSON report here")
    merge.add_argument("--junit", help="write a JUnit XML report here")
    merge.add_argument("--out", help="a matrix's Markdown goes here (default: print it)")
    merge.set_defaults(run=_merge)
    derive = sub.add_parser("derive", help="regenerate the derivation documents and figures")
    derive.add_argument("--out", help="output folder (default: derivations/generated in the package)")
    derive.add_argument("--check", action="store_true", help="exit 1 when committed files differ from a fresh render")
    derive.add_argument("--workers", type=_positive_int, default=2, help="processes for the proofs (default 2)")
    derive.add_argument("--quiet", action="store_true", help="no progress lines")
    derive.set_defaults(run=_derive)
    bench_command.add_parser(sub)
    tune = sub.add_parser("tune", help="measure the CPU kernels' path-choosing thresholds on this machine and "
                          "cache them beside Numba's cache (the kernels read them; unmeasured, they use safe values)")
    tune.add_argument("--show", action="store_true", help="print the values in use and where each comes from")
    tune.add_argument("--busy-ok", action="store_true", help="measure even when the load average says the machine "
                      "is busy (the values would then be unreliable)")
    tune.set_defaults(run=_tune)
    matrix = sub.add_parser("matrix", help="run every installed framework target through the suite; write Markdown")
    matrix.add_argument("--targets", help="comma-separated built-in targets, or exec:COMMAND (a program speaking "
                        "docs/protocol.md; no comma in it) (default: every installed framework's)")
    matrix.add_argument("--seeds", type=_seeds, default=(0,), help="comma-separated seeds (default 0)")
    matrix.add_argument("--examples", type=_positive_int, default=50, help="cases per cell, dtype and seed")
    matrix.add_argument("--jobs", type=_positive_int, default=1, help="units run at once (default 1; as --workers)")
    matrix.add_argument("--variants", action="store_true", help="a row per variant each target declares too (each "
                        "feature alone; layers as layers=2); default: the plain rows only")
    matrix.add_argument("--from", dest="sources", nargs="+", metavar="DIR", help="make the matrix from the results "
                        "folders of matrix runs (their shards, or runs in other environments) instead of running")
    _run_options(matrix)
    matrix.add_argument("--out", help="write the Markdown here (default: print it)")
    matrix.add_argument("--quiet", action="store_true", help="no progress lines")
    matrix.set_defaults(run=_matrix)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
