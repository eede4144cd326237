#!/bin/bash
# ab.sh ROUNDS CELL SIZE DTYPE PHASE CALLS: A/B of the kernels in alternating processes (issue 37): A the base tree
# (its own venv, /tmp/h37-venv, editable install of a worktree at /tmp/h37-base), B main (/work/main/.venv);
# each process prints ab_calls.py's JSON line (medians of CALLS calls, wall and process CPU)
R=$1; shift
for r in $(seq $R); do
  for side in A B; do
    if [ $side = A ]; then py=/tmp/h37-venv/bin/python; else py=/work/main/.venv/bin/python; fi
    echo "$side $($py /work/main/benchmarks/cpu_profile_issue37/ab_calls.py "$@")"
  done
done
