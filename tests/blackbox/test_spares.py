#!/usr/bin/env python3
"""Re-replication volume and spare copies.

After a death in 10 nodes, only the dead node's copies move: about two
pushes per record it held, not every record to every replica. After 2 nodes
join 3 (300 keys, N=3: each of the 3 holds every key), the nodes that are no
longer replicas of a key drop their copies once the new replicas hold it, so
every key ends with exactly N copies and still reads its value; with
--sync-ms 200 the membership counts as still after 15 periods (3 s).

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_spares.py
"""
import os
import re
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


def holders(c, b, keys, nodes):
    """Per key, the nodes of nodes that hold it (with its value), all read in
    one pass: counts taken from two passes would mix two moments."""
    got = b.peer_reads([(c.addr(i), k) for k in keys for i in nodes])
    out = []
    for j, k in enumerate(keys):
        row = got[j * len(nodes):(j + 1) * len(nodes)]
        out.append({i for i, g in zip(nodes, row) if isinstance(g, tuple) and g[0] == b"v-" + k})
    return out


def copies(c, b, keys, nodes):
    """Per key, how many of nodes hold it (with its value)."""
    return [len(h) for h in holders(c, b, keys, nodes)]


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
    joined = [3, 4]
    peak = 0
    counts = []
    on_joined = 0
    deadline = t0 + 20
    while time.monotonic() < deadline:
        # Exactly N copies is also where the count starts (the 3 first nodes
        # hold every key), so it is the end only once the joined nodes hold
        # their share of the keys.
        held = holders(c, b, keys, every)
        counts = [len(h) for h in held]
        on_joined = sum(len(h & set(joined)) for h in held)
        peak = max(peak, sum(counts))
        if counts == [REPLICAS] * KEYS and on_joined > 0:
            break
        time.sleep(0.5)
    dt = time.monotonic() - t0
    print("  after 2 nodes joined: up to %d copies of %d keys, %d after %.1f s (%d wanted), "
          "%d on the joined nodes" % (peak, KEYS, sum(counts), dt, REPLICAS * KEYS, on_joined))
    assert on_joined > 0, "the joining nodes never received their ranges"
    assert peak > REPLICAS * KEYS, "spare copies went before the joined nodes held the keys"
    extra = [(k, n) for k, n in zip(keys, counts) if n != REPLICAS]
    assert not extra, "keys without exactly %d copies after %.0f s: %s" % (REPLICAS, dt, extra[:10])
    # every key still reads its value through every node
    ops = [(c.addr(i), dht.GET, k, b"", 0) for k in keys for i in every]
    bad = [op[2] for op, r in zip(ops, b.client_ops(ops))
           if r is None or r.err != OK or r.value != b"v-" + op[2]]
    assert not bad, "%d reads failed after the cleanup: %s" % (len(bad), bad[:10])


def pushed(c):
    """Records the nodes logged as pushed by re-replication so far."""
    total = 0
    for i in range(c.n):
        with open(c.log_path(i), "rb") as f:
            total += sum(int(m) for m in re.findall(rb"re-replication: pushed (\d+) records", f.read()))
    return total


def test_a_death_moves_only_the_dead_nodes_copies():
    """After a death each record goes only to replicas it did not have: about
    two pushes (one from each surviving copy) for each record the dead node
    held, not every record to every replica."""
    n, keys = 10, 3000
    c = dht.Cluster(n)                      # logs on: pushes are counted from them
    b = Bulk(timeout=0.3, tries=8)
    c.start()
    c.wait_ready(timeout=15)
    c.wait_counts(n, 15)
    names = [b"r%05d" % k for k in range(keys)]
    got = b.client_ops([(c.addr(k % n), dht.PUT, key, b"v-" + key, 1) for k, key in enumerate(names)])
    assert all(r is not None and r.err == OK for r in got), "PUTs failed"
    time.sleep(1.0)                         # the start-up sweeps are over
    held = sum(1 for g in b.peer_reads([(c.addr(n - 1), k) for k in names]) if isinstance(g, tuple))
    before = pushed(c)
    c.kill(n - 1)
    c.wait_counts(n - 1, 15, nodes=range(n - 1))
    time.sleep(1.0)                         # the sweeps after the death
    moved = pushed(c) - before
    every = keys * REPLICAS * (REPLICAS - 1)  # every record to its 2 other replicas
    print("  node %d held %d of %d keys; after its death %d records pushed "
          "(pushing every record to its replicas: %d)" % (n - 1, held, keys, moved, every))
    assert held > 0 and moved >= held, "the dead node's records were not re-replicated"
    assert moved <= 3 * held, "%d records pushed for %d lost copies" % (moved, held)
    short = [k for k, m in zip(names, copies(c, b, names, range(n - 1))) if m < REPLICAS]
    assert not short, "keys short of %d copies after the death: %s" % (REPLICAS, short[:10])


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
