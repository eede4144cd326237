"""The tfjs target's long run: each cell it declares, 200 cases on each seed, split where TF.js's defect lies.

The cases are exactly those of ``rnnspec check tfjs --cell CELL --seed S --examples 200``. They are checked in
two runs: the cases with T >= 2, and those with T == 1, whose gradients TF.js 4.22.0 cannot compute (the
gradient of tf.unstack into one piece throws): there every clause must pass or break with exactly that error.
On T >= 2 a clause may fail only where it is a LOSS clause that passes on the same case once the cross-entropy
is tf.logSoftmax's: TF.js's tf.losses.softmaxCrossEntropy loses |logits| * 2^-24 (server.js's header has
both defects; tests/test_tfjs.py their reproducers in TF.js's own code).

    python scripts/long_run_tfjs.py [--target tfjs] [--seeds 0,1,2] [--examples 200] > benchmarks/long_run_tfjs.log
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

from rnnspec.spec.cases import generate
from rnnspec.spec.declared import declarations, declared
from rnnspec.spec.frameworks import tfjs_layers
from rnnspec.spec.runner import check
from rnnspec.spec.targets import load_target
from rnnspec.spec.worker import TargetName


def _only_the_cross_entropy(report, target: str) -> bool:
    """Whether every failure of ``report`` is a LOSS clause that passes, on the case where it first failed, once
    the cross-entropy is tf.logSoftmax's (tf.losses.softmaxCrossEntropy's defect, server.js); prints each."""
    explained = True
    for r in report.results:
        if r.status == "passed":
            continue
        case = r.first_failure[0] if r.first_failure else None
        again = check(tfjs_layers.TfjsLogSoftmaxHead(), target=f"{target} with the logSoftmax head", cases=[case],
                      clauses=[r.clause.id]) if case is not None and "-LOSS-" in r.clause.id else None
        ok = again is not None and again.conformant
        explained &= ok
        print(f"    {r.clause.id}: {r.status}: {r.message.splitlines()[0] if r.message else ''}; on {case.describe()}"
              f" with the logSoftmax head: {again.verdict if again else '-'}"
              + ("" if ok else "  <-- NOT the cross-entropy's defect"))
    return explained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="tfjs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--cells", default="", help="comma-separated (default: every cell the target declares)")
    args = parser.parse_args(argv)
    impl = load_target(args.target)
    decl = declared(declarations(impl))
    cells = args.cells.split(",") if args.cells else decl.cells
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"# {' '.join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {model}, {os.cpu_count()} cpus, "
          f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
    print(f"# TensorFlow.js {tfjs_layers.version()}, installed in {tfjs_layers.home()}")
    bad = 0
    for cell in cells:
        for seed in (int(s) for s in args.seeds.split(",")):
            cases = generate(args.examples, seed, decl.dtypes, decl.activations_of(cell), cell)
            long = [c for c in cases if c.T > 1]
            one = [c for c in cases if c.T == 1]
            report = check(TargetName(args.target), target=args.target, cases=long)
            ratios = [r.worst.ratio for r in report.results if r.status == "passed" and r.worst]
            print(f"{cell} seed {seed}: {len(long)} cases with T >= 2: {report.verdict} in {report.seconds:.1f} s, "
                  f"worst ratio of a passing clause {max(ratios):.3g}")
            if not report.conformant:
                bad += not _only_the_cross_entropy(report, args.target)
            if one:
                report = check(TargetName(args.target), target=args.target, cases=one)
                other = [r for r in report.results if r.status != "passed" and not
                         (r.status == "error" and tfjs_layers.ONE_STEP_DEFECT in r.message)]
                print(f"{cell} seed {seed}: {len(one)} cases with T == 1: {report.verdict} in {report.seconds:.1f} s; "
                      f"{sum(r.status == 'passed' for r in report.results)} clauses passed, "
                      f"{sum(r.status == 'error' for r in report.results)} broke with TF.js's defect"
                      + (f"; OTHER FAILURES: {[(r.clause.id, r.status) for r in other]}" if other else ""))
                bad += bool(other)
            sys.stdout.flush()
    outcome = "every failure is one of TF.js's two defects" if not bad else f"{bad} runs failed otherwise"
    print(f"# done {time.strftime('%H:%M:%S UTC', time.gmtime())}: {outcome}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
