"""``python -m rnnspec.kernels.cpu.tune [--show] [--busy-ok]``: measure the CPU kernels' path-choosing thresholds
on this machine and cache them where the kernels read them (:mod:`rnnspec.kernels.cpu.tuning`); ``--show`` prints
the values in use and where they come from; ``--busy-ok`` measures on a busy machine too.

A module of its own, which nothing imports: run as a script, the tuning module itself would be loaded twice
(the kernels import it before ``-m`` runs it).
"""

import sys

from rnnspec.kernels.cpu.tuning import main

if __name__ == "__main__":
    sys.exit(main())
