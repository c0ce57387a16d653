#!/usr/bin/env python3
"""The ring page (GET / on --http-port) in a real browser: three nodes, the
page of node 0 loaded in headless Chromium, the DOM it builds from /status
checked: one SVG arc per live member and a table row per member with its
state. Then node 2 is killed and, once node 0 holds it dead, the reloaded
page shows two arcs and node 2 dead.

Needs Chromium (Debian packages chromium and chromium-driver, installed by
scripts/deps); without it the test fails and says so.

Run: DHT_BIN=build PYTHONPATH=tests/lib python3 tests/blackbox/test_cluster_page.py
Prints PASS/FAIL per test and a last line 'N passed, N failed'; exits 1 on failure.
"""
import html.parser
import json
import os
import shutil
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import dht  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("no headless browser found (%s): install the Debian packages chromium "
                         "and chromium-driver (scripts/deps does)" % ", ".join(BROWSERS))


class Page(html.parser.HTMLParser):
    """What the page drew: arcs [(addr, state)] from the SVG paths of class
    'arc STATE', rows [(addr, state)] from the member table, the summary."""

    def __init__(self, dom):
        super().__init__()
        self.arcs, self.rows, self.summary = [], [], ""
        self._in_summary = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "path" and "arc" in classes:
            self.arcs.append((a.get("data-addr"), [c for c in classes if c != "arc"][0]))
        elif tag == "tr" and "data-addr" in a:
            self.rows.append((a["data-addr"], a.get("data-state")))
        self._in_summary = a.get("id") == "summary"

    def handle_data(self, data):
        if self._in_summary:
            self.summary += data


def load(url, profile):
    """The DOM of url after its scripts ran, as headless Chromium dumps it."""
    cmd = [browser(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
           "--user-data-dir=" + profile, "--virtual-time-budget=5000", "--dump-dom", url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "</html>" in p.stdout, \
        "chromium exit %d:\n%s" % (p.returncode, p.stderr[-2000:])
    return Page(p.stdout)


def status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=5) as r:
        return json.load(r)


def test_ring_page_shows_members_and_a_death():
    browser()  # fail before starting anything when there is none
    http = dht.free_tcp_ports(3)
    c = dht.Cluster(3, extra_args=lambda i: ["--http-port", http[i]])
    try:
        c.start()
        c.wait_ready(timeout=15)
        c.wait_counts(3, timeout=15)
        addrs = ["127.0.0.1:%d" % c.port(i) for i in range(3)]
        url = "http://127.0.0.1:%d/" % http[0]
        profile = os.path.join(c.dir, "chromium")

        page = load(url, profile)
        assert sorted(page.arcs) == [(a, "alive") for a in addrs], \
            "arcs %s, expected one alive arc per node" % page.arcs
        assert sorted(page.rows) == [(a, "alive") for a in addrs], page.rows
        assert page.summary.startswith("3 members: 3 alive, 0 suspect, 0 dead"), page.summary

        c.kill(2)
        dht.wait_until(lambda: {m["addr"]: m["state"] for m in status(http[0])["members"]}
                       [addrs[2]] == "dead", 10, interval=0.1, what="node 2 dead at node 0")
        page = load(url, profile)
        assert sorted(page.arcs) == [(a, "alive") for a in addrs[:2]], \
            "arcs %s, expected the two live nodes" % page.arcs
        assert sorted(page.rows) == [(addrs[0], "alive"), (addrs[1], "alive"), (addrs[2], "dead")], \
            page.rows
        assert page.summary.startswith("3 members: 2 alive, 0 suspect, 1 dead"), page.summary
    except BaseException:
        for i in range(3):
            print("    --- node %d log (tail) ---\n    %s" % (i, c.log_tail(i).replace("\n", "\n    ")))
        raise
    finally:
        c.cleanup()


if __name__ == "__main__":
    sys.exit(dht.run_tests(globals()))
