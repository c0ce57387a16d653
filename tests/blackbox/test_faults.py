#!/usr/bin/env python3
"""Fault tests: a 40-node cluster (N=3, W=2, R=2, every node on LMDB) loses
nodes and is partitioned, and no acknowledged write may be lost.

One scenario in steps (each step needs the ones before it):
  40 nodes converge -> 10,000 keys PUT through random nodes, every value read
  back -> 2 nodes SIGKILLed at once: 0 keys lost, N copies restored -> one
  node SIGKILLed every DHT_KILL_EVERY seconds (6; never before N copies of
  the sampled keys are back after the kill before) until 20 are dead, 500
  keys rewritten after each kill: 0 keys lost, every key has its latest value ->
  a killed node restarted alone on its --data-dir still holds its records,
  then rejoins -> the survivors are split in two by iptables, both sides take
  writes (the same keys too), the partition heals: every key reads its latest
  value everywhere and has N up-to-date copies.
Prints keys lost, stale reads and the time to restore N copies at each step.

"Copies" are counted by asking every live node for the key directly with the
node-to-node READ message, so they are what the nodes hold, not what a
quorum read says.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_faults.py
Env: DHT_NODES (40), DHT_KEYS (10000), DHT_KILL_EVERY (6), DHT_DEAD (20),
DHT_SEED. Needs root for iptables (the partition step only). Last line
'N passed, N failed'; exit 1 on failure.
"""
import os
import random
import select
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import OK, ENOKEY, EOVERLOAD, GET, PUT  # noqa: E402

N = int(os.environ.get("DHT_NODES", "40"))
KEYS = int(os.environ.get("DHT_KEYS", "10000"))
KILL_EVERY = float(os.environ.get("DHT_KILL_EVERY", "6"))  # a kill's work: 3-5 s
DEAD = int(os.environ.get("DHT_DEAD", "20"))
REPLICAS = 3
REWRITES = 500            # keys rewritten after each kill
SAMPLE = 300              # keys whose copies are counted
RESTORE_TIMEOUT = 15.0    # for N copies after a kill
PARTITION_FOR = 8.0       # seconds the two sides stay apart
SEED = int(os.environ.get("DHT_SEED", str(random.randrange(1 << 30))))
rnd = random.Random(SEED)
S = {}                    # state shared by the steps

PEER_READ, PEER_READ_REPLY = 5, 6


# ---------------------------------------------------------------- many requests at once

class Bulk:
    """Sends many requests over one UDP socket with up to `window` in flight,
    matches replies by message ID and resends unanswered ones with the same
    ID (the node's reply cache makes that safe). run() returns one result per
    request: the decoded reply payload, or None after `tries` sends."""

    def __init__(self, window=200, timeout=0.3, tries=10):
        self.window, self.timeout, self.tries = window, timeout, tries
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))

    def run(self, reqs):
        """reqs: [(addr, datagram, msg_id)]; results are the reply Msg payloads."""
        out = [None] * len(reqs)
        pending = {}              # msg_id -> [index, next send time, sends]
        nxt = 0
        while nxt < len(reqs) or pending:
            now = time.monotonic()
            while nxt < len(reqs) and len(pending) < self.window:
                addr, dgram, mid = reqs[nxt]
                self.sock.sendto(dgram, addr)
                pending[mid] = [nxt, now + self.timeout, 1]
                nxt += 1
            for mid, p in list(pending.items()):
                if p[1] > now:
                    continue
                if p[2] >= self.tries:
                    del pending[mid]
                    continue
                addr, dgram, _ = reqs[p[0]]
                self.sock.sendto(dgram, addr)
                p[1], p[2] = now + self.timeout * (1 + p[2] // 3), p[2] + 1
            r, _, _ = select.select([self.sock], [], [], 0.02)
            while r:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    break
                try:
                    m = dht.decode_msg(data)
                except dht.DecodeError:
                    continue
                p = pending.get(m.id)
                if p is not None:
                    out[p[0]] = (m.kind, m.payload)
                    del pending[m.id]
                r, _, _ = select.select([self.sock], [], [], 0)
        return out

    def client_ops(self, ops):
        """ops: [(addr, cmd, key, value, version)] -> [Response or None].
        Overloaded requests are tried again (a few times) with a new ID."""
        results = [None] * len(ops)
        todo = list(range(len(ops)))
        for _ in range(20):
            reqs = []
            for i in todo:
                addr, cmd, key, value, version = ops[i]
                mid, dgram = dht.request_datagram(cmd, key, value, version)
                reqs.append((addr, dgram, mid))
            got = self.run(reqs)
            again = []
            for i, g in zip(todo, got):
                r = dht.decode_response(g[1]) if g and g[0] == 0 else None
                results[i] = r
                if r is not None and r.err == EOVERLOAD:
                    again.append(i)
            if not again:
                break
            todo = again
            time.sleep(0.05)
        return results

    def peer_reads(self, pairs):
        """pairs: [(addr, key)] -> [(value, stamp, tombstone) or ENOKEY or None],
        what each node holds itself."""
        reqs = []
        for addr, key in pairs:
            mid = dht.new_id()
            payload = dht.f_varint(1, PEER_READ) + dht.f_bytes(8, key)
            reqs.append((addr, dht.encode_msg(mid, payload, kind=1), mid))
        out = []
        for g in self.run(reqs):
            if not g or g[0] != 1:
                out.append(None)
                continue
            f = {}
            recs = []
            for num, _, v in dht.parse_fields(g[1]):
                if num == 7:
                    recs.append(v)
                else:
                    f[num] = v
            if f.get(1) != PEER_READ_REPLY:
                out.append(None)
            elif not recs:
                out.append(ENOKEY)
            else:
                r = {num: v for num, _, v in dht.parse_fields(recs[0])}
                out.append((r.get(2, b""), r.get(4, 0), bool(r.get(5, 0))))
        return out


def bulk():
    if "bulk" not in S:
        S["bulk"] = Bulk()
    return S["bulk"]


# ---------------------------------------------------------------- helpers

def live():
    return [i for i in range(N) if i not in S["dead"]]


def new_value(k):
    return b"%s=%s" % (k, os.urandom(rnd.randrange(8, 600)))


def write(keys, nodes=None):
    """PUTs a fresh value for each key through random nodes (of `nodes`);
    data[] is updated for the acknowledged ones. Returns failures."""
    c, data = S["cluster"], S["data"]
    nodes = nodes or live()
    ops = []
    for k in keys:
        v, ver = new_value(k), rnd.randrange(1, 2**31 - 1)
        ops.append((c.addr(rnd.choice(nodes)), PUT, k, v, ver))
    fails = []
    for op, r in zip(ops, bulk().client_ops(ops)):
        if r is not None and r.err == OK:
            data[op[2]] = (op[3], op[4])
        else:
            fails.append("%s: %s" % (op[2].decode(), "timeout" if r is None else dht.err_name(r.err)))
    return fails


def read_all(what, keys=None, nodes=None):
    """GETs every key through a random node; returns (lost, stale) lists."""
    c, data = S["cluster"], S["data"]
    keys = sorted(data) if keys is None else keys
    nodes = nodes or live()
    ops = [(c.addr(rnd.choice(nodes)), GET, k, b"", 0) for k in keys]
    lost, stale = [], []
    for op, r in zip(ops, bulk().client_ops(ops)):
        k = op[2]
        if r is None or r.err != OK:
            lost.append("%s via :%d: %s" % (k.decode(), op[0][1], "timeout" if r is None else dht.err_name(r.err)))
        elif (r.value, r.version) != data[k]:
            stale.append("%s via :%d: old value" % (k.decode(), op[0][1]))
    print("  %s: %d keys read, %d lost, %d stale" % (what, len(keys), len(lost), len(stale)))
    return lost, stale


def assert_none(lost, stale, what):
    assert not lost and not stale, "%s: %d lost, %d stale, e.g.:\n      %s" % (
        what, len(lost), len(stale), "\n      ".join((lost + stale)[:10]))


def short_copies(keys):
    """Keys with fewer than N live nodes holding their latest value."""
    c, data = S["cluster"], S["data"]
    nodes = live()
    pairs = [(c.addr(i), k) for k in keys for i in nodes]
    got = bulk().peer_reads(pairs)
    short = []
    for j, k in enumerate(keys):
        row = got[j * len(nodes):(j + 1) * len(nodes)]
        n = sum(1 for g in row if isinstance(g, tuple) and not g[2] and g[0] == data[k][0])
        if n < REPLICAS:
            short.append((k, n))
    return short


def time_to_copies(keys, t0, timeout=RESTORE_TIMEOUT):
    """Polls until every key has N copies; seconds since t0, or None."""
    end = t0 + timeout
    short = []
    while time.monotonic() < end:
        short = short_copies(keys)
        if not short:
            return time.monotonic() - t0
        time.sleep(0.2)
    S["short"] = short
    return None


def wait_counts(nodes, want, timeout):
    """Until every node in nodes reports membership count want; seconds."""
    c = S["cluster"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        ops = [(c.addr(i), dht.GET_MEMBERSHIP_COUNT, b"", b"", 0) for i in nodes]
        got = bulk().client_ops(ops)
        if all(r is not None and r.members == want for r in got):
            return time.monotonic() - t0
        time.sleep(0.1)
    got = {i: (r.members if r else None) for i, r in zip(nodes, got)}
    raise AssertionError("membership did not reach %d in %.0f s: %s" % (want, timeout, got))


def kill(i):
    S["cluster"].kill(i)
    S["dead"].add(i)


# ---------------------------------------------------------------- steps

def test_cluster_of_40_converges():
    c = dht.Cluster(N, keep_dir=True, extra_args=lambda i: ["--data-dir", c.data_dir(i), "--quiet"])
    S["cluster"], S["dead"] = c, set()
    print("  seed %d (DHT_SEED); %d nodes on 127.0.0.1:%d-%d, logs in %s"
          % (SEED, N, c.base, c.base + N - 1, c.dir))
    c.start()
    c.wait_ready(timeout=30)
    print("  all %d report %d members after %.2f s" % (N, N, wait_counts(range(N), N, 60)))
    S["converged"] = True


def test_10000_keys_written_and_read_back():
    dht.need(S, "converged")
    S["data"] = {}
    keys = [b"k%05d-%s" % (n, os.urandom(3).hex().encode()) for n in range(KEYS)]
    t0 = time.monotonic()
    fails = write(keys)
    dt = time.monotonic() - t0
    print("  %d PUTs through random nodes in %.1f s (%.0f/s), %d failed"
          % (KEYS, dt, KEYS / dt, len(fails)))
    assert not fails, "PUTs failed: %s" % fails[:10]
    assert_none(*read_all("read back"), "read back")
    S["sample"] = rnd.sample(sorted(S["data"]), SAMPLE)
    t = time_to_copies(S["sample"], time.monotonic())
    assert t is not None, "keys without %d copies: %s" % (REPLICAS, S["short"][:10])
    S["written"] = True


def test_two_nodes_killed_at_once_lose_nothing():
    dht.need(S, "written")
    c = S["cluster"]
    victims = rnd.sample(range(1, N), 2)
    # what the first victim holds now, to check its disk after the restart
    keys = sorted(S["data"])
    held = bulk().peer_reads([(c.addr(victims[0]), k) for k in keys])
    S["held"] = {k: g for k, g in zip(keys, held) if isinstance(g, tuple)}
    S["restart"] = victims[0]
    t0 = time.monotonic()
    for v in victims:
        kill(v)
    print("  SIGKILL nodes %s (node %d held %d of the %d keys)"
          % (victims, victims[0], len(S["held"]), len(keys)))
    lost, stale = read_all("right after the kill")
    wait_counts(live(), N - 2, 30)
    print("  all survivors report %d %.2f s after the kill" % (N - 2, time.monotonic() - t0))
    t = time_to_copies(S["sample"], t0)
    print("  %d copies of every sampled key again %.2f s after the kill"
          % (REPLICAS, t if t is not None else float("nan")))
    l2, s2 = read_all("after re-replication")
    assert_none(lost + l2, stale + s2, "after killing 2 nodes")
    assert t is not None, "keys still short of copies: %s" % S["short"][:10]
    S["two_killed"] = True


def test_one_kill_at_a_time_until_20_dead():
    dht.need(S, "two_killed")
    c = S["cluster"]
    restores, total_lost, total_stale = [], 0, 0
    bad = []
    while len(S["dead"]) < DEAD:
        t0 = time.monotonic()
        v = rnd.choice([i for i in live() if i != 0])
        kill(v)
        rewrite = rnd.sample(sorted(S["data"]), REWRITES)
        fails = write(rewrite)        # while the victim is not yet known dead
        t = time_to_copies(S["sample"], t0)
        restores.append(t)
        lost, stale = read_all("%d dead (node %d), %d rewrites failed, copies restored in %s"
                               % (len(S["dead"]), v, len(fails),
                                  "%.2f s" % t if t is not None else "NOT restored"))
        total_lost += len(lost)
        total_stale += len(stale)
        bad += lost[:3] + stale[:3] + fails[:3]
        if t is None:
            bad.append("copies not restored after killing node %d: %s" % (v, S["short"][:5]))
        rest = t0 + KILL_EVERY - time.monotonic()
        if rest > 0 and len(S["dead"]) < DEAD:
            time.sleep(rest)
    ok = [t for t in restores if t is not None]
    print("  %d nodes dead: %d lost, %d stale in all; N copies restored after each kill in "
          "%.2f s median, %.2f s worst" % (len(S["dead"]), total_lost, total_stale,
                                             sorted(ok)[len(ok) // 2] if ok else float("nan"),
                                             max(ok) if ok else float("nan")))
    lost, stale = read_all("final check")
    assert_none(lost, stale, "after %d deaths" % len(S["dead"]))
    assert not bad, "during the kills: %s" % bad[:10]
    S["twenty_dead"] = True


def test_restarted_node_keeps_its_data_dir():
    dht.need(S, "two_killed")
    c = S["cluster"]
    i = S["restart"]
    empty = os.path.join(c.dir, "no-peers")
    open(empty, "w").close()
    # alone first (no peers): what it answers comes from its own disk
    cmd = [c.bin, str(c.port(i)), empty, "--data-dir", c.data_dir(i), "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dht.wait_until(lambda: c.client(i, timeout=0.1, retries=1).alive(), 10, what="node up")
        got = bulk().peer_reads([(c.addr(i), k) for k in S["held"]])
        missing = [k for k, g in zip(S["held"], got) if g != S["held"][k]]
    finally:
        p.kill()
        p.wait(5)
    print("  node %d restarted alone on its data dir: %d of %d records it held are there"
          % (i, len(S["held"]) - len(missing), len(S["held"])))
    assert S["held"], "the node held none of the sampled keys: nothing was checked"
    assert not missing, "records lost from disk: %s" % [k.decode() for k in missing[:10]]
    # then back into the cluster
    c.start(i)
    S["dead"].discard(i)
    dt = wait_counts(live(), len(live()), 30)
    print("  node %d rejoined: %d live nodes agree after %.2f s" % (i, len(live()), dt))
    assert_none(*read_all("after the rejoin", nodes=[i]), "through the rejoined node")
    S["rejoined"] = True


class Partition:
    """Drops UDP between two port ranges on loopback with iptables; always
    removed (heal(), or atexit)."""

    def __init__(self, a, b):
        tag = "dht-test-%d" % os.getpid()
        self.rules = []
        for src, dst in ((a, b), (b, a)):
            self.rules.append(["INPUT", "-i", "lo", "-p", "udp", "--sport", "%d:%d" % src,
                               "--dport", "%d:%d" % dst, "-m", "comment", "--comment", tag,
                               "-j", "DROP"])
        self.on = []

    def apply(self):
        import atexit
        atexit.register(self.heal)
        for r in self.rules:
            subprocess.run(["iptables", "-I"] + r, check=True)
            self.on.append(r)

    def heal(self):
        while self.on:
            subprocess.run(["iptables", "-D"] + self.on.pop(), check=False)


def test_partition_heals_and_replicas_converge():
    dht.need(S, "twenty_dead")
    c = S["cluster"]
    if subprocess.run(["iptables", "-L", "INPUT", "-n"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        raise AssertionError("iptables does not work here (root and the iptables package "
                             "are needed; scripts/deps installs it)")
    nodes = live()
    mid = nodes[len(nodes) // 2]
    side_a, side_b = [i for i in nodes if i < mid], [i for i in nodes if i >= mid]
    part = Partition((c.port(0), c.port(mid) - 1), (c.port(mid), c.port(N - 1)))
    part.apply()
    t0 = time.monotonic()
    try:
        ta = wait_counts(side_a, len(side_a), 30)
        tb = wait_counts(side_b, len(side_b), 30)
        print("  partitioned %d | %d nodes: each side sees only itself after %.2f s"
              % (len(side_a), len(side_b), max(ta, tb)))
        fresh_a = [b"pa%04d" % n for n in range(500)]
        fresh_b = [b"pb%04d" % n for n in range(500)]
        both = rnd.sample(sorted(S["data"]), 300)
        fails = write(fresh_a + both, side_a)
        time.sleep(0.05)                # side B's writes of `both` are the later ones
        fails += write(fresh_b + both, side_b)
        print("  wrote 500 new keys on each side and 300 keys on both, %d failed" % len(fails))
        assert not fails, "writes during the partition failed: %s" % fails[:10]
        assert_none(*read_all("side A reads its writes", fresh_a, side_a), "side A")
        assert_none(*read_all("side B reads its writes", fresh_b + both, side_b), "side B")
        time.sleep(max(0.0, t0 + PARTITION_FOR - time.monotonic()))
    finally:
        part.heal()
    t1 = time.monotonic()
    dt = wait_counts(nodes, len(nodes), 30)
    print("  healed after %.1f s apart: %d nodes agree after %.2f s" % (t1 - t0, len(nodes), dt))
    changed = fresh_a + fresh_b + both
    t = time_to_copies(changed, t1, timeout=30)
    print("  %d copies of all %d keys written during the partition %s"
          % (REPLICAS, len(changed), "%.2f s after the heal" % t if t is not None else "NOT reached"))
    assert_none(*read_all("after the heal, every key"), "after the heal")
    assert t is not None, "keys short of up-to-date copies: %s" % S["short"][:10]


def test_no_live_node_crashed():
    dht.need(S, "converged")
    c = S["cluster"]
    crashed = [i for i in live() if not c.running(i)]
    assert not crashed, "nodes exited: %s" % crashed


if __name__ == "__main__":
    sys.exit(dht.run_scenario(globals(), S))
