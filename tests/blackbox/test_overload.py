#!/usr/bin/env python3
"""Past capacity: 5 nodes that coordinate at most 8 client operations each
at once (--max-inflight 8) under 256 closed-loop clients (dht-bench --pairs:
PUT a random key, GET it back). The overflow must be answered
SYSTEM_OVERLOAD (which the clients wait out and resend), never
INTERNAL_FAILURE, and every acknowledged PUT must read back.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_overload.py
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402

NODES, CLIENTS, SECONDS = 5, 256, 5


def bench(c, *args):
    exe = os.path.join(os.path.dirname(dht.server_binary()), "dht-bench")
    servers = ",".join("%s:%d" % c.addr(i) for i in range(c.n))
    p = subprocess.run([exe, "--summary", "-s", servers] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "dht-bench: exit %d: %s%s" % (p.returncode, p.stdout, p.stderr)
    return {k: v for k, v in (kv.split("=", 1) for kv in p.stdout.split())}


def test_past_capacity_clients_are_told_to_wait_not_failed():
    c = dht.Cluster(NODES, extra_args=["--max-inflight", "8"])
    c.start()
    c.wait_ready(timeout=15)
    c.wait_counts(NODES, 15)
    s = bench(c, "--pairs", "--clients", CLIENTS, "--seconds", SECONDS)
    n = {k: float(v) for k, v in s.items() if k[0].isalpha() and v.replace(".", "").isdigit()}
    print("  %d clients on %d nodes (--max-inflight 8): %.0f pairs/s, %d overload answers, "
          "%d resends, %d unanswered (%.3f%%), INTERNAL_FAILURE %d, other errors %d, "
          "lost %d, wrong %d, p99 %.1f ms (seed %s)"
          % (CLIENTS, NODES, n["pairs_per_s"], n["overloads"], n["retries"], n["failed"],
             n["failed_pct"], n["err_0x04"], n["errors"] - n["err_0x04"], n["lost"], n["wrong"],
             n["p99_us"] / 1000, s["seed"]))
    assert n["pairs"] > 0, "no pair completed"
    assert n["overloads"] > 0, "no SYSTEM_OVERLOAD answer past capacity"
    assert n["err_0x04"] == 0, "%d INTERNAL_FAILURE answers" % n["err_0x04"]
    assert n["errors"] == 0, "error answers: %s" % {k: v for k, v in s.items() if k.startswith("err_")}
    assert n["lost"] == 0 and n["wrong"] == 0, \
        "acknowledged PUTs that did not read back: %d lost, %d wrong" % (n["lost"], n["wrong"])
    assert n["failed_pct"] < 1.0, "%.2f%% of requests unanswered after every try" % n["failed_pct"]
    for i in range(NODES):
        assert c.running(i), "node %d exited" % i


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
