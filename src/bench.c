/*
 * dht-bench: closed-loop load generator for dht nodes.
 *
 * CLIENTS simulated clients each keep one request outstanding: when its
 * final answer comes (or it finally fails) the client sends its next
 * request at once. Two workloads:
 *
 * - mix (the default): GET or PUT of keys drawn uniformly from KEYSPACE
 *   keys, "k" + the key number in decimal, zero-padded to --key-size bytes;
 *   --read-fraction of them GETs. --preload PUTs every key once before the
 *   run, --verify GETs every key once after it (or alone, after a preload
 *   by an earlier run with the same --seed, --key-size and --value-size).
 *   Key k always gets the same value: value_size bytes from offset k % 64
 *   of a random string drawn from --seed.
 * - pairs (--pairs): each client PUTs a fresh random key (--key-size bytes,
 *   32 by default) with a fresh random value (--value-size, 8), then GETs
 *   that key, expecting that value, and starts again. A pair whose PUT and
 *   GET were both answered OK, the GET with the value, is good: goodput is
 *   good pairs a second. The overload benchmark (bench/overload.sh).
 *
 * Requests go to a node drawn at random for each request (-s, --peers).
 * Everything runs on one libuv loop. The clients share SOCKETS unconnected
 * UDP sockets, client i socket i % SOCKETS (--pairs: one per client, as
 * separate client processes would have, up to MAX_AUTO_SOCKETS; the mix: one
 * for all); RLIMIT_NOFILE is raised to its hard limit when that needs it.
 * Replies may come from any node (the owner of a key answers directly) and
 * are matched to their client by message ID:
 *
 *   ID OFFSET  SIZE  MEANING
 *   0          4     client slot (little endian) XOR a random per-run mask
 *   4          12    random (xoshiro256**, seeded from getrandom)
 *
 * A reply whose ID is not the one its slot is waiting for (a late answer to
 * an abandoned request, a stranger) or whose checksum is bad is counted as
 * stray and dropped. Receiving uses recvmmsg (libuv UV_UDP_RECVMMSG).
 *
 * A client is a state machine (one uv_timer each):
 *
 *   C_IDLE     no request: the phase has no more for it.
 *   C_WAIT     a try is sent, the timer is its timeout. A final answer
 *              (anything but SYSTEM_OVERLOAD) ends the request and starts
 *              the next (C_WAIT again, or C_IDLE). SYSTEM_OVERLOAD ->
 *              C_BACKOFF. A timeout sends the same datagram again, same
 *              message ID, same node, with the timeout doubled (at most
 *              --max-timeout); after --tries sends the request has failed.
 *   C_BACKOFF  answered SYSTEM_OVERLOAD: the timer is overloadWaitTime
 *              (--timeout when the answer has none; at most 10 s) plus a
 *              random 0-50% of it, so that clients sent away together do
 *              not come back together; then the same datagram again, same
 *              ID, same node (C_WAIT, tries and timeout start afresh).
 *              After MAX_OVERLOADS such answers the request is given up.
 *
 * Why the same ID after an overload: DESIGN.md has clients retry with the
 * same ID, and an overload answer means "not done". An earlier try of the
 * same request may still be under way at that node (it timed out here, the
 * resend met the overload); with the same ID the node's reply cache keeps
 * the two one operation (at most once), so the retry must go to the same
 * node too: the cache is per node. This needs the node not to cache its
 * overload answers (node.c sends them with remember = false), or the
 * retries would get the cached overload back for the cache's lifetime.
 *
 * A run of --duration seconds starts no request after its deadline (a
 * pair's GET neither); tries outstanding then run to their end, back-offs
 * that end after it are abandoned (counted). Rates count the answers by
 * the deadline over the duration; totals, errors and latency count every
 * answer. A run of --requests (requests, or pairs) ends when all are done.
 *
 * A GET answered "no such key" counts as "not found" unless a PUT of that
 * key had been acknowledged before the GET was sent (always so for a pair's
 * GET and in --verify): then it is "lost". Such a GET answered with another
 * value than the key's is "wrong" (a key not written yet in this run may
 * hold an earlier run's value). Other answers with errCode != 0 are
 * errors, by code. Latency is from a request's first send to its final
 * answer, resends and overload waits included, in microseconds, kept in a
 * log-linear histogram (client.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "client.h"
#include "wire.h"

#define EX_USAGE_ 64
#define MAX_SERVERS 4096
#define MAX_CLIENTS 100000
#define MAX_AUTO_SOCKETS 4096 /* --pairs: one socket a client up to this many */
#define MAX_OVERLOAD_WAIT_MS 10000
#define MAX_OVERLOADS 100     /* overload answers to one request before giving it up */
#define PAIRS_TIMEOUT_MS 400
#define PAIRS_TRIES 5
#define MAX_TIMEOUT_MS 1600   /* DESIGN.md: clients' timeouts around 100-1600 ms */
#define ERR_CODES 256 /* err[ERR_CODES] counts codes >= ERR_CODES */
#define RECV_CHUNKS 20 /* datagrams per recvmmsg */

enum workload { W_MIX, W_PAIRS };
enum output { OUT_TEXT, OUT_JSON, OUT_SUMMARY };

typedef struct bench_cfg {
    struct sockaddr_in servers[MAX_SERVERS];
    unsigned nservers;
    enum workload workload;
    unsigned clients;
    unsigned sockets;   /* 0 until set: a default per workload */
    uint64_t requests;  /* requests (mix) or pairs; 0: run for duration_s */
    bool no_run;        /* -n 0: only --preload and/or --verify */
    double duration_s;
    uint32_t keyspace;
    unsigned key_size;  /* 0 until set, as value_size, timeout_ms, tries */
    unsigned value_size;
    bool value_size_set;
    double read_fraction;
    bool preload;
    bool verify;
    enum output out;
    unsigned timeout_ms;
    unsigned max_timeout_ms;
    unsigned tries;
    uint64_t seed;
} bench_cfg;

enum cstate { C_IDLE, C_WAIT, C_BACKOFF };

typedef struct bench bench;

typedef struct bclient {
    uv_timer_t timer; /* reply timeout, or overload back-off */
    bench *b;
    uv_udp_t *sock;
    uint32_t slot;
    enum cstate state;
    uint32_t cmd;
    uint32_t key;       /* mix, preload, verify: the key number */
    bool known;         /* the key had an acknowledged PUT when the GET began */
    unsigned tries;     /* sends of the current request since its last overload answer */
    unsigned overloads; /* overload answers to the current request */
    unsigned wait_ms;   /* the current try's timeout */
    uint64_t t0;        /* uv_hrtime() of the first send */
    const struct sockaddr_in *dst;
    uint8_t id[WIRE_ID_LEN];
    size_t len;
    uint8_t *dgram;     /* the encoded request, resent as is */
    uint8_t *pkey;      /* pairs: this pair's key (key_size) and value */
    uint8_t *pval;
} bclient;

typedef struct stats {
    uint64_t issued;    /* requests started */
    uint64_t ops;       /* requests answered (final answers: any errCode but overload) */
    uint64_t win_ops;   /* of them by the deadline */
    uint64_t gets, puts;
    uint64_t pairs;     /* pairs: PUT acknowledged, GET read its value back */
    uint64_t win_pairs;
    uint64_t not_found; /* GET of a key never acknowledged written */
    uint64_t lost;      /* GET "no such key" of a key acknowledged written */
    uint64_t wrong;     /* GET answered with another value than the key's */
    uint64_t errors;    /* other answers with errCode != 0 */
    uint64_t err[ERR_CODES + 1];
    uint64_t overloads; /* SYSTEM_OVERLOAD answers, each waited for and resent */
    uint64_t timeouts;  /* tries that timed out */
    uint64_t retries;   /* resends after a timeout */
    uint64_t failed;    /* requests without an answer after --tries sends */
    uint64_t gave_up;   /* requests given up after MAX_OVERLOADS overload answers */
    uint64_t abandoned; /* requests backing off at the deadline */
    uint64_t stray;     /* datagrams matching no outstanding request */
    uint64_t send_errors;
    uint64_t start_ns, end_ns;
    uint64_t window_end_ns; /* the deadline, or end_ns if earlier or none */
    client_hist lat;
} stats;

enum phase { PH_PRELOAD, PH_RUN, PH_VERIFY, PH_COUNT };

static const char *const phase_names[PH_COUNT] = {"preload", "run", "verify"};

struct bench {
    bench_cfg cfg;
    uv_loop_t *loop;
    uv_udp_t *socks;
    unsigned nsocks;
    wire_arena *arena;   /* replies are decoded here */
    uv_signal_t sigint;
    uv_timer_t progress; /* a status line on a terminal, every second */
    uint64_t progress_ops;
    bclient *c;
    unsigned idle;
    enum phase phase;
    bool ran[PH_COUNT];
    uint64_t next_key;   /* preload, verify: the next key */
    uint64_t begun;      /* run: requests (mix) or pairs started */
    uint64_t deadline_ns; /* run with a duration: no request starts after it; else 0 */
    bool interrupted;
    uint8_t *written;    /* bitmap: keys with an acknowledged PUT */
    uint8_t *value;      /* value_size + 64 random printable bytes */
    size_t dgram_cap;
    uint64_t rng[4];     /* workload: keys, GET/PUT mix, values, pairs' keys */
    uint64_t idrng[4];   /* message IDs, nodes, jitter */
    uint32_t slot_mask;
    stats st[PH_COUNT];
    uint64_t t_start, t_end; /* uv_hrtime() of the first phase's start, the last one's end */
    double cpu_s;            /* this process's user + system CPU seconds by t_end */
};

/* ---- requests ---- */

static stats *cur(bench *b) { return &b->st[b->phase]; }

static void make_key(const bench *b, uint32_t k, uint8_t *out) {
    unsigned n = b->cfg.key_size;
    memset(out, '0', n);
    for (unsigned i = n; i > 0 && k; i--, k /= 10) out[i - 1] = (uint8_t)('0' + k % 10);
    if (n > 1 && out[0] == '0') out[0] = 'k';
}

static void random_bytes(uint64_t rng[4], uint8_t *out, size_t n) {
    while (n) {
        uint64_t r = client_rng_next(rng);
        size_t k = n < sizeof r ? n : sizeof r;
        memcpy(out, &r, k);
        out += k;
        n -= k;
    }
}

static void make_id(bench *b, uint32_t slot, uint8_t id[WIRE_ID_LEN]) {
    uint32_t s = slot ^ b->slot_mask;
    id[0] = (uint8_t)s;
    id[1] = (uint8_t)(s >> 8);
    id[2] = (uint8_t)(s >> 16);
    id[3] = (uint8_t)(s >> 24);
    random_bytes(b->idrng, id + 4, WIRE_ID_LEN - 4);
}

static uint32_t id_slot(const bench *b, const uint8_t *id) {
    return ((uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 |
            (uint32_t)id[3] << 24) ^ b->slot_mask;
}

/* Whether the run is past its deadline (or interrupted): nothing new starts. */
static bool past_deadline(const bench *b) {
    return b->interrupted || (b->deadline_ns && uv_hrtime() >= b->deadline_ns);
}

static bool more_to_issue(bench *b) {
    if (b->interrupted) return false;
    if (b->phase != PH_RUN) return b->next_key < b->cfg.keyspace;
    if (b->cfg.requests) return b->begun < b->cfg.requests;
    return !past_deadline(b);
}

static void phase_done(bench *b);
static void on_timer(uv_timer_t *t);

static void send_try(bclient *c) {
    bench *b = c->b;
    uv_buf_t buf = uv_buf_init((char *)c->dgram, (unsigned)c->len);
    int rc = uv_udp_try_send(c->sock, &buf, 1, (const struct sockaddr *)c->dst);
    /* A datagram that cannot be sent is handled as a lost one. */
    if (rc < 0) cur(b)->send_errors++;
    c->tries++;
    c->state = C_WAIT;
    uv_timer_start(&c->timer, on_timer, c->wait_ms, 0);
}

/* Sends a new request (new ID, a random node) and waits for its answer. */
static void start_request(bclient *c, uint32_t cmd, const uint8_t *key, size_t klen,
                          const uint8_t *val, size_t vlen) {
    bench *b = c->b;
    cur(b)->issued++;
    c->cmd = cmd;
    make_id(b, c->slot, c->id);
    c->len = wire_request(c->dgram, b->dgram_cap, c->id, cmd, key, klen, val, vlen, 0);
    c->dst = &b->cfg.servers[client_rng_next(b->idrng) % b->cfg.nservers];
    c->tries = 0;
    c->overloads = 0;
    c->wait_ms = b->cfg.timeout_ms;
    c->t0 = uv_hrtime();
    send_try(c);
}

/* Starts the client's next request (a new pair's PUT with --pairs), or
 * parks it when the phase has no more. */
static void issue(bclient *c) {
    bench *b = c->b;
    if (!more_to_issue(b)) {
        c->state = C_IDLE;
        if (++b->idle == b->cfg.clients) phase_done(b);
        return;
    }
    b->begun++;
    if (b->cfg.workload == W_PAIRS) {
        random_bytes(b->rng, c->pkey, b->cfg.key_size);
        random_bytes(b->rng, c->pval, b->cfg.value_size);
        c->known = false;
        start_request(c, WIRE_PUT, c->pkey, b->cfg.key_size, c->pval, b->cfg.value_size);
        return;
    }
    uint32_t cmd;
    if (b->phase == PH_RUN) {
        cmd = client_rng_unit(b->rng) < b->cfg.read_fraction ? WIRE_GET : WIRE_PUT;
        c->key = (uint32_t)(client_rng_next(b->rng) % b->cfg.keyspace);
        c->known = b->written[c->key / 8] >> (c->key % 8) & 1;
    } else {
        cmd = b->phase == PH_PRELOAD ? WIRE_PUT : WIRE_GET;
        c->key = (uint32_t)b->next_key++;
        c->known = true; /* --verify: written by the preload */
    }
    uint8_t key[WIRE_MAX_KEY];
    make_key(b, c->key, key);
    bool put = cmd == WIRE_PUT;
    start_request(c, cmd, key, b->cfg.key_size, put ? b->value + c->key % 64 : NULL,
                  put ? b->cfg.value_size : 0);
}

static bool heard_any(const bench *b);

static void on_timer(uv_timer_t *t) {
    bclient *c = t->data;
    bench *b = c->b;
    stats *s = cur(b);
    if (c->state == C_BACKOFF) {
        if (past_deadline(b)) {
            s->abandoned++;
            issue(c);
            return;
        }
        send_try(c);
        return;
    }
    s->timeouts++;
    if (c->tries < b->cfg.tries) {
        s->retries++;
        unsigned cap = b->cfg.max_timeout_ms > b->cfg.timeout_ms ? b->cfg.max_timeout_ms
                                                                 : b->cfg.timeout_ms;
        c->wait_ms = c->wait_ms > cap / 2 ? cap : c->wait_ms * 2;
        send_try(c);
        return;
    }
    s->failed++;
    if (!heard_any(b) && s->failed >= b->cfg.clients && !b->interrupted) {
        /* as many requests failed as there are clients, and no datagram came
         * back: nobody is there (with the defaults the run went on silently
         * for hours) */
        fprintf(stderr, "dht-bench: no reply from any node after %" PRIu64 " requests of %u tries "
                        "each: is a node running at the address given (-s)?\n",
                s->failed, b->cfg.tries);
        b->interrupted = true; /* what is outstanding ends, then the report */
    }
    issue(c); /* a pair whose PUT or GET failed is over */
}

/* Whether any answer came back in this run, of any phase. */
static bool heard_any(const bench *b) {
    for (int ph = 0; ph < PH_COUNT; ph++)
        if (b->st[ph].ops || b->st[ph].errors || b->st[ph].overloads || b->st[ph].not_found ||
            b->st[ph].lost || b->st[ph].wrong)
            return true;
    return false;
}

/* The value a GET of the client's key must return. */
static void expected(const bclient *c, const uint8_t **val, size_t *len) {
    const bench *b = c->b;
    *val = b->cfg.workload == W_PAIRS ? c->pval : b->value + c->key % 64;
    *len = b->cfg.value_size;
}

/* An overload answer: waits, then resends the same datagram. */
static void back_off(bclient *c, const KVResponse *r) {
    bench *b = c->b;
    stats *s = cur(b);
    s->overloads++;
    if (++c->overloads >= MAX_OVERLOADS) {
        s->gave_up++;
        issue(c);
        return;
    }
    uint64_t w = r->overloadwaittime > 0 ? (uint64_t)r->overloadwaittime : b->cfg.timeout_ms;
    if (w > MAX_OVERLOAD_WAIT_MS) w = MAX_OVERLOAD_WAIT_MS;
    w += client_rng_next(b->idrng) % (w / 2 + 1);
    c->state = C_BACKOFF;
    c->tries = 0;
    c->wait_ms = b->cfg.timeout_ms;
    uv_timer_start(&c->timer, on_timer, w, 0);
}

/* A final answer to the client's request. */
static void answered(bclient *c, const KVResponse *r) {
    bench *b = c->b;
    stats *s = cur(b);
    uv_timer_stop(&c->timer);
    if (r->errcode == WIRE_EOVERLOAD) {
        back_off(c, r);
        return;
    }
    uint64_t now = uv_hrtime();
    bool in_window = !b->deadline_ns || now <= b->deadline_ns;
    client_hist_record(&s->lat, (now - c->t0) / 1000);
    s->ops++;
    s->win_ops += in_window;
    if (c->cmd == WIRE_GET) s->gets++;
    else s->puts++;
    uint32_t code = r->errcode;
    bool ok = code == WIRE_OK;
    if (ok && c->cmd == WIRE_GET) {
        const uint8_t *want;
        size_t wlen;
        expected(c, &want, &wlen);
        /* A key this run has not written yet may hold an earlier run's value. */
        if (c->known &&
            (r->value.len != wlen || (wlen && memcmp(r->value.data, want, wlen) != 0))) {
            s->wrong++;
            ok = false;
        }
    } else if (ok) {
        if (b->cfg.workload == W_MIX) b->written[c->key / 8] |= (uint8_t)(1u << (c->key % 8));
    } else if (code == WIRE_ENOKEY && c->cmd == WIRE_GET) {
        if (c->known) s->lost++;
        else s->not_found++;
    } else {
        s->errors++;
        s->err[code < ERR_CODES ? code : ERR_CODES]++;
    }
    if (b->cfg.workload == W_PAIRS && ok) {
        if (c->cmd == WIRE_PUT && !past_deadline(b)) {
            c->known = true;
            start_request(c, WIRE_GET, c->pkey, b->cfg.key_size, NULL, 0);
            return;
        }
        if (c->cmd == WIRE_GET) {
            s->pairs++;
            s->win_pairs += in_window;
        }
    }
    issue(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    static char space[RECV_CHUNKS * 65536];
    (void)h;
    (void)hint;
    *buf = uv_buf_init(space, sizeof space);
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
    bench *b = u->data;
    (void)addr;
    (void)flags;
    if (nread <= 0) return; /* nothing, the end of a recvmmsg batch, or an error */
    wire_frame f;
    KVResponse *r;
    if (client_parse_reply(b->arena, (const uint8_t *)buf->base, (size_t)nread, &f, &r) != 0) {
        cur(b)->stray++;
        return;
    }
    uint32_t slot = id_slot(b, f.id);
    bclient *c = slot < b->cfg.clients ? &b->c[slot] : NULL;
    /* While backing off, a late answer to an earlier try of the request
     * (it timed out, the resend met the overload) is its answer. */
    if (!c || c->state == C_IDLE || memcmp(c->id, f.id, WIRE_ID_LEN) != 0) {
        cur(b)->stray++;
        return;
    }
    answered(c, r);
}

static bool phase_wanted(const bench_cfg *g, enum phase ph) {
    switch (ph) {
    case PH_PRELOAD: return g->preload;
    case PH_RUN: return !g->no_run;
    case PH_VERIFY: return g->verify;
    default: return false;
    }
}

static void start_phase(bench *b, enum phase ph) {
    b->phase = ph;
    b->ran[ph] = true;
    b->idle = 0;
    b->begun = 0;
    b->next_key = 0;
    stats *s = cur(b);
    s->start_ns = uv_hrtime();
    b->deadline_ns = 0;
    if (ph == PH_RUN && !b->cfg.requests)
        b->deadline_ns = s->start_ns + (uint64_t)(b->cfg.duration_s * 1e9);
    for (unsigned i = 0; i < b->cfg.clients; i++) issue(&b->c[i]);
}

/* "run   812345 ops   81234 ops/s   3 s left" on stderr, redrawn in place. */
static void on_progress(uv_timer_t *t) {
    bench *b = t->data;
    stats *s = cur(b);
    uint64_t ops = s->ops, now = uv_hrtime();
    char left[48] = "";
    if (b->phase != PH_RUN)
        snprintf(left, sizeof left, "   %" PRIu32 " keys", b->cfg.keyspace);
    else if (b->cfg.requests)
        snprintf(left, sizeof left, "   of %" PRIu64, b->cfg.requests);
    else if (b->deadline_ns > now)
        snprintf(left, sizeof left, "   %.0f s left", (double)(b->deadline_ns - now) / 1e9);
    fprintf(stderr, "\r\033[K%-7s %10" PRIu64 " ops%s   %8" PRIu64 " ops/s",
            phase_names[b->phase], ops, left, ops - b->progress_ops);
    b->progress_ops = ops;
}

static void phase_done(bench *b) {
    stats *s = cur(b);
    s->end_ns = uv_hrtime();
    s->window_end_ns = b->deadline_ns && b->deadline_ns < s->end_ns ? b->deadline_ns
                                                                     : s->end_ns;
    b->progress_ops = 0;
    if (!b->interrupted)
        for (enum phase ph = b->phase + 1; ph < PH_COUNT; ph++)
            if (phase_wanted(&b->cfg, ph)) {
                start_phase(b, ph);
                return;
            }
    for (unsigned i = 0; i < b->nsocks; i++) {
        uv_udp_recv_stop(&b->socks[i]);
        uv_close((uv_handle_t *)&b->socks[i], NULL);
    }
    uv_close((uv_handle_t *)&b->sigint, NULL);
    for (unsigned i = 0; i < b->cfg.clients; i++) uv_close((uv_handle_t *)&b->c[i].timer, NULL);
    if (uv_is_active((uv_handle_t *)&b->progress)) fputs("\r\033[K", stderr);
    uv_close((uv_handle_t *)&b->progress, NULL);
}

static void on_sigint(uv_signal_t *h, int sig) {
    bench *b = h->data;
    (void)sig;
    if (b->interrupted) exit(130);
    b->interrupted = true; /* finish what is outstanding, then report */
    if (b->deadline_ns) b->deadline_ns = uv_hrtime();
    fprintf(stderr, "dht-bench: interrupted, waiting for outstanding requests "
                    "(^C again to quit)\n");
}

/* ---- report ---- */

static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The client's own CPU use, as a share of one core over its run. */
static double cpu_share(const bench *b) {
    double wall = (double)(b->t_end - b->t_start) / 1e9;
    return wall > 0 ? b->cpu_s / wall : 0;
}

static double seconds(const stats *s) { return (double)(s->end_ns - s->start_ns) / 1e9; }

/* The measuring window: up to the deadline, or to the last answer. */
static double window(const stats *s) {
    return (double)(s->window_end_ns - s->start_ns) / 1e9;
}

static double per_s(uint64_t n, const stats *s) {
    double t = window(s);
    return t > 0 ? (double)n / t : 0;
}

static double failed_pct(const stats *s) {
    uint64_t all = s->ops + s->failed + s->gave_up;
    return all ? 100.0 * (double)(s->failed + s->gave_up) / (double)all : 0;
}

static void text_errors(const stats *s) {
    for (unsigned i = 0; i <= ERR_CODES; i++)
        if (s->err[i])
            printf("           0x%02x %-18s %" PRIu64 "\n", i,
                   i < ERR_CODES ? wire_err_name(i) : "(code >= 0x100)", s->err[i]);
}

static void report_text(const bench *b) {
    const bench_cfg *g = &b->cfg;
    const stats *s = &b->st[PH_RUN];
    printf("dht-bench: %u server%s, %u clients on %u socket%s, ", g->nservers,
           g->nservers == 1 ? "" : "s", g->clients, b->nsocks, b->nsocks == 1 ? "" : "s");
    if (g->workload == W_PAIRS)
        printf("pairs (PUT then GET of a random key), %u B keys, %u B values", g->key_size,
               g->value_size);
    else
        printf("keyspace %" PRIu32 ", %u B keys, %u B values, %.0f%% reads", g->keyspace,
               g->key_size, g->value_size, g->read_fraction * 100);
    printf(", seed %" PRIu64 "\n", g->seed);
    printf("           timeout %u ms doubling up to %u ms, %u tries a request\n", g->timeout_ms,
           g->max_timeout_ms > g->timeout_ms ? g->max_timeout_ms : g->timeout_ms, g->tries);
    if (b->ran[PH_PRELOAD]) {
        const stats *p = &b->st[PH_PRELOAD];
        printf("preload    %" PRIu64 " PUTs in %.3f s (%.0f ops/s), %" PRIu64 " errors, %" PRIu64
               " failed, %" PRIu64 " overload answers\n",
               p->ops, seconds(p), per_s(p->ops, p), p->errors, p->failed + p->gave_up,
               p->overloads);
        text_errors(p);
    }
    if (b->ran[PH_RUN]) {
        const char *intr = b->interrupted ? " (interrupted)" : "";
        if (g->workload == W_PAIRS) {
            printf("pairs      %" PRIu64 " in %.3f s: %.0f pairs/s%s (PUT acknowledged, GET read "
                   "it back); %" PRIu64 " in all\n",
                   s->win_pairs, window(s), per_s(s->win_pairs, s), intr, s->pairs);
            printf("ops        %" PRIu64 " answered in %.3f s: %.0f ops/s; in all %" PRIu64
                   " GET, %" PRIu64 " PUT\n",
                   s->win_ops, window(s), per_s(s->win_ops, s), s->gets, s->puts);
        } else {
            printf("ops        %" PRIu64 " in %.3f s: %.0f ops/s%s\n", s->win_ops, window(s),
                   per_s(s->win_ops, s), intr);
            printf("           %" PRIu64 " GET (%" PRIu64 " not found), %" PRIu64 " PUT\n",
                   s->gets, s->not_found, s->puts);
        }
        printf("overload   %" PRIu64 " answers, each waited for and resent; %" PRIu64
               " requests given up after %u, %" PRIu64 " abandoned at the end\n",
               s->overloads, s->gave_up, MAX_OVERLOADS, s->abandoned);
        printf("timeouts   %" PRIu64 " tries timed out, %" PRIu64 " resent; %" PRIu64
               " requests failed after %u tries (%.3f%% of requests)\n",
               s->timeouts, s->retries, s->failed, g->tries, failed_pct(s));
        printf("errors     %" PRIu64 "\n", s->errors);
        text_errors(s);
        printf("reads      %" PRIu64 " lost (no such key after an acknowledged PUT), %" PRIu64
               " wrong value\n", s->lost, s->wrong);
        printf("latency us p50 %" PRIu64 "  p99 %" PRIu64 "  p999 %" PRIu64 "  max %" PRIu64
               "  mean %.0f\n",
               client_hist_percentile(&s->lat, 50), client_hist_percentile(&s->lat, 99),
               client_hist_percentile(&s->lat, 99.9), s->lat.max, client_hist_mean(&s->lat));
    }
    if (b->ran[PH_VERIFY]) {
        const stats *v = &b->st[PH_VERIFY];
        printf("verify     %" PRIu64 " keys read in %.3f s: %" PRIu64 " lost, %" PRIu64
               " wrong value, %" PRIu64 " unanswered, %" PRIu64 " errors\n",
               v->issued, seconds(v), v->lost, v->wrong, v->failed + v->gave_up, v->errors);
        text_errors(v);
    }
    uint64_t stray = 0, send_errors = 0;
    for (int ph = 0; ph < PH_COUNT; ph++) {
        stray += b->st[ph].stray;
        send_errors += b->st[ph].send_errors;
    }
    if (stray || send_errors)
        printf("other      %" PRIu64 " stray datagrams, %" PRIu64 " send errors\n", stray,
               send_errors);
    printf("client     %.2f s of CPU, %.0f%% of a core\n", b->cpu_s, 100 * cpu_share(b));
}

static void report_json(const bench *b) {
    const bench_cfg *g = &b->cfg;
    const stats *s = &b->st[PH_RUN];
    printf("{\"workload\":\"%s\",\"ops\":%" PRIu64 ",\"seconds\":%.6f,\"ops_per_sec\":%.1f",
           g->workload == W_PAIRS ? "pairs" : "mix", s->win_ops, window(s),
           per_s(s->win_ops, s));
    printf(",\"pairs\":%" PRIu64 ",\"pairs_per_sec\":%.1f,\"answered\":%" PRIu64, s->win_pairs,
           per_s(s->win_pairs, s), s->ops);
    printf(",\"gets\":%" PRIu64 ",\"puts\":%" PRIu64 ",\"not_found\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"wrong\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"errors_by_code\":{",
           s->gets, s->puts, s->not_found, s->lost, s->wrong, s->errors);
    const char *sep = "";
    for (unsigned i = 0; i <= ERR_CODES; i++) {
        if (!s->err[i]) continue;
        printf("%s\"%u\":%" PRIu64, sep, i, s->err[i]);
        sep = ",";
    }
    printf("},\"overloads\":%" PRIu64 ",\"gave_up\":%" PRIu64 ",\"abandoned\":%" PRIu64
           ",\"timeouts\":%" PRIu64 ",\"retries\":%" PRIu64 ",\"failed\":%" PRIu64
           ",\"stray\":%" PRIu64 ",\"send_errors\":%" PRIu64,
           s->overloads, s->gave_up, s->abandoned, s->timeouts, s->retries, s->failed, s->stray,
           s->send_errors);
    printf(",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
           ",\"max_us\":%" PRIu64 ",\"mean_us\":%.1f",
           client_hist_percentile(&s->lat, 50), client_hist_percentile(&s->lat, 99),
           client_hist_percentile(&s->lat, 99.9), s->lat.max, client_hist_mean(&s->lat));
    printf(",\"servers\":%u,\"clients\":%u,\"sockets\":%u,\"keyspace\":%" PRIu32
           ",\"key_size\":%u,\"value_size\":%u,\"read_fraction\":%g,\"seed\":%" PRIu64
           ",\"interrupted\":%s,\"client_cpu_pct\":%.0f",
           g->nservers, g->clients, b->nsocks, g->keyspace, g->key_size, g->value_size,
           g->read_fraction, g->seed, b->interrupted ? "true" : "false", 100 * cpu_share(b));
    if (b->ran[PH_PRELOAD]) {
        const stats *p = &b->st[PH_PRELOAD];
        printf(",\"preload_ops\":%" PRIu64 ",\"preload_seconds\":%.6f,\"preload_errors\":%" PRIu64
               ",\"preload_failed\":%" PRIu64,
               p->ops, seconds(p), p->errors, p->failed + p->gave_up);
    }
    if (b->ran[PH_VERIFY]) {
        const stats *v = &b->st[PH_VERIFY];
        printf(",\"verify_keys\":%" PRIu64 ",\"verify_lost\":%" PRIu64 ",\"verify_wrong\":%" PRIu64
               ",\"verify_failed\":%" PRIu64 ",\"verify_errors\":%" PRIu64,
               v->issued, v->lost, v->wrong, v->failed + v->gave_up, v->errors);
    }
    printf("}\n");
}

/* One line of key=value pairs, the same keys every time (the errors by code
 * 0x01-0x07 included when zero), for scripts and tests:
 *
 *   KEY                    MEANING (the run phase)
 *   seconds                the measuring window: the duration, or to the last answer
 *   pairs, pairs_per_s     good pairs (--pairs) answered by the deadline, a second
 *   ops, ops_per_s         final answers by the deadline, a second
 *   answered, puts, gets   final answers in all (after the deadline too)
 *   overloads              SYSTEM_OVERLOAD answers (each waited for and resent)
 *   retries                resends after a timeout
 *   failed, failed_pct     requests unanswered after --tries sends; % of requests
 *   gave_up, abandoned     given up after MAX_OVERLOADS overloads; backing off at the end
 *   errors, err_0xNN       answers with an error code (not "no such key"), by code
 *   lost, wrong            GETs after an acknowledged PUT: no such key; another value
 *   mismatches             lost + wrong
 *   p50_us .. max_us       latency of final answers
 *   preload_*, verify_*    the --preload and --verify phases, when they ran
 *   client_cpu_pct         dht-bench's own CPU, % of one core */
static void report_summary(const bench *b) {
    const bench_cfg *g = &b->cfg;
    printf("workload=%s servers=%u clients=%u sockets=%u", g->workload == W_PAIRS ? "pairs" : "mix",
           g->nservers, g->clients, b->nsocks);
    if (b->ran[PH_PRELOAD]) {
        const stats *p = &b->st[PH_PRELOAD];
        printf(" preload_ops=%" PRIu64 " preload_errors=%" PRIu64 " preload_failed=%" PRIu64
               " preload_overloads=%" PRIu64,
               p->ops, p->errors, p->failed + p->gave_up, p->overloads);
    }
    if (b->ran[PH_RUN]) {
        const stats *s = &b->st[PH_RUN];
        printf(" seconds=%.3f pairs=%" PRIu64 " pairs_per_s=%.1f ops=%" PRIu64 " ops_per_s=%.1f"
               " answered=%" PRIu64 " puts=%" PRIu64 " gets=%" PRIu64 " not_found=%" PRIu64,
               window(s), s->win_pairs, per_s(s->win_pairs, s), s->win_ops,
               per_s(s->win_ops, s), s->ops, s->puts, s->gets, s->not_found);
        printf(" overloads=%" PRIu64 " retries=%" PRIu64 " failed=%" PRIu64 " failed_pct=%.3f"
               " gave_up=%" PRIu64 " abandoned=%" PRIu64 " errors=%" PRIu64,
               s->overloads, s->retries, s->failed, failed_pct(s), s->gave_up, s->abandoned,
               s->errors);
        uint64_t other = s->err[0] + s->err[ERR_CODES];
        for (unsigned i = 1; i < ERR_CODES; i++) {
            if (i <= WIRE_EBADVALUE) printf(" err_0x%02x=%" PRIu64, i, s->err[i]);
            else other += s->err[i];
        }
        printf(" err_other=%" PRIu64 " lost=%" PRIu64 " wrong=%" PRIu64 " mismatches=%" PRIu64,
               other, s->lost, s->wrong, s->lost + s->wrong);
        printf(" p50_us=%" PRIu64 " p99_us=%" PRIu64 " p999_us=%" PRIu64 " max_us=%" PRIu64,
               client_hist_percentile(&s->lat, 50), client_hist_percentile(&s->lat, 99),
               client_hist_percentile(&s->lat, 99.9), s->lat.max);
    }
    if (b->ran[PH_VERIFY]) {
        const stats *v = &b->st[PH_VERIFY];
        printf(" verify_keys=%" PRIu64 " verify_lost=%" PRIu64 " verify_wrong=%" PRIu64
               " verify_failed=%" PRIu64 " verify_errors=%" PRIu64,
               v->issued, v->lost, v->wrong, v->failed + v->gave_up, v->errors);
    }
    uint64_t stray = 0, send_errors = 0;
    for (int ph = 0; ph < PH_COUNT; ph++) {
        stray += b->st[ph].stray;
        send_errors += b->st[ph].send_errors;
    }
    printf(" stray=%" PRIu64 " send_errors=%" PRIu64 " client_cpu_pct=%.0f interrupted=%d"
           " seed=%" PRIu64 "\n", stray, send_errors, 100 * cpu_share(b), b->interrupted, g->seed);
}

/* ---- options ---- */

static void usage(FILE *f) {
    fprintf(f,
        "usage: dht-bench [-s HOST:PORT[,...]]... [--peers FILE] [-c CLIENTS]\n"
        "                 [-n REQUESTS | -d SECONDS] [--pairs] [-k KEYSPACE]\n"
        "                 [--key-size B] [--value-size B] [-r READ_FRACTION]\n"
        "                 [--preload] [--verify] [--timeout MS] [--max-timeout MS]\n"
        "                 [--tries N | --retries N] [--sockets N] [--seed N]\n"
        "                 [--json | --summary]\n"
        "\n"
        "Closed-loop load: CLIENTS clients each with one request outstanding at all\n"
        "times, each request to a node drawn at random. The mix (default): GET or PUT\n"
        "of uniformly drawn keys. --pairs: each client PUTs a fresh random key, then\n"
        "GETs it and expects the value it wrote; goodput is such pairs a second.\n"
        "\n"
        "  -s, --server HOST:PORT  a node; repeat, or a comma list, to spread the load\n"
        "                          (default $DHT_SERVER or 127.0.0.1:7000)\n"
        "      --peers FILE        the nodes from a peers file: HOST:PORT a line\n"
        "  -c, --clients N         simulated clients, one request outstanding each (50)\n"
        "  -n, --requests N        requests in all (pairs with --pairs; default 100000);\n"
        "                          0: only --preload and/or --verify\n"
        "  -d, --duration S        run for S seconds instead (also --seconds)\n"
        "      --pairs             the PUT-then-GET workload (random keys, keyspace unused)\n"
        "  -k, --keyspace N        distinct keys (10000)\n"
        "      --key-size B        key length, 1..32 (16; --pairs 32): \"k000...0123\"\n"
        "      --value-size B      PUT value length, 0..10000 (100; --pairs 8)\n"
        "  -r, --read-fraction F   share of GETs, 0..1 (0.9)\n"
        "      --preload           PUT every key once before the run\n"
        "      --verify            GET every key once after the run, expecting the value\n"
        "                          a preload with the same --seed, --key-size and\n"
        "                          --value-size wrote; counts lost and wrong keys\n"
        "      --timeout MS        wait for a reply before resending (1000; --pairs 400);\n"
        "                          doubles at each resend up to --max-timeout (%d)\n"
        "      --tries N           sends per request, same message ID, same node, before\n"
        "                          it counts as failed (3; --pairs 5)\n"
        "      --retries N         the same as --tries N+1\n"
        "      --sockets N         UDP sockets the clients share (1; --pairs one a client\n"
        "                          up to %d); replies are matched by message ID\n"
        "      --seed N            workload seed (default: random, printed)\n"
        "      --json              print the results as one JSON line\n"
        "      --summary           print the results as one line of key=value pairs\n"
        "                          (the same keys every run; src/bench.c lists them)\n"
        "  -h, --help              this help\n"
        "\n"
        "A SYSTEM_OVERLOAD answer is not a failure: the client waits overloadWaitTime\n"
        "ms plus 0-50%% jitter and sends the request again with the same message ID to\n"
        "the same node (at most %d times). With -d no request starts after the\n"
        "deadline; rates count the answers by then.\n"
        "\n"
        "Prints ops/s (and pairs/s), overload answers, resends, requests failed after\n"
        "every try, errors by code, GETs that lost a written key or read another value,\n"
        "and latency percentiles (us, first send to final answer). A GET of a key not\n"
        "yet written counts as 'not found', not as an error. Exit status 0 when any\n"
        "request was answered, 1 when none was.\n",
        MAX_TIMEOUT_MS, MAX_AUTO_SOCKETS, MAX_OVERLOADS);
}

static int bad(const char *opt, const char *val) {
    fprintf(stderr, "dht-bench: bad value for %s: '%s'\nTry 'dht-bench --help'.\n", opt, val);
    return EX_USAGE_;
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int add_server(bench_cfg *g, const char *s) {
    if (g->nservers == MAX_SERVERS) return bad("-s (too many)", s);
    int rc = client_parse_addr(s, &g->servers[g->nservers]);
    if (rc == CLIENT_ERESOLVE) {
        fprintf(stderr, "dht-bench: cannot resolve host in '%s'\n", s);
        return 68;
    }
    if (rc) return bad("-s (expected HOST:PORT)", s);
    g->nservers++;
    return 0;
}

/* "a:1,b:2": each element a server. */
static int add_servers(bench_cfg *g, const char *list) {
    char one[300];
    for (const char *p = list;;) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof one) return bad("-s (expected HOST:PORT[,...])", list);
        memcpy(one, p, n);
        one[n] = 0;
        int rc = add_server(g, one);
        if (rc) return rc;
        if (!p[n]) return 0;
        p += n + 1;
    }
}

/* A peers file as the servers read it: HOST:PORT a line, '#' comments. */
static int add_peers_file(bench_cfg *g, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dht-bench: %s: %s\n", path, strerror(errno));
        return 66;
    }
    char line[512];
    int rc = 0;
    unsigned before = g->nservers;
    while (!rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "#\r\n")] = 0;
        char *p = line + strspn(line, " \t"), *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (*p) rc = add_server(g, p);
    }
    fclose(f);
    if (!rc && g->nservers == before) {
        fprintf(stderr, "dht-bench: %s lists no node\n", path);
        return EX_USAGE_;
    }
    return rc;
}

enum {
    O_KEY_SIZE = 256, O_VALUE_SIZE, O_PRELOAD, O_VERIFY, O_TIMEOUT, O_MAX_TIMEOUT, O_TRIES,
    O_RETRIES, O_SEED, O_JSON, O_SUMMARY, O_PAIRS, O_PEERS, O_SOCKETS,
};

/* Fills g from argv; returns 0, -1 after --help, or an exit status. */
static int parse_options(bench_cfg *g, int argc, char **argv) {
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"peers", required_argument, NULL, O_PEERS},
        {"clients", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"seconds", required_argument, NULL, 'd'},
        {"pairs", no_argument, NULL, O_PAIRS},
        {"keyspace", required_argument, NULL, 'k'},
        {"key-size", required_argument, NULL, O_KEY_SIZE},
        {"value-size", required_argument, NULL, O_VALUE_SIZE},
        {"read-fraction", required_argument, NULL, 'r'},
        {"preload", no_argument, NULL, O_PRELOAD},
        {"verify", no_argument, NULL, O_VERIFY},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"max-timeout", required_argument, NULL, O_MAX_TIMEOUT},
        {"tries", required_argument, NULL, O_TRIES},
        {"retries", required_argument, NULL, O_RETRIES},
        {"sockets", required_argument, NULL, O_SOCKETS},
        {"seed", required_argument, NULL, O_SEED},
        {"json", no_argument, NULL, O_JSON},
        {"summary", no_argument, NULL, O_SUMMARY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool seeded = false;
    uint64_t v;
    int o, rc;
    while ((o = getopt_long(argc, argv, "s:c:n:d:k:r:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            if ((rc = add_servers(g, optarg))) return rc;
            break;
        case O_PEERS:
            if ((rc = add_peers_file(g, optarg))) return rc;
            break;
        case 'c':
            if (!parse_u64(optarg, 1, MAX_CLIENTS, &v)) return bad("-c", optarg);
            g->clients = (unsigned)v;
            break;
        case 'n':
            if (!parse_u64(optarg, 0, UINT64_MAX / 2, &g->requests)) return bad("-n", optarg);
            g->no_run = g->requests == 0;
            g->duration_s = 0;
            break;
        case 'd':
            if (!parse_double(optarg, 0.001, 1e7, &g->duration_s)) return bad("-d", optarg);
            g->requests = 0;
            g->no_run = false;
            break;
        case O_PAIRS: g->workload = W_PAIRS; break;
        case 'k':
            if (!parse_u64(optarg, 1, UINT32_MAX, &v)) return bad("-k", optarg);
            g->keyspace = (uint32_t)v;
            break;
        case O_KEY_SIZE:
            if (!parse_u64(optarg, 1, WIRE_MAX_KEY, &v)) return bad("--key-size", optarg);
            g->key_size = (unsigned)v;
            break;
        case O_VALUE_SIZE:
            if (!parse_u64(optarg, 0, WIRE_MAX_VALUE, &v)) return bad("--value-size", optarg);
            g->value_size = (unsigned)v;
            g->value_size_set = true;
            break;
        case 'r':
            if (!parse_double(optarg, 0, 1, &g->read_fraction)) return bad("-r", optarg);
            break;
        case O_PRELOAD: g->preload = true; break;
        case O_VERIFY: g->verify = true; break;
        case O_TIMEOUT:
            if (!parse_u64(optarg, 1, 600000, &v)) return bad("--timeout", optarg);
            g->timeout_ms = (unsigned)v;
            break;
        case O_MAX_TIMEOUT:
            if (!parse_u64(optarg, 1, 600000, &v)) return bad("--max-timeout", optarg);
            g->max_timeout_ms = (unsigned)v;
            break;
        case O_TRIES:
            if (!parse_u64(optarg, 1, 100, &v)) return bad("--tries", optarg);
            g->tries = (unsigned)v;
            break;
        case O_RETRIES:
            if (!parse_u64(optarg, 0, 99, &v)) return bad("--retries", optarg);
            g->tries = (unsigned)v + 1;
            break;
        case O_SOCKETS:
            if (!parse_u64(optarg, 1, MAX_CLIENTS, &v)) return bad("--sockets", optarg);
            g->sockets = (unsigned)v;
            break;
        case O_SEED:
            if (!parse_u64(optarg, 0, UINT64_MAX, &g->seed)) return bad("--seed", optarg);
            seeded = true;
            break;
        case O_JSON: g->out = OUT_JSON; break;
        case O_SUMMARY: g->out = OUT_SUMMARY; break;
        case 'h': usage(stdout); return -1;
        default: fprintf(stderr, "Try 'dht-bench --help'.\n"); return EX_USAGE_;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dht-bench: unexpected argument '%s'\nTry 'dht-bench --help'.\n",
                argv[optind]);
        return EX_USAGE_;
    }
    if (g->nservers == 0) {
        const char *env = getenv("DHT_SERVER");
        if ((rc = add_servers(g, env && *env ? env : "127.0.0.1:7000"))) return rc;
    }
    bool pairs = g->workload == W_PAIRS;
    if (pairs && (g->preload || g->verify)) {
        fprintf(stderr, "dht-bench: --pairs writes random keys: no --preload or --verify\n");
        return EX_USAGE_;
    }
    if (g->no_run && !g->preload && !g->verify) {
        fprintf(stderr, "dht-bench: -n 0 without --preload or --verify: nothing to do\n");
        return EX_USAGE_;
    }
    if (!g->key_size) g->key_size = pairs ? WIRE_MAX_KEY : 16;
    if (!g->value_size_set) g->value_size = pairs ? 8 : 100;
    if (!g->timeout_ms) g->timeout_ms = pairs ? PAIRS_TIMEOUT_MS : 1000;
    if (!g->max_timeout_ms) g->max_timeout_ms = MAX_TIMEOUT_MS;
    if (!g->tries) g->tries = pairs ? PAIRS_TRIES : 3;
    if (!g->sockets) g->sockets = !pairs ? 1 : g->clients < MAX_AUTO_SOCKETS ? g->clients
                                                                            : MAX_AUTO_SOCKETS;
    if (g->sockets > g->clients) g->sockets = g->clients;
    unsigned digits = 1;
    for (uint32_t k = g->keyspace - 1; k >= 10; k /= 10) digits++;
    if (!pairs && digits > g->key_size) {
        fprintf(stderr, "dht-bench: --key-size %u is too short for %" PRIu32 " keys\n",
                g->key_size, g->keyspace);
        return EX_USAGE_;
    }
    if (!seeded) {
        uint8_t r[WIRE_ID_LEN];
        if (client_random_id(r) == 0) memcpy(&g->seed, r, sizeof g->seed);
        g->seed %= 1000000000; /* short enough to retype */
    }
    return 0;
}

/* ---- setup ---- */

/* Makes room for n more descriptors: raises the soft RLIMIT_NOFILE up to
 * the hard one if it needs to. Returns 0 or -1 (message printed). */
static int enough_fds(unsigned n) {
    struct rlimit rl;
    rlim_t need = (rlim_t)n + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (rl.rlim_cur < need || setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "dht-bench: %u sockets need %llu descriptors, the limit is %llu "
                        "(use fewer --sockets)\n", n, (unsigned long long)need,
                (unsigned long long)rl.rlim_max);
        return -1;
    }
    return 0;
}

static int open_socket(bench *b, uv_udp_t *u, bool big) {
    int rc = uv_udp_init_ex(b->loop, u, AF_INET | UV_UDP_RECVMMSG);
    if (rc) goto fail;
    struct sockaddr_in any;
    rc = uv_ip4_addr("0.0.0.0", 0, &any);
    if (!rc) rc = uv_udp_bind(u, (const struct sockaddr *)&any, 0);
    if (rc) goto fail;
    if (big) { /* many clients on it; the kernel caps it at net.core.[rw]mem_max */
        int size = 8 << 20;
        uv_recv_buffer_size((uv_handle_t *)u, &size);
        size = 8 << 20;
        uv_send_buffer_size((uv_handle_t *)u, &size);
    }
    u->data = b;
    if ((rc = uv_udp_recv_start(u, on_alloc, on_recv))) goto fail;
    return 0;
fail:
    fprintf(stderr, "dht-bench: udp socket: %s\n", uv_strerror(rc));
    return -1;
}

static int setup(bench *b) {
    bench_cfg *g = &b->cfg;
    b->loop = uv_default_loop();
    uint8_t r[2][WIRE_ID_LEN];
    if (client_random_id(r[0]) < 0 || client_random_id(r[1]) < 0) {
        perror("dht-bench: getrandom");
        return -1;
    }
    uint64_t s1;
    memcpy(&s1, r[0], 8);
    client_rng_seed(b->idrng, s1);
    memcpy(&b->slot_mask, r[1], sizeof b->slot_mask);
    client_rng_seed(b->rng, g->seed);

    b->written = calloc((size_t)g->keyspace / 8 + 1, 1);
    b->value = malloc((size_t)g->value_size + 64);
    b->c = calloc(g->clients, sizeof *b->c);
    b->socks = calloc(g->sockets, sizeof *b->socks);
    b->dgram_cap = (size_t)g->value_size + WIRE_MAX_KEY + 128;
    size_t per = b->dgram_cap + g->key_size + g->value_size;
    uint8_t *mem = malloc(per * g->clients);
    b->arena = wire_arena_new();
    if (!b->written || !b->value || !b->c || !b->socks || !mem || !b->arena) {
        fprintf(stderr, "dht-bench: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < (size_t)g->value_size + 64; i++)
        b->value[i] = (uint8_t)('a' + client_rng_next(b->rng) % 26);

    if (enough_fds(g->sockets) < 0) return -1;
    for (; b->nsocks < g->sockets; b->nsocks++)
        if (open_socket(b, &b->socks[b->nsocks], g->sockets < g->clients) < 0) return -1;
    uv_signal_init(b->loop, &b->sigint);
    b->sigint.data = b;
    uv_signal_start(&b->sigint, on_sigint, SIGINT);
    uv_timer_init(b->loop, &b->progress);
    b->progress.data = b;
    if (isatty(STDERR_FILENO) && g->out == OUT_TEXT)
        uv_timer_start(&b->progress, on_progress, 1000, 1000);
    for (unsigned i = 0; i < g->clients; i++) {
        bclient *c = &b->c[i];
        c->b = b;
        c->slot = i;
        c->sock = &b->socks[i % b->nsocks];
        c->dgram = mem + (size_t)i * per;
        c->pkey = c->dgram + b->dgram_cap;
        c->pval = c->pkey + g->key_size;
        uv_timer_init(b->loop, &c->timer);
        c->timer.data = c;
    }
    for (int ph = 0; ph < PH_COUNT; ph++) client_hist_init(&b->st[ph].lat);
    return 0;
}

int main(int argc, char **argv) {
    static bench b = {
        .cfg = {.clients = 50, .requests = 100000, .keyspace = 10000, .read_fraction = 0.9},
    };
    int rc = parse_options(&b.cfg, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (setup(&b) < 0) return 71;
    enum phase first = PH_PRELOAD;
    while (!phase_wanted(&b.cfg, first)) first++;
    b.t_start = uv_hrtime();
    start_phase(&b, first);
    uv_run(b.loop, UV_RUN_DEFAULT);
    b.t_end = uv_hrtime();
    b.cpu_s = cpu_seconds();
    if (b.cfg.out == OUT_JSON) report_json(&b);
    else if (b.cfg.out == OUT_SUMMARY) report_summary(&b);
    else report_text(&b);
    uv_loop_close(b.loop);
    uint64_t answered = 0;
    for (int ph = 0; ph < PH_COUNT; ph++) answered += b.st[ph].ops;
    return answered ? 0 : 1; /* 1: no request was answered at all */
}
