#!/usr/bin/env python3
"""Black-box tests of dht-cli's members and ring tables against one
dht-server node. Seeds listed in the peers file that do not run are members
too (alive until silent for --dead-ms), so one node can show a ring of three;
the shares dht-cli computes from the member list must be the ones the node
reports on /status.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single_cli.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402

NEVER = ["--suspect-ms", "300000", "--dead-ms", "600000"]  # seeds stay alive


@contextlib.contextmanager
def node(seeds=0, args=()):
    """One node at base port, with `seeds` silent seeds at the next ports in
    its peers file, and --http-port; yields (cluster, http port)."""
    base = dht.free_port_range(1 + seeds)
    http = dht.free_tcp_ports(1)[0]
    c = dht.Cluster(1, base_port=base, peers=["127.0.0.1:%d" % (base + i) for i in range(1 + seeds)],
                    extra_args=["--http-port", http] + list(args))
    try:
        c.start(0)
        c.wait_ready(timeout=10)
        yield c, http
    except BaseException:
        print("    --- node log (tail) ---\n    " + c.log_tail(0).replace("\n", "\n    "))
        raise
    finally:
        c.cleanup()


def cli(c, *args):
    """dht-cli's stdout lines for args against node 0; fails on a non-zero exit."""
    exe = os.path.join(os.path.dirname(c.bin), "dht-cli")
    p = subprocess.run([exe, "-s", "127.0.0.1:%d" % c.port(0)] + list(args),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "dht-cli %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr)
    return p.stdout.splitlines()


def table(lines, header):
    """Rows (lists of cells) of a table whose first line is `header`; stops
    at the first line with another number of cells (the summary)."""
    assert lines[0].split() == header, "header %r, expected %r" % (lines[0], header)
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(header):
            break
        rows.append(cells)
    return rows, lines[1 + len(rows):]


def percent(cell):
    assert cell.endswith("%"), cell
    return float(cell[:-1])


def status_shares(http):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % http, timeout=10) as r:
        s = json.load(r)
    return {m["addr"]: (m["state"], 100 * m["share"]) for m in s["members"]}


def test_members_of_a_single_node():
    with node() as (c, http):
        rows, rest = table(cli(c, "members"), ["ADDRESS", "STATE", "SHARE"])
        assert rows == [["127.0.0.1:%d" % c.port(0), "alive", "100.00%"]], rows
        assert rest == ["1 member, 1 live"], rest


def test_members_and_ring_match_the_node():
    with node(seeds=2, args=NEVER) as (c, http):
        addrs = ["127.0.0.1:%d" % (c.port(0) + i) for i in range(3)]
        want = status_shares(http)
        assert sorted(want) == addrs and all(s == "alive" for s, _ in want.values()), want

        rows, rest = table(cli(c, "members"), ["ADDRESS", "STATE", "SHARE"])
        assert [r[0] for r in rows] == addrs and all(r[1] == "alive" for r in rows), rows
        for addr, state, share in rows:
            assert abs(percent(share) - want[addr][1]) < 0.006, (addr, share, want[addr])
            assert 25 < percent(share) < 42, "share of 3 nodes: %s" % share
        assert abs(sum(percent(r[2]) for r in rows) - 100) < 0.02, rows
        assert rest == ["3 members, 3 live"], rest

        rows, rest = table(cli(c, "ring"), ["ADDRESS", "STATE", "VNODES", "SHARE"])
        assert [r[0] for r in rows] == addrs, rows
        for addr, state, vnodes, share in rows:
            assert vnodes == "64", rows
            assert abs(percent(share) - want[addr][1]) < 0.006, (addr, share, want[addr])
        assert len(rest) == 1 and rest[0].startswith("3 nodes on the ring, 64 vnodes each, 3 replicas"), rest
        m = re.search(r"share of the 16384 slots min ([\d.]+)%, max ([\d.]+)%", rest[0])
        shares = [share for _, share in want.values()]
        assert m and abs(float(m.group(1)) - min(shares)) < 0.006 and \
            abs(float(m.group(2)) - max(shares)) < 0.006, (rest, shares)


def test_vnodes_option_matches_the_servers():
    with node(seeds=2, args=NEVER + ["--vnodes", "16"]) as (c, http):
        want = status_shares(http)
        rows, _ = table(cli(c, "--vnodes", "16", "ring"), ["ADDRESS", "STATE", "VNODES", "SHARE"])
        for addr, state, vnodes, share in rows:
            assert vnodes == "16" and abs(percent(share) - want[addr][1]) < 0.006, (rows, want)


def test_replicas_option_matches_the_servers():
    # N=2 over 3 nodes: the caps on replica places move primaries (ring.h;
    # in 4 of 10 address sets: elsewhere the caps on primaries hide it)
    with node(seeds=2, args=NEVER + ["--replicas", "2"]) as (c, http):
        want = status_shares(http)
        rows, rest = table(cli(c, "--replicas", "2", "ring"), ["ADDRESS", "STATE", "VNODES", "SHARE"])
        for addr, state, vnodes, share in rows:
            assert abs(percent(share) - want[addr][1]) < 0.006, (rows, want)
        assert rest[0].startswith("3 nodes on the ring, 64 vnodes each, 2 replicas a slot;"), rest


def test_dead_members_are_off_the_ring():
    with node(seeds=2, args=["--suspect-ms", "100", "--dead-ms", "300"]) as (c, http):
        me = "127.0.0.1:%d" % c.port(0)

        def both_dead():
            rows, _ = table(cli(c, "members"), ["ADDRESS", "STATE", "SHARE"])
            return rows if sum(r[1] == "dead" for r in rows) == 2 else None

        dht.wait_until(both_dead, 10, interval=0.1, what="both seeds dead")
        rows = both_dead()
        for addr, state, share in rows:
            if addr == me:
                assert (state, share) == ("alive", "100.00%"), rows
            else:
                assert (state, share) == ("dead", "-"), rows
        rows, rest = table(cli(c, "ring"), ["ADDRESS", "STATE", "VNODES", "SHARE"])
        assert rows == [[me, "alive", "64", "100.00%"]], rows
        assert rest[0].startswith("1 node on the ring"), rest


def test_bench_shows_progress_on_a_terminal_only():
    import pty
    with node() as (c, _):
        bench = os.path.join(os.path.dirname(dht.server_binary()), "dht-bench")
        args = [bench, "-s", "%s:%d" % c.addr(0), "-c", "8", "-d", "2.5", "-k", "100"]
        master, slave = pty.openpty()
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, timeout=30)
        os.close(slave)
        tty = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            tty += chunk
        os.close(master)
        assert p.returncode == 0, p.stdout
        lines = re.findall(rb"\r\x1b\[Krun +(\d+) ops +(\d+) s left +(\d+) ops/s", tty)
        assert len(lines) >= 2, "no progress lines on the terminal: %r" % tty[:300]
        assert int(lines[-1][0]) > 0 and tty.endswith(b"\r\x1b[K"), tty[-200:]
        # not a terminal: no progress in the output
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert p.returncode == 0 and b"ops/s" in p.stdout and b"\x1b[K" not in p.stderr + p.stdout


def test_invalid_key_and_value_name_the_limits():
    with node() as (c, _):
        exe = os.path.join(os.path.dirname(c.bin), "dht-cli")
        for args, what in ((["put", "k" * 33, "v"], "keys are 1 to 32 bytes"),
                           (["put", "k", "v" * 10001], "values are at most 10,000 bytes")):
            p = subprocess.run([exe, "-s", "127.0.0.1:%d" % c.port(0)] + args, capture_output=True,
                               text=True, timeout=30)
            assert p.returncode != 0 and what in p.stderr, (args[:2], p.returncode, p.stderr)


def test_bench_with_no_node_stops_and_says_so():
    """With nothing at the address, dht-bench went on silently (about 2.3
    hours with its defaults); it stops once as many requests failed as it
    has clients, none answered."""
    exe = os.path.join(os.path.dirname(dht.server_binary()), "dht-bench")
    port = dht.free_port_range(1)   # nothing listens there
    p = subprocess.run([exe, "-s", "127.0.0.1:%d" % port, "-c", "4", "--timeout", "50",
                        "--max-timeout", "50", "--tries", "2"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "no reply from any node" in p.stderr, (p.returncode, p.stderr[-300:])


def test_bad_vnodes_is_a_usage_error():
    exe = os.path.join(os.path.dirname(dht.server_binary()), "dht-cli")
    for opt, bads in (("--vnodes", ("0", "4097", "x", "-1")), ("--replicas", ("0", "8", "x"))):
        for bad in bads:
            p = subprocess.run([exe, opt, bad, "ring"], capture_output=True, text=True, timeout=30)
            assert p.returncode == 64 and opt in p.stderr, (opt, bad, p.returncode, p.stderr)


def servers_of(d):
    """PIDs of the dht-server processes started from cluster directory d."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"dht-server") and os.path.join(d, "peers").encode() in cmd:
            pids.append(int(pid))
    return pids


def test_cluster_start_that_fails_stops_its_nodes():
    """A node that exits at start (here: its --data-dir is a file) failed
    `scripts/cluster start`, which left the other nodes running, unsaid."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "cluster")
    d = tempfile.mkdtemp(prefix="dht-cluster-test-")
    try:
        open(os.path.join(d, "data2"), "w").close()
        p = subprocess.run([script, "--dir", d, "start", "-n", "3", "--base-port",
                            str(dht.free_port_range(3)), "--bin", os.path.dirname(dht.server_binary()),
                            "--wait", "10", "--", "--data-dir", "{dir}/data{i}"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "node 2 exited" in p.stderr, (p.returncode, p.stdout, p.stderr)
        left = servers_of(d)
        for _ in range(100):   # (stopping takes a moment)
            if not left:
                break
            time.sleep(0.05)
            left = servers_of(d)
        assert not left, "nodes left running after a failed start: %s" % left
    finally:
        subprocess.run([script, "--dir", d, "stop-all"], capture_output=True, timeout=60)
        for pid in servers_of(d):
            os.kill(pid, 9)
        shutil.rmtree(d, ignore_errors=True)


def test_refused_shutdown_and_wipeout_say_why():
    """SHUTDOWN and WIPEOUT from outside --admin-from are answered
    UNKNOWN_COMMAND (README: Admin commands): dht-cli printed 'error:
    unknown command' for a command it knows, not why it was refused."""
    with node(args=["--admin-from", "10.0.0.0/8"]) as (c, _):
        exe = os.path.join(os.path.dirname(c.bin), "dht-cli")
        for cmd in ("shutdown", "wipeout"):
            p = subprocess.run([exe, "-s", "127.0.0.1:%d" % c.port(0), cmd], capture_output=True,
                               text=True, timeout=30)
            assert p.returncode == 1 and "--admin-from" in p.stderr, (cmd, p.returncode, p.stderr)
        assert c.running(0)


def test_version_is_decimal():
    """--version 010 was read as octal (8) and 0x10 as 16: a version field
    is a decimal number, as the help says; both forms are usage errors or
    ten."""
    with node() as (c, _):
        cli(c, "put", "k", "v", "--version", "010")
        assert "version 10" in cli(c, "-v", "get", "k"), cli(c, "-v", "get", "k")
        exe = os.path.join(os.path.dirname(c.bin), "dht-cli")
        p = subprocess.run([exe, "-s", "127.0.0.1:%d" % c.port(0), "put", "k", "v", "--version",
                            "0x10"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 64 and "--version" in p.stderr, (p.returncode, p.stderr)


def test_keygen_that_cannot_write_leaves_no_file():
    """A key file keygen could not write (a full disk, a file size limit) was
    left empty: every node refused it, and keygen, which never overwrites,
    refused to make another there."""
    import resource
    import signal as sig
    exe = os.path.join(os.path.dirname(dht.server_binary()), "dht-cli")
    d = tempfile.mkdtemp()
    try:
        path = os.path.join(d, "cluster.key")

        def no_room():
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
            sig.signal(sig.SIGXFSZ, sig.SIG_IGN)   # a write past it fails (EFBIG)

        p = subprocess.run([exe, "keygen", path], capture_output=True, text=True, timeout=30,
                           preexec_fn=no_room)
        assert p.returncode != 0 and path in p.stderr, (p.returncode, p.stderr)
        assert not os.path.exists(path), "an empty key file was left behind"
        p = subprocess.run([exe, "keygen", path], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and os.path.getsize(path) == 65, (p.returncode, p.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
