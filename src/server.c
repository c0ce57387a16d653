/* server: the libuv driver of a node: UDP socket, timer, signals, TCP front ends. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "client.h"
#include "http.h"
#include "members.h"
#include "resp.h"

#define RECV_BATCH 16 /* datagrams per recvmmsg */
#define RECV_ROUNDS 4 /* recvmmsg calls per readiness at most (level-triggered: it comes back) */
#define SEND_BATCH 64 /* datagrams per sendmmsg */
#define OUT_MAX 8192  /* datagrams queued at most */
#define OUT_BYTES_MAX (64 << 20)
#define SOCKET_BUFFER (16 << 20)

typedef struct out_dgram {
    struct sockaddr_in to;
    size_t off, len; /* in outbuf */
} out_dgram;

typedef struct server {
    uv_loop_t *loop;
    int fd;                     /* the UDP socket */
    uv_poll_t poll;             /* its readiness: readable always, writable while out waits */
    int polling;                /* the events poll is started with */
    out_dgram outq[OUT_MAX];    /* datagrams to send, in order */
    size_t nout;
    uint8_t *outbuf;            /* their bytes */
    size_t outlen, outcap;
    uv_timer_t wake;            /* fires at the node's next deadline */
    uv_prepare_t before_poll;   /* runs node_tick, re-arms wake */
    uv_check_t after_poll;      /* flushes what I/O callbacks queued */
    uv_signal_t sigint, sigterm;
    node *n;
    store *store;
    const char *data_dir;       /* NULL: in memory */
    uint64_t rnd[4];            /* client_rng state for node_random */
    uint8_t recv_buf[RECV_BATCH][65536];
} server;

static void on_poll(uv_poll_t *h, int status, int events);

/* ---- the node's environment ------------------------------------------- */

/* The monotonic clock read now, not the loop's cached time: libuv does not
 * update that before the I/O callbacks of a poll, so a datagram read after
 * the process was stopped would seem to arrive at the time it stopped. It
 * counts the time the machine was suspended (CLOCK_BOOTTIME, where there is
 * one): forwards and GOSSIP carry it (Peer.mono), and the forwards of a
 * member whose clock stood still through a suspend would be taken for ones
 * held back that long (node.c forward_replayed). */
static uint64_t env_now(void *ctx) {
    (void)ctx;
#ifdef CLOCK_BOOTTIME
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0)
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
#endif
    return uv_hrtime() / 1000000;
}

static uint64_t env_now_us(void *ctx) {
    (void)ctx;
    return uv_hrtime() / 1000;
}

static uint64_t env_wall(void *ctx) {
    (void)ctx;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Datagrams wait in sv->out until the loop iteration ends (flush_out, from
 * on_check and on_prepare), then leave in sendmmsg calls of up to
 * SEND_BATCH: a node answering a burst of requests sends to a few peers
 * and clients at once, and one system call carries them all. What the
 * socket cannot take now (EAGAIN) stays queued, and the poll handle waits
 * for the socket to be writable. */
static void flush_out(server *sv);

static int env_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    server *sv = ctx;
    if (sv->nout == OUT_MAX || sv->outlen + len > sv->outcap) {
        flush_out(sv);
        /* a backlog this deep: drop, as a full socket would */
        if (sv->nout == OUT_MAX) return UV_ENOBUFS;
        if (sv->outlen + len > sv->outcap) {
            size_t cap = sv->outcap * 2 > sv->outlen + len ? sv->outcap * 2 : sv->outlen + len;
            uint8_t *b = cap <= OUT_BYTES_MAX ? realloc(sv->outbuf, cap) : NULL;
            if (!b) return UV_ENOBUFS;
            sv->outbuf = b;
            sv->outcap = cap;
        }
    }
    out_dgram *d = &sv->outq[sv->nout++];
    d->to = *to;
    d->off = sv->outlen;
    d->len = len;
    memcpy(sv->outbuf + sv->outlen, buf, len);
    sv->outlen += len;
    return 0;
}

static void poll_events(server *sv) {
    int want = UV_READABLE | (sv->nout ? UV_WRITABLE : 0);
    if (want != sv->polling) {
        uv_poll_start(&sv->poll, want, on_poll);
        sv->polling = want;
    }
}

static void flush_out(server *sv) {
    size_t done = 0;
    while (done < sv->nout) {
        struct mmsghdr m[SEND_BATCH];
        struct iovec iov[SEND_BATCH];
        size_t k = 0;
        for (; k < SEND_BATCH && done + k < sv->nout; k++) {
            out_dgram *d = &sv->outq[done + k];
            iov[k] = (struct iovec){sv->outbuf + d->off, d->len};
            m[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &d->to, .msg_namelen = sizeof d->to,
                                                .msg_iov = &iov[k], .msg_iovlen = 1}};
        }
        int r = sendmmsg(sv->fd, m, (unsigned)k, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == ENOBUFS)) break;
        if (r <= 0) r = 1; /* this datagram cannot be sent (no route...): drop it */
        done += (size_t)r;
    }
    if (done == sv->nout) {
        sv->nout = sv->outlen = 0;
    } else if (done > 0) {
        size_t base = sv->outq[done].off;
        memmove(sv->outbuf, sv->outbuf + base, sv->outlen - base);
        for (size_t i = done; i < sv->nout; i++) {
            sv->outq[i - done] = sv->outq[i];
            sv->outq[i - done].off -= base;
        }
        sv->nout -= done;
        sv->outlen -= base;
    }
    poll_events(sv);
}

static uint64_t env_random(void *ctx) { return client_rng_next(((server *)ctx)->rnd); }

static void env_log(void *ctx, const char *line) {
    server *sv = ctx;
    uint64_t ms = env_wall(ctx);
    fprintf(stderr, "%llu.%03llu [%u] %s\n", (unsigned long long)(ms / 1000),
            (unsigned long long)(ms % 1000), sv->n ? sv->n->cfg.port : 0, line);
}

/* SHUTDOWN: exit at once, as the protocol says, with the data on disk. */
static void env_stop(void *ctx) {
    server *sv = ctx;
    store_sync(sv->store);
    _exit(0);
}

/* Reads n decimal numbers from DATA_DIR/name into v; whether all n were
 * there (v is untouched otherwise). */
static bool read_numbers(const char *dir, const char *name, uint64_t *v, size_t n) {
    char path[4096];
    unsigned long long x[2];
    if (n > 2) return false;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t got = 0;
    while (got < n && fscanf(f, "%llu", &x[got]) == 1) got++;
    fclose(f);
    if (got < n) return false;
    for (size_t k = 0; k < n; k++) v[k] = x[k];
    return true;
}

/* Replaces DATA_DIR/name with text, through a file renamed over it (synced
 * first, so a crash leaves the old text or the new); 0 or -1. */
static int keep_file(const char *dir, const char *name, const char *text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    /* the owner's alone (also a file an earlier version left 0644) */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) fchmod(fd, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (fd >= 0 && !f) close(fd);
    bool ok = f != NULL;
    if (f) {
        ok = fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = fclose(f) == 0 && ok;
    }
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "dht-server: cannot keep %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The node's incarnation is kept in DATA_DIR/incarnation (decimal), so that
 * its next life takes a greater one even if the clock has stepped back. */
static void env_incarnation(void *ctx, uint64_t inc) {
    server *sv = ctx;
    char text[32];
    snprintf(text, sizeof text, "%llu\n", (unsigned long long)inc);
    keep_file(sv->data_dir, "incarnation", text);
}

/* DATA_DIR/alive: "ALIVE_MS GC_FLOOR", when this node was last alive (wall
 * ms) and the stamp below which it had collected tombstones (node.h). */
static void env_alive(void *ctx, uint64_t alive_ms, uint64_t gc_floor) {
    server *sv = ctx;
    char text[64];
    snprintf(text, sizeof text, "%llu %llu\n", (unsigned long long)alive_ms,
             (unsigned long long)gc_floor);
    keep_file(sv->data_dir, "alive", text);
}

/* ---- libuv plumbing --------------------------------------------------- */

/* Reads what the socket holds, RECV_BATCH datagrams a call, without the
 * last call that would only say EAGAIN when a call returns fewer; sends
 * what waits when the socket can take it again. */
static void on_poll(uv_poll_t *h, int status, int events) {
    server *sv = h->data;
    node_woke(sv->n, uv_hrtime());
    if (status < 0) return;
    if (events & UV_WRITABLE) flush_out(sv);
    if (!(events & UV_READABLE)) return;
    struct sockaddr_in from[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct mmsghdr m[RECV_BATCH];
    for (int round = 0; round < RECV_ROUNDS; round++) {
        for (int i = 0; i < RECV_BATCH; i++) {
            iov[i] = (struct iovec){sv->recv_buf[i], sizeof sv->recv_buf[i]};
            m[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                                .msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int r = recvmmsg(sv->fd, m, RECV_BATCH, 0, NULL);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return;
        for (int i = 0; i < r; i++)
            if (m[i].msg_hdr.msg_namelen == sizeof from[i] && from[i].sin_family == AF_INET &&
                !(m[i].msg_hdr.msg_flags & MSG_TRUNC))
                node_receive(sv->n, &from[i], sv->recv_buf[i], m[i].msg_len);
        if (r < RECV_BATCH) return;
    }
}

/* The node's work runs in node_tick, once per loop iteration before the
 * loop waits; the timer only wakes the loop at the node's next deadline. */
static void on_wake(uv_timer_t *t) { (void)t; }

/* Counts the loop's work in the iteration now ending (node_stats busy_us):
 * from its first callback (node_woke: the datagrams' and Redis clients'
 * reads, else on_check, after the poll) to here, just before the loop waits
 * again. Wall time: a process that waits for a CPU in the middle of its
 * work counts that wait too, as its clients do. (Not libuv's idle time:
 * with UV_METRICS_IDLE_TIME every poll that finds nothing at once is two
 * epoll_wait calls, which cost 5-10% of SET -P 1.) */
static void count_busy(server *sv) {
    node *n = sv->n;
    if (!n->woke_ns) return;
    uint64_t us = (uv_hrtime() - n->woke_ns) / 1000;
    n->woke_ns = 0;
    node_hist_add(n->stats.busy_us, us);
    n->stats.busy_sum_us += us;
    if (us > n->stats.busy_max_us) n->stats.busy_max_us = us;
}

static void on_prepare(uv_prepare_t *h) {
    server *sv = h->data;
    uint64_t next = node_tick(sv->n), now = env_now(sv);
    uv_timer_start(&sv->wake, on_wake, next > now ? next - now : 0, 0);
    if (sv->nout) flush_out(sv);
    count_busy(sv);
}

static void on_check(uv_check_t *h) {
    server *sv = h->data;
    node_woke(sv->n, uv_hrtime());
    node_flush(sv->n);
    if (sv->nout) flush_out(sv);
}

static void on_signal(uv_signal_t *s, int signum) {
    server *sv = s->data;
    node_log(sv->n, "signal %d: stopping", signum);
    uv_stop(sv->loop);
}

static void grow_buffers(int fd) {
    int size = SOCKET_BUFFER;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

/* Reads the peers file at path (ip:port lines, '#' comments) into a new
 * array *seeds of *nseeds (free it). 0, or -1 after printing why. */
static int read_peers(const char *path, ring_node **seeds_out, size_t *nseeds_out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dht-server: cannot open peers file %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st; /* a directory opens, reads nothing, and made a lone node */
    int bad = fstat(fileno(f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (bad) {
        fprintf(stderr, "dht-server: peers file %s: %s\n", path,
                bad == EISDIR ? "a directory (a file of ip:port lines is expected)" : strerror(bad));
        fclose(f);
        return -1;
    }
    char line[256];
    int lineno = 0, rc = 0;
    ring_node *seeds = NULL;
    size_t nseeds = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        /* a line past the buffer was read as two, the second a "line" of
         * its own with the wrong number */
        size_t got = strlen(line);
        int next;
        if (got == sizeof line - 1 && line[got - 1] != '\n' && (next = getc(f)) != EOF) {
            ungetc(next, f);
            fprintf(stderr, "dht-server: %s:%d: a line longer than %zu bytes\n", path, lineno,
                    sizeof line - 2);
            rc = -1;
            break;
        }
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "#\r\n")] = 0;
        for (char *e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t');) *--e = 0;
        if (!*s) continue;
        char shown[sizeof line]; /* what was read, for the error */
        snprintf(shown, sizeof shown, "%s", s);
        char *colon = strrchr(s, ':');
        struct in_addr a;
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon) *colon = 0;
        if (!colon || *end || port < 1 || port > 65535 || inet_pton(AF_INET, s, &a) != 1) {
            fprintf(stderr, "dht-server: %s:%d: expected ip:port (an IPv4 address and a port: "
                            "host names are not resolved), got '%s'\n", path, lineno, shown);
            rc = -1;
            break;
        }
        if (nseeds == cap) {
            ring_node *more = realloc(seeds, (cap = cap ? 2 * cap : 64) * sizeof *seeds);
            if (!more) {
                fprintf(stderr, "dht-server: out of memory\n");
                rc = -1;
                break;
            }
            seeds = more;
        }
        seeds[nseeds++] = (ring_node){a.s_addr, (uint16_t)port};
    }
    fclose(f);
    if (rc != 0) {
        free(seeds);
        return rc;
    }
    *seeds_out = seeds;
    *nseeds_out = nseeds;
    return 0;
}

/* Whether peers can send to a as this node's address: not 0.0.0.0/8, nor a
 * multicast, reserved or broadcast address (224.0.0.0 and up). Advertised,
 * those made a node the others held alive and forwarded requests to that
 * went unanswered. */
static bool unicast_ip(struct in_addr a) {
    uint32_t h = ntohl(a.s_addr);
    return h >> 24 != 0 && h < 0xe0000000u;
}

/* The address peers know us by: --advertise, else the bind address, else
 * the local address of the route to the first peer of seeds (no packet is
 * sent), else 127.0.0.1. */
static int find_self(const node_config *cfg, const ring_node *seeds, size_t nseeds,
                     struct sockaddr_in *self) {
    const char *ip = cfg->advertise_ip;
    struct in_addr a;
    memset(self, 0, sizeof *self);
    self->sin_family = AF_INET;
    self->sin_port = htons(cfg->port);
    if (ip) {
        if (inet_pton(AF_INET, ip, &a) != 1 || !unicast_ip(a)) {
            fprintf(stderr, "dht-server: bad --advertise address %s (an IPv4 address the other "
                            "nodes can send to)\n", ip);
            return -1;
        }
        self->sin_addr = a;
        return 0;
    }
    if (inet_pton(AF_INET, cfg->bind_ip, &a) == 1 && a.s_addr != htonl(INADDR_ANY)) {
        if (!unicast_ip(a)) { /* a bound address is the one advertised */
            fprintf(stderr, "dht-server: bad --bind address %s (0.0.0.0, or an address of this "
                            "host the other nodes can send to)\n", cfg->bind_ip);
            return -1;
        }
        self->sin_addr = a;
        return 0;
    }
    self->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!nseeds) return 0;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = seeds[0].ip,
                             .sin_port = htons(9)};
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&to, sizeof to) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
        self->sin_addr = me.sin_addr;
    if (fd >= 0) close(fd);
    return 0;
}

int server_run(const node_config *cfg) {
    static server sv;
    int rc;
    struct sockaddr_in self;
    memset(&sv, 0, sizeof sv);
    sv.loop = uv_default_loop();
    ring_node *seeds = NULL;
    size_t nseeds = 0;
    if (read_peers(cfg->peers_file, &seeds, &nseeds) != 0) return -1;
    if (find_self(cfg, seeds, nseeds, &self) != 0) {
        free(seeds);
        return -1;
    }
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = env_wall(&sv) ^ (uint64_t)getpid();
    client_rng_seed(sv.rnd, seed);

    if ((rc = store_open(&sv.store, cfg->data_dir, cfg->max_memory)) != 0) {
        /* (LMDB's own reason, as errno, for a directory that cannot be used) */
        const char *why = rc == STORE_ENOSPACE ? "no space left on the device"
                          : rc == STORE_EINVAL ? "not a usable path"
                          : errno ? strerror(errno) : "the store failed";
        fprintf(stderr, "dht-server: cannot open the store%s%s: %s (a directory this user can "
                        "write)\n",
                cfg->data_dir ? " in " : "", cfg->data_dir ? cfg->data_dir : "", why);
        free(seeds);
        return -1;
    }
    node_config c = *cfg;
    sv.data_dir = cfg->data_dir;
    if (cfg->data_dir) {
        uint64_t v[2];
        if (read_numbers(cfg->data_dir, "incarnation", v, 1)) c.last_incarnation = v[0];
        if (read_numbers(cfg->data_dir, "alive", v, 2)) c.last_alive_ms = v[0], c.last_gc_floor = v[1];
    }
    node_env env = {.ctx = &sv, .now = env_now, .now_us = env_now_us, .wall = env_wall, .send = env_send,
                    .random = env_random, .log = env_log, .stop = env_stop,
                    .incarnation = cfg->data_dir ? env_incarnation : NULL,
                    .alive = cfg->data_dir ? env_alive : NULL};
    if (!(sv.n = node_new(&c, &env, &self, sv.store, (int32_t)getpid()))) {
        fprintf(stderr, "dht-server: out of memory\n");
        free(seeds);
        return -1;
    }
    rc = node_add_seeds(sv.n, seeds, nseeds);
    free(seeds);
    if (rc != 0) {
        fprintf(stderr, "dht-server: out of memory\n");
        return -1;
    }

    struct sockaddr_in bind_addr;
    if ((rc = uv_ip4_addr(cfg->bind_ip, cfg->port, &bind_addr)) != 0) {
        fprintf(stderr, "dht-server: bad --bind address %s\n", cfg->bind_ip);
        return -1;
    }
    sv.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sv.fd < 0 || bind(sv.fd, (const struct sockaddr *)&bind_addr, sizeof bind_addr) != 0) {
        fprintf(stderr, "dht-server: cannot bind UDP %s:%u: %s\n", cfg->bind_ip, cfg->port,
                strerror(errno));
        return -1;
    }
    grow_buffers(sv.fd);
    sv.outcap = 1 << 20;
    if (!(sv.outbuf = malloc(sv.outcap))) {
        fprintf(stderr, "dht-server: out of memory\n");
        return -1;
    }
    if ((rc = uv_poll_init(sv.loop, &sv.poll, sv.fd)) != 0) goto fail;
    sv.poll.data = &sv;
    poll_events(&sv);

    uv_timer_init(sv.loop, &sv.wake);
    uv_prepare_init(sv.loop, &sv.before_poll);
    uv_check_init(sv.loop, &sv.after_poll);
    sv.before_poll.data = sv.after_poll.data = &sv;
    uv_prepare_start(&sv.before_poll, on_prepare);
    uv_check_start(&sv.after_poll, on_check);
    uv_signal_init(sv.loop, &sv.sigint);
    uv_signal_init(sv.loop, &sv.sigterm);
    sv.sigint.data = sv.sigterm.data = &sv;
    uv_signal_start(&sv.sigint, on_signal, SIGINT);
    uv_signal_start(&sv.sigterm, on_signal, SIGTERM);
    /* a write to a TCP client that left must fail with EPIPE, not end the node */
    signal(SIGPIPE, SIG_IGN);
    /* each says why it could not listen */
    if ((cfg->resp_port && resp_start(sv.loop, sv.n) != 0) ||
        (cfg->http_port && http_start(sv.loop, sv.n) != 0))
        return -1;

    char a[32];
    node_log(sv.n, "dht-server pid %d serving %s (udp), %zu peers, store %s, N=%u R=%u W=%u",
             (int)getpid(), node_addr_str(self.sin_addr.s_addr, cfg->port, a),
             members_total(sv.n->members) - 1, store_engine(sv.store), cfg->replicas,
             cfg->read_quorum, cfg->write_quorum);
    uv_run(sv.loop, UV_RUN_DEFAULT);
    store_sync(sv.store);
    store_close(sv.store);
    return 0;
fail:
    fprintf(stderr, "dht-server: %s\n", uv_strerror(rc));
    return -1;
}
