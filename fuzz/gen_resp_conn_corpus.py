#!/usr/bin/env python3
"""Writes the seeds of fuzz_resp_conn.c (fuzz/corpus/resp_conn/): command
streams a Redis client sends, each file one control byte (how the stream is
played: fuzz_resp_conn.c's header) and the stream. Every command resp.c
knows, with and without arguments, the subcommands of CLUSTER, CLIENT,
COMMAND and CONFIG, the handshakes of redis-cli and redis-py, pipelines,
MSET and MGET of many keys, AUTH, inline and malformed input. The
regress-* seeds (inputs that found bugs) are not written here: keep them.

usage: fuzz/gen_resp_conn_corpus.py [DIR]     (default fuzz/corpus/resp_conn)
"""
import os
import sys

PASSWORD = b"fuzzpass"

# control byte: bits 0-1 the port (0 plain, 1 cluster, 2 password, 3 both),
# 2-3 the writes (1..8, 1..64, 1..1024 bytes, all at once), 4 datagrams held
# while the client sends, 5 reset at the end, 6 the clock moving (with 4:
# datagrams lost), 7 a slow reader
PLAIN, CLUSTER, PASS, CLUSTER_PASS = 0, 1, 2, 3
W8, W64, W1K, WALL = 0 << 2, 1 << 2, 2 << 2, 3 << 2
HOLD, RESET, TICK, SLOW = 0x10, 0x20, 0x40, 0x80
LOSE = HOLD | TICK


def cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


AUTH = cmd("AUTH", PASSWORD)

seeds = {}


def seed(name, data, *ctrls):
    """name-<ctrl> for each control byte; a password port gets AUTH first
    unless the name says noauth."""
    for c in ctrls:
        body = data
        if c & 2 and "noauth" not in name:
            body = AUTH + data
        seeds["%s-%02x" % (name, c)] = bytes([c]) + body


def each(*args):
    return b"".join(cmd(*a) for a in args)


# ---- every command, with and without its arguments
seed("ping", each(("PING",), ("PING", "hello"), ("PING", "a", "b"), ("ping",)), PLAIN | W64, CLUSTER | W8)
seed("echo", each(("ECHO",), ("ECHO", "hi"), ("ECHO", ""), ("ECHO", "a", "b")), PLAIN | W64, PASS | W8)
seed("get-set", each(("SET", "k", "v"), ("GET", "k"), ("GET",), ("SET", "k"), ("GET", "nope"),
                     ("SET", "k", "v", "EX", "10"), ("SET", "", "v"), ("GET", ""),
                     ("SET", "k" * 33, "v"), ("GET", "k" * 32), ("SET", "k", "v" * 10001),
                     ("SET", "k2", "v" * 10000), ("GET", "k2")),
     PLAIN | W1K, CLUSTER | W64, PASS | W64 | HOLD)
seed("del-exists", each(("SET", "a", "1"), ("SET", "b", "2"), ("DEL",), ("EXISTS",),
                        ("EXISTS", "a", "b", "c", "a"), ("DEL", "a", "b", "c"), ("EXISTS", "a"),
                        ("DEL", "")),
     PLAIN | W64, CLUSTER | W64, PLAIN | W8 | HOLD)
seed("mget-mset", each(("MSET",), ("MSET", "a"), ("MSET", "a", "1", "b"), ("MSET", "a", "1", "b", "2"),
                       ("MGET",), ("MGET", "a", "b", "c"), ("MGET", "a", ""),
                       ("MSET", "{t}a", "1", "{t}b", "2"), ("MGET", "{t}a", "{t}b", "{t}c")),
     PLAIN | W64, CLUSTER | W64, CLUSTER_PASS | W1K | HOLD)
seed("dbsize-flushall", each(("SET", "x", "1"), ("DBSIZE",), ("DBSIZE", "x"), ("FLUSHALL",),
                             ("FLUSHALL", "ASYNC"), ("FLUSHALL", "sync"), ("FLUSHALL", "x"),
                             ("FLUSHALL", "a", "b"), ("DBSIZE",), ("GET", "x")),
     PLAIN | W64, CLUSTER | W1K)
seed("info", each(("INFO",), ("INFO", "server"), ("INFO", "all", "everything")), PLAIN | W1K, CLUSTER | W64)
seed("select", each(("SELECT",), ("SELECT", "0"), ("SELECT", "1"), ("SELECT", "0", "1")), PLAIN | W8)
seed("quit", each(("PING",), ("QUIT",), ("PING",)), PLAIN | W64, CLUSTER | WALL)
seed("quit-args", each(("QUIT", "now"), ("GET", "k")), PLAIN | W8)
seed("quit-noauth", each(("QUIT",)), PASS | W8)
seed("readonly", each(("READONLY",), ("GET", "a"), ("MGET", "a", "b"), ("EXISTS", "a"),
                      ("READONLY", "x"), ("READWRITE",), ("GET", "a"), ("READWRITE", "x"),
                      ("ASKING",), ("ASKING", "x")),
     PLAIN | W64, CLUSTER | W64, CLUSTER_PASS | W8)
seed("unknown", each(("NOPE",), ("NOPE", "a", "b" * 200, "c"), ("", "x"), ("HGET", "h", "f"),
                     ("SUBSCRIBE", "ch"), ("MULTI",), ("EXEC",)), PLAIN | W64, PASS | W64)
seed("arity", each(("GET", "a", "b"), ("SET",), ("ECHO",), ("DBSIZE", "a"), ("SELECT",),
                   ("READONLY", "a"), ("CLIENT",), ("CONFIG",), ("CLUSTER",), ("AUTH",), ("DEL",)),
     PLAIN | W64, CLUSTER | W8)

# ---- COMMAND and its subcommands
seed("command", each(("COMMAND",), ("COMMAND", "COUNT"), ("COMMAND", "LIST"),
                     ("COMMAND", "INFO"), ("COMMAND", "INFO", "get", "cluster|slots", "nope", "client|"),
                     ("COMMAND", "DOCS"), ("COMMAND", "DOCS", "get"), ("COMMAND", "HELP")),
     PLAIN | W1K, CLUSTER | W64)
seed("command-errors", each(("COMMAND", "NOPE"), ("COMMAND", "COUNT", "x"), ("COMMAND", "HELP", "x"),
                            ("COMMAND", "LIST", "FILTERBY", "pattern", "*"), ("COMMAND", "GETKEYS"),
                            ("COMMAND", "GETKEYS", "get"), ("COMMAND", "GETKEYSANDFLAGS", "get")),
     PLAIN | W64, PASS | W8)
seed("command-getkeys", each(("COMMAND", "GETKEYS", "get", "k"), ("COMMAND", "GETKEYS", "mset", "a", "1", "b", "2"),
                             ("COMMAND", "GETKEYS", "mset", "a", "1", "b"),
                             ("COMMAND", "GETKEYSANDFLAGS", "del", "a", "b", "c"),
                             ("COMMAND", "GETKEYS", "ping", "x"), ("COMMAND", "GETKEYS", "nope", "x"),
                             ("COMMAND", "GETKEYS", "cluster", "keyslot", "k"),
                             ("COMMAND", "GETKEYS", "client", "nope"),
                             ("COMMAND", "GETKEYS", "set", "k", "v", "EX", "1"),
                             ("COMMAND", "GETKEYSANDFLAGS", "mget", "a", "b"),
                             ("COMMAND", "GETKEYS", "command", "info")),
     PLAIN | W64, CLUSTER | W1K)
# a23c53a: COMMAND alone after a command that came in two reads
seed("command-after-split", each(("ECHO", "info"), ("COMMAND",), ("ECHO", "list"), ("COMMAND",),
                                 ("COMMAND", "COUNT"), ("COMMAND",)), PLAIN | W8, CLUSTER | W8, PLAIN | W64)

# ---- CLIENT
seed("client", each(("CLIENT", "ID"), ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "app-1"),
                    ("CLIENT", "GETNAME"), ("CLIENT", "INFO"), ("CLIENT", "LIST"),
                    ("CLIENT", "SETNAME", ""), ("CLIENT", "GETNAME"), ("CLIENT", "HELP")),
     PLAIN | W64, CLUSTER | W1K, PASS | W8)
seed("client-errors", each(("CLIENT", "SETNAME", "a b"), ("CLIENT", "SETNAME", "a\nb"),
                           ("CLIENT", "SETINFO", "lib-name", "redis-py"), ("CLIENT", "SETINFO", "lib-ver", "5.0"),
                           ("CLIENT", "SETINFO", "foo", "x"), ("CLIENT", "SETINFO", "lib-name"),
                           ("CLIENT", "LIST", "TYPE", "normal"), ("CLIENT", "NO-EVICT", "on"),
                           ("CLIENT", "NO-EVICT", "maybe"), ("CLIENT", "NO-TOUCH", "off"),
                           ("CLIENT", "REPLY", "ON"), ("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "SKIP"),
                           ("CLIENT", "KILL", "ID", "1"), ("CLIENT", "PAUSE", "100"), ("CLIENT", "ID", "x"),
                           ("CLIENT", "HELP", "x"), ("CLIENT", "TRACKING", "on"), ("CLIENT", "INFO", "x"),
                           ("CLIENT", "GETNAME", "x")),
     PLAIN | W64, CLUSTER | W8)

# ---- CONFIG
seed("config", each(("CONFIG", "GET", "save"), ("CONFIG", "GET", "appendonly"), ("CONFIG", "GET", "maxmemory"),
                    ("CONFIG", "GET"), ("CONFIG", "GET", "a", "b"), ("CONFIG", "SET", "save", ""),
                    ("CONFIG", "RESETSTAT"), ("CONFIG", "get", "*")),
     PLAIN | W64, PASS | W1K)

# ---- CLUSTER
seed("cluster", each(("CLUSTER", "SLOTS"), ("CLUSTER", "SHARDS"), ("CLUSTER", "NODES"), ("CLUSTER", "INFO"),
                     ("CLUSTER", "KEYSLOT", "k"), ("CLUSTER", "KEYSLOT", "{user1000}.following"),
                     ("CLUSTER", "KEYSLOT", ""), ("CLUSTER", "MYID"), ("CLUSTER", "HELP")),
     PLAIN | W1K, CLUSTER | W64, CLUSTER_PASS | WALL)
seed("cluster-errors", each(("CLUSTER", "SLOTS", "x"), ("CLUSTER", "KEYSLOT"), ("CLUSTER", "KEYSLOT", "a", "b"),
                            ("CLUSTER", "RESET"), ("CLUSTER", "ADDSLOTS", "1"), ("CLUSTER", "MYID", "x"),
                            ("CLUSTER", "HELP", "x"), ("CLUSTER", "NODES", "x"), ("CLUSTER", "COUNTKEYSINSLOT", "1")),
     PLAIN | W64, CLUSTER | W8)
seed("cluster-keys", each(*[("SET", "{t%d}k" % i, "v%d" % i) for i in range(16)],
                          *[("GET", "{t%d}k" % i) for i in range(16)],
                          ("MSET", "{t1}a", "1", "{t2}b", "2"), ("MGET", "{t1}a", "{t2}b"),
                          ("DEL", "{t3}k", "{t3}x"), ("EXISTS", "{t4}k", "{t5}k")),
     CLUSTER | W1K, CLUSTER | W64 | HOLD, PLAIN | W1K)

# ---- AUTH
seed("auth-noauth", each(("PING",), ("GET", "k"), ("AUTH", "wrong"), ("GET", "k"), ("AUTH", "bob", PASSWORD),
                         ("AUTH", "a", "b", "c"), ("AUTH", "default", PASSWORD), ("GET", "k"),
                         ("AUTH", "wrong"), ("PING",), ("CLIENT", "INFO")),
     PASS | W64, CLUSTER_PASS | W8, PLAIN | W64)
seed("auth-plain", each(("AUTH", "x"), ("AUTH", "default", "x"), ("AUTH", "bob", "x"), ("PING",)), PLAIN | W64)
seed("auth-bounds-noauth", cmd(*(["GET"] * 11)) + cmd("AUTH", PASSWORD), PASS | W64)
seed("auth-bulk-noauth", cmd("ECHO", "x" * 16385), PASS | W1K)
seed("auth-then-big", AUTH + cmd(*(["EXISTS"] + ["k%d" % i for i in range(20)])) + cmd("ECHO", "x" * 16385),
     PASS | W1K, CLUSTER_PASS | WALL)

# ---- handshakes
seed("redis-cli", each(("COMMAND", "DOCS"), ("PING",), ("SET", "user:1", "alice"), ("GET", "user:1")),
     PLAIN | WALL, CLUSTER | W64)
seed("redis-py", each(("CLIENT", "SETINFO", "LIB-NAME", "redis-py"), ("CLIENT", "SETINFO", "LIB-VER", "5.0.1"),
                      ("PING",), ("SET", "foo", "bar"), ("GET", "foo")), PLAIN | W64, PASS | W64)
seed("redis-py-cluster", each(("CLUSTER", "SLOTS"), ("COMMAND",), ("CLUSTER", "SLOTS"), ("READONLY",),
                              ("SET", "foo", "bar"), ("GET", "foo")), CLUSTER | W1K, CLUSTER_PASS | W64)
seed("redis-benchmark", each(("CONFIG", "GET", "save"), ("CONFIG", "GET", "appendonly"),
                             *[("SET", "key:__rand_int__", "xxx")] * 20, *[("GET", "key:__rand_int__")] * 20),
     PLAIN | WALL, CLUSTER | W1K)

# ---- pipelines, many keys
seed("pipeline-100", each(*[x for i in range(50) for x in (("SET", "p%d" % i, "v%d" % i), ("GET", "p%d" % i))]),
     PLAIN | W1K, PLAIN | W1K | HOLD, CLUSTER | WALL)
seed("pipeline-mixed", each(("PING",), ("SET", "a", "1"), ("CLIENT", "ID"), ("GET", "a"), ("COMMAND", "COUNT"),
                            ("DEL", "a"), ("INFO",), ("EXISTS", "a"), ("CLUSTER", "KEYSLOT", "a"), ("ECHO", "e")),
     PLAIN | W8 | HOLD, CLUSTER | W64 | TICK, PLAIN | W64 | RESET)
seed("mset-300", cmd(*(["MSET"] + [x for i in range(300) for x in ("{m}k%d" % i, "v%d" % i)])) +
     cmd(*(["MGET"] + ["{m}k%d" % i for i in range(300)])) + cmd("DEL", *["{m}k%d" % i for i in range(300)]) +
     cmd("PING"),
     PLAIN | W1K, PLAIN | WALL | HOLD, CLUSTER | W1K, CLUSTER | W1K | RESET)
seed("mget-1000", cmd(*(["MGET"] + ["{g}k%d" % i for i in range(1000)])) +
     cmd(*(["EXISTS"] + ["{g}k%d" % i for i in range(500)])) + cmd("GET", "{g}k1"),
     PLAIN | WALL, CLUSTER | W1K | HOLD)
seed("mset-values", cmd(*(["MSET"] + [x for i in range(20) for x in ("{v}k%d" % i, "v" * 2000)])) +
     cmd(*(["MGET"] + ["{v}k%d" % i for i in range(20)])), PLAIN | W1K, PLAIN | W1K | TICK)
seed("in-flight-reset", each(*[("SET", "r%d" % i, "v") for i in range(40)]), PLAIN | WALL | HOLD | RESET,
     CLUSTER | W64 | HOLD | RESET)
seed("slow-ops", each(*[("GET", "s%d" % i) for i in range(20)], ("PING",)), PLAIN | W8 | HOLD,
     PASS | W64 | TICK)
# the node cut off while the client sends: quorums not reached, TRYAGAIN/busy
seed("cut-off", each(*[x for i in range(30) for x in (("SET", "c%d" % i, "v"), ("GET", "c%d" % i))],
                     ("MSET", "{c}a", "1", "{c}b", "2"), ("MGET", "{c}a", "{c}b", "{c}c"), ("DEL", "{c}a", "{c}b"),
                     ("CLUSTER", "INFO"), ("CLUSTER", "SLOTS")),
     PLAIN | W64 | LOSE, CLUSTER | W64 | LOSE, CLUSTER | W8 | LOSE | RESET)
# a reader slower than the replies: the node's writes queue
seed("slow-reader", each(*[("COMMAND",)] * 40, *[("CLUSTER", "SLOTS")] * 20, ("PING",)),
     PLAIN | WALL | SLOW, CLUSTER | W1K | SLOW, PLAIN | WALL | SLOW | RESET)
# the small stores (ports 2 and 3) fill up: -OOM
seed("fill", each(*[("SET", "f%d" % i, "v" * 9000) for i in range(6)], ("DBSIZE",), ("GET", "f1")),
     PASS | W1K, CLUSTER_PASS | WALL | HOLD, PLAIN | WALL)
seed("fill-more", each(*[("SET", "g%d" % i, "v" * 10000) for i in range(8)], ("MGET", "g1", "g2"),
                       ("INFO",)), PLAIN | WALL, PASS | W1K)
seed("busy", each(*[("GET", "b%d" % i) for i in range(150)], ("MGET", *["b%d" % i for i in range(100)])),
     PASS | W1K | HOLD, CLUSTER_PASS | WALL | HOLD, PASS | W64 | LOSE)
seed("slow-reader-pause", each(*[("COMMAND",)] * 420, ("PING",)), PLAIN | WALL | SLOW, PASS | W1K | SLOW)

# ---- inline, empty and malformed input
seed("inline", b"PING\r\nSET i 1\r\nGET i\nMGET i j\r\n  ECHO\t hi  \r\n\r\nCLUSTER KEYSLOT i\r\n",
     PLAIN | W8, CLUSTER | W64)
seed("inline-quotes", b'SET q "a b"\r\nGET q\r\nSET r "\\x41\\n\\"x\\\\"\r\nMGET q r \'it\\\'s\'\r\n'
     b'ECHO "x"y\r\nPING\r\n', PLAIN | W8, CLUSTER | WALL)
seed("inline-unbalanced", b'PING\r\nSET u "open\r\nPING\r\n', PLAIN | W8, PASS | WALL)
seed("empty-multibulk", b"*0\r\n*-1\r\n" + cmd("PING") + b"*0\r\n\r\n" + cmd("ECHO", "x"), PLAIN | W8)
seed("protocol-error", cmd("PING") + b"*2\r\n$3\r\nGET\r\n+k\r\n" + cmd("PING"), PLAIN | W64, PASS | W8)
seed("bad-length", cmd("SET", "a", "1") + b"*1\r\n$x\r\n", PLAIN | W8)
seed("bad-mbulk", b"*abc\r\n", PLAIN | W8)
seed("huge-bulk", b"*2\r\n$4\r\nECHO\r\n$2000000\r\n", PLAIN | WALL)
seed("cut-short", cmd("PING") + b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva", PLAIN | W8, CLUSTER | W64 | RESET)
# a browser's HTTP request (cross-protocol scripting): closed at POST or Host:
seed("http-post", b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 15\r\n\r\nSET xss pwned\r\n",
     PLAIN | W64, PLAIN | WALL)
seed("http-get", b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + cmd("SET", "k", "v"), PLAIN | W8, CLUSTER | WALL)
seed("binary", cmd("SET", b"\x00\xff\r\n", b"\r\n\x00") + cmd("GET", b"\x00\xff\r\n") +
     cmd("CLIENT", "SETNAME", b"\x01") + cmd("ECHO", b"\r\n-ERR\r\n"), PLAIN | W8, CLUSTER | W64)

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "corpus", "resp_conn")
os.makedirs(out, exist_ok=True)
for name, data in sorted(seeds.items()):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(seeds), out))
