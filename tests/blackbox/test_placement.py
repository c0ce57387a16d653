#!/usr/bin/env python3
"""Nodes that place hash slots otherwise are told apart (src/members.h,
members_placement): every GOSSIP says how its sender places slots (the scheme,
--replicas, --vnodes), and a member that places them otherwise is logged and
counted (dht_members_misplaced in /metrics, INFO and CLUSTER INFO), since it
and this node disagree on every slot's replicas.

- 3 nodes, one with --vnodes 16: each of the two others counts 1 and logs it,
  it counts 2;
- in Redis Cluster mode (--resp-cluster) no node answers -MOVED while a member
  places slots otherwise: the two would name different nodes for good, and
  send a client back and forth;
- a member of an earlier version (a sealed GOSSIP without the field, from a
  socket of this test) is logged as such.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_placement.py
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import f_bytes, f_fixed32, f_varint  # noqa: E402
from test_single_resp import Err, Resp  # noqa: E402

PEER_GOSSIP = 1
S = {}


def cluster():
    if "c" not in S:
        S["http"], S["resp"] = dht.free_tcp_ports(3), dht.free_tcp_ports(3)
        c = dht.Cluster(3, extra_args=lambda i: ["--http-port", S["http"][i],
                                                 "--resp-port", S["resp"][i], "--resp-cluster"]
                        + (["--vnodes", "16"] if i == 2 else []))
        c.start()
        c.wait_ready(timeout=15)
        c.wait_counts(3, 15)
        S["c"] = c
    return S["c"]


def misplaced(i):
    m = dht.metrics(S["http"][i])
    assert "dht_members_misplaced" in m, "no dht_members_misplaced in node %d's /metrics" % i
    return int(m["dht_members_misplaced"])


def log_of(c, i):
    with open(c.log_path(i), "rb") as f:
        return f.read().decode(errors="replace")


def test_other_vnodes_are_counted_and_logged():
    c = cluster()
    dht.wait_until(lambda: [misplaced(i) for i in range(3)] == [1, 1, 2], 10,
                   what="nodes 0, 1 counting node 2 (--vnodes 16) misplaced, node 2 both")
    odd = "%s:%d" % c.addr(2)
    for i in (0, 1):
        want = "member %s places hash slots otherwise (--replicas 3 --vnodes 16)" % odd
        assert want in log_of(c, i), "node %d's log does not say: %s" % (i, want)
    for i in (0, 1):
        want = "member %s:%d places hash slots otherwise (--replicas 3 --vnodes 64)" % c.addr(i)
        assert want in log_of(c, 2), "node 2's log does not say: %s" % want


def test_misplaced_members_redirect_no_one():
    cluster()

    def call(i, *args):
        with Resp(S["resp"][i]) as r:
            return r.call(*args)

    def settled():
        return all("dht_slots_settling:0\r\n" in call(i, "CLUSTER", "INFO").decode() for i in range(3))
    dht.wait_until(settled, 15, what="every slot settled at the 3 nodes")
    assert [misplaced(i) for i in range(3)] == [1, 1, 2]
    moved = 0
    for i in range(3):
        for k in range(60):
            got = call(i, "SET", "misplaced:%d" % k, "v")
            moved += isinstance(got, Err)
            assert got == "OK", (i, k, got)
    print("    180 keys through 3 nodes that disagree on placement: all served, %d MOVED" % moved)


def test_an_earlier_version_is_logged():
    c = cluster()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    ip, port = s.getsockname()
    me = (f_fixed32(1, struct.unpack("<I", socket.inet_aton(ip))[0]) + f_varint(2, port)
          + f_varint(3, int(time.time() * 1000)) + f_varint(4, 1))
    gossip = f_varint(1, PEER_GOSSIP) + f_bytes(2, me)   # no placement: as earlier versions
    want = "member %s:%d places hash slots otherwise (an earlier version)" % (ip, port)
    try:
        for _ in range(20):
            s.sendto(dht.encode_msg(dht.new_id(), gossip, kind=1, sealed=True), c.addr(1))
            if want in log_of(c, 1):
                break
            time.sleep(0.1)
    finally:
        s.close()
    assert want in log_of(c, 1), "node 1's log does not say: %s" % want


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals(), cleanup_each=False))  # one cluster for both, stopped at the end
