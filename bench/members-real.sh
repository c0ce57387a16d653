#!/bin/sh
''''exec python3 "$0" "$@" # '''
# (the line above is for sh: it runs this file with python3)
__doc__ = """members-real: membership (SWIM + Lifeguard) measured on real dht-server
processes on loopback (127.0.0.1 only), and the same tests against HashiCorp
serf. Figures, not pass/fail. Python 3 standard library only.

  part 1 (idle):   N nodes (40) with default options and logs on: formation
                   time; CPU of the idle nodes and their gossip traffic (UDP
                   datagrams and bytes on lo over 10 s, less a baseline taken
                   before the nodes start, divided by N); then `stress-ng
                   --cpu 4 --timeout 120s` and every suspect / dead verdict
                   any node logs about a member during it (none has failed,
                   so every one is false; goal: 0 dead)
  part 2 (detect): SIGKILL one node of N, time until each survivor logs it
                   dead (median and worst survivor, --rounds rounds); restart
                   it, time until every survivor logs it alive
  part 3 (scale):  --scale-n nodes (200, --vnodes 64): formation time, memory,
                   idle CPU and traffic, then SIGKILL one: time until every
                   survivor logs it dead
  part 4 (serf):   --serf-n serf agents (40, default lan profile): formation,
                   idle CPU and traffic, SIGKILL one (--rounds rounds): time
                   until each survivor logs EventMemberFailed; then the same
                   stress-ng run, counting memberlist suspicions and failures

Times come from the nodes' own log lines (dht-server stamps each with the
wall clock in ms; serf's lines are stamped by this script as they arrive),
compared with the wall clock at the SIGKILL.

Usage: bench/members-real.sh [--parts 1,2,3,4] [-n 40] [--rounds 3]
           [--stress-seconds 120] [--stress-cpus 4] [--scale-n 200]
           [--serf-n 40] [--serf-profile lan] [--scale-stress] [--json FILE]
           [--keep-logs] [--server-arg=ARG ...]
e.g. bench/members-real.sh --parts 3 --scale-n 500     (more nodes)
     bench/members-real.sh --parts 1 --stress-seconds 0
         --server-arg=--sync-ms --server-arg=3600000   (membership traffic alone)
Parts 1 and 2 share one cluster. Takes about 6 minutes with everything on
2 cores. Needs: scripts/build (uses a copy of build/dht-server taken at the
start, so a rebuild meanwhile changes nothing); stress-ng for the stress
tests (apt-get install -y stress-ng; skipped if absent); serf for part 4
(apt-get install -y serf; skipped if absent).
"""
import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import dht  # noqa: E402

HOST = "127.0.0.1"          # everything binds here and only here
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
VERDICT = re.compile(r"^(\d+)\.(\d{3}) \[(\d+)\] member ([\d.]+):(\d+) is (suspect|dead|alive) "
                     r"\((\d+)\.(\d+)\)")
RESULTS = {}
_own_procs = []             # (Popen, kill the process group too) started here, for cleanup


def say(msg=""):
    print(msg, flush=True)


def utc():
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


# ---------------------------------------------------------------- processes we start

def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def spawn(cmd, group=False, **kw):
    """Starts cmd; it gets SIGKILL if this script dies. group: in a session
    of its own, so that cleanup can kill its children too (stress-ng)."""
    if group:
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
    else:
        p = subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)
    _own_procs.append((p, group))
    return p


def kill_own():
    for p, group in _own_procs:
        if p.poll() is None:
            try:
                if group:
                    os.killpg(p.pid, signal.SIGKILL)   # its own group: pgid == its pid
                else:
                    p.kill()
            except (ProcessLookupError, PermissionError):
                pass
    for p, _ in _own_procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
    del _own_procs[:]


def cleanup_all():
    kill_own()
    dht._cleanup_all()


def _on_signal(signum, frame):
    cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


# ---------------------------------------------------------------- measures

def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])      # utime, stime
        except OSError:
            pass
    return total / TICKS


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def net_counters():
    """(UDP datagrams sent, lo packets sent, lo bytes sent), machine-wide."""
    udp_out = 0
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    if len(rows) >= 2:
        udp_out = int(rows[1][rows[0].index("OutDatagrams")])
    lo_pk = lo_by = 0
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                v = rest.split()
                lo_by, lo_pk = int(v[8]), int(v[9])
    return udp_out, lo_pk, lo_by


def rates(seconds):
    """Per-second machine-wide (UDP datagrams, lo packets, lo bytes) over seconds."""
    a, t0 = net_counters(), time.monotonic()
    time.sleep(seconds)
    b, dt = net_counters(), time.monotonic() - t0
    return [(y - x) / dt for x, y in zip(a, b)]


def idle_figures(label, pids, n, baseline, seconds=10.0):
    """CPU (share of one core) and traffic of n processes over seconds."""
    c0, t0, nc0 = cpu_seconds(pids), time.monotonic(), net_counters()
    time.sleep(seconds)
    c1, dt, nc1 = cpu_seconds(pids), time.monotonic() - t0, net_counters()
    cpu = (c1 - c0) / dt
    r = [max(0.0, (y - x) / dt - b) for x, y, b in zip(nc0, nc1, baseline)]
    out = {"nodes": n, "seconds": round(dt, 1), "cpu_pct_all": round(cpu * 100, 2),
           "cpu_pct_node": round(cpu * 100 / n, 3),
           "udp_datagrams_per_s_node": round(r[0] / n, 1),
           "lo_bytes_per_s_node": round(r[2] / n), "lo_bytes_per_packet": round(r[2] / r[1]) if r[1] else 0,
           "rss_mib_all": round(rss_bytes(pids) / 2**20, 1)}
    say("  %s idle, %d processes, %.0f s: CPU %.1f%% of one core in all (%.3f%% each); "
        "%.1f UDP datagrams/s and %.0f bytes/s on lo per node (baseline removed; %d bytes a packet "
        "on lo, headers included); RSS %.0f MiB in all"
        % (label, n, dt, out["cpu_pct_all"], out["cpu_pct_node"], out["udp_datagrams_per_s_node"],
           out["lo_bytes_per_s_node"], out["lo_bytes_per_packet"], out["rss_mib_all"]))
    return out


def stress_ng_cmd(a):
    if a.stress_seconds <= 0 or not shutil.which("stress-ng"):
        return None
    return ["stress-ng", "--cpu", str(a.stress_cpus), "--timeout", "%ds" % a.stress_seconds]


def run_stress(a):
    """Runs stress-ng to its end; (wall start, wall end)."""
    cmd = stress_ng_cmd(a)
    say("  running: %s" % " ".join(cmd))
    t0 = time.time()
    p = spawn(cmd, group=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(a.stress_seconds + 30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    return t0, time.time()


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


# ---------------------------------------------------------------- dht-server clusters

class Verdicts:
    """Reads the member state lines the nodes of a dht.Cluster log, as they
    come: [(wall time, observer port, subject port, state, incarnation, hb, line)]."""

    def __init__(self, c):
        self.c = c
        self.files = [None] * c.n     # kept open: polling 200 logs must stay cheap
        self.rest = [b""] * c.n
        self.events = []

    def start_wall(self):
        """Wall time of node 0's first log line (it starts first)."""
        with open(self.c.log_path(0), "rb") as f:
            for raw in f:
                m = re.match(rb"^(\d+)\.(\d{3}) ", raw)
                if m:
                    return int(m.group(1)) + int(m.group(2)) / 1000.0
        return 0.0

    def close(self):
        for f in self.files:
            if f:
                f.close()

    def poll(self):
        for i in range(self.c.n):
            if self.files[i] is None:
                try:
                    self.files[i] = open(self.c.log_path(i), "rb")
                except OSError:
                    continue
            data = self.files[i].read()
            if not data:
                continue
            data = self.rest[i] + data
            lines = data.split(b"\n")
            self.rest[i] = lines.pop()
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                m = VERDICT.match(line)
                if m:
                    self.events.append((int(m.group(1)) + int(m.group(2)) / 1000.0, int(m.group(3)),
                                        int(m.group(5)), m.group(6), int(m.group(7)),
                                        int(m.group(8)), line))
        return self.events

    def between(self, t0, t1=None, states=("suspect", "dead")):
        self.poll()
        return [e for e in self.events if e[0] >= t0 and (t1 is None or e[0] <= t1) and e[3] in states]


def all_alive(c, cl):
    """True if every node of c lists all c.n members, each alive."""
    for i in range(c.n):
        try:
            r = cl.request(dht.GET_MEMBERSHIP_LIST, addr=c.addr(i), timeout=0.2, retries=3)
        except dht.Timeout:
            return False
        st = [x[2] for x in dht.parse_member_list(r.value)]
        if len(st) != c.n or any(x != "alive" for x in st):
            return False
    return True


def start_cluster(n, extra):
    """Starts n nodes; formation figures. Every node's peers file lists all,
    so each counts all n members at once: "settled" is when every node lists
    every member alive (the suspicions of nodes probed before they were up
    have been refuted)."""
    c = dht.Cluster(n, extra_args=["--bind", HOST] + list(extra), keep_dir=True)
    say("  %d dht-server nodes on %s:%d-%d, logs in %s" % (n, HOST, c.base, c.base + n - 1, c.dir))
    t0 = time.monotonic()
    c.start()
    launched = time.monotonic() - t0
    c.wait_ready(timeout=60 + n / 5)
    ready = time.monotonic() - t0
    formed = ready + c.wait_counts(n, 60 + n / 2)
    # settled: every node lists every member alive, and no node has logged a
    # suspect or dead line for QUIET s (a probe sent before its target was up
    # times out after 3 periods, so "all alive" alone can come too early)
    QUIET = 3.0
    v = Verdicts(c)
    settled = None
    wall0 = time.time() - (time.monotonic() - t0)
    with dht.Client((HOST, c.base), timeout=0.2, retries=3, bind=(HOST, 0)) as cl:
        end = time.monotonic() + 60 + n / 2
        first_ok = None       # when the current run of "all alive" sweeps began
        while time.monotonic() < end:
            t_sweep = time.monotonic() - t0
            if all_alive(c, cl):
                first_ok = t_sweep if first_ok is None else first_ok
                ev = v.between(0, states=("suspect", "dead", "alive"))
                last = max([e[0] - wall0 for e in ev] or [0.0])   # the last change, refutations too
                if time.monotonic() - t0 - last >= QUIET:
                    settled = max(first_ok if last < first_ok else last, formed)
                    break
            else:
                first_ok = None
            time.sleep(0.2)
    v.close()
    say("  launched in %.2f s; all answer IS_ALIVE %.2f s, all report %d members %.2f s, all list "
        "every member alive with no verdict since %s s after the first launch"
        % (launched, ready, n, formed, "%.2f" % settled if settled else "(not within %d)" % (60 + n / 2)))
    return c, {"nodes": n, "launch_s": round(launched, 2), "ready_s": round(ready, 2),
               "counts_s": round(formed, 2), "formed_s": round(settled, 2) if settled else None,
               "formed_after_last_launch_s": round(settled - launched, 2) if settled else None,
               "settled_wall": wall0 + (settled if settled else time.monotonic() - t0)}


def formation_verdicts(v, t_settled):
    """Suspect/dead lines logged before the cluster settled: nodes probed
    before they were up, or while 2 cores were starting them all."""
    ev = v.between(0, t_settled)
    out = {"suspect": sum(1 for e in ev if e[3] == "suspect"),
           "dead": sum(1 for e in ev if e[3] == "dead")}
    if ev:
        out["last_s_after_first_start"] = round(max(e[0] for e in ev) - v.start_wall(), 2)
    say("  while forming: %d suspect and %d dead lines (the last %s s after the first node started)"
        % (out["suspect"], out["dead"], out.get("last_s_after_first_start", "-")))
    return out


def wait_logged(v, observers, subject, state, since, timeout):
    """{observer port: seconds from since to its first `state` line about
    subject}, once every observer has one or after timeout."""
    seen = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for e in v.between(since, states=(state,)):
            if e[2] == subject and e[1] in observers and e[1] not in seen:
                seen[e[1]] = e[0] - since
        if len(seen) == len(observers):
            break
        time.sleep(0.05)
    return seen


def report_false(label, events, limit=20):
    """Prints and returns counts of suspect/dead verdicts (all false)."""
    sus = [e for e in events if e[3] == "suspect"]
    dead = [e for e in events if e[3] == "dead"]
    say("  %s: %d suspect and %d dead verdicts about live members (%d distinct accused, "
        "%d distinct accusers)" % (label, len(sus), len(dead), len(set(e[2] for e in events)),
                                   len(set(e[1] for e in events))))
    for e in dead[:limit]:
        say("    DEAD: " + e[6])
    for e in sus[:min(limit, 5)]:
        say("    suspect: " + e[6])
    return {"suspect": len(sus), "dead": len(dead),
            "dead_lines": [e[6] for e in dead[:limit]], "suspect_lines": [e[6] for e in sus[:5]]}


def detect_rounds(c, v, rounds, restart=True, settle=3.0):
    n = c.n
    out = []
    for r in range(rounds):
        victim = 1 + (r * 13) % (n - 1)
        vport = c.port(victim)
        obs = set(c.port(i) for i in range(n) if i != victim)
        v.poll()
        t_kill = time.time()
        c.kill(victim)
        seen = wait_logged(v, obs, vport, "dead", t_kill, 30 + n / 10)
        ts = sorted(seen.values())
        rec = {"round": r + 1, "victim": "%s:%d" % (HOST, vport), "survivors": len(obs),
               "saw_dead": len(ts)}
        if ts:
            rec.update(dead_median_s=round(median(ts), 3), dead_worst_s=round(ts[-1], 3),
                       dead_first_s=round(ts[0], 3))
        sus = {}
        for e in v.between(t_kill, states=("suspect",)):
            if e[2] == vport and e[1] not in sus:
                sus[e[1]] = e[0] - t_kill
        if sus:
            rec["suspect_first_s"] = round(min(sus.values()), 3)
        say("  round %d: %s SIGKILLed; dead at %d of %d survivors; median %.2f s, worst %.2f s, "
            "first %.2f s (first suspicion %.2f s)"
            % (r + 1, rec["victim"], len(ts), len(obs), rec.get("dead_median_s", -1),
               rec.get("dead_worst_s", -1), rec.get("dead_first_s", -1), rec.get("suspect_first_s", -1)))
        if len(ts) < len(obs):
            missing = sorted(obs - set(seen))
            say("    survivors that never logged it dead: %s" % missing[:20])
        if restart:
            v.poll()
            t_start = time.time()
            c.start(victim)
            back = wait_logged(v, obs, vport, "alive", t_start, 30 + n / 10)
            bt = sorted(back.values())
            try:
                c.wait_counts(n, 30, nodes=[victim])
                cnt = time.time() - t_start
            except TimeoutError:
                cnt = None
            rec.update(alive_at=len(bt), alive_median_s=round(median(bt), 3) if bt else None,
                       alive_worst_s=round(bt[-1], 3) if bt else None,
                       restarted_counts_all_s=round(cnt, 3) if cnt is not None else None)
            say("    restarted: logged alive by %d of %d survivors, median %.2f s, last %.2f s; "
                "the restarted node reports %d members after %s s"
                % (len(bt), len(obs), median(bt) if bt else -1, bt[-1] if bt else -1, n,
                   "%.2f" % cnt if cnt is not None else "(not within 30)"))
        # verdicts about anyone else during the round are false
        time.sleep(settle)
        others = [e for e in v.between(t_kill) if e[2] != vport]
        rec["false_suspect"] = sum(1 for e in others if e[3] == "suspect")
        rec["false_dead"] = sum(1 for e in others if e[3] == "dead")
        for e in others:
            if e[3] == "dead":
                say("    FALSE DEAD: " + e[6])
        if others:
            say("    verdicts about other (live) members during the round: %d suspect, %d dead"
                % (rec["false_suspect"], rec["false_dead"]))
        out.append(rec)
    full = [x for x in out if x["saw_dead"] == x["survivors"]]
    summ = {"rounds": out}
    if full:
        summ["dead_median_of_medians_s"] = round(median([x["dead_median_s"] for x in full]), 3)
        summ["dead_worst_s"] = max(x["dead_worst_s"] for x in full)
    if restart:
        al = [x["alive_worst_s"] for x in out if x.get("alive_worst_s") is not None]
        if al:
            summ["alive_worst_s"] = max(al)
            summ["alive_median_of_worst_s"] = round(median(al), 3)
    return summ


def part_idle_detect(a, baseline, parts):
    n = a.n
    say("\n== parts %s: %d dht-server nodes, %s, logs on (%s)"
        % ("+".join(str(p) for p in sorted(parts & {1, 2})), n,
           " ".join(a.server_arg) or "default options", utc()))
    c, form = start_cluster(n, a.server_arg)
    v = Verdicts(c)
    t_formed = form["settled_wall"]
    time.sleep(5)
    if 1 in parts:
        res = {"date": utc(), "formation": form}
        res["formation_verdicts"] = formation_verdicts(v, t_formed)
        res["idle"] = idle_figures("dht", [c.pid(i) for i in range(n)], n, baseline)
        res["settled_verdicts"] = report_false("from settled to the stress (%.0f s)"
                                               % (time.time() - t_formed), v.between(t_formed))
        if stress_ng_cmd(a):
            v.poll()
            pids = [c.pid(i) for i in range(n)]
            cpu0 = cpu_seconds(pids)
            s0, s1 = run_stress(a)
            cpu_stress = (cpu_seconds(pids) - cpu0) / (s1 - s0)
            time.sleep(5)      # a suspicion raised at the end has its time to become a verdict
            ev = v.between(s0, time.time())
            res["stress"] = {"cmd": " ".join(stress_ng_cmd(a)), "seconds": round(s1 - s0, 1),
                             "nodes_cpu_pct_all": round(cpu_stress * 100, 2)}
            res["stress"].update(report_false("during %.0f s of stress-ng --cpu %d and 5 s after"
                                              % (s1 - s0, a.stress_cpus), ev))
            res["stress"]["alive_lines"] = len([e for e in v.between(s0, time.time(), ("alive",))])
            counts = c.counts()
            res["stress"]["counts_after"] = sorted(set(counts.values()), key=str)
            say("  nodes' CPU during the stress: %.1f%% of one core in all; 'is alive' lines "
                "(refuted suspicions): %d; membership counts after: %s"
                % (cpu_stress * 100, res["stress"]["alive_lines"], res["stress"]["counts_after"]))
        else:
            why = "--stress-seconds 0" if a.stress_seconds <= 0 else \
                "stress-ng not installed (apt-get install -y stress-ng)"
            say("  stress test skipped: " + why)
            res["stress"] = "skipped: " + why
        RESULTS["part1_idle_stress"] = res
    if 2 in parts:
        say("  -- detection, %d rounds" % a.rounds)
        res = {"date": utc(), "nodes": n}
        res.update(detect_rounds(c, v, a.rounds))
        RESULTS["part2_detect"] = res
    finish_cluster(c, a, v)


def finish_cluster(c, a, v=None):
    if v:
        v.close()
    c.stop_all()
    if a.keep_logs:
        say("  logs kept in %s" % c.dir)
    else:
        c.keep_dir = False
        c.cleanup()


def part_scale(a, baseline):
    n = a.scale_n
    say("\n== part 3: %d dht-server nodes, %s, logs on (%s)"
        % (n, " ".join(["--vnodes", "64"] + a.server_arg), utc()))
    res = {"date": utc()}
    try:
        c, form = start_cluster(n, ["--vnodes", "64"] + a.server_arg)
    except (TimeoutError, RuntimeError) as e:
        say("  did not form: %s" % e)
        res["error"] = str(e)[:500]
        RESULTS["part3_scale"] = res
        dht._cleanup_all()
        return
    res["formation"] = form
    v = Verdicts(c)
    t_formed = form["settled_wall"]
    res["formation_verdicts"] = formation_verdicts(v, t_formed)
    time.sleep(5)
    res["idle"] = idle_figures("dht", [c.pid(i) for i in range(n)], n, baseline)
    ev = v.between(t_formed)
    res["settled_verdicts"] = report_false("from settled to the kill (%.0f s)" % (time.time() - t_formed), ev)
    if a.scale_stress and stress_ng_cmd(a):
        s0, s1 = run_stress(a)
        time.sleep(5)
        res["stress"] = {"cmd": " ".join(stress_ng_cmd(a)), "seconds": round(s1 - s0, 1)}
        res["stress"].update(report_false("during %.0f s of stress-ng --cpu %d and 5 s after"
                                          % (s1 - s0, a.stress_cpus), v.between(s0, time.time())))
        res["stress"]["counts_after"] = sorted(set(c.counts().values()), key=str)
        say("  membership counts after: %s" % res["stress"]["counts_after"])
    res.update(detect_rounds(c, v, a.scale_rounds, restart=True))
    RESULTS["part3_scale"] = res
    finish_cluster(c, a, v)


# ---------------------------------------------------------------- serf

SERF_LINE = re.compile(r"(EventMemberFailed|EventMemberJoin|EventMemberLeave): (\S+)|"
                       r"memberlist: (Suspect) (\S+) has failed|"
                       r"memberlist: Marking (\S+) as (failed)|"
                       r"memberlist: (Refuting) a (suspect|dead) message")


class SerfCluster:
    def __init__(self, n, workdir, profile):
        self.n = n
        self.dir = workdir
        self.profile = profile
        self.base = free_udp_tcp_range(n)
        self.rpc = free_udp_tcp_range(n, avoid=range(self.base, self.base + n))
        self.procs = [None] * n
        self.lines = []          # (wall time, agent i, line)
        self.lock = threading.Lock()

    def name(self, i):
        return "s%d" % i

    def start(self, i):
        cmd = ["serf", "agent", "-node=" + self.name(i), "-bind=%s:%d" % (HOST, self.base + i),
               "-advertise=%s:%d" % (HOST, self.base + i), "-rpc-addr=%s:%d" % (HOST, self.rpc + i),
               "-log-level=info", "-profile=" + self.profile]
        if i:
            cmd += ["-retry-join=%s:%d" % (HOST, self.base), "-retry-interval=1s"]
        p = spawn(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs[i] = p
        log = open(os.path.join(self.dir, "serf%d.log" % i), "a")
        t = threading.Thread(target=self._reader, args=(i, p, log), daemon=True)
        t.start()

    def _reader(self, i, p, log):
        for raw in p.stdout:
            now = time.time()
            line = raw.decode("utf-8", "replace").rstrip()
            log.write("%.3f %s\n" % (now, line))
            if SERF_LINE.search(line):
                with self.lock:
                    self.lines.append((now, i, line))
        log.close()

    def events(self, t0, t1=None):
        """[(time, observer i, kind, subject name, line)] with kind one of
        failed (EventMemberFailed), join, suspect, marked, refute."""
        out = []
        with self.lock:
            lines = list(self.lines)
        for t, i, line in lines:
            if t < t0 or (t1 is not None and t > t1):
                continue
            m = SERF_LINE.search(line)
            if m.group(1):
                kind = {"EventMemberFailed": "failed", "EventMemberJoin": "join",
                        "EventMemberLeave": "leave"}[m.group(1)]
                out.append((t, i, kind, m.group(2), line))
            elif m.group(3):
                out.append((t, i, "suspect", m.group(4), line))
            elif m.group(5):
                out.append((t, i, "marked", m.group(5), line))
            else:
                out.append((t, i, "refute", m.group(8), line))
        return out

    def members_alive(self, i):
        """Alive members as agent i lists them (serf members), or None."""
        try:
            r = subprocess.run(["serf", "members", "-rpc-addr=%s:%d" % (HOST, self.rpc + i),
                                "-status=alive"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        return len([l for l in r.stdout.splitlines() if l.strip()])

    def kill(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            p.kill()
            p.wait(5)

    def stop_all(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
        for p in self.procs:
            if p:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


def free_udp_tcp_range(n, avoid=(), tries=200):
    """A base port with base..base+n-1 free for UDP and TCP on HOST."""
    import random
    lo, hi = dht._fixed_port_range()
    rnd = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(tries):
        base = rnd.randrange(lo, hi - n)
        if any(p in avoid for p in range(base, base + n)):
            continue
        ok = True
        for p in range(base, base + n):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind((HOST, p))
                except OSError:
                    ok = False
                finally:
                    s.close()
            if not ok:
                break
        if ok:
            return base
    raise RuntimeError("no %d free consecutive ports on %s" % (n, HOST))


def part_serf(a, baseline):
    n = a.serf_n
    say("\n== part 4: %d serf agents, profile %s (%s)" % (n, a.serf_profile, utc()))
    if not shutil.which("serf"):
        say("  serf is not installed: part 4 skipped (Debian: apt-get install -y serf)")
        RESULTS["part4_serf"] = "skipped: serf not installed"
        return
    ver = subprocess.run(["serf", "version"], stdout=subprocess.PIPE, text=True).stdout.split("\n")[0]
    res = {"date": utc(), "version": ver, "profile": a.serf_profile, "nodes": n}
    d = tempfile.mkdtemp(prefix="serf-real-")
    s = SerfCluster(n, d, a.serf_profile)
    say("  %s; agents on %s:%d-%d (rpc %d-%d), logs in %s"
        % (ver, HOST, s.base, s.base + n - 1, s.rpc, s.rpc + n - 1, d))
    t0 = time.monotonic()
    s.start(0)
    time.sleep(0.5)
    for i in range(1, n):
        s.start(i)
    launched = time.monotonic() - t0
    # formed: every agent logged a join for every member (itself included)
    formed = None
    end = time.monotonic() + 60 + n
    while time.monotonic() < end:
        joins = {}
        for e in s.events(0):
            if e[2] == "join":
                joins.setdefault(e[1], set()).add(e[3])
        if len(joins) == n and all(len(v) >= n for v in joins.values()):
            formed = time.monotonic() - t0
            break
        time.sleep(0.1)
    if formed is None:
        say("  did not form within %d s" % (60 + n))
    else:
        say("  launched in %.2f s; every agent logged all %d joins %.2f s after the first launch"
            % (launched, n, formed))
    res["formation"] = {"launch_s": round(launched, 2), "formed_s": round(formed, 2) if formed else None}
    t_formed = time.time()
    time.sleep(5)
    res["idle"] = idle_figures("serf", [p.pid for p in s.procs], n, baseline)
    ev = [e for e in s.events(t_formed) if e[2] != "join"]
    if ev:
        say("  after forming: %d suspicion/failure lines" % len(ev))

    say("  -- detection, %d rounds" % a.rounds)
    rounds = []
    for r in range(a.rounds):
        victim = 1 + (r * 13) % (n - 1)
        vname = s.name(victim)
        obs = set(i for i in range(n) if i != victim and s.procs[i].poll() is None)
        t_kill = time.time()
        s.kill(victim)
        seen, sus = {}, {}
        end = time.monotonic() + 90
        while time.monotonic() < end and len(seen) < len(obs):
            for e in s.events(t_kill):
                if e[3] == vname and e[1] in obs:
                    if e[2] == "failed" and e[1] not in seen:
                        seen[e[1]] = e[0] - t_kill
                    if e[2] == "suspect" and e[1] not in sus:
                        sus[e[1]] = e[0] - t_kill
            time.sleep(0.05)
        ts = sorted(seen.values())
        rec = {"round": r + 1, "victim": vname, "survivors": len(obs), "saw_failed": len(ts)}
        if ts:
            rec.update(failed_median_s=round(median(ts), 3), failed_worst_s=round(ts[-1], 3),
                       failed_first_s=round(ts[0], 3))
        if sus:
            rec["suspect_first_s"] = round(min(sus.values()), 3)
        say("  round %d: %s SIGKILLed; EventMemberFailed at %d of %d survivors; median %.2f s, "
            "worst %.2f s, first %.2f s (first local suspicion %.2f s)"
            % (r + 1, vname, len(ts), len(obs), rec.get("failed_median_s", -1),
               rec.get("failed_worst_s", -1), rec.get("failed_first_s", -1), rec.get("suspect_first_s", -1)))
        # restart it: time until every survivor logs it joined again
        t_start = time.time()
        s.start(victim)
        back = {}
        end = time.monotonic() + 60
        while time.monotonic() < end and len(back) < len(obs):
            for e in s.events(t_start):
                if e[3] == vname and e[1] in obs and e[2] == "join" and e[1] not in back:
                    back[e[1]] = e[0] - t_start
            time.sleep(0.05)
        bt = sorted(back.values())
        rec.update(join_at=len(bt), join_worst_s=round(bt[-1], 3) if bt else None)
        say("    restarted: EventMemberJoin at %d of %d survivors, median %.2f s, last %.2f s"
            % (len(bt), len(obs), median(bt) if bt else -1, bt[-1] if bt else -1))
        time.sleep(2)
        others = [e for e in s.events(t_kill) if e[3] != vname and e[2] in ("suspect", "failed")]
        if others:
            say("    suspicions/failures of other agents during the round: %d" % len(others))
            for e in others[:5]:
                say("      " + e[4])
        rounds.append(rec)
    res["rounds"] = rounds
    full = [x for x in rounds if x["saw_failed"] == x["survivors"]]
    if full:
        res["failed_median_of_medians_s"] = round(median([x["failed_median_s"] for x in full]), 3)
        res["failed_worst_s"] = max(x["failed_worst_s"] for x in full)

    if stress_ng_cmd(a):
        live = [i for i in range(n) if s.procs[i].poll() is None]
        dead_names = set(s.name(i) for i in range(n) if i not in live)
        pids = [s.procs[i].pid for i in live]
        cpu0 = cpu_seconds(pids)
        s0, s1 = run_stress(a)
        cpu_stress = (cpu_seconds(pids) - cpu0) / (s1 - s0)
        time.sleep(5)
        ev = [e for e in s.events(s0, time.time()) if e[3] not in dead_names]
        sus = [e for e in ev if e[2] == "suspect"]
        failed = [e for e in ev if e[2] == "failed"]
        refute = [e for e in ev if e[2] == "refute"]
        st = {"seconds": round(s1 - s0, 1), "live_agents": len(live), "suspect": len(sus),
              "failed": len(failed), "refute": len(refute),
              "agents_cpu_pct_all": round(cpu_stress * 100, 2),
              "failed_lines": ["%.3f s%d %s" % (e[0], e[1], e[4]) for e in failed[:20]]}
        say("  during %.0f s of stress-ng --cpu %d and 5 s after (%d live agents): %d local suspicions "
            "(memberlist 'Suspect X has failed'), %d EventMemberFailed about live agents, %d refutations; "
            "agents' CPU %.1f%% of one core in all"
            % (s1 - s0, a.stress_cpus, len(live), len(sus), len(failed), len(refute), cpu_stress * 100))
        for e in failed[:20]:
            say("    FAILED: s%d %s" % (e[1], e[4]))
        for e in sus[:5]:
            say("    suspect: s%d %s" % (e[1], e[4]))
        res["stress"] = st
    else:
        say("  stress test skipped: %s" % ("--stress-seconds 0" if a.stress_seconds <= 0 else
                                           "stress-ng not installed (apt-get install -y stress-ng)"))
    s.stop_all()
    if a.keep_logs:
        say("  logs kept in %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)
    RESULTS["part4_serf"] = res


# ---------------------------------------------------------------- summary

def summary():
    say("\n================ summary (%s, %d cores, %s) ================"
        % (utc(), os.cpu_count(), RESULTS.get("build", "")))
    p1 = RESULTS.get("part1_idle_stress")
    if p1:
        f, i = p1["formation"], p1["idle"]
        fv, sv = p1["formation_verdicts"], p1["settled_verdicts"]
        say("dht %d nodes: all count %d at %.2f s, settled (all list everyone alive; last verdict or refutation) at %s s after the first "
            "launch (%d suspect, %d dead lines while forming); idle CPU %.1f%% of one core in all "
            "(%.3f%% a node); %.1f datagrams/s, %.0f B/s on lo per node; RSS %.0f MiB in all; "
            "settled and idle: %d suspect, %d dead"
            % (f["nodes"], f["nodes"], f["counts_s"], f["formed_s"], fv["suspect"], fv["dead"],
               i["cpu_pct_all"], i["cpu_pct_node"], i["udp_datagrams_per_s_node"],
               i["lo_bytes_per_s_node"], i["rss_mib_all"], sv["suspect"], sv["dead"]))
        st = p1["stress"]
        if isinstance(st, dict):
            say("dht %d nodes under %s: %d suspect, %d dead verdicts about live members "
                "(%d 'is alive' lines); counts after: %s"
                % (f["nodes"], st["cmd"], st["suspect"], st["dead"], st["alive_lines"], st["counts_after"]))
        else:
            say("dht stress: " + st)
    p2 = RESULTS.get("part2_detect")
    if p2:
        say("dht %d nodes, SIGKILL -> dead at every survivor: median survivor %s s (per round: %s), "
            "worst %s s; restarted -> alive at every survivor: worst %s s (per round: %s); "
            "false verdicts during rounds: %d suspect, %d dead"
            % (p2["nodes"], p2.get("dead_median_of_medians_s"),
               ", ".join(str(x.get("dead_median_s")) for x in p2["rounds"]), p2.get("dead_worst_s"),
               p2.get("alive_worst_s"), ", ".join(str(x.get("alive_worst_s")) for x in p2["rounds"]),
               sum(x["false_suspect"] for x in p2["rounds"]), sum(x["false_dead"] for x in p2["rounds"])))
    p3 = RESULTS.get("part3_scale")
    if p3:
        if "error" in p3:
            say("dht scale: " + p3["error"][:200])
        else:
            f, i = p3["formation"], p3["idle"]
            fv = p3["formation_verdicts"]
            say("dht %d nodes (--vnodes 64): launched in %.1f s, settled (all list everyone alive; last verdict or refutation) %s s after "
                "the first launch (%s s after the last; %d suspect, %d dead lines while forming); idle CPU %.1f%% of one core in all (%.3f%% a node), "
                "%.1f datagrams/s, %.0f B/s per node, RSS %.0f MiB in all; SIGKILL -> dead at every "
                "survivor: median %s s, worst %s s; restarted -> alive at all: %s s; false verdicts: "
                "%d suspect, %d dead settled, %d suspect, %d dead during the rounds"
                % (f["nodes"], f["launch_s"], f["formed_s"], f["formed_after_last_launch_s"],
                   fv["suspect"], fv["dead"], i["cpu_pct_all"], i["cpu_pct_node"], i["udp_datagrams_per_s_node"],
                   i["lo_bytes_per_s_node"], i["rss_mib_all"], p3.get("dead_median_of_medians_s"),
                   p3.get("dead_worst_s"), p3.get("alive_worst_s"),
                   p3["settled_verdicts"]["suspect"], p3["settled_verdicts"]["dead"],
                   sum(x["false_suspect"] for x in p3["rounds"]), sum(x["false_dead"] for x in p3["rounds"])))
        if isinstance(p3.get("stress"), dict):
            st = p3["stress"]
            say("dht %d nodes under %s: %d suspect, %d dead verdicts about live members; counts after: %s"
                % (p3["formation"]["nodes"], st["cmd"], st["suspect"], st["dead"], st["counts_after"]))
    p4 = RESULTS.get("part4_serf")
    if p4:
        if isinstance(p4, str):
            say("serf: " + p4)
        else:
            i = p4["idle"]
            say("serf %s (%s profile), %d agents: formed %s s; idle CPU %.1f%% of one core in all "
                "(%.3f%% an agent), %.1f datagrams/s, %.0f B/s per agent, RSS %.0f MiB in all; "
                "SIGKILL -> EventMemberFailed at every survivor: median %s s (per round: %s), worst %s s; "
                "restarted -> EventMemberJoin at every survivor: %s s (per round)"
                % (p4["version"], p4["profile"], p4["nodes"], p4["formation"]["formed_s"],
                   i["cpu_pct_all"], i["cpu_pct_node"], i["udp_datagrams_per_s_node"],
                   i["lo_bytes_per_s_node"], i["rss_mib_all"], p4.get("failed_median_of_medians_s"),
                   ", ".join(str(x.get("failed_median_s")) for x in p4["rounds"]), p4.get("failed_worst_s"),
                   ", ".join(str(x.get("join_worst_s")) for x in p4["rounds"])))
            st = p4.get("stress")
            if st:
                say("serf under stress-ng (%d live agents): %d suspicions, %d failures of live agents, "
                    "%d refutations" % (st["live_agents"], st["suspect"], st["failed"], st["refute"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[3:]))
    ap.add_argument("--parts", default="1,2,3,4", help="comma list of parts to run (1,2,3,4)")
    ap.add_argument("-n", type=int, default=40, help="nodes in parts 1 and 2 (40)")
    ap.add_argument("--rounds", type=int, default=3, help="kill rounds in parts 2 and 4 (3)")
    ap.add_argument("--stress-seconds", type=int, default=120, help="stress-ng --timeout (120; 0: no stress test)")
    ap.add_argument("--stress-cpus", type=int, default=4, help="stress-ng --cpu (4)")
    ap.add_argument("--scale-n", type=int, default=200, help="nodes in part 3 (200)")
    ap.add_argument("--scale-rounds", type=int, default=1, help="kill rounds in part 3 (1)")
    ap.add_argument("--scale-stress", action="store_true",
                    help="part 3 also runs the stress-ng test before the kill (adds --stress-seconds)")
    ap.add_argument("--serf-n", type=int, default=40, help="serf agents in part 4 (40)")
    ap.add_argument("--serf-profile", default="lan", help="serf -profile: lan (default), wan, local")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--keep-logs", action="store_true", help="keep node logs (their dirs are printed)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra dht-server argument for parts 1-3, repeatable; e.g. --server-arg=--sync-ms "
                         "--server-arg=3600000 leaves only membership traffic in the idle figures")
    a = ap.parse_args()
    try:
        parts = set(int(x) for x in a.parts.split(",") if x.strip())
    except ValueError:
        ap.error("--parts takes numbers 1-4")
    if not parts <= {1, 2, 3, 4}:
        ap.error("--parts takes numbers 1-4")
    if a.n < 3 or a.scale_n < 3 or a.serf_n < 3:
        ap.error("clusters need at least 3 nodes")

    atexit.register(cleanup_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    # a private copy of the server: a rebuild of build/ meanwhile changes nothing
    src = dht.server_binary()
    bindir = tempfile.mkdtemp(prefix="members-real-bin-")
    shutil.copy2(src, os.path.join(bindir, "dht-server"))
    os.environ["DHT_BIN"] = bindir
    atexit.register(shutil.rmtree, bindir, True)
    try:
        head = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h"], stdout=subprocess.PIPE,
                              text=True).stdout.strip()
    except OSError:
        head = "?"
    RESULTS["build"] = "work tree at git %s; %s built %s" % (head, src, time.strftime(
        "%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(src))))
    say("members-real: parts %s, %s, %d cores, %s" % (",".join(map(str, sorted(parts))), utc(),
                                                      os.cpu_count(), RESULTS["build"]))
    if a.stress_seconds > 0 and not stress_ng_cmd(a) and parts & {1, 4}:
        say("note: stress-ng is not installed, stress tests will be skipped "
            "(install: apt-get install -y stress-ng)")
    lim = os.sysconf("SC_OPEN_MAX")
    if lim < 4 * max(a.scale_n, a.n, a.serf_n) + 64:
        try:
            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass

    baseline = rates(3.0)
    say("loopback baseline before any node starts: %.1f UDP datagrams/s, %.0f bytes/s on lo"
        % (baseline[0], baseline[2]))
    RESULTS["baseline"] = {"udp_datagrams_per_s": round(baseline[0], 1), "lo_bytes_per_s": round(baseline[2])}
    t_all = time.monotonic()
    if parts & {1, 2}:
        part_idle_detect(a, baseline, parts)
    if 3 in parts:
        part_scale(a, baseline)
    if 4 in parts:
        part_serf(a, baseline)
    RESULTS["total_s"] = round(time.monotonic() - t_all, 1)
    summary()
    say("total %.0f s" % RESULTS["total_s"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
        say("figures written to %s" % a.json)


if __name__ == "__main__":
    main()
