/* http: /metrics, /status and the ring page over HTTP/1.1 (see http.h). */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "members.h"
#include "repl.h"
#include "resp.h"
#include "shed.h"
#include "wire.h"

#define HEAD_TIMEOUT_MS 5000   /* to receive the whole request head */
#define WRITE_TIMEOUT_MS 10000 /* to send the response */
#define LINGER_MS 2000         /* after our FIN, waiting for the peer's */

typedef struct http_server http_server;

struct http_server {
    node *n;
    uv_tcp_t listener;
    conn_spare spare; /* closes the connections no memory is left for */
    size_t conns;  /* open or closing */
    size_t open;   /* open: on the list below */
    unsigned long long evicted; /* closed to make room (make_room) */
    struct conn *oldest, *newest; /* the open connections, in the order accepted */
    bool loopback; /* listening on a loopback address: Host must be local */
};

/* A growing text buffer; after a failed allocation it stays as it was and
 * oom is set. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

enum conn_state {
    CONN_HEAD,   /* reading the request head */
    CONN_WRITE,  /* writing the response; reads are drained */
    CONN_LINGER, /* response sent, FIN sent: draining until the peer's FIN */
    CONN_CLOSED, /* handles closing; freed when both are closed */
};

typedef struct conn {
    http_server *s;
    struct conn *older, *newer; /* on the server's list while open */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    enum conn_state state;
    int open_handles;
    bool peer_eof;          /* the peer sent FIN while we were writing */
    size_t hlen;
    char head[HTTP_MAX_HEAD]; /* the request head */
    char resp_head[256];    /* status line and headers of the response */
    const char *body;       /* static text, or dyn.p */
    size_t blen;
    sbuf dyn;
} conn;

static const char page[] =
    "<!DOCTYPE html>\n"
    "<html lang='en'>\n"
    "<head>\n"
    "<meta charset='utf-8'>\n"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    "<title>dht node</title>\n"
    "<style>\n"
    "body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }\n"
    "h1 { font-size: 1.3em; margin: 0 0 .3em; }\n"
    "#summary { color: #555; margin-bottom: 1em; }\n"
    "#error { color: #c0392b; min-height: 1.2em; }\n"
    ".panes { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }\n"
    ".arc { fill: none; stroke-width: 28; }\n"
    ".alive { stroke: #2a9d4b; color: #2a9d4b; }\n"
    ".suspect { stroke: #e0a100; color: #b88400; }\n"
    ".dead { stroke: #c0392b; color: #c0392b; }\n"
    ".unknown { stroke: #888; color: #888; }\n"
    "#ring text { text-anchor: middle; fill: #222; }\n"
    "table { border-collapse: collapse; }\n"
    "th, td { padding: .25em .8em; text-align: left; border-bottom: 1px solid #ddd; }\n"
    "td.share { text-align: right; font-variant-numeric: tabular-nums; }\n"
    ".dot { display: inline-block; width: .7em; height: .7em; border-radius: 50%;\n"
    "       background: currentColor; margin-right: .4em; }\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<h1>dht node <span id='self'></span></h1>\n"
    "<div id='summary'>loading&hellip;</div>\n"
    "<div id='error'></div>\n"
    "<div class='panes'>\n"
    "<svg id='ring' width='320' height='320' viewBox='0 0 320 320' role='img'\n"
    "     aria-label='ring'></svg>\n"
    "<table>\n"
    "<thead><tr><th>member</th><th>state</th><th>slots (primary)</th></tr></thead>\n"
    "<tbody id='members'></tbody>\n"
    "</table>\n"
    "</div>\n"
    "<script>\n"
    "'use strict';\n"
    "const SVG = 'http://www.w3.org/2000/svg', C = 160, R = 120, TAU = 2 * Math.PI;\n"
    "const STATES = ['alive', 'suspect', 'dead'];\n"
    "\n"
    "function make(ns, tag, attrs, text) {\n"
    "  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);\n"
    "  for (const k in attrs) e.setAttribute(k, attrs[k]);\n"
    "  if (text !== undefined) e.textContent = text;\n"
    "  return e;\n"
    "}\n"
    "\n"
    "function point(a) {\n"
    "  return (C + R * Math.sin(a)).toFixed(3) + ' ' + (C - R * Math.cos(a)).toFixed(3);\n"
    "}\n"
    "\n"
    "/* Clockwise arc from angle a0 to a1 (radians, 0 at the top). */\n"
    "function arc(a0, a1) {\n"
    "  const r = ' A' + R + ' ' + R + ' 0 ';\n"
    "  if (a1 - a0 >= TAU - 1e-9) /* a whole circle: two halves */\n"
    "    return 'M' + point(a0) + r + '0 1 ' + point(a0 + Math.PI) + r + '0 1 ' + point(a0);\n"
    "  return 'M' + point(a0) + r + (a1 - a0 > Math.PI ? 1 : 0) + ' 1 ' + point(a1);\n"
    "}\n"
    "\n"
    "function render(s) {\n"
    "  const count = {alive: 0, suspect: 0, dead: 0};\n"
    "  for (const m of s.members) if (m.state in count) count[m.state]++;\n"
    "  document.getElementById('self').textContent = s.self;\n"
    "  document.getElementById('summary').textContent =\n"
    "    s.members.length + (s.members.length === 1 ? ' member: ' : ' members: ') +\n"
    "    count.alive + ' alive, ' + count.suspect + ' suspect, ' +\n"
    "    count.dead + ' dead \\u00b7 store ' + s.store + ', ' + s.keys + ' keys, ' + s.bytes +\n"
    "    ' bytes \\u00b7 N=' + s.replicas + ' R=' + s.read_quorum + ' W=' + s.write_quorum +\n"
    "    ' \\u00b7 up ' + s.uptime_s + ' s';\n"
    "\n"
    "  const ring = document.getElementById('ring');\n"
    "  ring.replaceChildren();\n"
    "  const live = s.members.filter(m => m.state !== 'dead' && m.share > 0);\n"
    "  const gap = live.length > 1 ? 0.01 : 0;\n"
    "  let a = 0;\n"
    "  for (const m of live) {\n"
    "    const a1 = a + TAU * m.share, state = STATES.includes(m.state) ? m.state : 'unknown';\n"
    "    const p = make(SVG, 'path', {d: arc(a + gap / 2, Math.max(a + gap / 2, a1 - gap / 2)),\n"
    "                                 class: 'arc ' + state, 'data-addr': m.addr});\n"
    "    const pct = (100 * m.share).toFixed(2) + '%';\n"
    "    p.append(make(SVG, 'title', {}, m.addr + ' ' + state + ' ' + pct));\n"
    "    ring.append(p);\n"
    "    a = a1;\n"
    "  }\n"
    "  ring.append(make(SVG, 'text', {x: C, y: C - 4, 'font-size': 28}, String(live.length)));\n"
    "  ring.append(make(SVG, 'text', {x: C, y: C + 20}, 'on the ring'));\n"
    "\n"
    "  const rows = document.getElementById('members');\n"
    "  rows.replaceChildren();\n"
    "  for (const m of s.members) {\n"
    "    const state = STATES.includes(m.state) ? m.state : 'unknown';\n"
    "    const tr = make(null, 'tr', {'data-addr': m.addr, 'data-state': state});\n"
    "    const td = make(null, 'td', {class: 'state ' + state});\n"
    "    td.append(make(null, 'span', {class: 'dot'}), m.state);\n"
    "    tr.append(make(null, 'td', {class: 'addr'}, m.addr), td,\n"
    "              make(null, 'td', {class: 'share'}, (100 * m.share).toFixed(2) + '%'));\n"
    "    rows.append(tr);\n"
    "  }\n"
    "}\n"
    "\n"
    "async function refresh() {\n"
    "  const error = document.getElementById('error');\n"
    "  try {\n"
    "    const r = await fetch('/status', {cache: 'no-store'});\n"
    "    if (!r.ok) throw new Error('HTTP ' + r.status);\n"
    "    render(await r.json());\n"
    "    error.textContent = '';\n"
    "  } catch (e) {\n"
    "    error.textContent = 'cannot read /status: ' + e.message;\n"
    "  }\n"
    "}\n"
    "\n"
    "refresh();\n"
    "setInterval(refresh, 2000);\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

/* ---- text ------------------------------------------------------------- */

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...) {
    while (!b->oom) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int w = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (w < 0) break;
        if ((size_t)w < room) {
            b->len += (size_t)w;
            return;
        }
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap - b->len <= (size_t)w) ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) break;
        b->p = np;
        b->cap = ncap;
    }
    b->oom = true;
}

/* A JSON string literal of s. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') sb_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) sb_printf(b, "\\u%04x", ch);
        else sb_printf(b, "%c", ch);
    }
    sb_printf(b, "\"");
}

/* A Prometheus label value from a name: lower case, runs of anything but
 * letters and digits as '_' ("no such key" -> "no_such_key"). */
static void sb_label(sbuf *b, const char *name) {
    for (; *name; name++) {
        char ch = *name;
        if (ch >= 'A' && ch <= 'Z') sb_printf(b, "%c", ch - 'A' + 'a');
        else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) sb_printf(b, "%c", ch);
        else sb_printf(b, "_");
    }
}

/* Microseconds as exact decimal seconds. */
static void sb_seconds(sbuf *b, uint64_t us) {
    sb_printf(b, "%llu.%06llu", (unsigned long long)(us / 1000000),
              (unsigned long long)(us % 1000000));
}

/* ---- pages ------------------------------------------------------------ */

static void metric(sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram of node_hist_add's log2 buckets of microseconds. */
static void histogram(sbuf *b, const char *name, const char *help, const uint64_t h[32],
                      uint64_t sum_us) {
    unsigned long long cum = 0;
    metric(b, name, "histogram", help);
    for (size_t i = 0; i < 31; i++) {
        cum += h[i];
        sb_printf(b, "%s_bucket{le=\"", name);
        sb_seconds(b, ((uint64_t)2 << i) - 1);
        sb_printf(b, "\"} %llu\n", cum);
    }
    cum += h[31];
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name, cum, name);
    sb_seconds(b, sum_us);
    sb_printf(b, "\n%s_count %llu\n", name, cum);
}

static const uint32_t commands[] = {
    WIRE_PUT, WIRE_GET, WIRE_REMOVE, WIRE_SHUTDOWN, WIRE_WIPEOUT, WIRE_IS_ALIVE,
    WIRE_GET_PID, WIRE_GET_MEMBERSHIP_COUNT, WIRE_GET_MEMBERSHIP_LIST,
};

static void page_metrics(const http_server *s, sbuf *b) {
    const node *n = s->n;
    const node_stats *st = &n->stats;
    unsigned long long unknown = 0;
    const size_t ncmd = sizeof commands / sizeof commands[0];

    metric(b, "dht_requests_total", "counter", "Client requests decoded, by command.");
    for (size_t c = 0; c < 256; c++) {
        size_t k = 0;
        while (k < ncmd && commands[k] != c) k++;
        if (k == ncmd) unknown += st->requests[c];
    }
    for (size_t k = 0; k < ncmd; k++) {
        sb_printf(b, "dht_requests_total{command=\"");
        sb_label(b, wire_cmd_name(commands[k]));
        sb_printf(b, "\"} %llu\n", (unsigned long long)st->requests[commands[k]]);
    }
    sb_printf(b, "dht_requests_total{command=\"unknown\"} %llu\n", unknown);

    metric(b, "dht_replies_total", "counter", "Replies sent to clients, by error code.");
    for (uint32_t e = 0; e < sizeof st->errors / sizeof st->errors[0]; e++) {
        sb_printf(b, "dht_replies_total{code=\"");
        sb_label(b, wire_err_name(e));
        sb_printf(b, "\"} %llu\n", (unsigned long long)st->errors[e]);
    }

    metric(b, "dht_dropped_total", "counter", "Datagrams dropped, by reason.");
    const struct { const char *why; uint64_t n; } dropped[] = {
        {"checksum", st->dropped_checksum}, {"malformed", st->dropped_malformed},
        {"stale", st->dropped_stale},       {"unsealed", st->dropped_unsealed},
        {"clock", st->dropped_clock},       {"outsider", st->dropped_outsider},
        {"from_node", st->dropped_from_node},
        {"client_outsider", st->dropped_client},
        {"replay", st->dropped_replay},
    };
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        sb_printf(b, "dht_dropped_total{reason=\"%s\"} %llu\n", dropped[i].why,
                  (unsigned long long)dropped[i].n);
    metric(b, "dht_overload_total", "counter",
           "Client requests answered SYSTEM_OVERLOAD, by reason: too many operations in flight, "
           "the loop running late, live replicas too slow to answer in time, member lists "
           "asked for faster than a node answers them (GET_MEMBERSHIP_LIST).");
    static const char *why[] = {"inflight", "lag", "slow", "list"};
    for (size_t i = 0; i < 4; i++)
        sb_printf(b, "dht_overload_total{reason=\"%s\"} %llu\n", why[i],
                  (unsigned long long)st->overload[i]);
    metric(b, "dht_refused_minority_total", "counter",
           "Writes refused because this node saw most of the cluster die recently (a minority side).");
    sb_printf(b, "dht_refused_minority_total %llu\n", (unsigned long long)st->refused_minority);
    metric(b, "dht_refused_admin_total", "counter",
           "SHUTDOWN and WIPEOUT refused: the sender is outside --admin-from.");
    sb_printf(b, "dht_refused_admin_total %llu\n", (unsigned long long)st->refused_admin);

    metric(b, "dht_cache_hits_total", "counter",
           "Client requests answered or absorbed by the reply cache.");
    sb_printf(b, "dht_cache_hits_total %llu\n", (unsigned long long)st->cache_hits);
    metric(b, "dht_forwarded_total", "counter", "Client requests forwarded to a replica.");
    sb_printf(b, "dht_forwarded_total %llu\n", (unsigned long long)st->forwarded);
    metric(b, "dht_peer_messages_total", "counter", "Node-to-node messages received.");
    sb_printf(b, "dht_peer_messages_total %llu\n", (unsigned long long)st->peer_msgs);
    metric(b, "dht_repushed_records_total", "counter",
           "Records pushed to new replicas after membership changes (re-replication).");
    sb_printf(b, "dht_repushed_records_total %llu\n", (unsigned long long)st->repushed);
    metric(b, "dht_pushed_back_records_total", "counter",
           "Records sent back to a member that pushed an older copy of them here.");
    sb_printf(b, "dht_pushed_back_records_total %llu\n", (unsigned long long)st->pushed_back);
    metric(b, "dht_synced_records_total", "counter",
           "Records pushed to a replica whose digests differed from this node's (anti-entropy).");
    sb_printf(b, "dht_synced_records_total %llu\n", (unsigned long long)st->synced);
    metric(b, "dht_outlived_records_total", "counter",
           "Records of a past life dropped at restart: the cluster had collected tombstones "
           "past that life.");
    sb_printf(b, "dht_outlived_records_total %llu\n", (unsigned long long)st->outlived);
    metric(b, "dht_resends_total", "counter",
           "Replica requests sent again: no answer within the round-trip timeout.");
    sb_printf(b, "dht_resends_total %llu\n", (unsigned long long)st->resent);
    metric(b, "dht_restamps_total", "counter",
           "Writes stamped again because a replica held a newer stamp.");
    sb_printf(b, "dht_restamps_total %llu\n", (unsigned long long)st->restamped);
    metric(b, "dht_hints", "gauge",
           "Writes held for replicas that missed them (hinted handoff), not yet delivered.");
    sb_printf(b, "dht_hints %zu\n", repl_hints(n->repl));
    metric(b, "dht_handoff_sends_total", "counter",
           "Hinted writes sent to the replicas they were held for (again after a second).");
    sb_printf(b, "dht_handoff_sends_total %llu\n", (unsigned long long)st->handed_off);

    histogram(b, "dht_request_latency_seconds",
              "Time from a client request to its answer, for operations this node coordinated.",
              st->lat_us, st->lat_sum_us);
    histogram(b, "dht_loop_busy_seconds",
              "Work of one event loop iteration (wall time from the end of one wait for I/O to "
              "the start of the next, time spent waiting for a CPU included): what a client may "
              "wait behind.",
              st->busy_us, st->busy_sum_us);
    metric(b, "dht_loop_busy_max_seconds", "gauge", "The longest event loop iteration so far.");
    sb_printf(b, "dht_loop_busy_max_seconds ");
    sb_seconds(b, st->busy_max_us);
    sb_printf(b, "\n");

    size_t count[3] = {0};
    for (size_t i = 0; i < members_total(n->members); i++) {
        int state = members_at(n->members, i)->state;
        if (state >= MEMBER_ALIVE && state <= MEMBER_DEAD) count[state]++; /* not the gone */
    }
    metric(b, "dht_members", "gauge", "Members known to this node (itself included), by state.");
    for (int state = MEMBER_ALIVE; state <= MEMBER_DEAD; state++)
        sb_printf(b, "dht_members{state=\"%s\"} %zu\n", members_state_name(state), count[state]);
    metric(b, "dht_members_misplaced", "gauge",
           "Live members that place hash slots otherwise (another version, --replicas or "
           "--vnodes).");
    sb_printf(b, "dht_members_misplaced %zu\n", members_misplaced(n->members));
    metric(b, "dht_member_aliases", "gauge",
           "Addresses found to reach a member or this node under another address: never "
           "members (logged when found).");
    sb_printf(b, "dht_member_aliases %zu\n", members_aliases(n->members));

    metric(b, "dht_keys", "gauge", "Live keys in this node's store.");
    sb_printf(b, "dht_keys %zu\n", store_count(n->store));
    metric(b, "dht_bytes", "gauge", "Key and value bytes in this node's store, tombstones included.");
    sb_printf(b, "dht_bytes %zu\n", store_bytes(n->store));
    metric(b, "dht_store_full", "gauge",
           "1 while the store refuses writes that need room (--max-memory reached, disk or LMDB "
           "map full): they are answered OUT_OF_SPACE; 0 once such a write succeeds again.");
    sb_printf(b, "dht_store_full %d\n", store_full(n->store) != STORE_ROOM);
    metric(b, "dht_store_refused_writes_total", "counter",
           "Writes to this node's store (client and replication) refused for lack of room.");
    sb_printf(b, "dht_store_refused_writes_total %llu\n",
              (unsigned long long)store_refused(n->store));
    metric(b, "dht_store_disk_bytes", "gauge",
           "Disk held by the LMDB store, allocated: its data file and the reserve for removes.");
    sb_printf(b, "dht_store_disk_bytes %zu\n", store_disk_bytes(n->store));
    metric(b, "dht_inflight_ops", "gauge", "Client operations being coordinated.");
    sb_printf(b, "dht_inflight_ops %zu\n", repl_inflight(n->repl));
    metric(b, "dht_http_connections", "gauge", "Open HTTP connections, this one included.");
    sb_printf(b, "dht_http_connections %zu\n", s->conns);
    metric(b, "dht_http_evicted_total", "counter",
           "HTTP connections closed to make room for a new one (the oldest still sending its head, "
           "or answered), with HTTP_MAX_CONNS open.");
    sb_printf(b, "dht_http_evicted_total %llu\n", s->evicted);
    uint64_t now = node_wall_ms(n);
    metric(b, "dht_uptime_seconds", "gauge", "Seconds since the node started.");
    sb_printf(b, "dht_uptime_seconds ");
    sb_seconds(b, (now > n->started_ms ? now - n->started_ms : 0) * 1000);
    sb_printf(b, "\n");
}

static void page_status(const http_server *s, sbuf *b) {
    const node *n = s->n;
    const node_config *cfg = &n->cfg;
    char a[32];
    uint64_t now = node_wall_ms(n);
    sb_printf(b, "{\"self\":");
    sb_json_str(b, node_addr_str(n->self.sin_addr.s_addr, cfg->port, a));
    sb_printf(b, ",\"pid\":%d,\"uptime_s\":%llu,\"store\":", (int)n->pid,
              (unsigned long long)(now > n->started_ms ? now - n->started_ms : 0) / 1000);
    sb_json_str(b, store_engine(n->store));
    sb_printf(b, ",\"keys\":%zu,\"bytes\":%zu,\"max_bytes\":%zu", store_count(n->store),
              store_bytes(n->store), store_max_bytes(n->store));
    sb_printf(b, ",\"full\":");
    sb_json_str(b, store_full(n->store) ? store_full_name(store_full(n->store)) : "");
    sb_printf(b, ",\"replicas\":%u,\"read_quorum\":%u,\"write_quorum\":%u,\"vnodes\":%u",
              cfg->replicas, cfg->read_quorum, cfg->write_quorum, cfg->vnodes);
    sb_printf(b, ",\"members\":[");
    bool first = true;
    for (size_t i = 0; i < members_total(n->members); i++) {
        const member *m = members_at(n->members, i);
        if (m->state == MEMBER_GONE) continue; /* forgotten */
        sb_printf(b, "%s{\"addr\":", first ? "" : ",");
        first = false;
        sb_json_str(b, node_addr_str(m->ip, m->port, a));
        sb_printf(b, ",\"state\":");
        sb_json_str(b, members_state_name(m->state));
        sb_printf(b, ",\"share\":%.6f,\"slots\":%zu}",
                  (double)members_slots(n->members, i) / RING_SLOTS, members_slots(n->members, i));
    }
    sb_printf(b, "]}\n");
}

/* ---- connections ------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h) {
    conn *c = h->data;
    if (--c->open_handles > 0) return;
    c->s->conns--;
    free(c->dyn.p);
    free(c);
}

static void conn_close(conn *c) {
    if (c->state == CONN_CLOSED) return;
    c->state = CONN_CLOSED;
    http_server *s = c->s;
    *(c->older ? &c->older->newer : &s->oldest) = c->newer;
    *(c->newer ? &c->newer->older : &s->newest) = c->older;
    s->open--;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t) { conn_close(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status) {
    conn *c = req->data;
    if (c->state != CONN_CLOSED && status < 0) conn_close(c);
}

static void on_written(uv_write_t *req, int status) {
    conn *c = req->data;
    if (c->state == CONN_CLOSED) return;
    if (status < 0 || c->peer_eof ||
        uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_LINGER;
    uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
}

static const char *reason(int code) {
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

/* Sends the response (body already in c->body) and moves on to CONN_WRITE. */
static void respond(conn *c, int code, const char *type, const char *extra_headers) {
    int w = snprintf(c->resp_head, sizeof c->resp_head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     code, reason(code), type, c->blen, extra_headers);
    if (w < 0 || (size_t)w >= sizeof c->resp_head) {
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(c->resp_head, (unsigned)w),
                        uv_buf_init((char *)c->body, (unsigned)c->blen)};
    c->state = CONN_WRITE;
    c->write_req.data = c;
    c->shutdown_req.data = c;
    uv_timer_start(&c->timer, on_timeout, WRITE_TIMEOUT_MS, 0);
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, bufs, c->blen ? 2 : 1, on_written) != 0)
        conn_close(c);
}

/* An error response with a one-line text body. */
static void respond_error(conn *c, int code, const char *extra_headers) {
    sb_printf(&c->dyn, "%d %s\n", code, reason(code));
    if (c->dyn.oom) {
        conn_close(c);
        return;
    }
    c->body = c->dyn.p;
    c->blen = c->dyn.len;
    respond(c, code, "text/plain; charset=utf-8", extra_headers);
}

/* RFC 9110 token characters. */
static bool is_token(const char *s, size_t len) {
    if (!len) return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= 32 || s[i] >= 127 || strchr("\"(),/:;<=>?@[\\]{}", s[i])) return false;
    return true;
}

int http_parse_head(const char *buf, size_t len, http_request *req) {
    size_t n = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD, head = 0;
    /* the head ends at an empty line: LF CR LF, or LF LF */
    const char *nl;
    for (size_t i = 0; !head && i + 1 < n && (nl = memchr(buf + i, '\n', n - 1 - i)); i++) {
        i = (size_t)(nl - buf);
        if (buf[i + 1] == '\n') head = i + 2;
        else if (buf[i + 1] == '\r' && i + 2 < n && buf[i + 2] == '\n') head = i + 3;
    }
    if (!head) return len >= HTTP_MAX_HEAD ? 431 : 0;
    req->head_len = head;

    /* METHOD SP TARGET SP HTTP/1.x, nothing else */
    const char *line = buf, *end = memchr(buf, '\n', head);
    if (end > line && end[-1] == '\r') end--;
    size_t ll = (size_t)(end - line);
    const char *sp1 = memchr(line, ' ', ll);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (!sp2 || memchr(line, 0, ll) || !is_token(line, (size_t)(sp1 - line)) || sp1[1] != '/' ||
        end - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp2[8] < '0' || sp2[8] > '9')
        return 400;
    for (const char *t = sp1 + 1; t < sp2; t++)
        if (*t <= 32 || *t >= 127) return 400;
    req->method = line;
    req->method_len = (size_t)(sp1 - line);
    if (req->method_len != 3 || memcmp(line, "GET", 3) != 0) return 405;
    req->path = sp1 + 1;
    req->path_len = 0;
    while (req->path + req->path_len < sp2 && req->path[req->path_len] != '?' &&
           req->path[req->path_len] != '#')
        req->path_len++;
    return 200;
}

bool http_find_host(const char *head, size_t head_len, const char **host, size_t *len) {
    const char *end = head + head_len, *line = memchr(head, '\n', head_len);
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        if (eol - line > 5 && strncasecmp(line, "host:", 5) == 0) {
            const char *v = line + 5, *e = eol;
            while (v < e && (*v == ' ' || *v == '\t')) v++;
            while (e > v && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) e--;
            *host = v;
            *len = (size_t)(e - v);
            return true;
        }
        line = eol;
    }
    return false;
}

bool http_host_is_local(const char *host, size_t len) {
    const char *end = host + len, *name_end;
    if (!len) return true;
    if (host[0] == '[') { /* an IPv6 literal */
        name_end = memchr(host, ']', len);
        if (!name_end || name_end == host + 1) return false;
        for (const char *t = host + 1; t < name_end; t++)
            if (!strchr("0123456789abcdefABCDEF:.", *t) || !*t) return false;
        name_end++;
    } else {
        name_end = memchr(host, ':', len);
        if (!name_end) name_end = end;
        size_t nl = (size_t)(name_end - host);
        if (!(nl == 9 && strncasecmp(host, "localhost", 9) == 0)) {
            if (!nl) return false;
            for (const char *t = host; t < name_end; t++)
                if (!((*t >= '0' && *t <= '9') || *t == '.')) return false;
        }
    }
    if (name_end == end) return true;
    if (*name_end != ':') return false;
    for (const char *t = name_end + 1; t < end; t++)
        if (*t < '0' || *t > '9') return false;
    return true;
}

static bool path_is(const http_request *req, const char *path) {
    return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}

/* Answers a request head that http_parse_head gave status. */
static void serve(conn *c, int status, const http_request *req) {
    if (status == 405) {
        respond_error(c, 405, "Allow: GET\r\n");
        return;
    }
    if (status != 200) {
        respond_error(c, status, "");
        return;
    }
    const char *host;
    size_t host_len;
    if (c->s->loopback && http_find_host(c->head, req->head_len, &host, &host_len) &&
        !http_host_is_local(host, host_len)) {
        respond_error(c, 421, ""); /* DNS rebinding (http.h) */
        return;
    }
    const char *type;
    if (path_is(req, "/")) {
        c->body = page;
        c->blen = sizeof page - 1;
        respond(c, 200, "text/html; charset=utf-8", "");
        return;
    }
    if (path_is(req, "/metrics")) {
        page_metrics(c->s, &c->dyn);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (path_is(req, "/status")) {
        page_status(c->s, &c->dyn);
        type = "application/json";
    } else {
        respond_error(c, 404, "");
        return;
    }
    if (c->dyn.oom) {
        conn_close(c);
        return;
    }
    c->body = c->dyn.p;
    c->blen = c->dyn.len;
    respond(c, 200, type, "");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char drain[4096]; /* what comes after the head is read and dropped */
    conn *c = h->data;
    (void)suggested;
    if (c->state == CONN_HEAD) *buf = uv_buf_init(c->head + c->hlen, HTTP_MAX_HEAD - c->hlen);
    else *buf = uv_buf_init(drain, sizeof drain);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn *c = stream->data;
    (void)buf;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread == UV_EOF && c->state == CONN_WRITE) { /* half-closed: still answer */
            c->peer_eof = true;
            uv_read_stop(stream);
        } else {
            conn_close(c);
        }
        return;
    }
    if (c->state != CONN_HEAD) return;
    c->hlen += (size_t)nread;
    http_request req;
    int status = http_parse_head(c->head, c->hlen, &req);
    if (status) serve(c, status, &req);
}

/* With HTTP_MAX_CONNS open, a new connection takes the place of the oldest
 * that is still sending its head or has had its answer (lingering for the
 * peer's FIN); those being answered keep theirs, and when all are, the new
 * one is closed. Before, the new one was closed whatever the others did: 64
 * connections that sent a head a byte at a time, reopened as the head
 * timeout closed them, kept every operator's request out. A request sent at
 * once is served before it can be the oldest. */
static bool make_room(http_server *s) {
    for (conn *o = s->oldest; o; o = o->newer) {
        if (o->state == CONN_HEAD || o->state == CONN_LINGER) {
            s->evicted++;
            conn_close(o);
            return true;
        }
    }
    return false;
}

static void on_connection(uv_stream_t *listener, int status) {
    http_server *s = listener->data;
    if (status < 0) return;
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        node_log(s->n, "http: out of memory for a connection: closed");
        conn_shed(&s->spare);
        return;
    }
    c->s = s;
    s->conns++;
    s->open++;
    c->older = s->newest;
    *(s->newest ? &s->newest->newer : &s->oldest) = c;
    s->newest = c;
    uv_tcp_init(s->listener.loop, &c->tcp);
    uv_timer_init(s->listener.loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
        (s->open > HTTP_MAX_CONNS && !make_room(s)) ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, HEAD_TIMEOUT_MS, 0);
}

static void on_listener_closed(uv_handle_t *h) { free(h->data); }

int http_start(uv_loop_t *loop, node *n) {
    const node_config *cfg = &n->cfg;
    const char *ip = cfg->http_bind ? cfg->http_bind : HTTP_DEFAULT_BIND;
    struct sockaddr_storage addr;
    http_server *s;
    int rc = uv_ip4_addr(ip, cfg->http_port, (struct sockaddr_in *)&addr);
    if (rc) rc = uv_ip6_addr(ip, cfg->http_port, (struct sockaddr_in6 *)&addr);
    if (rc) goto fail;
    if (!(s = calloc(1, sizeof *s))) {
        rc = UV_ENOMEM;
        goto fail;
    }
    s->n = n;
    s->loopback = resp_addr_is_loopback((const struct sockaddr *)&addr);
    if ((rc = uv_tcp_init(loop, &s->listener)) != 0) {
        free(s);
        goto fail;
    }
    s->listener.data = s;
    conn_spare_init(&s->spare, (uv_stream_t *)&s->listener, on_connection);
    if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection)) != 0) {
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
        goto fail;
    }
    if (!cfg->quiet) node_log(n, "http on %s:%u", ip, cfg->http_port);
    return 0;
fail:
    fprintf(stderr, "dht-server: cannot listen for HTTP on %s:%u (--http-bind, --http-port): %s\n",
            ip, cfg->http_port, uv_strerror(rc));
    return rc;
}
