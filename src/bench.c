/*
 * dht-bench: closed-loop load generator for dht nodes.
 *
 * CLIENTS simulated clients each keep one request outstanding: when its
 * reply comes (or it finally fails) the client sends its next request at
 * once. Everything runs on one libuv loop with ONE unconnected UDP socket
 * shared by all clients; replies may come from any node (the owner of a
 * key answers directly) and are matched to their client by message ID:
 *
 *   ID OFFSET  SIZE  MEANING
 *   0          4     client slot (little endian) XOR a random per-run mask
 *   4          12    random (xoshiro256**, seeded from getrandom)
 *
 * A reply whose ID is not the one its slot is waiting for (a late answer to
 * a retried request, a stranger) or whose checksum is bad is counted as
 * stray and dropped. Receiving uses recvmmsg (libuv UV_UDP_RECVMMSG).
 *
 * A request that gets no reply within --timeout is sent again with the same
 * ID (the node's reply cache keeps that at-most-once), up to --tries sends
 * in all; then it is counted as failed. The timeout is the same for every
 * try. "Temporary overload" answers are counted under their error code and
 * the client waits overloadWaitTime before its next request.
 *
 * Requests go round-robin to the -s servers. Keys are "k" + the key number
 * in decimal, zero-padded to --key-size bytes; the mix of GET and PUT and
 * the keys are drawn uniformly from a PRNG seeded by --seed (the message
 * IDs are not, so repeated runs never hit the nodes' reply caches). A GET
 * answered "no such key" counts as "not found" unless a PUT of that key had
 * been acknowledged before the GET was sent, in which case it is an error
 * (a lost write) under code 0x01. Latency is from the first send to the
 * reply, in microseconds, kept in a log-linear histogram (client.h).
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
#include <unistd.h>
#include <uv.h>

#include "client.h"
#include "wire.h"

#define EX_USAGE_ 64
#define MAX_SERVERS 256
#define MAX_CLIENTS 100000
#define MAX_OVERLOAD_WAIT_MS 10000
#define ERR_CODES 256 /* err[ERR_CODES] counts codes >= ERR_CODES */
#define RECV_CHUNKS 20 /* datagrams per recvmmsg */

typedef struct bench_cfg {
    struct sockaddr_in servers[MAX_SERVERS];
    const char *server_strs[MAX_SERVERS];
    unsigned nservers;
    unsigned clients;
    uint64_t requests;  /* 0: run for duration_s */
    double duration_s;
    uint32_t keyspace;
    unsigned key_size;
    unsigned value_size;
    double read_fraction;
    bool preload;
    bool json;
    unsigned timeout_ms;
    unsigned tries;
    uint64_t seed;
} bench_cfg;

enum cstate { C_IDLE, C_WAIT, C_BACKOFF };

typedef struct bench bench;

typedef struct bclient {
    uv_timer_t timer; /* reply timeout, or overload back-off */
    bench *b;
    uint32_t slot;
    enum cstate state;
    uint32_t cmd;
    uint32_t key;
    bool known;       /* GET of a key whose PUT was acknowledged earlier */
    unsigned tries;   /* sends of the current request */
    uint64_t t0;      /* uv_hrtime() of the first send */
    const struct sockaddr_in *dst;
    uint8_t id[WIRE_ID_LEN];
    size_t len;
    uint8_t *dgram;   /* the encoded request, resent as is */
} bclient;

typedef struct stats {
    uint64_t issued;    /* requests started */
    uint64_t ops;       /* requests answered (any errCode) */
    uint64_t gets, puts;
    uint64_t not_found; /* GET of a key never acknowledged written */
    uint64_t errors;    /* answers with errCode != 0, not_found excluded */
    uint64_t err[ERR_CODES + 1];
    uint64_t timeouts;  /* tries that timed out */
    uint64_t failed;    /* requests given up after --tries */
    uint64_t stray;     /* datagrams matching no outstanding request */
    uint64_t send_errors;
    uint64_t start_ns, end_ns;
    client_hist lat;
} stats;

enum phase { PH_PRELOAD, PH_RUN };

struct bench {
    bench_cfg cfg;
    uv_loop_t *loop;
    uv_udp_t udp;
    wire_arena *arena;   /* replies are decoded here */
    uv_signal_t sigint;
    uv_timer_t progress; /* a status line on a terminal, every second */
    uint64_t progress_ops;
    bclient *c;
    unsigned idle;
    enum phase phase;
    uint64_t next_key;   /* preload: the next key to PUT */
    uint64_t deadline_ns;
    bool interrupted;
    size_t rr;           /* round-robin server index */
    uint8_t *written;    /* bitmap: keys with an acknowledged PUT */
    uint8_t *value;      /* value_size + 64 random printable bytes */
    size_t dgram_cap;
    uint64_t rng[4];     /* workload: keys, GET/PUT mix, values */
    uint64_t idrng[4];   /* message IDs */
    uint32_t slot_mask;
    stats pre, run;
};

/* ---- requests ---- */

static stats *cur(bench *b) { return b->phase == PH_PRELOAD ? &b->pre : &b->run; }

static void make_key(const bench *b, uint32_t k, uint8_t *out) {
    unsigned n = b->cfg.key_size;
    memset(out, '0', n);
    for (unsigned i = n; i > 0 && k; i--, k /= 10) out[i - 1] = (uint8_t)('0' + k % 10);
    if (n > 1 && out[0] == '0') out[0] = 'k';
}

static void make_id(bench *b, uint32_t slot, uint8_t id[WIRE_ID_LEN]) {
    uint32_t s = slot ^ b->slot_mask;
    id[0] = (uint8_t)s;
    id[1] = (uint8_t)(s >> 8);
    id[2] = (uint8_t)(s >> 16);
    id[3] = (uint8_t)(s >> 24);
    uint64_t r1 = client_rng_next(b->idrng), r2 = client_rng_next(b->idrng);
    memcpy(id + 4, &r1, 8);
    memcpy(id + 12, &r2, 4);
}

static uint32_t id_slot(const bench *b, const uint8_t *id) {
    return ((uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 |
            (uint32_t)id[3] << 24) ^ b->slot_mask;
}

static bool more_to_issue(bench *b) {
    if (b->interrupted) return false;
    if (b->phase == PH_PRELOAD) return b->next_key < b->cfg.keyspace;
    if (b->cfg.requests) return b->run.issued < b->cfg.requests;
    return uv_hrtime() < b->deadline_ns;
}

static void phase_done(bench *b);
static void on_timer(uv_timer_t *t);

static void send_try(bclient *c) {
    bench *b = c->b;
    uv_buf_t buf = uv_buf_init((char *)c->dgram, (unsigned)c->len);
    int rc = uv_udp_try_send(&b->udp, &buf, 1, (const struct sockaddr *)c->dst);
    /* A datagram that cannot be sent is handled as a lost one. */
    if (rc < 0) cur(b)->send_errors++;
    c->tries++;
    uv_timer_start(&c->timer, on_timer, b->cfg.timeout_ms, 0);
}

/* Starts the client's next request, or parks it when there is none. */
static void issue(bclient *c) {
    bench *b = c->b;
    if (!more_to_issue(b)) {
        c->state = C_IDLE;
        if (++b->idle == b->cfg.clients) phase_done(b);
        return;
    }
    stats *s = cur(b);
    s->issued++;
    if (b->phase == PH_PRELOAD) {
        c->cmd = WIRE_PUT;
        c->key = (uint32_t)b->next_key++;
    } else {
        c->cmd = client_rng_unit(b->rng) < b->cfg.read_fraction ? WIRE_GET : WIRE_PUT;
        c->key = (uint32_t)(client_rng_next(b->rng) % b->cfg.keyspace);
    }
    c->known = b->written[c->key / 8] >> (c->key % 8) & 1;
    uint8_t key[WIRE_MAX_KEY];
    make_key(b, c->key, key);
    make_id(b, c->slot, c->id);
    const uint8_t *val = c->cmd == WIRE_PUT ? b->value + c->key % 64 : NULL;
    size_t vlen = c->cmd == WIRE_PUT ? b->cfg.value_size : 0;
    c->len = wire_request(c->dgram, b->dgram_cap, c->id, c->cmd, key, b->cfg.key_size, val,
                          vlen, 0);
    c->dst = &b->cfg.servers[b->rr++ % b->cfg.nservers];
    c->state = C_WAIT;
    c->tries = 0;
    c->t0 = uv_hrtime();
    send_try(c);
}

static void on_timer(uv_timer_t *t) {
    bclient *c = t->data;
    if (c->state == C_BACKOFF) {
        issue(c);
        return;
    }
    stats *s = cur(c->b);
    s->timeouts++;
    if (c->tries < c->b->cfg.tries) {
        send_try(c);
        return;
    }
    s->failed++;
    issue(c);
}

static void complete(bclient *c, const KVResponse *r) {
    bench *b = c->b;
    stats *s = cur(b);
    uv_timer_stop(&c->timer);
    client_hist_record(&s->lat, (uv_hrtime() - c->t0) / 1000);
    s->ops++;
    if (c->cmd == WIRE_GET) s->gets++;
    else s->puts++;
    uint32_t code = r->errcode;
    if (code == WIRE_OK) {
        if (c->cmd == WIRE_PUT) b->written[c->key / 8] |= (uint8_t)(1u << (c->key % 8));
    } else if (code == WIRE_ENOKEY && c->cmd == WIRE_GET && !c->known) {
        s->not_found++;
    } else {
        s->errors++;
        s->err[code < ERR_CODES ? code : ERR_CODES]++;
    }
    if (code == WIRE_EOVERLOAD && r->overloadwaittime > 0) {
        int32_t w = r->overloadwaittime;
        c->state = C_BACKOFF;
        uv_timer_start(&c->timer, on_timer, w < MAX_OVERLOAD_WAIT_MS ? (uint64_t)w
                                                                     : MAX_OVERLOAD_WAIT_MS, 0);
        return;
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
    if (!c || c->state != C_WAIT || memcmp(c->id, f.id, WIRE_ID_LEN) != 0) {
        cur(b)->stray++;
        return;
    }
    complete(c, r);
}

static void start_phase(bench *b, enum phase ph) {
    b->phase = ph;
    b->idle = 0;
    stats *s = cur(b);
    s->start_ns = uv_hrtime();
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
    if (b->phase == PH_PRELOAD)
        snprintf(left, sizeof left, "   %" PRIu32 " keys", b->cfg.keyspace);
    else if (b->cfg.requests)
        snprintf(left, sizeof left, "   of %" PRIu64, b->cfg.requests);
    else if (b->deadline_ns > now)
        snprintf(left, sizeof left, "   %.0f s left", (double)(b->deadline_ns - now) / 1e9);
    fprintf(stderr, "\r\033[K%-7s %10" PRIu64 " ops%s   %8" PRIu64 " ops/s",
            b->phase == PH_PRELOAD ? "preload" : "run", ops, left,
            ops - b->progress_ops);
    b->progress_ops = ops;
}

static void phase_done(bench *b) {
    cur(b)->end_ns = uv_hrtime();
    b->progress_ops = 0;
    if (b->phase == PH_PRELOAD && !b->interrupted) {
        start_phase(b, PH_RUN);
        return;
    }
    uv_udp_recv_stop(&b->udp);
    uv_close((uv_handle_t *)&b->udp, NULL);
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
    fprintf(stderr, "dht-bench: interrupted, waiting for outstanding requests "
                    "(^C again to quit)\n");
}

/* ---- report ---- */

static double seconds(const stats *s) { return (double)(s->end_ns - s->start_ns) / 1e9; }

static double rate(const stats *s) {
    double t = seconds(s);
    return t > 0 ? (double)s->ops / t : 0;
}

static void report_text(const bench *b) {
    const bench_cfg *g = &b->cfg;
    const stats *s = &b->run;
    printf("dht-bench: %u server%s, %u clients, keyspace %" PRIu32 ", %u B keys, %u B values, "
           "%.0f%% reads, seed %" PRIu64 "\n",
           g->nservers, g->nservers == 1 ? "" : "s", g->clients, g->keyspace, g->key_size,
           g->value_size, g->read_fraction * 100, g->seed);
    if (g->preload)
        printf("preload    %" PRIu64 " PUTs in %.3f s (%.0f ops/s), %" PRIu64 " errors, %" PRIu64
               " failed\n",
               b->pre.ops, seconds(&b->pre), rate(&b->pre), b->pre.errors, b->pre.failed);
    printf("ops        %" PRIu64 " in %.3f s: %.0f ops/s%s\n", s->ops, seconds(s), rate(s),
           b->interrupted ? " (interrupted)" : "");
    printf("           %" PRIu64 " GET (%" PRIu64 " not found), %" PRIu64 " PUT\n", s->gets,
           s->not_found, s->puts);
    printf("errors     %" PRIu64 "\n", s->errors);
    for (unsigned i = 0; i <= ERR_CODES; i++)
        if (s->err[i])
            printf("           0x%02x %-18s %" PRIu64 "\n", i,
                   i < ERR_CODES ? wire_err_name(i) : "(code >= 0x100)", s->err[i]);
    printf("timeouts   %" PRIu64 " tries timed out, %" PRIu64 " requests failed after %u tries\n",
           s->timeouts, s->failed, g->tries);
    if (s->stray || s->send_errors)
        printf("other      %" PRIu64 " stray datagrams, %" PRIu64 " send errors\n", s->stray,
               s->send_errors);
    printf("latency us p50 %" PRIu64 "  p99 %" PRIu64 "  p999 %" PRIu64 "  max %" PRIu64
           "  mean %.0f\n",
           client_hist_percentile(&s->lat, 50), client_hist_percentile(&s->lat, 99),
           client_hist_percentile(&s->lat, 99.9), s->lat.max, client_hist_mean(&s->lat));
}

static void report_json(const bench *b) {
    const bench_cfg *g = &b->cfg;
    const stats *s = &b->run;
    printf("{\"ops\":%" PRIu64 ",\"seconds\":%.6f,\"ops_per_sec\":%.1f", s->ops, seconds(s),
           rate(s));
    printf(",\"gets\":%" PRIu64 ",\"puts\":%" PRIu64 ",\"not_found\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"errors_by_code\":{",
           s->gets, s->puts, s->not_found, s->errors);
    const char *sep = "";
    for (unsigned i = 0; i <= ERR_CODES; i++) {
        if (!s->err[i]) continue;
        printf("%s\"%u\":%" PRIu64, sep, i, s->err[i]);
        sep = ",";
    }
    printf("},\"timeouts\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"stray\":%" PRIu64
           ",\"send_errors\":%" PRIu64,
           s->timeouts, s->failed, s->stray, s->send_errors);
    printf(",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
           ",\"max_us\":%" PRIu64 ",\"mean_us\":%.1f",
           client_hist_percentile(&s->lat, 50), client_hist_percentile(&s->lat, 99),
           client_hist_percentile(&s->lat, 99.9), s->lat.max, client_hist_mean(&s->lat));
    printf(",\"servers\":%u,\"clients\":%u,\"keyspace\":%" PRIu32 ",\"key_size\":%u"
           ",\"value_size\":%u,\"read_fraction\":%g,\"seed\":%" PRIu64 ",\"interrupted\":%s",
           g->nservers, g->clients, g->keyspace, g->key_size, g->value_size, g->read_fraction,
           g->seed, b->interrupted ? "true" : "false");
    if (g->preload)
        printf(",\"preload_ops\":%" PRIu64 ",\"preload_seconds\":%.6f,\"preload_errors\":%" PRIu64
               ",\"preload_failed\":%" PRIu64,
               b->pre.ops, seconds(&b->pre), b->pre.errors, b->pre.failed);
    printf("}\n");
}

/* ---- options ---- */

static void usage(FILE *f) {
    fprintf(f,
        "usage: dht-bench [-s HOST:PORT]... [-c CLIENTS] [-n REQUESTS | -d SECONDS]\n"
        "                 [-k KEYSPACE] [--key-size B] [--value-size B] [-r READ_FRACTION]\n"
        "                 [--preload] [--timeout MS] [--tries N] [--seed N] [--json]\n"
        "\n"
        "Closed-loop load: CLIENTS requests outstanding at all times, GET or PUT of\n"
        "uniformly drawn keys, spread round-robin over the servers.\n"
        "\n"
        "  -s, --server HOST:PORT  a node; repeat to spread the load over several\n"
        "                          (default $DHT_SERVER or 127.0.0.1:7000)\n"
        "  -c, --clients N         concurrent outstanding requests (50)\n"
        "  -n, --requests N        requests in all (default 100000)\n"
        "  -d, --duration S        run for S seconds instead\n"
        "  -k, --keyspace N        distinct keys (10000)\n"
        "      --key-size B        key length, 1..32 (16): \"k000...0123\"\n"
        "      --value-size B      PUT value length, 0..10000 (100)\n"
        "  -r, --read-fraction F   share of GETs, 0..1 (0.9)\n"
        "      --preload           PUT every key once before measuring\n"
        "      --timeout MS        wait for a reply before resending (1000)\n"
        "      --tries N           sends per request, same message ID, before it\n"
        "                          counts as failed (3)\n"
        "      --seed N            workload seed (default: random, printed)\n"
        "      --json              print the results as one JSON line\n"
        "  -h, --help              this help\n"
        "\n"
        "Prints ops/s, errors by code, timeouts and latency percentiles (us). A GET of\n"
        "a key not yet written counts as 'not found', not as an error.\n");
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
    g->server_strs[g->nservers++] = s;
    return 0;
}

enum { O_KEY_SIZE = 256, O_VALUE_SIZE, O_PRELOAD, O_TIMEOUT, O_TRIES, O_SEED, O_JSON };

/* Fills g from argv; returns 0, -1 after --help, or an exit status. */
static int parse_options(bench_cfg *g, int argc, char **argv) {
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"clients", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"keyspace", required_argument, NULL, 'k'},
        {"key-size", required_argument, NULL, O_KEY_SIZE},
        {"value-size", required_argument, NULL, O_VALUE_SIZE},
        {"read-fraction", required_argument, NULL, 'r'},
        {"preload", no_argument, NULL, O_PRELOAD},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"tries", required_argument, NULL, O_TRIES},
        {"seed", required_argument, NULL, O_SEED},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool seeded = false;
    uint64_t v;
    int o, rc;
    while ((o = getopt_long(argc, argv, "s:c:n:d:k:r:h", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            if ((rc = add_server(g, optarg))) return rc;
            break;
        case 'c':
            if (!parse_u64(optarg, 1, MAX_CLIENTS, &v)) return bad("-c", optarg);
            g->clients = (unsigned)v;
            break;
        case 'n':
            if (!parse_u64(optarg, 1, UINT64_MAX / 2, &g->requests)) return bad("-n", optarg);
            g->duration_s = 0;
            break;
        case 'd':
            if (!parse_double(optarg, 0.001, 1e7, &g->duration_s)) return bad("-d", optarg);
            g->requests = 0;
            break;
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
            break;
        case 'r':
            if (!parse_double(optarg, 0, 1, &g->read_fraction)) return bad("-r", optarg);
            break;
        case O_PRELOAD: g->preload = true; break;
        case O_TIMEOUT:
            if (!parse_u64(optarg, 1, 600000, &v)) return bad("--timeout", optarg);
            g->timeout_ms = (unsigned)v;
            break;
        case O_TRIES:
            if (!parse_u64(optarg, 1, 100, &v)) return bad("--tries", optarg);
            g->tries = (unsigned)v;
            break;
        case O_SEED:
            if (!parse_u64(optarg, 0, UINT64_MAX, &g->seed)) return bad("--seed", optarg);
            seeded = true;
            break;
        case O_JSON: g->json = true; break;
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
        if ((rc = add_server(g, env && *env ? env : "127.0.0.1:7000"))) return rc;
    }
    unsigned digits = 1;
    for (uint32_t k = g->keyspace - 1; k >= 10; k /= 10) digits++;
    if (digits > g->key_size) {
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
    b->dgram_cap = (size_t)g->value_size + WIRE_MAX_KEY + 128;
    uint8_t *dg = malloc(b->dgram_cap * g->clients);
    b->arena = wire_arena_new();
    if (!b->written || !b->value || !b->c || !dg || !b->arena) {
        fprintf(stderr, "dht-bench: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < (size_t)g->value_size + 64; i++)
        b->value[i] = (uint8_t)('a' + client_rng_next(b->rng) % 26);

    int rc = uv_udp_init_ex(b->loop, &b->udp, AF_INET | UV_UDP_RECVMMSG);
    struct sockaddr_in any;
    if (!rc) rc = uv_ip4_addr("0.0.0.0", 0, &any);
    if (!rc) rc = uv_udp_bind(&b->udp, (const struct sockaddr *)&any, 0);
    if (rc) {
        fprintf(stderr, "dht-bench: udp socket: %s\n", uv_strerror(rc));
        return -1;
    }
    int size = 8 << 20; /* the kernel caps it at net.core.[rw]mem_max */
    uv_recv_buffer_size((uv_handle_t *)&b->udp, &size);
    size = 8 << 20;
    uv_send_buffer_size((uv_handle_t *)&b->udp, &size);
    b->udp.data = b;
    if ((rc = uv_udp_recv_start(&b->udp, on_alloc, on_recv))) {
        fprintf(stderr, "dht-bench: udp recv: %s\n", uv_strerror(rc));
        return -1;
    }
    uv_signal_init(b->loop, &b->sigint);
    b->sigint.data = b;
    uv_signal_start(&b->sigint, on_sigint, SIGINT);
    uv_timer_init(b->loop, &b->progress);
    b->progress.data = b;
    if (isatty(STDERR_FILENO) && !g->json) uv_timer_start(&b->progress, on_progress, 1000, 1000);
    for (unsigned i = 0; i < g->clients; i++) {
        bclient *c = &b->c[i];
        c->b = b;
        c->slot = i;
        c->dgram = dg + (size_t)i * b->dgram_cap;
        uv_timer_init(b->loop, &c->timer);
        c->timer.data = c;
    }
    client_hist_init(&b->pre.lat);
    client_hist_init(&b->run.lat);
    return 0;
}

int main(int argc, char **argv) {
    static bench b = {
        .cfg = {.clients = 50, .requests = 100000, .keyspace = 10000, .key_size = 16,
                .value_size = 100, .read_fraction = 0.9, .timeout_ms = 1000, .tries = 3},
    };
    int rc = parse_options(&b.cfg, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (setup(&b) < 0) return 71;
    start_phase(&b, b.cfg.preload ? PH_PRELOAD : PH_RUN);
    uv_run(b.loop, UV_RUN_DEFAULT);
    if (b.cfg.json) report_json(&b);
    else report_text(&b);
    uv_loop_close(b.loop);
    return b.run.ops ? 0 : 1; /* 1: no request was answered at all */
}
