#!/usr/bin/env bash
# A seed replays exactly: two processes running the same seed print the same
# trace, byte for byte (so nothing in a run depends on addresses, the clock
# or the environment).
set -euo pipefail
sim="$1"
seed="${2:-7}"
a=$("$sim" --seed "$seed" --trace | sha256sum)
b=$("$sim" --seed "$seed" --trace | sha256sum)
echo "seed $seed: trace $a"
[ "$a" = "$b" ] || { echo "seed $seed: the second run's trace differs: $b"; exit 1; }
