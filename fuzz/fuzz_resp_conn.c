/*
 * libFuzzer target for resp.c's connections and commands: the input is what
 * a Redis client sends on one connection, and it goes to a real node's Redis
 * port, over a real loopback TCP connection, to be answered by run_command
 * and the cmd_* handlers (CLUSTER, CLIENT, COMMAND, CONFIG, INFO, AUTH, the
 * multi-key commands and their key queue, ...), whose reads and writes run
 * through repl to the node's store and its replicas and come back.
 *
 * The seam: resp_start as dht-server calls it, on a libuv loop this target
 * runs itself (uv_run, UV_RUN_NOWAIT, a turn at a time), with the client's
 * socket in the same thread. Nothing in src/ changes for it, and the whole
 * path a client's bytes take is fuzzed: on_alloc and on_read (the shared
 * read buffer rbuf and a connection's own, where a23c53a's stale argument
 * pointed), conn_parse, run_command, the reply queue, conn_write, the states
 * FINISHING and QUITTING, and closes with operations in flight. A testing
 * entry point that fed bytes to a connection without a socket would have had
 * to stub every uv_tcp_t call in resp.c (reads, try_write, write requests,
 * close, peer names for CLIENT LIST) and would skip the buffer hand-over
 * where that bug was; a loopback connection costs a few system calls an
 * input.
 *
 * The nodes: four in the unit tests' fake world (tests/unit/fake_env.h: a
 * clock moved by hand, random numbers from a fixed seed), 127.0.0.1:7000 to
 * 7003, one cluster (N=3, W=2, R=2: every key's operation waits for a peer),
 * each serving Redis clients on a loopback port of its own: 7000 plain, 7001
 * with --resp-cluster (so -MOVED and -CROSSSLOT), 7002 plain with a password
 * ("fuzzpass") and a --resp-max-buffer of 64 KiB (a client holding more is
 * closed), 7003 cluster with the password. Their datagrams to each other are
 * queued here and delivered, as a network would, between the loop's turns;
 * the clock moves to the nodes' next deadline when nothing else is to do.
 *
 * The input: its first byte says how the rest is played. Bits 0-1: which
 * of the four ports. 2-3: the size of the client's writes, 1..8, 1..64 or
 * 1..1024 bytes (each drawn from a hash of the input; more when that would
 * make over PIECES_MAX writes) or all at once; the loop turns once after
 * each write, so that the node reads it alone and commands arrive in
 * pieces, as in fuzz_resp.c. 4: the nodes' datagrams are held until the
 * client has sent everything, so operations stay in flight while commands
 * arrive. 6: the clock moves 50 ms after each write, running the nodes'
 * timers meanwhile; with 4, the datagrams are lost instead of held (the
 * node cut off: resends, quorums not reached, members suspected, slots
 * served by others). 5: the client resets the connection after its last
 * write instead of half-closing it and reading every reply. 7: the
 * client's receive buffer and the node's send buffer are 4 KiB, and it
 * reads 8 KiB a turn (the node's writes queue: uv_write, reading paused).
 * The rest is the byte stream.
 *
 * Checks, besides the sanitizers: the replies are well-formed RESP2 (one
 * line a status or error, bulk lengths that match); the node ends a
 * half-closed connection within 10 simulated minutes, not in the middle of
 * a reply, after one reply a command (a protocol error, QUIT, NOAUTH
 * included; counted with resp_parse over the input, AUTH followed), unless
 * it was 7002's, whose clients may be closed for what they hold, or the
 * client's writes were refused (the node had closed with input unread: its
 * kernel reset the connection); and it lets go of every connection once
 * the client has gone. State (stores, members, client IDs, names) carries
 * over from input to input; memory stays bounded: stores of 1 MiB (7000,
 * 7001) and 32 KiB (7002, 7003: they fill up, -OOM), 1 MiB reply caches,
 * no member added (no datagram comes from outside the four). Members cut
 * off are suspected but never declared dead, and anti-entropy runs once a
 * simulated minute: the sweeps and digests that follow took most of the
 * time, and fuzz_node.c has them. See fuzz/README.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "../tests/unit/fake_env.h"
#include "members.h"
#include "node.h"
#include "repl.h"
#include "resp.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODES 4
#define PASSWORD "fuzzpass"
#define EVICTING 2                   /* the node whose clients may be closed for what they hold */
#define DGRAMS_MAX 4096              /* datagrams in flight at most; more are lost */
#define PIECES_MAX 128               /* writes of an input, about: larger ones past it */
#define SETTLE_MS (600u * 1000)      /* a connection must end within, simulated */

static void fail(const char *why) {
    fprintf(stderr, "fuzz_resp_conn: %s\n", why);
    abort();
}

/* ---- the nodes' network -------------------------------------------------- */

typedef struct dgram {
    uint16_t from, to;               /* UDP ports */
    size_t len;
    uint8_t *buf;
} dgram;

static node *nodes[NODES];
static uint16_t resp_ports[NODES];
static int ctx_of[NODES];            /* env ctx: the node's index */
static dgram *net;                   /* queued datagrams */
static size_t nnet;
static bool lose;                    /* the network loses every datagram */
static uv_loop_t loop;

static int net_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    int i = *(int *)ctx;
    if (len == 0 || len > WIRE_MAX_DATAGRAM) fail("a datagram no socket could send");
    if (nnet == DGRAMS_MAX) return 0;  /* lost, as UDP may */
    uint8_t *copy = malloc(len);
    if (!copy) return 0;
    memcpy(copy, buf, len);
    net[nnet++] = (dgram){.from = (uint16_t)(7000 + i), .to = ntohs(to->sin_port), .len = len,
                          .buf = copy};
    return 0;
}

/* Flushes every node's outbox, then delivers what is queued, round after
 * round, until nothing is (or max rounds). True if anything was delivered. */
static bool net_run(int max_rounds) {
    bool any = false;
    static dgram batch[DGRAMS_MAX];
    for (int round = 0; round < max_rounds; round++) {
        for (int i = 0; i < NODES; i++) node_flush(nodes[i]);
        if (!nnet) break;
        size_t k = nnet;
        memcpy(batch, net, k * sizeof *batch);
        nnet = 0;
        for (size_t j = 0; j < k; j++) {
            int to = batch[j].to - 7000;
            if (to >= 0 && to < NODES && !lose) {
                struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(batch[j].from),
                                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
                node_receive(nodes[to], &from, batch[j].buf, batch[j].len);
            }
            free(batch[j].buf);
        }
        any = true;
    }
    return any;
}

/* Ticks every node; the earliest deadline they ask for. */
static uint64_t tick_all(void) {
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < NODES; i++) {
        uint64_t t = node_tick(nodes[i]);
        if (t < next) next = t;
    }
    return next;
}

static uint64_t next_deadline;

/* Moves the clock to the nodes' next deadline (at most step ms on), ticks
 * them and delivers what they sent. */
static void clock_step(uint64_t step) {
    uint64_t to = fake.clock_ms + step;
    if (next_deadline > fake.clock_ms && next_deadline < to) to = next_deadline;
    if (to == fake.clock_ms) to++;
    fake.clock_ms = to;
    next_deadline = tick_all();
    net_run(64);
}

/* A free loopback TCP port (the kernel's choice, released again: libuv
 * binds with SO_REUSEADDR). */
static uint16_t free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        fail("no free port");
    close(fd);
    return ntohs(a.sin_port);
}

static void setup(void) {
    signal(SIGPIPE, SIG_IGN);   /* as dht-server: a write to a client gone fails with EPIPE */
    if (uv_loop_init(&loop) != 0) fail("uv_loop_init");
    if (!(net = calloc(DGRAMS_MAX, sizeof *net))) fail("out of memory");
    fake_reset(1000000, 1800000000000ull);
    ring_node seeds[NODES];
    for (int i = 0; i < NODES; i++) seeds[i] = (ring_node){htonl(INADDR_LOOPBACK), (uint16_t)(7000 + i)};
    for (int i = 0; i < NODES; i++) {
        node_config cfg;
        node_defaults(&cfg);
        cfg.quiet = true;
        cfg.vnodes = 16;
        cfg.cache_bytes = 1 << 20;
        /* anti-entropy and re-replication sweeps (fuzz_node's) took 2/3 of the
         * time: sync once a minute, and members cut off are suspected, not
         * declared dead (the live set stays, so no sweep) */
        cfg.sync_ms = 60000;
        cfg.suspicion_ms = 3600 * 1000;
        cfg.port = (uint16_t)(7000 + i);
        cfg.bind_ip = "127.0.0.1";
        cfg.resp_port = resp_ports[i] = free_port();
        cfg.resp_cluster = i & 1;
        cfg.requirepass = i & 2 ? PASSWORD : NULL;
        cfg.max_inflight = i ? 64 : 2048;  /* a key queue past 64 keys, or 256; busy */
        /* dht-server takes 1 MiB at least; inputs of a fuzzer's sizes reach 64 KiB */
        if (i == EVICTING) cfg.resp_max_buffer = 64 << 10;
        /* the small ones fill up: -OOM */
        static const size_t store_bytes[NODES] = {1 << 20, 1 << 20, 32 << 10, 32 << 10};
        store *st;
        if (store_open(&st, NULL, store_bytes[i]) != 0) fail("store_open");
        struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = htons(cfg.port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ctx_of[i] = i;
        node_env env = {.ctx = &ctx_of[i], .now = fake_now, .wall = fake_wall, .send = net_send,
                        .random = fake_random, .log = fake_log, .stop = fake_stop,
                        .incarnation = fake_incarnation, .alive = fake_alive};
        if (!(nodes[i] = node_new(&cfg, &env, &self, st, 1234 + i))) fail("node_new");
        if (node_add_seeds(nodes[i], seeds, NODES) != 0) fail("node_add_seeds");
        if (resp_start(&loop, nodes[i]) != 0) fail("resp_start");
    }
    next_deadline = tick_all();
    /* a minute of gossip: every node sees the four alive, and the slots settle */
    for (uint64_t end = fake.clock_ms + 60000; fake.clock_ms < end;) clock_step(50);
    for (int i = 0; i < NODES; i++)
        if (members_live(nodes[i]->members) != NODES) fail("the nodes did not find each other");
}

/* ---- replies ------------------------------------------------------------- */

static bool verbose;   /* FUZZ_RESP_CONN_VERBOSE set: replies and counts to stderr */

/* What the client has read and not yet parsed. */
static struct {
    char *p;
    size_t len, cap;
    size_t replies;   /* whole top-level replies read */
} rx;

/* The length of the line at p[0..len) up to its CRLF (excluded), -1 when
 * not all here; fails on a lone CR or LF. */
static long line_len(const char *p, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') fail("a reply line with a lone LF");
        if (p[i] == '\r') {
            if (i + 1 == len) return -1;
            if (p[i + 1] != '\n') fail("a reply line with a lone CR");
            return (long)i;
        }
    }
    return -1;
}

static long long line_int(const char *p, long n) {
    if (n == 0 || n > 19) fail("a reply with a bad number");
    long long v = 0;
    long i = p[0] == '-';
    if (i == n) fail("a reply with a bad number");
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') fail("a reply with a bad number");
        v = v * 10 + (p[i] - '0');
    }
    return p[0] == '-' ? -v : v;
}

/* Parses one RESP2 value at p[0..len): its bytes, 0 when not all here;
 * fails on a malformed one. */
static size_t reply_value(const char *p, size_t len, int depth) {
    if (!len) return 0;
    if (depth > 16) fail("a reply nested too deep");
    long n = line_len(p + 1, len - 1);
    if (n < 0) return 0;
    size_t at = 1 + (size_t)n + 2;
    switch (p[0]) {
    case '+':
    case '-':
        return at;
    case ':':
        line_int(p + 1, n);
        return at;
    case '$': {
        long long b = line_int(p + 1, n);
        if (b < -1) fail("a bulk reply of negative length");
        if (b == -1) return at;
        if (len - at < (size_t)b + 2) return 0;
        if (p[at + b] != '\r' || p[at + b + 1] != '\n') fail("a bulk reply longer than it said");
        return at + (size_t)b + 2;
    }
    case '*': {
        long long k = line_int(p + 1, n);
        if (k < -1) fail("an array reply of negative length");
        for (long long i = 0; i < k; i++) {
            size_t e = reply_value(p + at, len - at, depth + 1);
            if (!e) return 0;
            at += e;
        }
        return at;
    }
    default:
        fail("a reply of no RESP2 type");
    }
    return 0;
}

static void rx_parse(void) {
    size_t off = 0, e;
    while ((e = reply_value(rx.p + off, rx.len - off, 0)) > 0) {
        off += e;
        rx.replies++;
    }
    memmove(rx.p, rx.p + off, rx.len - off);
    rx.len -= off;
}

/* Reads what the node sent, at most max bytes: 1 at EOF, -1 on a reset,
 * else 0 (rx grew or nothing was there; *got says which). */
static int client_read(int fd, size_t max, bool *got) {
    for (size_t total = 0; total < max;) {
        if (rx.cap - rx.len < 65536) {
            size_t cap = rx.cap ? rx.cap * 2 : 1 << 17;
            char *p = realloc(rx.p, cap);
            if (!p) fail("out of memory");
            rx.p = p;
            rx.cap = cap;
        }
        size_t room = rx.cap - rx.len < max - total ? rx.cap - rx.len : max - total;
        ssize_t r = recv(fd, rx.p + rx.len, room, 0);
        if (r > 0) {
            total += (size_t)r;
            if (verbose) fwrite(rx.p + rx.len, 1, (size_t)r, stderr);
            rx.len += (size_t)r;
            *got = true;
            rx_parse();
            continue;
        }
        if (r == 0) return 1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -1;
    }
    return 0;
}

/* ---- what the node must answer ------------------------------------------- */

/* The replies a connection owes for stream[0..len), as conn_parse and
 * run_command go: one a command (empty ones none) until QUIT or a protocol
 * error (answered, then the connection ends) or a line of an HTTP request
 * (POST or Host:, unanswered, the connection closed at once: the replies
 * before it not written yet are dropped with it, so *at_most), with the bounds before AUTH
 * while the client has not authenticated. false when that cannot be told
 * (no memory). */
static bool replies_owed(const uint8_t *stream, size_t len, bool password, size_t *owed,
                         bool *at_most) {
    resp_parser p;
    resp_parser_init(&p);
    bool authed = false, known = true;
    size_t start = 0, n = 0, used;
    *at_most = false;
    for (;;) {
        p.noauth = password && !authed;
        int rc = start < len ? resp_parse(&p, (const char *)stream + start, len - start, &used) : 0;
        if (rc == 0) break;
        if (rc == RESP_EPROTO) {
            n++;
            break;
        }
        if (rc < 0) {
            known = false;
            break;
        }
        start += used;
        if (!p.argc) continue;
        const resp_arg *a = p.argv;
        /* a browser's HTTP request: closed unanswered (resp.c http_request_line) */
        if ((a[0].len == 4 && strncasecmp(a[0].p, "post", 4) == 0) ||
            (a[0].len == 5 && strncasecmp(a[0].p, "host:", 5) == 0)) {
            *at_most = true;
            break;
        }
        n++;
        if (a[0].len == 4 && strncasecmp(a[0].p, "quit", 4) == 0) break;
        if (password && a[0].len == 4 && strncasecmp(a[0].p, "auth", 4) == 0 && p.argc >= 2 &&
            p.argc <= 3 && (p.argc == 2 || (a[1].len == 7 && memcmp(a[1].p, "default", 7) == 0)) &&
            a[p.argc - 1].len == strlen(PASSWORD) &&
            memcmp(a[p.argc - 1].p, PASSWORD, strlen(PASSWORD)) == 0)
            authed = true;
    }
    resp_parser_free(&p);
    *owed = n;
    return known;
}

/* ---- one connection an input -------------------------------------------- */

static uint32_t rng(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static size_t tcp_handles;

static void count_tcp(uv_handle_t *h, void *arg) {
    (void)arg;
    if (h->type == UV_TCP) tcp_handles++;
}

/* A small send buffer for the node's end of the connection (the one TCP
 * handle with a peer), so that its replies wait in write requests. */
static void shrink_sndbuf(uv_handle_t *h, void *arg) {
    (void)arg;
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    uv_os_fd_t fd;
    int small = 4096;
    if (h->type == UV_TCP && uv_tcp_getpeername((uv_tcp_t *)h, (struct sockaddr *)&peer, &plen) == 0 &&
        uv_fileno(h, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
}

/* Connections the server holds open (its listeners aside). */
static size_t server_conns(void) {
    tcp_handles = 0;
    uv_walk(&loop, count_tcp, NULL);
    return tcp_handles - NODES;
}

/* One turn of the loop, then the nodes' datagrams unless held. */
static void turn(bool hold) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!hold) net_run(64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!nodes[0]) {
        verbose = getenv("FUZZ_RESP_CONN_VERBOSE") != NULL;
        setup();
    }
    if (size < 1) return 0;
    uint8_t ctrl = data[0];
    const uint8_t *stream = data + 1;
    size_t len = size - 1;
    int which = ctrl & 3;
    static const size_t piece_max[4] = {8, 64, 1024, SIZE_MAX};
    size_t most = piece_max[(ctrl >> 2) & 3];
    if (most < len / PIECES_MAX) most = len / PIECES_MAX;   /* each costs a few system calls */
    bool hold = ctrl & 0x10, reset = ctrl & 0x20, ticking = ctrl & 0x40, slow = ctrl & 0x80;
    size_t read_max = slow ? 8192 : SIZE_MAX;
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 16777619u;
    seed |= 1;

    clock_step(5);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) fail("socket");
    int one = 1, small = 4096;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (slow) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(resp_ports[which]),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&to, sizeof to) != 0 && errno != EINPROGRESS)
        fail("connect");
    size_t before = server_conns();
    for (int i = 0; server_conns() == before; i++) {   /* accepted */
        if (i == 1000) fail("the node did not accept the connection");
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    if (slow) uv_walk(&loop, shrink_sndbuf, NULL);
    rx.len = rx.replies = 0;

    /* the client's writes, the loop turning after each */
    lose = hold && ticking;
    size_t sent = 0;
    bool gone = false;    /* the node closed its end: writes fail */
    bool refused = false; /* a write failed: the node had closed with input unread */
    int eof = 0;
    uint64_t deadline = fake.clock_ms + SETTLE_MS;
    while (sent < len && !gone) {
        if (fake.clock_ms > deadline) fail("the node stopped reading for good");
        size_t piece = most == SIZE_MAX ? len - sent : 1 + rng(&seed) % most;
        if (piece > len - sent) piece = len - sent;
        ssize_t w = send(fd, stream + sent, piece, MSG_NOSIGNAL);
        bool got = false;
        if (w > 0) sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            gone = refused = true;
        turn(hold);
        if (!eof) eof = client_read(fd, read_max, &got);
        if (eof) gone = true;
        if (ticking) clock_step(50);
        else if (w <= 0 && !got) clock_step(10);  /* the node is paused: let operations end */
    }
    lose = false;
    if (hold) net_run(64);

    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
        fd = -1;
    } else {
        shutdown(fd, SHUT_WR);
    }

    /* until the node has answered and closed, and let the connection go */
    deadline = fake.clock_ms + SETTLE_MS;
    while (fd >= 0 ? !eof : server_conns() > 0) {
        if (fake.clock_ms > deadline)
            fail(fd >= 0 ? "the node never ended a half-closed connection"
                         : "the node kept a reset connection");
        bool got = false;
        uv_run(&loop, UV_RUN_NOWAIT);
        bool moved = net_run(64);
        if (fd >= 0) eof = client_read(fd, read_max, &got);
        if (!got && !moved) clock_step(100);
    }
    if (fd >= 0) {
        close(fd);
        size_t owed;
        bool at_most;
        /* the replies owed for what it received, all of it unless it ended
         * the connection first; not when a write was refused: after QUIT or
         * a protocol error the node closes with the client's later input
         * unread, its kernel then resets the connection and drops the
         * replies a slow reader had not taken yet (as Redis's would) */
        bool whole = eof == 1 && !refused && sent <= RESP_MAX_LINE && which != EVICTING;
        bool counted = replies_owed(stream, sent, which & 2, &owed, &at_most);
        if (eof == 1 && !refused && which != EVICTING && rx.len && !at_most)
            fail("the node closed in the middle of a reply");
        bool known = whole && counted;
        if (verbose)
            fprintf(stderr, "\n[port %d, %zu of %zu bytes sent, %s, %zu replies, %zu owed%s]\n",
                    which, sent, len, whole ? "counted" : "not counted", rx.replies, known ? owed : 0,
                    known ? "" : " (not known)");
        if (known && (at_most ? rx.replies > owed : owed != rx.replies)) {
            fprintf(stderr, "fuzz_resp_conn: %zu replies for %zu commands\n", rx.replies, owed);
            fail("a command without its one reply");
        }
        for (int i = 0; server_conns() > 0; i++) {   /* its handle closes */
            if (i == 1000) fail("the node kept a connection it had closed");
            uv_run(&loop, UV_RUN_NOWAIT);
        }
    }
    net_run(64);
    return 0;
}
