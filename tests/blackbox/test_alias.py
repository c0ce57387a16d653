#!/usr/bin/env python3
"""A node reached under an address other than the one it advertises (an
alias) is one member, not two (src/members.h, "Aliases").

Every node binds 0.0.0.0, so 127.0.0.2:P reaches the node that advertises
127.0.0.1:P. Before, a peers file naming a node by such an address made it a
member of its own: pinged, answered by the node, it stayed alive, took a place
on the ring beside the node (4 processes counted 5; 4,901 of 16,384 hash slots
listed one process twice among their 3 replicas), and the replica writes sent
to it were acked from the node's own address, never matched: resent (728
replica requests for 600 PUTs) and handed to stand-ins whose copies were never
dropped (1,938 copies of 600 keys instead of 1,800).

- 4 nodes, the peers file naming node 3 as 127.0.0.2: every node counts 4 and
  lists 127.0.0.1 only, each logs the alias once (dht_member_aliases 1), no
  slot lists a process twice, and 200 keys have exactly 600 copies;
- node 3 restarted at the same address is a new life, not an alias: counted 4
  again, its keys there;
- node 3 started last: the alias, dead at the others meanwhile (before, it
  stayed dead for --forget-ms, an hour, and held back tombstone collection),
  leaves their lists once node 3 answers its pings;
- a node advertising 127.0.0.2 (--advertise) while the peers file names it
  127.0.0.1: the peers file's address is the alias, dropped in turn.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_alias.py
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import GET, OK, PUT  # noqa: E402
from test_single_resp import Resp  # noqa: E402

N = 4
KEYS = 200
ALIAS_IP = "127.0.0.2"


def start(alias_in_peers, first=N):
    """4 nodes on 127.0.0.1; node 3 named 127.0.0.2 in the peers file
    (alias_in_peers), or advertising 127.0.0.2 while the file names it
    127.0.0.1. The first `first` are started. Returns (cluster, http ports,
    resp ports, node 3's address)."""
    http, resp = dht.free_tcp_ports(N), dht.free_tcp_ports(N)
    base = dht.free_port_range(N)
    ip3 = ALIAS_IP if alias_in_peers else "127.0.0.1"
    peers = ["127.0.0.1:%d" % (base + i) for i in range(N - 1)] + ["%s:%d" % (ip3, base + N - 1)]

    def args(i):
        a = ["--http-port", http[i], "--resp-port", resp[i], "--sync-ms", "200"]
        return a + (["--advertise", ALIAS_IP] if i == N - 1 and not alias_in_peers else [])
    c = dht.Cluster(N, base_port=base, peers=peers, extra_args=args)
    for i in range(first):
        c.start(i)
    c.wait_ready(timeout=15, nodes=range(first))
    node3 = ("127.0.0.1" if alias_in_peers else ALIAS_IP, base + N - 1)
    return c, http, resp, node3


def member_lists(c, nodes=N):
    out = {}
    with dht.Client(c.addr(0), timeout=0.2, retries=3) as cl:
        for i in range(nodes):
            r = cl.request(dht.GET_MEMBERSHIP_LIST, addr=c.addr(i))
            out[i] = (r.members, sorted("%s:%d %s" % m for m in dht.parse_member_list(r.value)))
    return out


def want_members(c, node3):
    return sorted(["127.0.0.1:%d alive" % c.port(i) for i in range(N - 1)]
                  + ["%s:%d alive" % node3])


def wait_one_member_each(c, node3, timeout=10.0, hold=2.0):
    """Every node counts N and lists each process once, at its advertised
    address, and goes on doing so for `hold` seconds."""
    want = want_members(c, node3)
    last = {}

    def right():
        last.clear()
        last.update(member_lists(c))
        return all(v == (N, want) for v in last.values())
    try:
        dht.wait_until(right, timeout, interval=0.1)
        end = time.monotonic() + hold
        while time.monotonic() < end:
            assert right(), "the lists changed"
            time.sleep(0.2)
    except (TimeoutError, AssertionError) as e:
        bad = {i: v for i, v in last.items() if v != (N, want)}
        raise AssertionError("%s: nodes whose count or list is wrong (want %d, %s): %s"
                             % (e, N, want, bad)) from None


def log_of(c, i):
    with open(c.log_path(i), "rb") as f:
        return f.read().decode(errors="replace")


def alias_lines(c, i, alias):
    return [l for l in log_of(c, i).splitlines() if "%s:%d is " % alias in l and "address of" in l]


def check_slots(resp, node3):
    """Every hash slot's replicas in CLUSTER SLOTS, at every node, are the
    nodes' own addresses and Redis ports, none twice. (A node's first run of
    slots lists only the replicas before it: fewer than 3 there.)"""
    real = {("127.0.0.1", resp[i]) for i in range(N - 1)} | {(node3[0], resp[N - 1])}
    for i in range(N):
        with Resp(resp[i]) as r:
            slots = r.call("CLUSTER", "SLOTS")
        covered, bad = 0, []
        for ent in slots:
            reps = [(x[0].decode(), x[1]) for x in ent[2:]]
            covered += ent[1] - ent[0] + 1
            if len(set(reps)) < len(reps) or not set(reps) <= real:
                bad.append(ent[:2] + reps)
        assert covered == 16384, "node %d: CLUSTER SLOTS covers %d slots" % (i, covered)
        assert not bad, "node %d: %d runs of slots list a process twice or an address no node " \
            "advertises (nodes: %s), e.g. %s" % (i, len(bad), sorted(real), bad[:3])


def copies(http):
    return sum(int(dht.metrics(h)["dht_keys"]) for h in http)


def test_alias_in_the_peers_file_is_no_member():
    c, http, resp, node3 = start(alias_in_peers=True)
    alias = (ALIAS_IP, node3[1])
    wait_one_member_each(c, node3)
    for i in range(N):
        lines = alias_lines(c, i, alias)
        assert len(lines) == 1, "node %d logged the alias %d times: %s" % (i, len(lines), lines)
        assert int(dht.metrics(http[i])["dht_member_aliases"]) == 1, "node %d" % i
    assert "is an address of this node" in alias_lines(c, 3, alias)[0]
    check_slots(resp, node3)

    keys = [b"alias:%d" % k for k in range(KEYS)]
    with c.client(0, timeout=0.2, retries=6) as cl:
        for k in keys:
            r = cl.call(PUT, k, b"v" + k)
            assert r.err == OK, "PUT %s: %s" % (k, dht.err_name(r.err))
    # stand-ins' copies (a replica slow at the first resend) go once
    # membership has been still for 15 sync periods (3 s at --sync-ms 200)
    try:
        dht.wait_until(lambda: copies(http) == 3 * KEYS, 10, interval=0.2)
    except TimeoutError:
        raise AssertionError("%d keys held in %d copies, not %d (per node %s)"
                             % (KEYS, copies(http), 3 * KEYS,
                                [int(dht.metrics(h)["dht_keys"]) for h in http])) from None

    # a restart at the same address: a new life, the same member
    c.kill(3)
    c.start(3)
    c.wait_ready(timeout=15, nodes=[3])
    wait_one_member_each(c, node3, hold=1.0)
    for i in range(N - 1):
        assert len(alias_lines(c, i, alias)) == 1, "node %d logged the alias again" % i
        assert "%s:%d is " % node3 not in log_of(c, i), \
            "node %d took node 3's own address for an alias" % i
    with c.client(3, timeout=0.2, retries=6) as cl:
        for k in keys[:50]:
            r = cl.call(GET, k)
            assert (r.err, r.value) == (OK, b"v" + k), "GET %s via node 3: %s" % (k, dht.err_name(r.err))
    c.cleanup()


def test_alias_found_dead_before_its_node_starts():
    """Nodes 0-2 start first: the alias, a seed nobody answers for, dies
    (a dead member is pinged, and blocks tombstone collection while it stays
    dead, for --forget-ms). Once node 3 starts, it answers a ping of the alias,
    which then leaves every list."""
    c, http, resp, node3 = start(alias_in_peers=True, first=N - 1)
    dead = "%s:%d dead" % (ALIAS_IP, node3[1])
    dht.wait_until(lambda: all(dead in v[1] for i, v in member_lists(c, N - 1).items()), 10,
                   interval=0.2, what="the alias dead at nodes 0-2")
    c.start(N - 1)
    c.wait_ready(timeout=15, nodes=[N - 1])
    wait_one_member_each(c, node3, hold=1.0)
    c.cleanup()


def test_advertised_elsewhere_than_the_peers_file():
    c, http, resp, node3 = start(alias_in_peers=False)
    alias = ("127.0.0.1", node3[1])
    wait_one_member_each(c, node3)
    for i in range(N):
        assert len(alias_lines(c, i, alias)) == 1, "node %d: %s" % (i, alias_lines(c, i, alias))
    check_slots(resp, node3)
    c.cleanup()


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
