#!/usr/bin/env python3
"""Spare copies: after nodes join, the nodes that were replicas of a key and
no longer are drop their copies once the new replicas hold the key, so every
key ends with exactly N copies, and every key still reads its value.

3 nodes take 300 keys (N=3: each node holds every key), 2 more join; with
--sync-ms 200 the membership counts as still after 15 periods (3 s).

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_spares.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dht  # noqa: E402
from dht import OK  # noqa: E402
from test_faults import Bulk  # noqa: E402

KEYS = 300
REPLICAS = 3
ARGS = ["--sync-ms", "200"]


def copies(c, b, keys, nodes):
    """Per key, how many of nodes hold it (with its value)."""
    got = b.peer_reads([(c.addr(i), k) for k in keys for i in nodes])
    out = []
    for j, k in enumerate(keys):
        row = got[j * len(nodes):(j + 1) * len(nodes)]
        out.append(sum(1 for g in row if isinstance(g, tuple) and g[0] == b"v-" + k))
    return out


def test_spare_copies_go_after_a_join():
    c = dht.Cluster(5, extra_args=ARGS)
    b = Bulk(timeout=0.3, tries=8)
    first = [0, 1, 2]
    for i in first:
        c.start(i)
    c.wait_ready(timeout=15, nodes=first)
    c.wait_counts(3, 15, nodes=first)       # nodes 3 and 4 (listed, not started) are dead
    keys = [b"s%04d" % k for k in range(KEYS)]
    got = b.client_ops([(c.addr(k % 3), dht.PUT, key, b"v-" + key, 1) for k, key in enumerate(keys)])
    assert all(r is not None and r.err == OK for r in got), "PUTs failed"
    assert copies(c, b, keys, first) == [3] * KEYS, "3 nodes, N=3: every node holds every key"

    c.start(3)
    c.start(4)
    t0 = time.monotonic()
    c.wait_ready(timeout=15)
    c.wait_counts(5, 15)
    every = list(range(5))
    peak = 0
    counts = []
    deadline = t0 + 20
    while time.monotonic() < deadline:
        counts = copies(c, b, keys, every)
        peak = max(peak, sum(counts))
        if counts == [REPLICAS] * KEYS:
            break
        time.sleep(0.5)
    dt = time.monotonic() - t0
    print("  after 2 nodes joined: up to %d copies of %d keys, %d after %.1f s (%d wanted)"
          % (peak, KEYS, sum(counts), dt, REPLICAS * KEYS))
    assert peak > REPLICAS * KEYS, "the joining nodes never received their ranges"
    extra = [(k, n) for k, n in zip(keys, counts) if n != REPLICAS]
    assert not extra, "keys without exactly %d copies after %.0f s: %s" % (REPLICAS, dt, extra[:10])
    # every key still reads its value through every node
    ops = [(c.addr(i), dht.GET, k, b"", 0) for k in keys for i in every]
    bad = [op[2] for op, r in zip(ops, b.client_ops(ops))
           if r is None or r.err != OK or r.value != b"v-" + op[2]]
    assert not bad, "%d reads failed after the cleanup: %s" % (len(bad), bad[:10])


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
