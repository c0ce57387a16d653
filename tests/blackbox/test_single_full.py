#!/usr/bin/env python3
"""Black-box tests of one node whose store runs out of room (issue 10):
--data-dir on a small tmpfs that fills up, and --max-memory.

A full store answers OUT_OF_SPACE (0x02) to writes, and -OOM on the Redis
port; the node stays up (LMDB's memory map on a full tmpfs used to end it
with SIGBUS, and again at every restart), serves every value it
acknowledged, says so once in its log and in /metrics, starts again on the
full directory, and takes writes again as soon as there is room (keys
removed, WIPEOUT, or a file on the disk removed), without a restart; also
when another process fills the disk under a running node.

tmpfs needs a mount namespace: the script runs itself again under
`unshare -m` (as root) or `unshare -rm` (in a user namespace, as anyone),
and the nodes it starts run in it; the mounts go with it. Where neither is
allowed, the tests that need tmpfs print SKIP and pass.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single_full.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
import test_single  # noqa: E402
from dht import OK, ENOKEY, ENOSPACE, metrics  # noqa: E402
from test_single import expect  # noqa: E402
from test_single_resp import Resp, Err  # noqa: E402

NS_ENV = "DHT_TEST_MOUNT_NS"   # set once the script runs in its own mount namespace
VALUE = 10000                  # bytes a value: the largest the protocol takes
NO_TMPFS = None                # why tmpfs cannot be mounted here, once known


def enter_mount_namespace():
    """Runs this script again in a private mount namespace, where it may
    mount tmpfs. Returns only when that is not possible (or already done)."""
    if os.environ.get(NS_ENV):
        return
    unshare = shutil.which("unshare")
    if not unshare:
        os.environ[NS_ENV] = "no unshare(1) on this machine"
        return
    cmd = [unshare, "-m"] if os.geteuid() == 0 else [unshare, "-rm"]
    probe = subprocess.run(cmd + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        os.environ[NS_ENV] = "%s: %s" % (" ".join(cmd), probe.stderr.strip())
        return
    os.environ[NS_ENV] = "1"
    sys.stdout.flush()
    os.execv(unshare, cmd + [sys.executable, os.path.abspath(sys.argv[0])] + sys.argv[1:])


@contextlib.contextmanager
def tmpfs(size):
    """A directory with a tmpfs of `size` (mount's syntax: "8m") mounted on
    it; raises Skip where that is not possible."""
    global NO_TMPFS
    if os.environ.get(NS_ENV) != "1":
        NO_TMPFS = os.environ.get(NS_ENV) or "not in a mount namespace"
    if NO_TMPFS:
        raise Skip(NO_TMPFS)
    d = tempfile.mkdtemp(prefix="dht-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        NO_TMPFS = "mount -t tmpfs: " + r.stderr.strip()
        raise Skip(NO_TMPFS)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d])
        os.rmdir(d)


class Skip(Exception):
    pass


def skippable(fn):
    """A test that passes with a SKIP line where tmpfs cannot be mounted."""
    def run():
        try:
            fn()
        except Skip as e:
            print("SKIP %s: cannot mount tmpfs (%s)" % (fn.__name__, e))
    run.__name__ = fn.__name__
    return run


@contextlib.contextmanager
def node(*args, cluster=None, data_dir=None):
    """A ready single node with --http-port and --resp-port (and --data-dir
    data_dir if given); yields (cluster, client, http port, resp port)."""
    http, resp = dht.free_tcp_ports(2)
    extra = ["--http-port", http, "--resp-port", resp] + list(args)
    if data_dir:
        extra += ["--data-dir", data_dir]
    c = cluster or dht.Cluster(1, peers=[], extra_args=extra)
    with test_single.node(cluster=c) as (c, cl):
        yield c, cl, http, resp


def fill(c, cl, prefix, size=VALUE, limit=5000, refused=10):
    """PUTs distinct keys (prefix + number) of `size` random bytes until the
    node answers OUT_OF_SPACE, then `refused` more PUTs; every answer must
    be OK or OUT_OF_SPACE. Returns ({key: value} acknowledged, [keys
    refused])."""
    stored, no = {}, []
    for i in range(limit):
        k = b"%s%05d" % (prefix, i)
        v = os.urandom(size)
        try:
            r = cl.put(k, v)
        except dht.Timeout:
            c.wait_exit(0, 1)
            raise AssertionError("no answer to PUT #%d (%d acknowledged); the node %s" % (
                i, len(stored), "is running" if c.running(0) else
                "exited with status %s" % c.procs[0].returncode)) from None
        assert r.err in (OK, ENOSPACE), "PUT #%d: %s" % (i, dht.err_name(r.err))
        if r.err == OK:
            stored[k] = v
        else:
            no.append(k)
            if len(no) > refused:
                return stored, no
    raise AssertionError("no OUT_OF_SPACE after %d PUTs of %d bytes" % (limit, size))


def check_all(cl, stored, what):
    for k, v in stored.items():
        r = expect(cl.get(k), OK, "GET %r %s" % (k, what))
        assert r.value == v, "GET %r %s: another value" % (k, what)


def log_count(c, text):
    with open(c.log_path(0), "rb") as f:
        return f.read().decode("utf-8", "replace").count(text)


def wait_log(c, text, count=1):
    dht.wait_until(lambda: log_count(c, text) >= count, 5.0, what="log line %r" % text)
    return log_count(c, text)


def filler(path, size):
    """Writes a file of up to size bytes (less if the disk fills first)."""
    with open(path, "wb") as f:
        try:
            for _ in range(size // 65536):
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


# ---------------------------------------------------------------- memory cap

def test_memory_cap_full_is_logged_once_and_counted():
    with node("--max-memory", "100K") as (c, cl, http, resp):
        assert metrics(http)["dht_store_full"] == 0
        stored, refused = fill(c, cl, b"cap", size=1000)
        m = metrics(http)
        assert m["dht_store_full"] == 1, "dht_store_full %s while full" % m["dht_store_full"]
        assert m["dht_store_refused_writes_total"] == len(refused), m
        assert wait_log(c, "store full (cap)") == 1
        with Resp(resp) as r:
            reply = r.call("SET", "one-more", "v" * 1000)
            assert isinstance(reply, Err) and reply.msg.startswith("OOM "), reply
        check_all(cl, stored, "over the cap")
        for k in list(stored)[:3]:
            expect(cl.remove(k), OK, "REMOVE at the cap")
        expect(cl.put(b"fits-again", b"x" * 1000), OK, "PUT after removes")
        assert metrics(http)["dht_store_full"] == 0
        assert wait_log(c, "store has room again") == 1
        assert log_count(c, "store full") == 1, "logged per write, not per episode"


# ---------------------------------------------------------------- LMDB on a full disk

@skippable
def test_lmdb_full_disk_answers_out_of_space_and_recovers():
    with tmpfs("8m") as disk, node("--max-memory", "1G", data_dir=disk + "/data") as (
            c, cl, http, resp):
        stored, refused = fill(c, cl, b"disk")
        n = len(stored)
        print("    %d PUTs of %d bytes acknowledged on an 8 MiB tmpfs, then OUT_OF_SPACE" % (n, VALUE))
        assert n >= 500, "only %d 10 KB values fit on an 8 MiB disk" % n
        assert c.running(0), "the node died on a full disk"
        check_all(cl, stored, "on a full disk")
        for k in refused:
            expect(cl.get(k), ENOKEY, "GET of a refused key")
        with Resp(resp) as r:
            reply = r.call("SET", "redis-key", "v" * VALUE)
            assert isinstance(reply, Err) and reply.msg.startswith("OOM "), reply
            k = next(iter(stored))
            assert r.call("GET", k) == stored[k]
        m = metrics(http)
        assert m["dht_store_full"] == 1, m
        assert m["dht_store_refused_writes_total"] >= len(refused) + 1, m
        assert 7 << 20 <= m["dht_store_disk_bytes"] <= 8 << 20, m["dht_store_disk_bytes"]
        assert wait_log(c, "store full (disk)") == 1

        # removes go on, and free room for new values
        removed = list(stored)[:30]
        for k in removed:
            expect(cl.remove(k), OK, "REMOVE on a full disk")
            del stored[k]
        again = {b"again00": os.urandom(VALUE)}
        expect(cl.put(b"again00", again[b"again00"]), OK, "PUT after 30 REMOVEs")
        assert metrics(http)["dht_store_full"] == 0
        assert wait_log(c, "store has room again") == 1  # after a second without refusals
        for i in range(1, 30):
            k, v = b"again%02d" % i, os.urandom(VALUE)
            if cl.put(k, v).err == OK:
                again[k] = v
        print("    after 30 REMOVEs, %d of 30 new PUTs fit" % len(again))
        assert len(again) >= 20, "only %d of 30 PUTs fit after 30 REMOVEs" % len(again)
        stored.update(again)
        check_all(cl, stored, "after the removes")
        for k in removed:
            expect(cl.get(k), ENOKEY, "GET of a removed key")

        # WIPEOUT on a full disk, then the disk takes as much again
        fill(c, cl, b"more")
        expect(cl.wipeout(), OK, "WIPEOUT on a full disk")
        second, _ = fill(c, cl, b"after-wipe")
        # LMDB reuses the freed pages, but a 10 KB value needs 3 pages in a
        # row, and single pages scattered among them go to the tree instead
        print("    %d values fit after WIPEOUT (%d on the empty disk)" % (len(second), n))
        assert len(second) >= 0.7 * n, "%d values fit after WIPEOUT, %d before" % (len(second), n)
        check_all(cl, second, "after WIPEOUT")
        assert c.running(0)
        assert log_count(c, "store full") <= 3, "logged per write, not per episode"


@skippable
def test_lmdb_restart_on_full_disk_then_room_from_a_deleted_file():
    with tmpfs("8m") as disk:
        filler(disk + "/filler", 2 << 20)
        with node("--max-memory", "1G", data_dir=disk + "/data") as (
                c, cl, http, resp):
            stored, _ = fill(c, cl, b"r")
            # the harshest stop: the writes of the last moments are in the map only
            assert c.kill(0, signal.SIGKILL) == -signal.SIGKILL
            for life in range(2):
                c.start(0)
                c.wait_ready(timeout=10)
                assert c.running(0), "does not start on a full disk"
                check_all(cl, stored, "after a restart on the full disk")
                expect(cl.put(b"big", os.urandom(VALUE)), ENOSPACE, "PUT after the restart")
                assert c.running(0), "died at a write after a restart on the full disk"
                c.stop(0)
            c.start(0)
            c.wait_ready(timeout=10)
            os.unlink(disk + "/filler")
            more, _ = fill(c, cl, b"m")
            print("    %d more values fit once a 2 MiB file was deleted" % len(more))
            assert len(more) >= 120, "only %d values fit in the 2 MiB freed" % len(more)
            stored.update(more)
            check_all(cl, stored, "after the file was deleted")


@skippable
def test_lmdb_disk_filled_by_another_process():
    """The disk fills under a running node, by another process's file: the
    node's next writes find no block for the pages LMDB writes (with the
    previous binary: SIGBUS at the first PUT)."""
    with tmpfs("8m") as disk, node("--max-memory", "1G", data_dir=disk + "/data") as (
            c, cl, http, resp):
        stored = {}
        for i in range(100):
            k, v = b"before%03d" % i, os.urandom(VALUE)
            expect(cl.put(k, v), OK, "PUT #%d" % i)
            stored[k] = v
        filler(disk + "/filler", 64 << 20)  # until the disk is full
        more, refused = fill(c, cl, b"after")
        print("    %d more values fit after another file took the disk" % len(more))
        stored.update(more)
        assert c.running(0)
        check_all(cl, stored, "with the disk taken by another file")
        os.unlink(disk + "/filler")
        expect(cl.put(refused[0], b"x" * VALUE), OK, "PUT once the other file is gone")


@skippable
def test_lmdb_new_data_dir_on_full_disk_exits_with_a_message():
    with tmpfs("1m") as disk:
        filler(disk + "/filler", 2 << 20)
        c = dht.Cluster(1, peers=[], extra_args=["--data-dir", disk + "/data"])
        try:
            c.start(0)
            rc = c.wait_exit(0, 5)
            assert rc == 1, "exit status %s on a full disk (expected 1, an error)" % rc
            assert "no space left" in c.log_tail(0), c.log_tail(0)
        finally:
            c.cleanup()


if __name__ == "__main__":
    enter_mount_namespace()
    sys.exit(dht.run_tests(globals()))
