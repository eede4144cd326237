#!/usr/bin/env bash
# The oracle's speed before and after a commit, in turn on the same machine: compute_expected over 10 cases of every
# cell (and two variants) in both dtypes, its values and tolerances compared bit for bit, then the default
# `rnnspec check rnnspec-cpu` of two cells, twice each. Usage: run.sh BASE_COMMIT > log (from the repository root,
# its venv active; the base runs from a worktree in /tmp, imported as rnnspec through PYTHONPATH).
set -euo pipefail
base=$1; here=$(pwd); work=$(mktemp -d)
git worktree add -q "$work/tree" "$base"
mkdir -p "$work/pkg" && ln -s "$work/tree" "$work/pkg/rnnspec"
trap 'git -C "$here" worktree remove --force "$work/tree"; rm -rf "$work"' EXIT
echo "# $(date -u +%FT%TZ) base $base, now $(git rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo); load $(cut -d' ' -f1-3 /proc/loadavg)"
cd /tmp
echo "## base"; PYTHONPATH=$work/pkg python "$here/benchmarks/oracle_speed/expected_speed.py" "$work/base.pkl" 10
echo "## now"; python "$here/benchmarks/oracle_speed/expected_speed.py" "$work/now.pkl" 10
python "$here/benchmarks/oracle_speed/same_bits.py" "$work/base.pkl" "$work/now.pkl"
echo "## rnnspec check rnnspec-cpu --cell CELL (default settings), wall seconds, warm Numba caches"
for cell in lstm elman; do
  for pp in "$work/pkg" "" "$work/pkg" ""; do
    PYTHONPATH=$pp python -m rnnspec.spec.cli check rnnspec-cpu --cell $cell --quiet > /dev/null || true  # warm-up: compiles
    s=$(date +%s.%N); rc=0; PYTHONPATH=$pp python -m rnnspec.spec.cli check rnnspec-cpu --cell $cell --quiet > /dev/null || rc=$?
    label=now; [ -n "$pp" ] && label=base
    echo "$cell $label rc=$rc $(echo "$(date +%s.%N) - $s" | bc) s"
  done
done
