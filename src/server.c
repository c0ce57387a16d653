/* server: UDP I/O, datagram dispatch, client commands, node life cycle. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <xxhash.h>

#include "http.h"
#include "members.h"
#include "outbox.h"
#include "repl.h"
#include "resp.h"
#include "ring.h"
#include "wire.h"

#define RECV_BATCH 16 /* datagrams per recvmmsg */
#define SOCKET_BUFFER (16 << 20)
#define OVERLOAD_WAIT_MS 50
#define TICK_MS 50

/* ---- node helpers ----------------------------------------------------- */

uint64_t node_now(const node *n) { return uv_now(n->loop); }

uint64_t node_wall_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* Stamps: wall ms << 16 | logical count (6 bits) << 10 | node tag (10 bits). */
uint64_t node_stamp(node *n) {
    uint64_t wall = node_wall_ms() << 16;
    uint64_t next = (n->hlc | 0x3FF) + 1;
    uint64_t s = ((wall > next ? wall : next) & ~(uint64_t)0x3FF) | n->node_tag;
    n->hlc = s;
    return s;
}

void node_stamp_seen(node *n, uint64_t stamp) {
    /* ignore stamps from a clock far in the future (over a minute) */
    if (stamp > n->hlc && (stamp >> 16) < node_wall_ms() + 60000) n->hlc = stamp;
}

char *node_addr_str(uint32_t ip, uint16_t port, char *buf) {
    struct in_addr a = {ip};
    char tmp[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, tmp, sizeof tmp);
    snprintf(buf, 22, "%s:%u", tmp, port);
    return buf;
}

void node_log(const node *n, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    uint64_t ms = node_wall_ms();
    fprintf(stderr, "%llu.%03llu [%u] %s\n", (unsigned long long)(ms / 1000),
            (unsigned long long)(ms % 1000), n->cfg.port, line);
}

typedef struct send_req {
    uv_udp_send_t req;
    uint8_t data[];
} send_req;

static void on_sent(uv_udp_send_t *req, int status) {
    (void)status;
    free(req);
}

int node_send(node *n, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int rc = uv_udp_try_send(&n->udp, &b, 1, (const struct sockaddr *)to);
    if (rc >= 0) return 0;
    if (rc != UV_EAGAIN && rc != UV_ENOBUFS) return rc;
    /* The socket is full: queue a copy. */
    send_req *s = malloc(sizeof *s + len);
    if (!s) return UV_ENOMEM;
    memcpy(s->data, buf, len);
    b = uv_buf_init((char *)s->data, (unsigned)len);
    rc = uv_udp_send(&s->req, &n->udp, &b, 1, (const struct sockaddr *)to, on_sent);
    if (rc) free(s);
    return rc;
}

int node_send_peer(node *n, const struct sockaddr_in *to, const uint8_t *id,
                   size_t idlen, void *peer_msg) {
    static uint8_t out[WIRE_MAX_DATAGRAM];
    Peer *p = peer_msg;
    size_t len = wire_pack(out, sizeof out, id, idlen, &p->base, WIRE_KIND_PEER);
    if (!len) return UV_E2BIG;
    if (n->outbox && members_find(n->members, to->sin_addr.s_addr, ntohs(to->sin_port)) > 0)
        return outbox_add(n->outbox, to, out, len);
    return node_send(n, to, out, len);
}

/* ---- client requests -------------------------------------------------- */

static void reply(node *n, const uint8_t *id, size_t idlen, const struct sockaddr_in *to,
                  const KVResponse *r, bool remember) {
    static uint8_t out[WIRE_MAX_DATAGRAM];
    size_t len = wire_pack(out, sizeof out, id, idlen, &r->base, WIRE_KIND_CLIENT);
    if (!len) return;
    if (r->errcode < 8) n->stats.errors[r->errcode]++;
    node_send(n, to, out, len);
    if (remember) cache_done(n->cache, id, idlen, out, len, node_now(n));
}

static void reply_err(node *n, const uint8_t *id, size_t idlen,
                      const struct sockaddr_in *to, uint32_t err, bool remember) {
    KVResponse r = KVRESPONSE__INIT;
    r.errcode = err;
    if (err == WIRE_EOVERLOAD) r.overloadwaittime = OVERLOAD_WAIT_MS;
    reply(n, id, idlen, to, &r, remember);
}

/* Completion of a coordinated operation for a UDP client. */
static void udp_done(node *n, const repl_origin *o, const repl_result *res) {
    KVResponse r = KVRESPONSE__INIT;
    r.errcode = res->err;
    r.value.data = (uint8_t *)res->val;
    r.value.len = res->vlen;
    r.version = res->version;
    reply(n, o->id, o->idlen, &o->addr, &r, true);
}

static void forward(node *n, uint32_t owner, const uint8_t *id, size_t idlen,
                    const struct sockaddr_in *client, const uint8_t *req, size_t rlen) {
    Peer p = PEER__INIT;
    p.type = PEER_FORWARD;
    p.client_ip = client->sin_addr.s_addr;
    p.client_port = ntohs(client->sin_port);
    p.request.data = (uint8_t *)req;
    p.request.len = rlen;
    n->stats.forwarded++;
    node_send_peer(n, &members_at(n->members, owner)->addr, id, idlen, &p);
}

/* Serves a client request (payload = KVRequest bytes) from `client`; a
 * forwarded request is served here whatever this node thinks of the key. */
static void client_request(node *n, const uint8_t *id, size_t idlen,
                           const struct sockaddr_in *client, const uint8_t *payload,
                           size_t plen, bool forwarded) {
    const uint8_t *cached;
    size_t clen;
    switch (cache_lookup(n->cache, id, idlen, &cached, &clen)) {
    case CACHE_DONE:
        n->stats.cache_hits++;
        node_send(n, client, cached, clen);
        return;
    case CACHE_PENDING:
        n->stats.cache_hits++;
        return; /* the answer is on its way */
    default: break;
    }

    KVRequest *req = wire_unpack_request(payload, plen);
    if (!req) {
        n->stats.dropped_malformed++;
        reply_err(n, id, idlen, client, WIRE_EUNKNOWN, true);
        return;
    }
    n->stats.requests[req->command & 0xFF]++;
    KVResponse r = KVRESPONSE__INIT;
    char list[WIRE_MAX_DATAGRAM - 1024];
    switch (req->command) {
    case WIRE_PUT:
    case WIRE_GET:
    case WIRE_REMOVE:
        break;
    case WIRE_SHUTDOWN:
        store_sync(n->store);
        _exit(0);
    case WIRE_WIPEOUT:
        r.errcode = store_wipe(n->store) == 0 ? WIRE_OK : WIRE_EINTERNAL;
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_IS_ALIVE:
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_GET_PID:
        r.pid = (int32_t)getpid();
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_GET_MEMBERSHIP_COUNT:
        r.membershipcount = (int32_t)members_live(n->members);
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_GET_MEMBERSHIP_LIST:
        r.value.len = members_format(n->members, list, sizeof list);
        r.value.data = (uint8_t *)list;
        r.membershipcount = (int32_t)members_live(n->members);
        reply(n, id, idlen, client, &r, true);
        return;
    default:
        reply_err(n, id, idlen, client, WIRE_EUNKNOWN, true);
        return;
    }

    if (req->key.len < 1 || req->key.len > WIRE_MAX_KEY) {
        reply_err(n, id, idlen, client, WIRE_EBADKEY, true);
        return;
    }
    if (req->command == WIRE_PUT && req->value.len > WIRE_MAX_VALUE) {
        reply_err(n, id, idlen, client, WIRE_EBADVALUE, true);
        return;
    }
    uint32_t owner;
    if (!forwarded && !repl_is_replica(n, req->key.data, req->key.len, &owner)) {
        forward(n, owner, id, idlen, client, payload, plen);
        return;
    }
    repl_origin o;
    memset(&o, 0, sizeof o);
    o.done = udp_done;
    memcpy(o.id, id, idlen);
    o.idlen = idlen;
    o.addr = *client;
    o.start_ms = node_now(n);
    if (cache_begin(n->cache, id, idlen, o.start_ms) != 0 ||
        repl_client_op(n, &o, req->command, req->key.data, req->key.len,
                       req->value.data, req->value.len, req->version) != 0) {
        cache_abort(n->cache, id, idlen);
        reply_err(n, id, idlen, client, WIRE_EOVERLOAD, false);
    }
}

/* ---- node-to-node ----------------------------------------------------- */

static void peer_message(node *n, const uint8_t *id, size_t idlen, const uint8_t *payload,
                         size_t plen, const struct sockaddr_in *from) {
    Peer *p = wire_unpack_peer(payload, plen);
    if (!p) {
        n->stats.dropped_malformed++;
        return;
    }
    n->stats.peer_msgs++;
    switch (p->type) {
    case PEER_GOSSIP:
        members_merge(n->members, p);
        break;
    case PEER_FORWARD: {
        if (p->client_port == 0 || p->client_port > 65535) return;
        struct sockaddr_in client;
        memset(&client, 0, sizeof client);
        client.sin_family = AF_INET;
        client.sin_addr.s_addr = p->client_ip;
        client.sin_port = htons((uint16_t)p->client_port);
        client_request(n, id, idlen, &client, p->request.data, p->request.len, true);
        break;
    }
    case PEER_DEBUG:
        if (p->flags == PEER_DEBUG_PAUSE_GOSSIP && p->bucket <= 600000) {
            node_log(n, "debug: gossip paused for %u ms", p->bucket);
            members_pause(n->members, p->bucket);
        }
        break;
    default:
        repl_on_peer(n, id, idlen, p, from);
        break;
    }
}

static void on_batch(node *n, const uint8_t *p, size_t len, const struct sockaddr_in *from);

/* Handles one decoded Msg (rc: wire_unpack_msg's result). Inside a batch
 * only node-to-node messages are allowed. */
static void on_frame(node *n, int rc, const wire_frame *f, const struct sockaddr_in *from,
                     bool batched) {
    if (rc == WIRE_ECHECKSUM) {
        n->stats.dropped_checksum++;
        return;
    }
    /* A reply is matched by its message ID: without one (or with one too long
     * to keep) there is nothing a sender could match, so drop the datagram. */
    if (rc != 0 || f->idlen == 0 || f->idlen > sizeof ((repl_origin *)0)->id) {
        n->stats.dropped_malformed++;
        return;
    }
    if (f->kind == WIRE_KIND_PEER) peer_message(n, f->id, f->idlen, f->payload, f->plen, from);
    else if (f->kind == WIRE_KIND_CLIENT && !batched)
        client_request(n, f->id, f->idlen, from, f->payload, f->plen, false);
    else if (f->kind == WIRE_KIND_BATCH && !batched)
        on_batch(n, f->payload, f->plen, from);
    else
        n->stats.dropped_malformed++;
}

/* Node-to-node messages batched into one datagram (outbox.h). The arena
 * is not reset between them: the batch's payload lives in it. */
static void on_batch(node *n, const uint8_t *p, size_t len, const struct sockaddr_in *from) {
    const uint8_t *end = p + len, *frame;
    size_t flen;
    int rc;
    while ((rc = wire_batch_next(&p, end, &frame, &flen)) == 1) {
        wire_frame f;
        on_frame(n, wire_unpack_msg(frame, flen, &f), &f, from, true);
    }
    if (rc < 0) n->stats.dropped_malformed++;
}

static void on_datagram(node *n, const uint8_t *buf, size_t len, const struct sockaddr_in *from) {
    wire_frame f;
    wire_reset();
    on_frame(n, wire_unpack_msg(buf, len, &f), &f, from, false);
}

/* ---- libuv plumbing --------------------------------------------------- */

static uint8_t recv_buf[RECV_BATCH * 65536];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)recv_buf, sizeof recv_buf);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
    (void)flags;
    if (nread < 0 || !addr || addr->sa_family != AF_INET) return;
    on_datagram(h->data, (const uint8_t *)buf->base, (size_t)nread,
                (const struct sockaddr_in *)addr);
}

static void on_tick(uv_timer_t *t) {
    node *n = t->data;
    cache_expire(n->cache, node_now(n));
}

static void on_signal(uv_signal_t *s, int signum) {
    node *n = s->data;
    node_log(n, "signal %d: stopping", signum);
    uv_stop(n->loop);
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
static int load_peers(node *n) {
    FILE *f = fopen(n->cfg.peers_file, "r");
    if (!f) {
        fprintf(stderr, "dht-server: cannot open peers file %s: %s\n", n->cfg.peers_file,
                strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0, rc = 0;
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
        if (a.s_addr == n->self.sin_addr.s_addr && port == n->cfg.port) continue;
        if (members_add_seed(n->members, a.s_addr, (uint16_t)port) != 0) {
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* The address peers know us by: --advertise, else the local address of the
 * route to the first peer (no packet is sent), else the bind address or
 * 127.0.0.1. */
static int find_self(node *n) {
    const char *ip = n->cfg.advertise_ip;
    struct in_addr a;
    memset(&n->self, 0, sizeof n->self);
    n->self.sin_family = AF_INET;
    n->self.sin_port = htons(n->cfg.port);
    if (ip) {
        if (inet_pton(AF_INET, ip, &a) != 1) {
            fprintf(stderr, "dht-server: bad --advertise address %s\n", ip);
            return -1;
        }
        n->self.sin_addr = a;
        return 0;
    }
    if (inet_pton(AF_INET, n->cfg.bind_ip, &a) == 1 && a.s_addr != htonl(INADDR_ANY)) {
        n->self.sin_addr = a;
        return 0;
    }
    n->self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FILE *f = fopen(n->cfg.peers_file, "r");
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
            n->self.sin_addr = me.sin_addr;
        if (fd >= 0) close(fd);
        break;
    }
    fclose(f);
    return 0;
}

void server_defaults(node_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_ip = "0.0.0.0";
    cfg->max_memory = 64u << 20;
    cfg->replicas = 3;
    cfg->write_quorum = 2;
    cfg->read_quorum = 2;
    cfg->vnodes = RING_DEFAULT_VNODES;
    cfg->gossip_ms = 200;
    cfg->fanout = 3;
    cfg->suspect_ms = 1000;
    cfg->dead_ms = 2000;
    cfg->request_timeout_ms = 400;
    cfg->sync_ms = 2000;
    cfg->cache_ms = 5000;
    cfg->cache_bytes = 256u << 20;
    cfg->tombstone_ms = 3600 * 1000;
}

int server_run(const node_config *cfg) {
    static node n;
    int rc;
    memset(&n, 0, sizeof n);
    n.cfg = *cfg;
    n.loop = uv_default_loop();
    n.incarnation = node_wall_ms();
    n.started_ms = n.incarnation;
    if (find_self(&n) != 0) return -1;
    n.node_tag = (uint16_t)(XXH3_64bits(&n.self, sizeof n.self) & 0x3FF);

    if ((rc = store_open(&n.store, cfg->data_dir, cfg->max_memory)) != 0) {
        fprintf(stderr, "dht-server: cannot open store%s%s (error %d)\n",
                cfg->data_dir ? " in " : "", cfg->data_dir ? cfg->data_dir : "", rc);
        return -1;
    }
    n.cache = cache_new(cfg->cache_ms, cfg->cache_bytes);
    n.members = members_new(&n);
    n.repl = repl_new(&n);
    n.outbox = outbox_new(&n);
    if (!n.cache || !n.members || !n.repl || !n.outbox) {
        fprintf(stderr, "dht-server: out of memory\n");
        return -1;
    }
    if (load_peers(&n) != 0) return -1;

    struct sockaddr_in bind_addr;
    if ((rc = uv_ip4_addr(cfg->bind_ip, cfg->port, &bind_addr)) != 0) {
        fprintf(stderr, "dht-server: bad --bind address %s\n", cfg->bind_ip);
        return -1;
    }
    if ((rc = uv_udp_init_ex(n.loop, &n.udp, AF_INET | UV_UDP_RECVMMSG)) != 0 ||
        (rc = uv_udp_bind(&n.udp, (const struct sockaddr *)&bind_addr, 0)) != 0) {
        fprintf(stderr, "dht-server: cannot bind UDP %s:%u: %s\n", cfg->bind_ip, cfg->port,
                uv_strerror(rc));
        return -1;
    }
    n.udp.data = &n;
    grow_buffers(&n.udp);
    if ((rc = uv_udp_recv_start(&n.udp, on_alloc, on_recv)) != 0) goto fail;

    uv_timer_init(n.loop, &n.tick);
    n.tick.data = &n;
    uv_timer_start(&n.tick, on_tick, TICK_MS, TICK_MS);
    uv_signal_init(n.loop, &n.sigint);
    uv_signal_init(n.loop, &n.sigterm);
    n.sigint.data = n.sigterm.data = &n;
    uv_signal_start(&n.sigint, on_signal, SIGINT);
    uv_signal_start(&n.sigterm, on_signal, SIGTERM);
    if ((rc = members_start(n.members)) != 0 || (rc = repl_start(n.repl)) != 0) goto fail;
    /* a write to a TCP client that left must fail with EPIPE, not end the node */
    signal(SIGPIPE, SIG_IGN);
    if (cfg->resp_port && (rc = resp_start(&n)) != 0) goto fail;
    if (n.cfg.http_port && (rc = http_start(&n)) != 0) goto fail;

    char a[32];
    node_log(&n, "dht-server pid %d serving %s (udp), %zu peers, store %s, N=%u R=%u W=%u",
             (int)getpid(), node_addr_str(n.self.sin_addr.s_addr, cfg->port, a),
             members_total(n.members) - 1, store_engine(n.store), cfg->replicas,
             cfg->read_quorum, cfg->write_quorum);
    uv_run(n.loop, UV_RUN_DEFAULT);
    store_sync(n.store);
    store_close(n.store);
    return 0;
fail:
    fprintf(stderr, "dht-server: %s\n", uv_strerror(rc));
    return -1;
}
