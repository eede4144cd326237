"""Minor page faults a call of the kernels takes, warm (after 3 calls), over 20 calls of each phase: memory fresh from
the system is faulted in page by page as a call first writes it.

    python benchmarks/cpu_issue37/aligned/page_faults.py CELL SIZE [DTYPE]
"""

from __future__ import annotations

import resource
import sys

from rnnspec.kernels.cpu.bench import SIZES, make_case, runner


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(cell: str, size: str, dtype: str) -> None:
    case = make_case(*SIZES[size], dtype, cell=cell)
    for phase, call in zip(("forward", "train"), runner("rnnspec-cpu", cell)(case)):
        for _ in range(3):
            call()
        before, calls = faults(), 20
        for _ in range(calls):
            call()
        print(f"{cell} {size} {dtype} {phase}: {(faults() - before) / calls:.0f} minor page faults a call")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "float32")
