#!/usr/bin/env bash
# Simulator benchmarks (figures, not pass/fail), all deterministic: the same
# seeds give the same figures on any machine; only the wall-clock times vary.
#
#   1. speed: 10 nodes, 8 clients, the whole fault mix, seeds 1..SEEDS:
#      simulated seconds per wall second, and how many seeds fail;
#   2. membership at 100 and 1,000 nodes (and --big: 5,000 and 10,000), 0% and 2%
#      loss: gossip bytes and datagrams per node per second once formed,
#      time until the others see a killed node dead (median, all), until
#      they see it back, false dead verdicts; and 10 simulated minutes with
#      2% loss and 5% of the nodes stalled for 500 ms at any time.
#
# Usage: bench/sim.sh [--seeds N] [--big]     (uses build/dht-sim; run scripts/build first)
set -euo pipefail
cd "$(dirname "$0")/.."
sim=build/dht-sim
seeds=200
big=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --big) big=1; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "bench/sim.sh: unknown option $1" >&2; exit 64 ;;
  esac
done
[ -x "$sim" ] || { echo "bench/sim.sh: build $sim first (scripts/build)" >&2; exit 1; }

echo "== speed and failures: 10 nodes, full fault mix, seeds 1..$seeds"
out=$("$sim" --seeds "1..$seeds" 2>/dev/null || true)
echo "$out" | awk '
  /^seed [0-9]+: (ok|FAILED)/ { n++; sim += $4; if ($3 == "FAILED,") { f++; s = $2; sub(/:/, "", s); failed = failed " " s } }
  /^[0-9]+ runs?, / { wall = $(NF - 1) }
  END { printf "  %d runs, %d failed%s\n  %.0f s simulated in %.1f s: %.0fx real time\n",
               n, f, f ? " (seeds" failed ")" : "", sim, wall, sim / wall }'

members() { # nodes duration vnodes kill-at [extra dht-sim options...]
  local n=$1 dur=$2 vn=$3 kill=$4 t0 t1
  shift 4
  t0=$(date +%s.%N)
  echo "  $n nodes${*:+ ($*)}:"
  "$sim" --members-only --no-faults --nodes "$n" --duration "$dur" --kill-at "$kill" --vnodes "$vn" \
         --seed 1 "$@" | grep '^members:' | sed 's/^members: /    /'
  t1=$(date +%s.%N)
  echo "    (wall time $(echo "$t1 - $t0" | bc | cut -c1-6) s)"
}

echo "== membership (members only: gossip is the only traffic), kill at 60 s, restart 10 s later"
members 100 75 64 60
members 100 75 64 60 --loss 0.02
members 1000 75 8 60
members 1000 75 8 60 --loss 0.02
echo "== 10 simulated minutes, 2% loss, 5% of nodes stalled 500 ms at any time (false verdicts)"
members 100 600 64 590 --loss 0.02 --stalls 0.05
members 1000 600 8 590 --loss 0.02 --stalls 0.05
if [ "$big" = 1 ]; then
  # a cluster this size forms for longer: kill at 90 s (about 7 GB and 22 GB of memory)
  members 5000 105 1 90
  members 10000 105 1 90
fi
