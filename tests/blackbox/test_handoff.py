#!/usr/bin/env python3
"""Hinted handoff: a replica cut off (iptables on loopback) for a few seconds,
suspected but never declared dead, receives the writes it missed from the
stand-ins once it is back, with anti-entropy turned off (--sync-ms 600000)
and no membership change (so no re-replication sweep) to do it instead.

5 nodes, N=4: each key has one non-replica, which stands in for a silent
replica. Needs root for iptables.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_handoff.py
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dht  # noqa: E402
from dht import OK  # noqa: E402
from test_faults import Bulk, Partition  # noqa: E402

NODES, X = 5, 4
KEYS = 300
ARGS = ["--replicas", "4", "--suspect-ms", "300", "--dead-ms", "30000", "--sync-ms", "600000"]
S = {}


def states(c, i):
    with c.client(i, timeout=0.2, retries=5) as cl:
        return {port: st for _, port, st in cl.members()}


def test_cut_off_replica_gets_the_writes_it_missed():
    c = dht.Cluster(NODES, extra_args=ARGS)
    S["cluster"] = c
    c.start()
    c.wait_ready(timeout=15)
    c.wait_counts(NODES, 15)
    others = [i for i in range(NODES) if i != X]
    px = c.port(X)
    cut = Partition((px, px), (c.port(0), c.port(X - 1)))
    cut.apply()
    try:
        dht.wait_until(lambda: all(states(c, i).get(px) == "suspect" for i in others), 10,
                       what="node %d suspected by the others" % X)
        b = Bulk(timeout=0.5, tries=8)
        keys = [b"h%04d" % k for k in range(KEYS)]
        ops = [(c.addr(others[k % len(others)]), dht.PUT, key, b"v-" + key, 1)
               for k, key in enumerate(keys)]
        got = b.client_ops(ops)
        bad = [k for k, r in zip(keys, got) if r is None or r.err != OK]
        assert not bad, "PUTs failed while node %d was cut off: %s" % (X, bad[:5])
        time.sleep(1.0)   # past the coordinators' deadline: they stop resending to X
        before = b.peer_reads([(c.addr(i), k) for i in others for k in keys])
        held_by_others = sum(1 for g in before if isinstance(g, tuple))
    finally:
        cut.heal()
    dht.wait_until(lambda: all(states(c, i).get(px) == "alive" for i in others), 10,
                   what="node %d alive again" % X)
    # hints go out every 250 ms once the replica is alive
    deadline = time.monotonic() + 5
    while True:
        held = b.peer_reads([(c.addr(X), k) for k in keys])
        n = sum(1 for g in held if isinstance(g, tuple) and g[0].startswith(b"v-"))
        if n >= KEYS * 0.6 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    print("  %d keys written while node %d was cut off (%d copies on the other 4); "
          "it holds %d of them after the heal (a replica of ~%d)"
          % (KEYS, X, held_by_others, n, KEYS * 4 // 5))
    # each key has 4 replicas among 5 nodes: node X is one for ~80% of them
    assert n >= KEYS * 0.6, "node %d got only %d of the %d keys it missed" % (X, n, KEYS)
    with c.client(X) as cl:
        assert cl.count() == NODES


if __name__ == "__main__":
    rc = dht.run_tests(globals())
    sys.exit(rc)
