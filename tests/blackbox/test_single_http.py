#!/usr/bin/env python3
"""Black-box tests of the HTTP endpoint (--http-port) of one dht-server node:
/metrics is Prometheus text format 0.0.4 and follows the node's counters,
/status is JSON, / is a self-contained page, anything else is 400, 404, 405,
421 (another host name: DNS rebinding) or 431, and garbage, oversized heads,
idle and abruptly closed connections never stop the node (nor leak
connections). Each test starts its own node.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_single_http.py [name ...]
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import contextlib
import http.client
import json
import math
import os
import random
import re
import select
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402
import test_single  # noqa: E402
from dht import OK, IS_ALIVE, PUT  # noqa: E402

MAX_HEAD = 8192       # HTTP_MAX_HEAD in src/http.h
MAX_CONNS = 64        # HTTP_MAX_CONNS
HEAD_TIMEOUT = 5.0    # HEAD_TIMEOUT_MS in src/http.c


@contextlib.contextmanager
def node(*args):
    """A started, ready single node with --http-port; yields (cluster,
    client, http port). Prints the node's log tail if the test fails."""
    port = dht.free_tcp_ports(1)[0]
    c = dht.Cluster(1, peers=[], extra_args=["--http-port", port] + list(args))
    with test_single.node(cluster=c) as (c, cl):
        yield c, cl, port


def request(port, path, method="GET", body=None, headers=None):
    """(status, headers dict with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get(port, path):
    status, headers, body = request(port, path)
    assert status == 200, "GET %s: status %d: %r" % (path, status, body[:200])
    return headers, body


def raw(port, data, timeout=5.0):
    """Sends data on a fresh connection, half-closes it, and returns all it
    gets back until the node closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk


def status_code(response):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert m, "not an HTTP/1.1 response: %r" % response[:100]
    return int(m.group(1))


def closed_by_peer(s):
    """s, readable, was closed by the node (FIN or RST)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def reset(s):
    """Closes s with a RST instead of a FIN (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ---------------------------------------------------------------- Prometheus text format

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_RE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$" % NAME)
LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def parse_value(v):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$", v):
        raise AssertionError("bad sample value %r" % v)
    return float(v)


def parse_labels(text):
    labels = {}
    pos = 0
    while pos < len(text):
        m = LABEL_RE.match(text, pos)
        assert m and m.end() > pos, "bad label set {%s} at %d" % (text, pos)
        assert m.group(1) not in labels, "label %s twice in {%s}" % (m.group(1), text)
        labels[m.group(1)] = m.group(2)
        pos = m.end()
    return labels


def family_of(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    raise AssertionError("sample %s has no TYPE line before it" % name)


def check_histogram(name, samples):
    buckets = [(parse_value(l["le"]), v) for n, l, v in samples if n == name + "_bucket"]
    sums = [v for n, l, v in samples if n == name + "_sum"]
    counts = [v for n, l, v in samples if n == name + "_count"]
    assert buckets and len(sums) == 1 and len(counts) == 1, "%s: buckets, one _sum, one _count" % name
    les = [le for le, _ in buckets]
    assert les == sorted(les) and len(set(les)) == len(les), "%s: le not increasing: %s" % (name, les)
    assert les[-1] == math.inf, "%s: last bucket is le=%s, not +Inf" % (name, les[-1])
    vals = [v for _, v in buckets]
    assert all(a <= b for a, b in zip(vals, vals[1:])), "%s: buckets not cumulative: %s" % (name, vals)
    assert vals[-1] == counts[0], "%s: +Inf bucket %s != _count %s" % (name, vals[-1], counts[0])
    # The sum lies between the lower and upper bounds of the observations'
    # buckets (when none is in the open +Inf bucket).
    if len(vals) > 1 and vals[-1] == vals[-2]:
        lo = hi = 0.0
        prev_le, prev_v = 0.0, 0.0
        for le, v in buckets[:-1]:
            lo += (v - prev_v) * prev_le
            hi += (v - prev_v) * le
            prev_le, prev_v = le, v
        assert lo - 1e-6 <= sums[0] <= hi + 1e-6, "%s: _sum %s outside [%s, %s]" % (name, sums[0], lo, hi)


def parse_prometheus(text):
    """Checks text against the text format 0.0.4 and returns
    {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    fams = {}
    types = {}
    seen_series = set()
    current = None
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d %r" % (lineno, line)
        assert line, "%s: empty line" % where
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % NAME, line)
            if not m:
                continue  # a plain comment
            kind, name, rest = m.groups()
            fam = fams.setdefault(name, {"type": None, "help": None, "samples": []})
            assert not fam["samples"], "%s: %s after the family's samples" % (where, kind)
            if kind == "TYPE":
                assert rest in TYPES, "%s: unknown type" % where
                assert fam["type"] is None, "%s: second TYPE" % where
                fam["type"] = types[name] = rest
            else:
                assert fam["help"] is None, "%s: second HELP" % where
                fam["help"] = rest
            continue
        m = SAMPLE_RE.match(line)
        assert m, "%s: not 'name{labels} value'" % where
        name, labels, value, _ts = m.groups()
        fam_name = family_of(name, types)
        if current != fam_name:
            assert not fams[fam_name]["samples"], "%s: family %s not contiguous" % (where, fam_name)
            current = fam_name
        labels = parse_labels(labels or "")
        series = (name, tuple(sorted(labels.items())))
        assert series not in seen_series, "%s: duplicate series" % where
        seen_series.add(series)
        v = parse_value(value)
        if types[fam_name] == "counter":
            assert name.endswith("_total") and v >= 0, "%s: counter named _total, >= 0" % where
        fams[fam_name]["samples"].append((name, labels, v))
    for name, fam in fams.items():
        assert fam["type"], "family %s has no TYPE" % name
        assert fam["help"], "family %s has no HELP" % name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return fams


def metrics(port):
    headers, body = get(port, "/metrics")
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    return parse_prometheus(body.decode("utf-8"))


def sample(fams, family, name=None, **labels):
    for n, l, v in fams[family]["samples"]:
        if n == (name or family) and l == labels:
            return v
    raise AssertionError("no sample %s%s in /metrics" % (name or family, labels))


def assert_serves(c, cl, port, what):
    """The node runs and answers UDP and HTTP after `what`."""
    test_single.assert_serves(c, cl, what)
    status, _, body = request(port, "/status")
    assert status == 200 and json.loads(body)["pid"] == c.pid(0), "/status after " + what


def connections(port):
    """dht_http_connections, or None when the node turned the request away
    (over its connection limit while it is still closing others)."""
    try:
        return sample(metrics(port), "dht_http_connections")
    except (ConnectionError, http.client.HTTPException):
        return None


def wait_connections_settle(port, what):
    """Every connection but the one asking is gone, soon."""
    dht.wait_until(lambda: connections(port) == 1, 5, interval=0.1,
                   what="dht_http_connections back to 1 after " + what)


# ---------------------------------------------------------------- tests

def test_parser_rejects_bad_expositions():
    good = ("# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\"} 3\n"
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
            "h_sum 5\nh_count 2\n")
    parse_prometheus(good)
    for bad in (good.replace("# TYPE x_total counter\n", ""),       # no TYPE
                good.replace("x_total{a=\"1\"} 3", "x_total{a=1} 3"),  # unquoted label
                good.replace(" 3\n", " three\n"),                      # bad value
                good.replace("h_bucket{le=\"+Inf\"} 2", "h_bucket{le=\"+Inf\"} 0"),  # not cumulative
                good.replace("h_count 2", "h_count 3"),                 # +Inf != _count
                good.replace("h_bucket{le=\"+Inf\"} 2\n", ""),          # no +Inf
                good + "x_total{a=\"1\"} 4\n"):                         # duplicate, split family
        try:
            parse_prometheus(bad)
        except AssertionError:
            continue
        raise AssertionError("parser accepted:\n" + bad)


def test_metrics_is_valid_prometheus_text():
    with node() as (c, cl, port):
        fams = metrics(port)
        want = {"dht_requests_total": "counter", "dht_replies_total": "counter",
                "dht_dropped_total": "counter", "dht_cache_hits_total": "counter",
                "dht_forwarded_total": "counter", "dht_peer_messages_total": "counter",
                "dht_request_latency_seconds": "histogram", "dht_members": "gauge",
                "dht_keys": "gauge", "dht_bytes": "gauge", "dht_inflight_ops": "gauge",
                "dht_uptime_seconds": "gauge", "dht_http_connections": "gauge",
                "dht_loop_busy_seconds": "histogram", "dht_loop_busy_max_seconds": "gauge"}
        for name, t in want.items():
            assert name in fams, "%s missing from /metrics" % name
            assert fams[name]["type"] == t, "%s is a %s, not a %s" % (name, fams[name]["type"], t)
        for cmd in ("put", "get", "remove", "is_alive", "get_membership_list"):
            sample(fams, "dht_requests_total", command=cmd)
        for reason in ("checksum", "malformed"):
            sample(fams, "dht_dropped_total", reason=reason)
        assert sample(fams, "dht_members", state="alive") == 1
        assert sample(fams, "dht_members", state="dead") == 0
        assert sample(fams, "dht_keys") == 0
        assert sample(fams, "dht_http_connections") == 1
        assert 0 <= sample(fams, "dht_uptime_seconds") < 60


def test_metrics_follow_udp_requests():
    with node() as (c, cl, port):
        before = metrics(port)
        assert cl.put(b"metrics-key", b"value").err == OK
        assert cl.get(b"metrics-key").err == OK
        after = metrics(port)

        def delta(family, name=None, **labels):
            return sample(after, family, name, **labels) - sample(before, family, name, **labels)

        assert delta("dht_requests_total", command="put") == 1
        assert delta("dht_requests_total", command="get") == 1
        assert delta("dht_replies_total", code="ok") == 2
        assert sample(after, "dht_keys") == 1, "dht_keys after one PUT"
        assert sample(after, "dht_bytes") == len(b"metrics-key") + len(b"value")
        assert delta("dht_request_latency_seconds", "dht_request_latency_seconds_count") == 2
        assert sample(after, "dht_inflight_ops") == 0

        # a retried request is answered from the reply cache
        msg_id, dgram = dht.request_datagram(PUT, b"k2", b"v")
        assert cl.request_raw(dgram, msg_id).err == OK
        assert cl.request_raw(dgram, msg_id).err == OK  # (a retry above is a cache hit too)
        # a bad checksum and a malformed frame are dropped and counted
        cl.send(dht.encode_msg(dht.new_id(), dht.encode_request(IS_ALIVE), check=12345))
        cl.send(b"\xff\xff\xff")
        assert cl.request(IS_ALIVE).err == OK  # the node has read both by now
        last = metrics(port)
        assert sample(last, "dht_cache_hits_total") - sample(after, "dht_cache_hits_total") >= 1
        assert sample(last, "dht_requests_total", command="put") - \
            sample(after, "dht_requests_total", command="put") == 1, "a cache hit is not a request"
        assert sample(last, "dht_dropped_total", reason="checksum") == \
            sample(after, "dht_dropped_total", reason="checksum") + 1
        assert sample(last, "dht_dropped_total", reason="malformed") == \
            sample(after, "dht_dropped_total", reason="malformed") + 1
        assert sample(last, "dht_keys") == 2


def test_loop_busy_counts_the_iterations():
    """Every request wakes the loop: an iteration counted, its work in the
    buckets, the longest one in the bucket its length falls in."""
    with node() as (c, cl, port):
        h = "dht_loop_busy_seconds"
        before = sample(metrics(port), h, h + "_count")
        for i in range(50):
            assert cl.put(b"busy-%d" % i, b"v" * 100).err == OK
        fams = metrics(port)
        assert sample(fams, h, h + "_count") - before >= 50, "50 PUTs one after the other"
        longest = sample(fams, "dht_loop_busy_max_seconds")
        assert 0 < longest <= sample(fams, h, h + "_sum")
        bounds = sorted((float(l["le"]), v) for n, l, v in fams[h]["samples"]
                        if n == h + "_bucket" and l["le"] != "+Inf")
        top = next(i for i, (_le, v) in enumerate(bounds) if v == bounds[-1][1])
        assert longest <= bounds[top][0] and (top == 0 or longest > bounds[top - 1][0]), \
            "the longest iteration, %.6f s, outside the top bucket %s" % (longest, bounds[top])


def test_request_latency_in_microseconds():
    """Timed in microseconds: of 50 PUTs of 1,000 bytes some take more than
    one (timed by the node's millisecond clock, every command answered
    within a millisecond counted 0 us: the sum was 0, all in the first
    bucket). Not that none is in the first: many take 1 us or less."""
    with node() as (c, cl, port):
        h = "dht_request_latency_seconds"
        for i in range(50):
            assert cl.put(b"lat-%d" % i, b"v" * 1000).err == OK
        fams = metrics(port)
        count = sample(fams, h, h + "_count")
        assert count == 50
        assert sample(fams, h, h + "_sum") > 0
        assert sample(fams, h, h + "_bucket", le="0.000001") < count, "all within 1 us"


def test_status_is_json_with_the_node_alive():
    with node() as (c, cl, port):
        assert cl.put(b"s", b"1234").err == OK
        status, headers, body = request(port, "/status")
        assert status == 200 and headers["content-type"] == "application/json", (status, headers)
        s = json.loads(body)
        me = "127.0.0.1:%d" % c.port(0)
        assert s["self"] == me, s
        assert s["pid"] == c.pid(0) == cl.pid(), s
        assert s["store"] == "memory" and s["keys"] == 1 and s["bytes"] == 5, s
        assert (s["replicas"], s["read_quorum"], s["write_quorum"]) == (3, 2, 2), s
        assert isinstance(s["uptime_s"], int) and s["uptime_s"] >= 0, s
        assert s["members"] == [{"addr": me, "state": "alive", "share": 1.0, "slots": 16384}], s["members"]


def test_status_reports_lmdb_and_quorums():
    with tempfile.TemporaryDirectory(prefix="dht-http-") as d, \
            node("--replicas", "1", "--read-quorum", "1", "--write-quorum", "1",
                 "--data-dir", d) as (c, cl, port):
        s = json.loads(get(port, "/status")[1])
        assert s["store"] == "lmdb", s
        assert (s["replicas"], s["read_quorum"], s["write_quorum"]) == (1, 1, 1), s


def test_page_is_self_contained_html():
    with node() as (c, cl, port):
        headers, body = get(port, "/")
        assert headers["content-type"].startswith("text/html"), headers
        page = body.decode("utf-8")
        assert page.startswith("<!DOCTYPE html>") and "</html>" in page
        assert "<svg" in page and "fetch('/status'" in page
        assert not re.search(r"\b(src|href)\s*=", page), "the page loads an external resource"
        assert not re.search(r"@import|url\(", page), "the page's CSS loads a resource"
        assert int(headers["content-length"]) == len(body)
        assert get(port, "/?refresh=1")[1] == body, "a query string selects the same page"


def test_unknown_path_is_404():
    with node() as (c, cl, port):
        for path in ("/nope", "/metrics/", "/metricsx", "/status.json", "//", "/%2F",
                     "/" + "a" * 4000):
            status, _, body = request(port, path)
            assert status == 404, "%s: %d %r" % (path, status, body)
        assert request(port, "/metrics?x=1")[0] == 200


def test_methods_other_than_get_are_405():
    with node() as (c, cl, port):
        for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "get"):
            status, headers, _ = request(port, "/metrics", method=method,
                                         body=b"x=1" if method == "POST" else None)
            assert status == 405, "%s: %d" % (method, status)
            assert headers.get("allow") == "GET", headers
        assert_serves(c, cl, port, "other methods")


def test_bad_request_lines_are_400():
    with node() as (c, cl, port):
        for line in (b"GARBAGE", b"GET", b"GET /metrics", b"GET metrics HTTP/1.1",
                     b"GET /metrics HTTP/2.0", b"GET /metrics HTTP/1.1 extra",
                     b"GET  /metrics HTTP/1.1", b"GET /me\x00trics HTTP/1.1",
                     b"GET /m\x7fetrics HTTP/1.1", b"G(T /metrics HTTP/1.1",
                     b"GET /metrics HTTP/1.x", b"GET /metrics http/1.1", b"", b"\xff\xfe"):
            got = raw(port, line + b"\r\n\r\n")
            assert status_code(got) == 400, "%r: %r" % (line, got[:80])
        # LF alone ends lines too
        assert status_code(raw(port, b"GET /status HTTP/1.0\n\n")) == 200
        assert_serves(c, cl, port, "bad request lines")


def test_oversized_head_is_431():
    with node() as (c, cl, port):
        def head_of(size):
            start, end = b"GET /status HTTP/1.1\r\nX-Pad: ", b"\r\n\r\n"
            return start + b"a" * (size - len(start) - len(end)) + end

        assert status_code(raw(port, head_of(MAX_HEAD))) == 200, "a head of exactly the limit"
        assert status_code(raw(port, head_of(MAX_HEAD + 1))) == 431
        # a head that never ends: answered at the limit, the rest drained
        got = raw(port, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20000)
        assert status_code(got) == 431, got[:80]
        assert_serves(c, cl, port, "oversized heads")


def test_garbage_does_not_hurt_the_node():
    rnd = random.Random(1234)
    with node() as (c, cl, port):
        for i in range(150):
            size = rnd.choice((1, 10, 100, 1000, 8191, 8192, 8193, 20000))
            blob = bytes(rnd.getrandbits(8) for _ in range(size))
            if i % 3 == 0:  # an end of head somewhere in it
                k = rnd.randrange(size + 1)
                blob = blob[:k] + b"\r\n\r\n" + blob[k:]
            if i % 5 == 0:
                blob = b"GET /" + blob
            got = raw(port, blob)
            if got:
                assert status_code(got) in (200, 400, 404, 405, 421, 431), got[:80]
        assert_serves(c, cl, port, "garbage")
        wait_connections_settle(port, "garbage")


def test_abrupt_disconnects():
    with node() as (c, cl, port):
        addr = ("127.0.0.1", port)
        for i in range(60):
            # connect, reset at once
            reset(socket.create_connection(addr))
            # part of a head, then reset
            s = socket.create_connection(addr)
            s.sendall(b"GET /metr")
            reset(s)
            # a whole request, reset before reading the response
            s = socket.create_connection(addr)
            s.sendall(b"GET %s HTTP/1.1\r\n\r\n" % (b"/", b"/metrics", b"/status")[i % 3])
            reset(s)
            # a plain close with nothing sent
            socket.create_connection(addr).close()
        wait_connections_settle(port, "abrupt disconnects")
        # a request, then a half close: the response still comes
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        assert status_code(got) == 200 and got.rstrip().endswith(b"}"), got[-80:]
        assert_serves(c, cl, port, "abrupt disconnects")


def test_connection_limit_and_idle_timeout():
    """At most MAX_CONNS are open: each new connection past them takes the
    place of the oldest still sending its head, so that slow heads cannot
    keep an operator's request out (before, the new one was closed, and 64
    heads sent a byte at a time held the port); those left are closed after
    the head timeout."""
    with node() as (c, cl, port):
        extra = 6
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNS + extra)]
        t0 = time.monotonic()
        try:
            time.sleep(1.0)
            closed = [i for i, s in enumerate(socks) if select.select([s], [], [], 0)[0]]
            assert closed == list(range(extra)), \
                "connections %s of %d closed, expected the %d oldest" % (closed, len(socks), extra)
            for s in socks[:extra]:
                assert closed_by_peer(s), "data on a connection over the limit"
                s.close()
            socks = socks[extra:]
            for s in socks:
                s.sendall(b"GET /status HTTP/1.1\r\n")  # never finished
            # a whole request gets through, in place of the oldest slow head
            status, _, body = request(port, "/status")
            assert status == 200 and json.loads(body)["pid"] == c.pid(0), \
                "/status refused while %d slow heads were open: %d" % (MAX_CONNS, status)
            assert select.select([socks[0]], [], [], 5)[0] and closed_by_peer(socks[0]), \
                "the oldest slow head stayed open"
            socks.pop(0).close()
            # the others are closed after the head timeout
            for s in socks:
                left = t0 + HEAD_TIMEOUT + 5 - time.monotonic()
                assert select.select([s], [], [], max(left, 0))[0], "an idle connection stayed open"
                assert closed_by_peer(s), "data on an idle connection"
            took = time.monotonic() - t0
            assert took >= HEAD_TIMEOUT - 0.5, "idle connections closed after only %.1f s" % took
        finally:
            for s in socks:
                s.close()
        assert_serves(c, cl, port, "idle connections")
        wait_connections_settle(port, "idle connections")
        assert sample(metrics(port), "dht_http_evicted_total") == extra + 1


def test_port_in_use_is_an_error():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        c = dht.Cluster(1, peers=[], extra_args=["--http-port", port])
        try:
            c.start(0)
            rc = c.wait_exit(0, 10)
            assert rc not in (None, 0), "dht-server started with its HTTP port in use (exit %s)" % rc
            log = c.log_tail(0)
            assert "cannot listen for HTTP" in log, log
            # said once, with what it is about (a bare "dht-server: address
            # already in use" followed it)
            assert log.count("address already in use") == 1, log
        finally:
            c.cleanup()


def _reachable(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except (ConnectionRefusedError, socket.timeout):
        return False


def test_listens_on_loopback_only_by_default():
    """The pages are for the local operator: by default the port is bound to
    127.0.0.1, so 127.0.0.2 and the machine's other addresses are refused;
    --http-bind 0.0.0.0 opens it to them."""
    others = ["127.0.0.2"] + ([dht.local_ip()] if dht.local_ip() else [])
    with node() as (c, cl, port):
        assert _reachable("127.0.0.1", port)
        assert get(port, "/metrics")[1]
        for host in others:
            assert not _reachable(host, port), "the HTTP port answers on %s" % host
        assert "http on 127.0.0.1:%d" % port in c.log_tail(0), c.log_tail(0)
    with node("--http-bind", "0.0.0.0") as (c, cl, port):
        for host in ["127.0.0.1"] + others:
            assert _reachable(host, port), "--http-bind 0.0.0.0: not reachable on %s" % host
    print("    refused by default on %s" % ", ".join(others))


def test_other_host_names_are_refused_on_loopback():
    """DNS rebinding: a web page the operator opens (http://evil.example:PORT/)
    has its name re-resolved to 127.0.0.1, and the browser, thinking it the
    same origin, sends the page's requests to the node and lets the page read
    the answers (/status: every member's address). Such a request names the
    page's host in Host: a node on loopback answers only requests for an IP
    literal or localhost (or without Host); --http-bind 0.0.0.0 serves any."""
    def head(host_line):
        return b"GET /status HTTP/1.1\r\n" + host_line + b"User-Agent: Mozilla/5.0\r\n\r\n"

    with node() as (c, cl, port):
        p = str(port).encode()
        for h in (b"evil.example:" + p, b"evil.example", b"EVIL.example:" + p, b"localhost.evil.example",
                  b"127.0.0.1.nip.io:" + p, b"x:" + p, b"localhostx", b"[::1].evil:" + p):
            got = raw(port, head(b"Host: " + h + b"\r\n"))
            assert status_code(got) == 421, "Host: %r: %r" % (h, got[:80])
            assert not re.search(rb'"members"', got), "Host: %r: /status was served" % h
        for h in (b"127.0.0.1:" + p, b"127.0.0.1", b"localhost:" + p, b"LocalHost", b"[::1]:" + p,
                  b"[::1]", b" 127.0.0.1:" + p + b" ", b""):
            got = raw(port, head(b"Host: " + h + b"\r\n"))
            assert status_code(got) == 200, "Host: %r: %r" % (h, got[:80])
        assert status_code(raw(port, head(b""))) == 200, "no Host (HTTP/1.0 clients)"
        assert status_code(raw(port, b"GET /metrics HTTP/1.1\r\nhost:evil.example\r\n\r\n")) == 421
        assert get(port, "/status")[1], "http.client sends Host: 127.0.0.1:PORT"
        assert_serves(c, cl, port, "other host names")
    with node("--http-bind", "0.0.0.0") as (c, cl, port):
        got = raw(port, head(b"Host: dht-node-1.example:%d\r\n" % port))
        assert status_code(got) == 200, "--http-bind 0.0.0.0: a host name: %r" % got[:80]


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
