"""The ``rnnspec`` command: check, bench, derive."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _derive(args: argparse.Namespace) -> int:
    from rnnspec.derivations import generate

    start = time.perf_counter()
    out = Path(args.out) if args.out else generate.GENERATED
    files = generate.render(workers=args.workers)
    if args.check:
        stale = generate.stale(out, files)
        if stale:
            print(f"stale generated files in {out}: {', '.join(stale)}; run `rnnspec derive`", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files in {out} are up to date ({time.perf_counter() - start:.1f} s)")
        return 0
    generate.write(out, files)
    print(f"wrote {', '.join(files)} to {out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from rnnspec.spec import bench

    if args.device == "cuda":
        import json

        from rnnspec.spec import bench_cuda

        save = (lambda report: bench.write_json(args.json, report)) if args.json else (lambda report: None)
        repeats = max(args.repeats, bench_cuda.MIN_REPEATS)
        report = bench_cuda.run(repeats=repeats, with_variants=args.variants, save=save)
        if not args.json:
            print(json.dumps(report, indent=1))
        return 0 if all(r.get("correct") for r in report["results"]) else 1
    split = lambda s: [p for p in s.split(",") if p]
    sizes, phases, dtypes, impls = split(args.sizes), split(args.phases), split(args.dtypes), split(args.impls)
    for name, given, allowed in (("--sizes", sizes, bench.SIZES), ("--phases", phases, bench.PHASES),
                                 ("--dtypes", dtypes, bench.DTYPES), ("--impls", impls, bench.RUNNERS)):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            print(f"rnnspec bench: {name}: unknown {unknown}; choose from {list(allowed)}", file=sys.stderr)
            return 2
    report = bench.run(sizes, phases, dtypes, impls, args.repeats)
    print(bench.table(report))
    if args.json:
        bench.write_json(args.json, report)
    return 0


def _check(args: argparse.Namespace) -> int:
    import json

    from rnnspec.spec import report as reports
    from rnnspec.spec.cases import Case
    from rnnspec.spec.runner import UsageError, check, print_progress
    from rnnspec.spec.targets import TargetError, load_target

    try:
        impl = load_target(args.target)
        cases = [Case(**json.loads(args.case))] if args.case else None
        result = check(impl, target=args.target, examples=args.examples, seed=args.seed, timeout=args.timeout,
                       clauses=args.clause or None, cases=cases, progress=None if args.quiet else print_progress())
    except (TargetError, UsageError) as exc:
        print(f"rnnspec check: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:
        print(f"rnnspec check: bad --case: {exc}", file=sys.stderr)
        return 2
    print(reports.table(result))
    if args.report:
        reports.write_json(result, args.report)
    if args.junit:
        reports.write_junit(result, args.junit)
    return 0 if result.conformant else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rnnspec", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check an RNN implementation against the spec (default: rnnspec-cpu)")
    check.add_argument("target", nargs="?", default="rnnspec-cpu",
                       help="built-in name (oracle, rnnspec-cpu, torch), package.module:attr or file.py:attr")
    check.add_argument("--seed", type=int, default=0, help="seed of the generated cases (default 0)")
    check.add_argument("--examples", type=int, default=None, help="number of generated cases (default 50)")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per call (default 60)")
    check.add_argument("--clause", action="append", help="check only this clause id (repeatable)")
    check.add_argument("--case", help="run exactly this case (JSON, as a report prints it)")
    check.add_argument("--report", help="write a JSON report here")
    check.add_argument("--junit", help="write a JUnit XML report here")
    check.add_argument("--quiet", action="store_true", help="no live progress")
    check.set_defaults(run=_check)
    derive = sub.add_parser("derive", help="regenerate the derivation documents and figures")
    derive.add_argument("--out", help="output folder (default: derivations/generated in the package)")
    derive.add_argument("--check", action="store_true", help="exit 1 when committed files differ from a fresh render")
    derive.add_argument("--workers", type=int, default=2, help="processes for the proofs (default 2)")
    derive.set_defaults(run=_derive)
    bench = sub.add_parser("bench", help="time the kernels against plain NumPy and PyTorch")
    bench.add_argument("--sizes", default="S1,S2,S3,S4,S5", help="comma-separated: S1..S5")
    bench.add_argument("--phases", default="forward,train")
    bench.add_argument("--dtypes", default="float32,float64")
    bench.add_argument("--impls", default="rnnspec-cpu,numpy,torch")
    bench.add_argument("--repeats", type=int, default=5, help="timed calls per result (median)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--variants", action="store_true", help="cuda: also time other recurrence layouts")
    bench.add_argument("--json", help="write the results here")
    bench.set_defaults(run=_bench)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
