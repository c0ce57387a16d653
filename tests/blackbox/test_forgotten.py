#!/usr/bin/env python3
"""A node back after its peers forgot it must not bring deleted keys back.

3 nodes with data dirs, N=3 (every node a replica of every key), members
forgotten 1 s after their death and tombstones kept 1 s (--forget-ms,
--tombstone-ms; an hour each by default): 60 keys written -> node 2 killed
(SIGKILL: its store keeps them) -> the keys removed through node 0 (W=2 with
nodes 0 and 1) -> node 2 dead, then forgotten, and the tombstones collected
at nodes 0 and 1 (they hold nothing for the keys) -> node 2 restarted on its
data dir: its store still holds the keys' values. Before, anti-entropy
pushed them back and every key came back. Now node 2 holds that store's
records back until it hears its peers' tombstone floor, past its last life:
it drops them (its log says so, /metrics counts them), and every key stays
removed at every node, for several anti-entropy periods.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_forgotten.py
"""
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dht  # noqa: E402
from dht import OK  # noqa: E402
from test_faults import Bulk, ENOKEY  # noqa: E402

N, BACK = 3, 2
KEYS = [b"gone-%02d" % i for i in range(60)]
S = {}


def args(c, http):
    return lambda i: ["--data-dir", c.data_dir(i), "--forget-ms", "1000", "--tombstone-ms", "1000",
                      "--sync-ms", "200", "--suspicion-ms", "500", "--http-port", http[i]]


def holdings(b, c, nodes):
    """What each of nodes holds itself for every key: {node: [value|ENOKEY|None]}."""
    got = b.peer_reads([(c.addr(i), k) for i in nodes for k in KEYS])
    return {i: got[j * len(KEYS):(j + 1) * len(KEYS)] for j, i in enumerate(nodes)}


def test_removed_keys_stay_removed():
    c = dht.Cluster(N)
    http = dht.free_tcp_ports(N)
    c.extra_args = args(c, http)
    S["cluster"] = c
    c.start()
    c.wait_ready(timeout=15)
    c.wait_counts(N, 15)
    b = Bulk(timeout=0.5, tries=8)
    got = b.client_ops([(c.addr(0), dht.PUT, k, b"v-" + k, 1) for k in KEYS])
    assert all(r is not None and r.err == OK for r in got), "PUTs failed"
    dht.wait_until(lambda: all(isinstance(g, tuple) for g in holdings(b, c, [BACK])[BACK]), 10,
                   what="node %d holds every key" % BACK)
    time.sleep(0.6)   # node 2 notes it is alive every 250 ms (--forget-ms / 4)
    c.kill(BACK)
    t_kill = time.monotonic()
    got = b.client_ops([(c.addr(0), dht.REMOVE, k, b"", 0) for k in KEYS])
    assert all(r is not None and r.err == OK for r in got), "REMOVEs failed"

    def collected():
        h = holdings(b, c, [0, 1])
        return all(g == ENOKEY for i in (0, 1) for g in h[i])
    dht.wait_until(collected, 30, what="tombstones collected at nodes 0 and 1")
    print("    tombstones collected at nodes 0 and 1 %.1f s after node %d was killed "
          "(dead, forgotten 1 s later, membership still 6 s)" % (time.monotonic() - t_kill, BACK))
    c.restart(BACK)
    c.wait_ready(timeout=15)
    c.wait_counts(N, 15)
    time.sleep(2.0)   # ten anti-entropy periods: long enough to push everything back
    for _ in range(3):
        h = holdings(b, c, range(N))
        back = {i: sum(1 for g in h[i] if isinstance(g, tuple) and not g[2]) for i in range(N)}
        assert not any(back.values()), "deleted keys came back: %s (values held, by node)" % back
        with c.client(1) as cl:
            found = [k for k in KEYS if cl.get(k).err == OK]
        assert not found, "GET finds %d deleted keys, such as %r" % (len(found), found[:3])
        time.sleep(0.5)
    log = open(c.log_path(BACK), "rb").read().decode("utf-8", "replace")
    assert "dropped its 60 records" in log, c.log_tail(BACK)
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http[BACK], timeout=5) as r:
        metrics = r.read().decode()
    assert "\ndht_outlived_records_total 60\n" in metrics, metrics[-2000:]
    print("    node %d back on its data dir: dropped its 60 records of the last life; "
          "every key still removed at every node after 3.5 s" % BACK)


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
