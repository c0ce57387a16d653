#!/usr/bin/env python3
"""Black-box test of replicas whose disks fill up (issue 10): 3 nodes, N=3,
W=2, R=2, each with --data-dir on its own tmpfs, node 2's smaller (4 MiB)
than the others' (16 MiB).

  - once node 2 is full it answers the writes sent to it with an error, not
    an ack, and stays up; writes go on with the acks of nodes 0 and 1;
  - once nodes 0 and 1 are full too, clients get OUT_OF_SPACE (fewer than W
    replicas stored the value); every node stays up and every acknowledged
    value reads back;
  - REMOVEs free room: PUTs succeed again, without a restart.

Like test_single_full.py it runs itself in a mount namespace of its own
(SKIP where that is not allowed).

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_cluster_full.py
Last line 'N passed, N failed'; exit 1 on failure.
"""
import contextlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import OK, ENOSPACE  # noqa: E402
from test_single import expect  # noqa: E402
from test_single_full import (VALUE, check_all, enter_mount_namespace, metrics,  # noqa: E402
                              skippable, tmpfs)

N = 3
SIZES = ["16m", "16m", "4m"]


def count_log(c, i, text):
    with open(c.log_path(i), "rb") as f:
        return f.read().decode("utf-8", "replace").count(text)


@skippable
def test_full_replicas_refuse_writes_and_stay_up():
    with contextlib.ExitStack() as stack:
        disks = [stack.enter_context(tmpfs(size)) for size in SIZES]
        http = dht.free_tcp_ports(N)
        c = dht.Cluster(N, extra_args=lambda i: ["--data-dir", disks[i] + "/data", "--max-memory", "1G",
                                                 "--http-port", http[i]])
        stack.callback(c.cleanup)
        try:
            c.start()
            c.wait_ready(timeout=10)
            c.wait_counts(N, timeout=10)
            cl = stack.enter_context(c.client(0, timeout=0.2))
            stored = {}

            # node 2 fills first (4 MiB: about 330 values): its refusals are
            # no acks, nodes 0 and 1 make W
            full_at = None
            for i in range(450):
                k, v = b"a%05d" % i, os.urandom(VALUE)
                expect(cl.put(k, v), OK, "PUT #%d (nodes 0 and 1 have room)" % i)
                stored[k] = v
                if full_at is None and i % 10 == 0:
                    assert c.running(2), "node 2 died (exit %s) after %d values" % (
                        c.procs[2].returncode, i)
                    if metrics(http[2]).get("dht_store_full"):
                        full_at = i
            for j in range(N):
                assert c.running(j), "node %d died (exit %s)" % (j, c.procs[j].returncode)
            m = metrics(http[2])
            assert m["dht_store_full"] == 1, "node 2 not full after 450 values of 10 KB on 4 MiB"
            assert m["dht_store_refused_writes_total"] >= 100, m
            print("    node 2 full after about %s values; %d refused" % (
                full_at, m["dht_store_refused_writes_total"]))

            # then nodes 0 and 1: OUT_OF_SPACE
            refused = 0
            for j in range(3000):
                k, v = b"c%05d" % j, os.urandom(VALUE)
                r = cl.put(k, v)
                assert r.err in (OK, ENOSPACE), "PUT: %s" % dht.err_name(r.err)
                if r.err == OK:
                    stored[k] = v
                else:
                    refused += 1
                    if refused > 10:
                        break
            assert refused > 10, "no OUT_OF_SPACE after %d PUTs" % j
            print("    %d values acknowledged in all, then OUT_OF_SPACE" % len(stored))
            assert all(c.running(j) for j in range(N)), "a node died on a full disk"
            for j in range(N):
                m = metrics(http[j])
                assert m["dht_store_full"] == 1, "node %d: %s" % (j, m)
                assert count_log(c, j, "store full (disk)") >= 1
            check_all(cl, stored, "with every disk full")

            # removes free room
            for k in list(stored)[:40]:
                expect(cl.remove(k), OK, "REMOVE on full disks")
                del stored[k]
            again = 0
            for j in range(30):
                k, v = b"d%05d" % j, os.urandom(VALUE)
                if cl.put(k, v).err == OK:
                    stored[k] = v
                    again += 1
            print("    after 40 REMOVEs, %d of 30 new PUTs acknowledged" % again)
            assert again >= 15, "only %d of 30 PUTs after 40 REMOVEs" % again
            check_all(cl, stored, "after the removes")
            assert all(c.running(j) for j in range(N)), "a node died"
            for j in range(N):
                lines = count_log(c, j, "store full")
                assert lines <= 4, "node %d logged 'store full' %d times" % (j, lines)
        except BaseException:
            for j in range(N):
                print("    --- node %d log (tail) ---\n    %s" % (j, c.log_tail(j).replace("\n", "\n    ")))
            raise


if __name__ == "__main__":
    enter_mount_namespace()
    sys.exit(dht.run_tests(globals()))
