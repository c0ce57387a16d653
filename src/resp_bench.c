/*
 * dht-resp-bench: closed-loop SET load over the Redis protocol, with or
 * without a WAIT after each SET.
 *
 * redis-benchmark sends one command per request, so it cannot measure a
 * Redis write that waits for a replica's copy (SET + WAIT), which is what a
 * dht write with W=2 is. This tool sends, per operation, either
 *
 *   SET key value                      (one reply: +OK)
 *   SET key value, WAIT numreplicas 0  (two replies: +OK, then :acks)
 *
 * the two commands of an operation written together. An operation is done
 * when its last reply is read; with --wait it is ok when the SET answered
 * +OK and WAIT answered an integer >= numreplicas ("short" otherwise). An
 * error reply (-ERR ...) is counted, and the first few are printed.
 *
 * --cluster: the server is a Redis Cluster (or dht nodes with --resp-cluster),
 * and each connection goes to a master, as redis-benchmark --cluster's
 * clients do: the slots' masters come from CLUSTER SLOTS asked of HOST:PORT,
 * connection i goes to master i mod M and draws its keys uniformly from
 * those of the keyspace whose slot that master serves (listed at start),
 * so that no key is MOVED and the keys are the same as without --cluster.
 * Otherwise:
 *
 * CONNS TCP connections, all to one HOST:PORT, each with up to DEPTH (-P)
 * operations outstanding: whenever replies complete operations, the
 * connection writes as many new ones as it is short of DEPTH, in one
 * write. A Redis connection answers in order, so replies are matched to
 * operations by position (a FIFO of send times per connection). Keys are
 * "key:" + a number drawn uniformly from [0, KEYSPACE) by xoshiro256**
 * seeded with --seed (printed, so that a run can be repeated), one stream
 * per connection (seed + connection number); values are VALUE_SIZE bytes
 * of 'x'.
 *
 * Latency is per operation, from the write that carried it to the read
 * that completed it, in microseconds, kept in client.h's log-linear
 * histogram (within 0.8%). Throughput is operations completed over the
 * time from the first write to the last reply.
 *
 * One thread, one epoll set. Connection states:
 *
 *   CONNECTING  non-blocking connect under way (EPOLLOUT tells its end)
 *   RUNNING     writing operations, reading replies
 *   DEAD        refused, reset or closed by the server: its outstanding
 *               operations count as lost; the run goes on with the others
 *
 * Exit status: 0 when every operation was answered without an error reply,
 * 1 otherwise (or when no connection could be made), 64 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ring.h"

#define EX_USAGE_ 64
#define MAX_DEPTH 1024
#define MAX_VALUE 65536
#define RBUF (256 << 10)
#define OP_BYTES 160 /* an operation's bytes besides its value */
#define STALL_S 10 /* no reply for this long: the run is given up */
#define MAX_MASTERS 1024
#define SLOTS_REPLY_MAX (64 << 20) /* CLUSTER SLOTS of thousands of ranges */

enum cstate { CONNECTING, RUNNING, DEAD };

typedef struct conn {
    int fd;
    enum cstate state;
    uint64_t rng[4];
    uint64_t sent_us[MAX_DEPTH]; /* FIFO of outstanding operations' send times */
    unsigned head, out;          /* first outstanding, how many */
    unsigned replies;            /* replies read of the head operation */
    bool head_bad;               /* the head operation met an error or a short WAIT */
    char *wbuf;
    size_t wlen, woff;           /* bytes in wbuf, bytes already written */
    int master;                  /* --cluster: the master's index; else -1 */
    char rbuf[RBUF];
    size_t rlen;
} conn;

typedef struct cfg {
    struct sockaddr_in addr;
    unsigned conns, depth, value_size, wait_replicas;
    bool wait, cluster;
    uint64_t requests, keyspace, seed;
} cfg;

static cfg C = {.conns = 50, .depth = 1, .value_size = 3, .wait_replicas = 1,
                .requests = 100000, .keyspace = 100000, .seed = 1};

/* --cluster: the masters, and which serves each slot (-1: none) */
static struct sockaddr_in masters[MAX_MASTERS];
static unsigned nmasters;
static int slot_master[RING_SLOTS];
static struct { uint32_t *k; size_t n; } master_keys[MAX_MASTERS]; /* the keyspace's keys of each */
static uint64_t issued, done, ok, errors, short_waits, lost;
static unsigned errors_printed, failures; /* failures: connections lost */
static client_hist hist;
static char value[MAX_VALUE + 1];

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: dht-resp-bench [-h HOST] [-p PORT] [-c CONNS] [-n OPS] [-P DEPTH]\n"
            "                      [-d VALUE_SIZE] [-r KEYSPACE] [--seed S] [--wait N] [--cluster]\n"
            "  -h HOST      server address (127.0.0.1)\n"
            "  -p PORT      server RESP port (6379)\n"
            "  -c CONNS     TCP connections (50)\n"
            "  -n OPS       operations in all (100000)\n"
            "  -P DEPTH     operations outstanding per connection (1; at most %d)\n"
            "  -d SIZE      value size in bytes (3, as redis-benchmark)\n"
            "  -r KEYSPACE  keys are key:0 .. key:KEYSPACE-1, drawn uniformly (100000)\n"
            "  --seed S     seed of the key choice (1)\n"
            "  --wait N     each SET followed by WAIT N 0, ok when WAIT answers >= N\n"
            "  --cluster    a Redis Cluster: each connection to a master (CLUSTER SLOTS),\n"
            "               with the keys of the keyspace in that master's slots\n"
            "Prints one line: ops/s, latency p50/p99/p99.9/max in ms, errors.\n",
            MAX_DEPTH);
}

static void mark_dead(conn *c, const char *why) {
    if (c->state == DEAD) return;
    if (why && failures++ < 3) fprintf(stderr, "dht-resp-bench: connection %d: %s\n", c->fd, why);
    lost += c->out;
    done += c->out;
    c->out = 0;
    c->state = DEAD;
    close(c->fd);
}

/* Key number k's name, "key:<k>", in out (KEY_NAME_MAX bytes); its length. */
#define KEY_NAME_MAX 32
static int key_name(char *out, uint64_t k) {
    return snprintf(out, KEY_NAME_MAX, "key:%llu", (unsigned long long)k);
}

/* Appends up to DEPTH - out new operations (never past --requests) to the
 * write buffer. */
static void refill(conn *c) {
    char key[KEY_NAME_MAX];
    uint64_t t = now_us();
    memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff); /* keep only what is unwritten */
    c->wlen -= c->woff;
    c->woff = 0;
    while (c->out < C.depth && issued < C.requests) {
        uint64_t k = client_rng_next(c->rng);
        if (c->master >= 0) k = master_keys[c->master].k[k % master_keys[c->master].n];
        else k %= C.keyspace;
        int klen = key_name(key, k);
        char *p = c->wbuf + c->wlen; /* wbuf holds DEPTH operations (OP_BYTES) */
        p += sprintf(p, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%u\r\n", klen, key, C.value_size);
        memcpy(p, value, C.value_size);
        p += C.value_size;
        memcpy(p, "\r\n", 2);
        p += 2;
        if (C.wait)
            p += sprintf(p, "*3\r\n$4\r\nWAIT\r\n$%u\r\n%u\r\n$1\r\n0\r\n",
                         C.wait_replicas >= 10 ? 2u : 1u, C.wait_replicas);
        c->wlen = (size_t)(p - c->wbuf);
        c->sent_us[(c->head + c->out) % MAX_DEPTH] = t;
        c->out++;
        issued++;
    }
}

static void flush_writes(conn *c, int ep) {
    while (c->woff < c->wlen) {
        ssize_t w = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) {
            mark_dead(c, strerror(errno));
            return;
        }
        c->woff += (size_t)w;
    }
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    struct epoll_event ev = {.events = EPOLLIN | (c->wlen ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* One reply of the head operation has been read: kind is its first byte,
 * line the rest of its first line. */
static void on_reply(conn *c, char kind, const char *line, size_t len) {
    if (c->out == 0) {
        mark_dead(c, "a reply to no request");
        return;
    }
    bool wait_reply = C.wait && c->replies == 1;
    if (kind == '-') {
        errors++;
        c->head_bad = true;
        if (errors_printed++ < 5)
            fprintf(stderr, "dht-resp-bench: error reply: -%.*s\n", (int)(len > 200 ? 200 : len),
                    line);
    } else if (wait_reply && (kind != ':' || strtoull(line, NULL, 10) < C.wait_replicas)) {
        short_waits++;
        c->head_bad = true;
    }
    if (++c->replies < (C.wait ? 2u : 1u)) return;
    uint64_t t = now_us(), sent = c->sent_us[c->head];
    client_hist_record(&hist, t > sent ? t - sent : 0);
    if (!c->head_bad) ok++;
    done++;
    c->head = (c->head + 1) % MAX_DEPTH;
    c->out--;
    c->replies = 0;
    c->head_bad = false;
}

/* Parses the complete replies in rbuf. Only the kinds SET and WAIT answer
 * (+, -, :) and bulk strings ($) are expected; an array is refused. */
static void parse_replies(conn *c) {
    size_t pos = 0;
    while (c->state == RUNNING && pos < c->rlen) {
        char *start = c->rbuf + pos, *nl = memchr(start, '\n', c->rlen - pos);
        if (!nl) break;
        size_t linelen = (size_t)(nl - start) + 1;
        size_t body = linelen >= 2 ? linelen - 3 : 0; /* without kind and \r\n */
        if (*start == '$') {
            long n = strtol(start + 1, NULL, 10);
            size_t total = linelen + (n >= 0 ? (size_t)n + 2 : 0);
            if (c->rlen - pos < total) break;
            on_reply(c, '$', start + 1, body);
            pos += total;
            continue;
        }
        if (*start != '+' && *start != '-' && *start != ':') {
            mark_dead(c, "unexpected reply");
            return;
        }
        on_reply(c, *start, start + 1, body);
        pos += linelen;
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
    if (c->rlen == sizeof c->rbuf) mark_dead(c, "reply too long");
}

static void on_readable(conn *c, int ep) {
    for (;;) {
        ssize_t r = read(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
            mark_dead(c, r == 0 ? "closed by the server" : strerror(errno));
            return;
        }
        c->rlen += (size_t)r;
        parse_replies(c);
        if (c->state != RUNNING) return;
        if ((size_t)r < sizeof c->rbuf) break;
    }
    refill(c);
    flush_writes(c, ep);
}

static int parse_args(int argc, char **argv) {
    static const struct option opts[] = {{"seed", required_argument, 0, 'S'},
                                         {"wait", required_argument, 0, 'W'},
                                         {"cluster", no_argument, 0, 'K'},
                                         {"help", no_argument, 0, 'H'},
                                         {0, 0, 0, 0}};
    const char *host = "127.0.0.1";
    unsigned long port = 6379;
    int o;
    while ((o = getopt_long(argc, argv, "h:p:c:n:P:d:r:", opts, NULL)) != -1) {
        char *end = NULL;
        unsigned long long v = optarg ? strtoull(optarg, &end, 10) : 0;
        bool num = optarg && *optarg && end && !*end;
        switch (o) {
        case 'h': host = optarg; continue;
        case 'H': usage(stdout); exit(0);
        case 'K': C.cluster = true; continue;
        case 'W':
            C.wait = true;
            if (!num || v == 0 || v > 99) goto bad;
            C.wait_replicas = (unsigned)v;
            continue;
        case '?': return -1;
        }
        if (!num) goto bad;
        switch (o) {
        case 'p': port = v; break;
        case 'c': C.conns = (unsigned)v; break;
        case 'n': C.requests = v; break;
        case 'P': C.depth = (unsigned)v; break;
        case 'd': C.value_size = (unsigned)v; break;
        case 'r': C.keyspace = v; break;
        case 'S': C.seed = v; break;
        }
        continue;
    bad:
        fprintf(stderr, "dht-resp-bench: bad value for -%c: %s\n", o == 'W' ? 'W' : o == 'S' ? 'S' : o, optarg);
        return -1;
    }
    if (optind != argc || port == 0 || port > 65535 || C.conns == 0 || C.conns > 10000 ||
        C.depth == 0 || C.depth > MAX_DEPTH || C.value_size > MAX_VALUE || C.keyspace == 0 ||
        C.requests == 0) {
        fprintf(stderr, "dht-resp-bench: bad arguments (try --help)\n");
        return -1;
    }
    char hp[300];
    snprintf(hp, sizeof hp, "%s:%lu", host, port);
    if (client_parse_addr(hp, &C.addr) != 0) {
        fprintf(stderr, "dht-resp-bench: cannot resolve %s\n", host);
        return -1;
    }
    return 0;
}

/* ---- --cluster: CLUSTER SLOTS ----------------------------------------- */

/* A RESP value at p (before end): each reader returns the byte after it,
 * or NULL when it is not all there or not of the kind asked for. */
static const char *rv_line(const char *p, const char *end, char kind, long long *v) {
    const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
    if (!nl || *p != kind) return NULL;
    *v = strtoll(p + 1, NULL, 10);
    return nl + 1;
}

static const char *rv_skip(const char *p, const char *end, int depth) {
    long long n;
    if (p >= end || depth > 8) return NULL;
    switch (*p) {
    case '+': case '-': case ':': return rv_line(p, end, *p, &n);
    case '$':
        if (!(p = rv_line(p, end, '$', &n))) return NULL;
        return n < 0 ? p : end - p >= n + 2 ? p + n + 2 : NULL;
    case '*':
        if (!(p = rv_line(p, end, '*', &n))) return NULL;
        for (long long i = 0; i < n && p; i++) p = rv_skip(p, end, depth + 1);
        return p;
    default: return NULL;
    }
}

/* Reads the whole reply to CLUSTER SLOTS from HOST:PORT into *buf. */
static ssize_t fetch_slots(char **buf) {
    static const char cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t len = 0, cap = 1 << 16;
    *buf = malloc(cap);
    if (fd < 0 || !*buf || connect(fd, (struct sockaddr *)&C.addr, sizeof C.addr) != 0 ||
        write(fd, cmd, sizeof cmd - 1) != (ssize_t)(sizeof cmd - 1)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    while (!rv_skip(*buf, *buf + len, 0)) {
        if (len == cap) {
            char *b = cap < SLOTS_REPLY_MAX ? realloc(*buf, cap * 2) : NULL;
            if (!b) break;
            *buf = b;
            cap *= 2;
        }
        ssize_t r = read(fd, *buf + len, cap - len);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    return rv_skip(*buf, *buf + len, 0) ? (ssize_t)len : -1;
}

/* The masters of the slots, from CLUSTER SLOTS: an array of [start, end,
 * [ip, port, id, ...] (the master), replicas...]. 0, or -1 with a message. */
static int load_slots(void) {
    char *buf;
    ssize_t len = fetch_slots(&buf);
    const char *p = buf, *end = buf + (len > 0 ? len : 0);
    long long n, m, k, a, b, port;
    for (unsigned s = 0; s < RING_SLOTS; s++) slot_master[s] = -1;
    if (len < 0 || !(p = rv_line(p, end, '*', &n))) goto bad;
    for (long long i = 0; i < n; i++) {
        const char *ip;
        long long iplen;
        if (!(p = rv_line(p, end, '*', &m)) || m < 3 || !(p = rv_line(p, end, ':', &a)) ||
            !(p = rv_line(p, end, ':', &b)) || !(p = rv_line(p, end, '*', &k)) || k < 2 ||
            !(ip = rv_line(p, end, '$', &iplen)) || iplen < 0 || iplen > 45)
            goto bad;
        char host[64];
        snprintf(host, sizeof host, "%.*s", (int)iplen, ip);
        if (!(p = rv_skip(p, end, 0)) || !(p = rv_line(p, end, ':', &port))) goto bad;
        for (long long j = 2; j < k && p; j++) p = rv_skip(p, end, 0);      /* id, ... */
        for (long long j = 3; j < m && p; j++) p = rv_skip(p, end, 0);      /* replicas */
        struct sockaddr_in addr;
        char hp[80];
        snprintf(hp, sizeof hp, "%s:%lld", host[0] ? host : "127.0.0.1", port);
        if (!p || a < 0 || b < a || b >= RING_SLOTS || client_parse_addr(hp, &addr) != 0) goto bad;
        unsigned mi = 0;
        while (mi < nmasters && (masters[mi].sin_addr.s_addr != addr.sin_addr.s_addr ||
                                 masters[mi].sin_port != addr.sin_port))
            mi++;
        if (mi == nmasters) {
            if (nmasters == MAX_MASTERS) goto bad;
            masters[nmasters++] = addr;
        }
        for (long long s = a; s <= b; s++) slot_master[s] = (int)mi;
    }
    free(buf);
    for (unsigned s = 0; s < RING_SLOTS; s++)
        if (slot_master[s] < 0) {
            fprintf(stderr, "dht-resp-bench: --cluster: slot %u has no master\n", s);
            return -1;
        }
    return 0;
bad:
    free(buf);
    fprintf(stderr, "dht-resp-bench: --cluster: no CLUSTER SLOTS reply of the expected form\n");
    return -1;
}

/* Lists the keyspace's keys by master. */
static int list_keys(void) {
    char key[KEY_NAME_MAX];
    for (unsigned m = 0; m < nmasters; m++)
        if (!(master_keys[m].k = malloc(C.keyspace * sizeof *master_keys[m].k))) return -1;
    for (uint64_t k = 0; k < C.keyspace; k++) {
        int len = key_name(key, k);
        int m = slot_master[ring_key_slot(key, (size_t)len)];
        master_keys[m].k[master_keys[m].n++] = (uint32_t)k;
    }
    return 0;
}

/* Connection i's master: the i-th mod M, or the next one that serves keys
 * of the keyspace (a keyspace of a few keys may leave a master none). */
static void cluster_place(conn *c, unsigned i, struct sockaddr_in *to) {
    for (unsigned j = 0; j < nmasters; j++) {
        unsigned mi = (i + j) % nmasters;
        if (master_keys[mi].n) {
            c->master = (int)mi;
            *to = masters[mi];
            return;
        }
    }
}

int main(int argc, char **argv) {
    if (parse_args(argc, argv) != 0) return EX_USAGE_;
    if (C.cluster && C.keyspace > UINT32_MAX) {
        fprintf(stderr, "dht-resp-bench: --cluster: a keyspace of at most %u keys\n", UINT32_MAX);
        return EX_USAGE_;
    }
    if (C.cluster && load_slots() != 0) return 1;
    if (C.cluster && list_keys() != 0) {
        perror("dht-resp-bench");
        return 1;
    }
    memset(value, 'x', C.value_size);
    client_hist_init(&hist);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn *conns = calloc(C.conns, sizeof *conns);
    size_t op_bytes = OP_BYTES + C.value_size;
    if (ep < 0 || !conns) {
        perror("dht-resp-bench");
        return 1;
    }
    unsigned live = 0;
    for (unsigned i = 0; i < C.conns; i++) {
        conn *c = &conns[i];
        client_rng_seed(c->rng, C.seed + i);
        c->wbuf = malloc(op_bytes * C.depth);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!c->wbuf || c->fd < 0) {
            perror("dht-resp-bench");
            return 1;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->state = CONNECTING;
        struct sockaddr_in to = C.addr;
        c->master = -1;
        if (C.cluster) cluster_place(c, i, &to);
        if (connect(c->fd, (struct sockaddr *)&to, sizeof to) != 0 &&
            errno != EINPROGRESS) {
            mark_dead(c, strerror(errno));
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        live++;
    }
    uint64_t start = 0, last = now_us(), end = 0;
    struct epoll_event evs[256];
    while (live > 0 && done < C.requests) {
        int n = epoll_wait(ep, evs, 256, 1000);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) {
            if (now_us() - last > STALL_S * 1000000ull) {
                fprintf(stderr, "dht-resp-bench: no reply for %d s, giving up\n", STALL_S);
                break;
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    mark_dead(c, strerror(err));
                    live--;
                    continue;
                }
                c->state = RUNNING;
                if (!start) start = now_us();
                refill(c);
                flush_writes(c, ep);
            } else if (c->state == RUNNING) {
                if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, ep);
                else if (evs[i].events & EPOLLOUT) flush_writes(c, ep);
            }
            if (c->state == DEAD) live--;
        }
        last = end = now_us();
    }
    for (unsigned i = 0; i < C.conns; i++) {
        if (conns[i].state != DEAD) close(conns[i].fd);
        free(conns[i].wbuf);
    }
    free(conns);
    close(ep);
    if (failures > 3) fprintf(stderr, "dht-resp-bench: %u connections lost in all\n", failures);
    if (!start) {
        fprintf(stderr, "dht-resp-bench: no connection to the server\n");
        return 1;
    }
    double secs = (double)(end - start) / 1e6;
    if (done < C.requests) lost += C.requests - done;
    if (C.cluster) printf("cluster of %u masters: ", nmasters);
    printf("%s -c %u -P %u -n %llu seed %llu: ops/s %.0f p50 %.3f p99 %.3f p99.9 %.3f "
           "max %.3f ms ok %llu errors %llu short_waits %llu lost %llu\n",
           C.wait ? "SET+WAIT" : "SET", C.conns, C.depth, (unsigned long long)C.requests,
           (unsigned long long)C.seed, secs > 0 ? (double)hist.count / secs : 0,
           client_hist_percentile(&hist, 50) / 1e3, client_hist_percentile(&hist, 99) / 1e3,
           client_hist_percentile(&hist, 99.9) / 1e3, hist.max / 1e3, (unsigned long long)ok,
           (unsigned long long)errors, (unsigned long long)short_waits,
           (unsigned long long)lost);
    return ok == C.requests ? 0 : 1;
}
