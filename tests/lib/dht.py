"""dht: client protocol codec, UDP client and local cluster control for tests.

Python 3 standard library only. Used by tests/blackbox/*.py and scripts/cluster.

Wire format (proto/kv.proto, /work/shared/DESIGN.md): every datagram is one
protobuf Msg {bytes messageID = 1; bytes payload = 2; fixed64 checkSum = 3;
uint32 kind = 4}, checkSum = CRC32 (IEEE, zlib) of messageID then payload.
The payload is a KVRequest (client -> node) or a KVResponse (node -> client).
The few protobuf encodings needed are written by hand below: varint,
length-delimited bytes, fixed32/fixed64. The field helpers take any wire type
so tests can build deliberately malformed frames, and the decoder reports
malformed input as DecodeError instead of guessing.

Run this file to self-test the codec: python3 tests/lib/dht.py
"""

import atexit
import collections
import hashlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
import zlib

# ---------------------------------------------------------------- constants

PUT = 0x01
GET = 0x02
REMOVE = 0x03
SHUTDOWN = 0x04
WIPEOUT = 0x05
IS_ALIVE = 0x06
GET_PID = 0x07
GET_MEMBERSHIP_COUNT = 0x08
GET_MEMBERSHIP_LIST = 0x22

OK = 0x00
ENOKEY = 0x01
ENOSPACE = 0x02
EOVERLOAD = 0x03
EINTERNAL = 0x04
EUNKNOWN = 0x05
EBADKEY = 0x06
EBADVALUE = 0x07

ERR_NAMES = {OK: "OK", ENOKEY: "NO_SUCH_KEY", ENOSPACE: "OUT_OF_SPACE",
             EOVERLOAD: "OVERLOAD", EINTERNAL: "INTERNAL", EUNKNOWN: "UNKNOWN_COMMAND",
             EBADKEY: "INVALID_KEY", EBADVALUE: "INVALID_VALUE"}
CMD_NAMES = {PUT: "PUT", GET: "GET", REMOVE: "REMOVE", SHUTDOWN: "SHUTDOWN",
             WIPEOUT: "WIPEOUT", IS_ALIVE: "IS_ALIVE", GET_PID: "GET_PID",
             GET_MEMBERSHIP_COUNT: "GET_MEMBERSHIP_COUNT",
             GET_MEMBERSHIP_LIST: "GET_MEMBERSHIP_LIST"}

ID_LEN = 16
MAX_KEY = 32
MAX_VALUE = 10000
MAX_DATAGRAM = 65507

# Protobuf wire types.
WT_VARINT = 0
WT_FIXED64 = 1
WT_BYTES = 2
WT_SGROUP = 3
WT_EGROUP = 4
WT_FIXED32 = 5


def err_name(err):
    return ERR_NAMES.get(err, "0x%02x" % err)


# ---------------------------------------------------------------- encoding

def varint(n):
    """Unsigned LEB128. Negative numbers are sign-extended to 64 bits, as
    protobuf encodes int32/int64 (10 bytes)."""
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(num, wt):
    return varint((num << 3) | wt)


def f_varint(num, v):
    return tag(num, WT_VARINT) + varint(v)


def f_bytes(num, b, length=None):
    """Length-delimited field; length overrides the real length (malformed frames)."""
    b = bytes(b)
    return tag(num, WT_BYTES) + varint(len(b) if length is None else length) + b


def f_fixed64(num, v):
    return tag(num, WT_FIXED64) + struct.pack("<Q", v & ((1 << 64) - 1))


def f_fixed32(num, v):
    return tag(num, WT_FIXED32) + struct.pack("<I", v & 0xFFFFFFFF)


def checksum(msg_id, payload):
    return zlib.crc32(bytes(msg_id) + bytes(payload)) & 0xFFFFFFFF


# The cluster key node-to-node datagrams (kind 1 and 2) are sealed with by
# encode_msg, as bytes; a Cluster made with a key sets it. None: unsealed.
PEER_KEY = None


def seal(datagram, key, sent_ms=None):
    """Appends the seal of src/auth.h: fixed64 field 6 (the sender's wall
    clock, ms) then bytes field 5, keyed BLAKE2b-128 of the datagram then
    that time as 8 little-endian bytes."""
    if sent_ms is None:
        sent_ms = int(time.time() * 1000)
    t = struct.pack("<Q", sent_ms)
    mac = hashlib.blake2b(bytes(datagram) + t, key=key, digest_size=16).digest()
    return bytes(datagram) + tag(6, 1) + t + tag(5, 2) + bytes([16]) + mac


def keygen():
    """A cluster key as dht-cli keygen writes it (64 hex digits)."""
    return os.urandom(32).hex()


def encode_msg(msg_id, payload, check=None, kind=0, sealed=True):
    """A Msg datagram. check=None computes the right checksum; pass an int to
    send a wrong one. proto3: fields at their default value are left out.
    Node-to-node kinds are sealed with PEER_KEY when it is set and sealed."""
    if check is None:
        check = checksum(msg_id, payload)
    out = b""
    if msg_id:
        out += f_bytes(1, msg_id)
    if payload:
        out += f_bytes(2, payload)
    if check:
        out += f_fixed64(3, check)
    if kind:
        out += f_varint(4, kind)
    if kind and sealed and PEER_KEY:
        out = seal(out, PEER_KEY)
    return out


def encode_request(cmd, key=b"", value=b"", version=0):
    out = b""
    if cmd:
        out += f_varint(1, cmd)
    if key:
        out += f_bytes(2, key)
    if value:
        out += f_bytes(3, value)
    if version:
        out += f_varint(4, version)
    return out


def encode_response(err=0, value=b"", pid=0, version=0, wait=0, members=0):
    out = b""
    if err:
        out += f_varint(1, err)
    if value:
        out += f_bytes(2, value)
    for num, v in ((3, pid), (4, version), (5, wait), (6, members)):
        if v:
            out += f_varint(num, v)
    return out


def new_id():
    return os.urandom(ID_LEN)


def request_datagram(cmd, key=b"", value=b"", version=0, msg_id=None):
    """(msg_id, datagram) for a well-formed request."""
    msg_id = new_id() if msg_id is None else bytes(msg_id)
    return msg_id, encode_msg(msg_id, encode_request(cmd, as_bytes(key), as_bytes(value), version))


def as_bytes(x):
    if isinstance(x, str):
        return x.encode()
    return bytes(x)


# ---------------------------------------------------------------- decoding

class DecodeError(ValueError):
    pass


def read_varint(buf, pos):
    """(value, new_pos). At most 10 bytes, as protobuf allows."""
    result = 0
    shift = 0
    for i in range(10):
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7
    raise DecodeError("varint longer than 10 bytes")


def parse_fields(buf):
    """[(field number, wire type, value)]: int for varint/fixed, bytes for
    length-delimited. Raises DecodeError on anything malformed (groups
    included: nothing here uses them)."""
    buf = bytes(buf)
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise DecodeError("field number 0")
        if wt == WT_VARINT:
            v, pos = read_varint(buf, pos)
        elif wt == WT_FIXED64:
            if pos + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            v = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wt == WT_FIXED32:
            if pos + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            v = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        elif wt == WT_BYTES:
            n, pos = read_varint(buf, pos)
            if n > len(buf) - pos:
                raise DecodeError("length %d past the end" % n)
            v = buf[pos:pos + n]
            pos += n
        else:
            raise DecodeError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def _int32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _fields(buf, spec):
    """Decodes buf into a dict following spec {num: (name, wire type, kind)};
    unknown fields are skipped (proto3); a known field with the wrong wire
    type is an error. Last value wins, as in protobuf."""
    vals = {}
    for num, wt, v in parse_fields(buf):
        if num not in spec:
            continue
        name, want, kind = spec[num]
        if wt != want:
            raise DecodeError("field %d (%s): wire type %d, expected %d" % (num, name, wt, want))
        if kind == "int32":
            v = _int32(v)
        elif kind == "uint32":
            v &= 0xFFFFFFFF
        vals[name] = v
    return vals


MSG_SPEC = {1: ("id", WT_BYTES, "bytes"), 2: ("payload", WT_BYTES, "bytes"),
            3: ("check", WT_FIXED64, "uint64"), 4: ("kind", WT_VARINT, "uint32")}
REQ_SPEC = {1: ("cmd", WT_VARINT, "uint32"), 2: ("key", WT_BYTES, "bytes"),
            3: ("value", WT_BYTES, "bytes"), 4: ("version", WT_VARINT, "int32")}
RESP_SPEC = {1: ("err", WT_VARINT, "uint32"), 2: ("value", WT_BYTES, "bytes"),
             3: ("pid", WT_VARINT, "int32"), 4: ("version", WT_VARINT, "int32"),
             5: ("wait", WT_VARINT, "int32"), 6: ("members", WT_VARINT, "int32")}

Msg = collections.namedtuple("Msg", "id payload check kind")
Request = collections.namedtuple("Request", "cmd key value version")
Response = collections.namedtuple("Response", "err value pid version wait members src id",
                                  defaults=(None, None))


def decode_msg(buf):
    d = _fields(buf, MSG_SPEC)
    return Msg(d.get("id", b""), d.get("payload", b""), d.get("check", 0), d.get("kind", 0))


def decode_request(buf):
    d = _fields(buf, REQ_SPEC)
    return Request(d.get("cmd", 0), d.get("key", b""), d.get("value", b""), d.get("version", 0))


def decode_response(buf, src=None, msg_id=None):
    d = _fields(buf, RESP_SPEC)
    return Response(d.get("err", 0), d.get("value", b""), d.get("pid", 0), d.get("version", 0),
                    d.get("wait", 0), d.get("members", 0), src, msg_id)


def parse_member_list(value):
    """GET_MEMBERSHIP_LIST value: text lines 'ip:port state [...]', lines
    starting with '#' name columns. Returns [(ip, port, state)]."""
    out = []
    for line in as_bytes(value).decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split()
        host, _, port = cols[0].rpartition(":")
        try:
            port = int(port)
        except ValueError:
            continue
        out.append((host, port, cols[1] if len(cols) > 1 else ""))
    return out


# ---------------------------------------------------------------- client

class Timeout(Exception):
    pass


class ProtocolError(Exception):
    pass


class Client:
    """UDP client of one node. The socket is unconnected: a reply may come from
    any node (the owner of a key answers the client directly), and is matched
    by message ID only. A request is sent up to `retries` times with the same
    ID, waiting `timeout` seconds for the first try and doubling after each."""

    def __init__(self, addr, timeout=0.1, retries=5, bind=("0.0.0.0", 0)):
        if isinstance(addr, str):
            host, _, port = addr.rpartition(":")
            addr = (host, int(port))
        self.addr = (addr[0], int(addr[1]))
        self.timeout = timeout
        self.retries = retries
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.sends = 0          # datagrams sent, retries included
        self.stray = 0          # replies dropped: unknown ID or undecodable

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # raw datagrams, for malformed-frame tests
    def send(self, data, addr=None):
        self.sock.sendto(bytes(data), addr or self.addr)
        self.sends += 1

    def recv(self, timeout):
        """(data, source) of the next datagram, or None after timeout seconds."""
        self.sock.settimeout(max(timeout, 1e-4))
        try:
            return self.sock.recvfrom(65536)
        except socket.timeout:
            return None

    def drain(self):
        """Drops any datagram already queued (late replies of older requests)."""
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.setblocking(True)

    def _await(self, msg_id, deadline):
        """The reply to msg_id before deadline, or None."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self.recv(left)
            if got is None:
                return None
            data, src = got
            try:
                m = decode_msg(data)
            except DecodeError:
                self.stray += 1
                continue
            if m.id != msg_id:
                self.stray += 1
                continue
            if m.check != checksum(m.id, m.payload):
                raise ProtocolError("reply from %s:%d has a bad checksum (%d, expected %d)"
                                    % (src[0], src[1], m.check, checksum(m.id, m.payload)))
            try:
                return decode_response(m.payload, src, m.id)
            except DecodeError as e:
                raise ProtocolError("reply from %s:%d: undecodable KVResponse: %s" % (src[0], src[1], e))

    def request_raw(self, datagram, msg_id, timeout=None, retries=None, addr=None):
        """Sends a prepared datagram (retrying the same bytes) and returns the
        Response whose ID is msg_id; raises Timeout."""
        t = self.timeout if timeout is None else timeout
        tries = self.retries if retries is None else retries
        for _ in range(max(1, tries)):
            self.send(datagram, addr)
            r = self._await(msg_id, time.monotonic() + t)
            if r is not None:
                return r
            t *= 2
        raise Timeout("no reply from %s:%d to %s after %d tries"
                      % ((addr or self.addr) + (msg_id.hex(), tries)))

    def request(self, cmd, key=b"", value=b"", version=0, msg_id=None, timeout=None,
                retries=None, addr=None):
        msg_id, dgram = request_datagram(cmd, key, value, version, msg_id)
        return self.request_raw(dgram, msg_id, timeout, retries, addr)

    def call(self, cmd, key=b"", value=b"", version=0, overload_tries=20):
        """request(), but an OVERLOAD reply is retried after the wait it asks
        for, with a new message ID (the old ID's reply is cached)."""
        for _ in range(overload_tries):
            r = self.request(cmd, key, value, version)
            if r.err != EOVERLOAD:
                return r
            time.sleep(min(max(r.wait, 10), 2000) / 1000.0)
        return r

    # conveniences; each returns the Response
    def put(self, key, value, version=0):
        return self.call(PUT, key, value, version)

    def get(self, key):
        return self.call(GET, key)

    def remove(self, key):
        return self.call(REMOVE, key)

    def wipeout(self):
        return self.call(WIPEOUT)

    def alive(self, timeout=None, retries=None, addr=None):
        """True if the node (or the one at addr) answers IS_ALIVE with OK."""
        try:
            return self.request(IS_ALIVE, timeout=timeout, retries=retries, addr=addr).err == OK
        except Timeout:
            return False

    def pid(self):
        return self.request(GET_PID).pid

    def count(self):
        return self.request(GET_MEMBERSHIP_COUNT).members

    def members(self):
        """[(ip, port, state)] from GET_MEMBERSHIP_LIST."""
        return parse_member_list(self.call(GET_MEMBERSHIP_LIST).value)

    def shutdown(self):
        """Sends SHUTDOWN once; the node may exit before answering."""
        msg_id, dgram = request_datagram(SHUTDOWN)
        self.send(dgram)
        return self._await(msg_id, time.monotonic() + 0.3)


# ---------------------------------------------------------------- waiting

def local_ip():
    """An IPv4 address of this machine that is not a loopback one, or None.
    A connection from it to it stays inside the machine, yet its peer
    address is not loopback."""
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            ip = words[words.index("inet") + 1].split("/")[0]
            if not ip.startswith("127."):
                return ip
    return None


def metrics(http_port, host="127.0.0.1"):
    """{name: value} of a node's unlabelled /metrics samples (--http-port)."""
    import re
    import urllib.request
    with urllib.request.urlopen("http://%s:%d/metrics" % (host, http_port), timeout=10) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        m = re.match(r"^([a-z_]+) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def wait_until(pred, timeout, interval=0.05, what=None):
    """Calls pred() until it returns a true value; returns the seconds it took.
    Raises TimeoutError (with what, or the last value) after timeout seconds."""
    start = time.monotonic()
    last = None
    while True:
        last = pred()
        if last:
            return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            raise TimeoutError("%s not reached after %.1f s (last: %r)"
                               % (what or getattr(pred, "__name__", "condition"), timeout, last))
        time.sleep(interval)


# ---------------------------------------------------------------- ports

def udp_port_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _fixed_port_range():
    """(lo, hi): ports the kernel never hands out on its own (outside
    ip_local_port_range), so a port found free stays free until a test
    server binds it: no client socket can take it meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            elo, ehi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        elo, ehi = 32768, 60999
    return (10000, elo) if elo - 10000 >= 5000 else (ehi + 1, 65536)


def free_port_range(n, host="127.0.0.1", lo=None, hi=None, tries=200):
    """A base port such that base..base+n-1 are free UDP ports on host,
    outside the ephemeral range. Random, so that parallel runs rarely
    collide; checked by binding."""
    flo, fhi = _fixed_port_range()
    lo, hi = lo or flo, hi or fhi
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(tries):
        base = rnd.randrange(lo, hi - n)
        if all(udp_port_free(base + i, host) for i in range(n)):
            return base
    raise RuntimeError("no %d free consecutive UDP ports on %s" % (n, host))


def free_tcp_ports(n, host="127.0.0.1", tries=200):
    """n distinct free TCP ports on host (for --http-port, --resp-port),
    outside the ephemeral range, checked by binding. Pass them with
    extra_args, e.g. Cluster(3, extra_args=lambda i: ["--http-port", ports[i]])."""
    lo, hi = _fixed_port_range()
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6) ^ 0x5A5A)
    ports = []
    for _ in range(tries):
        if len(ports) == n:
            break
        p = rnd.randrange(lo, hi)
        if p in ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, p))
            ports.append(p)
        except OSError:
            pass
        finally:
            s.close()
    if len(ports) < n:
        raise RuntimeError("no %d free TCP ports on %s" % (n, host))
    return ports


# ---------------------------------------------------------------- processes

_live_clusters = weakref.WeakSet()
_handlers_installed = False
# nodes found dead of a crash (a signal no test sends) when their cluster
# stopped: run_tests fails the test that was running, whatever it checked
# (a node crashed by a client's command once showed only as a client that
# timed out)
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                 signal.SIGTRAP)
_crashes = []


def _cleanup_all():
    for c in list(_live_clusters):
        try:
            c.stop_all()
        except Exception:
            pass


def _on_signal(signum, frame):
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(s, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies, even by
    SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def server_binary(bin_dir=None):
    d = bin_dir or os.environ.get("DHT_BIN")
    if not d:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
        d = "./build" if os.path.isdir("./build") else here
    path = os.path.join(d, "dht-server")
    if not os.access(path, os.X_OK):
        raise FileNotFoundError("%s is not an executable (set DHT_BIN=<build dir>)" % path)
    return os.path.abspath(path)


class Cluster:
    """N dht-server processes on host ports base..base+N-1, started from a
    fresh temp dir holding the peers file and one log file per node.

    peers: None lists every node in the peers file (each server skips its own
    address); a list of lines writes those instead ([] = an empty file).
    extra_args: list of server arguments for every node, or a function
    i -> list. key: the nodes share a cluster key (a file in the dir, given
    with --cluster-key-file), and this process seals its node-to-node
    messages with it (PEER_KEY). Processes die with the test (atexit,
    SIGTERM/SIGINT/SIGHUP handlers and PR_SET_PDEATHSIG)."""

    def __init__(self, n, base_port=None, host="127.0.0.1", bin_dir=None, extra_args=(),
                 peers=None, workdir=None, keep_dir=False, key=True):
        global PEER_KEY
        self.n = n
        self.host = host
        self.bin = server_binary(bin_dir)
        self.base = base_port if base_port is not None else free_port_range(n, host)
        self.extra_args = extra_args
        self.dir = workdir or tempfile.mkdtemp(prefix="dht-test-")
        os.makedirs(self.dir, exist_ok=True)
        self.keep_dir = keep_dir
        self.peers_file = os.path.join(self.dir, "peers")
        lines = ["%s:%d" % self.addr(i) for i in range(n)] if peers is None else list(peers)
        with open(self.peers_file, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        self.key_file = None
        PEER_KEY = None
        if key:
            self.key_file = os.path.join(self.dir, "cluster.key")
            hexkey = keygen()
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(hexkey + "\n")
            PEER_KEY = bytes.fromhex(hexkey)
        self.procs = [None] * n
        self.logs = [None] * n
        self.starts = [0] * n
        self.reported = set()   # (node, start) of the crashes crashed() told
        _live_clusters.add(self)
        _install_handlers()

    # addresses and files
    def port(self, i):
        return self.base + i

    def addr(self, i):
        return (self.host, self.base + i)

    def log_path(self, i):
        return os.path.join(self.dir, "node%d.log" % i)

    def data_dir(self, i):
        return os.path.join(self.dir, "data%d" % i)

    def log_tail(self, i, lines=20):
        try:
            with open(self.log_path(i), "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def client(self, i, **kw):
        return Client(self.addr(i), **kw)

    def pid(self, i):
        p = self.procs[i]
        return p.pid if p else None

    def running(self, i):
        p = self.procs[i]
        return p is not None and p.poll() is None

    def args(self, i):
        ex = self.extra_args(i) if callable(self.extra_args) else self.extra_args
        key = ["--cluster-key-file", self.key_file] if self.key_file else []
        return key + [str(a) for a in ex]

    # life cycle
    def start(self, i=None, peers_first=False, extra=()):
        """Starts node i (or every node not running). peers_first passes
        PEERS_FILE PORT instead of PORT PEERS_FILE."""
        if i is None:
            for j in range(self.n):
                if not self.running(j):
                    self.start(j, peers_first, extra)
            return
        if self.running(i):
            raise RuntimeError("node %d is already running" % i)
        pos = [self.peers_file, str(self.port(i))] if peers_first else [str(self.port(i)), self.peers_file]
        cmd = [self.bin] + pos + self.args(i) + [str(a) for a in extra]
        log = open(self.log_path(i), "ab")
        log.write(("--- start %s\n" % " ".join(cmd)).encode())
        log.flush()
        self.procs[i] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
        self.starts[i] += 1

    def kill(self, i, sig=signal.SIGKILL, wait=5.0):
        """Sends sig to node i and waits (bounded) for it to exit. Returns the
        exit status, or None if it is still running."""
        p = self.procs[i]
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            return p.wait(wait)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, i, wait=5.0):
        """SIGTERM, then SIGKILL if it has not exited after wait seconds."""
        rc = self.kill(i, signal.SIGTERM, wait)
        if self.running(i):
            rc = self.kill(i, signal.SIGKILL, wait)
        return rc

    def restart(self, i, **kw):
        if self.running(i):
            self.stop(i)
        self.start(i, **kw)

    def wait_exit(self, i, timeout):
        """Exit status of node i within timeout seconds, or None."""
        p = self.procs[i]
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def crashed(self):
        """['node i died of SIGSEGV ...', ...] for the nodes that died of a
        crash signal (ASan aborts: SIGABRT) since the last call, each with the
        end of its log."""
        out = []
        for i, p in enumerate(self.procs):
            if p is not None and p.poll() is not None and -p.returncode in CRASH_SIGNALS \
                    and (i, self.starts[i]) not in self.reported:
                self.reported.add((i, self.starts[i]))
                out.append("node %d died of %s; log %s ends:\n%s"
                           % (i, signal.Signals(-p.returncode).name, self.log_path(i),
                              self.log_tail(i, 30)))
        return out

    def stop_all(self):
        _crashes.extend(self.crashed())
        for i in range(self.n):
            if self.running(i):
                try:
                    self.procs[i].kill()
                except ProcessLookupError:
                    pass
        for i in range(self.n):
            if self.procs[i] is not None:
                try:
                    self.procs[i].wait(5)
                except subprocess.TimeoutExpired:
                    pass

    def cleanup(self):
        self.stop_all()
        if not self.keep_dir:
            import shutil
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.cleanup()

    # waiting
    def wait_ready(self, timeout=15.0, nodes=None):
        """Polls IS_ALIVE until every node (or those in nodes) answers; returns
        the seconds it took. Raises RuntimeError naming a node that exited,
        TimeoutError naming those that never answered."""
        nodes = list(range(self.n)) if nodes is None else list(nodes)
        start = time.monotonic()
        pending = set(nodes)
        with Client(self.addr(0), timeout=0.05, retries=1) as c:
            while pending:
                for i in sorted(pending):
                    p = self.procs[i]
                    if p is None or p.poll() is not None:
                        raise RuntimeError("node %d is not running (exit %s); log:\n%s"
                                           % (i, p.returncode if p else None, self.log_tail(i)))
                    try:
                        if c.request(IS_ALIVE, addr=self.addr(i)).err == OK:
                            pending.discard(i)
                    except Timeout:
                        pass
                if pending and time.monotonic() - start > timeout:
                    raise TimeoutError("nodes %s not answering IS_ALIVE after %.1f s"
                                       % (sorted(pending), timeout))
                if pending:
                    time.sleep(0.02)
        return time.monotonic() - start

    def counts(self, nodes=None, client=None):
        """{i: GET_MEMBERSHIP_COUNT or None if no reply}."""
        nodes = range(self.n) if nodes is None else nodes
        own = client is None
        c = client or Client(self.addr(0), timeout=0.1, retries=3)
        try:
            out = {}
            for i in nodes:
                try:
                    out[i] = c.request(GET_MEMBERSHIP_COUNT, addr=self.addr(i)).members
                except Timeout:
                    out[i] = None
            return out
        finally:
            if own:
                c.close()

    def wait_counts(self, expect, timeout, nodes=None):
        """Waits until every node in nodes reports GET_MEMBERSHIP_COUNT ==
        expect; returns the seconds it took."""
        nodes = list(range(self.n)) if nodes is None else list(nodes)
        last = {}
        with Client(self.addr(0), timeout=0.1, retries=3) as c:
            def pred():
                last.clear()
                last.update(self.counts(nodes, c))
                return all(v == expect for v in last.values())
            try:
                return wait_until(pred, timeout, interval=0.1)
            except TimeoutError:
                bad = {i: v for i, v in last.items() if v != expect}
                raise TimeoutError("membership count %d not reached after %.1f s; %d nodes differ: %s"
                                   % (expect, timeout, len(bad), bad)) from None


# ---------------------------------------------------------------- runner

def run_tests(namespace, argv=None, cleanup_each=True):
    """Runs every function named test_* in namespace (definition order), or
    those whose name contains one of argv's words; prints PASS/FAIL lines
    and a last line 'N passed, N failed'. Returns the exit status.
    cleanup_each stops every Cluster after each test (independent tests);
    without it clusters live until the end (steps of one scenario)."""
    import traceback
    argv = sys.argv[1:] if argv is None else argv
    tests = [(k, v) for k, v in namespace.items() if k.startswith("test_") and callable(v)]
    if argv:
        tests = [(k, v) for k, v in tests if any(a in k for a in argv)]
    passed = failed = 0
    failures = []
    for name, fn in tests:
        t0 = time.monotonic()
        del _crashes[:]
        try:
            try:
                fn()
            finally:
                if cleanup_each:
                    _cleanup_all()
                else:
                    for c in list(_live_clusters):
                        _crashes.extend(c.crashed())
            if _crashes:
                raise AssertionError("a node crashed: " + "\n".join(_crashes))
        except Exception as e:
            failed += 1
            failures.append(name)
            print("FAIL %s (%.2f s): %s: %s" % (name, time.monotonic() - t0, type(e).__name__, e),
                  flush=True)
            tb = traceback.extract_tb(e.__traceback__)
            for fr in tb[1:]:
                print("      %s:%d %s" % (os.path.basename(fr.filename), fr.lineno, fr.line), flush=True)
            if _crashes and not str(e).startswith("a node crashed"):
                print("      and a node crashed: " + "\n".join(_crashes), flush=True)
        else:
            passed += 1
            print("PASS %s (%.2f s)" % (name, time.monotonic() - t0), flush=True)
    _cleanup_all()
    if failures:
        print("failed: " + " ".join(failures))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or not tests else 0


class StepSkipped(Exception):
    """A step of a scenario that cannot run: an earlier one failed."""


def need(state, *names):
    """Raises StepSkipped unless every name is in state (set by earlier steps)."""
    for n in names:
        if n not in state:
            raise StepSkipped("an earlier step failed (no %s)" % n)


def run_scenario(namespace, state):
    """Runs the test_* steps of one scenario, the cluster living from step to
    step (run_tests without cleanup_each). state["cluster"], if any, is
    removed when every step passed, else stopped with its logs kept. Returns
    the exit status."""
    rc = run_tests(namespace, cleanup_each=False)
    c = state.get("cluster")
    if c is not None:
        if rc == 0:
            c.keep_dir = False
            c.cleanup()
        else:
            c.stop_all()
            print("logs kept in %s" % c.dir)
    return rc


# ---------------------------------------------------------------- self-test

def _selftest():
    assert checksum(bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])) == 1070237893
    assert varint(0) == b"\x00" and varint(300) == b"\xac\x02"
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert read_varint(varint(-1), 0)[0] == (1 << 64) - 1
    m = encode_msg(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    d = decode_msg(m)
    assert d == Msg(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 1070237893, 0), d
    r = decode_request(encode_request(PUT, b"k", b"v" * 300, -5))
    assert r == Request(PUT, b"k", b"v" * 300, -5), r
    resp = decode_response(encode_response(ENOKEY, b"x", 1234, -7, 50, 40))
    assert resp[:6] == (ENOKEY, b"x", 1234, -7, 50, 40), resp
    assert decode_response(b"") [:6] == (0, b"", 0, 0, 0, 0)
    # unknown fields are skipped; malformed input raises
    assert decode_request(f_varint(9, 1) + f_varint(1, GET)).cmd == GET
    for bad in (b"\x0a\x05ab", b"\x08", b"\x0b", b"\x00\x00", b"\x80" * 11,
                f_bytes(1, b"") [:1] + b"\xff\xff\xff\xff\x0f", f_varint(1, 1)[:1] + b"\x80"):
        try:
            parse_fields(bad)
        except DecodeError:
            pass
        else:
            raise AssertionError("accepted malformed %r" % bad)
    try:
        decode_msg(f_varint(1, 5))
    except DecodeError:
        pass
    else:
        raise AssertionError("wrong wire type accepted")
    members = parse_member_list(b"# ADDRESS STATE\n127.0.0.1:7000 alive\n10.0.0.2:7001 dead x\n")
    assert members == [("127.0.0.1", 7000, "alive"), ("10.0.0.2", 7001, "dead")], members
    print("dht.py self-test ok")


if __name__ == "__main__":
    _selftest()
