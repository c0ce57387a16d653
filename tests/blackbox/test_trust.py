#!/usr/bin/env python3
"""The trust boundary, tried as an outsider with UDP access to the nodes but
not the cluster key: 3 nodes sharing a key. Each forged node-to-node message
is sent unsealed (it must change nothing), and where it proves the path, once
more sealed with the key (it must then work, so the test can fail).

- a made-up member pinging never joins;
- a DEAD verdict on a live node (at incarnation 2^64-2, or just above its
  own) buries nobody;
- pause-gossip (dht-cli) silences a node only with --key-file;
- a forged FORWARD naming a third party's address sends it nothing;
- a forged WRITE (stamped a year ahead, or 20 s) stores nothing;
- SHUTDOWN from outside --admin-from is refused, the node keeps serving.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_trust.py
"""
import os
import re
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import OK, f_bytes, f_fixed32, f_fixed64, f_varint  # noqa: E402

PEER_GOSSIP, PEER_FORWARD, PEER_WRITE, PEER_DEBUG = 1, 2, 3, 9
GOSSIP_PROBE = 1
S = {}


def ip32(ip):
    return struct.unpack("<I", socket.inet_aton(ip))[0]


def member(ip, port, inc, hb, state=0):
    return (f_fixed32(1, ip32(ip)) + f_varint(2, port) + f_varint(3, inc) + f_varint(4, hb)
            + (f_varint(5, state) if state else b""))


def peer_dgram(fields, sealed=False):
    return dht.encode_msg(dht.new_id(), fields, kind=1, sealed=sealed)


def send(addr, dgram, sock=None):
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(dgram, addr)
    finally:
        if sock is None:
            s.close()


def members_of(c, i):
    with c.client(i, timeout=0.2, retries=5) as cl:
        return {(ip, port): st for ip, port, st in cl.members()}


def cluster():
    if "c" not in S:
        S["http"] = dht.free_tcp_ports(1)[0]
        args = {0: ["--http-port", S["http"]], 2: ["--admin-from", "10.0.0.0/8"]}
        c = dht.Cluster(3, extra_args=lambda i: args.get(i, []))
        c.start()
        c.wait_ready(timeout=15)
        c.wait_counts(3, 15)
        S["c"] = c
    return S["c"]


def test_made_up_member_never_joins():
    c = cluster()
    fake = ("127.0.0.1", 1)   # a port no node is on
    for _ in range(20):
        for i in range(3):
            send(c.addr(i), peer_dgram(f_varint(1, PEER_GOSSIP) + f_varint(14, GOSSIP_PROBE)
                                       + f_bytes(2, member(*fake, int(time.time() * 1000), 5))))
        time.sleep(0.05)
    time.sleep(1.0)
    for i in range(3):
        got = members_of(c, i)
        assert fake not in got, "node %d took the made-up member: %s" % (i, got)
        assert len(got) == 3, "node %d: %s" % (i, got)


def test_forged_death_buries_nobody():
    c = cluster()
    victim = c.addr(1)
    soon = int(time.time() * 1000) + 20000   # above its incarnation, within the clock bound
    verdicts = [member(victim[0], victim[1], 2**64 - 2, 2**64 - 2, state=2),
                member(victim[0], victim[1], soon, 2**40, state=2)]
    for _ in range(10):
        for i in (0, 2):
            for v in verdicts:
                send(c.addr(i), peer_dgram(f_varint(1, PEER_GOSSIP) + f_bytes(3, v)))
        time.sleep(0.05)
    time.sleep(1.5)   # past a suspicion (1 s) had it been believed
    for i in (0, 2):
        st = members_of(c, i).get(victim)
        assert st == "alive", "node %d holds node 1 %s after a forged verdict" % (i, st)


def cli(*args):
    return subprocess.run([os.path.join(os.environ.get("DHT_BIN", "build"), "dht-cli")]
                          + list(args), capture_output=True, text=True, timeout=10)


def test_pause_gossip_needs_the_key():
    c = cluster()
    target = "%s:%d" % c.addr(0)
    r = cli("-s", target, "pause-gossip", "3000")
    assert r.returncode == 0, r.stderr
    time.sleep(2.5)   # a silent node is dead at the others after about 1.6 s
    for i in (1, 2):
        st = members_of(c, i).get(c.addr(0))
        assert st == "alive", "an unsealed pause silenced node 0: node %d holds it %s" % (i, st)
    # with the key it works (and node 0 refutes once it speaks again)
    r = cli("-s", target, "--key-file", c.key_file, "pause-gossip", "2500")
    assert r.returncode == 0, r.stderr
    dht.wait_until(lambda: members_of(c, 1).get(c.addr(0)) in ("suspect", "dead"), 5,
                   what="node 0 suspected once paused with the key")
    c.wait_counts(3, 15)


def test_forged_forward_reflects_nothing():
    c = cluster()
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    victim.settimeout(1.0)
    vip, vport = victim.getsockname()
    req = dht.encode_request(dht.GET_MEMBERSHIP_LIST)
    fwd = (f_varint(1, PEER_FORWARD) + f_fixed32(4, ip32(vip)) + f_varint(5, vport)
           + f_bytes(6, req))
    try:
        send(c.addr(0), dht.encode_msg(dht.new_id(), fwd, kind=1, sealed=False))
        try:
            data, _ = victim.recvfrom(65536)
            raise AssertionError("an unsealed forward made node 0 send %d bytes to %s:%d"
                                 % (len(data), vip, vport))
        except socket.timeout:
            pass
        send(c.addr(0), dht.encode_msg(dht.new_id(), fwd, kind=1, sealed=True))
        data, _ = victim.recvfrom(65536)   # a member's forward is served
        assert data, "no reply to a sealed forward"
    finally:
        victim.close()


def test_forged_write_stores_nothing():
    c = cluster()
    with c.client(0, timeout=0.2, retries=5) as cl:
        assert cl.put(b"trust-k", b"real").err == OK
    now = int(time.time() * 1000)
    for ahead in (365 * 86400 * 1000, 20000):   # a year, and within the clock bound
        rec = f_bytes(1, b"trust-k") + f_bytes(2, b"forged") + f_fixed64(4, (now + ahead) << 16)
        for i in range(3):
            send(c.addr(i), peer_dgram(f_varint(1, PEER_WRITE) + f_bytes(7, rec)))
    time.sleep(0.5)
    for i in range(3):
        with c.client(i, timeout=0.2, retries=5) as cl:
            r = cl.get(b"trust-k")
            assert r.err == OK and r.value == b"real", "node %d reads %r" % (i, r.value)


def test_shutdown_from_outside_admin_from_is_refused():
    c = cluster()
    with c.client(2, timeout=0.2, retries=3) as cl:
        msg_id, dgram = dht.request_datagram(dht.SHUTDOWN)
        r = cl.request_raw(dgram, msg_id)
        assert r.err == dht.EUNKNOWN, "SHUTDOWN answered %s" % dht.err_name(r.err)
        time.sleep(0.3)
        assert c.running(2), "node 2 stopped on a SHUTDOWN from outside --admin-from"
        assert cl.alive(), "node 2 stopped answering"
    with open(c.log_path(2), "rb") as f:
        assert b"refused SHUTDOWN" in f.read(), "the refusal is not in node 2's log"


def test_drops_are_counted():
    cluster()
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % S["http"], timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^dht_dropped_total\{reason="unsealed"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) > 0, "no unsealed datagrams counted in /metrics"


def teardown():
    if "c" in S:
        S.pop("c").cleanup()


if __name__ == "__main__":
    try:
        sys.exit(dht.run_tests(globals(), cleanup_each=False))
    finally:
        teardown()
