#!/usr/bin/env python3
"""Black-box tests of the Redis protocol (RESP2) front end of one node
(--resp-port): every command, errors in Redis's format, pipelining with
replies in request order, malformed and hostile input, and data shared with
the UDP protocol. A raw-socket RESP client is written below; one test also
uses redis-cli when it is installed (SKIP otherwise). Each test starts its
own node.

Some tests give the node a peer that does not exist ("phantom"): operations
that wait for it stay in flight until --request-timeout, so completions come
late and out of order, and can outlive the connection that asked.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single_resp.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
import test_single  # noqa: E402
from dht import OK, ENOKEY  # noqa: E402


class Err:
    """An error reply; msg is its text without the leading '-'."""

    def __init__(self, msg):
        self.msg = msg

    def __eq__(self, other):
        return isinstance(other, Err) and other.msg == self.msg

    def __repr__(self):
        return "Err(%r)" % self.msg


def encode(*args):
    """A command as a RESP multibulk."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = dht.as_bytes(a) if not isinstance(a, int) else b"%d" % a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp:
    """A RESP2 client on one TCP connection. Replies decode as: status ->
    str, error -> Err, integer -> int, bulk -> bytes (None for nil), array
    -> list (None for a nil array)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        if self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("the server closed the connection")
        self.buf += data

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) - self.pos < n:
            self._fill()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return Err(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n + 2)
            assert data[-2:] == b"\r\n", "bulk string not followed by CRLF: %r" % data[-10:]
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError("not a RESP reply: %r" % line[:100])

    def call(self, *args):
        self.send(encode(*args))
        return self.read()

    def pipeline(self, commands):
        """Sends every command in one write, then reads one reply each."""
        self.send(b"".join(encode(*c) for c in commands))
        return [self.read() for _ in commands]

    def closed_by_server(self, timeout=5.0):
        """True if the server closes the connection (EOF or reset) within
        timeout seconds, once the replies already read are consumed."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


@contextlib.contextmanager
def node(*args, phantom=False):
    """A ready single node serving RESP; yields (cluster, udp client, resp
    port). phantom: the peers file lists a node that never answers, held
    alive (not dead) for the whole test."""
    base = dht.free_port_range(2)
    peers = ["127.0.0.1:%d" % (base + 1)] if phantom else []
    if phantom:
        args += ("--suspect-ms", "300000", "--dead-ms", "600000")
    port = dht.free_tcp_ports(1)[0]
    c = dht.Cluster(1, base_port=base, peers=peers, extra_args=["--resp-port", port] + list(args))
    with test_single.node(cluster=c) as (c, cl):
        yield c, cl, port


def assert_serves(c, cl, port, what):
    """The node is still running and serves UDP and RESP after `what`."""
    test_single.assert_serves(c, cl, what)
    with Resp(port) as r:
        k = os.urandom(8).hex()
        assert r.call("SET", k, "still-here") == "OK", "SET after " + what
        assert r.call("GET", k) == b"still-here", "GET after " + what
        assert r.call("PING") == "PONG", "PING after " + what


def is_err(reply, prefix):
    return isinstance(reply, Err) and reply.msg.startswith(prefix)


def expect_err(reply, prefix, what):
    assert is_err(reply, prefix), "%s: expected an error starting with %r, got %r" % (what, prefix, reply)


# ---------------------------------------------------------------- commands

def test_resp_ping_and_echo():
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("PING") == "PONG"
        assert r.call("ping", "hello") == b"hello"
        assert r.call("ECHO", b"a\r\nb\x00c") == b"a\r\nb\x00c"
        expect_err(r.call("PING", "a", "b"), "ERR wrong number of arguments for 'ping' command", "PING a b")
        expect_err(r.call("ECHO"), "ERR wrong number of arguments for 'echo' command", "ECHO")


def test_resp_inline_commands():
    with node() as (c, cl, port), Resp(port) as r:
        r.send(b"PING\r\n")
        assert r.read() == "PONG"
        r.send(b"  set  inl   value\t\r\n\r\nGET inl\nECHO x\r\n")   # blanks, an empty line, bare LF
        assert [r.read() for _ in range(3)] == ["OK", b"value", b"x"]


def test_resp_inline_quotes_like_redis():
    """Inline commands (telnet, nc) with quotes are split as Redis splits
    them: before, the quotes were bytes of the words, so SET k "x" stored
    the three bytes "x" and SET k "hello world" was refused as a SET with
    options. Compared with redis-server's answers when it is installed."""
    lines = [b'SET q "hello world"\r\n', b"GET q\r\n", b'SET q "x"\r\n', b"GET q\r\n",
             b"SET q 'it\\'s \"quoted\"'\r\n", b"GET q\r\n", b'ECHO "a\\x41\\tb\\\\"\r\n',
             b'ECHO ""\r\n', b'ECHO a"b c"\r\n', b"MSET q1 1 q2\r2\r\n", b"MGET q1 q2\r\n"]
    want = ["OK", b"hello world", "OK", b"x", "OK", b"it's \"quoted\"", b"aA\tb\\", b"", b"ab c", "OK",
            [b"1", b"2"]]
    unbalanced = b'GET "q\r\n'
    with node() as (c, cl, port), redis_server() as redis_port:
        for p in [port] + ([redis_port] if redis_port else []):
            with Resp(p) as r:
                r.send(b"".join(lines))
                got = [r.read() for _ in lines]
                assert got == want, (p, got)
                r.send(unbalanced)
                assert r.read() == Err("ERR Protocol error: unbalanced quotes in request"), p
                assert r.closed_by_server(), p
        assert_serves(c, cl, port, "inline quotes")


def test_resp_set_get_overwrite_and_missing():
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("SET", "alpha", "one") == "OK"
        assert r.call("GET", "alpha") == b"one"
        assert r.call("SET", "alpha", "two") == "OK"
        assert r.call("GET", "alpha") == b"two"
        assert r.call("GET", "never-set") is None
        assert r.call("SET", "empty", "") == "OK"
        assert r.call("GET", "empty") == b""
        key, val = bytes(range(32)), bytes(range(256)) * 39     # CR, LF, NUL inside
        assert r.call("SET", key, val) == "OK"
        assert r.call("GET", key) == val
        big = os.urandom(10000)
        assert r.call("SET", "big", big) == "OK"
        assert r.call("GET", "big") == big


def test_resp_key_and_value_limits():
    with node() as (c, cl, port), Resp(port) as r:
        for cmd in (("GET", "k" * 33), ("SET", "k" * 33, "v"), ("DEL", "ok", "k" * 100),
                    ("EXISTS", "k" * 33), ("MGET", "a", "k" * 33), ("MSET", "a", "1", "k" * 33, "2")):
            expect_err(r.call(*cmd), "ERR invalid key", "%s with a 33+ byte key" % cmd[0])
        for cmd in (("GET", ""), ("SET", "", "v"), ("DEL", ""), ("MSET", "", "v")):
            expect_err(r.call(*cmd), "ERR invalid key", "%s with an empty key" % cmd[0])
        expect_err(r.call("SET", "big", "v" * 10001), "ERR invalid value", "SET of 10001 bytes")
        expect_err(r.call("MSET", "a", "1", "big", "v" * 20000), "ERR invalid value", "MSET of 20000 bytes")
        # a rejected multi-key command changes nothing
        assert r.call("MGET", "a", "big") == [None, None]
        assert r.call("SET", "k" * 32, "v") == "OK"


def test_resp_set_options_are_rejected():
    with node() as (c, cl, port), Resp(port) as r:
        for opts in (("EX", "10"), ("PX", "100"), ("NX",), ("XX",), ("KEEPTTL",), ("GET",)):
            expect_err(r.call("SET", "opt", "v", *opts), "ERR syntax error", "SET with " + " ".join(opts))
        assert r.call("GET", "opt") is None
        expect_err(r.call("SET", "opt"), "ERR wrong number of arguments for 'set' command", "SET k")


def test_resp_del_and_exists_count_keys():
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("MSET", "d1", "a", "d2", "b", "d3", "c") == "OK"
        assert r.call("EXISTS", "d1") == 1
        assert r.call("EXISTS", "d1", "d2", "nope", "d1") == 3    # repeats count, as in Redis
        assert r.call("DEL", "d1", "nope") == 1
        assert r.call("DEL", "d1") == 0
        assert r.call("DEL", "d2", "d3") == 2
        assert r.call("EXISTS", "d1", "d2", "d3") == 0
        expect_err(r.call("DEL"), "ERR wrong number of arguments for 'del' command", "DEL")
        expect_err(r.call("EXISTS"), "ERR wrong number of arguments for 'exists' command", "EXISTS")


def test_resp_mget_and_mset():
    with node() as (c, cl, port), Resp(port) as r:
        pairs = [("m%d" % i, "v%d" % i) for i in range(20)]
        assert r.call("MSET", *[x for p in pairs for x in p]) == "OK"
        keys = [k for k, _ in pairs]
        assert r.call("MGET", *keys) == [v.encode() for _, v in pairs]
        assert r.call("MGET", "m3", "missing", "m3") == [b"v3", None, b"v3"]
        expect_err(r.call("MSET", "a", "1", "b"), "ERR wrong number of arguments for 'mset' command", "MSET odd")
        expect_err(r.call("MGET"), "ERR wrong number of arguments for 'mget' command", "MGET")


def test_resp_dbsize_and_flushall():
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("DBSIZE") == 0
        for i in range(30):
            r.call("SET", "f%d" % i, "x")
        assert r.call("DBSIZE") == 30
        assert r.call("DEL", "f0") == 1
        assert r.call("DBSIZE") == 29
        assert r.call("FLUSHALL") == "OK"
        assert r.call("DBSIZE") == 0
        assert r.call("GET", "f1") is None
        assert r.call("SET", "f1", "y") == "OK"
        assert r.call("FLUSHALL", "ASYNC") == "OK"
        assert r.call("DBSIZE") == 0
        expect_err(r.call("FLUSHALL", "NOW"), "ERR syntax error", "FLUSHALL NOW")
        expect_err(r.call("DBSIZE", "x"), "ERR wrong number of arguments for 'dbsize' command", "DBSIZE x")


def test_resp_info_sections():
    with node() as (c, cl, port), Resp(port) as r:
        r.call("SET", "i1", "x")
        info = r.call("INFO")
        assert isinstance(info, bytes), info
        text = info.decode()
        fields = dict(l.split(":", 1) for l in text.split("\r\n") if l and not l.startswith("#"))
        assert text.startswith("# Server\r\n"), text[:50]
        assert fields["redis_version"].startswith("7.0.0"), fields["redis_version"]
        assert fields["process_id"] == str(c.pid(0))
        assert fields["tcp_port"] == str(port)
        assert fields["dht_udp_port"] == str(c.port(0))
        assert fields["dht_members_live"] == "1"
        assert fields["dht_keys"] == "1"
        assert int(fields["uptime_in_seconds"]) >= 0
        assert int(fields["connected_clients"]) >= 1
        assert r.call("INFO", "server").startswith(b"# Server\r\n")


def test_resp_info_sections_asked_like_redis():
    """INFO with sections answers those alone, as Redis 7.0 does (every section
    came whatever was asked: redis-py's info("cluster") gave every field):
    the same sections as redis-server's, in any case, several at once,
    default/all/everything for all, nothing for an unknown one."""
    def sections(text):
        return [l for l in text.decode().split("\r\n") if l.startswith("#")]
    with node() as (c, cl, port), Resp(port) as r, redis_server() as redis_port:
        assert r.call("INFO", "cluster") == b"# Cluster\r\ncluster_enabled:0\r\n"
        assert r.call("INFO", "nosuch") == b""
        two = r.call("INFO", "SERVER", "clients").decode()
        assert sections(two.encode()) == ["# Server", "# Clients"], two
        assert "\r\n\r\n# Clients\r\n" in two and not two.endswith("\r\n\r\n"), two
        every = r.call("INFO")
        assert "# DHT" in sections(every) and r.call("INFO", "dht").startswith(b"# DHT\r\ndht_udp_port:")
        for asked in (("all",), ("default",), ("everything",), ("keyspace", "all")):
            assert sections(r.call("INFO", *asked)) == sections(every), asked
        if redis_port:
            with Resp(redis_port) as redis:
                for asked in (("cluster",), ("nosuch",), ("server", "CLIENTS"), ("Stats", "cluster", "x")):
                    assert sections(r.call("INFO", *asked)) == sections(redis.call("INFO", *asked)), asked
                assert r.call("INFO", "cluster") == redis.call("INFO", "cluster")


def test_resp_client_handshake_commands():
    """What redis-cli, redis-benchmark and client libraries send on connecting."""
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("COMMAND", "DOCS") == []
        n = r.call("COMMAND", "COUNT")
        assert isinstance(n, int) and n >= 16 and len(r.call("COMMAND")) == n, n
        assert r.call("SELECT", "0") == "OK"
        expect_err(r.call("SELECT", "1"), "ERR DB index is out of range", "SELECT 1")
        assert r.call("CLIENT", "GETNAME") is None
        assert r.call("CLIENT", "SETNAME", "tester") == "OK"
        assert r.call("CLIENT", "SETINFO", "lib-name", "test") == "OK"
        assert r.call("CLIENT", "GETNAME") == b"tester"
        assert r.call("CONFIG", "GET", "save") == [b"save", b""]
        assert r.call("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
        assert r.call("CONFIG", "GET", "maxmemory-policy") == []
        expect_err(r.call("CONFIG", "SET", "save", ""), "ERR unknown subcommand", "CONFIG SET")
        expect_err(r.call("CONFIG", "GET"), "ERR wrong number of arguments", "CONFIG GET")


def client_fields(line):
    return dict(f.split("=", 1) for f in line.decode().split())


def test_resp_client_subcommands_like_redis():
    """CLIENT ID, INFO and LIST answer what Redis answers (redis-py parses
    their fields: every subcommand but GETNAME was once answered +OK, which
    it could not parse), SETNAME names the connection, and what is not
    supported is refused: a client that turned replies off (REPLY OFF) and
    was told OK took the next reply for the wrong command."""
    with node() as (c, cl, port), Resp(port) as r, Resp(port) as other:
        a, b = r.call("CLIENT", "ID"), other.call("CLIENT", "ID")
        assert isinstance(a, int) and isinstance(b, int) and a != b, (a, b)
        assert r.call("CLIENT", "SETNAME", "first") == "OK"
        expect_err(r.call("CLIENT", "SETNAME", "two words"), "ERR Client names cannot contain",
                   "SETNAME with a space")
        expect_err(r.call("CLIENT", "SETNAME", "a", "b"), "ERR wrong number of arguments",
                   "SETNAME a b")
        assert r.call("CLIENT", "GETNAME") == b"first"
        info = client_fields(r.call("CLIENT", "INFO"))
        assert info["id"] == str(a) and info["name"] == "first" and info["cmd"] == "client|info", info
        for k in ("id", "age", "idle", "db", "sub", "psub", "multi", "qbuf", "qbuf-free", "obl",
                  "argv-mem", "oll", "omem", "tot-mem"):   # redis-py's int() of each
            int(info[k])
        listed = [client_fields(l) for l in r.call("CLIENT", "LIST").splitlines()]
        assert sorted(int(f["id"]) for f in listed) == sorted([a, b]), listed
        assert [f["name"] for f in listed if f["id"] == str(a)] == ["first"]
        assert r.call("CLIENT", "NO-EVICT", "on") == "OK"
        for args, err in ((("REPLY", "OFF"), "ERR CLIENT REPLY OFF"),
                          (("REPLY", "SKIP"), "ERR CLIENT REPLY OFF"),
                          (("KILL", "127.0.0.1:1"), "ERR unknown subcommand 'KILL'"),
                          (("NOSUCH",), "ERR unknown subcommand 'NOSUCH'"),
                          (("ID", "x"), "ERR wrong number of arguments"),
                          (("NO-EVICT", "maybe"), "ERR syntax error")):
            expect_err(r.call("CLIENT", *args), err, "CLIENT " + " ".join(args))
        assert r.call("SET", "k", "v") == "OK" and r.call("GET", "k") == b"v"
        with redis_server() as redis_port:
            if redis_port is None:
                return
            with Resp(redis_port) as redis:
                for args in (("NOSUCH",), ("ID", "x"), ("NO-EVICT", "maybe"),
                             ("SETNAME", "two words"), ("INFO", "x")):
                    assert repr(r.call("CLIENT", *args)) == repr(redis.call("CLIENT", *args)), args
                theirs = client_fields(redis.call("CLIENT", "INFO"))
                assert list(info) == list(theirs), (list(info), list(theirs))


@contextlib.contextmanager
def redis_server():
    """A redis-server on a free port (no persistence), or None when it is
    not installed (scripts/deps installs it)."""
    path = shutil.which("redis-server")
    if not path:
        print("    SKIP the comparison with redis-server: not installed (scripts/deps installs it)")
        yield None
        return
    port = dht.free_tcp_ports(1)[0]
    p = subprocess.Popen([path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                with Resp(port, timeout=1) as r:
                    return r.call("PING") == "PONG"
            except OSError:
                return False
        dht.wait_until(up, timeout=10, what="redis-server answers")
        yield port
    finally:
        p.terminate()
        p.wait(timeout=10)


# Where COMMAND's description of a command differs from redis-server 7.0's,
# on purpose: SET takes no options here (Redis's may read: its GET option),
# DBSIZE counts the replicas a node holds (a client summing it over the
# nodes, as Redis's tip says, would count each key N times), CONFIG GET
# takes one parameter.
COMMAND_DIFFERENCES = {("set", 8), ("dbsize", 7), ("config|get", 1)}


def test_resp_command_describes_commands_as_redis():
    """COMMAND, COMMAND INFO, LIST, GETKEYS: what cluster clients read to find
    a command's keys (redis-py's RedisCluster refuses a command COMMAND does
    not describe), compared with redis-server's own answers."""
    with node() as (c, cl, port), Resp(port) as r, redis_server() as redis_port:
        every = r.call("COMMAND")
        names = [e[0].decode() for e in every]
        assert [n.encode() for n in names] == r.call("COMMAND", "LIST")
        assert r.call("COMMAND", "INFO") == every
        assert {"get", "set", "del", "exists", "mget", "mset", "cluster", "command"} <= set(names)
        get, mset = r.call("COMMAND", "INFO", "GET", "mset")
        assert get[:7] == [b"get", 2, ["readonly", "fast"], 1, 1, 1, ["@read", "@string", "@fast"]], get
        assert mset[1:6] == [-3, ["write", "denyoom"], 1, -1, 2], mset
        assert r.call("COMMAND", "INFO", "nosuch", "cluster|slots")[0] is None
        assert r.call("COMMAND", "GETKEYS", "MSET", "a", "1", "{t}b", "2") == [b"a", b"{t}b"]
        assert r.call("COMMAND", "GETKEYSANDFLAGS", "get", "k") == [[b"k", ["RO", "access"]]]
        assert r.call("COMMAND", "GETKEYS", "DEL", "x", "y", "z") == [b"x", b"y", b"z"]
        errors = [("GETKEYS", "nosuch", "x"), ("GETKEYS", "ping", "x"), ("GETKEYS", "get", "a", "b"),
                  ("GETKEYS", "get"), ("COUNT", "x"), ("NOSUCH",)]
        ours = [r.call("COMMAND", *e) for e in errors]
        for e, reply in zip(errors, ours):
            assert isinstance(reply, Err), (e, reply)
        if redis_port is None:
            return
        with Resp(redis_port) as redis:
            assert [redis.call("COMMAND", *e).msg for e in errors] == [e.msg for e in ours]
            # GETKEYS of random commands (keys, errors) as Redis answers them;
            # CLIENT and CONFIG have subcommands here that Redis has not
            seed = random.randrange(1 << 30)
            rnd = random.Random(seed)
            print("    COMMAND GETKEYS of 300 random commands, seed %d" % seed)
            plain = [n for n, e in zip(names, every) if not e[9]] + ["nosuch"]
            subs = [s[0].decode().split("|")[1] for s in every[names.index("cluster")][9]] + ["nosuch"]
            for _ in range(300):
                name = rnd.choice(plain + ["cluster"])
                args = [rnd.choice(subs)] if name == "cluster" else []
                args += ["k%d" % rnd.randrange(100) for _ in range(rnd.randrange(5))]
                cmd = ["COMMAND", rnd.choice(["GETKEYS", "GETKEYSANDFLAGS"]), name.upper()] + args
                mine, theirs = r.call(*cmd), redis.call(*cmd)
                if (name, 8) in COMMAND_DIFFERENCES and cmd[1] == "GETKEYSANDFLAGS":
                    mine, theirs = (x if isinstance(x, Err) else [k[0] for k in x] for x in (mine, theirs))
                assert repr(mine) == repr(theirs), (seed, cmd, mine, theirs)
            for mine in every:
                theirs = redis.call("COMMAND", "INFO", mine[0])[0]
                assert theirs is not None, mine[0]
                name = mine[0].decode()
                for i in range(9):
                    if (name, i) not in COMMAND_DIFFERENCES:
                        assert mine[i] == theirs[i], (name, i, mine[i], theirs[i])
                subs = {s[0]: s for s in theirs[9]}
                for sub in mine[9]:   # the subcommands it has, as Redis has them
                    assert sub[0] in subs, sub[0]
                    for i in range(10):
                        if (sub[0].decode(), i) not in COMMAND_DIFFERENCES:
                            assert sub[i] == subs[sub[0]][i], (sub[0], i, sub[i], subs[sub[0]][i])


def test_resp_command_alone_after_a_split_command():
    """COMMAND with no argument (what redis-py's RedisCluster sends first on
    every new client) after a command that came in two reads: the node read
    the subcommand from the earlier command's freed input (a node of the
    Redis Cluster test crashed 4 runs of 20; ASan: heap-use-after-free)."""
    with node() as (c, cl, port), Resp(port) as r:
        for sub in ("info", "list", "count", "docs"):
            r.send(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s" % (len(sub), sub[:2].encode()))
            time.sleep(0.05)   # the rest in a read of its own: the node keeps the start
            r.send(sub[2:].encode() + b"\r\n")
            assert r.read() == sub.encode()
            every = r.call("COMMAND")
            assert isinstance(every, list) and len(every) > 10, every
        assert r.call("PING") == "PONG"


def test_resp_http_requests_are_refused_like_redis():
    """A browser's POST, which any web page can aim at a loopback port: its
    body ran as commands (SET xss pwned answered +OK and wrote the key).
    Closed at the POST line, or at Host:, as Redis does; nothing runs."""
    body = b"SET xss pwned\r\n"
    post = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    get = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET xss2 pwned\r\n"
    with node() as (c, cl, port):
        for request in (post, get, post.lower()):
            with Resp(port) as r:
                r.send(request)
                assert r.closed_by_server(), request[:20]
        with Resp(port) as r:
            assert r.call("EXISTS", "xss", "xss2") == 0
            assert r.call("PING") == "PONG"
        if os.path.exists(c.log_path(0)):
            with open(c.log_path(0), "rb") as f:
                assert b"cross-protocol" in f.read()


def test_resp_quit_closes_after_ok():
    with node() as (c, cl, port), Resp(port) as r:
        r.send(encode("SET", "q", "1") + encode("QUIT") + encode("SET", "q", "2"))
        assert [r.read(), r.read()] == ["OK", "OK"]
        assert r.closed_by_server(), "connection still open after QUIT"
        with Resp(port) as r2:
            assert r2.call("GET", "q") == b"1", "a command after QUIT ran"


def test_resp_select_like_redis():
    """SELECT's errors as Redis 7.0's, in its order: every argument but 0 was
    'DB index is out of range', not an integer included, and in cluster mode
    too, where Redis says SELECT is not allowed. Compared with redis-server's
    (16 databases: indexes past 15 or negative, where one and 16 agree)."""
    args = ["0", "abc", "00", "-0", "", " 0", "+0", "99999999999", "9223372036854775808", "-1", "16"]
    with node() as (c, cl, port), Resp(port) as r, redis_server() as redis_port:
        mine = [r.call("SELECT", a) for a in args]
        not_int = Err("ERR value is not an integer or out of range")
        assert mine[:3] == ["OK", not_int, not_int], mine
        assert mine[-1] == Err("ERR DB index is out of range"), mine
        if redis_port:
            with Resp(redis_port) as redis:
                assert mine == [redis.call("SELECT", a) for a in args], mine
    with node("--resp-cluster") as (c, cl, port), Resp(port) as r:
        assert r.call("SELECT", "0") == "OK"
        assert r.call("SELECT", "1") == Err("ERR SELECT is not allowed in cluster mode")
        assert r.call("SELECT", "x") == Err("ERR value is not an integer or out of range")


def test_resp_unknown_command_error_like_redis():
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("FOO", "a", "b") == Err("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")
        assert r.call("hello") == Err("ERR unknown command 'hello', with args beginning with: ")
        # control characters in a name cannot break the reply line; long args are cut
        reply = r.call("x\r\ny", "z" * 1000)
        assert is_err(reply, "ERR unknown command 'x  y'"), reply
        assert len(reply.msg) < 300, len(reply.msg)
        assert r.call("PING") == "PONG"


def test_resp_arity_errors_like_redis():
    with node() as (c, cl, port), Resp(port) as r:
        for cmd, name in ((("GET",), "get"), (("GET", "a", "b"), "get"), (("SET", "a"), "set"),
                          (("MGET",), "mget"), (("MSET", "a"), "mset"), (("ECHO", "a", "b"), "echo"),
                          (("SELECT",), "select"), (("CLIENT",), "client"), (("CONFIG",), "config")):
            assert r.call(*cmd) == Err("ERR wrong number of arguments for '%s' command" % name), cmd
        assert r.call("get", "a") is None    # names are case-insensitive


def test_resp_out_of_memory_is_an_oom_error():
    with node("--max-memory", "100K") as (c, cl, port), Resp(port) as r:
        reply = None
        for i in range(200):
            reply = r.call("SET", "fill%03d" % i, "v" * 1000)
            if reply != "OK":
                break
        expect_err(reply, "OOM ", "SET over --max-memory")
        assert r.call("GET", "fill000") == b"v" * 1000
        assert r.call("DEL", "fill000") == 1
        assert r.call("SET", "small", "x") == "OK"


# ---------------------------------------------------------------- pipelining

def test_resp_pipeline_of_100_commands_replies_in_order():
    with node() as (c, cl, port), Resp(port) as r:
        cmds, want = [], []
        for i in range(25):
            k, v = "p%d" % i, "val%d" % i
            cmds += [("SET", k, v), ("GET", k), ("EXISTS", k, "nope"), ("PING", "n%d" % i)]
            want += ["OK", v.encode(), 1, b"n%d" % i]
        assert len(cmds) == 100
        assert r.pipeline(cmds) == want


def test_resp_pipeline_past_the_in_flight_limit():
    """5000 commands in one write, then 1000 GETs of 10000-byte values
    (10 MB of replies: the node stops running commands while 4 MiB wait to
    be written, and resumes as the client reads)."""
    with node() as (c, cl, port), Resp(port) as r:
        cmds = [("SET", "deep%d" % i, "v%d" % i) if i % 2 == 0 else ("GET", "deep%d" % (i - 1))
                for i in range(5000)]
        want = ["OK" if i % 2 == 0 else b"v%d" % (i - 1) for i in range(5000)]
        assert r.pipeline(cmds) == want
        big = os.urandom(10000)
        assert r.call("SET", "big", big) == "OK"
        r.send(encode("GET", "big") * 1000)
        time.sleep(0.5)     # let the node fill the socket and pause
        for i in range(1000):
            assert r.read() == big, "GET #%d of the big value" % i
        assert r.call("PING") == "PONG"


def test_resp_late_completions_keep_request_order():
    """With a phantom peer and R=W=1, a GET of a missing key waits for the
    phantom until the request timeout while others complete at once: the
    replies must still come back in request order."""
    with node("--read-quorum", "1", "--write-quorum", "1", "--request-timeout", "200",
              phantom=True) as (c, cl, port), Resp(port) as r:
        assert r.call("SET", "here", "yes") == "OK"
        cmds = [("GET", "missing1"), ("GET", "here"), ("PING",), ("MGET", "missing2", "here", "missing3"),
                ("EXISTS", "here", "missing4"), ("DEL", "missing5"), ("GET", "here"), ("DBSIZE",)]
        t0 = time.monotonic()
        got = r.pipeline(cmds)
        assert got == [None, b"yes", "PONG", [None, b"yes", None], 1, 0, b"yes", 1], got
        assert time.monotonic() - t0 >= 0.15, "the GETs of missing keys did not wait for the phantom"


def test_resp_in_flight_limit_pauses_and_resumes():
    """3000 pipelined GETs of missing keys, each in flight until the request
    timeout: the node stops reading at 1024 outstanding replies and resumes
    as they complete; GETs of a present key in between keep their place."""
    with node("--read-quorum", "1", "--write-quorum", "1", "--request-timeout", "200",
              phantom=True) as (c, cl, port), Resp(port, timeout=30) as r:
        assert r.call("SET", "here", "yes") == "OK"
        cmds = [("GET", "missing%d" % i) if i % 10 else ("GET", "here") for i in range(3000)]
        t0 = time.monotonic()
        got = r.pipeline(cmds)
        assert got == [None if i % 10 else b"yes" for i in range(3000)]
        took = time.monotonic() - t0
        assert took >= 0.4, "3000 waiting GETs answered in %.2f s: not paused at 1024" % took


def test_resp_connection_closed_with_operations_in_flight():
    """Completions that arrive after their connection closed are dropped
    (under ASan this catches a use after free)."""
    with node("--read-quorum", "1", "--write-quorum", "1", "--request-timeout", "300",
              phantom=True) as (c, cl, port):
        for n in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"".join(encode("GET", "gone%d" % i) for i in range(500)) +
                      encode("MGET", *["m%d" % i for i in range(100)]) + encode("DEL", "a", "b"))
            time.sleep(0.05 * n)
            s.close()
        time.sleep(1.8)     # every operation has ended by now (5 request timeouts at most)
        assert_serves(c, cl, port, "connections closed with operations in flight")


def test_resp_overload_answers_busy():
    """More operations than the node takes at once (--max-inflight): a
    command of several keys is refused whole, with one -ERR busy (it was
    refused key by key: part of an MSET or DEL done and the client told it
    failed, an MGET's array holding errors as values), while one that fits
    runs. A command of more keys than that runs 256 at a time (a window)."""
    with node("--read-quorum", "1", "--request-timeout", "200", "--max-inflight", "300",
              phantom=True) as (c, cl, port), Resp(port, timeout=30) as a, Resp(port, timeout=30) as b:
        keys = ["b%d" % i for i in range(300)]   # each waits for the phantom peer
        a.send(encode("MGET", *keys))            # 256 in flight, the rest after them
        time.sleep(0.3)
        expect_err(b.call("MGET", *["c%d" % i for i in range(100)]), "ERR busy", "MGET past the bound")
        expect_err(b.call("DEL", *["c%d" % i for i in range(45)]), "ERR busy", "DEL past the bound")
        assert b.call("GET", "c1") is None      # one more fits
        got = a.read()
        assert got == [None] * len(keys), [g for g in got if g is not None][:3]
        assert b.call("PING") == "PONG"


def test_resp_client_leaving_mid_reply_does_not_kill_the_node():
    """The client closes with 10 MB of replies unread: its kernel resets
    the connection and the node's next write fails (EPIPE, not SIGPIPE)."""
    with node() as (c, cl, port):
        with Resp(port) as r:
            assert r.call("SET", "big", os.urandom(10000)) == "OK"
        for _ in range(3):
            with Resp(port) as r:
                r.send(encode("GET", "big") * 1000)
                r.read()
        time.sleep(0.3)
        assert_serves(c, cl, port, "clients leaving mid-reply")


def test_resp_eof_after_pipeline_still_answers():
    with node() as (c, cl, port), Resp(port) as r:
        r.send(b"".join(encode("SET", "e%d" % i, "x") for i in range(200)) + encode("DBSIZE"))
        r.sock.shutdown(socket.SHUT_WR)
        assert [r.read() for _ in range(201)] == ["OK"] * 200 + [200]
        assert r.closed_by_server(), "connection not closed after EOF"


def test_resp_many_connections():
    with node() as (c, cl, port):
        conns = [Resp(port) for _ in range(100)]
        try:
            for i, r in enumerate(conns):
                r.send(encode("SET", "c%d" % i, "v%d" % i) + encode("GET", "c%d" % i))
            for i, r in enumerate(conns):
                assert [r.read(), r.read()] == ["OK", b"v%d" % i]
            info = conns[0].call("INFO").decode()
            assert "connected_clients:100\r\n" in info, [l for l in info.split("\r\n") if "clients" in l]
        finally:
            for r in conns:
                r.close()


# ---------------------------------------------------------------- bad input

PROTOCOL_ERRORS = [
    (b"*abc\r\n", "invalid multibulk length"),
    (b"*2000000\r\n", "invalid multibulk length"),
    (b"*99999999999999999999\r\n", "invalid multibulk length"),
    (b"*1\r\n$abc\r\n", "invalid bulk length"),
    (b"*1\r\n$-5\r\n", "invalid bulk length"),
    (b"*1\r\n$-1\r\n", "invalid bulk length"),
    (b"*1\r\n$999999999999\r\n", "invalid bulk length"),
    (b"*1\r\n$536870912\r\n", "invalid bulk length"),
    (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
    (b"*2\r\n$4\r\nPING\r\n:1\r\n", "expected '$', got ':'"),
    (b"*1\r\n\n$4\r\nPING\r\n", "expected '$', got ' '"),
]


def test_resp_protocol_errors_like_redis():
    with node() as (c, cl, port):
        for data, why in PROTOCOL_ERRORS:
            with Resp(port) as r:
                r.send(encode("SET", "before", "1") + data + encode("SET", "after", "1"))
                assert r.read() == "OK", "reply before %r" % data
                reply = r.read()
                assert reply == Err("ERR Protocol error: " + why), "%r: %r" % (data, reply)
                assert r.closed_by_server(), "connection open after %r" % data
        with Resp(port) as r:
            assert r.call("GET", "after") is None, "a command after a protocol error ran"
        assert_serves(c, cl, port, "protocol errors")


def test_resp_protocol_error_past_the_buffer_bound():
    """A protocol error whose reply takes the bytes held for clients past
    --resp-max-buffer: the client holding the most, the one in error (its
    command of almost 1 MiB is held), was closed for it, then marked
    QUITTING after the reply, and closed a second time when its reply was
    written (libuv: Assertion `!uv__is_closing(handle)' failed; abort).
    Seen reading resp.c for fuzz/fuzz_resp_conn.c, which aborts on it
    (fuzz/corpus/resp_conn/regress-evicted-by-protocol-error). Sizes
    around the bound: some tip it (the reply and the connection's first
    reply slots, about 1 KiB). QUIT set its state after its reply alike."""
    limit = 1 << 20
    with node("--resp-max-buffer", "1M") as (c, cl, port):
        for n in range(limit - 2048, limit, 128):
            with Resp(port) as r:
                r.send(b"*3\r\n$4\r\nECHO\r\n$%d\r\n" % n + b"x" * n + b"\r\n")
                r.send(b"!")   # expected '$'
                try:
                    reply = r.read()
                    assert reply == Err("ERR Protocol error: expected '$', got '!'"), (n, reply)
                except (EOFError, ConnectionResetError):
                    pass       # closed for what it held: it may be, but the node lives on
            try:
                with Resp(port) as r:
                    assert r.call("PING") == "PONG"
            except OSError:
                raise AssertionError("the node died at a command of %d bytes" % n)
        assert_serves(c, cl, port, "protocol errors past --resp-max-buffer")


def test_resp_empty_and_negative_multibulk_are_skipped():
    with node() as (c, cl, port), Resp(port) as r:
        r.send(b"*0\r\n*-1\r\n*-100\r\n" + encode("PING"))
        assert r.read() == "PONG"


def test_resp_oversized_input_is_refused():
    with node() as (c, cl, port):
        # each case is sent whole before the node can tell (64 KiB + 1 byte
        # without a line end): it closes with nothing left unread, so the
        # close is not a reset that could lose the reply
        cases = [
            (b"PING " + b"x" * (65536 - 4), "too big inline request"),
            (b"*" + b"1" * 65536, "too big mbulk count string"),
            (b"*1\r\n$" + b"1" * 65536, "too big bulk count string"),
            # 1 MiB arguments: the fourth would take the command past 4 MiB
            (b"*5\r\n" + (b"$1048576\r\n" + b"x" * 1048576 + b"\r\n") * 3 + b"$1048576\r\n",
             "command too big"),
        ]
        for data, why in cases:
            with Resp(port, timeout=30) as r:
                r.send(data)
                reply = r.read()
                assert is_err(reply, "ERR Protocol error: " + why), "%s: %r" % (why, reply)
                assert r.closed_by_server(), "connection open after " + why
        with Resp(port) as r:   # a 1 MiB bulk is still a clean error, not a disconnect
            expect_err(r.call("SET", "k", "v" * (1 << 20)), "ERR invalid value", "SET of 1 MiB")
            assert r.call("ECHO", "e" * 100000) == b"e" * 100000
        assert_serves(c, cl, port, "oversized input")


def _send_quietly(port, data, close_early=False):
    """Sends data on a new connection and reads whatever comes back; the
    node may answer an error and close, or reset the connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            if close_early:
                return
            s.shutdown(socket.SHUT_WR)
            s.settimeout(2)
            while s.recv(65536):
                pass
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass


def test_resp_random_bytes_do_not_crash():
    rnd = random.Random(4)
    with node() as (c, cl, port):
        for i in range(200):
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 2000)))
            if i % 3 == 0:
                junk = b"*" + junk        # look like a multibulk for longer
            elif i % 3 == 1:
                junk = b"*3\r\n$3\r\nSET\r\n$" + junk
            _send_quietly(port, junk, close_early=i % 5 == 0)
        assert_serves(c, cl, port, "random bytes")


def test_resp_truncated_commands_do_not_crash():
    with node() as (c, cl, port):
        full = encode("SET", "trunc", "v" * 100) + encode("MGET", "a", "b", "c")
        for n in range(len(full)):
            _send_quietly(port, full[:n], close_early=n % 2 == 0)
        # byte by byte on one connection: the parser resumes anywhere
        with Resp(port) as r:
            for b in full:
                r.send(bytes([b]))
            assert [r.read(), r.read()] == ["OK", [None, None, None]]
        assert_serves(c, cl, port, "truncated commands")


# ---------------------------------------------------------------- shared data

def test_resp_and_udp_see_the_same_data():
    with node() as (c, cl, port), Resp(port) as r:
        assert r.call("SET", "from-resp", "r-value") == "OK"
        got = cl.get(b"from-resp")
        assert (got.err, got.value) == (OK, b"r-value"), got
        assert cl.put(b"from-udp", b"u-value").err == OK
        assert r.call("GET", "from-udp") == b"u-value"
        assert cl.remove(b"from-resp").err == OK
        assert r.call("GET", "from-resp") is None
        assert r.call("DEL", "from-udp") == 1
        assert cl.get(b"from-udp").err == ENOKEY


# ---------------------------------------------------------------- Redis Cluster

# CLUSTER KEYSLOT as redis-server 7.0.15 answers it (hash tags included).
REDIS_KEYSLOTS = {"foo": 12182, "bar": 5061, "hello": 866, "123456789": 12739,
                  "{user1000}.following": 3443, "{user1000}.followers": 3443,
                  "foo{}{bar}": 8363, "foo{{bar}}zap": 4015, "foo{bar}{zap}": 5061}


def node_id(port):
    """The node ID every node gives 127.0.0.1:port (resp.h)."""
    import hashlib
    return hashlib.blake2b(b"127.0.0.1:%d" % port, digest_size=20).hexdigest()


def test_resp_cluster_keyslot_matches_redis():
    with node() as (c, cl, port), Resp(port) as r:
        for k, slot in REDIS_KEYSLOTS.items():
            assert r.call("CLUSTER", "KEYSLOT", k) == slot, k
        expect_err(r.call("CLUSTER", "KEYSLOT"), "ERR wrong number of arguments", "KEYSLOT")
        expect_err(r.call("CLUSTER", "NOPE"), "ERR unknown subcommand 'NOPE'. Try CLUSTER HELP.",
                   "CLUSTER NOPE")
        assert isinstance(r.call("CLUSTER", "HELP"), list)


def test_resp_cluster_topology_of_one_node():
    with node() as (c, cl, port), Resp(port) as r:
        me = node_id(c.port(0))
        assert r.call("CLUSTER", "MYID") == me.encode()
        assert r.call("CLUSTER", "SLOTS") == [[0, 16383, [b"127.0.0.1", port, me.encode()]]]
        line = r.call("CLUSTER", "NODES").decode()
        assert line == "%s 127.0.0.1:%d@%d myself,master - 0 0 0 connected 0-16383\n" % (
            me, port, c.port(0)), line
        shards = r.call("CLUSTER", "SHARDS")
        assert len(shards) == 1 and shards[0][:3] == [b"slots", [0, 16383], b"nodes"], shards
        fields = dict(zip(shards[0][3][0][::2], shards[0][3][0][1::2]))
        assert fields[b"id"] == me.encode() and fields[b"port"] == port, fields
        assert fields[b"role"] == b"master" and fields[b"health"] == b"online", fields
        info = dict(l.split(":", 1) for l in r.call("CLUSTER", "INFO").decode().split("\r\n") if l)
        assert info["cluster_state"] == "ok" and info["cluster_slots_ok"] == "16384", info
        assert info["cluster_known_nodes"] == "1" and info["dht_resp_cluster"] == "0", info
        text = r.call("INFO").decode()
        assert "redis_mode:standalone\r\n" in text and "cluster_enabled:0\r\n" in text
        for cmd in ("READONLY", "READWRITE", "ASKING"):
            assert r.call(cmd) == "OK", cmd
        # not in cluster mode: keys of any slots together, as ever
        assert r.call("MSET", "a", "1", "b", "2") == "OK"
        assert r.call("MGET", "a", "b") == [b"1", b"2"]


def test_resp_cluster_mode_crossslot():
    with node("--resp-cluster") as (c, cl, port), Resp(port) as r:
        text = r.call("INFO").decode()
        assert "redis_mode:cluster\r\n" in text and "cluster_enabled:1\r\n" in text
        crossslot = Err("CROSSSLOT Keys in request don't hash to the same slot")
        assert r.call("MSET", "a", "1", "b", "2") == crossslot
        assert r.call("MGET", "a", "b") == crossslot
        assert r.call("DEL", "a", "b") == crossslot
        assert r.call("EXISTS", "a", "b") == crossslot
        # one node serves every slot: never MOVED; hash tags keep keys together
        assert r.call("MSET", "{u}a", "1", "{u}b", "2") == "OK"
        assert r.call("MGET", "{u}a", "{u}b") == [b"1", b"2"]
        assert r.call("SET", "foo", "bar") == "OK" and r.call("GET", "foo") == b"bar"
        assert r.call("EXISTS", "{u}a", "{u}b", "{u}c") == 2
        assert r.call("DEL", "{u}a", "{u}b") == 2


def test_resp_cluster_mode_says_tryagain():
    """In cluster mode an overload is -TRYAGAIN, which Redis Cluster clients
    retry by themselves: a command past --max-inflight (an MGET of 5 keys of
    one slot while another holds the 10 operations the node takes, each
    waiting for a phantom replica), refused whole, and a write whose live
    replicas did not answer in time (W=2, the phantom silent but not
    dead)."""
    with node("--resp-cluster", "--write-quorum", "2", "--read-quorum", "1", "--request-timeout", "500",
              "--max-inflight", "10", phantom=True) as (c, cl, port), \
            Resp(port, timeout=30) as r, Resp(port, timeout=30) as other:
        mine = set()
        for run in r.call("CLUSTER", "SLOTS"):
            if run[2][1] == port:
                mine.update(range(run[0], run[1] + 1))
        tag = next("{t%d}" % i for i in range(10000) if r.call("CLUSTER", "KEYSLOT", "{t%d}" % i) in mine)
        expect_err(r.call("SET", tag + "w", "1"), "TRYAGAIN busy", "SET, W=2, phantom")
        other.send(encode("MGET", *["%sk%d" % (tag, i) for i in range(10)]))
        time.sleep(0.2)
        expect_err(r.call("MGET", *["%sj%d" % (tag, i) for i in range(5)]), "TRYAGAIN busy", "MGET")
        assert other.read() == [None] * 10
        assert r.call("PING") == "PONG"


def test_resp_cluster_needs_resp_port():
    p = subprocess.run([dht.server_binary(), "7000", "/dev/null", "--resp-cluster"],
                       capture_output=True, timeout=10)
    assert p.returncode == 64 and b"--resp-cluster needs --resp-port" in p.stderr, p


def test_resp_redis_cli():
    cli = shutil.which("redis-cli")
    if not cli:
        print("SKIP test_resp_redis_cli: redis-cli is not installed")
        return
    with node() as (c, cl, port):
        def run(*args):
            p = subprocess.run([cli, "-p", str(port)] + list(args), capture_output=True, timeout=10)
            assert p.returncode == 0, (args, p.stdout, p.stderr)
            return p.stdout.decode().strip()
        assert run("PING") == "PONG"
        assert run("SET", "cli-key", "cli value") == "OK"
        assert run("GET", "cli-key") == "cli value"
        assert run("MGET", "cli-key", "nope") == "cli value"   # raw output: nil prints empty
        assert run("DBSIZE") == "1"
        assert cl.get(b"cli-key").value == b"cli value"
        # interactive-style session from stdin
        p = subprocess.run([cli, "-p", str(port)], input=b"set s1 v1\nget s1\ndel s1\n",
                           capture_output=True, timeout=10)
        assert p.stdout.decode().split() == ["OK", "v1", "1"], p.stdout


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
