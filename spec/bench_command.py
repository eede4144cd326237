"""``rnnspec bench``: time the kernels against plain NumPy and PyTorch (CPU) or cuDNN (CUDA)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    """The ``bench`` subcommand on ``sub`` (the top-level parser's subparsers)."""
    bench = sub.add_parser("bench", help="time the kernels against plain NumPy and PyTorch")
    bench.add_argument("--cell", default="elman", help="elman, lstm, gru-reset-after or gru-reset-before "
                       "(--device cuda: a comma-separated list of the gated cells runs in one process)")
    bench.add_argument("--sizes", default="", help="comma-separated: S1..S5 (elman) or G1..G5 (the gated "
                       "cells; the same sizes); all five by default")
    bench.add_argument("--phases", default="forward,train")
    bench.add_argument("--dtypes", default="float32,float64")
    bench.add_argument("--impls", default="rnnspec-cpu,numpy,torch")
    bench.add_argument("--repeats", type=int, default=5, help="timed calls per result (median)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--variants", action="store_true", help="cuda: also time other recurrence layouts")
    bench.add_argument("--variant", default="", help="cpu: run the cell as a variant, e.g. "
                       "layers=2,bidirectional,lengths=zero (PyTorch with num_layers, bidirectional, packed sequences)")
    bench.add_argument("--json", help="write the results here")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rnnspec.kernels.cpu import bench

    if args.device == "cuda":
        return _bench_cuda(args, save=(lambda report: bench.write_json(args.json, report)) if args.json else
                           (lambda report: None))
    split = lambda s: [p for p in s.split(",") if p]
    if args.cell not in bench.CELLS:
        print(f"rnnspec bench: --cell: unknown {args.cell!r}; choose from {list(bench.CELLS)}", file=sys.stderr)
        return 2
    sizes = split(args.sizes) if args.sizes else bench.default_sizes(args.cell)
    phases, dtypes, impls = split(args.phases), split(args.dtypes), split(args.impls)
    for name, given, allowed in (("--sizes", sizes, bench.SIZES), ("--phases", phases, bench.PHASES),
                                 ("--dtypes", dtypes, bench.DTYPES), ("--impls", impls, bench.RUNNERS)):
        unknown = [g for g in given if g not in allowed]
        if unknown:
            print(f"rnnspec bench: {name}: unknown {unknown}; choose from {list(allowed)}", file=sys.stderr)
            return 2
    variant = None
    if args.variant:
        from rnnspec.derivations.variants import parse_variant

        try:
            parsed = parse_variant(args.variant)
        except ValueError as exc:
            print(f"rnnspec bench: --variant: {exc}", file=sys.stderr)
            return 2
        variant = {"layers": parsed.layers, "bidirectional": parsed.bidirectional, "lengths": parsed.lengths,
                   "name": parsed.name} if not parsed.plain else None
    report = bench.run(sizes, phases, dtypes, impls, args.repeats, cell=args.cell, variant=variant)
    print(bench.table(report))
    if args.json:
        bench.write_json(args.json, report)
    return 0


def _bench_cuda(args: argparse.Namespace, save) -> int:
    """``rnnspec bench --device cuda``: Elman (rnnspec.kernels.cuda.bench) or gated cells, a comma-separated
    list of them in one process (rnnspec.kernels.cuda.bench_gated)."""
    import json

    from rnnspec.derivations.oracle import Oracle
    from rnnspec.kernels.cuda import bench as bench_cuda
    from rnnspec.kernels.cuda import bench_gated

    repeats = max(args.repeats, bench_cuda.MIN_REPEATS)
    cells = [c for c in args.cell.split(",") if c]
    if cells == ["elman"]:
        report = bench_cuda.run(repeats=repeats, with_variants=args.variants, save=save, reference=Oracle().vjp)
    else:
        unknown = [c for c in cells if c not in bench_gated.CELLS]
        if unknown:
            print(f"rnnspec bench --device cuda: --cell: unknown {unknown}; choose elman alone, or any of "
                  f"{list(bench_gated.CELLS)}", file=sys.stderr)
            return 2
        report = bench_gated.run(cells, repeats=repeats, with_variants=args.variants, save=save,
                                 reference=lambda cell: Oracle(cell=cell).vjp)
    if not args.json:
        print(json.dumps(report, indent=1))
    return 0 if all(r.get("correct") for r in report["results"]) else 1
