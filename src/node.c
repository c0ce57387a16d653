/* node: the core of a node: datagram dispatch, client commands, stamps, ticks. */
#include "node.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "members.h"
#include "outbox.h"
#include "repl.h"
#include "ring.h"
#include "wire.h"

#define CACHE_EXPIRE_MS 50
#define FULL_QUIET_MS 1000 /* a full store's episode ends after this without refusals */

void node_defaults(node_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_ip = "0.0.0.0";
    cfg->max_memory = 64u << 20;
    cfg->replicas = 3;
    cfg->write_quorum = 2;
    cfg->read_quorum = 2;
    cfg->vnodes = RING_DEFAULT_VNODES;
    cfg->gossip_ms = 200;
    cfg->fanout = 3;
    cfg->suspicion_ms = 1000;
    cfg->forget_ms = 3600 * 1000;
    cfg->request_timeout_ms = 400;
    cfg->max_inflight = 2048;
    cfg->max_lag_ms = 250;
    cfg->majority_ms = 0;
    cfg->sync_ms = 2000;
    cfg->cache_ms = 5000;
    cfg->cache_bytes = 256u << 20;
    cfg->tombstone_ms = 3600 * 1000;
}

/* ---- services to the modules ------------------------------------------ */

/* Within node_receive, node_tick and node_flush the clocks are read once
 * (node_clock_begin): handling one datagram takes microseconds, and reading
 * the clocks for each message, stamp and seal of a batch was 6% of a node's
 * cycles under pipelined load. The Redis front end does the same for the
 * commands of one read (a few at a time). Elsewhere each call reads. */
uint64_t node_now(const node *n) { return n->now_cache ? n->now_cache : n->env.now(n->env.ctx); }

uint64_t node_now_us(const node *n) {
    return n->env.now_us ? n->env.now_us(n->env.ctx) : n->env.now(n->env.ctx) * 1000;
}

uint64_t node_mono(const node *n) { return node_now(n) + 1; }

uint64_t node_wall_ms(const node *n) {
    return n->wall_cache ? n->wall_cache : n->env.wall(n->env.ctx);
}

/* Reads the clocks for what follows until clock_end; a nested begin keeps
 * the outer reading. Returns whether this call began it. */
bool node_clock_begin(node *n) {
    if (n->now_cache) return false;
    n->now_cache = n->env.now(n->env.ctx);
    n->wall_cache = n->env.wall(n->env.ctx);
    return n->now_cache != 0;
}

void node_clock_end(node *n, bool began) {
    if (began) n->now_cache = n->wall_cache = 0;
}

uint64_t node_random(node *n) { return n->env.random(n->env.ctx); }

/* Wall-clock ms, or the clock of the member furthest ahead run on (lead). */
static uint64_t lead_wall_ms(const node *n) {
    uint64_t wall = node_wall_ms(n);
    if (n->lead == INT64_MIN) return wall;
    int64_t led = (int64_t)node_now(n) + n->lead;
    return led > (int64_t)wall && (uint64_t)led <= wall + WIRE_MAX_AHEAD_MS ? (uint64_t)led : wall;
}

/* Stamps (hybrid logical clock): wall ms << 16 | logical count (16 bits).
 * The count grows within a millisecond; only past 65,536 stamps in one
 * millisecond does a stamp run ahead of the wall clock. Two coordinators may
 * issue the same stamp: store_rec_cmp orders such records by content, so
 * replicas agree on the winner. */
uint64_t node_stamp(node *n) {
    uint64_t wall = lead_wall_ms(n) << 16, next = n->hlc + 1;
    n->hlc = wall > next ? wall : next;
    return n->hlc;
}

uint64_t node_clock(const node *n) {
    uint64_t wall = lead_wall_ms(n) << 16;
    return n->hlc > wall ? n->hlc : wall;
}

void node_stamp_seen(node *n, uint64_t stamp) {
    /* ignore stamps from a clock far in the future (over a minute) */
    if (stamp > n->hlc && (stamp >> 16) <= node_wall_ms(n) + WIRE_MAX_AHEAD_MS) n->hlc = stamp;
}

/* ---- a store the cluster outlived --------------------------------------
 *
 * Tombstones are collected once every member is alive or forgotten
 * (repl.c gc_due). A node back after being forgotten (dead --forget-ms)
 * may hold values whose tombstones the others have since collected: pushed
 * or read, they would bring deleted keys back. Each node keeps the stamp
 * below which it has collected (gc_floor, in its data dir) and gossips it.
 * A node that restarts on a store of a life that ended long ago holds back
 * the records of that life (node_stale) until it hears a peer's floor: past
 * the end of that life, the records may have outlived their tombstones and
 * are dropped (their replicas hold what is current, and anti-entropy brings
 * it back); otherwise they count again a little after the first floor heard
 * (a few gossip periods, time to hear more). Records a floor condemned
 * never count again: held back until the drop succeeds (a full disk may
 * refuse it, and some of them with it), tried again every STALE_RETRY_MS. */

#define ALIVE_PERIOD_MS 10000  /* how often env.alive is told, at most */
#define STALE_HEAR_PERIODS 20  /* gossip periods of floors heard before trusting */
#define STALE_RETRY_MS 5000    /* a drop refused (full disk) is tried again: each walks the store */

void node_gc_ran(node *n, uint64_t floor) {
    if (floor > n->gc_floor) n->gc_floor = floor;
}

/* Drops the condemned records of the last life; they stop being held back
 * only once all are gone. */
static void drop_last_life(node *n) {
    size_t dropped = 0;
    int rc = store_drop_older(n->store, n->stale_below + 1, &dropped);
    n->stats.outlived += dropped;
    n->stale_dropped += dropped;
    if (rc != 0) {
        if (!n->stale_drop_failed)
            node_log(n, "back after the cluster collected tombstones past this store's last "
                        "life: dropping its records from then failed (%s; %llu dropped): the "
                        "rest stay held back, tried again every %d s",
                     rc == STORE_ENOSPACE ? "no room on disk" : "store error",
                     (unsigned long long)n->stale_dropped, STALE_RETRY_MS / 1000);
        n->stale_drop_failed = true;
        return;
    }
    node_log(n, "back after the cluster collected tombstones past this store's last life: "
                "dropped its %llu records from then (their replicas hold what is current)%s",
             (unsigned long long)n->stale_dropped,
             n->stale_drop_failed ? ", after tries that failed" : "");
    n->stale_below = 0;
    n->stale_doomed = n->stale_drop_failed = false;
}

void node_floor_seen(node *n, uint64_t floor) {
    if (!n->stale_below || n->stale_doomed) return; /* condemned: check_last_life retries */
    if (!n->stale_until) n->stale_until = node_now(n) + STALE_HEAR_PERIODS * n->cfg.gossip_ms;
    if (floor <= n->last_life || (floor >> 16) > node_wall_ms(n) + WIRE_MAX_AHEAD_MS) return;
    n->stale_doomed = true;
    n->stale_retry_at = node_now(n) + STALE_RETRY_MS;
    drop_last_life(n);
}

static uint64_t alive_period(const node_config *cfg) {
    return cfg->forget_ms / 4 < ALIVE_PERIOD_MS ? cfg->forget_ms / 4 : ALIVE_PERIOD_MS;
}

static int newest_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    (void)key, (void)klen;
    uint64_t *newest = ctx;
    if (rec->stamp > *newest) *newest = rec->stamp;
    return 0;
}

/* Holds the store's records back if its last life ended so long ago that
 * tombstones it never saw may have been collected: at least half of the
 * time a dead member is remembered, or a tombstone kept (clocks may differ
 * by less than that half). */
static void hold_back_last_life(node *n, const node_config *cfg) {
    uint64_t wall = node_wall_ms(n);
    uint64_t keep = cfg->forget_ms < cfg->tombstone_ms ? cfg->forget_ms : cfg->tombstone_ms;
    if (!cfg->last_alive_ms || store_records(n->store) == 0 || wall < cfg->last_alive_ms ||
        wall - cfg->last_alive_ms < keep / 2)
        return;
    n->last_life = cfg->last_alive_ms << 16;
    /* every record of that life, whatever clock stamped it */
    uint64_t newest = 0;
    if (store_iter(n->store, newest_visit, &newest) != 0 || !newest) return;
    n->stale_below = newest;
    node_log(n, "this store's last life ended %llu s ago: its records are held back until a "
                "peer says whether tombstones were collected since",
             (unsigned long long)((wall - cfg->last_alive_ms) / 1000));
}

static void check_last_life(node *n, uint64_t now, uint64_t *next) {
    if (n->stale_doomed) { /* a drop refused: never released, dropped again */
        if (node_due(&n->stale_retry_at, now, STALE_RETRY_MS, next)) drop_last_life(n);
    } else if (n->stale_below && !n->stale_until && members_total(n->members) < 2) {
        n->stale_below = 0; /* alone: nobody else collected anything */
    } else if (n->stale_below && n->stale_until) {
        if (now >= n->stale_until) {
            node_log(n, "no peer collected tombstones past this store's last life: its records "
                        "count again");
            n->stale_below = 0;
        } else if (n->stale_until < *next) {
            *next = n->stale_until;
        }
    }
    if (n->env.alive) {
        if (node_due(&n->alive_at, now, alive_period(&n->cfg), next))
            n->env.alive(n->env.ctx, node_wall_ms(n), n->gc_floor);
    }
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
    n->env.log(n->env.ctx, line);
}

int node_send(node *n, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    return n->env.send(n->env.ctx, to, buf, len);
}

int node_send_sealed(node *n, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    if (!n->cfg.keys) return node_send(n, to, buf, len);
    uint8_t out[WIRE_MAX_DATAGRAM];
    if (len > NODE_MAX_PEER_DATAGRAM) return -1;
    memcpy(out, buf, len);
    /* SipHash to the members that said they open it, else the seal of
     * earlier versions (auth.h) */
    long m = members_find(n->members, to->sin_addr.s_addr, ntohs(to->sin_port));
    bool sip = m > 0 && members_at(n->members, (size_t)m)->siphash;
    len = auth_seal(n->cfg.keys, out, len, sizeof out, node_wall_ms(n), sip);
    return len ? node_send(n, to, out, len) : -1;
}

static int send_peer(node *n, const struct sockaddr_in *to, const uint8_t *id, size_t idlen,
                     void *peer_msg, uint64_t due) {
    uint8_t out[NODE_MAX_PEER_DATAGRAM];
    Peer *p = peer_msg;
    size_t len = wire_pack(out, sizeof out, id, idlen, &p->base, WIRE_KIND_PEER);
    if (!len) return -1;
    if (members_find(n->members, to->sin_addr.s_addr, ntohs(to->sin_port)) > 0)
        return outbox_add(n->outbox, to, out, len, due);
    return node_send_sealed(n, to, out, len);
}

int node_send_peer(node *n, const struct sockaddr_in *to, const uint8_t *id,
                   size_t idlen, void *peer_msg) {
    return send_peer(n, to, id, idlen, peer_msg, 0);
}

int node_send_peer_lazy(node *n, const struct sockaddr_in *to, const uint8_t *id,
                        size_t idlen, void *peer_msg) {
    return send_peer(n, to, id, idlen, peer_msg, node_now(n) + NODE_LAZY_MS);
}

/* ---- admission -------------------------------------------------------- */

uint32_t node_overload_wait_ms(const node *n) {
    uint32_t w = repl_overload_wait_ms(n->repl, n) + n->lag_ewma16 / 16;
    return w > 2000 ? 2000 : w;
}

bool node_lagging(node *n) {
    if (!n->cfg.max_lag_ms || n->lag_ewma16 / 16 < n->cfg.max_lag_ms) return false;
    n->stats.overload[NODE_OVERLOAD_LAG]++;
    return true;
}

/* ---- client requests -------------------------------------------------- */

/* A node is ticked at least every CACHE_EXPIRE_MS: a gap of NODE_STALL_MS
 * since the last tick, seen by a tick or a datagram, means it was stalled,
 * and what it reads now waited through the stall (node.h, node_tick). */
static void check_stall(node *n, uint64_t now) {
    if (!n->last_tick || now - n->last_tick < NODE_STALL_MS || n->woke_at > n->last_tick) return;
    n->woke_at = now;
    if (!n->cfg.quiet)
        node_log(n, "stalled %llu ms: requests that waited meanwhile are dropped",
                 (unsigned long long)(now - n->last_tick));
}

static void reply(node *n, const uint8_t *id, size_t idlen, const struct sockaddr_in *to,
                  const KVResponse *r, bool remember) {
    uint8_t out[WIRE_MAX_DATAGRAM];
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
    if (err == WIRE_EOVERLOAD) r.overloadwaittime = (int32_t)node_overload_wait_ms(n);
    reply(n, id, idlen, to, &r, remember);
}

/* Completion of a coordinated operation for a UDP client. An OVERLOAD
 * (live replicas too slow) is not remembered: the client's retry of the
 * same message ID runs the operation again. */
static void udp_done(node *n, const repl_origin *o, const repl_result *res) {
    if (res->err == WIRE_EOVERLOAD) {
        cache_abort(n->cache, o->id, o->idlen);
        reply_err(n, o->id, o->idlen, &o->addr, WIRE_EOVERLOAD, false);
        return;
    }
    KVResponse r = KVRESPONSE__INIT;
    r.errcode = res->err;
    r.value.data = (uint8_t *)res->val;
    r.value.len = res->vlen;
    r.version = res->version;
    reply(n, o->id, o->idlen, &o->addr, &r, true);
}

/* An array of *n_have elements of size each, by member index, grown to the
 * members' slots with the new ones zeroed: the array (perhaps moved), or
 * NULL out of memory (arr is then unchanged). */
static void *grow_by_member(node *n, void *arr, size_t *n_have, size_t size) {
    size_t want = members_total(n->members);
    if (*n_have >= want) return arr;
    uint8_t *more = realloc(arr, want * size);
    if (!more) return NULL;
    memset(more + *n_have * size, 0, (want - *n_have) * size);
    *n_have = want;
    return more;
}

/* Sends a client request on to member `to`, which answers the client. The
 * forward names this node and that one (addresses and incarnations) and
 * counts the forwards sent there: see forward_replayed. */
static void forward(node *n, uint32_t to_member, const uint8_t *id, size_t idlen,
                    const struct sockaddr_in *client, const uint8_t *req, size_t rlen) {
    const member *t = members_at(n->members, to_member);
    const struct sockaddr_in *to = &t->addr;
    uint64_t *sent = grow_by_member(n, n->fwd_sent, &n->fwd_sent_n, sizeof *sent);
    if (!sent) return; /* out of memory: as if lost */
    n->fwd_sent = sent;
    Peer p = PEER__INIT;
    Member self = MEMBER__INIT;
    self.ip = n->self.sin_addr.s_addr;
    self.port = ntohs(n->self.sin_port);
    self.incarnation = n->incarnation;
    p.from = &self;
    p.to_ip = t->ip;
    p.to_port = t->port;
    p.to_incarnation = t->incarnation;
    p.forward_seq = ++n->fwd_sent[to_member];
    p.mono = node_mono(n);
    p.type = PEER_FORWARD;
    p.client_ip = client->sin_addr.s_addr;
    p.client_port = ntohs(client->sin_port);
    p.request.data = (uint8_t *)req;
    p.request.len = rlen;
    n->stats.forwarded++;
    node_send_peer(n, to, id, idlen, &p);
}

/* SHUTDOWN and WIPEOUT come only from --admin-from (127.0.0.0/8 unless
 * given) or from a host a member runs on; others are told the command is
 * unknown to them, and the refusal is logged (at most once a second). */
static bool admin_allowed(node *n, const struct sockaddr_in *client, bool forwarded,
                          uint32_t cmd) {
    static const auth_net loopback = {0x0000007f, 0x000000ff}; /* 127.0.0.0/8, network order */
    uint32_t ip = client->sin_addr.s_addr;
    bool ok = !forwarded &&
              (n->cfg.admin_nets_n ? auth_in_nets(n->cfg.admin_nets, n->cfg.admin_nets_n, ip)
                                   : auth_in_nets(&loopback, 1, ip) ||
                                         members_has_host(n->members, ip));
    if (ok) return true;
    n->stats.refused_admin++;
    uint64_t now = node_now(n);
    if (now - n->admin_logged >= 1000 || !n->admin_logged) {
        n->admin_logged = now;
        char a[22];
        node_log(n, "refused %s from %s: not in --admin-from (%llu refused so far)",
                 wire_cmd_name(cmd),
                 node_addr_str(ip, ntohs(client->sin_port), a),
                 (unsigned long long)n->stats.refused_admin);
    }
    return false;
}

/* Whether a request from client must not be forwarded to member owner: the
 * client is on this host's loopback and the owner on another host, where the
 * owner's answer to 127.0.0.1 would reach its own host, never the client.
 * Such a request is coordinated here, as any node may. */
static bool loopback_elsewhere(node *n, const struct sockaddr_in *client, uint32_t owner) {
    uint32_t owner_ip = ntohl(members_at(n->members, owner)->addr.sin_addr.s_addr);
    return ntohl(client->sin_addr.s_addr) >> 24 == 127 && owner_ip >> 24 != 127;
}

/* GET_MEMBERSHIP_LIST answers a request of about 25 bytes with the member
 * list, up to 63 KB in a big cluster: sent from a spoofed source address
 * (the client protocol has no authentication), a 2,500-fold amplifier
 * aimed at that address. A node answers at most LIST_RATE a second, in
 * bursts of LIST_BURST, and TEMPORARY_OVERLOAD (as small as the request)
 * past that, a generic cell rate: list_tat is when the rate allows the
 * next. Nor are the lists remembered: the reply cache sent a remembered
 * one again to whoever sent its message ID, from any address. */
#define LIST_RATE 50
#define LIST_BURST 100
static bool list_allowed(node *n, uint32_t *wait_ms) {
    uint64_t now = node_now(n), tat = n->list_tat > now ? n->list_tat : now;
    uint64_t ahead = tat - now, most = (LIST_BURST - 1) * 1000 / LIST_RATE;
    if (ahead > most) {
        *wait_ms = (uint32_t)(ahead - most);
        return false;
    }
    n->list_tat = tat + 1000 / LIST_RATE;
    return true;
}

/* Serves a client request (payload = KVRequest bytes) from `client`; a
 * forwarded request is served here whatever this node thinks of the key. */
static void client_request(node *n, const uint8_t *id, size_t idlen,
                           const struct sockaddr_in *client, const uint8_t *payload,
                           size_t plen, bool forwarded) {
    if (n->woke_at && node_now(n) - n->woke_at < NODE_WAKE_WINDOW_MS) {
        n->stats.dropped_stale++; /* it waited through our stall: see node_tick */
        return;
    }
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
    case CACHE_FORWARDED: { /* to the node that has it, whatever the ring says now, */
        struct sockaddr_in to;
        if (clen != sizeof to) return;
        /* but not when it came forwarded from a node: that one has no entry,
         * so it never ran it (its forward was lost, or dropped as stale), and
         * sent on it came back, the two nodes passing it to and fro until an
         * entry expired (5 s, unanswered, both cores busy) */
        if (forwarded) break;
        memcpy(&to, cached, sizeof to);
        long m = members_find(n->members, to.sin_addr.s_addr, ntohs(to.sin_port));
        if (m > 0 && members_at(n->members, (size_t)m)->state != MEMBER_DEAD) {
            forward(n, (uint32_t)m, id, idlen, client, payload, plen);
            return;
        }
        /* It has died since: the request goes where the ring says now.
         * Should the first run have reached the replicas before its node
         * died, the write runs twice (README: At most once). Answering
         * INTERNAL_FAILURE instead (outcome unknown) failed the writes
         * whose forward never arrived: 12-25 of 500 made just after each
         * kill (test_faults one_kill_at_a_time_until_20_dead). */
        break;
    }
    default: break;
    }

    KVRequest *req = wire_unpack_request(n->arena, payload, plen);
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
        if (!admin_allowed(n, client, forwarded, req->command)) {
            reply_err(n, id, idlen, client, WIRE_EUNKNOWN, true);
            return;
        }
        store_sync(n->store);
        n->env.stop(n->env.ctx);
        return;
    case WIRE_WIPEOUT:
        if (!admin_allowed(n, client, forwarded, req->command)) {
            reply_err(n, id, idlen, client, WIRE_EUNKNOWN, true);
            return;
        }
        r.errcode = node_wipe(n) == 0 ? WIRE_OK : WIRE_EINTERNAL;
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_IS_ALIVE:
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_GET_PID:
        r.pid = n->pid;
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_GET_MEMBERSHIP_COUNT:
        r.membershipcount = (int32_t)members_live(n->members);
        reply(n, id, idlen, client, &r, true);
        return;
    case WIRE_GET_MEMBERSHIP_LIST: {
        uint32_t wait;
        if (!list_allowed(n, &wait)) {
            n->stats.overload[NODE_OVERLOAD_LIST]++;
            r.errcode = WIRE_EOVERLOAD;
            r.overloadwaittime = (int32_t)wait;
            reply(n, id, idlen, client, &r, false);
            return;
        }
        r.value.len = members_format(n->members, list, sizeof list);
        r.value.data = (uint8_t *)list;
        r.membershipcount = (int32_t)members_live(n->members);
        reply(n, id, idlen, client, &r, false);
        return;
    }
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
    /* only a PUT carries a value (a REMOVE's went into its tombstone, which
     * the replicas refused as malformed: never acknowledged) */
    if (req->command != WIRE_PUT) req->value.len = 0;
    uint32_t owner;
    if (!forwarded && !repl_is_replica(n, req->key.data, req->key.len, &owner) &&
        !loopback_elsewhere(n, client, owner)) {
        const struct sockaddr_in *to = &members_at(n->members, owner)->addr;
        /* A write is remembered with where it went, so that its retries go
         * there too and it runs at one coordinator (at most once); a read
         * may run anywhere, and its retries follow the ring. */
        if (req->command != WIRE_GET &&
            cache_forwarded(n->cache, id, idlen, to, sizeof *to, node_now(n)) != 0) {
            reply_err(n, id, idlen, client, WIRE_EOVERLOAD, false);
            return;
        }
        forward(n, owner, id, idlen, client, payload, plen);
        return;
    }
    if (node_lagging(n)) {
        reply_err(n, id, idlen, client, WIRE_EOVERLOAD, false);
        return;
    }
    repl_origin o;
    memset(&o, 0, sizeof o);
    o.done = udp_done;
    memcpy(o.id, id, idlen);
    o.idlen = idlen;
    o.addr = *client;
    o.start_ms = node_now(n);
    o.start_us = node_now_us(n);
    if (cache_begin(n->cache, id, idlen, o.start_ms) != 0 ||
        repl_client_op(n, &o, req->command, req->key.data, req->key.len,
                       req->value.data, req->value.len, req->version) != 0) {
        cache_abort(n->cache, id, idlen);
        reply_err(n, id, idlen, client, WIRE_EOVERLOAD, false);
    }
}

/* ---- node-to-node ----------------------------------------------------- */

/* Replayed forwards. A sealed datagram can be recorded and sent again, from
 * any address, for as long as its seal's time is within the clock bound
 * (60 s, auth.h). What most carry is ordered by stamps and incarnations,
 * but a forwarded client request runs the request: replayed after its
 * reply-cache entry expired (5 s), a PUT ran again with a new stamp, over
 * the writes made since (dht-sim --replayer: every seed of 1..30 lost
 * writes). So each forward names its sender and carries the sender's count
 * of forwards to the node it is for (named with the incarnation the sender
 * knows it by); a node keeps, for each member that forwards to it, the
 * highest count taken and which of the FWD_WINDOW below it were taken too
 * (an anti-replay window, as IPsec's). A forward meant for another node or
 * another life of this one, from a past life of its sender, seen before,
 * or below the window is dropped: one overtaken by FWD_WINDOW later ones
 * from the same node is too late to matter (its client has retried), and
 * one from a node this node does not know yet is dropped too (it cannot
 * tell a past life; the client retries). (Without the count, an earlier
 * version's forward, it is taken as before.) */
#define FWD_WINDOW 1024
#define FWD_MAX_LATE_MS 1000 /* (see forward_replayed) */

typedef struct fwd_seen {
    uint32_t ip;                /* network order */
    uint16_t port;
    uint64_t incarnation;
    uint64_t top;               /* the highest count taken */
    uint64_t top_sent;          /* its seal's time (sender's wall ms; 0: no key) */
    uint64_t top_at;            /* node_now when it came */
    uint64_t bits[FWD_WINDOW / 64]; /* bit i: count top - i taken */
} fwd_seen;

/* Shifts the window up by k counts. */
static void fwd_shift(fwd_seen *w, uint64_t k) {
    const size_t words = FWD_WINDOW / 64;
    if (k >= FWD_WINDOW) {
        memset(w->bits, 0, sizeof w->bits);
        return;
    }
    size_t q = (size_t)(k / 64), r = (size_t)(k % 64);
    for (size_t i = words; i-- > 0;) {
        uint64_t v = i >= q ? w->bits[i - q] << r : 0;
        if (r && i >= q + 1) v |= w->bits[i - q - 1] >> (64 - r);
        w->bits[i] = v;
    }
}

/* Whether a forward must be dropped as a replay (see above); takes it
 * into the window when not. An earlier version's forward (no count) is
 * taken as it is. */
static bool forward_replayed(node *n, const Peer *p) {
    if (!p->forward_seq) return false;
    if (!p->from || !p->from->port || p->from->port > 65535) return true;
    /* for another node, or another life of this one (0: the sender has not
     * heard this node yet, as in a cluster's first moments) */
    if (p->to_ip != n->self.sin_addr.s_addr || p->to_port != ntohs(n->self.sin_port) ||
        (p->to_incarnation && p->to_incarnation != n->incarnation))
        return true;
    long m = members_find(n->members, p->from->ip, (uint16_t)p->from->port);
    if (m <= 0) return true;
    const member *e = members_at(n->members, (size_t)m);
    uint64_t inc = p->from->incarnation, seq = p->forward_seq;
    if (e->incarnation && inc < e->incarnation) return true; /* a past life's */
    fwd_seen **seen = grow_by_member(n, n->fwd_seen, &n->fwd_seen_n, sizeof *seen);
    if (!seen) return true;
    n->fwd_seen = seen;
    /* Sent well before now by the sender's monotonic clock, as its own
     * messages let us reckon it (members_mono_late): no step of its wall
     * clock moves that one, and no recording sent again holds the
     * reckoning back. (By its wall clock as its last GOSSIP read, a
     * forward that never came ran when sent again after that GOSSIP's
     * recording, or after the clock was set back by about as long.) From
     * an earlier version, by that wall clock: well before, or after (its
     * clock was set back since: sent before that). */
    uint64_t sent = n->rx_sent_ms, now = node_now(n);
    int by_mono = members_mono_late(n->members, (uint32_t)m, inc, p->mono);
    int64_t its_now = e->clock == INT64_MIN ? 0 : (int64_t)now + e->clock;
    bool late = by_mono >= 0 ? by_mono == 1
                             : sent && its_now &&
                               ((int64_t)(sent + FWD_MAX_LATE_MS) < its_now ||
                                (int64_t)sent > its_now + FWD_MAX_LATE_MS);
    fwd_seen *w = n->fwd_seen[m];
    if (!w && !(w = n->fwd_seen[m] = calloc(1, sizeof *w))) return true;
    if (w->ip != e->ip || w->port != e->port || inc > w->incarnation) {
        if (late) return true;
        memset(w, 0, sizeof *w); /* a new life, or the slot went to another member */
        w->ip = e->ip;
        w->port = e->port;
        w->incarnation = inc;
        w->top = seq;
        w->top_sent = sent;
        w->top_at = now;
        w->bits[0] = 1;
        goto taken;
    }
    if (inc < w->incarnation) return true;
    if (seq > w->top) {
        /* Above the window, but sent when the sender's clock read otherwise
         * (by its GOSSIP, or when none was heard, reckoned from the newest
         * forward taken): one that never came before, kept and sent now. */
        if (late || (by_mono < 0 && !its_now && sent && w->top_sent &&
                     sent + FWD_MAX_LATE_MS < w->top_sent + (now - w->top_at)))
            return true;
        fwd_shift(w, seq - w->top);
        w->top = seq;
        w->top_sent = sent;
        w->top_at = now;
        w->bits[0] |= 1;
        goto taken;
    }
    uint64_t back = w->top - seq;
    if (back >= FWD_WINDOW) return true;
    /* one sent before the newest taken, coming well after that one came, by
     * our clock, or sent well before it, by the sender's: a datagram that
     * never came (lost, or cut off), kept and sent now. (By the sender's
     * clock alone, one sent 200 ms before it came 6.6 s after it and ran:
     * the sender's clock had been set back 6.5 s meanwhile, so neither its
     * GOSSIP nor the newest forward's time told; dht-sim --replayer W=1 R=1
     * seed 58, a REMOVE's key back to the value of a PUT before it.) */
    if (late || now - w->top_at > FWD_MAX_LATE_MS ||
        (sent && w->top_sent && sent + FWD_MAX_LATE_MS < w->top_sent))
        return true;
    uint64_t bit = 1ull << (back % 64);
    if (w->bits[back / 64] & bit) return true;
    w->bits[back / 64] |= bit;
taken: /* a reading of the sender's clock, as its GOSSIP is */
    members_heard_mono(n->members, (uint32_t)m, inc, p->mono);
    return false;
}

static void peer_message(node *n, const uint8_t *id, size_t idlen, const uint8_t *payload,
                         size_t plen, const struct sockaddr_in *from) {
    Peer *p = wire_unpack_peer(n->arena, payload, plen);
    if (!p) {
        n->stats.dropped_malformed++;
        return;
    }
    n->stats.peer_msgs++;
    switch (p->type) {
    case PEER_GOSSIP:
        members_receive(n->members, id, idlen, p, from);
        break;
    case PEER_FORWARD: {
        if (p->client_port == 0 || p->client_port > 65535) return;
        if (forward_replayed(n, p)) {
            n->stats.dropped_replay++;
            return;
        }
        struct sockaddr_in client;
        memset(&client, 0, sizeof client);
        client.sin_family = AF_INET;
        client.sin_addr.s_addr = p->client_ip;
        client.sin_port = htons((uint16_t)p->client_port);
        client_request(n, id, idlen, &client, p->request.data, p->request.len, true);
        break;
    }
    case PEER_DEBUG: /* only between nodes that share a key */
        if (n->cfg.keys && p->flags == PEER_DEBUG_PAUSE_GOSSIP && p->bucket <= 600000) {
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
    if (f->kind == WIRE_KIND_PEER) {
        peer_message(n, f->id, f->idlen, f->payload, f->plen, from);
    } else if (f->kind == WIRE_KIND_CLIENT && !batched) {
        /* Nodes send no client requests from their node port, but their
         * replies to clients look like requests (kind 0; reply codes are
         * command numbers: UNKNOWN_COMMAND reads as WIPEOUT). A request
         * spoofed from node B's address made node A answer B, which served
         * the answer as a request (a WIPEOUT from a member's host) and
         * answered A, and so on: one datagram from an outsider wiped a node
         * and set two echoing for good. */
        if (members_is_node(n->members, from->sin_addr.s_addr, ntohs(from->sin_port))) {
            n->stats.dropped_from_node++;
            return;
        }
        /* Outside --clients-from: no answer at all. The client protocol has
         * no handshake, so a request's source address may be spoofed, and
         * an answer (a GET's value, up to 10 KB for ~50 bytes) goes to
         * whoever the source names. */
        if (n->cfg.client_nets_n &&
            !auth_in_nets(n->cfg.client_nets, n->cfg.client_nets_n, from->sin_addr.s_addr)) {
            n->stats.dropped_client++;
            return;
        }
        client_request(n, f->id, f->idlen, from, f->payload, f->plen, false);
    } else if (f->kind == WIRE_KIND_BATCH && !batched) {
        on_batch(n, f->payload, f->plen, from);
    } else {
        n->stats.dropped_malformed++;
    }
}

/* Node-to-node messages batched into one datagram (outbox.h). The arena
 * is not reset between them. */
static void on_batch(node *n, const uint8_t *p, size_t len, const struct sockaddr_in *from) {
    if (!len) return; /* an empty batch (p may then be NULL) */
    const uint8_t *end = p + len, *frame;
    size_t flen;
    int rc;
    while ((rc = wire_batch_next(&p, end, &frame, &flen)) == 1) {
        wire_frame f;
        on_frame(n, wire_unpack_batched(frame, flen, &f), &f, from, true);
    }
    if (rc < 0) n->stats.dropped_malformed++;
}

/* May a node-to-node datagram from `from` be read? With a key: when its
 * seal opens and it was sent within the clock bound of our clock. Without:
 * when it comes from a loopback or private address (auth.h). */
static bool peer_allowed(node *n, const struct sockaddr_in *from, const uint8_t *buf,
                         size_t len) {
    if (!n->cfg.keys) {
        if (auth_private_addr(from->sin_addr.s_addr)) return true;
        n->stats.dropped_outsider++;
        return false;
    }
    uint64_t sent, wall;
    if (!auth_open(n->cfg.keys, buf, len, &sent)) {
        n->stats.dropped_unsealed++;
        return false;
    }
    n->rx_sent_ms = sent;
    wall = node_wall_ms(n);
    if (sent > wall + WIRE_MAX_AHEAD_MS || sent + WIRE_MAX_AHEAD_MS < wall) {
        n->stats.dropped_clock++;
        if (!n->clock_logged || node_now(n) - n->clock_logged >= 10000) {
            n->clock_logged = node_now(n);
            char a[22];
            node_log(n, "dropped a message from %s sent %+lld ms from our clock "
                     "(more than the %d ms clocks may differ)",
                     node_addr_str(from->sin_addr.s_addr, ntohs(from->sin_port), a),
                     (long long)(sent - wall), WIRE_MAX_AHEAD_MS);
        }
        return false;
    }
    return true;
}

void node_receive(node *n, const struct sockaddr_in *from, const uint8_t *buf, size_t len) {
    bool began = node_clock_begin(n);
    check_stall(n, node_now(n)); /* a loop blocked in poll reads before it ticks */
    wire_frame f;
    wire_reset(n->arena);
    int rc = wire_unpack_msg(n->arena, buf, len, &f);
    n->rx_sent_ms = 0;
    if (rc != 0 || f.kind == WIRE_KIND_CLIENT || peer_allowed(n, from, buf, len))
        on_frame(n, rc, &f, from, false);
    node_clock_end(n, began);
}

/* ---- life cycle ------------------------------------------------------- */

static void membership_changed(void *ctx) { repl_membership_changed(ctx); }

node *node_new(const node_config *cfg, const node_env *env, const struct sockaddr_in *self,
               store *st, int32_t pid) {
    node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->cfg = *cfg;
    n->env = *env;
    n->self = *self;
    n->pid = pid;
    n->store = st;
    n->lead = INT64_MIN;
    n->incarnation = n->started_ms = node_wall_ms(n);
    /* above the last life's, but not beyond what the others believe */
    if (cfg->last_incarnation >= n->incarnation) {
        uint64_t cap = n->incarnation + WIRE_MAX_AHEAD_MS / 2;
        n->incarnation = cfg->last_incarnation < cap ? cfg->last_incarnation + 1 : cap;
    }
    /* a pending entry outlives its operation (OP_MAX_WAITS request timeouts,
     * repl.c): expired before it, a retry ran the operation again */
    uint64_t op_ms = (uint64_t)REPL_MAX_WAITS * cfg->request_timeout_ms + 1000;
    n->cache = cache_new(cfg->cache_ms > op_ms ? cfg->cache_ms : op_ms, cfg->cache_bytes);
    n->arena = wire_arena_new();
    n->members = members_new(n, membership_changed, n);
    n->repl = repl_new(n);
    n->outbox = outbox_new(n);
    if (!n->cache || !n->arena || !n->members || !n->repl || !n->outbox) {
        node_free(n);
        return NULL;
    }
    n->cache_at = node_now(n) + CACHE_EXPIRE_MS;
    n->gc_floor = cfg->last_gc_floor;
    hold_back_last_life(n, cfg);
    if (n->env.incarnation) n->env.incarnation(n->env.ctx, n->incarnation);
    return n;
}

void node_free(node *n) {
    if (!n) return;
    for (size_t i = 0; i < n->fwd_seen_n; i++) free(n->fwd_seen[i]);
    free(n->fwd_seen);
    free(n->fwd_sent);
    outbox_free(n->outbox);
    repl_free(n->repl);
    members_free(n->members);
    wire_arena_free(n->arena);
    cache_free(n->cache);
    free(n);
}

int node_add_seeds(node *n, const ring_node *seeds, size_t k) {
    return members_add_seeds(n->members, seeds, k); /* it skips ourselves */
}

int node_wipe(node *n) {
    int rc = store_wipe(n->store);
    repl_store_wiped(n);
    return rc;
}

void node_flush(node *n) {
    bool began = node_clock_begin(n);
    outbox_flush(n->outbox, node_now(n));
    node_clock_end(n, began);
}

/* Logs once when the store starts refusing writes for room, and once when
 * it has taken them for FULL_QUIET_MS with no refusal (a store at the edge,
 * refusing one write and taking the next, is one episode, not a line per
 * write). Logged even with --quiet: writes are being refused. */
static void check_full(node *n, uint64_t now) {
    int full = store_full(n->store);
    uint64_t refused = store_refused(n->store);
    if (full) {
        n->room_since = 0;
        if (!n->store_full)
            node_log(n, "store full (%s): writes that need room answer OUT_OF_SPACE until "
                     "there is room again; reads and removes go on", store_full_name(full));
        n->store_full = full;
        return;
    }
    if (n->store_full) {
        if (!n->room_since) n->room_since = now;
        if (now - n->room_since < FULL_QUIET_MS) return;
        node_log(n, "store has room again: %llu writes were refused while it was full",
                 (unsigned long long)(refused - n->refused_at));
        n->store_full = 0;
    }
    n->refused_at = refused;
}

uint64_t node_tick(node *n) {
    bool began = node_clock_begin(n);
    uint64_t now = node_now(n);
    check_stall(n, now);
    check_full(n, now);
    n->last_tick = now;
    if (n->tick_due && now >= n->tick_due) { /* how late the loop came */
        uint64_t lag = now - n->tick_due;
        if (lag > 10000 || n->woke_at == now) lag = 0; /* a stall is no load */
        n->lag_ewma16 = n->lag_ewma16 - (n->lag_ewma16 >> 4) + (uint32_t)lag;
    }
    uint64_t next = UINT64_MAX, t;
    if (node_due(&n->cache_at, now, CACHE_EXPIRE_MS, &next)) cache_expire(n->cache, now);
    if ((t = members_tick(n->members, now)) < next) next = t;
    if ((t = repl_tick(n->repl, now)) < next) next = t;
    check_last_life(n, now, &next);
    if ((t = outbox_flush(n->outbox, now)) < next) next = t;
    n->tick_due = next;
    node_clock_end(n, began);
    return next;
}
