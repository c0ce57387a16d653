#!/usr/bin/env python3
"""scripts/cluster's network-namespace mode: 6 nodes, each in its own
namespace with its own address (10.99.0.1-6) on a bridge; a key put through
one node is read through another; `partition 0,1,2 3,4,5` splits the
membership in two, `heal` joins it again; `stop-all` removes the namespaces.
Needs root (ip netns, iptables).

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_cluster_netns.py
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLUSTER = os.path.join(ROOT, "scripts", "cluster")
N = 6


def run(d, *args, timeout=60):
    p = subprocess.run([CLUSTER, "--dir", d] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert p.returncode == 0, "scripts/cluster %s failed:\n%s" % (" ".join(args), p.stdout)
    return p.stdout


def members(d):
    """{node: MEMBERS column} from `status`."""
    out = run(d, "status")
    return {int(m.group(1)): int(m.group(2)) if m.group(2).isdigit() else None
            for m in re.finditer(r"^(\d+)\s+\S+\s+\d+\s+\S+\s+\S+\s+(\S+)\s*$", out, re.M)}


def wait_members(d, want, timeout=15):
    t0 = time.monotonic()
    got = {}
    while time.monotonic() - t0 < timeout:
        got = members(d)
        if got == want:
            return time.monotonic() - t0
        time.sleep(0.3)
    raise AssertionError("membership %s, wanted %s" % (got, want))


def cli(*args):
    bindir = os.path.dirname(dht.server_binary())
    p = subprocess.run(["ip", "netns", "exec", "dht-nsctl", os.path.join(bindir, "dht-cli")] +
                       list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=30)
    return p.returncode, p.stdout.strip()


def test_netns_cluster_partition_and_heal():
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise AssertionError("network namespaces need root and iproute2 (scripts/deps installs it)")
    d = tempfile.mkdtemp(prefix="dht-netns-")
    bindir = os.path.dirname(dht.server_binary())
    try:
        run(d, "start", "-n", str(N), "--netns", "--bin", bindir, timeout=120)
        print("  converged in %.1f s" % wait_members(d, {i: N for i in range(N)}))
        assert cli("-s", "10.99.0.1:7000", "put", "ns-key", "ns-value") == (0, "ok")
        assert cli("-s", "10.99.0.6:7000", "get", "ns-key") == (0, "ns-value")
        run(d, "partition", "0,1,2", "3,4,5")
        dt = wait_members(d, {i: 3 for i in range(N)})
        print("  partitioned: each side counts 3 after %.1f s" % dt)
        run(d, "heal")
        print("  healed: all count %d after %.1f s" % (N, wait_members(d, {i: N for i in range(N)})))
        assert cli("-s", "10.99.0.4:7000", "get", "ns-key") == (0, "ns-value")
    finally:
        subprocess.run([CLUSTER, "--dir", d, "stop-all"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(d, ignore_errors=True)
    left = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
    assert "dht-" not in left, "namespaces left behind: %s" % left


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
