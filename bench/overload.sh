#!/usr/bin/env bash
# Overload benchmark (issue 10; figures, not pass/fail): local clusters on
# loopback driven past capacity by dht-bench's closed-loop --pairs clients
# (each PUTs a fresh random 32-byte key with an 8-byte value, then GETs it
# back; SYSTEM_OVERLOAD answers are waited for and resent with the same ID).
#
#   ladder:   for each cluster size (--nodes, "10 40") a fresh cluster, and
#             for each client count (--clients, "1 16 64 128 256 512 1024 2048")
#             a run of --seconds (12) after wiping every node. One row a run:
#             goodput (good pairs/s: PUT acknowledged, GET read it back),
#             ops/s, latency of ops (first send to final answer, resends and
#             overload waits included) p50/p99/p999 in ms, overload answers,
#             resends after a timeout, requests unanswered after every try
#             (% of requests), INTERNAL_FAILURE answers, other error answers,
#             mismatches (a GET lost the key or read another value), the
#             suspect/dead verdicts the nodes logged meanwhile (none fails, so
#             every one is false), and the machine's CPU during the run (share
#             of all cores): the nodes', dht-bench's, and everything else's
#             (the machine may be shared: a busy neighbour takes cores from
#             the nodes).
#   capacity: (--capacity, or --capacity-only) a fresh cluster of --cap-nodes
#             (40); --cap-keys (20,000) keys of --cap-value (1,000) bytes
#             written through random nodes; then --cap-kill (20) nodes
#             SIGKILLed, one every --cap-every (20) s, and after each kill
#             every key read back through the survivors: lost (no such key),
#             wrong value, unanswered, errors.
#
# Usage: bench/overload.sh [--nodes "10 40"] [--clients "1 16 64 ..."] [--seconds 12]
#            [--capacity | --capacity-only] [--cap-nodes 40] [--cap-keys 20000]
#            [--cap-value 1000] [--cap-kill 20] [--cap-every 20] [--seed N]
#            [--base-port P] [--dir /tmp/dht-overload] [--pause 2]
#            [--server-arg ARG]... [--bench-arg ARG]...
# e.g. bench/overload.sh --nodes 10 --clients "16 256" --seconds 5     (a quick look)
#      bench/overload.sh --capacity-only --cap-every 5                 (capacity, shorter)
#      bench/overload.sh --server-arg --request-timeout --server-arg 200
# Needs scripts/build (uses build/). Node I listens on 127.0.0.1:BASE+I (BASE:
# --base-port, or a free range outside the ephemeral ports, as the tests pick); the
# peers file, node logs and every dht-bench summary line (summary.txt) are
# in DIR. Every node started is stopped on exit (trap). Each dht-bench run is
# bounded by timeout(1). About 2 minutes a cluster size for the default
# ladder, 8 more for the capacity run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build
nodes="10 40"
clients="1 16 64 128 256 512 1024 2048"
seconds=12
ladder=1
capacity=0
cap_nodes=40 cap_keys=20000 cap_value=1000 cap_kill=20 cap_every=20
seed=$((RANDOM * 32768 + RANDOM))
base_opt=
dir=/tmp/dht-overload
pause=2
server_args=()
bench_args=()

die() { echo "bench/overload.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --capacity) capacity=1; shift ;;
    --capacity-only) capacity=1; ladder=0; shift ;;
    --cap-nodes) cap_nodes="$2"; shift 2 ;;
    --cap-keys) cap_keys="$2"; shift 2 ;;
    --cap-value) cap_value="$2"; shift 2 ;;
    --cap-kill) cap_kill="$2"; shift 2 ;;
    --cap-every) cap_every="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --base-port) base_opt="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --pause) pause="$2"; shift 2 ;;
    --server-arg) server_args+=("$2"); shift 2 ;;
    --bench-arg) bench_args+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/overload.sh: unknown option $1 (try --help)" >&2; exit 64 ;;
  esac
done
[ -x "$bin/dht-bench" ] && [ -x "$bin/dht-server" ] || die "build first (scripts/build)"
[ "$cap_kill" -lt "$cap_nodes" ] || die "--cap-kill must be below --cap-nodes"
mkdir -p "$dir"
raw="$dir/summary.txt"
: > "$raw"
cdir="$dir/cluster"

cluster() { scripts/cluster --dir "$cdir" "$@"; }
up=0
stop_cluster() {
  if [ "$up" = 1 ]; then
    timeout 60 scripts/cluster --dir "$cdir" stop-all >/dev/null 2>&1 || true
    up=0
  fi
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM HUP

# kv KEY: the value of KEY in the summary line $line.
kv() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p"; }
ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }
hz=$(getconf CLK_TCK)
cores=$(nproc)
busy() { awk '/^cpu / { print $2 + $3 + $4 + $9 }' /proc/stat; } # user+nice+system+steal jiffies, all cores
node_cpu() { # jiffies used so far by the cluster's nodes
  local pid t=0
  for pid in $(grep -o '"pid": [0-9]*' "$cdir/state.json" | cut -d' ' -f2); do
    t=$((t + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b > 0 ? 100 * a / b : 0) }'; }
verdicts() { cat "$cdir"/node*.log 2>/dev/null | grep -cE ' is (suspect|dead) \(' || true; }

# start N: a fresh cluster of N nodes, every one listing N members.
start() {
  local n=$1 t=0
  rm -rf "$cdir"
  base=${base_opt:-$(python3 -c 'import sys; sys.path.insert(0, "tests/lib"); import dht
print(dht.free_port_range(int(sys.argv[1])))' "$n")}
  cluster start -n "$n" --base-port "$base" --wait 30 -- "${server_args[@]}" >/dev/null
  up=1
  while [ "$(cluster status | awk -v n="$n" '$5 == "yes" && $6 == n' | wc -l)" -lt "$n" ]; do
    t=$((t + 1))
    [ $t -lt 60 ] || die "$n nodes did not all see $n members within 30 s"
    sleep 0.5
  done
  sleep 2 # let the first gossip rounds and re-replication pass
}

wipe() { # N: every node empties its store
  local i
  for ((i = 0; i < $1; i++)); do
    "$bin/dht-cli" -s "127.0.0.1:$((base + i))" wipeout >/dev/null 2>&1 || true
  done
}

# bench ARGS...: one dht-bench --summary run into $line (and summary.txt).
bench() {
  local limit
  limit=$(awk -v s="$seconds" 'BEGIN { print s + 120 }')
  line=$(timeout "$limit" "$bin/dht-bench" --summary "$@" "${bench_args[@]}") || true
  echo "$line" >> "$raw"
  [ -n "$line" ] || echo "  dht-bench $* printed nothing" >&2
}

echo "# bench/overload.sh $(date -u '+%F %T UTC'), $(git rev-parse --short HEAD 2>/dev/null)," \
     "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# server args: ${server_args[*]:-(defaults)}; seed $seed; dht-bench summary lines in $raw"

if [ "$ladder" = 1 ]; then
  echo
  echo "| nodes | clients | goodput pairs/s | ops/s | p50 ms | p99 ms | p999 ms | overload answers" \
       "| resends | unanswered % | INTERNAL_FAILURE | other errors | mismatches | false verdicts" \
       "| CPU nodes/bench/other % |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for n in $nodes; do
    start "$n"
    for c in $clients; do
      wipe "$n"
      sleep "$pause"
      v0=$(verdicts) b0=$(busy) n0=$(node_cpu) t0=$(date +%s.%N)
      bench --peers "$cdir/peers" --pairs -c "$c" --seconds "$seconds" --seed "$seed"
      [ -n "$line" ] || continue
      all=$(awk -v a="$t0" -v b="$(date +%s.%N)" -v h="$hz" -v c="$cores" 'BEGIN { print (b - a) * h * c }')
      nodes_j=$(( $(node_cpu) - n0 ))
      bench_j=$(awk -v p="$(kv client_cpu_pct)" -v a="$t0" -v b="$(date +%s.%N)" -v h="$hz" \
                'BEGIN { print p / 100 * (b - a) * h }')
      other_j=$(awk -v x="$(( $(busy) - b0 ))" -v n="$nodes_j" -v m="$bench_j" 'BEGIN { x -= n + m; print (x > 0 ? x : 0) }')
      other=$(( $(kv errors) - $(kv err_0x04) ))
      printf '| %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s/%s |\n' \
        "$n" "$c" "$(kv pairs_per_s)" "$(kv ops_per_s)" "$(ms "$(kv p50_us)")" \
        "$(ms "$(kv p99_us)")" "$(ms "$(kv p999_us)")" "$(kv overloads)" "$(kv retries)" \
        "$(kv failed_pct)" "$(kv err_0x04)" "$other" "$(kv mismatches)" \
        "$(( $(verdicts) - v0 ))" "$(pct "$nodes_j" "$all")" "$(pct "$bench_j" "$all")" \
        "$(pct "$other_j" "$all")"
    done
    alive=$(cluster status | tail -1)
    [[ "$alive" == "$n of $n "* ]] || echo "# after the ladder: $alive"
    stop_cluster
  done
fi

if [ "$capacity" = 1 ]; then
  n=$cap_nodes
  echo
  echo "# capacity: $n nodes, $cap_keys keys of $cap_value bytes through random nodes, then" \
       "$cap_kill SIGKILLed one every $cap_every s; every key read back after each kill"
  start "$n"
  common=(-n 0 -c 64 -k "$cap_keys" --value-size "$cap_value" --key-size 16 --seed "$seed")
  bench --peers "$cdir/peers" --preload "${common[@]}"
  echo "# written: $(kv preload_ops) acknowledged, $(kv preload_errors) errors," \
       "$(kv preload_failed) unanswered, $(kv preload_overloads) overload answers"
  echo
  echo "| dead | lost | wrong value | unanswered | errors | read in s |"
  echo "|---|---|---|---|---|---|"
  read_back() { # DEAD: reads every key through the live nodes, prints a row
    local t0 t1
    t0=$(date +%s.%N)
    bench --peers "$dir/survivors" --verify "${common[@]}"
    t1=$(date +%s.%N)
    echo "| $1 | $(kv verify_lost) | $(kv verify_wrong) | $(kv verify_failed) |" \
         "$(kv verify_errors) | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') |"
  }
  cp "$cdir/peers" "$dir/survivors"
  read_back 0
  victims=$(seq 0 $((n - 1)) | shuf --random-source=<(yes "$seed") | head -n "$cap_kill")
  dead=0
  for i in $victims; do
    cluster kill "$i" >/dev/null
    dead=$((dead + 1))
    grep -vx "127.0.0.1:$((base + i))" "$dir/survivors" > "$dir/survivors.tmp" || true
    mv "$dir/survivors.tmp" "$dir/survivors"
    sleep "$cap_every"
    read_back "$dead"
  done
  echo "# killed nodes: $(echo $victims)"
  stop_cluster
fi
