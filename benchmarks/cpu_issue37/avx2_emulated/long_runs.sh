#!/usr/bin/env bash
# Issue 37's long runs with the kernels built as for an AVX2-only CPU (kernels/cpu/emulate.py): every cell, 200
# cases, seeds 0-2, on the paths AVX2's code takes (6 x 1 tiles, 4-vector blocks): the panels forced with the
# batch in halves and on the whole batch, the split forced, and each cell's own choice; two runs at a time.
#   bash benchmarks/cpu_issue37/avx2_emulated/long_runs.sh > benchmarks/cpu_issue37/avx2_emulated/long_runs.log
set -uo pipefail
runs=()
for seed in 0 1 2; do
  for cell in lstm lstm-proj lstm-peephole lstm-coupled gru-reset-after mgu-flax elman; do
    runs+=("RNNSPEC_CPU_PANELS=always RNNSPEC_CPU_ROWS=always|$cell|$seed")
  done
  for cell in lstm gru-reset-after elman; do runs+=("RNNSPEC_CPU_PANELS=always RNNSPEC_CPU_ROWS=never|$cell|$seed"); done
  for cell in lstm gru-reset-after; do runs+=("RNNSPEC_CPU_SPLIT=always|$cell|$seed"); done
  for cell in gru-reset-before mgu; do runs+=("|$cell|$seed"); done
done
logs=$(mktemp -d)
one() {  # index|settings|cell|seed -> $logs/index.log
  IFS='|' read -r index settings cell seed <<< "$1"
  start=$(date -u +%H:%M:%S)
  # shellcheck disable=SC2086  # settings: words of VAR=value
  env $settings python -m rnnspec.kernels.cpu.emulate avx2 \
    rnnspec check rnnspec-cpu --cell "$cell" --examples 200 --seed "$seed" > "$logs/$index.out" 2>&1
  rc=$?
  { echo "## $settings rnnspec check rnnspec-cpu --cell $cell --examples 200 --seed $seed   (built as for AVX2;" \
         "start $start UTC, exit $rc)"
    cat "$logs/$index.out"; echo; } > "$logs/$index.log"
}
export -f one
export logs
echo "# issue 37 long runs built as for AVX2 at $(git rev-parse --short HEAD) ($(date -u '+%Y-%m-%d %H:%M:%S') UTC):" \
     "${#runs[@]} runs, two at a time"
echo
for k in "${!runs[@]}"; do printf '%03d|%s\n' "$k" "${runs[$k]}"; done | xargs -P 2 -I{} bash -c 'one "$1"' _ {}
for k in "${!runs[@]}"; do cat "$logs/$(printf '%03d' "$k").log"; done
rm -r "$logs"
