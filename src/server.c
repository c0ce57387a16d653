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
#include <unistd.h>
#include <uv.h>

#include "client.h"
#include "http.h"
#include "members.h"
#include "resp.h"

#define RECV_BATCH 16 /* datagrams per recvmmsg */
#define SOCKET_BUFFER (16 << 20)

typedef struct server {
    uv_loop_t *loop;
    uv_udp_t udp;
    uv_timer_t wake;            /* fires at the node's next deadline */
    uv_prepare_t before_poll;   /* runs node_tick, re-arms wake */
    uv_check_t after_poll;      /* flushes what I/O callbacks queued */
    uv_signal_t sigint, sigterm;
    node *n;
    store *store;
    const char *data_dir;       /* NULL: in memory */
    uint64_t rnd[4];            /* client_rng state for node_random */
    uint8_t recv_buf[RECV_BATCH * 65536];
} server;

/* ---- the node's environment ------------------------------------------- */

/* The monotonic clock read now, not the loop's cached time: libuv does not
 * update that before the I/O callbacks of a poll, so a datagram read after
 * the process was stopped would seem to arrive at the time it stopped. */
static uint64_t env_now(void *ctx) {
    (void)ctx;
    return uv_hrtime() / 1000000;
}

static uint64_t env_wall(void *ctx) {
    (void)ctx;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

typedef struct send_req {
    uv_udp_send_t req;
    uint8_t data[];
} send_req;

static void on_sent(uv_udp_send_t *req, int status) {
    (void)status;
    free(req);
}

static int env_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    server *sv = ctx;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int rc = uv_udp_try_send(&sv->udp, &b, 1, (const struct sockaddr *)to);
    if (rc >= 0) return 0;
    if (rc != UV_EAGAIN && rc != UV_ENOBUFS) return rc;
    /* The socket is full: queue a copy. */
    send_req *s = malloc(sizeof *s + len);
    if (!s) return UV_ENOMEM;
    memcpy(s->data, buf, len);
    b = uv_buf_init((char *)s->data, (unsigned)len);
    rc = uv_udp_send(&s->req, &sv->udp, &b, 1, (const struct sockaddr *)to, on_sent);
    if (rc) free(s);
    return rc;
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

/* The node's incarnation is kept in DATA_DIR/incarnation (decimal), so that
 * its next life takes a greater one even if the clock has stepped back. */
static uint64_t read_incarnation(const char *dir) {
    char path[4096];
    unsigned long long v = 0;
    snprintf(path, sizeof path, "%s/incarnation", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (fscanf(f, "%llu", &v) != 1) v = 0;
    fclose(f);
    return v;
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

static void env_incarnation(void *ctx, uint64_t inc) {
    server *sv = ctx;
    char text[32];
    snprintf(text, sizeof text, "%llu\n", (unsigned long long)inc);
    keep_file(sv->data_dir, "incarnation", text);
}

/* DATA_DIR/alive: "ALIVE_MS GC_FLOOR", when this node was last alive (wall
 * ms) and the stamp below which it had collected tombstones (node.h). */
static void read_alive(const char *dir, node_config *c) {
    char path[4096];
    unsigned long long alive = 0, floor = 0;
    snprintf(path, sizeof path, "%s/alive", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fscanf(f, "%llu %llu", &alive, &floor) == 2) {
        c->last_alive_ms = alive;
        c->last_gc_floor = floor;
    }
    fclose(f);
}

static void env_alive(void *ctx, uint64_t alive_ms, uint64_t gc_floor) {
    server *sv = ctx;
    char text[64];
    snprintf(text, sizeof text, "%llu %llu\n", (unsigned long long)alive_ms,
             (unsigned long long)gc_floor);
    keep_file(sv->data_dir, "alive", text);
}

/* ---- libuv plumbing --------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    server *sv = h->data;
    *buf = uv_buf_init((char *)sv->recv_buf, sizeof sv->recv_buf);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
    (void)flags;
    server *sv = h->data;
    if (nread < 0 || !addr || addr->sa_family != AF_INET) return;
    node_receive(sv->n, (const struct sockaddr_in *)addr, (const uint8_t *)buf->base,
                 (size_t)nread);
}

/* The node's work runs in node_tick, once per loop iteration before the
 * loop waits; the timer only wakes the loop at the node's next deadline. */
static void on_wake(uv_timer_t *t) { (void)t; }

static void on_prepare(uv_prepare_t *h) {
    server *sv = h->data;
    uint64_t next = node_tick(sv->n), now = env_now(sv);
    uv_timer_start(&sv->wake, on_wake, next > now ? next - now : 0, 0);
}

static void on_check(uv_check_t *h) { node_flush(((server *)h->data)->n); }

static void on_signal(uv_signal_t *s, int signum) {
    server *sv = s->data;
    node_log(sv->n, "signal %d: stopping", signum);
    uv_stop(sv->loop);
}

static void grow_buffers(uv_udp_t *udp) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)udp, &fd) != 0) return;
    int size = SOCKET_BUFFER;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

/* Reads the peers file into the member list. 0, or -1 after printing why. */
static int load_peers(server *sv) {
    node *n = sv->n;
    FILE *f = fopen(n->cfg.peers_file, "r");
    if (!f) {
        fprintf(stderr, "dht-server: cannot open peers file %s: %s\n", n->cfg.peers_file,
                strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0, rc = 0;
    ring_node *seeds = NULL;
    size_t nseeds = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line + strspn(line, " \t");
        s[strcspn(s, "#\r\n")] = 0;
        for (char *e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t');) *--e = 0;
        if (!*s) continue;
        char *colon = strrchr(s, ':');
        struct in_addr a;
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (colon) *colon = 0;
        if (!colon || *end || port < 1 || port > 65535 || inet_pton(AF_INET, s, &a) != 1) {
            fprintf(stderr, "dht-server: %s:%d: expected ip:port\n", n->cfg.peers_file, lineno);
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
    if (rc == 0 && node_add_seeds(n, seeds, nseeds) != 0) {
        fprintf(stderr, "dht-server: out of memory\n");
        rc = -1;
    }
    free(seeds);
    return rc;
}

/* The address peers know us by: --advertise, else the local address of the
 * route to the first peer (no packet is sent), else the bind address or
 * 127.0.0.1. */
static int find_self(const node_config *cfg, struct sockaddr_in *self) {
    const char *ip = cfg->advertise_ip;
    struct in_addr a;
    memset(self, 0, sizeof *self);
    self->sin_family = AF_INET;
    self->sin_port = htons(cfg->port);
    if (ip) {
        if (inet_pton(AF_INET, ip, &a) != 1) {
            fprintf(stderr, "dht-server: bad --advertise address %s\n", ip);
            return -1;
        }
        self->sin_addr = a;
        return 0;
    }
    if (inet_pton(AF_INET, cfg->bind_ip, &a) == 1 && a.s_addr != htonl(INADDR_ANY)) {
        self->sin_addr = a;
        return 0;
    }
    self->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FILE *f = fopen(cfg->peers_file, "r");
    if (!f) return 0;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *s = line + strspn(line, " \t");
        char *colon = strrchr(s, ':');
        if (*s == '#' || !colon) continue;
        *colon = 0;
        if (inet_pton(AF_INET, s, &a) != 1) continue;
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = a, .sin_port = htons(9)};
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        if (fd >= 0 && connect(fd, (struct sockaddr *)&to, sizeof to) == 0 &&
            getsockname(fd, (struct sockaddr *)&me, &ml) == 0)
            self->sin_addr = me.sin_addr;
        if (fd >= 0) close(fd);
        break;
    }
    fclose(f);
    return 0;
}

int server_run(const node_config *cfg) {
    static server sv;
    int rc;
    struct sockaddr_in self;
    memset(&sv, 0, sizeof sv);
    sv.loop = uv_default_loop();
    if (find_self(cfg, &self) != 0) return -1;
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = env_wall(&sv) ^ (uint64_t)getpid();
    client_rng_seed(sv.rnd, seed);

    if ((rc = store_open(&sv.store, cfg->data_dir, cfg->max_memory)) != 0) {
        fprintf(stderr, "dht-server: cannot open store%s%s (error %d%s)\n",
                cfg->data_dir ? " in " : "", cfg->data_dir ? cfg->data_dir : "", rc,
                rc == STORE_ENOSPACE ? ": no space left on the device" : "");
        return -1;
    }
    node_config c = *cfg;
    sv.data_dir = cfg->data_dir;
    if (cfg->data_dir) {
        c.last_incarnation = read_incarnation(cfg->data_dir);
        read_alive(cfg->data_dir, &c);
    }
    node_env env = {.ctx = &sv, .now = env_now, .wall = env_wall, .send = env_send,
                    .random = env_random, .log = env_log, .stop = env_stop,
                    .incarnation = cfg->data_dir ? env_incarnation : NULL,
                    .alive = cfg->data_dir ? env_alive : NULL};
    if (!(sv.n = node_new(&c, &env, &self, sv.store, (int32_t)getpid()))) {
        fprintf(stderr, "dht-server: out of memory\n");
        return -1;
    }
    if (load_peers(&sv) != 0) return -1;

    struct sockaddr_in bind_addr;
    if ((rc = uv_ip4_addr(cfg->bind_ip, cfg->port, &bind_addr)) != 0) {
        fprintf(stderr, "dht-server: bad --bind address %s\n", cfg->bind_ip);
        return -1;
    }
    if ((rc = uv_udp_init_ex(sv.loop, &sv.udp, AF_INET | UV_UDP_RECVMMSG)) != 0 ||
        (rc = uv_udp_bind(&sv.udp, (const struct sockaddr *)&bind_addr, 0)) != 0) {
        fprintf(stderr, "dht-server: cannot bind UDP %s:%u: %s\n", cfg->bind_ip, cfg->port,
                uv_strerror(rc));
        return -1;
    }
    sv.udp.data = &sv;
    grow_buffers(&sv.udp);
    if ((rc = uv_udp_recv_start(&sv.udp, on_alloc, on_recv)) != 0) goto fail;

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
    if (cfg->resp_port && (rc = resp_start(sv.loop, sv.n)) != 0) goto fail;
    if (cfg->http_port && (rc = http_start(sv.loop, sv.n)) != 0) goto fail;

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
