#!/usr/bin/env python3
"""Redis Cluster mode in a cluster where one node runs without a Redis port
(no --resp-port): every member's gossip entry says whether it runs one
(no_resp), so the nodes with one never send a Redis client to it
(src/repl.h: repl_slot_redirect).

3 nodes, N=3: nodes 0 and 1 with --resp-port and --resp-cluster, node 2
without. Before, nodes 0 and 1 took node 2's Redis port to be at their own
offset from its UDP port, where nothing listens: CLUSTER SLOTS named that
port for the slots node 2 is first for, and -MOVED sent their clients there.
- CLUSTER NODES at nodes 0 and 1 flags node 2 noaddr, with Redis port 0
  and no slots;
- their CLUSTER SLOTS lists every slot, and only nodes 0 and 1;
- 300 keys set through either node, following -MOVED as a cluster client
  does, are all served, every -MOVED naming node 0's or node 1's Redis
  port, and read back at the node CLUSTER SLOTS names for their slot.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_cluster_resp_mixed.py
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from test_single_resp import Err, Resp  # noqa: E402

SLOTS = 16384
S = {}


def call(port, *args):
    with Resp(port) as r:
        return r.call(*args)


def nodes_line(i, udp_port):
    """node i's CLUSTER NODES line for the member at udp_port ('' if none)."""
    text = call(S["resp"][i], "CLUSTER", "NODES").decode()
    for line in text.splitlines():
        if line.split()[1].endswith("@%d" % udp_port):
            return line
    return ""


def test_cluster_starts():
    S["resp"] = dht.free_tcp_ports(2)
    c = dht.Cluster(3, extra_args=lambda i: ["--resp-port", S["resp"][i], "--resp-cluster"]
                    if i < 2 else [])
    c.start()
    c.wait_ready(timeout=15)
    c.wait_counts(3, 15)
    S["c"] = c


def test_the_node_without_a_redis_port_is_flagged_noaddr():
    dht.need(S, "c")
    c = S["c"]
    for i in (0, 1):
        dht.wait_until(lambda: " master,noaddr " in nodes_line(i, c.port(2)), 15,
                       what="node %d's CLUSTER NODES flagging node 2 noaddr" % i)
        line = nodes_line(i, c.port(2))
        assert ":0@%d " % c.port(2) in line, "node %d: node 2's line: %r" % (i, line)
        assert line.split()[-1] == "connected", "node %d: node 2 holds slots: %r" % (i, line)

    def settled():
        return all("dht_slots_settling:0\r\n" in call(p, "CLUSTER", "INFO").decode()
                   for p in S["resp"])
    dht.wait_until(settled, 15, what="every slot settled at nodes 0 and 1")
    S["flagged"] = True


def test_cluster_slots_lists_only_nodes_with_a_redis_port():
    dht.need(S, "flagged")
    ports = set(int(p) for p in S["resp"])
    for i in (0, 1):
        runs = call(S["resp"][i], "CLUSTER", "SLOTS")
        covered = 0
        for run in runs:
            listed = [n[1] for n in run[2:]]
            assert listed and set(listed) <= ports, "node %d: slots %d-%d listed at %r" % (
                i, run[0], run[1], listed)
            covered += run[1] - run[0] + 1
        assert covered == SLOTS, "node %d: CLUSTER SLOTS covers %d slots" % (i, covered)
    S["slots"] = call(S["resp"][0], "CLUSTER", "SLOTS")


def test_keys_of_every_slot_are_served_following_moved():
    dht.need(S, "slots")
    ports = set(int(p) for p in S["resp"])
    moved = 0
    for k in range(300):
        key, port = "mixed:%d" % k, int(S["resp"][k % 2])
        for _ in range(3):
            got = call(port, "SET", key, "v%d" % k)
            if not isinstance(got, Err):
                break
            word, slot, where = got.msg.split()
            assert word == "MOVED", "SET %s at port %d: %s" % (key, port, got)
            port = int(where.rsplit(":", 1)[1])
            assert port in ports, "SET %s: %s names no Redis node's port" % (key, got)
            moved += 1
        assert got == "OK", "SET %s: %r after following MOVED" % (key, got)
    first = {}
    for run in S["slots"]:
        for s in range(run[0], run[1] + 1):
            first[s] = run[2][1]
    for k in range(300):
        key = "mixed:%d" % k
        slot = call(int(S["resp"][0]), "CLUSTER", "KEYSLOT", key)
        got = call(first[slot], "GET", key)
        assert got == b"v%d" % k, "GET %s at port %d (CLUSTER SLOTS' first): %r" % (
            key, first[slot], got)
    print("    300 keys through nodes 0 and 1: all served, %d MOVED, each to one of them" % moved)


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals(), cleanup_each=False))
