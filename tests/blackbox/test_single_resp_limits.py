#!/usr/bin/env python3
"""Black-box tests of the Redis front end (--resp-port) against clients that
do not behave, as an outsider on the network would: more clients than
--maxclients or the open file limit allow, slowloris clients, idle clients,
partial commands of 4 MiB from many clients, replies nobody reads; and of
who may use it: --requirepass (AUTH, NOAUTH, WRONGPASS, redis-cli -a),
protected mode. Each test starts its own node and prints what it measured.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single_resp_limits.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
import test_single  # noqa: E402
from test_single_resp import Err, Resp, encode, node, assert_serves, expect_err  # noqa: E402

MAX_QUERY = 4 << 20          # RESP_MAX_QUERY in src/resp.h
MAX_BULK = 1 << 20           # RESP_MAX_BULK
RESERVED_FDS = 128           # RESP_RESERVED_FDS
DEFAULT_MAX_BUFFER = 256 << 20   # RESP_DEFAULT_MAX_BUFFER
NOAUTH_MAX_ARGS = 10         # RESP_NOAUTH_MAX_ARGS
NOAUTH_MAX_BULK = 16384      # RESP_NOAUTH_MAX_BULK

MAXCLIENTS_ERR = Err("ERR max number of clients reached")
NOAUTH = Err("NOAUTH Authentication required.")
WRONGPASS = Err("WRONGPASS invalid username-password pair or user is disabled.")


def info(r):
    """INFO as a dict of its fields."""
    text = r.call("INFO").decode()
    return dict(l.split(":", 1) for l in text.split("\r\n") if l and not l.startswith("#"))


def proc_status(pid, field):
    """A /proc/PID/status field in kB (VmRSS, VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def under_asan(pid):
    """The node runs under AddressSanitizer (its memory figures mean little)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def wait_closed(sock, timeout):
    """Seconds until the node closes sock (EOF or reset), or None within timeout."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                break
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        return None
    return time.monotonic() - t0


def log_of(c):
    with open(c.log_path(0), "rb") as f:
        return f.read().decode("utf-8", "replace")


# ---------------------------------------------------------------- clients

def test_maxclients_refuses_with_redis_error_and_closes():
    with node("--maxclients", "5") as (c, cl, port):
        conns = [Resp(port) for _ in range(5)]
        try:
            for r in conns:
                assert r.call("PING") == "PONG"
            for i in range(3):
                with Resp(port) as extra:   # told at once, before it sends anything
                    assert extra.read() == MAXCLIENTS_ERR, "client 6 (try %d)" % i
                    assert extra.closed_by_server(), "client over --maxclients left open"
            fields = info(conns[1])
            assert fields["maxclients"] == "5", fields["maxclients"]
            assert fields["connected_clients"] == "5", fields["connected_clients"]
            assert fields["rejected_connections"] == "3", fields["rejected_connections"]
            conns.pop(0).close()            # a place frees up
            deadline = time.monotonic() + 3
            while True:
                with Resp(port) as again:
                    again.send(encode("PING"))
                    reply = again.read()
                    if reply == "PONG":
                        break
                    assert reply == MAXCLIENTS_ERR, reply
                assert time.monotonic() < deadline, "no place 3 s after a client left"
                time.sleep(0.05)
        finally:
            for r in conns:
                r.close()
        assert "refused a client: --maxclients 5 reached" in log_of(c)


def test_file_limit_bounds_clients_without_resets():
    """Under an open file limit of 256 (soft and hard: the node cannot raise
    it) the node serves 256 - RESP_RESERVED_FDS clients and tells the others
    so; before, clients past the limit were accepted and reset (libuv's
    EMFILE trick) or left hanging."""
    limit, n = 256, 300
    c = dht.Cluster(1, peers=[])
    wrapper = os.path.join(c.dir, "limited")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nulimit -n %d || exit 99\nexec '%s' \"$@\"\n" % (limit, c.bin))
    os.chmod(wrapper, 0o755)
    c.bin = wrapper
    port = dht.free_tcp_ports(1)[0]
    c.extra_args = ["--resp-port", port]
    with test_single.node(cluster=c) as (c, cl):
        socks = []
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(1.0)                     # refusals arrive unasked
        told = set(s for s in socks if select.select([s], [], [], 0)[0])
        served = refused = 0
        for s in socks:
            r = Resp.__new__(Resp)
            r.sock, r.buf, r.pos = s, bytearray(), 0
            if s in told:
                assert r.read() == MAXCLIENTS_ERR
                assert r.closed_by_server()
                refused += 1
            else:
                assert r.call("PING") == "PONG", "an accepted client is not served"
                served += 1
        with Resp(port) as extra:
            assert extra.read() == MAXCLIENTS_ERR
        for s in socks:
            s.close()
        print("    file limit %d: %d clients served, %d told '%s'" % (limit, served, refused,
                                                                     MAXCLIENTS_ERR.msg))
        assert served == limit - RESERVED_FDS, served
        assert "open file limit (%d, ulimit -n) allows %d clients" % (limit, limit - RESERVED_FDS) \
            in log_of(c)


# ---------------------------------------------------------------- time

def test_slowloris_clients_are_closed_after_the_query_timeout():
    """50 clients send the start of a command and nothing more, one more
    sends a byte of a command every 0.3 s: with --resp-query-timeout 1 each
    is closed 1 to 1.25 s (the check runs every quarter of it) after its
    first byte. A client that sent nothing, and one whose commands come in
    two pieces 0.2 s apart, stay."""
    with node("--resp-query-timeout", "1") as (c, cl, port):
        idle, steady = Resp(port), Resp(port)
        slow = []
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"*2\r\n$3\r\nGET")
            slow.append((s, time.monotonic()))
        trickle = socket.create_connection(("127.0.0.1", port), timeout=10)
        trickle_data, trickle_t0, sent = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", time.monotonic(), 0
        closed, trickle_closed, pongs = {}, None, 0
        end = time.monotonic() + 4.0
        next_byte = next_ping = time.monotonic()
        while time.monotonic() < end:
            now = time.monotonic()
            if trickle_closed is None and now >= next_byte and sent < len(trickle_data) - 1:
                try:
                    trickle.sendall(trickle_data[sent:sent + 1])
                    sent += 1
                except OSError:
                    pass
                next_byte = now + 0.3
            if now >= next_ping:            # a PING in two pieces, 0.2 s apart
                steady.send(b"*1\r\n$4\r\nPI")
                time.sleep(0.2)
                steady.send(b"NG\r\n")
                assert steady.read() == "PONG"
                pongs += 1
                next_ping = time.monotonic() + 0.1
            open_socks = [s for s, _ in slow if s not in closed]
            if trickle_closed is None:
                open_socks.append(trickle)
            for s in select.select(open_socks, [], [], 0.05)[0]:
                try:
                    data = s.recv(100)
                except ConnectionResetError:
                    data = b""
                assert not data, "a reply to part of a command: %r" % data
                if s is trickle:
                    trickle_closed = time.monotonic() - trickle_t0
                else:
                    closed[s] = time.monotonic()
        times = sorted(closed[s] - t0 for s, t0 in slow if s in closed)
        print("    50 slowloris clients: %d closed, after %.2f s (min), %.2f s (median), %.2f s (max);"
              " the trickling one after %s s (%d bytes sent); %d PINGs in pieces answered"
              % (len(times), times[0] if times else -1, statistics.median(times) if times else -1,
                 times[-1] if times else -1,
                 "%.2f" % trickle_closed if trickle_closed is not None else "-", sent, pongs))
        assert len(times) == 50, "%d of 50 slowloris clients still open after 4 s" % (50 - len(times))
        assert 0.9 <= times[0] and times[-1] <= 2.5, times
        assert trickle_closed is not None and 0.9 <= trickle_closed <= 2.5, trickle_closed
        assert pongs >= 5, pongs
        assert idle.call("PING") == "PONG", "a client that sent nothing was closed"
        assert steady.call("PING") == "PONG"
        fields = info(idle)
        assert fields["dht_timed_out_connections"] == "51", fields["dht_timed_out_connections"]
        for s, _ in slow:
            s.close()
        trickle.close()
        idle.close()
        steady.close()
        assert "--resp-query-timeout" in log_of(c)


def test_idle_clients_are_closed_after_resp_timeout():
    with node("--resp-timeout", "1") as (c, cl, port):
        idle, after_cmd, busy = Resp(port), Resp(port), Resp(port)
        assert after_cmd.call("SET", "a", "1") == "OK"
        t0 = time.monotonic()
        closed = {}
        while time.monotonic() - t0 < 3.0:
            assert busy.call("PING") == "PONG"
            for name, r in (("idle", idle), ("after_cmd", after_cmd)):
                if name not in closed and select.select([r.sock], [], [], 0)[0]:
                    assert wait_closed(r.sock, 1) is not None
                    closed[name] = time.monotonic() - t0
            time.sleep(0.3)
        print("    --resp-timeout 1: idle client closed after %s s, one idle after a command after %s s"
              % (closed.get("idle"), closed.get("after_cmd")))
        assert set(closed) == {"idle", "after_cmd"}, closed
        assert all(0.9 <= t <= 2.5 for t in closed.values()), closed
        assert busy.call("PING") == "PONG", "a busy client was closed"
        busy.close()


# ---------------------------------------------------------------- memory

def test_partial_big_commands_do_not_grow_memory_past_the_bound():
    """120 clients each send all of a 4 MiB MSET but its last byte (200 of
    them took the node to 800 MB before the bound). With the default
    --resp-max-buffer (256 MiB) the clients holding the most are closed:
    the node's peak RSS stays under 256 MiB + 64 MiB; a small client
    connected before is still served."""
    n = 120
    val = b"x" * (MAX_BULK - 100)
    cmd = b"*9\r\n$4\r\nMSET\r\n" + b"".join(
        b"$2\r\nk%d\r\n$%d\r\n%s\r\n" % (i, len(val), val) for i in range(4))
    assert len(cmd) <= MAX_QUERY
    with node() as (c, cl, port):
        pid = c.pid(0)
        small = Resp(port)
        assert small.call("SET", "small", "1") == "OK"
        base = proc_status(pid, "VmRSS")
        socks, t0, send_errors = [], time.monotonic(), 0
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            try:
                s.sendall(cmd[:-1])
            except (ConnectionResetError, BrokenPipeError):
                send_errors += 1
            socks.append(s)
        time.sleep(1.0)
        open_now = sum(1 for s in socks if not select.select([s], [], [], 0)[0])
        rss, peak = proc_status(pid, "VmRSS"), proc_status(pid, "VmHWM")
        fields = info(small)
        print("    %d clients x %.1f MiB partial commands in %.1f s: RSS %d MiB (peak %d, at start %d),"
              " %d clients open, %s closed over the bound, %s bytes held"
              % (n, len(cmd) / 2**20, time.monotonic() - t0, rss >> 10, peak >> 10, base >> 10,
                 open_now, fields.get("dht_evicted_connections"), fields.get("dht_clients_held_bytes")))
        for s in socks:
            s.close()
        if under_asan(pid):
            print("    (AddressSanitizer: RSS not checked)")
        else:
            assert peak < (DEFAULT_MAX_BUFFER >> 10) + (64 << 10), "peak RSS %d MiB" % (peak >> 10)
        assert small.call("GET", "small") == b"1", "the small client was not served"
        assert int(fields["dht_clients_held_bytes"]) <= DEFAULT_MAX_BUFFER
        assert int(fields["dht_evicted_connections"]) >= n - DEFAULT_MAX_BUFFER // len(cmd) - 1
        small.close()
        assert_serves(c, cl, port, "partial big commands")


def test_replies_nobody_reads_are_bounded_too():
    """One MGET of a 10,000-byte value 3,000 times (30 MB of replies from a
    22 KB command) from a client that does not read: the client is closed
    once the node holds more than --resp-max-buffer (16 MiB) for clients.
    A small MGET is still answered whole."""
    with node("--resp-max-buffer", "16M") as (c, cl, port):
        with Resp(port) as r:
            assert r.call("SET", "big", "v" * 10000) == "OK"
            r.send(b"*3001\r\n$4\r\nMGET\r\n" + b"$3\r\nbig\r\n" * 3000)
            time.sleep(0.5)
            got = 0
            r.sock.settimeout(10)
            try:
                while True:
                    data = r.sock.recv(1 << 20)
                    if not data:
                        break
                    got += len(data)
            except ConnectionResetError:
                pass
        print("    MGET of 3,000 x 10,000 bytes, not read for 0.5 s: closed after %.1f MB of replies"
              % (got / 1e6))
        assert got < 3000 * 10000, "the whole reply was sent"
        with Resp(port) as r:
            assert r.call("MGET", *(["big"] * 100)) == [b"v" * 10000] * 100
            assert info(r)["dht_evicted_connections"] == "1"
        assert_serves(c, cl, port, "an unread reply")


# ---------------------------------------------------------------- AUTH

PASSWORD = "correct horse battery staple"


def test_auth_required_noauth_wrongpass_and_success():
    with node("--requirepass", PASSWORD) as (c, cl, port):
        with Resp(port) as r:
            assert r.call("PING") == NOAUTH
            assert r.call("GET", "k") == NOAUTH
            assert r.call("SET", "k", "v") == NOAUTH
            assert r.call("INFO") == NOAUTH
            assert r.call("FLUSHALL") == NOAUTH
            assert r.call("COMMAND") == NOAUTH
            # as in Redis, an unknown command or a wrong arity is said first
            expect_err(r.call("NOSUCH"), "ERR unknown command 'NOSUCH'", "unknown command")
            expect_err(r.call("GET"), "ERR wrong number of arguments for 'get'", "arity")
            expect_err(r.call("AUTH"), "ERR wrong number of arguments for 'auth'", "AUTH alone")
            assert r.call("AUTH", "wrong") == WRONGPASS
            assert r.call("AUTH", PASSWORD + "x") == WRONGPASS
            assert r.call("AUTH", PASSWORD[:-1]) == WRONGPASS
            assert r.call("AUTH", "") == WRONGPASS
            assert r.call("AUTH", "default", "wrong") == WRONGPASS
            assert r.call("AUTH", "admin", PASSWORD) == WRONGPASS
            expect_err(r.call("AUTH", "a", "b", "c"), "ERR syntax error", "AUTH of 3 arguments")
            assert r.call("PING") == NOAUTH
            assert r.call("AUTH", PASSWORD) == "OK"
            assert r.call("PING") == "PONG"
            assert r.call("SET", "k", "v") == "OK"
            assert r.call("GET", "k") == b"v"
            assert r.call("AUTH", "wrong") == WRONGPASS     # stays authenticated, as Redis
            assert r.call("GET", "k") == b"v"
            assert r.call("ECHO", "e" * 100000) == b"e" * 100000   # past the bounds before AUTH
            fields = info(r)
            assert fields["dht_auth_failures"] == "7", fields["dht_auth_failures"]
        with Resp(port) as r:                       # Redis 6's form
            assert r.call("AUTH", "default", PASSWORD) == "OK"
            assert r.call("GET", "k") == b"v"
        with Resp(port) as r:                       # AUTH and a command in one write
            r.send(encode("AUTH", PASSWORD) + encode("SET", "k2", "v2") + encode("GET", "k2"))
            assert [r.read(), r.read(), r.read()] == ["OK", "OK", b"v2"]
        with Resp(port) as r:                       # QUIT needs no AUTH
            assert r.call("QUIT") == "OK"
            assert r.closed_by_server()
        with Resp(port) as r:                       # inline commands too
            r.send(b"PING\r\nAUTH wrong\r\n")
            assert [r.read(), r.read()] == [NOAUTH, WRONGPASS]
        with open("/proc/%d/cmdline" % c.pid(0), "rb") as f:
            assert PASSWORD.encode() not in f.read(), "the password shows in ps"
        node_lines = [l for l in log_of(c).splitlines() if not l.startswith("--- start")]
        assert not any(PASSWORD in l for l in node_lines), "the password is in the log"


def test_bounds_before_auth_are_redis_ones():
    """Before AUTH a command has at most 10 arguments of at most 16 KiB
    (Redis's bounds), so an outsider cannot make the node hold 4 MiB."""
    with node("--requirepass", PASSWORD) as (c, cl, port):
        with Resp(port) as r:
            r.send(b"*%d\r\n" % (NOAUTH_MAX_ARGS + 1))
            assert r.read() == Err("ERR Protocol error: unauthenticated multibulk length")
            assert r.closed_by_server()
        with Resp(port) as r:
            r.send(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n" % (NOAUTH_MAX_BULK + 1))
            assert r.read() == Err("ERR Protocol error: unauthenticated bulk length")
            assert r.closed_by_server()
        with Resp(port) as r:
            assert r.call("AUTH", "p" * NOAUTH_MAX_BULK) == WRONGPASS
            assert r.call("AUTH", PASSWORD) == "OK"
            assert r.call("MSET", *(["k", "v"] * 10)) == "OK"      # 21 arguments once in


def test_requirepass_file_and_redis_cli():
    cli = shutil.which("redis-cli")
    c = dht.Cluster(1, peers=[])
    pwfile = os.path.join(c.dir, "password")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(pwfile, 0o600)
    port = dht.free_tcp_ports(1)[0]
    c.extra_args = ["--resp-port", port, "--requirepass-file", pwfile]
    with test_single.node(cluster=c) as (c, cl):
        with Resp(port) as r:
            assert r.call("GET", "k") == NOAUTH
            assert r.call("AUTH", PASSWORD) == "OK"
            assert r.call("SET", "k", "from-file") == "OK"
        if not cli:
            print("    SKIP the redis-cli part: redis-cli is not installed")
            return

        def run(*args):
            p = subprocess.run([cli, "-p", str(port)] + list(args), capture_output=True, timeout=10)
            return p.returncode, p.stdout.decode().strip(), p.stderr.decode()
        rc, out, _ = run("--no-auth-warning", "-a", PASSWORD, "GET", "k")
        assert (rc, out) == (0, "from-file"), (rc, out)
        rc, out, _ = run("--no-auth-warning", "-a", PASSWORD, "SET", "k", "cli")
        assert out == "OK", out
        rc, out, err = run("GET", "k")
        assert "NOAUTH" in out + err, (out, err)
        rc, out, err = run("--no-auth-warning", "-a", "wrong", "GET", "k")
        assert "WRONGPASS" in out + err or "AUTH failed" in out + err, (out, err)
        rc, out, _ = run("--user", "default", "--pass", PASSWORD, "--no-auth-warning", "GET", "k")
        assert out == "cli", out


def test_bad_password_options_are_refused():
    c = dht.Cluster(1, peers=[])
    try:
        for args, why in ((["--requirepass", ""], "--requirepass"),
                          (["--requirepass", "x" * 513], "--requirepass"),
                          (["--requirepass-file", os.path.join(c.dir, "none")], "password file"),
                          (["--protected-mode", "maybe"], "--protected-mode")):
            p = subprocess.run([c.bin, str(c.port(0)), c.peers_file] + args, capture_output=True,
                               timeout=10)
            assert p.returncode != 0, args
            assert why in p.stderr.decode(), (args, p.stderr)
        empty = os.path.join(c.dir, "empty")
        open(empty, "w").close()
        p = subprocess.run([c.bin, str(c.port(0)), c.peers_file, "--requirepass-file", empty],
                           capture_output=True, timeout=10)
        assert p.returncode != 0 and b"must hold a password" in p.stderr, p.stderr
    finally:
        c.cleanup()


def test_auth_without_a_password_set_is_like_redis():
    with node() as (c, cl, port), Resp(port) as r:
        expect_err(r.call("AUTH", "x"), "ERR AUTH <password> called without any password configured",
                   "AUTH without a password set")
        assert r.call("AUTH", "default", "anything") == "OK"
        assert r.call("AUTH", "admin", "anything") == WRONGPASS
        assert r.call("PING") == "PONG"


# ---------------------------------------------------------------- protected mode

def test_protected_mode_warns_and_denies_non_loopback_clients():
    """Bound to 0.0.0.0 (the default: --bind's) without a password, the node
    says at start that only loopback clients are served, serves them, and
    refuses a client from a non-loopback address of this machine with
    -DENIED (that part is skipped without such an address)."""
    with node() as (c, cl, port):
        log = log_of(c)
        assert "WARNING protected mode: 0.0.0.0 has no password" in log, log
        with Resp(port) as r:
            assert r.call("PING") == "PONG"
        ip = dht.local_ip()
        if not ip:
            print("    SKIP the -DENIED part: no non-loopback address on this machine")
            return
        with Resp(port, host=ip) as r:
            reply = r.read()
            assert isinstance(reply, Err) and reply.msg.startswith("DENIED "), reply
            assert r.closed_by_server()
        with Resp(port) as r:
            assert info(r)["dht_denied_connections"] == "1"
        assert "refused %s: protected mode" % ip in log_of(c)
        print("    a client from %s got: -%s..." % (ip, reply.msg[:60]))


def test_protected_mode_off_or_a_password_serves_non_loopback_clients():
    ip = dht.local_ip()
    for args, warning in ((["--protected-mode", "no"], "WARNING no password and protected mode off"),
                          (["--requirepass", PASSWORD], None)):
        with node(*args) as (c, cl, port):
            log = log_of(c)
            assert "WARNING protected mode" not in log, log
            if warning:
                assert warning in log, log
            if not ip:
                continue
            with Resp(port, host=ip) as r:
                if warning:
                    assert r.call("PING") == "PONG"
                else:
                    assert r.call("PING") == NOAUTH
                    assert r.call("AUTH", PASSWORD) == "OK"
                    assert r.call("PING") == "PONG"
    if not ip:
        print("    SKIP the non-loopback client part: no such address on this machine")


def test_resp_bind_to_loopback_has_no_warning_and_is_not_reachable_elsewhere():
    with node("--resp-bind", "127.0.0.1") as (c, cl, port):
        log = log_of(c)
        assert "WARNING" not in log, log
        assert "serving Redis clients (RESP2) on TCP 127.0.0.1:%d" % port in log, log
        with Resp(port) as r:
            assert r.call("PING") == "PONG"
        for host in ["127.0.0.2"] + ([dht.local_ip()] if dht.local_ip() else []):
            try:
                socket.create_connection((host, port), timeout=2).close()
                raise AssertionError("the Redis port answers on %s" % host)
            except (ConnectionRefusedError, socket.timeout):
                pass


def test_resp_bind_ipv6_any_protects_mapped_ipv4_clients():
    """--resp-bind :: takes IPv4 clients too (as ::ffff:a.b.c.d): protected
    mode must see 127.0.0.1 as loopback and a mapped non-loopback address
    as not."""
    if not socket.has_ipv6:
        print("    SKIP: no IPv6")
        return
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        print("    SKIP: no IPv6 loopback")
        return
    with node("--resp-bind", "::") as (c, cl, port):
        assert "WARNING protected mode: :: has no password" in log_of(c)
        for host in ("127.0.0.1", "::1"):
            with Resp(port, host=host) as r:
                assert r.call("PING") == "PONG", host
        ip = dht.local_ip()
        if ip:
            with Resp(port, host=ip) as r:
                reply = r.read()
                assert isinstance(reply, Err) and reply.msg.startswith("DENIED "), reply


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
