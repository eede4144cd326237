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


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rnnspec", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    derive = sub.add_parser("derive", help="regenerate the derivation documents and figures")
    derive.add_argument("--out", help="output folder (default: derivations/generated in the package)")
    derive.add_argument("--check", action="store_true", help="exit 1 when committed files differ from a fresh render")
    derive.add_argument("--workers", type=int, default=2, help="processes for the proofs (default 2)")
    derive.set_defaults(run=_derive)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
