#!/usr/bin/env python3
"""Black-box tests of dht-bench's client logic: the --pairs workload against
one dht-server node, --preload / --verify, and overload answers and lost
datagrams from a fake node that answers every request SYSTEM_OVERLOAD first
and drops some resends: the client must wait overloadWaitTime, resend with
the same message ID to the same node, resend after a timeout, and still see
every pair through. Each run takes a second or two.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single_bench.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import os
import select
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import OK, ENOKEY, EOVERLOAD, PUT, GET  # noqa: E402


def bench(*args, timeout=60):
    """dht-bench's --summary line as a dict (numbers as floats), after
    checking it exited 0."""
    exe = os.path.join(os.path.dirname(dht.server_binary()), "dht-bench")
    p = subprocess.run([exe, "--summary"] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, "dht-bench %s: exit %d: %s%s" % (" ".join(map(str, args)),
                                                              p.returncode, p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    out = {}
    for kv in lines[0].split():
        k, v = kv.split("=", 1)
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def single_node():
    c = dht.Cluster(1, peers=[], extra_args=["--quiet"])
    c.start(0)
    c.wait_ready(timeout=10)
    return c


def test_pairs_against_one_node():
    c = single_node()
    r = bench("-s", "%s:%d" % c.addr(0), "--pairs", "-c", 8, "--seconds", 2)
    assert r["workload"] == "pairs" and r["clients"] == 8 and r["sockets"] == 8, r
    assert r["pairs"] > 0 and r["pairs_per_s"] > 0 and r["ops"] >= 2 * r["pairs"], r
    for k in ("errors", "failed", "gave_up", "lost", "wrong", "mismatches", "overloads",
              "err_0x04", "stray"):
        assert r[k] == 0, (k, r)
    assert 1.9 < r["seconds"] < 2.5 and 0 < r["p50_us"] <= r["p99_us"] <= r["p999_us"], r


def test_preload_then_verify_and_a_wipeout_loses_every_key():
    c = single_node()
    addr = "%s:%d" % c.addr(0)
    common = ["-s", addr, "-n", 0, "-k", 2000, "--seed", 5, "--value-size", 300]
    r = bench(*common, "--preload")
    assert r["preload_ops"] == 2000 and r["preload_errors"] == 0, r
    r = bench(*common, "--verify")
    assert (r["verify_keys"], r["verify_lost"], r["verify_wrong"]) == (2000, 0, 0), r
    r = bench(*common[:-1], 301, "--verify")          # other values: every one wrong
    assert (r["verify_lost"], r["verify_wrong"]) == (0, 2000), r
    with c.client(0) as cl:
        assert cl.wipeout().err == OK
    r = bench(*common, "--verify")
    assert (r["verify_keys"], r["verify_lost"], r["verify_wrong"]) == (2000, 2000, 0), r


def test_a_key_not_written_in_this_run_may_hold_another_runs_value():
    c = single_node()
    addr = "%s:%d" % c.addr(0)
    r = bench("-s", addr, "-n", 0, "-k", 500, "--seed", 1, "--preload")
    assert r["preload_ops"] == 500, r
    # other values (seed 2) for the same keys: a GET before this run's PUT of
    # the key reads seed 1's value, which is not "wrong"; after it, seed 2's
    r = bench("-s", addr, "-n", 5000, "-k", 500, "--seed", 2, "-r", 0.5)
    assert r["answered"] == 5000 and r["gets"] > 1000 and r["puts"] > 1000, r
    assert (r["wrong"], r["lost"], r["not_found"], r["errors"]) == (0, 0, 0, 0), r


class FakeNodes(threading.Thread):
    """Two UDP sockets acting as nodes: the first send of every message ID is
    answered SYSTEM_OVERLOAD with overloadWaitTime `wait` ms; the next send
    of every third ID is dropped; then PUTs are stored and GETs answered
    from the store. Records every send: id -> [(socket index, time, datagram)]."""

    def __init__(self, wait=30):
        super().__init__(daemon=True)
        self.wait = wait
        self.socks = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            self.socks.append(s)
        self.sends = {}
        self.store = {}
        self.stop = False
        self.lock = threading.Lock()

    def addrs(self):
        return ",".join("127.0.0.1:%d" % s.getsockname()[1] for s in self.socks)

    def run(self):
        while not self.stop:
            ready, _, _ = select.select(self.socks, [], [], 0.05)
            for s in ready:
                dgram, src = s.recvfrom(65536)
                m = dht.decode_msg(dgram)
                q = dht.decode_request(m.payload)
                with self.lock:
                    sends = self.sends.setdefault(m.id, [])
                    sends.append((self.socks.index(s), time.monotonic(), dgram))
                    n = len(sends)
                if n == 1:
                    resp = dht.encode_response(EOVERLOAD, wait=self.wait)
                elif n == 2 and m.id[-1] % 3 == 0:
                    continue
                elif q.cmd == PUT:
                    self.store[q.key] = q.value
                    resp = dht.encode_response(OK)
                elif q.key in self.store:
                    resp = dht.encode_response(OK, value=self.store[q.key])
                else:
                    resp = dht.encode_response(ENOKEY)
                s.sendto(dht.encode_msg(m.id, resp), src)


def test_overload_answers_are_waited_for_and_resent_with_the_same_id():
    fake = FakeNodes(wait=30)
    fake.start()
    try:
        r = bench("-s", fake.addrs(), "--pairs", "-c", 4, "--seconds", 1.5, "--timeout", 100)
    finally:
        fake.stop = True
        fake.join()
    assert r["pairs"] > 0 and r["errors"] == 0 and r["mismatches"] == 0, r
    assert r["failed"] == 0 and r["gave_up"] == 0, r
    ids = fake.sends
    # every request met one overload answer; those backing off at the
    # deadline were abandoned, the others answered, a third of them after a
    # lost resend
    abandoned = [i for i in ids if len(ids[i]) == 1]
    assert r["overloads"] == len(ids) and r["abandoned"] == len(abandoned), (r, len(ids))
    assert r["answered"] == len(ids) - len(abandoned), (r, len(ids))
    dropped = sum(1 for i in ids if i[-1] % 3 == 0 and len(ids[i]) >= 3)
    assert r["retries"] == dropped > 0, (r, dropped)
    keys, waits = set(), []
    for mid, sends in ids.items():
        assert len({s[0] for s in sends}) == 1, "a resend went to another node"
        assert len({s[2] for s in sends}) == 1, "a resend changed the datagram"
        q = dht.decode_request(dht.decode_msg(sends[0][2]).payload)
        assert len(q.key) == 32 and (q.cmd == GET or len(q.value) == 8), q
        keys.add((q.cmd, q.key))
        if len(sends) == 1:
            continue
        assert len(sends) == (3 if mid[-1] % 3 == 0 else 2), sends
        waits.append(sends[1][1] - sends[0][1])
    # overloadWaitTime (30 ms) plus up to 50%: not less, and not the timeout
    waits.sort()
    assert waits[0] >= 0.029 and waits[len(waits) // 2] < 0.055, (waits[0], waits[len(waits) // 2])
    # a fresh key per pair, each PUT then GET once
    puts = {k for c, k in keys if c == PUT}
    gets = {k for c, k in keys if c == GET}
    assert len(puts) + len(gets) == len(ids) and gets <= puts, (len(puts), len(gets), len(ids))


def test_usage_errors():
    exe = os.path.join(os.path.dirname(dht.server_binary()), "dht-bench")
    for args in (["--pairs", "--preload"], ["-n", "0"], ["--retries", "x"], ["-s", "127.0.0.1:1,"], ["-s", "127.0.0.1:0"],
                 ["--peers", "/nonexistent"]):
        p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=30)
        assert p.returncode in (64, 66), (args, p.returncode, p.stderr)


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
