#!/usr/bin/env python3
"""Black-box tests of one dht-server node (empty peers file): every behaviour
of the client protocol, malformed input, the memory cap, SHUTDOWN, --data-dir
and both argument orders. Each test starts its own node.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import contextlib
import os
import subprocess
import random
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
from dht import (OK, ENOKEY, ENOSPACE, EUNKNOWN, EBADKEY, EBADVALUE, PUT, GET, REMOVE,  # noqa: E402
                 IS_ALIVE, GET_MEMBERSHIP_LIST, f_bytes, f_varint, f_fixed32, f_fixed64, tag)

NO_REPLY_WAIT = 0.5   # seconds to wait before concluding that no reply comes


@contextlib.contextmanager
def node(*args, workdir=None, peers_first=False, cluster=None):
    """A started, ready single node; yields (cluster, client). Prints the
    node's log tail if the test fails."""
    c = cluster or dht.Cluster(1, peers=[], extra_args=list(args), workdir=workdir)
    try:
        if not c.running(0):
            c.start(0, peers_first=peers_first)
        c.wait_ready(timeout=10)
        with c.client(0) as cl:
            yield c, cl
    except BaseException:
        tail = c.log_tail(0)
        if tail:
            print("    --- node log (tail) ---\n    " + tail.replace("\n", "\n    "))
        raise
    finally:
        c.cleanup()


def expect(resp, err, what=""):
    assert resp.err == err, "%s: expected %s, got %s" % (
        what or "reply", dht.err_name(err), dht.err_name(resp.err))
    return resp


def assert_serves(c, cl, what):
    """The node is still running and serving after `what`."""
    assert c.running(0), "node exited after %s (status %s)" % (what, c.procs[0].returncode)
    try:
        expect(cl.request(IS_ALIVE), OK, "IS_ALIVE after " + what)
        k = os.urandom(8).hex()
        expect(cl.put(k, b"still-here"), OK, "PUT after " + what)
        r = expect(cl.get(k), OK, "GET after " + what)
        assert r.value == b"still-here", "GET after %s returned %r" % (what, r.value)
    except dht.Timeout:
        raise AssertionError("node stopped answering after %s" % what) from None


def no_reply(cl, msg_id, wait=NO_REPLY_WAIT):
    """True if no datagram carrying msg_id arrives within wait seconds."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        got = cl.recv(left)
        if got is None:
            return True
        try:
            if dht.decode_msg(got[0]).id == msg_id:
                return False
        except dht.DecodeError:
            pass


# ---------------------------------------------------------------- codec

def test_checksum_test_vector():
    assert dht.checksum(bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])) == 1070237893
    dht._selftest()


# ---------------------------------------------------------------- basic commands

def test_put_get_remove_round_trip():
    with node() as (c, cl):
        expect(cl.put(b"alpha", b"one"), OK, "PUT")
        r = expect(cl.get(b"alpha"), OK, "GET")
        assert r.value == b"one", r
        expect(cl.put(b"alpha", b"two"), OK, "overwriting PUT")
        assert expect(cl.get(b"alpha"), OK, "GET").value == b"two"
        expect(cl.remove(b"alpha"), OK, "REMOVE")
        expect(cl.get(b"alpha"), ENOKEY, "GET after REMOVE")
        bin_key, bin_val = bytes(range(32)), bytes(range(256)) * 4
        expect(cl.put(bin_key, bin_val), OK, "PUT binary")
        assert expect(cl.get(bin_key), OK, "GET binary").value == bin_val


def test_empty_value_is_stored():
    with node() as (c, cl):
        expect(cl.put(b"empty", b""), OK, "PUT empty value")
        assert expect(cl.get(b"empty"), OK, "GET").value == b""


def test_get_missing_is_no_such_key():
    with node() as (c, cl):
        expect(cl.get(b"never-put"), ENOKEY, "GET missing")


def test_remove_missing_is_no_such_key():
    with node() as (c, cl):
        expect(cl.remove(b"never-put"), ENOKEY, "REMOVE missing")


def test_version_stored_and_returned():
    with node() as (c, cl):
        for i, v in enumerate((1, 42, 2**31 - 1, -1, -2**31)):
            k = b"ver%d" % i
            expect(cl.put(k, b"x", version=v), OK, "PUT version %d" % v)
            r = expect(cl.get(k), OK, "GET")
            assert r.version == v, "version %d stored, %d returned" % (v, r.version)
        expect(cl.put(b"ver0", b"y", version=7), OK, "PUT")
        r = cl.get(b"ver0")
        assert (r.value, r.version) == (b"y", 7), r
        expect(cl.put(b"nover", b"z"), OK, "PUT")
        assert cl.get(b"nover").version == 0


def test_empty_key_is_invalid():
    with node() as (c, cl):
        for cmd in (PUT, GET, REMOVE):
            expect(cl.request(cmd, b"", b"v"), EBADKEY, "%s with empty key" % dht.CMD_NAMES[cmd])


def test_key_over_32_bytes_is_invalid():
    with node() as (c, cl):
        for cmd in (PUT, GET, REMOVE):
            for n in (33, 100, 1000):
                expect(cl.request(cmd, b"k" * n, b"v"), EBADKEY,
                       "%s with %d-byte key" % (dht.CMD_NAMES[cmd], n))
        expect(cl.get(b"k" * 32), ENOKEY, "GET of the 32-byte prefix (nothing stored)")


def test_key_of_32_bytes_is_accepted():
    with node() as (c, cl):
        k = bytes(range(1, 33))
        expect(cl.put(k, b"v"), OK, "PUT 32-byte key")
        assert expect(cl.get(k), OK, "GET 32-byte key").value == b"v"
        expect(cl.put(b"x", b"one-byte key"), OK, "PUT 1-byte key")
        expect(cl.remove(k), OK, "REMOVE 32-byte key")


def test_value_over_10000_bytes_is_invalid():
    with node() as (c, cl):
        for n in (10001, 20000, 60000):
            expect(cl.put(b"big", b"v" * n), EBADVALUE, "PUT %d-byte value" % n)
        expect(cl.get(b"big"), ENOKEY, "GET after rejected PUTs")


def test_value_of_10000_bytes_is_accepted():
    with node() as (c, cl):
        v = os.urandom(10000)
        expect(cl.put(b"big", v), OK, "PUT 10000-byte value")
        assert expect(cl.get(b"big"), OK, "GET").value == v


def test_unknown_command():
    with node() as (c, cl):
        for cmd in (0x00, 0x09, 0x10, 0x21, 0x23, 0x7F, 0xFF, 1000, 0xFFFFFFFF):
            expect(cl.request(cmd, b"key", b"v"), EUNKNOWN, "command 0x%x" % cmd)


def test_is_alive():
    with node() as (c, cl):
        expect(cl.request(IS_ALIVE), OK, "IS_ALIVE")


def test_get_pid_is_the_process_pid():
    with node() as (c, cl):
        r = expect(cl.request(dht.GET_PID), OK, "GET_PID")
        assert r.pid == c.pid(0), "GET_PID %d, process %d" % (r.pid, c.pid(0))


def test_membership_count_is_one():
    with node() as (c, cl):
        r = expect(cl.request(dht.GET_MEMBERSHIP_COUNT), OK, "GET_MEMBERSHIP_COUNT")
        assert r.members == 1, "membership count %d" % r.members


def _is_local_ip(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((ip, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_membership_list_contains_the_node():
    with node() as (c, cl):
        r = expect(cl.request(GET_MEMBERSHIP_LIST), OK, "GET_MEMBERSHIP_LIST")
        members = dht.parse_member_list(r.value)
        assert len(members) == 1, "member list of a single node: %r" % r.value
        ip, port, state = members[0]
        assert port == c.port(0), "listed port %d, node port %d (%r)" % (port, c.port(0), r.value)
        assert _is_local_ip(ip), "listed address %s is not an address of this machine" % ip
        assert state == "alive", "state %r" % state


def test_wipeout_empties_the_store():
    with node() as (c, cl):
        keys = [b"w%d" % i for i in range(50)]
        for k in keys:
            expect(cl.put(k, b"v" + k), OK, "PUT")
        expect(cl.wipeout(), OK, "WIPEOUT")
        for k in keys:
            expect(cl.get(k), ENOKEY, "GET after WIPEOUT")
        expect(cl.put(b"after", b"x"), OK, "PUT after WIPEOUT")
        assert cl.get(b"after").value == b"x"


# ---------------------------------------------------------------- at-most-once

def test_retried_remove_answers_what_the_first_answered():
    with node() as (c, cl):
        expect(cl.put(b"k", b"v"), OK, "PUT")
        rid = dht.new_id()
        expect(cl.request(REMOVE, b"k", msg_id=rid), OK, "first REMOVE")
        expect(cl.request(REMOVE, b"k", msg_id=rid), OK, "retried REMOVE (same ID)")
        expect(cl.request(REMOVE, b"k"), ENOKEY, "REMOVE with a new ID")
        # and a first answer 'no such key' is repeated even if the key appears meanwhile
        rid2 = dht.new_id()
        expect(cl.request(REMOVE, b"k2", msg_id=rid2), ENOKEY, "first REMOVE of missing key")
        expect(cl.put(b"k2", b"v"), OK, "PUT")
        expect(cl.request(REMOVE, b"k2", msg_id=rid2), ENOKEY, "retried REMOVE (same ID)")
        expect(cl.get(b"k2"), OK, "GET: the retry must not have removed the key")


def test_retried_put_does_not_overwrite_a_later_put():
    with node() as (c, cl):
        pid = dht.new_id()
        expect(cl.request(PUT, b"k", b"first", msg_id=pid), OK, "first PUT")
        expect(cl.put(b"k", b"second"), OK, "second PUT (new ID)")
        expect(cl.request(PUT, b"k", b"first", msg_id=pid), OK, "retried first PUT (same ID)")
        r = expect(cl.get(b"k"), OK, "GET")
        assert r.value == b"second", "a retried PUT overwrote a later one: %r" % r.value


def test_retried_get_is_answered_with_the_same_id():
    with node() as (c, cl):
        expect(cl.put(b"k", b"v"), OK, "PUT")
        gid = dht.new_id()
        r1 = cl.request(GET, b"k", msg_id=gid)
        r2 = cl.request(GET, b"k", msg_id=gid)
        assert r1.id == r2.id == gid
        assert (r1.err, r1.value) == (r2.err, r2.value) == (OK, b"v"), (r1, r2)


# ---------------------------------------------------------------- bad input

def test_bad_checksum_is_dropped():
    with node() as (c, cl):
        expect(cl.put(b"k", b"v"), OK, "PUT")
        rid = dht.new_id()
        payload = dht.encode_request(REMOVE, b"k")
        good = dht.checksum(rid, payload)
        for bad in (good ^ 1, good + 1, 0, good | (1 << 32), (1 << 64) - 1):
            cl.send(dht.encode_msg(rid, payload, check=bad))
            assert no_reply(cl, rid), "reply to a datagram with checksum %d (right: %d)" % (bad, good)
        # checksum over the ID alone, or the payload alone, is wrong too
        for bad in (dht.checksum(rid, b""), dht.checksum(b"", payload)):
            cl.send(dht.encode_msg(rid, payload, check=bad))
            assert no_reply(cl, rid), "reply to a datagram with a partial checksum"
        assert_serves(c, cl, "bad checksums")
        assert expect(cl.get(b"k"), OK, "GET: the dropped REMOVEs must not have run").value == b"v"
        # the dropped ID was not cached: a correct datagram with it is served
        expect(cl.request(REMOVE, b"k", msg_id=rid), OK, "REMOVE with the dropped ID")


def _survives(frames, what):
    with node() as (c, cl):
        for f in frames:
            cl.send(f)
        time.sleep(0.1)
        assert_serves(c, cl, what)


def test_random_bytes_do_not_crash():
    rnd = random.Random(1)
    frames = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 300))) for _ in range(300)]
    _survives(frames, "random datagrams")


def test_empty_datagram_does_not_crash():
    _survives([b""] * 5, "empty datagrams")


def test_truncated_frames_do_not_crash():
    rid, good = dht.request_datagram(PUT, b"trunc", b"v" * 100, 3)
    frames = [good[:n] for n in range(len(good))]
    inner = dht.encode_request(PUT, b"trunc", b"v" * 100, 3)
    for n in range(len(inner)):   # Msg intact, payload truncated (right checksum)
        frames.append(dht.encode_msg(rid, inner[:n]))
    _survives(frames, "truncated frames")


def test_wrong_wire_types_do_not_crash():
    rid = dht.new_id()
    req = dht.encode_request(GET, b"k")
    chk = dht.checksum(rid, req)
    frames = [
        f_varint(1, 12345) + f_bytes(2, req) + f_fixed64(3, chk),          # ID as varint
        f_bytes(1, rid) + f_varint(2, 7) + f_fixed64(3, chk),              # payload as varint
        f_bytes(1, rid) + f_bytes(2, req) + f_varint(3, chk),              # checksum as varint
        f_bytes(1, rid) + f_bytes(2, req) + f_fixed32(3, chk),             # checksum as fixed32
        f_bytes(1, rid) + f_bytes(2, req) + f_bytes(3, b"12345678"),       # checksum as bytes
        f_fixed64(1, 1) + f_fixed32(2, 2) + f_fixed64(3, chk),
        f_bytes(1, rid) + f_bytes(2, req) + f_fixed64(3, chk) + f_bytes(4, b"kind"),
        tag(1, dht.WT_SGROUP) + f_bytes(2, req) + tag(1, dht.WT_EGROUP) + f_fixed64(3, chk),
        tag(1, 6) + b"\x00" * 20, tag(2, 7) + b"\x00" * 20,                 # wire types 6, 7
        b"\x00" + f_bytes(1, rid),                                          # field number 0
    ]
    # a correct Msg whose KVRequest has fields of the wrong wire types
    for bad in (f_bytes(1, b"\x01"), f_fixed64(1, PUT) + f_bytes(2, b"k"),
                f_varint(1, GET) + f_varint(2, 5), f_varint(1, PUT) + f_bytes(2, b"k") + f_fixed32(3, 1),
                f_varint(1, PUT) + f_bytes(2, b"k") + f_bytes(4, b"ver"),
                f_varint(1, GET) + f_bytes(2, b"k") + tag(5, dht.WT_SGROUP)):
        i = dht.new_id()
        frames.append(dht.encode_msg(i, bad))
    _survives(frames, "wrong wire types")


def test_huge_length_prefix_does_not_crash():
    rid = dht.new_id()
    frames = []
    for n in (2**31 - 1, 2**31, 2**32 - 1, 2**32 + 5, 2**63, 2**64 - 1, 70000, 65536):
        frames.append(f_bytes(1, rid, length=n) + b"x" * 40)
        frames.append(f_bytes(1, rid) + f_bytes(2, b"abc", length=n))
        payload = f_varint(1, PUT) + f_bytes(2, b"k", length=n) + b"v" * 20
        frames.append(dht.encode_msg(rid, payload))
        payload = f_varint(1, PUT) + f_bytes(2, b"k") + f_bytes(3, b"v", length=n)
        frames.append(dht.encode_msg(rid, payload))
    frames.append(f_bytes(1, rid)[:1] + b"\xff" * 10 + b"\x01")     # 11-byte varint length
    _survives(frames, "huge length prefixes")


def _peer_read(key, mid=None):
    """(msg_id, Msg bytes) of a node-to-node READ of key."""
    mid = mid or dht.new_id()
    return mid, dht.encode_msg(mid, dht.f_varint(1, 5) + dht.f_bytes(8, key), kind=1)


def _batch(frames):
    return dht.encode_msg(b"batc", b"".join(dht.varint(len(f)) + f for f in frames), kind=2)


def test_batch_of_node_messages_is_unpacked():
    """A kind-2 Msg carries several node-to-node Msgs: each is handled, and
    the node answers each (plainly: the sender is not a member)."""
    with node() as (c, cl):
        expect(cl.put(b"batched", b"v1"), OK, "PUT")
        ids = []
        frames = []
        for _ in range(3):
            mid, f = _peer_read(b"batched")
            ids.append(mid)
            frames.append(f)
        cl.send(_batch(frames))
        got = set()
        end = time.monotonic() + 2
        while len(got) < 3 and time.monotonic() < end:
            data = cl.recv(0.5)
            if data is None:
                break
            m = dht.decode_msg(data[0])
            if m.id in ids and m.kind == 1 and b"v1" in m.payload:
                got.add(m.id)
        assert len(got) == 3, "%d of 3 batched READs answered" % len(got)


def test_malformed_batches_do_not_crash():
    rnd = random.Random(3)
    _, good = _peer_read(b"k")
    frames = [
        dht.encode_msg(b"b", b"\xff" * 11, kind=2),             # varint over 64 bits
        dht.encode_msg(b"b", b"\x80", kind=2),                  # varint cut short
        dht.encode_msg(b"b", b"\x00" + good, kind=2),           # empty frame
        dht.encode_msg(b"b", dht.varint(len(good) + 5) + good, kind=2),  # past the end
        _batch([good[:-3]]),                                    # truncated inner Msg
        _batch([dht.request_datagram(dht.PUT, b"x", b"y")[1]]), # client request inside
        _batch([_batch([good])]),                               # a batch in a batch
        _batch([dht.encode_msg(b"", dht.f_varint(1, 5), kind=1)]),  # inner without an ID
        _batch([dht.encode_msg(dht.new_id(), b"junk", check=1, kind=1)]),  # bad checksum
    ]
    for _ in range(100):
        inner = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 60)))
                 for _ in range(rnd.randrange(1, 8))]
        frames.append(_batch(inner))
    _survives(frames, "malformed batches")


def test_valid_msg_with_garbage_payload_does_not_crash():
    rnd = random.Random(2)
    frames = []
    for kind in (0, 0, 1, 2, 99):
        for _ in range(60):
            junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 200)))
            frames.append(dht.encode_msg(dht.new_id(), junk, kind=kind))
    # odd but well-formed Msgs: no ID, short ID, long ID, no payload
    req = dht.encode_request(IS_ALIVE)
    for mid in (b"", b"x", os.urandom(15), os.urandom(17), os.urandom(1000)):
        frames.append(dht.encode_msg(mid, req))
    frames.append(dht.encode_msg(dht.new_id(), b""))
    _survives(frames, "Msgs with garbage payloads")


def test_64k_datagram_does_not_crash():
    rnd = random.Random(3)
    big = bytes(rnd.getrandbits(8) for _ in range(dht.MAX_DATAGRAM))
    rid = dht.new_id()
    frames = [big, dht.encode_msg(rid, big[:dht.MAX_DATAGRAM - 40])]
    _survives(frames, "64 KiB datagrams")


def test_max_size_put_is_invalid_value():
    """A well-formed PUT filling the largest UDP datagram gets 0x07."""
    with node() as (c, cl):
        rid = dht.new_id()
        n = dht.MAX_DATAGRAM - 60
        dgram = dht.encode_msg(rid, dht.encode_request(PUT, b"huge", b"v" * n))
        assert len(dgram) <= dht.MAX_DATAGRAM, len(dgram)
        try:
            r = cl.request_raw(dgram, rid)
        except dht.Timeout:
            raise AssertionError("no reply to a %d-byte PUT datagram" % len(dgram)) from None
        expect(r, EBADVALUE, "PUT with a %d-byte value" % n)
        assert_serves(c, cl, "a maximal datagram")


# ---------------------------------------------------------------- memory cap

def _fill(cl, prefix, size, limit=2000):
    """PUTs keys of `size`-byte values until OUT_OF_SPACE; returns
    (stored {key: value}, key that did not fit)."""
    stored = {}
    for i in range(limit):
        k = b"%s%05d" % (prefix, i)
        v = bytes([i % 251]) * size
        r = cl.put(k, v)
        if r.err == ENOSPACE:
            return stored, k
        expect(r, OK, "PUT #%d while filling" % i)
        stored[k] = v
    raise AssertionError("no OUT_OF_SPACE after %d PUTs of %d bytes (%d bytes) with --max-memory 100K"
                         % (limit, size, limit * size))


def test_memory_cap_out_of_space_keeps_data_and_remove_frees():
    with node("--max-memory", "100K") as (c, cl):
        stored, rejected = _fill(cl, b"fill", 1000)
        nbytes = sum(len(k) + len(v) for k, v in stored.items())
        assert nbytes <= 100 * 1024, "stored %d key+value bytes under a 100 KiB cap" % nbytes
        assert nbytes >= 50 * 1024, "OUT_OF_SPACE after only %d key+value bytes of a 100 KiB cap" % nbytes
        expect(cl.get(rejected), ENOKEY, "GET of the key that did not fit")
        for k, v in stored.items():
            r = expect(cl.get(k), OK, "GET %r after OUT_OF_SPACE" % k)
            assert r.value == v, "value of %r changed" % k
        # small values may still not fit, but a removal must make room
        for k in list(stored)[:5]:
            expect(cl.remove(k), OK, "REMOVE")
            del stored[k]
        expect(cl.put(rejected, bytes([7]) * 1000), OK, "PUT after removing 5 values")
        assert cl.get(rejected).value == bytes([7]) * 1000
        # the cap still holds
        more, _ = _fill(cl, b"more", 1000, limit=200)
        assert len(more) <= 6, "%d more 1000-byte values fit after freeing 5" % len(more)


def test_memory_cap_wipeout_frees_space():
    with node("--max-memory", "100K") as (c, cl):
        first, _ = _fill(cl, b"a", 2000)
        expect(cl.wipeout(), OK, "WIPEOUT")
        second, _ = _fill(cl, b"b", 2000)
        assert len(second) >= len(first) - 1, "%d values fit after WIPEOUT, %d before" % (
            len(second), len(first))


def test_memory_cap_overwrite_does_not_leak():
    """Overwriting one key many times must not use up the cap."""
    with node("--max-memory", "100K") as (c, cl):
        for i in range(300):
            expect(cl.put(b"same", bytes([i % 256]) * 5000), OK, "overwrite #%d of a 5000-byte value" % i)
        for i in range(300):
            expect(cl.put(b"x%d" % (i % 3), b"y" * 5000), OK, "PUT")
            expect(cl.remove(b"x%d" % (i % 3)), OK, "REMOVE")


# ---------------------------------------------------------------- life cycle

def test_shutdown_exits_promptly():
    with node() as (c, cl):
        t0 = time.monotonic()
        cl.shutdown()
        rc = c.wait_exit(0, 2.0)
        assert rc is not None, "still running 2 s after SHUTDOWN"
        dt = time.monotonic() - t0
        assert dt < 1.0, "took %.2f s to exit after SHUTDOWN" % dt
        assert not cl.alive(timeout=0.1, retries=2), "answers IS_ALIVE after SHUTDOWN"


def test_data_dir_survives_sigkill():
    c = dht.Cluster(1, peers=[])
    ddir = c.data_dir(0)
    os.makedirs(ddir, exist_ok=True)
    c.extra_args = ["--data-dir", ddir]
    with node(cluster=c) as (c, cl):
        keys = {b"persist%03d" % i: os.urandom(random.randrange(1, 3000)) for i in range(100)}
        for i, (k, v) in enumerate(keys.items()):
            expect(cl.put(k, v, version=i + 1), OK, "PUT")
        expect(cl.remove(b"persist000"), OK, "REMOVE")
        del keys[b"persist000"]
        old = c.pid(0)
        c.kill(0, signal.SIGKILL)
        assert not c.running(0)
        c.start(0)
        c.wait_ready(timeout=10)
        assert cl.pid() != old
        for i, (k, v) in enumerate(keys.items()):
            r = expect(cl.get(k), OK, "GET %r after SIGKILL and restart" % k)
            assert r.value == v, "value of %r differs after restart" % k
            assert r.version == i + 2, "version of %r: %d, expected %d" % (k, r.version, i + 2)
        expect(cl.get(b"persist000"), ENOKEY, "GET of a removed key after restart")


def test_data_dir_keeps_the_incarnation():
    """The next life of a node takes an incarnation above the last one kept in
    its data dir, even when that is ahead of the clock (a clock stepped back)."""
    c = dht.Cluster(1, peers=[])
    ddir = c.data_dir(0)
    os.makedirs(ddir, exist_ok=True)
    c.extra_args = ["--data-dir", ddir]
    path = os.path.join(ddir, "incarnation")
    with node(cluster=c) as (c, cl):
        first = int(open(path).read())
        assert abs(first - time.time() * 1000) < 60000, "incarnation %d is not the start time" % first
        c.kill(0, signal.SIGKILL)
        ahead = int(time.time() * 1000) + 20000  # as if the clock had gone back 20 s
        with open(path, "w") as f:
            f.write("%d\n" % ahead)
        c.start(0)
        c.wait_ready(timeout=10)
        assert int(open(path).read()) == ahead + 1, "incarnation after restart: %s" % open(path).read()


def test_data_dir_files_are_the_owners_alone():
    """A data dir the node creates is 0700, its LMDB files, the store's
    reserve of disk and the incarnation 0600, whatever the umask; files an
    earlier version left 0644 are made 0600 (the dir, the operator's, is left
    as it is)."""
    import stat
    c = dht.Cluster(1, peers=[])
    ddir = os.path.join(c.dir, "fresh", "data")
    os.makedirs(os.path.dirname(ddir))
    c.extra_args = ["--data-dir", ddir]
    old_umask = os.umask(0o022)
    try:
        with node(cluster=c) as (c, cl):
            expect(cl.put(b"k", b"v"), OK, "PUT")
            modes = {name: stat.S_IMODE(os.stat(os.path.join(ddir, name)).st_mode)
                     for name in os.listdir(ddir)}
            modes["."] = stat.S_IMODE(os.stat(ddir).st_mode)
            print("    modes: " + ", ".join("%s %o" % kv for kv in sorted(modes.items())))
            assert modes == {".": 0o700, "data.mdb": 0o600, "lock.mdb": 0o600, "reserve": 0o600,
                             "incarnation": 0o600, "alive": 0o600}, modes
            c.stop(0)
            for name in ("data.mdb", "lock.mdb", "incarnation"):
                os.chmod(os.path.join(ddir, name), 0o644)
            os.chmod(ddir, 0o755)
            c.start(0)
            c.wait_ready(timeout=10)
            expect(cl.get(b"k"), OK, "GET after restart")
            for name in ("data.mdb", "lock.mdb", "incarnation"):
                mode = stat.S_IMODE(os.stat(os.path.join(ddir, name)).st_mode)
                assert mode == 0o600, "%s left %o" % (name, mode)
    finally:
        os.umask(old_umask)


def test_requests_that_waited_through_a_stall_are_dropped():
    """A node stopped (SIGSTOP) for 1.5 s drops the requests that waited in its
    socket buffer meanwhile (their clients may have given up and written since);
    a retry after it woke is served. Without that, a late PUT overwrote newer
    writes (dht-sim seeds 28, 63, 66, 82)."""
    with node() as (c, cl):
        msg_id, dgram = dht.request_datagram(PUT, b"stalled", b"late")
        os.kill(c.pid(0), signal.SIGSTOP)
        try:
            cl.send(dgram)
            time.sleep(1.5)
        finally:
            os.kill(c.pid(0), signal.SIGCONT)
        assert cl.recv(0.5) is None, "a reply to a request that waited through the stall"
        expect(cl.get(b"stalled"), ENOKEY, "GET of a PUT that waited through a stall")
        expect(cl.request(PUT, b"stalled", b"late", msg_id=msg_id), OK, "the retry after the stall")
        r = expect(cl.get(b"stalled"), OK, "GET after the retry")
        assert r.value == b"late"


def test_port_then_peers_argument_order():
    with node() as (c, cl):
        expect(cl.request(IS_ALIVE), OK, "IS_ALIVE")
        assert cl.pid() == c.pid(0)


def test_peers_then_port_argument_order():
    with node(peers_first=True) as (c, cl):
        expect(cl.request(IS_ALIVE), OK, "IS_ALIVE")
        assert cl.pid() == c.pid(0)


def test_bad_flag_values_are_usage_errors():
    """A quorum past --replicas is never made (every write failed, and the
    defaults W=2 R=2 with --replicas 1 answered nothing); a size of 0 or
    below for --max-memory (-1 was taken as the largest size)."""
    for args, what in ((["--write-quorum", "5"], b"cannot exceed --replicas"),
                       (["--replicas", "2", "--read-quorum", "3"], b"cannot exceed --replicas"),
                       (["--max-memory", "-1"], b"--max-memory"),
                       (["--max-memory", "0"], b"--max-memory")):
        p = subprocess.run([dht.server_binary(), "7000", "/dev/null"] + args, capture_output=True,
                           timeout=10)
        assert p.returncode == 64 and what in p.stderr, (args, p.returncode, p.stderr)


def test_usage_errors_say_what_is_wrong():
    """A missing or extra argument printed the whole help (73 lines) with no
    reason; a number flag out of range now says its range."""
    for args, what in (([], b"got neither"), (["7000"], b"got one of them"),
                       (["7000", "/dev/null", "x"], b"unexpected argument 'x'"),
                       (["7000", "/dev/null", "--replicas", "0"], b"(expected 1 to 7)")):
        p = subprocess.run([dht.server_binary()] + args, capture_output=True, timeout=10)
        assert p.returncode == 64 and what in p.stderr and len(p.stderr.splitlines()) <= 2, \
            (args, p.returncode, p.stderr)


def test_a_directory_as_peers_file_is_refused():
    """A directory opened as the peers file read nothing: a lone node
    started where a cluster was meant."""
    p = subprocess.run([dht.server_binary(), "7000", os.path.dirname(os.path.abspath(__file__))],
                       capture_output=True, timeout=10)
    assert p.returncode != 0 and b"a directory" in p.stderr, (p.returncode, p.stderr)


def test_bad_peers_file_lines_say_what_was_read():
    """A bad peers-file line is refused with its number and its text (two
    addresses on one line said only "expected ip:port"); a line too long for
    the reader was read as two, and the error named the wrong line."""
    d = tempfile.mkdtemp()
    try:
        for text, what in ((b"127.0.0.1:7001\n127.0.0.1:7002 127.0.0.1:7003\n",
                            b":2: expected ip:port (an IPv4 address and a port: host names are not "
                            b"resolved), got '127.0.0.1:7002 127.0.0.1:7003'"),
                           (b"# seeds\nnode1.example:7001\n", b":2: expected ip:port"),
                           (b"127.0.0.1:7001 " + b" " * 300 + b"# note\n127.0.0.1:7002\n",
                            b":1: a line longer than 254 bytes")):
            path = os.path.join(d, "peers")
            with open(path, "wb") as f:
                f.write(text)
            p = subprocess.run([dht.server_binary(), "7000", path], capture_output=True, timeout=10)
            assert p.returncode != 0 and what in p.stderr, (text[:40], p.returncode, p.stderr)
    finally:
        shutil.rmtree(d)


def test_replicas_one_brings_default_quorums_down():
    """Two nodes with --replicas 1 and the default quorums (2): W and R come
    down to 1. Before, a write whose one replica made no quorum of 2 was
    never answered."""
    c = dht.Cluster(2, extra_args=["--replicas", "1"])
    try:
        c.start()
        c.wait_ready(timeout=10)
        c.wait_counts(2, timeout=20)
        with c.client(0) as cl:
            for i in range(20):
                k = b"k%d" % i
                expect(cl.put(k, b"v"), OK, "PUT %r with --replicas 1" % k)
                r = cl.get(k)
                assert (r.err, r.value) == (OK, b"v"), (k, r)
    finally:
        c.cleanup()


def test_unusable_advertise_and_bind_addresses_are_refused():
    """--advertise 0.0.0.0 (or a broadcast or multicast address, or --bind
    to one, which is advertised) started a node the others know by an
    address no datagram reaches it at: members alive, every request
    forwarded to it unanswered."""
    port = dht.free_port_range(1)
    for flag, ip in (("--advertise", "0.0.0.0"), ("--advertise", "255.255.255.255"),
                     ("--advertise", "224.0.0.1"), ("--bind", "255.255.255.255")):
        try:
            p = subprocess.run([dht.server_binary(), str(port), "/dev/null", flag, ip],
                               capture_output=True, timeout=3)
        except subprocess.TimeoutExpired:
            raise AssertionError("dht-server %s %s was taken: the node ran" % (flag, ip))
        assert p.returncode != 0 and flag.encode() in p.stderr and ip.encode() in p.stderr, \
            (flag, ip, p.returncode, p.stderr)


def test_a_directory_as_key_or_password_file_is_refused_as_such():
    """A directory given as --cluster-key-file read as an empty file: 'no key
    in it (make one with dht-cli keygen)', and as --requirepass-file 'must
    hold a password ... on its first line': advice that did not help."""
    d = os.path.dirname(os.path.abspath(__file__))
    for flag in ("--cluster-key-file", "--requirepass-file"):
        p = subprocess.run([dht.server_binary(), str(dht.free_port_range(1)), "/dev/null",
                            "--resp-port", str(dht.free_tcp_ports(1)[0]), flag, d],
                           capture_output=True, timeout=10)
        assert p.returncode == 64 and b"directory" in p.stderr.lower(), (flag, p.returncode, p.stderr)


def test_dead_ms_not_past_suspect_ms_is_a_usage_error():
    """The older flags give a suspicion of --dead-ms less --suspect-ms (1000
    unless given): --dead-ms 500 alone, or not past --suspect-ms, was taken
    as a suspicion of 10 ms, a member declared dead before it could answer."""
    for args in (["--dead-ms", "500"], ["--suspect-ms", "3000", "--dead-ms", "2000"],
                 ["--suspect-ms", "1000", "--dead-ms", "1000"]):
        try:
            p = subprocess.run([dht.server_binary(), str(dht.free_port_range(1)), "/dev/null"] + args,
                               capture_output=True, timeout=3)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s was taken: the node ran" % args)
        assert p.returncode == 64 and b"--dead-ms" in p.stderr, (args, p.returncode, p.stderr)


def test_front_end_options_without_their_port_are_usage_errors():
    """--http-bind without --http-port, or a Redis option (--resp-bind,
    --requirepass, --maxclients...) without --resp-port, was taken and did
    nothing: no port listened, and nothing said so (--resp-cluster alone
    already said 'needs --resp-port')."""
    for args, needs in ((["--http-bind", "0.0.0.0"], b"--http-port"),
                        (["--resp-bind", "127.0.0.1"], b"--resp-port"),
                        (["--requirepass", "secret"], b"--resp-port"),
                        (["--protected-mode", "no"], b"--resp-port"),
                        (["--maxclients", "10"], b"--resp-port")):
        try:
            p = subprocess.run([dht.server_binary(), str(dht.free_port_range(1)), "/dev/null"] + args,
                               capture_output=True, timeout=3)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s was taken: the node ran" % args)
        assert p.returncode == 64 and args[0].encode() in p.stderr and needs in p.stderr, \
            (args, p.returncode, p.stderr)


def test_clients_from_answers_only_those_networks():
    """--clients-from: a UDP client request from outside the networks given
    gets no answer at all (its source may be spoofed: a GET's 10 KB would
    go to whoever it names); from inside, as before. A bad network is a
    usage error."""
    p = subprocess.run([dht.server_binary(), "7000", "/dev/null", "--clients-from", "10.0.0.0/33"],
                       capture_output=True, timeout=10)
    assert p.returncode == 64 and b"--clients-from" in p.stderr, (p.returncode, p.stderr)
    c = dht.Cluster(1, peers=[], extra_args=["--clients-from", "127.0.0.2/32"])
    try:
        c.start(0)
        inside = dht.Client(("127.0.0.1", c.port(0)), timeout=0.2, retries=3, bind=("127.0.0.2", 0))
        outside = dht.Client(("127.0.0.1", c.port(0)), timeout=0.2, retries=3, bind=("127.0.0.1", 0))
        try:
            deadline = time.time() + 10
            while True:
                try:
                    expect(inside.request(PUT, b"k", b"v"), OK, "PUT from inside")
                    break
                except dht.Timeout:
                    assert time.time() < deadline, "no answer from inside --clients-from"
            try:
                outside.request(GET, b"k")
                raise AssertionError("a request from outside --clients-from was answered")
            except dht.Timeout:
                pass
            expect(inside.request(GET, b"k"), OK, "GET from inside")
        finally:
            inside.close()
            outside.close()
    finally:
        c.cleanup()


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
