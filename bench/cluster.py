#!/usr/bin/env python3
"""Cluster benchmarks (figures, not pass/fail): a local cluster on loopback.

  1. membership: time for every node to report N members, when each node's
     peers file lists every node, and when it lists only node 0 (the rest is
     learnt by gossip);
  2. failure detection: SIGKILL one node, time until each survivor lists it
     as dead (median and worst over the survivors), a few rounds; time for a
     restarted node to be counted by all again;
  3. idle CPU of all nodes together, with --keys keys loaded;
  4. dht-bench against all nodes (ops/s, p50/p99/p999);
  5. false positives: dht-bench at full load for --fp-seconds while no node
     fails; every "suspect"/"dead" verdict any node logs is a false positive.

Usage: bench/cluster.py [-n 40] [--rounds 3] [--keys 10000] [--bench-seconds 10]
                        [--fp-seconds 300] [--clients 50]
Builds nothing: run scripts/build first (uses build/).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import dht  # noqa: E402

BUILD = os.environ.get("DHT_BIN", os.path.join(ROOT, "build"))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])      # utime, stime
    return total / TICKS


def states(c, i, cl):
    """{port: state} as node i lists its members, or None."""
    try:
        return {port: st for _, port, st in
                dht.parse_member_list(cl.request(dht.GET_MEMBERSHIP_LIST, addr=c.addr(i),
                                                 timeout=0.2, retries=3).value)}
    except dht.Timeout:
        return None


def converge(n, seed_only):
    """Seconds from starting n nodes until all report n members."""
    base = dht.free_port_range(n)
    peers = ["127.0.0.1:%d" % base] if seed_only else None
    c = dht.Cluster(n, base_port=base, peers=peers, extra_args=["--quiet"])
    t0 = time.monotonic()
    c.start()
    c.wait_ready(timeout=30)
    c.wait_counts(n, 60)
    dt = time.monotonic() - t0
    c.cleanup()
    print("membership, peers file lists %s: all %d nodes report %d members %.2f s after start"
          % ("only node 0" if seed_only else "every node", n, n, dt))
    return dt


def detection(c, n, rounds):
    cl = dht.Client(c.addr(0), timeout=0.2, retries=3)
    worst, medians, rejoins = [], [], []
    for r in range(rounds):
        victim = 1 + (r * 7) % (n - 1)
        port = c.port(victim)
        survivors = [i for i in range(n) if i != victim]
        c.kill(victim)
        t0 = time.monotonic()
        seen = {}
        while len(seen) < len(survivors) and time.monotonic() - t0 < 30:
            for i in survivors:
                if i in seen:
                    continue
                st = states(c, i, cl)
                if st is not None and st.get(port) == "dead":
                    seen[i] = time.monotonic() - t0
            time.sleep(0.02)
        ts = sorted(seen.values())
        if len(ts) < len(survivors):
            print("  round %d: only %d of %d survivors saw node %d dead within 30 s"
                  % (r + 1, len(ts), len(survivors), victim))
            continue
        worst.append(ts[-1])
        medians.append(ts[len(ts) // 2])
        print("  round %d: node %d SIGKILLed; dead at all %d survivors after %.2f s "
              "(median %.2f s)" % (r + 1, victim, len(survivors), ts[-1], ts[len(ts) // 2]))
        c.start(victim)
        t1 = time.monotonic()
        c.wait_counts(n, 30)
        rejoins.append(time.monotonic() - t1)
    cl.close()
    if worst:
        print("failure detection: worst survivor %.2f s (max over rounds), median survivor "
              "%.2f s; restarted node counted by all after %.2f s (max)"
              % (max(worst), sorted(medians)[len(medians) // 2], max(rejoins)))


def bench(c, n, seconds, clients, extra=()):
    cmd = [os.path.join(BUILD, "dht-bench"), "-c", str(clients), "-d", str(seconds), "--json"]
    for i in range(n):
        cmd += ["-s", "%s:%d" % c.addr(i)]
    out = subprocess.run(cmd + list(extra), stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def verdicts(c, n):
    """Per node, every "suspect"/"dead" line it logged so far."""
    out = []
    for i in range(n):
        try:
            with open(c.log_path(i), "rb") as f:
                out.append([line.decode("utf-8", "replace").rstrip() for line in f
                            if b" is suspect" in line or b" is dead" in line])
        except OSError:
            out.append([])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--bench-seconds", type=int, default=10)
    ap.add_argument("--fp-seconds", type=int, default=300)
    ap.add_argument("--clients", type=int, default=50)
    a = ap.parse_args()
    n = a.n
    print("%d nodes on loopback, %d cores; build %s" % (n, os.cpu_count(), BUILD))

    converge(n, False)
    converge(n, True)

    c = dht.Cluster(n)            # logs on: verdicts are counted from them
    c.start()
    c.wait_ready(timeout=30)
    c.wait_counts(n, 60)
    detection(c, n, a.rounds)

    r = bench(c, n, 5, a.clients, ["-k", str(a.keys), "--preload", "-r", "0.9"])
    pids = [c.pid(i) for i in range(n)]
    time.sleep(3)
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(10)
    cpu = (cpu_seconds(pids) - cpu0) / (time.monotonic() - t0)
    print("idle CPU, %d nodes with %d keys: %.1f%% of one core in all (%.2f%% a node)"
          % (n, a.keys, cpu * 100, cpu * 100 / n))

    for mix, rf in (("90% GET / 10% PUT", 0.9), ("100% PUT", 0.0)):
        r = bench(c, n, a.bench_seconds, a.clients,
                  ["-k", str(a.keys), "-r", str(rf), "--value-size", "100"])
        print("dht-bench, %d clients over all %d nodes, %s, 100-byte values: %.0f ops/s, "
              "p50 %d us, p99 %d us, p999 %d us, %d errors, %d timeouts"
              % (a.clients, n, mix, r["ops_per_sec"], r["p50_us"], r["p99_us"], r["p999_us"],
                 r.get("errors", 0), r.get("timeouts", 0)))

    if a.fp_seconds > 0:
        before = verdicts(c, n)
        r = bench(c, n, a.fp_seconds, a.clients, ["-k", str(a.keys), "-r", "0.9"])
        lines = [l for old, now in zip(before, verdicts(c, n)) for l in now[len(old):]]
        fp = len(lines)
        for line in lines[:10]:
            print("  " + line)
        counts = c.counts()
        print("false positives: %d suspect/dead verdicts during %d s of full load "
              "(%.0f ops/s, p99 %d us); membership counts after: %s"
              % (fp, a.fp_seconds, r["ops_per_sec"], r["p99_us"],
                 sorted(set(v for v in counts.values()))))
    c.cleanup()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
    main()
