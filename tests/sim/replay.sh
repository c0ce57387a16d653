#!/usr/bin/env bash
# A seed replays exactly: two processes running the same seed print the same
# trace, byte for byte (so nothing in a run depends on addresses, the clock
# or the environment).
set -euo pipefail
sim="$1"
seed="${2:-7}"
# the last line ("1 run, 0 failed, 0.1 s") gives the wall time: not part of the trace
trace() { "$sim" --seed "$seed" --trace | grep -v '^[0-9]* runs\?, [0-9]* failed, '; }
a=$(trace | sha256sum)
b=$(trace | sha256sum)
echo "seed $seed: trace $a"
[ "$a" = "$b" ] || { echo "seed $seed: the second run's trace differs: $b"; exit 1; }
