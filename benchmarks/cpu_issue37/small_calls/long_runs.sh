#!/usr/bin/env bash
# The loops' held rows skipped where none is held (4522cba) touch every cell's loops: every cell over 200 cases on
# seeds 0-2, on its own paths over full sequences (no row held) and as two directions on sequences of their own
# lengths (rows held: the loops' other branch); two runs at a time.
#   bash benchmarks/cpu_issue37/small_calls/long_runs.sh > benchmarks/cpu_issue37/small_calls/long_runs.log
# CELLS="lstm gru-reset-after" runs those cells only; FULL_ONLY=1 leaves out the two-direction runs.
set -uo pipefail
cells=${CELLS:-$(python -c "from rnnspec.kernels.cpu import cells; print(' '.join(cells.names()))")}
runs=()
for seed in 0 1 2; do
  for cell in $cells; do
    runs+=("|$cell|$seed")
    if [ -z "${FULL_ONLY:-}" ]; then runs+=("bidirectional,lengths=zero|$cell|$seed"); fi
  done
done
logs=$(mktemp -d)
one() {  # index|variant|cell|seed -> $logs/index.log
  IFS='|' read -r index variant cell seed <<< "$1"
  start=$(date -u +%H:%M:%S)
  rnnspec check rnnspec-cpu --cell "$cell" ${variant:+--variant "$variant"} --examples 200 --seed "$seed" \
    > "$logs/$index.out" 2>&1
  rc=$?
  { echo "## rnnspec check rnnspec-cpu --cell $cell ${variant:+--variant $variant }--examples 200 --seed $seed" \
         "  (start $start UTC, exit $rc)"
    grep -v '^\[\|^units:' "$logs/$index.out"; echo; } > "$logs/$index.log"
}
export -f one
export logs
echo "# issue 37 long runs at $(git rev-parse --short HEAD) ($(date -u '+%Y-%m-%d %H:%M:%S') UTC): ${#runs[@]} runs," \
     "two at a time"
echo
for k in "${!runs[@]}"; do printf '%03d|%s\n' "$k" "${runs[$k]}"; done | xargs -P 2 -I{} bash -c 'one "$1"' _ {}
for k in "${!runs[@]}"; do cat "$logs/$(printf '%03d' "$k").log"; done
echo "# ended $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
rm -r "$logs"
