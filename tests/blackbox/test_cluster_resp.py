#!/usr/bin/env python3
"""Black-box test of the Redis protocol front end on a 3-node cluster, each
node with --resp-port: any node serves any key with the cluster's N/R/W.

One scenario in steps (each step needs the ones before it):
  membership converges to 3 -> SET through node A, GET through B and C ->
  MSET/MGET/DEL/EXISTS through different nodes -> the same with more keys than
  --max-inflight, in order with what follows them -> pipelined commands through
  one node answered in order while the replicas answer over the network ->
  RESP and UDP see the same data -> connections closed with operations in
  flight leave the nodes serving -> with one node killed, the two others
  still serve reads and writes.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_cluster_resp.py
Last line 'N passed, N failed'; exit 1 on failure.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import OK  # noqa: E402
from test_single_resp import Resp, encode  # noqa: E402

N = 3
S = {}   # state shared by the steps


def resp(i):
    """A RESP connection to node i (kept open across steps)."""
    key = "resp%d" % i
    if key not in S:
        S[key] = Resp(S["ports"][i])
    return S[key]


def test_cluster_starts_and_converges():
    ports = dht.free_tcp_ports(N)
    c = dht.Cluster(N, extra_args=lambda i: ["--resp-port", ports[i]])
    c.start()
    c.wait_ready(timeout=15)
    c.wait_counts(N, timeout=20)
    S["cluster"], S["ports"] = c, ports


def test_set_through_a_get_through_b_and_c():
    dht.need(S, "cluster")
    for i in range(50):
        assert resp(0).call("SET", "k%d" % i, "v%d" % i) == "OK", "SET k%d through node 0" % i
    for i in range(50):
        for j in (1, 2):
            got = resp(j).call("GET", "k%d" % i)
            assert got == b"v%d" % i, "GET k%d through node %d: %r" % (i, j, got)
    assert resp(2).call("GET", "never-set") is None
    S["written"] = True


def test_multi_key_commands_across_nodes():
    dht.need(S, "written")
    pairs = [("mk%d" % i, "mv%d" % i) for i in range(40)]
    assert resp(1).call("MSET", *[x for p in pairs for x in p]) == "OK"
    keys = [k for k, _ in pairs]
    assert resp(2).call("MGET", *keys) == [v.encode() for _, v in pairs]
    assert resp(0).call("EXISTS", *keys[:10], "nope") == 10
    assert resp(2).call("DEL", *keys[:10], "nope") == 10
    assert resp(0).call("EXISTS", *keys[:10]) == 0
    assert resp(1).call("MGET", keys[0], keys[10]) == [None, b"mv10"]


def test_commands_of_more_keys_than_max_inflight():
    """MSET, MGET, EXISTS and DEL of 5,000 keys (past --max-inflight, 2,048):
    they ran all their keys at once and those past the bound were refused,
    so such a command failed however idle the nodes. Now 256 run at a time,
    and nothing after the command starts before all its keys have: the SET
    pipelined behind the MSET wins over it."""
    dht.need(S, "written")
    keys = ["bk%d" % i for i in range(5000)]
    assert resp(0).call("MSET", *[x for k in keys for x in (k, "a" + k)]) == "OK"
    got = resp(0).pipeline([["MSET"] + [x for k in keys for x in (k, "b" + k)],
                            ("SET", keys[-1], "after"), ("MGET",) + tuple(keys)])
    assert got[:2] == ["OK", "OK"], got[:2]
    want = [b"b" + k.encode() for k in keys[:-1]] + [b"after"]
    assert got[2] == want, [(k, g) for k, g, w in zip(keys, got[2], want) if g != w][:3]
    assert resp(1).call("EXISTS", *keys) == len(keys)
    assert resp(2).call("DEL", *keys) == len(keys)
    assert resp(0).call("MGET", *keys) == [None] * len(keys)


def test_pipeline_through_one_node_replies_in_order():
    dht.need(S, "written")
    cmds, want = [], []
    for i in range(300):
        cmds += [("SET", "pk%d" % i, "pv%d" % i), ("GET", "pk%d" % i), ("GET", "k%d" % (i % 50)),
                 ("GET", "missing%d" % i), ("PING",)]
        want += ["OK", b"pv%d" % i, b"v%d" % (i % 50), None, "PONG"]
    got = resp(1).pipeline(cmds)
    bad = [(i, cmds[i], got[i], want[i]) for i in range(len(cmds)) if got[i] != want[i]]
    assert not bad, "%d replies differ, first: %r" % (len(bad), bad[:3])


def test_resp_and_udp_agree_across_nodes():
    dht.need(S, "written")
    c = S["cluster"]
    assert resp(0).call("SET", "shared", "from-resp") == "OK"
    with c.client(2) as cl:
        r = cl.get(b"shared")
        assert (r.err, r.value) == (OK, b"from-resp"), r
        assert cl.put(b"shared2", b"from-udp").err == OK
    assert resp(1).call("GET", "shared2") == b"from-udp"


def test_closed_connections_with_operations_in_flight():
    dht.need(S, "written")
    c = S["cluster"]
    for n in range(10):
        s = socket.create_connection(("127.0.0.1", S["ports"][n % N]))
        s.sendall(b"".join(encode("SET", "gone%d" % i, "x") + encode("GET", "k%d" % (i % 50))
                           for i in range(300)))
        s.close()
    time.sleep(1.0)
    for i in range(N):
        assert c.running(i), "node %d exited" % i
        assert resp(i).call("GET", "k7") == b"v7", "node %d" % i


def test_two_nodes_serve_with_one_killed():
    dht.need(S, "written")
    c = S["cluster"]
    S.pop("resp1").close()
    c.kill(1)
    for i in range(20):
        assert resp(0).call("SET", "after%d" % i, "a%d" % i) == "OK", "SET after%d with node 1 dead" % i
    for i in range(20):
        assert resp(2).call("GET", "after%d" % i) == b"a%d" % i
    for i in range(50):
        assert resp(2).call("GET", "k%d" % i) == b"v%d" % i, "k%d lost with node 1 dead" % i


if __name__ == "__main__":
    rc = dht.run_tests(globals(), cleanup_each=False)
    for k in [k for k in S if k.startswith("resp")]:
        S[k].close()
    sys.exit(rc)
