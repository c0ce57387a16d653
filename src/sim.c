/*
 * dht-sim: deterministic simulation of a dht cluster.
 *
 * N real nodes (node.h, the same core dht-server runs) live in one process
 * over a simulated network and clock. Everything that varies comes from one
 * seed: link latencies, loss, duplication, reordering, partitions (both ways
 * or one way), crashes and restarts (the store survives a crash when the
 * node runs "with a data dir", as LMDB does), clock skew and jumps, stalled
 * nodes (no ticks, datagrams held as in a socket buffer) and datagram size
 * limits. Simulated clients speak the real client protocol (PUT, GET,
 * REMOVE; retries with the same message ID) on keys that each has to itself,
 * and a checker fails the run, printing the seed and the end of the event
 * trace, when:
 *   - an acknowledged write is lost (the final value is older than the last
 *     acknowledged write of the key, or was never written; with W = 1 and
 *     no data dir, a write whose one copy a crash may have taken is excused);
 *   - an acknowledged write is not held by W nodes when the client hears it;
 *   - a read returns a value that was never written;
 *   - two replies to the same message ID differ (a retry was executed again);
 *   - with no fault in force since before a write began, a read that starts
 *     after the write was acknowledged misses it (W + R > N);
 *   - a REMOVE's answer code (OK: the key held a value; NOT_FOUND: it held
 *     none) misses what the key held when it began, as a read would;
 *   - replicas have not converged a bounded time after the last fault healed;
 *   - a node declares a live node dead while neither of them was touched by
 *     a fault for longer than the detection time;
 *   - a Redis Cluster client following -MOVED from node to node
 *     (repl_slot_redirect, checked every 200 ms for 16 slots from every node)
 *     goes round in a circle once the nodes have agreed on the membership
 *     for 2 x members_settle_ms. Circles while they do not agree are
 *     counted ("redirect loops" in the seed's line), not failed.
 * With --replayer an outsider on the nodes' network records what they send
 * each other and sends it again, seconds later, to any node from any
 * node's address: the checks above must hold all the same.
 * The same seed replays the same run: every event goes into a trace whose
 * digest is printed (and the trace itself with --trace).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "client.h"
#include "members.h"
#include "node.h"
#include "repl.h"
#include "ring.h"
#include "wire.h"

#define NODE_PORT 7000
#define CLIENT_PORT 9000
#define NODE_NET 0x0A000000u   /* 10.0.0.0: node i is 10.0.0.0 + 1 + i */
#define CLIENT_NET 0x0A800000u /* 10.128.0.0: client i */
#define ALIAS_NET 0x0A400000u  /* 10.64.0.0: node i's other address (--aliases) */
#define EPOCH_MS 1800000000000ull
#define MAX_SKEW_MS 30000      /* clocks stay within the nodes' 60 s bound */
#define BRIEF_STALL_MS 500     /* --stalls */
#define TRACE_KEEP 4096        /* trace lines kept for a failure report */
#define REPLAY_BYTES 2048      /* --replayer: the longest datagram it records */
#define REPLAY_KEEP 256        /* --replayer: datagrams it keeps of each kind */
#ifndef REPLAY_SAMPLE
#define REPLAY_SAMPLE 64       /* --replayer: it keeps one in this many of those not forwards */
#endif
#define TRACE_LINE 600         /* bytes of a trace line, NUL included */

/* ---- random numbers: xoshiro256** (client.h) ------------------------ */

typedef struct rng { uint64_t s[4]; } rng;

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) { client_rng_seed(r->s, seed); }
static uint64_t rng_next(rng *r) { return client_rng_next(r->s); }
static uint64_t rng_below(rng *r, uint64_t n) { return n ? rng_next(r) % n : 0; }
static bool rng_chance(rng *r, double p) { return client_rng_unit(r->s) < p; }
static uint64_t rng_range(rng *r, uint64_t lo, uint64_t hi) { return lo + rng_below(r, hi - lo + 1); }

/* ---- options ----------------------------------------------------------- */

typedef struct options {
    unsigned nodes, clients, keys_per_client;
    unsigned duration_s;        /* workload and faults */
    unsigned quiet_s;           /* after the last fault heals: convergence bound */
    bool faults;
    bool durable;               /* nodes run "with a data dir" */
    bool members_only;          /* no clients: membership figures */
    unsigned kill_at_s;         /* members_only: kill one node then (0: none) */
    double loss, dup;
    double stalls;              /* share of nodes in a brief stall at any time */
    unsigned stall_one_ms;      /* stall one node that long at --kill-at instead */
    unsigned mtu;               /* datagram size limit */
    unsigned vnodes;
    unsigned tombstone_ms;      /* 0: the nodes' default */
    unsigned forget_ms;         /* 0: the nodes' default */
    unsigned sync_ms;           /* 0: the nodes' default */
    unsigned crash_ms;          /* longest crash */
    unsigned aliases;           /* nodes 0..aliases-1 reached at a second address too */
    unsigned replicas, wq, rq;
    unsigned fault_mask;        /* which kinds of fault (1 << F_*) */
    bool trace;                 /* print every trace line */
    bool verbose;
    bool no_key;                /* nodes run without a cluster key */
    bool available;             /* nodes take writes on a minority side */
    bool attacker;              /* an outsider forges node-to-node datagrams */
    bool replayer;              /* an outsider replays recorded node-to-node datagrams */
    bool cover;                 /* --replayer-cover: it also keeps forwards from coming,
                                 * and sends its sender's GOSSIP before one it replays */
} options;

/* ---- the world --------------------------------------------------------- */

enum ev_kind { EV_DELIVER = 1, EV_TICK, EV_CLIENT, EV_FAULT };

typedef struct packet {
    struct sockaddr_in from, to;
    size_t len;
    uint8_t data[];
} packet;

typedef struct event {
    uint64_t t;                 /* µs */
    uint64_t seq;               /* ties: first scheduled first */
    int kind;
    uint32_t who;               /* node or client index */
    uint64_t gen;               /* EV_TICK: node's tick generation */
    packet *p;
} event;

typedef struct simnode {
    uint32_t idx;
    node *n;
    store *st;
    bool up;
    int64_t skew_ms;
    uint64_t stalled_until;     /* µs */
    uint64_t tick_at, tick_gen;
    uint64_t disturbed_until;   /* µs: last moment a fault touched this node */
    rng r;
    int side;                   /* partition side */
    uint64_t bytes_sent, msgs_sent;
    uint64_t restarts;
    uint64_t incarnation;       /* kept across crashes with --durable, as in a data dir */
    uint64_t alive_ms, gc_floor;/* the same (env.alive) */
    bool view_full;             /* up, and holds every other node alive */
} simnode;

/* Per key (single writer): every write's value and outcome. */
enum wstate { W_PENDING = 0, W_ACKED, W_FAILED, W_UNKNOWN };
typedef struct write_rec {
    bool remove;
    uint8_t state;
    uint64_t start, end;        /* µs */
} write_rec;

typedef struct keyst {
    char key[24];
    write_rec *w;               /* by seq, from 1 */
    size_t nw, capw;
    uint64_t last_acked;        /* seq */
    uint64_t last_acked_at;
} keyst;

enum client_state { C_IDLE, C_WAIT, C_DONE };
typedef struct client {
    uint32_t idx;
    struct sockaddr_in addr;
    int state;
    uint32_t cmd;
    keyst *k;
    uint64_t seq;               /* write seq of the op */
    uint8_t id[WIRE_ID_LEN];
    uint32_t target;            /* node asked */
    unsigned tries;
    uint64_t timeout_us, start;
    uint64_t timer_gen;
    uint8_t first_reply[256];   /* first reply's bytes (payload prefix) */
    size_t first_len;
    struct sockaddr_in first_from; /* the node that sent it */
    bool got_reply;
    bool final_read;            /* the end-of-run check */
    int side;                   /* partition side */
} client;

typedef struct sim {
    options o;
    uint64_t seed;
    uint64_t now;               /* µs */
    uint64_t seq;
    event *heap;
    size_t nheap, capheap;
    simnode *nodes;
    client *clients;
    keyst *keys;
    size_t nkeys;
    rng net, work, fault;
    node_config cfg;
    /* faults */
    double loss, dup;
    uint64_t jitter_us;
    bool partitioned, oneway;
    uint64_t faults_end;        /* µs: no new faults after this */
    uint64_t last_fault_end;    /* µs: when the last fault healed */
    uint64_t fault_free_since;  /* µs: no fault in force since then (0: faults now) */
    unsigned active_faults;
    uint64_t mem_crash_at;      /* µs: last crash of a node without durable store */
    /* trace */
    XXH64_state_t *digest;
    char (*ring_lines)[TRACE_LINE]; /* the last TRACE_KEEP lines, for a failure report */
    size_t ring_pos;
    uint64_t lines;
    /* results */
    unsigned failures;
    uint64_t ops_ok, ops_err, ops_timeout, reads_checked, events;
    uint64_t false_dead;
    uint64_t repushed;          /* records re-replication pushed, by nodes since gone */
    uint64_t repushed_before;   /* --stall-one: re-pushed in all before the stall */
    uint64_t kill_at, killed;   /* members_only */
    uint64_t *detected, *joined;      /* per node: µs after the kill, the rejoin */
    uint64_t rejoin_at;
    uint64_t steady_bytes, steady_msgs; /* sent in the steady_us before the kill */
    uint64_t steady_us;                 /* half the time to the kill, 10 s at most */
    bool final_phase;
    wire_arena *arena;
    auth_keys cluster_key;      /* drawn from the seed */
    rng atk;                    /* --attacker's choices */
    uint64_t forged;            /* datagrams it sent */
    /* --replayer: node-to-node datagrams it recorded (forwarded client
     * requests in one ring, a sample of the rest in the other) */
    rng rep;
    struct recorded {
        uint64_t at;            /* µs: when it was sent */
        struct sockaddr_in from, to;
        size_t len;
        uint8_t data[REPLAY_BYTES];
        size_t cover_len;       /* --replayer-cover: its sender's last GOSSIP before it */
        uint8_t cover[REPLAY_BYTES];
    } *recorded[2];
    rng cov;                    /* --replayer-cover's choices */
    struct last_gossip {        /* each node's last GOSSIP datagram */
        size_t len;
        uint8_t data[REPLAY_BYTES];
    } *last_gossip;
    uint64_t kept_back;
    size_t nrecorded[2];
    uint64_t replayed;
    /* Redis Cluster routing (route_check) */
    uint64_t next_route;        /* µs: next check */
    uint64_t route_checks;
    uint64_t agreed_since;      /* µs: membership agreed since (0: it does not) */
    uint64_t route_loops;       /* circles of -MOVED found */
    /* quorum reads (views_check) */
    uint32_t views_full;        /* nodes whose view_full is set */
    uint64_t views_full_since;  /* µs: every node up and held alive by every node since
                                   (0: not now) */
    uint64_t reads_quorum_checked; /* reads checked for staleness under faults */
    ring *full_ring;            /* of every node (lazily) */
} sim;

static sim *S; /* for the node environment callbacks' log lines only */

/* ---- trace ------------------------------------------------------------- */

static void trace(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(sim *s, const char *fmt, ...) {
    char line[TRACE_LINE];
    int k = snprintf(line, sizeof line, "%" PRIu64 ".%06" PRIu64 " ", s->now / 1000000,
                     s->now % 1000000);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - (size_t)k, fmt, ap);
    va_end(ap);
    XXH64_update(s->digest, line, strlen(line));
    XXH64_update(s->digest, "\n", 1);
    s->lines++;
    if (s->o.trace) puts(line);
    memcpy(s->ring_lines[s->ring_pos], line, strlen(line) + 1);
    s->ring_pos = (s->ring_pos + 1) % TRACE_KEEP;
}

static void fail(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(sim *s, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    trace(s, "CHECK FAILED: %s", msg);
    if (s->failures++ < 5) fprintf(stderr, "seed %" PRIu64 ": %s\n", s->seed, msg);
}

/* ---- event queue: a binary heap on (t, seq) ----------------------------- */

static bool ev_less(const event *a, const event *b) {
    return a->t != b->t ? a->t < b->t : a->seq < b->seq;
}

static void push(sim *s, uint64_t t, int kind, uint32_t who, uint64_t gen, packet *p) {
    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? 2 * s->capheap : 1024;
        s->heap = realloc(s->heap, s->capheap * sizeof *s->heap);
        if (!s->heap) abort();
    }
    size_t i = s->nheap++;
    event e = {t, s->seq++, kind, who, gen, p};
    while (i && ev_less(&e, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
}

static event pop(sim *s) {
    event top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap) break;
        if (c + 1 < s->nheap && ev_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!ev_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap) s->heap[i] = last;
    return top;
}

/* ---- addresses ---------------------------------------------------------- */

static struct sockaddr_in addr_of(uint32_t net, uint32_t i, uint16_t port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(net + 1 + i);
    return a;
}

/* Whether a is a node's other address (--aliases). */
static bool is_alias(const sim *s, const struct sockaddr_in *a) {
    uint32_t h = ntohl(a->sin_addr.s_addr);
    return ntohs(a->sin_port) == NODE_PORT && h > ALIAS_NET && h <= ALIAS_NET + s->o.aliases;
}

/* Node index of an address (its own, or with --aliases its other one), or -1. */
static long node_at(const sim *s, const struct sockaddr_in *a) {
    uint32_t h = ntohl(a->sin_addr.s_addr);
    if (is_alias(s, a)) return (long)(h - ALIAS_NET - 1);
    if (ntohs(a->sin_port) != NODE_PORT || h <= NODE_NET || h > NODE_NET + s->o.nodes) return -1;
    return (long)(h - NODE_NET - 1);
}

/* Node i's other address (--aliases): the network delivers what is sent
 * there to node i, as a second address of its host does (a node bound to
 * 0.0.0.0, a peers file that names it by another). */
static struct sockaddr_in alias_of(uint32_t i) { return addr_of(ALIAS_NET, i, NODE_PORT); }

static long client_at(const sim *s, const struct sockaddr_in *a) {
    uint32_t h = ntohl(a->sin_addr.s_addr);
    if (ntohs(a->sin_port) != CLIENT_PORT || h <= CLIENT_NET || h > CLIENT_NET + s->o.clients)
        return -1;
    return (long)(h - CLIENT_NET - 1);
}

static const char *who_str(const sim *s, const struct sockaddr_in *a, char *buf) {
    long i = node_at(s, a);
    if (i >= 0) sprintf(buf, is_alias(s, a) ? "n%ld'" : "n%ld", i);
    else if ((i = client_at(s, a)) >= 0) sprintf(buf, "c%ld", i);
    else sprintf(buf, "?%08x:%u", ntohl(a->sin_addr.s_addr), ntohs(a->sin_port));
    return buf;
}

/* ---- the network -------------------------------------------------------- */

/* Base one-way latency of a link, fixed per run: 100..1100 µs. */
static uint64_t link_latency(const sim *s, uint32_t a, uint32_t b) {
    uint64_t k[2] = {((uint64_t)a << 32) | b, s->seed};
    return 100 + XXH3_64bits(k, sizeof k) % 1000;
}

static int side_of(const sim *s, const struct sockaddr_in *a) {
    long i = node_at(s, a);
    if (i >= 0) return s->nodes[i].side;
    i = client_at(s, a);
    return i >= 0 ? s->clients[i].side : 0;
}

/* Sends a datagram through the simulated network. */
static void net_send(sim *s, const struct sockaddr_in *from, const struct sockaddr_in *to,
                     const uint8_t *buf, size_t len) {
    char a[32], b[32];
    uint64_t h = XXH3_64bits(buf, len);
    if (len > s->o.mtu) {
        trace(s, "drop-size %s>%s %zu", who_str(s, from, a), who_str(s, to, b), len);
        return;
    }
    if (s->partitioned) {
        int sa = side_of(s, from), sb = side_of(s, to);
        if (sa != sb && (!s->oneway || sa == 0)) {
            trace(s, "drop-part %s>%s %016" PRIx64, who_str(s, from, a), who_str(s, to, b), h);
            return;
        }
    }
    if (rng_chance(&s->net, s->loss)) {
        trace(s, "drop-loss %s>%s %016" PRIx64, who_str(s, from, a), who_str(s, to, b), h);
        return;
    }
    int copies = rng_chance(&s->net, s->dup) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        packet *p = malloc(sizeof *p + len);
        if (!p) abort();
        p->from = *from;
        p->to = *to;
        p->len = len;
        memcpy(p->data, buf, len);
        uint64_t lat = link_latency(s, ntohl(from->sin_addr.s_addr), ntohl(to->sin_addr.s_addr));
        if (s->jitter_us) lat += rng_below(&s->net, s->jitter_us);
        push(s, s->now + lat, EV_DELIVER, 0, 0, p);
    }
}

/* ---- the nodes' environment -------------------------------------------- */

static uint64_t env_now(void *ctx) { (void)ctx; return S->now / 1000; }
static uint64_t env_now_us(void *ctx) { (void)ctx; return S->now; }

static uint64_t env_wall(void *ctx) {
    simnode *sn = ctx;
    return (uint64_t)((int64_t)(EPOCH_MS + S->now / 1000) + sn->skew_ms);
}

static bool record(sim *s, const struct sockaddr_in *from, const struct sockaddr_in *to,
                   const uint8_t *buf, size_t len);

static int env_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    simnode *sn = ctx;
    struct sockaddr_in from = addr_of(NODE_NET, sn->idx, NODE_PORT);
    sn->bytes_sent += len;
    sn->msgs_sent++;
    if (S->o.replayer && record(S, &from, to, buf, len)) return 0; /* kept from coming */
    net_send(S, &from, to, buf, len);
    return 0;
}

static uint64_t env_random(void *ctx) { return rng_next(&((simnode *)ctx)->r); }

static void env_log(void *ctx, const char *line) {
    if (S->o.verbose) trace(S, "n%u log: %s", ((simnode *)ctx)->idx, line);
}

static void node_down(sim *s, simnode *sn, const char *why);
static void views_check(sim *s, simnode *sn);

static void env_incarnation(void *ctx, uint64_t inc) { ((simnode *)ctx)->incarnation = inc; }

static void env_alive(void *ctx, uint64_t alive_ms, uint64_t gc_floor) {
    simnode *sn = ctx;
    sn->alive_ms = alive_ms;
    sn->gc_floor = gc_floor;
}

static void env_stop(void *ctx) {
    simnode *sn = ctx;
    trace(S, "n%u stop (SHUTDOWN)", sn->idx);
    sn->up = false; /* freed by the loop: we are inside the node now */
}

static void env_member_state(void *ctx, uint32_t ip, uint16_t port, int state) {
    simnode *sn = ctx;
    sim *s = S;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = ip;
    long i = node_at(s, &a);
    trace(s, "n%u says n%ld %s", sn->idx, i, members_state_name(state));
    if (i < 0) return;
    simnode *t = &s->nodes[i];
    if ((uint64_t)i == s->killed && s->kill_at && s->detected) {
        if (state == MEMBER_DEAD && (!t->up || t->stalled_until > s->now) &&
            s->now >= s->kill_at && !s->detected[sn->idx])
            s->detected[sn->idx] = s->now - s->kill_at;
        if (state == MEMBER_ALIVE && t->up && s->rejoin_at && s->now >= s->rejoin_at &&
            !s->joined[sn->idx])
            s->joined[sn->idx] = s->now - s->rejoin_at + 1; /* 0: not yet */
    }
    if (state != MEMBER_DEAD || !t->up) return;
    /* a live node declared dead: fine only if a fault touched either of
     * them within the detection window */
    uint64_t window = (uint64_t)(2 * s->cfg.suspicion_ms + 4 * s->cfg.gossip_ms + 1000) * 1000;
    uint64_t quiet_since = t->disturbed_until > sn->disturbed_until ? t->disturbed_until
                                                                    : sn->disturbed_until;
    /* the base loss (--loss) is the network, not a fault: a verdict under it
     * is false; a burst of loss above it is a fault */
    if (quiet_since != UINT64_MAX && s->now > quiet_since + window && s->loss <= s->o.loss) {
        s->false_dead++;
        fail(s, "n%u declared live n%ld dead with no fault near either for %.1f s", sn->idx, i,
             (double)(s->now - quiet_since) / 1e6);
    }
}

static void schedule_tick(sim *s, simnode *sn, uint64_t next_ms) {
    uint64_t t = next_ms * 1000;
    if (t < s->now) t = s->now;
    if (sn->tick_at > s->now && sn->tick_at <= t) return; /* an earlier one is queued */
    sn->tick_at = t;
    push(s, t, EV_TICK, sn->idx, ++sn->tick_gen, NULL);
}

static void node_up(sim *s, simnode *sn) {
    struct sockaddr_in self = addr_of(NODE_NET, sn->idx, NODE_PORT);
    if (!sn->st && store_open(&sn->st, NULL, 256u << 20) != 0) abort();
    node_env env = {.ctx = sn, .now = env_now, .now_us = env_now_us, .wall = env_wall,
                    .send = env_send, .random = env_random, .log = env_log, .stop = env_stop,
                    .member_state = env_member_state, .incarnation = env_incarnation,
                    .alive = env_alive};
    node_config cfg = s->cfg;
    if (s->o.durable) {
        cfg.last_incarnation = sn->incarnation;
        cfg.last_alive_ms = sn->alive_ms;
        cfg.last_gc_floor = sn->gc_floor;
    }
    sn->n = node_new(&cfg, &env, &self, sn->st, (int32_t)(1000 + sn->idx));
    if (!sn->n) abort();
    ring_node *seeds = malloc(s->o.nodes * sizeof *seeds);
    if (!seeds) abort();
    for (uint32_t j = 0; j < s->o.nodes; j++) {
        /* with --aliases, the odd nodes' peers name the first ones by their
         * other address */
        struct sockaddr_in a = j < s->o.aliases && sn->idx % 2 ? alias_of(j)
                                                                : addr_of(NODE_NET, j, NODE_PORT);
        seeds[j] = (ring_node){a.sin_addr.s_addr, NODE_PORT};
    }
    if (node_add_seeds(sn->n, seeds, s->o.nodes) != 0) abort();
    free(seeds);
    sn->up = true;
    sn->tick_at = 0;
    schedule_tick(s, sn, node_tick(sn->n));
    views_check(s, sn);
}

static void node_down(sim *s, simnode *sn, const char *why) {
    trace(s, "n%u down (%s)%s", sn->idx, why, s->o.durable ? ", store kept" : "");
    s->repushed += sn->n->stats.repushed;
    node_free(sn->n);
    sn->n = NULL;
    sn->up = false;
    sn->tick_gen++;
    if (!s->o.durable) {
        store_close(sn->st);
        sn->st = NULL;
    }
    views_check(s, sn);
}

/* Whether every node is up and every node holds every other alive (not
 * suspect, dead or forgotten): then every coordinator computes the same
 * preference lists, whatever the network does (loss, duplication, jitter,
 * a partition or a stall too short to be suspected) and whatever the
 * clocks say. Kept in s->views_full_since after every call into a node. */
static void views_check(sim *s, simnode *sn) {
    if (s->o.members_only) return; /* no reads or writes to check (and at hundreds of
                                    * nodes, a scan of a view a call: 37% of the run) */
    bool full = sn->up && sn->n;
    for (uint32_t j = 0; j < s->o.nodes && full; j++) {
        if (j == sn->idx) continue;
        struct sockaddr_in a = addr_of(NODE_NET, j, NODE_PORT);
        long k = members_find(sn->n->members, a.sin_addr.s_addr, NODE_PORT);
        full = k > 0 && members_at(sn->n->members, (size_t)k)->state == MEMBER_ALIVE;
    }
    if (full != sn->view_full) s->views_full += full ? 1 : -1;
    sn->view_full = full;
    if (s->views_full < s->o.nodes) s->views_full_since = 0;
    else if (!s->views_full_since) s->views_full_since = s->now;
}

/* Calls into a node are followed by node_tick: it runs what is due, flushes
 * the outbox and says when it wants to run next. */
static void after_call(sim *s, simnode *sn) {
    if (!sn->up) {
        if (sn->n) node_down(s, sn, "stopped");
        views_check(s, sn);
        return;
    }
    schedule_tick(s, sn, node_tick(sn->n));
    if (!sn->up && sn->n) node_down(s, sn, "stopped");
    views_check(s, sn);
}

/* ---- clients and the checker ------------------------------------------ */

static void key_write_add(keyst *k, bool remove, uint64_t start) {
    if (k->nw + 1 >= k->capw) {
        k->capw = k->capw ? 2 * k->capw : 16;
        k->w = realloc(k->w, k->capw * sizeof *k->w);
        if (!k->w) abort();
    }
    k->nw++;
    k->w[k->nw] = (write_rec){remove, W_PENDING, start, 0};
}

static int value_of(const keyst *k, uint64_t seq, char *buf) {
    return sprintf(buf, "%s=%" PRIu64, k->key, seq);
}

/* The seq a value names, or 0 when it is no value of this key. */
static uint64_t seq_of(const keyst *k, const uint8_t *v, size_t len) {
    size_t kl = strlen(k->key);
    if (len <= kl + 1 || len > kl + 21 || memcmp(v, k->key, kl) != 0 || v[kl] != '=') return 0;
    uint64_t seq = 0;
    for (size_t i = kl + 1; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return 0;
        seq = seq * 10 + (v[i] - '0');
    }
    return seq <= k->nw && !k->w[seq].remove ? seq : 0;
}

static void client_send(sim *s, client *c) {
    uint8_t buf[512];
    char val[64];
    size_t vlen = 0;
    if (c->cmd == WIRE_PUT) vlen = (size_t)value_of(c->k, c->seq, val);
    size_t len = wire_request(buf, sizeof buf, c->id, c->cmd, c->k->key, strlen(c->k->key), val,
                              vlen, 0);
    struct sockaddr_in to = addr_of(NODE_NET, c->target, NODE_PORT);
    trace(s, "c%u %s %s seq %" PRIu64 " try %u to n%u", c->idx, wire_cmd_name(c->cmd), c->k->key,
          c->seq, c->tries + 1, c->target);
    net_send(s, &c->addr, &to, buf, len);
    c->tries++;
    push(s, s->now + c->timeout_us, EV_CLIENT, c->idx, ++c->timer_gen, NULL);
    c->timeout_us *= 2;
}

static void client_start(sim *s, client *c, uint32_t cmd) {
    keyst *k = c->k;
    c->cmd = cmd;
    c->seq = 0;
    if (cmd != WIRE_GET) {
        key_write_add(k, cmd == WIRE_REMOVE, s->now);
        c->seq = k->nw;
    }
    for (int i = 0; i < WIRE_ID_LEN; i += 8) {
        uint64_t r = rng_next(&s->work);
        memcpy(c->id + i, &r, 8);
    }
    c->target = (uint32_t)rng_below(&s->work, s->o.nodes);
    c->tries = 0;
    c->timeout_us = rng_range(&s->work, 100, 400) * 1000;
    c->start = s->now;
    c->state = C_WAIT;
    c->got_reply = false;
    client_send(s, c);
}

/* Next operation on one of the client's keys, after a short think time. */
static void client_next(sim *s, client *c) {
    c->state = C_IDLE;
    push(s, s->now + rng_range(&s->work, 0, 20000), EV_CLIENT, c->idx, ++c->timer_gen, NULL);
}

static void client_idle(sim *s, client *c) {
    if (s->now >= s->faults_end || s->final_phase) {
        c->state = C_DONE;
        return;
    }
    c->k = &s->keys[c->idx * s->o.keys_per_client + rng_below(&s->work, s->o.keys_per_client)];
    uint64_t r = rng_below(&s->work, 100);
    client_start(s, c, r < 45 ? WIRE_PUT : r < 90 ? WIRE_GET : WIRE_REMOVE);
}

/* Whether a fault was in force at any time in [from, now]. */
static bool faults_since(const sim *s, uint64_t from) {
    return !s->fault_free_since || s->fault_free_since > from;
}

/* What every node's store holds for k, into the trace. */
static void trace_holders(sim *s, const keyst *k) {
    size_t kl = strlen(k->key);
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        store_rec r;
        if (s->nodes[i].st && store_get(s->nodes[i].st, (uint8_t *)k->key, kl, &r) == 0)
            trace(s, "  n%u holds %s seq %" PRIu64 " stamp %016" PRIx64, i,
                  r.tomb ? "tombstone" : "value", r.tomb ? 0 : seq_of(k, r.val, r.vlen), r.stamp);
    }
}

/* With W = 1 an acknowledged write has one copy until its others arrive
 * (lazily, or by a resend, or by anti-entropy): a crash that loses a node's
 * memory meanwhile may lose it, as it loses a Redis Cluster master's
 * unreplicated writes. Such a write is not required to survive. */
static bool lost_on_purpose(const sim *s, const write_rec *w) {
    uint64_t copying_us = ((uint64_t)s->cfg.request_timeout_ms + 2ull * s->cfg.sync_ms) * 1000;
    return !s->o.durable && s->cfg.write_quorum < 2 && s->mem_crash_at &&
           s->mem_crash_at >= w->start && s->mem_crash_at <= w->end + copying_us;
}

/* Whether reads meet writes in a quorum (W + R > N). With W + R <= N a read
 * is answered by one replica (the slot's first live one, as writes are
 * acknowledged there), which after faults may not be repaired yet. */
static bool reads_consistent(const sim *s) {
    return s->cfg.write_quorum + s->cfg.read_quorum > s->cfg.replicas;
}

/* What key k held when an operation of client c began, as far as the
 * writes before seq `below` tell (a read: every write; a REMOVE: those
 * before it, not itself): the newest write acknowledged before the
 * operation began (at the end of the run: that was not lost on purpose),
 * and whether a later write, its outcome unknown, may have been applied
 * over it (clients have their keys to themselves: nothing else wrote). */
typedef struct held {
    uint64_t need;              /* that write's seq (0: none: nothing is claimed) */
    bool later_put;             /* a later PUT not failed */
    bool later_remove;          /* a later REMOVE not failed */
    bool quorum;                /* W + R > N, and every view held every node
                                   alive since need began */
} held;

static held held_at_start(const sim *s, const client *c, uint64_t below) {
    const keyst *k = c->k;
    held h = {0};
    for (uint64_t i = below - 1; i >= 1 && !h.need; i--)
        if (k->w[i].state == W_ACKED && k->w[i].end <= c->start &&
            !(c->final_read && lost_on_purpose(s, &k->w[i])))
            h.need = i;
    if (!h.need) return h;
    for (uint64_t i = h.need + 1; i < below; i++)
        if (k->w[i].state != W_FAILED) {
            if (k->w[i].remove) h.later_remove = true;
            else h.later_put = true;
        }
    h.quorum = reads_consistent(s) && s->views_full_since &&
               s->views_full_since <= k->w[h.need].start;
    return h;
}

/* An answer that misses write h->need is a failure when no fault was in
 * force since that write began (and the window for a node's views to
 * settle after the last one had passed before it), or, with a quorum,
 * under faults too (with W + R > N a read quorum meets the write's, as
 * long as every coordinator had the same preference lists: R - 1 replies
 * were caught in 1 of seeds 1..100, by the final read, without this). */
enum miss { MISS_EXCUSED, MISS_NO_FAULT, MISS_QUORUM };
static enum miss missed(const sim *s, const keyst *k, const held *h) {
    if (!faults_since(s, k->w[h->need].start) &&
        s->fault_free_since + (uint64_t)(2 * s->cfg.suspicion_ms + 3000) * 1000 <
            k->w[h->need].start)
        return MISS_NO_FAULT;
    return h->quorum ? MISS_QUORUM : MISS_EXCUSED;
}

/* Checks a read's answer against the key's history. */
static void check_read(sim *s, client *c, uint32_t err, const uint8_t *v, size_t vlen) {
    keyst *k = c->k;
    uint64_t seq = 0;
    if (err == WIRE_OK) {
        seq = seq_of(k, v, vlen);
        if (!seq) {
            fail(s, "c%u read of %s returned '%.*s', never written", c->idx, k->key,
                 (int)(vlen > 60 ? 60 : vlen), v);
            return;
        }
        if (k->w[seq].start > s->now) fail(s, "read of %s saw a write from the future", k->key);
    } else if (err != WIRE_ENOKEY) {
        return;
    }
    s->reads_checked++;
    held h = held_at_start(s, c, k->nw + 1);
    uint64_t need = h.need;
    if (!need) return;
    s->reads_quorum_checked += h.quorum && faults_since(s, k->w[need].start);
    /* not found is right only if a later remove may have been applied */
    bool stale = err == WIRE_OK ? seq < need : !k->w[need].remove && !h.later_remove;
    if (!stale) return;
    if (c->final_read) {
        trace_holders(s, k);
        fail(s, "lost write: %s last acknowledged seq %" PRIu64 " (%s), final read %s seq %" PRIu64,
             k->key, need, k->w[need].remove ? "remove" : "put",
             err == WIRE_OK ? "found" : "not found", seq);
        return;
    }
    enum miss m = missed(s, k, &h);
    if (m == MISS_NO_FAULT) {
        fail(s, "stale read: c%u read %s at seq %" PRIu64 " (%s) after seq %" PRIu64
                " was acknowledged, no fault since",
             c->idx, k->key, seq, err == WIRE_OK ? "found" : "not found", need);
    } else if (m == MISS_QUORUM) {
        trace_holders(s, k);
        fail(s, "stale quorum read: c%u read %s at seq %" PRIu64 " (%s) after seq %" PRIu64
                " was acknowledged, every node up and held alive by all since %.3f s",
             c->idx, k->key, seq, err == WIRE_OK ? "found" : "not found", need,
             (double)s->views_full_since / 1e6);
    }
}

/* A REMOVE's answer says what the key held when it ran: NOT_FOUND that it
 * held no value (its last write was a REMOVE, or none), OK that it held
 * one. Checked as a read's answer is (check_read), against the key's
 * writes before this one: a REMOVE run twice (the reply cache skipped)
 * answers NOT_FOUND for the value it removed itself. */
static void check_remove(sim *s, client *c, uint32_t err) {
    keyst *k = c->k;
    if (err != WIRE_OK && err != WIRE_ENOKEY) return;
    if (err == WIRE_OK) {
        /* as a read of a value never written */
        bool put = false;
        for (uint64_t i = 1; i < c->seq && !put; i++) put = !k->w[i].remove;
        if (!put) {
            fail(s, "c%u REMOVE %s seq %" PRIu64 " answered OK: no value was ever written",
                 c->idx, k->key, c->seq);
            return;
        }
    }
    held h = held_at_start(s, c, c->seq);
    uint64_t need = h.need;
    if (!need) return;
    bool stale = err == WIRE_OK ? k->w[need].remove && !h.later_put
                                : !k->w[need].remove && !h.later_remove;
    if (!stale) return;
    /* A REMOVE's NOT_FOUND needs W home replicas' answers (or every
     * target's): they meet the W of the write it missed when 2W > N */
    if (2 * s->cfg.write_quorum <= s->cfg.replicas) h.quorum = false;
    enum miss m = missed(s, k, &h);
    if (m == MISS_EXCUSED) return;
    trace_holders(s, k);
    fail(s, "wrong REMOVE answer: c%u REMOVE %s seq %" PRIu64 " answered %s after seq %" PRIu64
            " (%s) was acknowledged, %s",
         c->idx, k->key, c->seq, err == WIRE_OK ? "OK" : "NOT_FOUND", need,
         k->w[need].remove ? "remove" : "put",
         m == MISS_NO_FAULT ? "no fault since"
                            : "every node up and held alive by all since it began");
}

/* An acknowledged write is held by W nodes (or all, in a smaller cluster)
 * when its acknowledgement reaches the client. */
static void check_copies(sim *s, client *c) {
    keyst *k = c->k;
    if (!s->o.durable && s->mem_crash_at >= k->w[c->seq].start) return; /* data lost on purpose */
    unsigned copies = 0, need = s->cfg.write_quorum < s->o.nodes ? s->cfg.write_quorum : s->o.nodes;
    size_t kl = strlen(k->key);
    /* while every node has held every node alive since the write began, the
     * key's replicas are the same at every coordinator: a stand-in's copy
     * (sloppy quorum, a hint) is not one of the W */
    uint64_t home = ~0ull;
    if (s->views_full_since && s->views_full_since <= k->w[c->seq].start && s->o.nodes <= 64) {
        if (!s->full_ring) {
            ring_node *rn = calloc(s->o.nodes, sizeof *rn);
            s->full_ring = ring_new(s->cfg.vnodes);
            if (!rn || !s->full_ring) abort();
            for (uint32_t i = 0; i < s->o.nodes; i++)
                rn[i] = (ring_node){addr_of(NODE_NET, i, NODE_PORT).sin_addr.s_addr, NODE_PORT};
            if (ring_set_replicas(s->full_ring, s->cfg.replicas) != 0 ||
                ring_build(s->full_ring, rn, s->o.nodes) != 0)
                abort();
            free(rn);
        }
        uint32_t pref[REPL_MAX_N];
        size_t np = ring_slot_lookup(s->full_ring, ring_key_slot(k->key, kl), s->cfg.replicas, pref);
        home = 0;
        for (size_t q = 0; q < np; q++) home |= 1ull << pref[q];
    }
    /* a REMOVE retried for longer than a tombstone lives (short --tombstone-ms,
     * less the clocks' skew now) may find its tombstone collected: a live node
     * holding nothing is a copy */
    uint64_t life_us = (uint64_t)s->cfg.tombstone_ms * 1000, skew_us = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        int64_t sk = s->nodes[i].skew_ms < 0 ? -s->nodes[i].skew_ms : s->nodes[i].skew_ms;
        if ((uint64_t)sk * 1000 > skew_us) skew_us = (uint64_t)sk * 1000;
    }
    bool collected = c->cmd == WIRE_REMOVE &&
                     s->now - k->w[c->seq].start + skew_us > life_us;
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        store_rec r;
        if (!s->nodes[i].st || !(home >> i & 1)) continue;
        if (store_get(s->nodes[i].st, (uint8_t *)k->key, kl, &r) != 0) {
            copies += collected && s->nodes[i].up;
            continue;
        }
        if (c->cmd == WIRE_REMOVE ? r.tomb : !r.tomb && seq_of(k, r.val, r.vlen) == c->seq) copies++;
    }
    if (copies < need) {
        trace_holders(s, k);
        fail(s, "%s of %s seq %" PRIu64 " acknowledged with %u cop%s (W=%u)", wire_cmd_name(c->cmd),
             k->key, c->seq, copies, copies == 1 ? "y" : "ies", s->cfg.write_quorum);
    }
}

static void client_reply(sim *s, client *c, const packet *p) {
    wire_frame f;
    wire_reset(s->arena);
    if (wire_unpack_msg(s->arena, p->data, p->len, &f) != 0 || f.idlen != WIRE_ID_LEN) return;
    bool late = c->state != C_WAIT || memcmp(f.id, c->id, WIRE_ID_LEN) != 0;
    if (late) trace(s, "c%u late reply from n%ld", c->idx, node_at(s, &p->from));
    /* a late reply to the request the client took a reply to last (it has
     * moved on since) is compared with that one below: it used to be
     * dropped unread, and "two different replies" could not fire */
    if (late && (memcmp(f.id, c->id, WIRE_ID_LEN) != 0 || !c->got_reply)) return;
    KVResponse *r = wire_unpack_response(s->arena, f.payload, f.plen);
    if (!r) {
        fail(s, "c%u: undecodable reply", c->idx);
        return;
    }
    /* every reply to one message ID must be the same */
    size_t cmp = f.plen < sizeof c->first_reply ? f.plen : sizeof c->first_reply;
    if (c->got_reply) {
        /* a GET's retries follow the ring (node.c client_request): one
         * forwarded to a node that was slow to answer, and retried where
         * the forwarder then coordinated it, is answered by both */
        if (c->cmd == WIRE_GET && (p->from.sin_addr.s_addr != c->first_from.sin_addr.s_addr ||
                                   p->from.sin_port != c->first_from.sin_port)) {
            trace(s, "c%u late reply to a GET from another coordinator", c->idx);
            return;
        }
        /* "temporary overload" is no answer but a "try again later": one
         * late, from a node that woke from a stall to the request's stale
         * forward, says nothing of what the first reply said (seed 8367) */
        if (r->errcode == WIRE_EOVERLOAD) {
            trace(s, "c%u late overload answer: not compared", c->idx);
            return;
        }
        if (cmp != c->first_len || (cmp && memcmp(c->first_reply, f.payload, cmp) != 0))
            fail(s, "c%u: two different replies to one request (%s %s seq %" PRIu64 ")", c->idx,
                 wire_cmd_name(c->cmd), c->k->key, c->seq);
        return;
    }
    c->got_reply = true;
    c->first_from = p->from;
    if (cmp) memcpy(c->first_reply, f.payload, cmp);
    c->first_len = cmp;
    trace(s, "c%u reply %s %s seq %" PRIu64 ": %s", c->idx, wire_cmd_name(c->cmd), c->k->key,
          c->seq, wire_err_name(r->errcode));
    if (r->errcode == WIRE_EOVERLOAD) {
        /* the protocol's back-off: try again later, same ID */
        c->got_reply = false;
        push(s, s->now + (uint64_t)(r->overloadwaittime > 0 ? r->overloadwaittime : 50) * 1000,
             EV_CLIENT, c->idx, ++c->timer_gen, NULL);
        c->tries = 0;
        return;
    }
    if (c->cmd == WIRE_GET) {
        check_read(s, c, r->errcode, r->value.data, r->value.len);
    } else {
        write_rec *w = &c->k->w[c->seq];
        bool ok = r->errcode == WIRE_OK || (c->cmd == WIRE_REMOVE && r->errcode == WIRE_ENOKEY);
        w->state = ok ? W_ACKED : W_FAILED;
        if (r->errcode == WIRE_EINTERNAL) w->state = W_UNKNOWN; /* may have been applied */
        w->end = s->now;
        if (ok && c->seq > c->k->last_acked) c->k->last_acked = c->seq;
        if (ok) check_copies(s, c);
        if (c->cmd == WIRE_REMOVE) check_remove(s, c, r->errcode);
    }
    if (r->errcode == WIRE_OK || r->errcode == WIRE_ENOKEY) s->ops_ok++;
    else s->ops_err++;
    if (c->final_read) {
        c->state = C_DONE;
        return;
    }
    client_next(s, c);
}

static void client_timer(sim *s, client *c) {
    if (c->state == C_IDLE) {
        client_idle(s, c);
        return;
    }
    if (c->state != C_WAIT) return;
    if (c->got_reply) return;
    if (c->tries < 4) {
        client_send(s, c);
        return;
    }
    trace(s, "c%u gives up %s %s seq %" PRIu64, c->idx, wire_cmd_name(c->cmd), c->k->key, c->seq);
    s->ops_timeout++;
    if (c->cmd != WIRE_GET) c->k->w[c->seq].state = W_UNKNOWN;
    if (c->final_read) {
        c->tries = 0;
        c->timeout_us = 400000;
        c->target = (uint32_t)rng_below(&s->work, s->o.nodes);
        client_send(s, c);
        return;
    }
    client_next(s, c);
}

/* ---- faults ------------------------------------------------------------ */

enum fault {
    F_CRASH, F_PARTITION, F_SKEW, F_STALL, F_LOSS, F_DUP, F_JITTER, F_NFAULTS,
    F_HEAL_PARTITION = 100, F_RESTART, F_HEAL_LOSS, F_HEAL_DUP, F_HEAL_JITTER, F_UNSTALL,
    F_BRIEF_STALLS, F_BRIEF_WAKE, F_ATTACK, F_REPLAY
};

static void fault_begin(sim *s) {
    s->active_faults++;
    s->fault_free_since = 0;
}

static void fault_end(sim *s) {
    s->last_fault_end = s->now;
    if (--s->active_faults == 0) s->fault_free_since = s->now;
}

static void touch_all(sim *s, uint64_t until) {
    for (uint32_t i = 0; i < s->o.nodes; i++)
        if (s->nodes[i].disturbed_until < until) s->nodes[i].disturbed_until = until;
}

/* A fault on every node (partition, loss, dup, jitter) is in force. */
static bool global_fault(const sim *s) {
    return s->partitioned || s->loss > s->o.loss || s->dup > s->o.dup || s->jitter_us;
}

/* A fault on every node has healed: the nodes that no other fault holds
 * are undisturbed from now on. */
static void settle_all(sim *s) {
    if (global_fault(s)) return;
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        simnode *sn = &s->nodes[i];
        if (sn->disturbed_until == UINT64_MAX && sn->up && sn->stalled_until <= s->now)
            sn->disturbed_until = s->now;
    }
}

static unsigned nodes_down(const sim *s) {
    unsigned d = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++) d += !s->nodes[i].up;
    return d;
}

static void fault_fire(sim *s, uint32_t what) {
    rng *r = &s->fault;
    uint32_t n = s->o.nodes;
    switch (what) {
    case F_CRASH: {
        uint32_t i = (uint32_t)rng_below(r, n);
        simnode *sn = &s->nodes[i];
        /* without a data dir a crash loses data: one at a time, and only
         * once the last one has been repaired */
        bool ok = sn->up && nodes_down(s) < (s->o.durable ? (n - 1) / 2 : 1) &&
                  (s->o.durable || !s->mem_crash_at || s->now > s->mem_crash_at + 30000000);
        if (!ok) break;
        if (!s->o.durable) s->mem_crash_at = s->now;
        fault_begin(s);
        sn->disturbed_until = UINT64_MAX;
        node_down(s, sn, "crash");
        push(s, s->now + rng_range(r, 500, s->o.crash_ms) * 1000, EV_FAULT, F_RESTART, i, NULL);
        break;
    }
    case F_PARTITION: {
        if (s->partitioned) break;
        fault_begin(s);
        uint32_t k = 1 + (uint32_t)rng_below(r, n / 2);
        for (uint32_t i = 0; i < n; i++) s->nodes[i].side = 0;
        for (uint32_t j = 0; j < k; j++) s->nodes[rng_below(r, n)].side = 1;
        for (uint32_t j = 0; j < s->o.clients; j++)
            s->clients[j].side = rng_below(r, n) < k ? 1 : 0;
        s->partitioned = true;
        s->oneway = rng_chance(r, 0.3);
        touch_all(s, UINT64_MAX);
        trace(s, "fault: partition %u nodes off%s", k, s->oneway ? " (one way)" : "");
        push(s, s->now + rng_range(r, 500, 10000) * 1000, EV_FAULT, F_HEAL_PARTITION, 0, NULL);
        break;
    }
    case F_HEAL_PARTITION:
        s->partitioned = false;
        touch_all(s, s->now);
        settle_all(s);
        trace(s, "fault: partition healed");
        fault_end(s);
        break;
    case F_SKEW: {
        uint32_t i = (uint32_t)rng_below(r, n);
        int64_t to = (int64_t)rng_below(r, 2 * MAX_SKEW_MS + 1) - MAX_SKEW_MS;
        trace(s, "fault: n%u clock %+" PRId64 " ms -> %+" PRId64 " ms", i, s->nodes[i].skew_ms, to);
        s->nodes[i].skew_ms = to;
        break;
    }
    case F_STALL: {
        uint32_t i = (uint32_t)rng_below(r, n);
        simnode *sn = &s->nodes[i];
        if (!sn->up || sn->stalled_until > s->now) break;
        fault_begin(s);
        uint64_t d = rng_range(r, 50, 3000) * 1000;
        sn->stalled_until = s->now + d;
        sn->disturbed_until = UINT64_MAX;
        trace(s, "fault: n%u stalls %" PRIu64 " ms", i, d / 1000);
        push(s, s->now + d, EV_FAULT, F_UNSTALL, i, NULL);
        break;
    }
    case F_LOSS:
    case F_DUP:
    case F_JITTER: {
        fault_begin(s);
        touch_all(s, UINT64_MAX);
        if (what == F_LOSS) s->loss = (double)rng_range(r, 1, 30) / 100;
        if (what == F_DUP) s->dup = (double)rng_range(r, 1, 20) / 100;
        if (what == F_JITTER) s->jitter_us = rng_range(r, 1000, 50000);
        trace(s, "fault: loss %.2f dup %.2f jitter %" PRIu64 " us", s->loss, s->dup, s->jitter_us);
        push(s, s->now + rng_range(r, 500, 5000) * 1000, EV_FAULT,
             what == F_LOSS ? F_HEAL_LOSS : what == F_DUP ? F_HEAL_DUP : F_HEAL_JITTER, 0, NULL);
        break;
    }
    case F_HEAL_LOSS:
    case F_HEAL_DUP:
    case F_HEAL_JITTER:
        if (what == F_HEAL_LOSS) s->loss = s->o.loss;
        if (what == F_HEAL_DUP) s->dup = s->o.dup;
        if (what == F_HEAL_JITTER) s->jitter_us = 0;
        trace(s, "fault: loss %.2f dup %.2f jitter %" PRIu64 " us", s->loss, s->dup, s->jitter_us);
        touch_all(s, s->now);
        settle_all(s);
        fault_end(s);
        break;
    }
}

static const char *peer_type_name(uint32_t t);

/* --attacker: an outsider who can send any datagram from any address (it
 * spoofs members' addresses too) but holds no key. Every 10-50 ms it sends
 * one node a forged node-to-node message that would, if believed, add a
 * member that is no node, bury a live node at the highest incarnation,
 * store a value no client wrote (stamped a year ahead) or delete a key,
 * make a node answer a client that never asked, or silence a node's
 * gossip. The checks catch each of those; the message is unsealed, sealed
 * with a wrong key, or batched. */
static void attack(sim *s) {
    rng *r = &s->atk;
    uint32_t victim = (uint32_t)rng_below(r, s->o.nodes);
    struct sockaddr_in to = addr_of(NODE_NET, victim, NODE_PORT);
    struct sockaddr_in from = addr_of(NODE_NET, (uint32_t)rng_below(r, s->o.nodes), NODE_PORT);
    uint64_t wall = EPOCH_MS + s->now / 1000;
    Peer p = PEER__INIT;
    Member who = MEMBER__INIT, *whop = &who;
    Record rec = RECORD__INIT, *recp = &rec;
    char val[64];
    uint8_t req[128];
    unsigned kind = (unsigned)rng_below(r, 6);
    switch (kind) {
    case 0: /* a member that is no node, pinging */
        from = addr_of(NODE_NET, s->o.nodes + (uint32_t)rng_below(r, 16), NODE_PORT);
        p.type = PEER_GOSSIP;
        p.flags = PEER_GOSSIP_PROBE;
        who.ip = from.sin_addr.s_addr;
        who.port = NODE_PORT;
        who.incarnation = wall;
        who.heartbeat = 1u << 30;
        p.from = &who;
        break;
    case 1: /* a live node declared dead for good */
        p.type = PEER_GOSSIP;
        who.ip = addr_of(NODE_NET, (uint32_t)rng_below(r, s->o.nodes), NODE_PORT).sin_addr.s_addr;
        who.port = NODE_PORT;
        who.incarnation = UINT64_MAX - 1;
        who.heartbeat = UINT64_MAX - 1;
        who.state = MEMBER_DEAD;
        p.n_members = 1;
        p.members = &whop;
        break;
    case 2:   /* a value no client wrote, or a tombstone, a year ahead */
    case 3: { /* the same pushed as anti-entropy */
        if (!s->nkeys) return;
        keyst *k = &s->keys[rng_below(r, s->nkeys)];
        p.type = kind == 2 ? PEER_WRITE : PEER_SYNC;
        rec.key.data = (uint8_t *)k->key;
        rec.key.len = strlen(k->key);
        rec.tombstone = rng_chance(r, 0.3);
        int vl = value_of(k, k->nw + 1000, val);
        rec.value.data = (uint8_t *)val;
        rec.value.len = rec.tombstone ? 0 : (size_t)vl;
        rec.stamp = (wall + 365ull * 86400 * 1000) << 16;
        p.n_records = 1;
        p.records = &recp;
        break;
    }
    case 4: { /* serve a PUT for a client that never sent it */
        if (!s->nkeys || !s->o.clients) return;
        keyst *k = &s->keys[rng_below(r, s->nkeys)];
        client *c = &s->clients[rng_below(r, s->o.clients)];
        int vl = value_of(k, k->nw + 1000, val);
        uint8_t id[WIRE_ID_LEN];
        for (size_t i = 0; i < sizeof id; i++) id[i] = (uint8_t)rng_next(r);
        size_t rl = wire_request(req, sizeof req, id, WIRE_PUT, k->key, strlen(k->key), val,
                                 (size_t)vl, 0);
        /* the request bytes are the payload of that Msg: take them out */
        wire_frame f;
        if (!rl || wire_unpack_msg(s->arena, req, rl, &f) != 0) return;
        p.type = PEER_FORWARD;
        p.client_ip = c->addr.sin_addr.s_addr;
        p.client_port = CLIENT_PORT;
        p.request.data = (uint8_t *)f.payload;
        p.request.len = f.plen;
        break;
    }
    default: /* silence a node */
        p.type = PEER_DEBUG;
        p.flags = PEER_DEBUG_PAUSE_GOSSIP;
        p.bucket = 600000;
        break;
    }
    uint8_t id[WIRE_ID_LEN], buf[4096], out[4096];
    for (size_t i = 0; i < sizeof id; i++) id[i] = (uint8_t)rng_next(r);
    size_t len = wire_pack(buf, sizeof buf - AUTH_SEAL_LEN, id, sizeof id, &p.base, WIRE_KIND_PEER);
    if (!len) return;
    unsigned how = (unsigned)rng_below(r, 3);
    if (how == 1) { /* sealed, with a key of its own */
        auth_keys k = {.n = 1};
        for (size_t i = 0; i < AUTH_KEY_LEN; i++) k.key[0][i] = (uint8_t)rng_next(r);
        len = auth_seal(&k, buf, len, sizeof buf, wall, false);
    } else if (how == 2) { /* in a batch */
        size_t h = wire_put_varint(out, len);
        memcpy(out + h, buf, len);
        len = wire_pack_msg(buf, sizeof buf, id, sizeof id, out, h + len, WIRE_KIND_BATCH);
    }
    if (!len) return;
    s->forged++;
    char a[32], b[32];
    trace(s, "attacker: %s>%s forged %s (%s)", who_str(s, &from, a), who_str(s, &to, b),
          peer_type_name(p.type), how == 0 ? "unsealed" : how == 1 ? "wrong key" : "batched");
    net_send(s, &from, &to, buf, len);
}

/* Whether a datagram holds a node-to-node message of that type (alone or
 * in a batch): a forwarded client request, a GOSSIP. */
static bool holds_peer(sim *s, const uint8_t *buf, size_t len, uint32_t type) {
    wire_frame f;
    wire_reset(s->arena);
    if (wire_unpack_msg(s->arena, buf, len, &f) != 0) return false;
    if (f.kind == WIRE_KIND_PEER) {
        Peer *p = wire_unpack_peer(s->arena, f.payload, f.plen);
        return p && p->type == type;
    }
    if (f.kind != WIRE_KIND_BATCH) return false;
    const uint8_t *q = f.payload, *end = f.payload + f.plen, *fr;
    size_t flen;
    while (wire_batch_next(&q, end, &fr, &flen) == 1) {
        wire_frame one;
        if (wire_unpack_batched(fr, flen, &one) != 0 || one.kind != WIRE_KIND_PEER) continue;
        Peer *p = wire_unpack_peer(s->arena, one.payload, one.plen);
        if (p && p->type == type) return true;
    }
    return false;
}

/* --replayer: an outsider on the nodes' network records what they send each
 * other (sealed: it cannot forge, README "Left open") and sends it again,
 * seconds later, to any node from any node's address. What a recorded
 * datagram carries is to be ordered by stamps and incarnations, or, for a
 * forwarded client request, answered from the reply cache: a replay must
 * change no data and no view. Every forwarded request it sees is kept, and
 * one datagram in 64 of the rest, REPLAY_KEEP of each, the oldest replaced
 * at random.
 *
 * --replayer-cover: it also keeps one forward in REPLAY_KEEP_BACK from
 * coming (returns true: it is not sent on), and a forward it sends again
 * comes half the time right after the last GOSSIP its sender sent before
 * it, sent again too: by that GOSSIP's clock the forward is not late. A
 * forward that never came, its sender's last to that node, ran so. */
#define REPLAY_KEEP_BACK 16
static bool record(sim *s, const struct sockaddr_in *from, const struct sockaddr_in *to,
                   const uint8_t *buf, size_t len) {
    if (len > REPLAY_BYTES || node_at(s, to) < 0) return false;
    int kind = holds_peer(s, buf, len, PEER_FORWARD) ? 0 : 1;
    int sender = node_at(s, from);
    if (s->o.cover && kind == 1 && sender >= 0 && holds_peer(s, buf, len, PEER_GOSSIP)) {
        if (!s->last_gossip && !(s->last_gossip = calloc(s->o.nodes, sizeof *s->last_gossip)))
            abort();
        s->last_gossip[sender].len = len;
        memcpy(s->last_gossip[sender].data, buf, len);
    }
    if (kind == 1 && rng_below(&s->rep, REPLAY_SAMPLE) != 0) return false;
    if (!s->recorded[kind] && !(s->recorded[kind] = calloc(REPLAY_KEEP, sizeof *s->recorded[kind])))
        abort();
    size_t i = s->nrecorded[kind] < REPLAY_KEEP ? s->nrecorded[kind]++
                                                : (size_t)rng_below(&s->rep, REPLAY_KEEP);
    struct recorded *r = &s->recorded[kind][i];
    r->at = s->now;
    r->from = *from;
    r->to = *to;
    r->len = len;
    memcpy(r->data, buf, len);
    r->cover_len = 0;
    if (!s->o.cover || kind != 0) return false;
    if (sender >= 0 && s->last_gossip && s->last_gossip[sender].len) {
        r->cover_len = s->last_gossip[sender].len;
        memcpy(r->cover, s->last_gossip[sender].data, r->cover_len);
    }
    if (rng_below(&s->cov, REPLAY_KEEP_BACK) != 0) return false;
    s->kept_back++;
    char a[32], b[32];
    trace(s, "replayer: %s>%s forward kept from coming", who_str(s, from, a), who_str(s, to, b));
    return true;
}

/* Sends one recorded datagram again: to where it went or to another node,
 * from its sender's address or another node's. */
static void replay(sim *s) {
    rng *r = &s->rep;
    int kind = rng_chance(r, 0.5) ? 0 : 1;
    if (!s->nrecorded[kind]) kind ^= 1;
    if (!s->nrecorded[kind]) return;
    const struct recorded *d = &s->recorded[kind][rng_below(r, s->nrecorded[kind])];
    struct sockaddr_in to = d->to, from = d->from;
    if (rng_chance(r, 0.3)) to = addr_of(NODE_NET, (uint32_t)rng_below(r, s->o.nodes), NODE_PORT);
    if (rng_chance(r, 0.3)) from = addr_of(NODE_NET, (uint32_t)rng_below(r, s->o.nodes), NODE_PORT);
    s->replayed++;
    char a[32], b[32];
    if (kind == 0 && d->cover_len && rng_chance(&s->cov, 0.5)) {
        trace(s, "replayer: %s>%s again, its sender's GOSSIP before it", who_str(s, &from, a),
              who_str(s, &to, b));
        net_send(s, &from, &to, d->cover, d->cover_len);
    }
    trace(s, "replayer: %s>%s again, %s recorded %" PRIu64 " ms ago", who_str(s, &from, a),
          who_str(s, &to, b), kind == 0 ? "a forward" : "a datagram", (s->now - d->at) / 1000);
    net_send(s, &from, &to, d->data, d->len);
}

static void fault_event(sim *s, uint32_t what, uint64_t arg) {
    if (what == F_RESTART || what == F_UNSTALL) {
        simnode *sn = &s->nodes[arg];
        if (what == F_RESTART) {
            sn->restarts++;
            trace(s, "fault: n%u restarts", sn->idx);
            node_up(s, sn);
        } else {
            trace(s, "fault: n%u wakes", sn->idx);
            schedule_tick(s, sn, s->now / 1000);
        }
        /* a partition (or loss, dup, jitter) still in force still touches
         * it: settle_all marks it undisturbed when that heals */
        sn->disturbed_until = global_fault(s) ? UINT64_MAX : s->now;
        fault_end(s);
        return;
    }
    if (what == F_BRIEF_STALLS) {
        /* --stalls: every BRIEF_STALL_MS each node stalls for as long with
         * probability --stalls: the load of a busy machine, not a fault (a
         * node declared dead for it is a false verdict) */
        if (s->now >= s->faults_end) return;
        for (uint32_t i = 0; i < s->o.nodes; i++) {
            simnode *sn = &s->nodes[i];
            if (!sn->up || sn->stalled_until + BRIEF_STALL_MS * 1000 > s->now ||
                !rng_chance(&s->fault, s->o.stalls))
                continue; /* not one stall right after another */
            sn->stalled_until = s->now + BRIEF_STALL_MS * 1000;
            trace(s, "n%u stalls %u ms", i, BRIEF_STALL_MS);
            push(s, sn->stalled_until, EV_FAULT, F_BRIEF_WAKE, i, NULL);
        }
        push(s, s->now + BRIEF_STALL_MS * 1000, EV_FAULT, F_BRIEF_STALLS, 0, NULL);
        return;
    }
    if (what == F_REPLAY) {
        replay(s);
        push(s, s->now + rng_range(&s->rep, 10, 50) * 1000, EV_FAULT, F_REPLAY, 0, NULL);
        return;
    }
    if (what == F_ATTACK) {
        if (s->now >= s->faults_end) return;
        attack(s);
        push(s, s->now + rng_range(&s->atk, 10, 50) * 1000, EV_FAULT, F_ATTACK, 0, NULL);
        return;
    }
    if (what == F_BRIEF_WAKE) {
        trace(s, "n%" PRIu64 " wakes", arg);
        schedule_tick(s, &s->nodes[arg], s->now / 1000);
        return;
    }
    if (what == F_NFAULTS) { /* the next random fault */
        if (s->now >= s->faults_end) return;
        uint32_t f = (uint32_t)rng_below(&s->fault, F_NFAULTS);
        if (s->o.fault_mask & (1u << f)) fault_fire(s, f);
        push(s, s->now + rng_range(&s->fault, 200, 4000) * 1000, EV_FAULT, F_NFAULTS, 0, NULL);
        return;
    }
    fault_fire(s, what);
}

/* ---- what a datagram says, for the trace ------------------------------- */

static const char *peer_type_name(uint32_t t) {
    static const char *names[] = {"?", "GOSSIP", "FORWARD", "WRITE", "WRITE_ACK", "READ",
                                  "READ_REPLY", "SYNC", "DIGEST", "DEBUG"};
    return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static size_t describe_peer(const uint8_t *payload, size_t plen, char *out, size_t cap) {
    wire_arena *a = wire_arena_new();
    Peer *p = a ? wire_unpack_peer(a, payload, plen) : NULL;
    size_t k = 0;
    if (!p) {
        k = (size_t)snprintf(out, cap, " bad-peer");
    } else if (p->type == PEER_WRITE || p->type == PEER_READ_REPLY || p->type == PEER_SYNC) {
        k = (size_t)snprintf(out, cap, " %s", peer_type_name(p->type));
        for (size_t i = 0; i < p->n_records && i < 4 && k < cap; i++)
            k += (size_t)snprintf(out + k, cap - k, " %.*s%s@%016" PRIx64,
                                  (int)p->records[i]->key.len, p->records[i]->key.data,
                                  p->records[i]->tombstone ? "(tomb)" : "",
                                  p->records[i]->stamp);
        if (p->n_records > 4 && k < cap) k += (size_t)snprintf(out + k, cap - k, " +%zu", p->n_records - 4);
        if (p->err && k < cap) k += (size_t)snprintf(out + k, cap - k, " err %u", p->err);
    } else if (p->type == PEER_WRITE_ACK) {
        k = (size_t)snprintf(out, cap, " WRITE_ACK err %u stamp %016" PRIx64, p->err, p->stamp);
    } else if (p->type == PEER_READ) {
        k = (size_t)snprintf(out, cap, " READ %.*s", (int)p->key.len, p->key.data);
    } else {
        k = (size_t)snprintf(out, cap, " %s", peer_type_name(p->type));
    }
    wire_arena_free(a);
    return k < cap ? k : cap;
}

/* A short description of a datagram: client request or reply, or the
 * node-to-node messages in it. */
static void describe(const uint8_t *buf, size_t len, char *out, size_t cap) {
    wire_arena *a = wire_arena_new();
    wire_frame f;
    out[0] = 0;
    if (!a || wire_unpack_msg(a, buf, len, &f) != 0) {
        snprintf(out, cap, " malformed");
    } else if (f.kind == WIRE_KIND_PEER) {
        describe_peer(f.payload, f.plen, out, cap);
    } else if (f.kind == WIRE_KIND_BATCH && f.plen) {
        const uint8_t *p = f.payload, *end = f.payload + f.plen, *frame;
        size_t flen, k = (size_t)snprintf(out, cap, " batch[");
        while (k < cap && wire_batch_next(&p, end, &frame, &flen) == 1) {
            wire_frame g;
            if (wire_unpack_msg(a, frame, flen, &g) == 0)
                k += describe_peer(g.payload, g.plen, out + k, cap - k);
        }
        if (k < cap) snprintf(out + k, cap - k, " ]");
    }
    wire_arena_free(a);
}

/* ---- the run ------------------------------------------------------------ */

static void deliver(sim *s, packet *p) {
    long i = node_at(s, &p->to);
    if (i >= 0) {
        simnode *sn = &s->nodes[i];
        if (!sn->up) { /* lost with the node */
            free(p);
            return;
        }
        if (sn->stalled_until > s->now) { /* held in the socket buffer, read */
            push(s, sn->stalled_until + 1, EV_DELIVER, 0, 0, p); /* after the wake's tick */
            return;
        }
        char a[32], what[400] = "";
        if (s->o.trace) describe(p->data, p->len, what, sizeof what);
        trace(s, "n%ld <%s %zu %016" PRIx64 "%s", i, who_str(s, &p->from, a), p->len,
              XXH3_64bits(p->data, p->len), what);
        node_receive(sn->n, &p->from, p->data, p->len);
        after_call(s, sn);
    } else if ((i = client_at(s, &p->to)) >= 0) {
        client_reply(s, &s->clients[i], p);
    }
    free(p);
}

static void run_event(sim *s, event *e) {
    s->events++;
    switch (e->kind) {
    case EV_DELIVER: deliver(s, e->p); break;
    case EV_TICK: {
        simnode *sn = &s->nodes[e->who];
        if (!sn->up || e->gen != sn->tick_gen) break;
        if (sn->stalled_until > s->now) break; /* the wake-up ticks it */
        sn->tick_at = 0;
        after_call(s, sn);
        break;
    }
    case EV_CLIENT: {
        client *c = &s->clients[e->who];
        if (e->gen == c->timer_gen) client_timer(s, c);
        break;
    }
    case EV_FAULT: fault_event(s, e->who, e->gen); break;
    }
}

static size_t membership_disagreements(sim *s, bool report);

/* Follows -MOVED (repl_slot_redirect, as resp.c answers a Redis Cluster
 * client) for hash slot `slot` from node i: the nodes visited until one
 * serves it or names a node that is down (the client would fail to connect
 * and ask for the slots again); -1 when the redirections go round in a
 * circle (more hops than nodes). */
static int redirect_hops(sim *s, unsigned slot, uint32_t i) {
    for (int hops = 0; hops <= (int)s->o.nodes; hops++) {
        simnode *sn = &s->nodes[i];
        if (!sn->up || !sn->n) return hops;
        long to = repl_slot_redirect(sn->n, slot, false);
        if (to < 0) return hops;
        long j = node_at(s, &members_at(sn->n->members, (size_t)to)->addr);
        if (j < 0) return hops;
        i = (uint32_t)j;
    }
    return -1;
}

/* Every 200 ms: 16 slots (all of them every 205 s), from every node up. A
 * circle once the membership has been agreed for twice the nodes' settle
 * time fails the run; before that it is counted. Reads the nodes' state
 * only: no event, no random number, so a seed's run is the same with or
 * without it. */
static void route_check(sim *s) {
    s->next_route = s->now + 200000;
    if (!s->o.nodes || !s->nodes[0].n) return;
    bool agreed = membership_disagreements(s, false) == 0;
    if (!agreed) s->agreed_since = 0;
    else if (!s->agreed_since) s->agreed_since = s->now;
    uint64_t settle_us = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++)
        if (s->nodes[i].up && s->nodes[i].n) {
            uint64_t w = members_settle_ms(s->nodes[i].n->members) * 1000;
            if (w > settle_us) settle_us = w;
        }
    bool calm = s->agreed_since && s->now >= s->agreed_since + 2 * settle_us;
    for (unsigned j = 0; j < 16; j++) {
        unsigned slot = (unsigned)((s->route_checks * 16 + j) * 509 % RING_SLOTS);
        for (uint32_t i = 0; i < s->o.nodes; i++) {
            if (!s->nodes[i].up || redirect_hops(s, slot, i) >= 0) continue;
            s->route_loops++;
            if (calm)
                fail(s, "a Redis Cluster client sent round in a circle by -MOVED for slot %u from "
                     "n%u, the membership agreed for %.1f s", slot, i,
                     (double)(s->now - s->agreed_since) / 1e6);
            else
                trace(s, "-MOVED for slot %u goes round in a circle from n%u (views differ)", slot, i);
            break; /* one a slot */
        }
    }
    s->route_checks++;
}

/* Runs the next event if one is due by `until`; false when none is. */
static bool step(sim *s, uint64_t until) {
    if (!s->nheap || s->heap[0].t > until) return false;
    event e = pop(s);
    s->now = e.t;
    run_event(s, &e);
    if (s->now >= s->next_route && !s->o.members_only) route_check(s);
    return true;
}

/* Runs the events due by t, then moves the clock to t; never back (the
 * nodes' clock is monotonic: after membership took longer than 2 s to agree
 * the clock went back to 2 s after the heal, and nodes logged stalls of
 * 2^64 - x ms). */
static void run_until(sim *s, uint64_t t) {
    while (step(s, t)) {}
    if (s->now < t) s->now = t;
}

/* Every key's replicas (by a ring of all nodes that are up) hold the newest
 * stamp any node holds. Returns the number of keys that differ. */
static size_t divergent_keys(sim *s, bool report) {
    ring *g = ring_new(s->cfg.vnodes);
    ring_node *rn = calloc(s->o.nodes, sizeof *rn);
    uint32_t *map = calloc(s->o.nodes, sizeof *map);
    size_t k = 0, bad = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++)
        if (s->nodes[i].up) {
            struct sockaddr_in a = addr_of(NODE_NET, i, NODE_PORT);
            rn[k] = (ring_node){a.sin_addr.s_addr, NODE_PORT};
            map[k++] = i;
        }
    if (!g || ring_set_replicas(g, s->cfg.replicas) != 0 || ring_build(g, rn, k) != 0) abort();
    for (size_t j = 0; j < s->nkeys; j++) {
        keyst *ks = &s->keys[j];
        size_t kl = strlen(ks->key);
        uint64_t newest = 0;
        for (uint32_t i = 0; i < s->o.nodes; i++) {
            store_rec r;
            if (s->nodes[i].up && store_get(s->nodes[i].st, (uint8_t *)ks->key, kl, &r) == 0 &&
                r.stamp > newest)
                newest = r.stamp;
        }
        if (!newest) continue;
        uint32_t pref[REPL_MAX_N];
        size_t np = ring_slot_lookup(g, ring_key_slot(ks->key, kl), s->cfg.replicas, pref);
        for (size_t q = 0; q < np; q++) {
            store_rec r;
            simnode *sn = &s->nodes[map[pref[q]]];
            if (store_get(sn->st, (uint8_t *)ks->key, kl, &r) != 0 || r.stamp != newest) {
                if (report)
                    fail(s, "not converged: replica n%u of %s lacks its newest record", sn->idx,
                         ks->key);
                bad++;
                break;
            }
        }
    }
    ring_free(g);
    free(rn);
    free(map);
    return bad;
}

/* Up nodes that some up node does not hold alive. */
static size_t membership_disagreements(sim *s, bool report) {
    size_t bad = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        if (!s->nodes[i].up) continue;
        for (uint32_t j = 0; j < s->o.nodes; j++) {
            if (i == j || !s->nodes[j].up) continue;
            struct sockaddr_in a = addr_of(NODE_NET, j, NODE_PORT);
            long k = members_find(s->nodes[i].n->members, a.sin_addr.s_addr, NODE_PORT);
            int st = k < 0 ? MEMBER_DEAD : members_at(s->nodes[i].n->members, (size_t)k)->state;
            if (st == MEMBER_ALIVE) continue;
            if (report && bad < 5)
                fail(s, "n%u holds live n%u %s after every fault healed", i, j,
                     members_state_name(st));
            bad++;
        }
        /* an address of another node is no member (members.h: aliases) */
        for (uint32_t j = 0; j < s->o.aliases; j++) {
            struct sockaddr_in a = alias_of(j);
            long k = members_find(s->nodes[i].n->members, a.sin_addr.s_addr, NODE_PORT);
            int st = k < 0 ? MEMBER_DEAD : members_at(s->nodes[i].n->members, (size_t)k)->state;
            if (st >= MEMBER_DEAD) continue;
            if (report && bad < 5)
                fail(s, "n%u holds n%u's other address as a member (%s) after every fault healed",
                     i, j, members_state_name(st));
            bad++;
        }
    }
    return bad;
}

/* After --attacker: no node holds a member that is no node, and none took
 * a forged datagram for a member's (each was dropped as unsealed). */
static void check_attacked(sim *s) {
    uint64_t dropped = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        node *n = s->nodes[i].n;
        if (!n) continue;
        dropped += n->stats.dropped_unsealed + n->stats.dropped_outsider;
        for (size_t m = 1; m < members_total(n->members); m++) {
            const member *e = members_at(n->members, m);
            if (e->state == MEMBER_GONE || e->ip == 0) continue;
            long j = node_at(s, &e->addr);
            if (j < 0) {
                char a[32];
                fail(s, "n%u holds %s, no node, as a member (%s)", i, who_str(s, &e->addr, a),
                     members_state_name(e->state));
                break;
            }
        }
    }
    trace(s, "attacker: %" PRIu64 " forged datagrams sent, %" PRIu64 " dropped by the nodes",
          s->forged, dropped);
    if (!s->o.no_key && s->forged > 100 && dropped == 0)
        fail(s, "the attacker's datagrams never reached a node");
}

static void final_reads(sim *s) {
    s->final_phase = true;
    for (uint32_t i = 0; i < s->o.clients; i++) s->clients[i].timer_gen++;
    /* one client at a time reads each key back */
    for (size_t j = 0; j < s->nkeys; j++) {
        client *c = &s->clients[j / s->o.keys_per_client];
        c->k = &s->keys[j];
        c->final_read = true;
        client_start(s, c, WIRE_GET);
        uint64_t until = s->now + 30000000;
        while (c->state == C_WAIT && step(s, until)) {}
        if (c->state == C_WAIT) fail(s, "final read of %s got no answer in 30 s", s->keys[j].key);
        c->state = C_DONE;
        c->timer_gen++;
    }
}

static const char *fmt_secs(uint64_t us, char *buf) {
    if (us) sprintf(buf, "%.2f", (double)us / 1e6);
    else strcpy(buf, "(never)");
    return buf;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "median m s, all x s" of the times others took to see the killed node
 * dead (or back); "(never)" when one never did. */
static const char *fmt_spread(const sim *s, const uint64_t *t, char *buf) {
    uint32_t n = s->o.nodes, k = 0;
    uint64_t *v = malloc(n * sizeof *v);
    for (uint32_t i = 0; v && i < n; i++)
        if (i != s->killed) v[k++] = t[i] ? t[i] : UINT64_MAX;
    if (!v || !k) {
        strcpy(buf, "(none)");
    } else {
        qsort(v, k, sizeof *v, cmp_u64);
        char a[32], b[32];
        sprintf(buf, "median %s s, all %s s", fmt_secs(v[k / 2] == UINT64_MAX ? 0 : v[k / 2], a),
                fmt_secs(v[k - 1] == UINT64_MAX ? 0 : v[k - 1], b));
    }
    free(v);
    return buf;
}

static uint32_t count_set(const sim *s, const uint64_t *t) {
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++) k += t[i] != 0;
    return k;
}

static void sent_totals(const sim *s, uint64_t *bytes, uint64_t *msgs) {
    *bytes = *msgs = 0;
    for (uint32_t i = 0; i < s->o.nodes; i++) {
        *bytes += s->nodes[i].bytes_sent;
        *msgs += s->nodes[i].msgs_sent;
    }
}

static int run(const options *o, uint64_t seed, uint64_t *digest_out, bool report) {
    sim *s = calloc(1, sizeof *s);
    S = s;
    s->o = *o;
    s->seed = seed;
    s->digest = XXH64_createState();
    XXH64_reset(s->digest, 0);
    s->ring_lines = calloc(TRACE_KEEP, sizeof *s->ring_lines);
    if (!s->ring_lines) abort();
    s->arena = wire_arena_new();
    rng master;
    rng_seed(&master, seed);
    rng_seed(&s->net, rng_next(&master));
    rng_seed(&s->work, rng_next(&master));
    rng_seed(&s->fault, rng_next(&master));
    node_defaults(&s->cfg);
    s->cfg.port = NODE_PORT;
    s->cfg.resp_port = 6379; /* gossiped: route_check's -MOVED go to nodes with one */
    s->cfg.quiet = !o->verbose;
    s->cfg.vnodes = o->vnodes;
    if (o->tombstone_ms) s->cfg.tombstone_ms = o->tombstone_ms;
    if (o->forget_ms) s->cfg.forget_ms = o->forget_ms;
    if (o->sync_ms) s->cfg.sync_ms = o->sync_ms;
    s->cfg.replicas = o->replicas;
    s->cfg.write_quorum = o->wq;
    s->cfg.read_quorum = o->rq;
    if (o->members_only) s->cfg.sync_ms = 3600 * 1000; /* count gossip alone */
    /* The checker wants no acknowledged write lost whatever the clocks: the
     * nodes run with writes refused on a minority side (--majority-ms); with
     * --available both sides take writes, as dht-server does by default. */
    s->cfg.majority_ms = o->available ? 0 : 60000;
    if (!o->no_key) { /* drawn aside from the master stream: seeds replay as before */
        uint64_t x = seed ^ 0x6b65796b65796b65ull;
        s->cluster_key.n = 1;
        for (size_t i = 0; i < AUTH_KEY_LEN; i += 8) {
            uint64_t v = splitmix(&x);
            memcpy(s->cluster_key.key[0] + i, &v, 8);
        }
        auth_keys_ready(&s->cluster_key);
        s->cfg.keys = &s->cluster_key;
    }
    s->loss = o->loss;
    s->dup = o->dup;
    s->fault_free_since = 1;
    trace(s, "seed %" PRIu64 ": %u nodes, %u clients, %u s%s%s", seed, o->nodes, o->clients,
          o->duration_s, o->faults ? ", faults" : "", o->durable ? ", durable stores" : "");

    s->nodes = calloc(o->nodes, sizeof *s->nodes);
    s->clients = calloc(o->clients ? o->clients : 1, sizeof *s->clients);
    s->nkeys = (size_t)o->clients * o->keys_per_client;
    s->keys = calloc(s->nkeys ? s->nkeys : 1, sizeof *s->keys);
    for (uint32_t i = 0; i < o->nodes; i++) {
        simnode *sn = &s->nodes[i];
        sn->idx = i;
        rng_seed(&sn->r, rng_next(&master));
        if (o->faults) sn->skew_ms = (int64_t)rng_below(&master, 2001) - 1000;
    }
    /* nodes start within the first 100 ms, in time order (a node's clock
     * never goes back) */
    uint64_t *start = malloc(o->nodes * sizeof *start);
    if (!start) abort();
    for (uint32_t i = 0; i < o->nodes; i++) start[i] = rng_below(&master, 100000) << 32 | i;
    qsort(start, o->nodes, sizeof *start, cmp_u64);
    for (uint32_t k = 0; k < o->nodes; k++) {
        run_until(s, start[k] >> 32);
        node_up(s, &s->nodes[start[k] & 0xFFFFFFFFu]);
    }
    free(start);
    for (size_t j = 0; j < s->nkeys; j++)
        snprintf(s->keys[j].key, sizeof s->keys[j].key, "k%zu", j);
    uint64_t warmup = 3000000;
    s->faults_end = warmup + (uint64_t)o->duration_s * 1000000;
    for (uint32_t i = 0; i < o->clients; i++) {
        client *c = &s->clients[i];
        c->idx = i;
        c->addr = addr_of(CLIENT_NET, i, CLIENT_PORT);
        c->state = C_IDLE;
        push(s, warmup + rng_below(&s->work, 100000), EV_CLIENT, i, ++c->timer_gen, NULL);
    }
    if (o->faults) push(s, warmup + 1000000, EV_FAULT, F_NFAULTS, 0, NULL);
    if (o->stalls > 0) push(s, warmup, EV_FAULT, F_BRIEF_STALLS, 0, NULL);
    if (o->attacker) {
        rng_seed(&s->atk, seed ^ 0x61747461636b6572ull);
        push(s, warmup / 2, EV_FAULT, F_ATTACK, 0, NULL);
    }
    if (o->replayer) {
        rng_seed(&s->rep, seed ^ 0x7265706c61796572ull);
        rng_seed(&s->cov, seed ^ 0x636f766572ull);
        push(s, warmup, EV_FAULT, F_REPLAY, 0, NULL);
    }

    if ((o->members_only || o->stall_one_ms) && o->kill_at_s) {
        s->kill_at = (uint64_t)o->kill_at_s * 1000000;
        s->killed = rng_below(&master, o->nodes);
    }
    if (s->kill_at && o->stall_one_ms) {
        /* --stall-one: the node stalls instead of dying, and comes back
         * with its records: how many records move meanwhile? */
        s->detected = calloc(o->nodes, sizeof *s->detected);
        s->joined = calloc(o->nodes, sizeof *s->joined);
        run_until(s, s->kill_at);
        simnode *sn = &s->nodes[s->killed];
        s->repushed_before = s->repushed;
        for (uint32_t i = 0; i < o->nodes; i++)
            if (s->nodes[i].n) s->repushed_before += s->nodes[i].n->stats.repushed;
        fault_begin(s);
        sn->stalled_until = s->now + (uint64_t)o->stall_one_ms * 1000;
        sn->disturbed_until = UINT64_MAX;
        trace(s, "n%u stalls %u ms (--stall-one)", sn->idx, o->stall_one_ms);
        push(s, sn->stalled_until, EV_FAULT, F_UNSTALL, s->killed, NULL);
        s->rejoin_at = sn->stalled_until;
        if (s->faults_end < s->rejoin_at + 5000000) s->faults_end = s->rejoin_at + 5000000;
    } else if (s->kill_at) {
        s->detected = calloc(o->nodes, sizeof *s->detected);
        s->joined = calloc(o->nodes, sizeof *s->joined);
        uint64_t b0, m0, b1, m1;
        s->steady_us = s->kill_at / 2 < 10000000 ? s->kill_at / 2 : 10000000;
        run_until(s, s->kill_at - s->steady_us);
        sent_totals(s, &b0, &m0);
        run_until(s, s->kill_at);
        sent_totals(s, &b1, &m1);
        s->steady_bytes = b1 - b0;
        s->steady_msgs = m1 - m0;
        node_down(s, &s->nodes[s->killed], "killed");
        s->nodes[s->killed].disturbed_until = UINT64_MAX;
        s->rejoin_at = s->kill_at + 10000000;
        if (s->faults_end < s->rejoin_at + 5000000) s->faults_end = s->rejoin_at + 5000000;
        run_until(s, s->rejoin_at);
        node_up(s, &s->nodes[s->killed]);
        s->nodes[s->killed].disturbed_until = s->now;
    }
    run_until(s, s->faults_end);
    /* heal everything */
    s->faults_end = s->now;
    while (s->active_faults && step(s, UINT64_MAX)) {}
    trace(s, "all faults healed");
    uint64_t healed = s->now;
    /* every node holds every live node alive within 10 s of the heal */
    while (s->now < healed + 10000000 && membership_disagreements(s, false))
        run_until(s, s->now + 100000);
    if (membership_disagreements(s, false)) membership_disagreements(s, true);
    else trace(s, "membership agreed %.1f s after the heal", (double)(s->now - healed) / 1e6);
    if (!o->members_only) {
        run_until(s, healed + 2000000);
        /* with W + R <= N a read may come from a replica not repaired yet:
         * the final reads wait until the replicas have converged */
        if (reads_consistent(s)) final_reads(s);
        /* converged within quiet_s of the heal? */
        uint64_t bound = healed + (uint64_t)o->quiet_s * 1000000;
        while (s->now < bound && divergent_keys(s, false)) run_until(s, s->now + 1000000);
        if (divergent_keys(s, false)) divergent_keys(s, true);
        else trace(s, "converged %.1f s after the heal", (double)(s->now - healed) / 1e6);
        if (!reads_consistent(s)) final_reads(s);
    }
    if (o->attacker) check_attacked(s);
    if (o->replayer)
        trace(s, "replayer: %" PRIu64 " datagrams sent again, %" PRIu64 " forwards kept back",
              s->replayed, s->kept_back);
    uint64_t d = XXH64_digest(s->digest);
    if (digest_out) *digest_out = d;
    int rc = s->failures ? 1 : 0;
    if (report) {
        uint64_t bytes = 0, msgs = 0;
        for (uint32_t i = 0; i < o->nodes; i++) {
            bytes += s->nodes[i].bytes_sent;
            msgs += s->nodes[i].msgs_sent;
        }
        double secs = (double)s->now / 1e6;
        uint64_t repushed = s->repushed;
        for (uint32_t i = 0; i < o->nodes; i++)
            if (s->nodes[i].n) repushed += s->nodes[i].n->stats.repushed;
        char d1[96], d2[96];
        printf("seed %" PRIu64 ": %s, %.1f s simulated, %" PRIu64 " events, trace %016" PRIx64
               ", ops ok %" PRIu64 " err %" PRIu64 " timeout %" PRIu64 ", reads checked %" PRIu64
               ", node bytes/s %.0f per node (%.1f msgs/s), records re-pushed %" PRIu64
               ", redirect loops %" PRIu64 ", quorum reads checked under faults %" PRIu64 "\n",
               seed, rc ? "FAILED" : "ok", secs, s->events, d, s->ops_ok, s->ops_err,
               s->ops_timeout, s->reads_checked, (double)bytes / secs / o->nodes,
               (double)msgs / secs / o->nodes, repushed, s->route_loops, s->reads_quorum_checked);
        if (o->stall_one_ms && s->kill_at)
            printf("stall: n%" PRIu64 " stalled %u ms at %u s; seen dead by %u others; back alive "
                   "at the others after %s of its waking; records re-pushed since the stall %" PRIu64
                   "\n",
                   s->killed, o->stall_one_ms, o->kill_at_s, count_set(s, s->detected),
                   fmt_spread(s, s->joined, d1), repushed - s->repushed_before);
        else if (o->members_only && s->kill_at)
            printf("members: %u nodes, %.0f bytes/s and %.1f datagrams/s of gossip per node "
                   "(the %.0f s before the kill; %.0f and %.1f over the run); killed n%" PRIu64
                   " seen dead by the others after %s; restarted, seen alive after %s; %" PRIu64
                   " false dead verdicts\n",
                   o->nodes, (double)s->steady_bytes / ((double)s->steady_us / 1e6) / o->nodes,
                   (double)s->steady_msgs / ((double)s->steady_us / 1e6) / o->nodes,
                   (double)s->steady_us / 1e6, (double)bytes / secs / o->nodes,
                   (double)msgs / secs / o->nodes, s->killed, fmt_spread(s, s->detected, d1),
                   fmt_spread(s, s->joined, d2), s->false_dead);
        if (rc) {
            printf("last trace lines:\n");
            size_t show = 60;
            for (size_t i = 0; i < show; i++) {
                const char *l = s->ring_lines[(s->ring_pos + TRACE_KEEP - show + i) % TRACE_KEEP];
                if (*l) printf("  %s\n", l);
            }
            printf("replay: dht-sim --seed %" PRIu64 " [same options] --trace\n", seed);
        }
    }
    /* tear down */
    while (s->nheap) free(pop(s).p);
    free(s->heap);
    for (uint32_t i = 0; i < o->nodes; i++) {
        node_free(s->nodes[i].n);
        store_close(s->nodes[i].st);
    }
    for (size_t j = 0; j < s->nkeys; j++) free(s->keys[j].w);
    free(s->ring_lines);
    free(s->recorded[0]);
    free(s->recorded[1]);
    free(s->last_gossip);
    ring_free(s->full_ring);
    free(s->nodes);
    free(s->detected);
    free(s->joined);
    free(s->clients);
    free(s->keys);
    wire_arena_free(s->arena);
    XXH64_freeState(s->digest);
    free(s);
    S = NULL;
    return rc;
}

/* ---- command line ------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f,
        "usage: dht-sim [options]\n"
        "\n"
        "Runs dht nodes (the same code as dht-server) in one process over a simulated\n"
        "network and clock, with simulated clients and a checker. Exit status 0 when\n"
        "every run passed, 1 when a check failed (the seed and the end of its trace\n"
        "are printed), 64 on a usage error.\n"
        "\n"
        "options:\n"
        "  --seed S          run seed S (default 1)\n"
        "  --seeds LIST      run these seeds: A..B ranges and single seeds, comma-separated\n"
        "  --random K        also run K seeds drawn from the clock (printed)\n"
        "  --nodes N         nodes (10)\n"
        "  --clients C       clients, each writing its own keys (8)\n"
        "  --keys K          keys per client (4)\n"
        "  --duration S      seconds of workload and faults (20)\n"
        "  --converge S      bound on convergence after the last fault heals (60)\n"
        "  --no-faults       no faults: a clean network\n"
        "  --faults LIST     kinds of fault, comma-separated, of: crash, partition,\n"
        "                    skew, stall, loss, dup, jitter (default: all)\n"
        "  --durable         stores survive crashes (nodes run with a data dir)\n"
        "  --members-only    no clients; kill a node at --kill-at and restart it\n"
        "                    10 s later; report detection and rejoin times\n"
        "  --kill-at S       (8)\n"
        "  --loss P          base datagram loss, 0..1 (0)\n"
        "  --dup P           base duplication, 0..1 (0)\n"
        "  --stall-one MS    at --kill-at, stall one node for MS (it keeps its data):\n"
        "                    who saw it dead, how soon it is back, records moved\n"
        "  --stalls P        every 500 ms each node stalls 500 ms with chance P:\n"
        "                    load, not a fault (a dead verdict is a false one)\n"
        "  --mtu BYTES       drop datagrams larger than this (65507)\n"
        "  --vnodes N        ring points per node (64)\n"
        "  --tombstone-ms MS tombstone lifetime (the nodes' default: an hour)\n"
        "  --forget-ms MS    a member dead this long is forgotten (an hour)\n"
        "  --sync-ms MS      anti-entropy period (2000)\n"
        "  --crash-ms MS     a crash lasts 500 ms to this long (8000)\n"
        "  --aliases K       nodes 0..K-1 are reached at a second address too, by which\n"
        "                    the odd nodes' peers name them; checks that no node holds\n"
        "                    such an address as a member once every fault healed\n"
        "  --replicas N, --write-quorum W, --read-quorum R   (3, 2, 2)\n"
        "  --attacker        an outsider without the key forges node-to-node messages\n"
        "                    (fake members, deaths, writes, forwards, debug) from\n"
        "                    spoofed addresses; checks that none is believed\n"
        "  --replayer        an outsider records node-to-node datagrams and sends them\n"
        "                    again, seconds later, to any node from any node's address\n"
        "  --replayer-cover  --replayer that also keeps 1 forward in 16 from coming, and\n"
        "                    sends half the forwards it replays right after their\n"
        "                    sender's last GOSSIP before them\n"
        "  --available       nodes take writes on both sides of a partition (the\n"
        "                    servers' default); without it they run --majority-ms 60000\n"
        "  --no-key          nodes run without a cluster key (they then believe what\n"
        "                    comes from private addresses, as the simulated ones are)\n"
        "  --check-replay    run each seed twice and compare the traces' digests\n"
        "  --trace           print every event\n"
        "  --verbose         the nodes' log lines go into the trace\n"
        "  -h, --help        this text\n");
}

static int parse_u(const char *s, unsigned long long max, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || *s == '-') return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    options o = {.nodes = 10, .clients = 8, .keys_per_client = 4, .duration_s = 20,
                 .quiet_s = 60, .faults = true, .kill_at_s = 8, .mtu = WIRE_MAX_DATAGRAM,
                 .vnodes = 64, .crash_ms = 8000, .replicas = 3, .wq = 2, .rq = 2, .fault_mask = ~0u};
    unsigned long long a, b, nrandom = 0, v;
    uint64_t *seeds = NULL;
    size_t nseeds = 0, capseeds = 0;
    bool check_replay = false;
    enum { O_SEED = 256, O_SEEDS, O_RANDOM, O_NODES, O_CLIENTS, O_KEYS, O_DURATION, O_CONVERGE,
           O_NOFAULTS, O_DURABLE, O_MEMBERS, O_KILLAT, O_LOSS, O_STALLS, O_STALL1, O_DUP, O_MTU, O_VNODES, O_N, O_W,
           O_R, O_REPLAY, O_TRACE, O_VERBOSE, O_FAULTS, O_TOMB, O_ATTACKER, O_REPLAYER, O_COVER, O_NOKEY, O_AVAILABLE, O_FORGET, O_SYNC, O_CRASHMS, O_ALIASES };
    static const struct option opts[] = {
        {"seed", 1, 0, O_SEED}, {"seeds", 1, 0, O_SEEDS}, {"random", 1, 0, O_RANDOM},
        {"nodes", 1, 0, O_NODES}, {"clients", 1, 0, O_CLIENTS}, {"keys", 1, 0, O_KEYS},
        {"duration", 1, 0, O_DURATION}, {"converge", 1, 0, O_CONVERGE},
        {"no-faults", 0, 0, O_NOFAULTS}, {"durable", 0, 0, O_DURABLE},
        {"members-only", 0, 0, O_MEMBERS}, {"kill-at", 1, 0, O_KILLAT}, {"loss", 1, 0, O_LOSS},
        {"stalls", 1, 0, O_STALLS}, {"stall-one", 1, 0, O_STALL1},
        {"dup", 1, 0, O_DUP}, {"mtu", 1, 0, O_MTU}, {"vnodes", 1, 0, O_VNODES},
        {"replicas", 1, 0, O_N}, {"write-quorum", 1, 0, O_W}, {"read-quorum", 1, 0, O_R},
        {"check-replay", 0, 0, O_REPLAY}, {"faults", 1, 0, O_FAULTS},
        {"tombstone-ms", 1, 0, O_TOMB}, {"trace", 0, 0, O_TRACE}, {"verbose", 0, 0, O_VERBOSE},
        {"attacker", 0, 0, O_ATTACKER}, {"replayer", 0, 0, O_REPLAYER}, {"replayer-cover", 0, 0, O_COVER}, {"no-key", 0, 0, O_NOKEY},
        {"available", 0, 0, O_AVAILABLE}, {"forget-ms", 1, 0, O_FORGET}, {"sync-ms", 1, 0, O_SYNC},
        {"crash-ms", 1, 0, O_CRASHMS}, {"aliases", 1, 0, O_ALIASES},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        char *end;
        switch (c) {
        case 'h': usage(stdout); return 0;
        case O_SEED:
        case O_SEEDS: /* S, A..B, or a comma-separated list of either */
            for (char *t = strtok(optarg, ","); t && !bad; t = strtok(NULL, ",")) {
                char *dots = strstr(t, "..");
                if (dots) *dots = 0;
                bad = parse_u(t, UINT64_MAX, &a) || parse_u(dots ? dots + 2 : t, UINT64_MAX, &b) ||
                      b < a || b - a > 10000000;
                for (unsigned long long x = a; !bad && x <= b; x++) {
                    if (nseeds == capseeds) {
                        capseeds = capseeds ? 2 * capseeds : 64;
                        if (!(seeds = realloc(seeds, capseeds * sizeof *seeds))) return 71;
                    }
                    seeds[nseeds++] = x;
                }
            }
            break;
        case O_RANDOM: bad = parse_u(optarg, 100000, &nrandom); break;
        case O_NODES: bad = parse_u(optarg, 100000, &v) || v < 1; o.nodes = (unsigned)v; break;
        case O_CLIENTS: bad = parse_u(optarg, 10000, &v); o.clients = (unsigned)v; break;
        case O_KEYS: bad = parse_u(optarg, 10000, &v) || v < 1; o.keys_per_client = (unsigned)v; break;
        case O_DURATION: bad = parse_u(optarg, 100000, &v); o.duration_s = (unsigned)v; break;
        case O_CONVERGE: bad = parse_u(optarg, 100000, &v); o.quiet_s = (unsigned)v; break;
        case O_NOFAULTS: o.faults = false; break;
        case O_FAULTS: {
            static const char *kinds[F_NFAULTS] = {"crash", "partition", "skew", "stall",
                                                   "loss", "dup", "jitter"};
            o.fault_mask = 0;
            for (char *t = strtok(optarg, ","); t; t = strtok(NULL, ",")) {
                int f = -1;
                for (int k = 0; k < F_NFAULTS; k++)
                    if (strcmp(t, kinds[k]) == 0) f = k;
                if (f < 0) bad = 1;
                else o.fault_mask |= 1u << f;
            }
            break;
        }
        case O_DURABLE: o.durable = true; break;
        case O_MEMBERS: o.members_only = true; break;
        case O_ATTACKER: o.attacker = true; break;
        case O_REPLAYER: o.replayer = true; break;
        case O_COVER: o.replayer = o.cover = true; break;
        case O_NOKEY: o.no_key = true; break;
        case O_AVAILABLE: o.available = true; break;
        case O_KILLAT: bad = parse_u(optarg, 100000, &v); o.kill_at_s = (unsigned)v; break;
        case O_LOSS: o.loss = strtod(optarg, &end); bad = *end || o.loss < 0 || o.loss > 1; break;
        case O_STALL1: bad = parse_u(optarg, 600000, &v) || v < 1; o.stall_one_ms = (unsigned)v; break;
        case O_STALLS:
            o.stalls = strtod(optarg, &end);
            bad = *end || o.stalls < 0 || o.stalls > 1;
            break;
        case O_DUP: o.dup = strtod(optarg, &end); bad = *end || o.dup < 0 || o.dup > 1; break;
        case O_MTU: bad = parse_u(optarg, WIRE_MAX_DATAGRAM, &v) || v < 64; o.mtu = (unsigned)v; break;
        case O_TOMB: bad = parse_u(optarg, 86400000, &v) || v < 1; o.tombstone_ms = (unsigned)v; break;
        case O_FORGET: bad = parse_u(optarg, 86400000, &v) || v < 1000; o.forget_ms = (unsigned)v; break;
        case O_SYNC: bad = parse_u(optarg, 3600000, &v) || v < 10; o.sync_ms = (unsigned)v; break;
        case O_CRASHMS: bad = parse_u(optarg, 3600000, &v) || v < 500; o.crash_ms = (unsigned)v; break;
        case O_ALIASES: bad = parse_u(optarg, 100000, &v); o.aliases = (unsigned)v; break;
        case O_VNODES: bad = parse_u(optarg, 4096, &v) || v < 1; o.vnodes = (unsigned)v; break;
        case O_N: bad = parse_u(optarg, REPL_MAX_N, &v) || v < 1; o.replicas = (unsigned)v; break;
        case O_W: bad = parse_u(optarg, REPL_MAX_N, &v) || v < 1; o.wq = (unsigned)v; break;
        case O_R: bad = parse_u(optarg, REPL_MAX_N, &v) || v < 1; o.rq = (unsigned)v; break;
        case O_REPLAY: check_replay = true; break;
        case O_TRACE: o.trace = true; break;
        case O_VERBOSE: o.verbose = true; break;
        default: usage(stderr); return 64;
        }
        if (bad) {
            const char *name = "?";
            for (const struct option *q = opts; q->name; q++)
                if (q->val == c) name = q->name;
            fprintf(stderr, "dht-sim: bad value for --%s\n", name);
            usage(stderr);
            return 64;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 64;
    }
    if (o.members_only) o.clients = 0;
    if (o.aliases > o.nodes) {
        fprintf(stderr, "dht-sim: --aliases must not exceed --nodes\n");
        return 64;
    }
    if (o.wq > o.replicas || o.rq > o.replicas) {
        fprintf(stderr, "dht-sim: quorums must not exceed --replicas\n");
        return 64;
    }
    unsigned failed = 0, runs = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t rseed = (uint64_t)t0.tv_nsec ^ ((uint64_t)t0.tv_sec << 20);
    if (!nseeds && !nrandom) {
        seeds = malloc(sizeof *seeds);
        if (!seeds) return 71;
        seeds[nseeds++] = 1;
    }
    for (size_t i = 0; i < nseeds + nrandom; i++) {
        uint64_t seed = i < nseeds ? seeds[i] : splitmix(&rseed) % 1000000000;
        if (i >= nseeds) printf("random seed %" PRIu64 "\n", seed);
        uint64_t d1 = 0, d2 = 0;
        int rc = run(&o, seed, &d1, true);
        if (check_replay) {
            run(&o, seed, &d2, false);
            if (d1 != d2) {
                printf("seed %" PRIu64 ": REPLAY DIFFERS (trace %016" PRIx64 " then %016" PRIx64
                       ")\n", seed, d1, d2);
                rc = 1;
            }
        }
        failed += rc != 0;
        runs++;
        fflush(stdout);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%u run%s, %u failed, %.1f s\n", runs, runs == 1 ? "" : "s", failed, wall);
    free(seeds);
    return failed ? 1 : 0;
}
