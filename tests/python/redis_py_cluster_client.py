#!/usr/bin/python3
"""A Redis Cluster client (redis-py's RedisCluster, Debian's python3-redis)
against dht nodes run with --resp-cluster: SET, GET, MSET and MGET with hash
tags across the nodes, going on while the test kills a node. Driven by
tests/blackbox/test_cluster_redis_cluster.py, beside the Node.js client
(tests/node/redis_cluster_client.js), and run by Debian's interpreter
(/usr/bin/python3), the one python3-redis is installed for.

    /usr/bin/python3 redis_py_cluster_client.py PORT[,PORT...]

redis-py learns where each command's keys are from COMMAND (it refuses a
command COMMAND does not describe), and the slots from CLUSTER SLOTS.
Writes 300 keys in 30 hash-tag groups ("{p7}:3") with MSET and reads them
back with MGET, checks SET/GET/EXISTS/DEL of keys across slots, then prints
"READY" and goes on rewriting and reading the keys until a line arrives on
stdin (the test kills a node meanwhile). An operation that fails is tried
again (100 ms apart, 50 times at most); redis-py asks for the slots again
itself after a connection error, and after 3 failures in a row the client
is made again (see connect). Then every key is read back: its value
must be the last one acknowledged, or one written after it whose
acknowledgement was lost. Prints one JSON line: {ops, retried, reconnects,
gave_up, wrong, final_bad, nodes_seen, redirect_loops (commands given up
after 16 -MOVED: "TTL exhausted")} and exits 0 if gave_up, wrong and final_bad
are all 0; exits 1 at once unless redis-py takes every node for a primary.
"""
import json
import os
import select
import sys
import time

from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

DEBUG = bool(os.environ.get("RPC_DEBUG"))   # every failed try on stderr, timed (3 first otherwise)
GROUPS, PER_GROUP = 30, 10
stats = {"ops": 0, "retried": 0, "reconnects": 0, "gave_up": 0, "wrong": 0, "final_bad": 0,
         "nodes_seen": 0, "redirect_loops": 0}
acked = {}     # key -> last value acknowledged
pending = {}   # key -> values written since, not acknowledged
ports = []     # the nodes' ports, as given
rc = None      # the client
first = 0      # the client's first startup node: ports[first]


def connect():
    """A client whose startup nodes are the ports given, from ports[first].

    dynamic_startup_nodes=False: python3-redis 4.3's RedisCluster otherwise
    replaces its startup nodes with the nodes CLUSTER SLOTS names. Either
    way, when it asks for the slots again (after a connection error) it asks
    its startup nodes in order, and one whose connection it dropped (the
    node refused it) gets a new one from a deep copy of its settings, which
    hold the client's lock: "cannot pickle '_thread.lock' object", raised as
    a RedisClusterException that ends the refresh before any other node is
    asked. So while its first startup node is down, every refresh fails, and
    every command to that node's slots fails after 1 s, for good: this
    client once never ended. Kept to the ports given, the startup nodes keep
    the connections made at the start, and a refresh skips a dead one but
    the first; after 3 failures in a row (attempt) the client is made again
    from the next port (what an application using it has to do)."""
    order = ports[first:] + ports[:first]
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in order],
                        socket_timeout=1, socket_connect_timeout=1,
                        cluster_error_retry_attempts=3, dynamic_startup_nodes=False)


def reconnect():
    global rc, first
    stats["reconnects"] += 1
    for _ in range(len(ports)):
        first = (first + 1) % len(ports)
        try:
            new = connect()
        except (RedisError, RedisClusterException, OSError):
            continue
        old, rc = rc, new
        try:
            old.close()
        except (RedisError, OSError):
            pass
        return


def key(g, i):
    return "{p%d}:%d" % (g, i)


def attempt(what, fn):
    for t in range(50):
        try:
            r = fn()
            stats["ops"] += 1
            return r
        except (RedisError, RedisClusterException, OSError) as e:
            stats["retried"] += 1
            if "TTL exhausted" in str(e):   # 16 redirections (-MOVED) in a row
                stats["redirect_loops"] += 1
            if stats["retried"] <= 3 or DEBUG:
                print("%.3f %s: %s" % (time.monotonic(), what, e), file=sys.stderr)
            time.sleep(0.1)
            if t % 3 == 2:
                reconnect()
    stats["gave_up"] += 1
    print("%s: gave up after 50 tries" % what, file=sys.stderr)
    return None


def fine(k, v):
    v = v.decode() if isinstance(v, bytes) else v
    return v == acked.get(k) or v in pending.get(k, [])


def write_group(g, rnd):
    pairs = {key(g, i): "r%d-%s" % (rnd, key(g, i)) for i in range(PER_GROUP)}
    for k, v in pairs.items():
        pending.setdefault(k, []).append(v)
    # one slot (the hash tag): MSET goes to one node as it is
    if attempt("MSET group %d" % g, lambda: rc.mset(pairs)) is True:
        for k, v in pairs.items():
            acked[k] = v
            pending[k] = []


def read_group(g):
    keys = [key(g, i) for i in range(PER_GROUP)]
    vals = attempt("MGET group %d" % g, lambda: rc.mget(keys))
    if vals is None:
        return
    for k, v in zip(keys, vals):
        if not fine(k, v):
            stats["wrong"] += 1
            print("MGET %s: %r, expected %r" % (k, v, acked.get(k)), file=sys.stderr)


def stopped():
    return bool(select.select([sys.stdin], [], [], 0)[0])


def main():
    global rc
    ports.extend(int(p) for p in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if p)
    if not ports:
        print("usage: redis_py_cluster_client.py PORT[,PORT...]", file=sys.stderr)
        return 64
    rc = connect()
    # redis-py takes a node for what CLUSTER SLOTS first lists it as, primary
    # or replica: every node must be a primary, as CLUSTER NODES says (with
    # one primary known, FLUSHALL reached that node alone, and once it was
    # killed the next refresh of the slots failed with an IndexError)
    stats["nodes_seen"] = len(rc.get_primaries())
    if stats["nodes_seen"] != len(ports) or rc.get_replicas():
        print("redis-py knows %d primaries and %d replicas of %d nodes"
              % (stats["nodes_seen"], len(rc.get_replicas()), len(ports)), file=sys.stderr)
        print(json.dumps(stats), flush=True)
        return 1
    for g in range(GROUPS):
        write_group(g, 0)
        if stats["gave_up"]:   # not even the start: say so rather than go on
            print(json.dumps(stats), flush=True)
            return 1
    for g in range(GROUPS):
        read_group(g)
    for i in range(100):   # keys without tags, across slots
        k = "pyplain:%d" % i
        attempt("SET " + k, lambda: rc.set(k, "v%d" % i))
        v = attempt("GET " + k, lambda: rc.get(k))
        if v != b"v%d" % i:
            stats["wrong"] += 1
            print("GET %s: %r" % (k, v), file=sys.stderr)
    # multi-key commands across slots: redis-py splits them by slot
    many = ["pyplain:%d" % i for i in range(20)]
    if attempt("EXISTS across slots", lambda: rc.exists(*many)) != 20:
        stats["wrong"] += 1
    if attempt("DEL across slots", lambda: rc.delete(*many[:10])) != 10:
        stats["wrong"] += 1
    if attempt("EXISTS after DEL", lambda: rc.exists(*many)) != 10:
        stats["wrong"] += 1
    print("READY", flush=True)

    rnd = 1
    while not stopped():
        for g in range(GROUPS):
            if stopped():
                break
            write_group(g, rnd)
            read_group(g)
        rnd += 1

    for g in range(GROUPS):
        for i in range(PER_GROUP):
            k = key(g, i)
            v = attempt("GET " + k, lambda: rc.get(k))
            if not fine(k, v):
                stats["final_bad"] += 1
                print("final GET %s: %r, expected %r" % (k, v, acked.get(k)), file=sys.stderr)
    print(json.dumps(stats), flush=True)
    rc.close()
    return 1 if stats["gave_up"] or stats["wrong"] or stats["final_bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
