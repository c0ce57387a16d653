/* repl: quorum coordination, replica handlers, re-replication, anti-entropy. */
#include "repl.h"

#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "members.h"
#include "outbox.h"
#include "ring.h"

#define MAX_OPS 65536
#define MAX_TARGETS (2 * REPL_MAX_N)  /* replicas plus sloppy-quorum stand-ins */
#define BUCKETS 256                   /* anti-entropy buckets: slot / BUCKET_SLOTS */
#define BUCKET_SLOTS (RING_SLOTS / BUCKETS)
#define BATCH_BYTES 48000             /* records per SYNC datagram, encoded */
#define SYNC_PEERS 3                  /* digest exchanges started per period */
#define PUSH_BUDGET 4096              /* records (about) a digest exchange pushes */
#define SWEEP_DELAY_MS 300            /* settle time after a membership change */
#define SWEEP_MAX_WAIT_MS 1000        /* ... but no longer after the first one not swept */
#define MAX_HINTS 65536               /* hinted-handoff records kept */
#define HINT_RETRY_MS 1000            /* resend an unacknowledged hint */
#define HINT_TRIES 30                 /* then anti-entropy is left to do it */
#define HINT_DEAD_KEEP_MS 30000       /* a hint waits this long for a replica held dead */
#define HINT_BUCKETS 16384            /* hints by (key, replica): chains' heads */
#define NO_HINT UINT32_MAX
#define NO_FIRST UINT8_MAX
#define CLEAN_BATCH 256               /* spare copies checked per sync period */
#define CLEAN_QUIET_PERIODS 15        /* sync periods without membership change first */
#define MAX_RESTAMPS 4                /* times a write may be stamped again */
#define OP_MAX_WAITS REPL_MAX_WAITS
#define ACK_PEERS 16                  /* coordinators acked together at once (PEER_WRITE_ACKS) */
#define ACKS_MAX 1024                 /* IDs in one PEER_WRITE_ACKS */

enum { T_WAIT = 0, T_OK, T_NOKEY, T_FAIL, T_STALE };

typedef struct op {
    struct op *prev, *next;           /* active list, oldest first */
    uint32_t gen;
    bool used, answered, standins;
    bool counted;                     /* in repl.unanswered (op_settled) */
    uint32_t cmd;
    repl_origin origin;
    uint8_t key[WIRE_MAX_KEY];
    size_t klen;
    unsigned slot;                    /* ring_key_slot(key) */
    uint64_t deadline;
    size_t nt;                        /* targets */
    uint64_t sent_at[MAX_TARGETS];    /* last send to each target (ms) */
    uint8_t sends[MAX_TARGETS];       /* sends to each target in this generation */
    uint32_t t[MAX_TARGETS];
    uint32_t hint[MAX_TARGETS];       /* stand-ins: the replica they stand in for */
    uint8_t st[MAX_TARGETS];
    uint16_t held;                    /* read: targets not asked yet (bit i: t[i]) */
    uint16_t lazy;                    /* write: targets the quorum does not wait for,
                                       * sent to lazily the first time (bit i: t[i]) */
    uint8_t first;                    /* W + R <= N (not a READONLY read): the slot's first
                                       * replica not dead (index in t) when not this node,
                                       * whose answer the answer waits for; else NO_FIRST */
    bool first_suspected;             /* ... and it was suspected when the op began */
    uint64_t tstamp[MAX_TARGETS];     /* read: stamp each one answered with */
    unsigned need, oks, replies, fails, nospace;
    /* REMOVE: the newest record its home replicas said they held before it
     * (its stamp, 0: none heard of), whether a value, and whether a replica
     * of an earlier version said "there was a value" without a stamp */
    uint64_t prior;
    bool prior_value, prior_unstamped;
    uint64_t stamps[MAX_RESTAMPS + 1]; /* write: every stamp it was sent with */
    /* writes: the record sent; reads: the newest record seen */
    uint8_t *val;
    size_t vlen;
    int32_t version;
    uint64_t stamp;
    bool tomb, found;
    bool unsure;                      /* read: a "not found" that needs every replica's
                                       * (a replica not settled: settled()) */
    uint64_t stale;                   /* write: newest stamp a target refused it for */
    unsigned restamps;
    uint64_t clean_stamp;             /* a spare copy's check: its stamp */
} op;

/* A write held for a replica that could not take it (hinted handoff): the
 * key, kept here, is sent to the replica once it is alive again. */
typedef struct hint {
    bool used;
    uint8_t klen;
    uint8_t key[WIRE_MAX_KEY];
    uint32_t ip;
    uint16_t port;
    uint16_t tries;
    uint32_t seq;                     /* matches the acknowledgement */
    uint32_t chain;                   /* the next hint of its bucket, + 1 (0: none) */
    uint64_t next_ms;
    uint64_t born_ms;
} hint;

/* What a coordinator knows of a member's answers to its replica requests:
 * the smoothed round trip (ms x 8) and its mean deviation (ms x 4), as TCP
 * keeps them (Jacobson/Karels), when the last answer came, and the latest
 * send time among the requests answered. A member answers its requests in
 * the order they were sent (one socket, read in order), so while it
 * answers requests sent before one of ours, ours waits in its queue. */
typedef struct peer_rt {
    uint32_t srtt8, rttvar4;
    uint64_t heard_ms;
    uint64_t answered_sent_ms;
} peer_rt;

struct repl {
    node *n;
    /* resends of the current second, for a log line when they burst */
    uint64_t burst_at;                /* when the second began */
    uint32_t burst_n;
    uint32_t burst_peer, burst_votes; /* the member most resent to (majority vote) */
    uint64_t burst_wait_ms;           /* the longest wait before one of them */
    op *ops;
    uint32_t *free_ops;               /* stack of free indexes */
    size_t nfree;
    op *head, *tail;
    uint64_t salt;                    /* tells our op IDs from a past life's */
    uint64_t tick_at;                 /* next check of operations' timers */
    uint64_t sweep_at;                /* 0, or when re-replication is due */
    uint64_t unswept_ms;              /* the first change since the last sweep */
    uint64_t sync_at, handoff_at;     /* next anti-entropy and hint rounds */
    size_t inflight;                  /* operations allocated */
    size_t unanswered;                /* ... of them not answered yet (admission) */
    peer_rt *prt;                     /* by member slot, nprt of them */
    size_t nprt;
    uint32_t lat_ewma16;              /* client ops' latency, ms x 16 */
    digest *dg;                       /* settled records' digests by slot */
    uint64_t slot_digests[RING_SLOTS];/* digests_for's, at the horizon compared */
    unsigned push_from;               /* slot the next digest exchange's push starts at */
    hint *hints;                      /* slots; hints_hwm bounds the used ones */
    size_t hints_cap, hints_hwm, nhints;
    uint32_t hint_seq;
    uint32_t *hint_heads;             /* [HINT_BUCKETS]: first hint of each, + 1 (0: none) */
    /* spare copies: records held here for keys this node is not a replica of */
    uint64_t changed_ms;              /* last change of the live set */
    uint64_t wiped_ms;                /* last wipe of the store (0: none) */
    size_t nspare;
    struct spare {
        uint8_t key[WIRE_MAX_KEY];
        uint8_t klen;
        uint64_t stamp;
    } spare[CLEAN_BATCH];
    /* acks of lazy writes stored here, by coordinator, leaving together */
    struct ackq {
        struct sockaddr_in to;
        size_t n;                     /* 0: the queue is free */
        uint64_t due;                 /* when they leave (the first + lazy_ack_ms) */
        uint64_t ids[ACKS_MAX];
    } acks[ACK_PEERS];
    /* the live set of the last sweep: who was a replica of what then */
    ring *swept;                      /* its ring; NULL before the first sweep */
    uint32_t *swept_map;              /* swept ring index -> member index */
    uint64_t *swept_inc;              /* member index -> incarnation then, 0: not live */
    size_t swept_len;                 /* members then */
    size_t swept_unknown;             /* swept_inc entries of 1 (swept_learn) */
};

/* ---- helpers ---------------------------------------------------------- */

/* An op's ID: its slot and generation, masked by this life's salt, then the
 * salt. The mask matters to batched acks (on_acks), which carry the first
 * half only: unmasked, a batch meant for a past life named ops of this one
 * by the same slot and generation, and counted as their acks. */
static void op_id(const repl *r, const op *o, uint8_t id[WIRE_ID_LEN]) {
    uint64_t v = (((uint64_t)o->gen << 32) | (uint64_t)(o - r->ops)) ^ r->salt;
    memcpy(id, &v, 8);
    memcpy(id + 8, &r->salt, 8);
}

static op *op_from_id(repl *r, const uint8_t *id, size_t idlen) {
    if (idlen != WIRE_ID_LEN || memcmp(id + 8, &r->salt, 8) != 0) return NULL;
    uint64_t v;
    memcpy(&v, id, 8);
    v ^= r->salt;
    uint32_t idx = (uint32_t)v, gen = (uint32_t)(v >> 32);
    if (idx >= MAX_OPS) return NULL;
    op *o = &r->ops[idx];
    return o->used && o->gen == gen ? o : NULL;
}

static op *op_alloc(repl *r) {
    if (!r->nfree) return NULL;
    op *o = &r->ops[r->free_ops[--r->nfree]];
    uint32_t gen = o->gen + 1;
    memset(o, 0, sizeof *o);
    o->gen = gen;
    o->used = true;
    o->prev = r->tail;
    if (r->tail) r->tail->next = o; else r->head = o;
    r->tail = o;
    r->inflight++;
    r->unanswered++;
    o->counted = true;
    return o;
}

/* The op no longer counts as waiting to be answered (admission). */
static void op_settled(repl *r, op *o) {
    if (!o->counted) return;
    o->counted = false;
    r->unanswered--;
}

static void op_free(repl *r, op *o) {
    if (o->prev) o->prev->next = o->next; else r->head = o->next;
    if (o->next) o->next->prev = o->prev; else r->tail = o->prev;
    free(o->val);
    o->val = NULL;
    o->used = false;
    r->free_ops[r->nfree++] = (uint32_t)(o - r->ops);
    r->inflight--;
    op_settled(r, o);
}

static bool self_index(uint32_t i) { return i == 0; }

static void record_fill(Record *rec, const uint8_t *key, size_t klen,
                        const store_rec *s) {
    record__init(rec);
    rec->key.data = (uint8_t *)key;
    rec->key.len = klen;
    rec->value.data = (uint8_t *)s->val;
    rec->value.len = s->vlen;
    rec->version = s->version;
    rec->stamp = s->stamp;
    rec->tombstone = s->tomb;
}

/* Sends one record to member m in a Peer message of `type` (WRITE or
 * SYNC); a WRITE may name the replica its receiver stands in for. */
static void send_record(node *n, uint32_t m, const uint8_t id[WIRE_ID_LEN], uint32_t type,
                        const uint8_t *key, size_t klen, const store_rec *s, uint32_t hint_for,
                        bool lazy) {
    Record rec;
    record_fill(&rec, key, klen, s);
    Record *recs[1] = {&rec};
    Peer p = PEER__INIT;
    p.type = type;
    p.n_records = 1;
    p.records = recs;
    p.flags = (type == PEER_WRITE && s->tomb ? PEER_FLAG_REMOVE : 0) | (lazy ? PEER_FLAG_LAZY : 0);
    if (hint_for != NO_HINT) {
        const member *h = members_at(n->members, hint_for);
        p.hint_ip = h->ip;
        p.hint_port = h->port;
    }
    const struct sockaddr_in *to = &members_at(n->members, m)->addr;
    if (lazy) node_send_peer_lazy(n, to, id, WIRE_ID_LEN, &p);
    else node_send_peer(n, to, id, WIRE_ID_LEN, &p);
}

/* Validates a record received from a peer. */
static bool record_ok(const Record *rec) {
    return rec && rec->key.len >= 1 && rec->key.len <= WIRE_MAX_KEY &&
           rec->value.len <= WIRE_MAX_VALUE && !(rec->tombstone && rec->value.len) &&
           rec->stamp != 0;
}

/* Whether a stamp's clock is not too far ahead of ours to be believed. */
static bool stamp_believable(node *n, uint64_t stamp) {
    return (stamp >> 16) <= node_wall_ms(n) + WIRE_MAX_AHEAD_MS;
}

/* Applies a client write to the local store. *prior is the stamp of the
 * record that was there before (0: none). Returns a wire_err, or WIRE_ESTALE
 * with *held set when the store holds a newer stamp for the key: a write is
 * acknowledged only where it was applied (or was already, an equal stamp: a
 * resend). */
static uint32_t apply(node *n, const uint8_t *key, size_t klen, const store_rec *rec,
                      uint64_t *prior, uint64_t *held, bool *not_mine) {
    *not_mine = false;
    if (!stamp_believable(n, rec->stamp)) return WIRE_EINTERNAL;
    node_stamp_seen(n, rec->stamp);
    store_rec cur;
    bool found = store_get(n->store, key, klen, &cur) == 0, had = found && !cur.tomb;
    *prior = found ? cur.stamp : 0;
    *not_mine = found && cur.tomb && rec->tomb && cur.version != rec->version;
    if (found && store_rec_cmp(&cur, rec) > 0) {
        *held = cur.stamp;
        return WIRE_ESTALE;
    }
    /* a tombstone is kept even where the key was missing, so an older copy
     * pushed here later cannot bring the key back */
    int rc = store_put(n->store, key, klen, rec);
    if (rc != 0 && rc != STORE_ESTALE)
        return rc == STORE_ENOSPACE ? WIRE_ENOSPACE : WIRE_EINTERNAL;
    return rec->tomb && !had ? WIRE_ENOKEY : WIRE_OK;
}

/* The record this node holds for key, as reads and pushes see it: one held
 * back (node_stale) is not there. */
static int get_held(node *n, const uint8_t *key, size_t klen, store_rec *rec) {
    int rc = store_get(n->store, key, klen, rec);
    return rc == 0 && node_stale(n, rec->stamp) ? STORE_ENOTFOUND : rc;
}

/* Stores a record pushed here: store_put's answer (STORE_ESTALE: ours is
 * as new or newer), or STORE_EINVAL for one not taken. */
static int apply_record(node *n, const Record *rec) {
    if (!record_ok(rec) || !stamp_believable(n, rec->stamp)) return STORE_EINVAL;
    store_rec s = {rec->value.data, (uint32_t)rec->value.len, rec->version,
                   rec->stamp, rec->tombstone};
    node_stamp_seen(n, rec->stamp);
    return store_put(n->store, rec->key.data, rec->key.len, &s);
}

/* The stamp below which tombstones have lived their lifetime (0: none). */
static uint64_t tomb_floor(const node *n) {
    uint64_t wall = node_wall_ms(n);
    return wall > n->cfg.tombstone_ms ? (wall - n->cfg.tombstone_ms) << 16 : 0;
}

/* Whether a record is older than a tombstone's lifetime: a replica that
 * holds nothing for its key may have collected the tombstone that ended
 * it, so it is never pushed where it is missing. */
static bool outlived(const node *n, uint64_t stamp) { return stamp < tomb_floor(n); }

/* ---- hinted handoff ---------------------------------------------------- */

#define HINT_SALT 0x48494e5448494e54ull /* tells hint IDs from operation IDs */

static void hint_id(const repl *r, const hint *h, uint8_t id[WIRE_ID_LEN]) {
    uint64_t v = ((uint64_t)h->seq << 32) | (uint64_t)(h - r->hints), salt = r->salt ^ HINT_SALT;
    memcpy(id, &v, 8);
    memcpy(id + 8, &salt, 8);
}

static hint *hint_from_id(repl *r, const uint8_t *id, size_t idlen) {
    uint64_t v, salt = r->salt ^ HINT_SALT;
    if (idlen != WIRE_ID_LEN || memcmp(id + 8, &salt, 8) != 0) return NULL;
    memcpy(&v, id, 8);
    uint32_t i = (uint32_t)v;
    if (i >= r->hints_hwm) return NULL;
    hint *h = &r->hints[i];
    return h->used && h->seq == (uint32_t)(v >> 32) ? h : NULL;
}

/* The bucket of the hint of key for ip:port (FNV-1a). */
static uint32_t hint_bucket(const uint8_t *key, size_t klen, uint32_t ip, uint16_t port) {
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < klen; i++) x = (x ^ key[i]) * 16777619u;
    x = (x ^ ip) * 16777619u;
    x = (x ^ port) * 16777619u;
    return x & (HINT_BUCKETS - 1);
}

static void hint_free(repl *r, hint *h) {
    uint32_t *at = &r->hint_heads[hint_bucket(h->key, h->klen, h->ip, h->port)];
    while (*at && &r->hints[*at - 1] != h) at = &r->hints[*at - 1].chain;
    if (*at) *at = h->chain;
    h->used = false;
    r->nhints--;
    while (r->hints_hwm && !r->hints[r->hints_hwm - 1].used) r->hints_hwm--;
}

/* Keeps key for the replica at ip:port, which missed its write. One hint a
 * key and replica (it hands over the record held then, whichever write
 * made it): one a write, a key written over and over while its replica
 * could not take it filled MAX_HINTS with copies of one hint, every other
 * key's refused, each copy handed off on its own. A write over a hint
 * makes it new (a new seq: the ack of an older record on its way does not
 * take it; tries and the wait for a dead replica start again). */
static void hint_add(node *n, const uint8_t *key, size_t klen, uint32_t ip, uint16_t port) {
    repl *r = n->repl;
    if (ip == n->self.sin_addr.s_addr && port == ntohs(n->self.sin_port)) return;
    if (!r->hint_heads && !(r->hint_heads = calloc(HINT_BUCKETS, sizeof *r->hint_heads))) return;
    uint32_t b = hint_bucket(key, klen, ip, port);
    for (uint32_t c = r->hint_heads[b]; c; c = r->hints[c - 1].chain) {
        hint *h = &r->hints[c - 1];
        if (h->ip == ip && h->port == port && h->klen == klen && memcmp(h->key, key, klen) == 0) {
            h->seq = ++r->hint_seq;
            h->tries = 0;
            h->next_ms = h->born_ms = node_now(n);
            return;
        }
    }
    if (r->nhints >= MAX_HINTS) return; /* anti-entropy will repair that replica */
    size_t i = r->hints_hwm;
    if (r->nhints < r->hints_hwm) /* a free slot below the mark */
        for (i = 0; r->hints[i].used; i++) {}
    if (i == r->hints_cap) {
        size_t cap = r->hints_cap ? 2 * r->hints_cap : 256;
        hint *nh = realloc(r->hints, cap * sizeof *nh);
        if (!nh) return;
        memset(nh + r->hints_cap, 0, (cap - r->hints_cap) * sizeof *nh);
        r->hints = nh;
        r->hints_cap = cap;
    }
    hint *h = &r->hints[i];
    memset(h, 0, sizeof *h);
    h->used = true;
    memcpy(h->key, key, klen);
    h->klen = (uint8_t)klen;
    h->ip = ip;
    h->port = port;
    h->seq = ++r->hint_seq;
    h->next_ms = h->born_ms = node_now(n);
    h->chain = r->hint_heads[b];
    r->hint_heads[b] = (uint32_t)i + 1;
    r->nhints++;
    if (i >= r->hints_hwm) r->hints_hwm = i + 1;
}

/* Sends each hinted record to its replica once the replica is alive; a
 * hint goes when acknowledged (or refused: the replica holds newer), when
 * its replica has been dead HINT_DEAD_KEEP_MS after the hint came (the
 * re-replication sweep covers the keys then) or is forgotten, after
 * HINT_TRIES sends, or once the record is older than a tombstone's
 * lifetime: the replica may have collected the tombstone that ended it,
 * and would take it as new. (A hint dropped at once for a replica held
 * dead missed it when it was back a moment later, as a partition heals: a
 * REMOVE acknowledged by two stand-ins 0.1 s after a heal, then the
 * replicas' quorum read 2 s later gave the removed value: dht-sim 6481.)
 *
 * A round sends a member REPL_HANDOFF_BYTES of keys and values at most (one
 * record, whatever its size, at least); the rest wait for the next rounds.
 * Up to MAX_HINTS records of up to WIRE_MAX_VALUE bytes may be waiting for
 * a replica that comes back (640 MB), or for one that was only slow: sent
 * at once, they would overflow its socket buffer, be lost and go again,
 * and crowd out the copies of live writes; this way they reach it at 1 MiB
 * a second from each node holding some, as Cassandra throttles its hinted
 * handoff (1 MiB/s by default). */
static void handoff_round(node *n, uint64_t now) {
    repl *r = n->repl;
    if (!r->nhints) return;
    size_t *sent = calloc(members_total(n->members), sizeof *sent); /* bytes this round */
    if (!sent) return;
    for (size_t i = 0; i < r->hints_hwm; i++) {
        hint *h = &r->hints[i];
        if (!h->used || h->next_ms > now) continue;
        long m = members_find(n->members, h->ip, h->port);
        store_rec cur;
        int state = m > 0 ? members_at(n->members, (size_t)m)->state : MEMBER_GONE;
        if (state >= MEMBER_GONE || (state == MEMBER_DEAD && now - h->born_ms >= HINT_DEAD_KEEP_MS) ||
            h->tries >= HINT_TRIES || store_get(n->store, h->key, h->klen, &cur) != 0 ||
            outlived(n, cur.stamp)) {
            hint_free(r, h);
            continue;
        }
        if (state != MEMBER_ALIVE) continue;
        size_t bytes = h->klen + (size_t)cur.vlen;
        if (sent[m] && sent[m] + bytes > REPL_HANDOFF_BYTES) continue; /* the next round's */
        sent[m] += bytes;
        uint8_t id[WIRE_ID_LEN];
        hint_id(r, h, id);
        send_record(n, (uint32_t)m, id, PEER_WRITE, h->key, h->klen, &cur, NO_HINT, false);
        n->stats.handed_off++;
        h->tries++;
        h->next_ms = now + HINT_RETRY_MS;
    }
    free(sent);
}

static bool hint_acked(node *n, const uint8_t *id, size_t idlen, const Peer *p) {
    repl *r = n->repl;
    hint *h = hint_from_id(r, id, idlen);
    if (!h) return false;
    if (p->type == PEER_WRITE_ACK &&
        (p->err == WIRE_OK || p->err == WIRE_ENOKEY || p->err == WIRE_ESTALE))
        hint_free(r, h);
    return true;
}

/* ---- coordinator -------------------------------------------------------- */

static void answer(node *n, op *o, uint32_t err) {
    if (o->answered) return;
    /* A write is acknowledged only while this node sees a majority
     * (--majority-ms), at its answer as at its start (repl_client_op): one
     * admitted just before its node found itself cut off made its quorum
     * after the heal on replicas of that node's ring, which the others' did
     * not use, and lost to the client's earlier write (dht-sim 7220). */
    if (o->cmd != WIRE_GET && (err == WIRE_OK || err == WIRE_ENOKEY) &&
        !members_majority(n->members)) {
        n->stats.refused_minority++;
        err = WIRE_EINTERNAL;
    }
    o->answered = true;
    op_settled(n->repl, o);
    repl_result res = {err, NULL, 0, 0};
    if (err == WIRE_OK && o->cmd == WIRE_GET) {
        res.val = o->val;
        res.vlen = o->vlen;
        res.version = o->version;
    }
    uint64_t ms = node_now(n) - o->origin.start_ms, us = node_now_us(n) - o->origin.start_us;
    repl *r = n->repl;
    if (ms > 60000) ms = 60000;
    r->lat_ewma16 = r->lat_ewma16 - (r->lat_ewma16 >> 4) + (uint32_t)ms;
    n->stats.lat_sum_us += us;
    node_hist_add(n->stats.lat_us, us);
    o->origin.done(n, &o->origin, &res);
}

static void send_write(node *n, op *o, size_t i) {
    uint8_t id[WIRE_ID_LEN];
    op_id(n->repl, o, id);
    store_rec s = {o->val, (uint32_t)o->vlen, o->version, o->stamp, o->tomb};
    send_record(n, o->t[i], id, PEER_WRITE, o->key, o->klen, &s, o->hint[i],
                o->sends[i] == 1 && (o->lazy >> i & 1));
}

static void send_read(node *n, op *o, size_t i) {
    uint8_t id[WIRE_ID_LEN];
    op_id(n->repl, o, id);
    Peer p = PEER__INIT;
    p.type = PEER_READ;
    p.key.data = o->key;
    p.key.len = o->klen;
    const member *m = members_at(n->members, o->t[i]);
    node_send_peer(n, &m->addr, id, sizeof id, &p);
}

/* Counts a resend to member m after waiting waited ms. A second with many
 * (a replica that stopped answering in time, or lost datagrams) is logged
 * at the first resend after it, with the member resent to most. */
#define BURST_LOG 100 /* resends in a second worth a line */
static void count_resend(node *n, uint32_t m, uint64_t now, uint64_t waited) {
    repl *r = n->repl;
    if (now - r->burst_at >= 1000) {
        if (r->burst_n >= BURST_LOG && r->burst_peer < members_total(n->members)) {
            const member *pm = members_at(n->members, r->burst_peer);
            char addr[24];
            node_addr_str(pm->addr.sin_addr.s_addr, ntohs(pm->addr.sin_port), addr);
            node_log(n, "%u replica requests resent in a second, most to %s (round trip %llu ms "
                        "smoothed), after waits of up to %llu ms",
                     r->burst_n, addr, (unsigned long long)repl_rtt_ms(r, r->burst_peer),
                     (unsigned long long)r->burst_wait_ms);
        }
        r->burst_at = now;
        r->burst_n = r->burst_votes = 0;
        r->burst_wait_ms = 0;
    }
    r->burst_n++;
    if (r->burst_votes == 0) r->burst_peer = m;
    if (m == r->burst_peer) r->burst_votes++;
    else r->burst_votes--;
    if (waited > r->burst_wait_ms) r->burst_wait_ms = waited;
}

static void send_to(node *n, op *o, size_t i) {
    uint64_t now = node_now(n);
    if (o->sends[i] > 0) {
        n->stats.resent++;
        count_resend(n, o->t[i], now, now - o->sent_at[i]);
    }
    o->sent_at[i] = now;
    if (o->sends[i] < UINT8_MAX) o->sends[i]++;
    if (o->cmd == WIRE_GET) send_read(n, o, i);
    else send_write(n, o, i);
}

/* ---- round trips ------------------------------------------------------ */

/* Member m's round-trip record, the array grown to hold it (NULL: no
 * memory). */
static peer_rt *peer_at(repl *r, uint32_t m) {
    if (m >= r->nprt) {
        size_t cap = r->nprt ? r->nprt : 64;
        while (cap <= m) cap *= 2;
        peer_rt *a = realloc(r->prt, cap * sizeof *a);
        if (!a) return NULL;
        memset(a + r->nprt, 0, (cap - r->nprt) * sizeof *a);
        r->prt = a;
        r->nprt = cap;
    }
    return &r->prt[m];
}

/* Takes a round-trip sample to member m (Karn: only of requests sent once). */
static void rtt_sample(repl *r, uint32_t m, uint64_t sample_ms) {
    peer_rt *p = peer_at(r, m);
    if (!p) return;
    uint32_t x = sample_ms > 60000 ? 60000 : (uint32_t)sample_ms;
    if (!p->srtt8) { /* first sample (a 0 ms one counts as 1/8 ms) */
        p->srtt8 = x ? 8 * x : 1;
        p->rttvar4 = 2 * x;
        return;
    }
    int32_t err = (int32_t)x - (int32_t)(p->srtt8 >> 3);
    p->srtt8 = (uint32_t)((int32_t)p->srtt8 + err) ? (uint32_t)((int32_t)p->srtt8 + err) : 1;
    if (err < 0) err = -err;
    p->rttvar4 = (uint32_t)((int32_t)p->rttvar4 + err - (int32_t)(p->rttvar4 >> 2));
}

/* Target i of o answered. */
static void heard_from(node *n, const op *o, size_t i) {
    peer_rt *p = peer_at(n->repl, o->t[i]);
    if (!p) return;
    p->heard_ms = node_now(n);
    if (o->sent_at[i] > p->answered_sent_ms) p->answered_sent_ms = o->sent_at[i];
}

/* How long after the sends-th send to member m a target is resent to: its
 * smoothed round trip plus four deviations (TCP's RTO), never less than a
 * quarter request timeout (loopback round trips are far below what a busy
 * node takes to get to a datagram), at most a request timeout, doubled on
 * each resend. A slow peer is resent to less often, not more. */
static uint64_t rto_ms(const node *n, uint32_t m, unsigned sends) {
    const repl *r = n->repl;
    uint64_t tmo = n->cfg.request_timeout_ms, lo = tmo / 4 ? tmo / 4 : 1, rto = lo;
    if (m < r->nprt && r->prt[m].srtt8) rto = (r->prt[m].srtt8 >> 3) + r->prt[m].rttvar4;
    if (rto < lo) rto = lo;
    if (rto > tmo) rto = tmo;
    return rto << (sends > 1 ? (sends - 1 < 4 ? sends - 1 : 4) : 0);
}

uint64_t repl_rtt_ms(const repl *r, uint32_t m) {
    return m < r->nprt ? r->prt[m].srtt8 >> 3 : 0;
}

/* Whether target i of o, silent past its resend time, is worth a resend:
 * its request may be lost (the member has answered one sent after it) or
 * the member may be down or stalled (it has answered nothing for a resend
 * time). A member that keeps answering requests sent before ours is only
 * behind, ours waits in its queue: a resend would join the queue too, and
 * under load make it longer (seen: 6 nodes, W=2, SET -P 16 over stores of a
 * million keys a node, replicas answering requests sent 150-185 ms before
 * while resends to them, each with a stand-in write, went on). */
static bool resend_due(node *n, const op *o, size_t i, uint64_t now) {
    uint32_t m = o->t[i];
    uint64_t rto = rto_ms(n, m, o->sends[i]);
    if (now < o->sent_at[i] + rto) return false;
    const repl *r = n->repl;
    if (m >= r->nprt) return true;
    const peer_rt *p = &r->prt[m];
    return p->answered_sent_ms > o->sent_at[i] || now >= p->heard_ms + rto;
}

/* Sends the newest record to replicas that answered with an older one. */
static void read_repair(node *n, op *o) {
    if (!o->found) return;
    store_rec s = {o->val, (uint32_t)o->vlen, o->version, o->stamp, o->tomb};
    uint8_t id[WIRE_ID_LEN] = {0};
    for (size_t i = 0; i < o->nt; i++) {
        if (o->st[i] == T_WAIT || o->st[i] == T_FAIL || o->tstamp[i] >= o->stamp) continue;
        if (self_index(o->t[i])) store_put(n->store, o->key, o->klen, &s);
        else send_record(n, o->t[i], id, PEER_SYNC, o->key, o->klen, &s, NO_HINT, false);
    }
}

static void clean_finish(node *n, op *o);
static void restamp(node *n, op *o);
static void local_target(node *n, op *o, size_t i);
static void on_reply(op *o, size_t i, uint32_t err, const store_rec *rec);
static void prior_heard(op *o, uint32_t err, uint64_t stamp, bool not_mine);
static bool settled(node *n);

/* Targets that are the key's replicas, not stand-ins. */
static size_t home_targets(const op *o) {
    size_t k = 0;
    for (size_t i = 0; i < o->nt; i++) k += o->hint[i] == NO_HINT;
    return k;
}

static void send_to(node *n, op *o, size_t i);

static bool is_held(const op *o, size_t i) { return o->held >> i & 1; }

/* Targets asked so far: all but the held reads. */
static size_t asked(const op *o) { return o->nt - (size_t)__builtin_popcount(o->held); }

/* The replicas an operation does not wait for (bit i: t[i]): all but this
 * node when it is one and the first others alive, in preference order,
 * that its quorum needs beside it (then suspects, when too few are alive).
 *
 * A client read asks R replicas first, not all N; the rest are held back
 * (o->held) and asked only when those cannot settle it: a value found by R
 * replicas is the newest any write quorum left (W + R > N), as when all N
 * are asked and the first R answer. The held ones are asked once every
 * asked replica has answered and the read is not settled ("not found"
 * needs every replica), or once one of them is late (its resend time).
 * Half the messages of a read of N = 3, R = 2 (2 instead of 4 with the
 * coordinator a replica, as a Redis Cluster client makes it), and as many
 * replicas woken.
 *
 * A client write goes to every replica. When the client asked for no
 * consistency (W + R <= N, as W = 1, R = 1: Redis Cluster's own terms, one
 * copy acknowledged), the rest are sent to lazily (o->lazy;
 * node_send_peer_lazy: up to NODE_LAZY_MS later, with the next messages to
 * that peer) and ack lazily too (PEER_FLAG_LAZY: together, up to
 * NODE_LAZY_ACK_MS later): with W = 1 on the slot's
 * first live replica, as a Redis Cluster client makes it, no copy is waited
 * for (elsewhere that replica's: first_remote), and the other
 * replicas are woken about once a millisecond instead of once per write.
 * (Should this node's own copy fail, as when its store is full, the answer
 * waits for a lazy ack, up to NODE_LAZY_ACK_MS.) With W + R > N every
 * replica is sent to at once:
 * a replica that holds a newer stamp (a coordinator's clock behind) must
 * be heard before the quorum answers, so that the write is stamped again
 * (restamp); heard late, as a lazy one is, the write would lose to an
 * older one (simulator, --available, seed 66). */
static uint16_t beyond_quorum(node *n, const op *o) {
    size_t want = o->need;
    for (size_t i = 0; i < o->nt; i++)
        if (self_index(o->t[i]) && want) want--;
    uint16_t ask = 0, rest = 0;
    for (int pass = 0; pass < 2 && want; pass++) /* the alive first, then suspects */
        for (size_t i = 0; i < o->nt && want; i++) {
            if (self_index(o->t[i]) || (ask >> i & 1)) continue;
            int st = members_at(n->members, o->t[i])->state;
            if (pass == 0 ? st == MEMBER_ALIVE : true) ask |= (uint16_t)(1u << i), want--;
        }
    if (o->first != NO_FIRST) ask |= (uint16_t)(1u << o->first); /* always asked: first_remote */
    for (size_t i = 0; i < o->nt; i++)
        if (!self_index(o->t[i]) && !(ask >> i & 1)) rest |= (uint16_t)(1u << i);
    return rest;
}

/* Asks the held replicas of a read. */
static void release_held(node *n, op *o) {
    for (size_t i = 0; i < o->nt; i++)
        if (is_held(o, i)) {
            o->held &= (uint16_t)~(1u << i);
            send_to(n, o, i);
        }
}

/* With W + R <= N a write is acknowledged once the slot's first replica
 * not dead (o->t[0]; the node a Redis Cluster client sends the slot's keys
 * to, but while it is suspected) has it, as Redis Cluster acknowledges a
 * write once the slot's master has it:
 * every write of a key is then applied first at one node, whose store
 * holds the newest of them, and a write stamped below that (its coordinator's
 * clock behind the one that stamped the last) is refused there and stamped
 * again (restamp). Without it, a write through another replica was
 * acknowledged by that replica alone, and a client's later write of the key
 * through a node whose clock was behind lost to its earlier one (simulator,
 * W=1 R=1, seed 23). Reads, but for a READONLY connection's, are answered
 * with that replica's copy too, as a Redis Cluster client reads from the
 * master (seeds 8, 20 read stale values without). A suspected first replica
 * is asked all the same, and waived only once it is still silent past its
 * resend time (ops_round): a suspicion is a view of one node, and skipping it
 * at once made two nodes first for one slot, each taking the slot's writes,
 * when one was suspected by the other alone (after a partition healed: W=1
 * R=1 seed 2000, a client's write through the first lost to its previous
 * one, stamped 3 ms ahead by the other). The index in o->t of that replica
 * when it is not this node, else NO_FIRST. */
static uint8_t first_remote(const op *o) {
    return o->nt == 0 || self_index(o->t[0]) ? NO_FIRST : 0;
}

/* Whether an operation may be answered as far as first_remote goes: a read
 * once the slot's first replica answered, a write once it holds the write
 * (heard is not enough: a first replica that refused it, late, holds a
 * newer write the acknowledged one would lose to: dht-sim W=1 R=1 --nodes 5
 * --clients 16, seed 10). */
static bool first_heard(const op *o) {
    return o->first == NO_FIRST || o->st[o->first] != T_WAIT;
}

static bool first_holds(const op *o) {
    return o->first == NO_FIRST || o->st[o->first] == T_OK || o->st[o->first] == T_NOKEY;
}

static bool first_failed(const op *o) {
    return o->first != NO_FIRST && o->st[o->first] == T_FAIL;
}

static bool quorum_possible(node *n, const op *o, bool suspects);

/* Whether a REMOVE found a value: the newest record its home replicas held
 * before it was one. Not any replica's value: one that missed an earlier
 * REMOVE (its copy lost) still holds the value that REMOVE took, and a
 * REMOVE of the key was answered OK again, the DEL of an absent key 1
 * (dht-sim seed 12, W=2 R=2, every node up and held alive by all). */
static bool existed(const op *o) {
    return o->prior_unstamped || (o->prior && o->prior_value);
}

/* Answers an operation that waits no longer (its deadline, or nothing left
 * to wait for) with what it has. "Not found" needs R replies: one new,
 * empty replica is no answer. A value found is answered even from fewer (a
 * degraded read while replicas are down): it was written. */
static void answer_last(node *n, op *o) {
    if (o->cmd == WIRE_GET && (o->replies >= o->need || (o->found && !o->tomb)))
        answer(n, o, o->found && !o->tomb ? WIRE_OK : WIRE_ENOKEY);
    else if (o->cmd == WIRE_REMOVE && o->oks >= o->need && first_holds(o))
        answer(n, o, existed(o) ? WIRE_OK : WIRE_ENOKEY);
    else if (!o->clean_stamp && quorum_possible(n, o, true)) {
        /* live replicas too slow to answer: the cluster is busy, not
         * broken; the client retries after a wait */
        n->stats.overload[NODE_OVERLOAD_SLOW]++;
        answer(n, o, WIRE_EOVERLOAD);
    } else
        answer(n, o, WIRE_EINTERNAL);
}

/* Decides what can be decided after a reply; frees the op when done. */
static void progress(node *n, op *o) {
    if (o->stale && !o->answered && o->cmd != WIRE_GET) {
        restamp(n, o);
        return;
    }
    if (!o->answered) {
        /* "not found" from R replicas may come from new replicas that have
         * not been sent the key yet: unless this node and every replica that
         * said so are settled (no change of the live set for a while), it
         * waits for every replica (or the deadline) before it is believed */
        if (o->cmd == WIRE_GET) {
            bool believed = o->found || o->replies == o->nt || (!o->unsure && settled(n));
            if (o->replies >= o->need && believed && first_heard(o))
                answer(n, o, o->found && !o->tomb ? WIRE_OK : WIRE_ENOKEY);
            else if (o->held && o->replies == asked(o))
                release_held(n, o); /* the asked ones could not settle it */
        } else if (o->cmd == WIRE_REMOVE) {
            if (o->oks >= o->need && (existed(o) || o->replies == o->nt) && first_holds(o))
                answer(n, o, existed(o) ? WIRE_OK : WIRE_ENOKEY);
            else if (first_failed(o))
                answer(n, o, o->nospace ? WIRE_ENOSPACE : WIRE_EINTERNAL);
        } else if (o->oks >= o->need && first_holds(o)) {
            answer(n, o, WIRE_OK);
        } else if ((o->fails && home_targets(o) - o->fails < o->need) || first_failed(o)) {
            answer(n, o, o->nospace ? WIRE_ENOSPACE : WIRE_EINTERNAL);
        }
    }
    if (o->replies == asked(o) && (o->answered || !o->held)) {
        /* every replica asked answered and none is left to ask: fewer live
         * than the quorum (2 of 3 dead). Freed unanswered, the client heard
         * nothing, ever (redis-cli waited for good). */
        if (!o->answered) answer_last(n, o);
        if (o->cmd == WIRE_GET) read_repair(n, o);
        if (o->clean_stamp) clean_finish(n, o);
        op_free(n->repl, o);
    }
}

/* A target holds a newer stamp than the write's (the coordinator's clock is
 * behind another's): the write would lose to an older one. It is stamped
 * again above what was seen and sent to every target anew, as a new
 * generation of the operation, so acks of the old stamp no longer count. */
static void restamp(node *n, op *o) {
    uint64_t held = o->stale;
    o->stale = 0;
    node_stamp_seen(n, held);
    uint64_t s = node_stamp(n);
    if (++o->restamps > MAX_RESTAMPS || s <= held) {
        answer(n, o, WIRE_EINTERNAL); /* a clock beyond belief; the op ends at its deadline */
        return;
    }
    o->stamp = s;
    o->stamps[o->restamps] = s;
    o->gen++;
    n->stats.restamped++;
    /* what the replicas held before (o->prior) still holds */
    o->oks = o->replies = o->fails = o->nospace = 0;
    for (size_t i = 0; i < o->nt; i++) o->st[i] = T_WAIT, o->sends[i] = 0;
    for (size_t i = 0; i < o->nt; i++)
        if (!self_index(o->t[i])) send_to(n, o, i);
    for (size_t i = 0; i < o->nt; i++)
        if (self_index(o->t[i])) local_target(n, o, i);
    progress(n, o);
}

/* Records target i's answer to a write. A target that holds a newer stamp
 * refused it: the write would lose to what is there. While the operation is
 * young (within a request timeout: its client is still waiting for this very
 * attempt), that means our clock is behind the one that stamped what is
 * there, and progress() stamps the write again above it, so a write that
 * began after another was acknowledged wins over it. An older operation may
 * be a late one, overtaken by writes its client made since: it must not win
 * over them, so the refusal stands as a failure. */
static void write_reply(node *n, op *o, size_t i, uint32_t err, uint64_t held,
                        bool not_mine) {
    if (err == WIRE_ESTALE && node_now(n) - o->origin.start_ms >= n->cfg.request_timeout_ms)
        err = WIRE_EINTERNAL;
    bool counted = o->st[i] == T_WAIT && o->hint[i] == NO_HINT;
    on_reply(o, i, err, NULL);
    if (err == WIRE_ESTALE && held > o->stale) o->stale = held;
    if (counted && o->tomb && (err == WIRE_OK || err == WIRE_ENOKEY))
        prior_heard(o, err, held, not_mine);
}

/* A home replica's ack of a REMOVE: OK, it held a value, NOT_FOUND, a
 * tombstone or nothing; `stamp` is what it held's (0: nothing, or a
 * replica of an earlier version, which sent none). A tombstone of this
 * very REMOVE (a resend, or an earlier stamp of it: restamp) says nothing
 * of what was there before. Its stamp told it, and another REMOVE of the
 * key through another node in the same millisecond had the same stamp: the
 * second was answered OK after the first was acknowledged (dht-sim --faults
 * crash,skew,partition W=1 R=1 seed 4080). So a REMOVE's tombstone carries
 * its mark (o->version, drawn at random), and a replica says when the
 * tombstone it held bore another (not_mine, PEER_FLAG_NOT_MINE). */
static void prior_heard(op *o, uint32_t err, uint64_t stamp, bool not_mine) {
    if (err == WIRE_OK && !stamp) o->prior_unstamped = true;
    if (!stamp) return;
    if (err == WIRE_ENOKEY && !not_mine)
        for (unsigned k = 0; k <= o->restamps && k <= MAX_RESTAMPS; k++)
            if (o->stamps[k] == stamp) return;
    if (stamp > o->prior) {
        o->prior = stamp;
        o->prior_value = err == WIRE_OK;
    }
}

/* Records target i's reply. */
static void on_reply(op *o, size_t i, uint32_t err, const store_rec *rec) {
    if (o->st[i] != T_WAIT) return;
    o->replies++;
    if (o->cmd == WIRE_GET) {
        o->st[i] = T_OK;
        o->tstamp[i] = rec ? rec->stamp : 0;
        store_rec have = {o->val, (uint32_t)o->vlen, o->version, o->stamp, o->tomb};
        if (rec && (!o->found || store_rec_cmp(rec, &have) > 0)) {
            uint8_t *v = realloc(o->val, rec->vlen ? rec->vlen : 1);
            if (!v) {
                o->st[i] = T_FAIL;
                return;
            }
            if (rec->vlen) memcpy(v, rec->val, rec->vlen);
            o->val = v;
            o->vlen = rec->vlen;
            o->version = rec->version;
            o->stamp = rec->stamp;
            o->tomb = rec->tomb;
            o->found = true;
        }
    } else {
        /* A stand-in's answer does not count toward the quorum: it holds
         * the write for a replica it is not (a hint), and a quorum made
         * with it might not meet the quorum of an earlier write, whose
         * newer stamp it would then never have been told of. */
        bool home = o->hint[i] == NO_HINT;
        if (err == WIRE_OK) {
            o->st[i] = T_OK;
            o->oks += home;
        } else if (err == WIRE_ENOKEY) {
            o->st[i] = T_NOKEY;
            o->oks += home;
        } else if (err == WIRE_ESTALE) {
            o->st[i] = T_STALE; /* progress() stamps the write again */
        } else {
            o->st[i] = T_FAIL;
            o->fails += home;
            o->nospace += home && err == WIRE_ENOSPACE;
        }
    }
}

static void local_target(node *n, op *o, size_t i) {
    if (o->cmd == WIRE_GET) {
        store_rec cur;
        int rc = get_held(n, o->key, o->klen, &cur);
        if (rc != 0 && rc != STORE_ENOTFOUND) o->unsure = true;
        on_reply(o, i, 0, rc == 0 ? &cur : NULL);
    } else {
        store_rec s = {o->val, (uint32_t)o->vlen, o->version, o->stamp, o->tomb};
        uint64_t held = 0, prior = 0;
        bool not_mine;
        uint32_t err = apply(n, o->key, o->klen, &s, &prior, &held, &not_mine);
        write_reply(n, o, i, err, err == WIRE_ESTALE ? held : prior, not_mine);
    }
}

/* Operations' timers are checked 8 times per request timeout. */
static uint64_t tick_interval(const node *n) {
    unsigned tmo = n->cfg.request_timeout_ms;
    return tmo / 8 ? tmo / 8 : 1;
}

/* Allocates an operation on key, aimed at its N replicas, timed from now.
 * NULL when too many are in flight. */
static op *op_start(node *n, uint32_t cmd, const uint8_t *key, size_t klen) {
    op *o = op_alloc(n->repl);
    if (!o) return NULL;
    o->cmd = cmd;
    memcpy(o->key, key, klen);
    o->klen = klen;
    o->slot = ring_key_slot(key, klen);
    o->nt = members_pref(n->members, o->slot, n->cfg.replicas, o->t);
    for (size_t i = 0; i < o->nt; i++) o->hint[i] = NO_HINT;
    o->first = NO_FIRST;
    o->deadline = node_now(n) + n->cfg.request_timeout_ms;
    return o;
}

bool repl_admits(node *n, size_t ops) {
    if (n->repl->unanswered + ops <= n->cfg.max_inflight) return true;
    n->stats.overload[NODE_OVERLOAD_INFLIGHT]++;
    return false;
}

int repl_client_op(node *n, const repl_origin *origin, uint32_t cmd,
                   const uint8_t *key, size_t klen, const uint8_t *val,
                   size_t vlen, int32_t version) {
    /* admission: past max_inflight operations not answered yet, a client
     * is told to come back later; replica traffic of the operations
     * admitted is never refused. Answered operations still waiting for a
     * slow replica's reply (to count it, or to repair it) do not count:
     * under a pipelined load they pile up behind a replica that is a few
     * tens of ms late, and turned clients away while every client had its
     * answer (MAX_OPS bounds them). */
    if (!origin->admitted && !repl_admits(n, 1)) return -1;
    op *o = op_start(n, cmd, key, klen);
    if (!o) {
        n->stats.overload[NODE_OVERLOAD_INFLIGHT]++;
        return -1;
    }
    /* A node cut off with a minority of the cluster takes no writes when
     * asked to (--majority-ms): its view of the ring is not the others', and
     * its clock may be behind theirs, so a write made here could lose to an
     * older one made there. So whatever W and R: a Redis Cluster master cut
     * off with a minority stops taking writes as well, and with W + R <= N
     * the write would otherwise be acknowledged by one node on that side
     * (simulator, W=1 R=1: seeds 67, 122, 475 of 1..600 lost writes so). */
    if (cmd != WIRE_GET && !members_majority(n->members)) {
        n->stats.refused_minority++;
        o->origin = *origin;
        answer(n, o, WIRE_EINTERNAL);
        op_free(n->repl, o);
        return 0;
    }
    o->origin = *origin;
    unsigned q = cmd == WIRE_GET ? n->cfg.read_quorum : n->cfg.write_quorum;
    /* A quorum is W (R) nodes, or the whole cluster when it has fewer members
     * than that: a node that has lost touch with the others (they are dead in
     * its view, so the preference list is short) cannot make a quorum alone. */
    size_t cluster = members_known(n->members);
    o->need = q < cluster ? q : (unsigned)cluster;
    if (cmd != WIRE_GET) {
        o->val = malloc(vlen ? vlen : 1);
        if (!o->val) {
            op_free(n->repl, o);
            return -1;
        }
        if (vlen) memcpy(o->val, val, vlen);
        o->vlen = vlen;
        o->tomb = cmd == WIRE_REMOVE;
        /* a tombstone's version is its REMOVE's mark (prior_heard) */
        o->version = o->tomb ? (int32_t)(node_random(n) & 0x7fffffff) | 1 : version;
        o->stamp = o->stamps[0] = node_stamp(n);
    }
    bool weak = n->cfg.write_quorum + n->cfg.read_quorum <= n->cfg.replicas;
    if (weak && (cmd != WIRE_GET || !origin->any_replica)) {
        o->first = first_remote(o);
        o->first_suspected = o->first != NO_FIRST &&
                             members_at(n->members, o->t[o->first])->state == MEMBER_SUSPECT;
    }
    if (cmd == WIRE_GET) o->held = beyond_quorum(n, o);
    else if (weak) o->lazy = beyond_quorum(n, o);
    for (size_t i = 0; i < o->nt; i++)
        if (!self_index(o->t[i]) && !is_held(o, i)) send_to(n, o, i);
    for (size_t i = 0; i < o->nt && o->used; i++)
        if (self_index(o->t[i])) {
            local_target(n, o, i);
            progress(n, o);
        }
    return 0;
}

/* Adds stand-ins for replicas silent at the first resend, once per write
 * (sloppy quorum): the next live members of the preference list that are
 * not targets yet. Each keeps a hint naming the replica it stands in for
 * (hinted handoff), so a write reaches N nodes even when it has its W acks
 * already. */
static void add_standins(node *n, op *o) {
    o->standins = true;
    uint32_t silent[MAX_TARGETS];
    size_t waiting = 0;
    for (size_t i = 0; i < o->nt; i++)
        if (o->st[i] == T_WAIT && o->hint[i] == NO_HINT) silent[waiting++] = o->t[i];
    if (!waiting || o->cmd == WIRE_GET) return;
    uint32_t more[MAX_TARGETS];
    size_t want = o->nt + waiting > MAX_TARGETS ? MAX_TARGETS : o->nt + waiting;
    size_t k = members_pref(n->members, o->slot, want, more), used = 0;
    for (size_t j = 0; j < k && o->nt < MAX_TARGETS && used < waiting; j++) {
        bool have = false;
        for (size_t i = 0; i < o->nt; i++) have |= o->t[i] == more[j];
        if (have) continue;
        size_t i = o->nt++;
        o->t[i] = more[j];
        o->hint[i] = silent[used++];
        o->st[i] = T_WAIT;
        if (self_index(more[j])) {
            local_target(n, o, i);
            const member *h = members_at(n->members, o->hint[i]);
            if (o->st[i] != T_FAIL) hint_add(n, o->key, o->klen, h->ip, h->port);
        } else {
            send_to(n, o, i);
        }
    }
}

/* How many of the replicas an operation still waits for (not stand-ins)
 * are alive (or, with `suspects`, not dead either). */
static unsigned waited_alive(node *n, const op *o, bool suspects) {
    unsigned k = 0;
    for (size_t i = 0; i < o->nt; i++) {
        int st = members_at(n->members, o->t[i])->state;
        if (o->st[i] == T_WAIT && o->hint[i] == NO_HINT &&
            (st == MEMBER_ALIVE || (suspects && st == MEMBER_SUSPECT)))
            k++;
    }
    return k;
}

/* Whether an operation's quorum can still be made by the replicas it waits
 * for that are alive (or, with `suspects`, not dead either). */
static bool quorum_possible(node *n, const op *o, bool suspects) {
    return (o->cmd == WIRE_GET ? o->replies : o->oks) + waited_alive(n, o, suspects) >= o->need;
}

/* Whether an unanswered client operation past its deadline should wait
 * longer: the targets it still waits for are alive (not suspected), enough
 * of them to make its quorum, and it has not waited OP_MAX_WAITS deadlines
 * yet. A slow replica is not a failed one. (Waiting on suspects too let a
 * write be acknowledged seconds late, after a partition healed, with an
 * older stamp than a replica it could not hear held: seed 19 lost it.) */
static bool may_wait(node *n, const op *o, uint64_t now) {
    if (o->clean_stamp || now - o->origin.start_ms >= OP_MAX_WAITS * n->cfg.request_timeout_ms)
        return false;
    if ((o->cmd == WIRE_GET ? o->replies : o->oks) < o->need) return quorum_possible(n, o, false);
    /* The quorum is made and the op waits for every replica: a REMOVE of a
     * key none of those heard held (to answer OK or NOT_FOUND), or a "not
     * found" not believed yet (progress). It waits for a replica alive, and
     * a read for a suspected one too (it may hold the value: answered
     * without it, the read may miss a write), not for one held dead: a
     * REMOVE waited OP_MAX_WAITS deadlines on a suspect for its answer code. */
    return waited_alive(n, o, o->cmd == WIRE_GET) > 0;
}

/* Answers or ends operations past their deadline; resends to silent
 * targets (adding stand-ins once) past the resend time. */
static void ops_round(node *n, uint64_t now) {
    repl *r = n->repl;
    for (op *o = r->head, *nx; o; o = nx) {
        nx = o->next;
        if (now >= o->deadline && o->held) release_held(n, o); /* (asked at the first resend) */
        if (!o->answered && !first_heard(o) &&
            members_at(n->members, o->t[o->first])->state != MEMBER_ALIVE &&
            (now >= o->deadline ||
             (o->first_suspected &&
              now >= o->sent_at[o->first] + rto_ms(n, o->t[o->first], o->sends[o->first])))) {
            /* the slot's first replica is silent and no longer believed
             * alive: the others will do; at the deadline, or at its resend
             * time when it was suspected already as the op began (alive, it
             * answers within that; a dead one held up every op of its slots
             * for a request timeout, against --max-inflight under load).
             * (Silent and alive, as behind a lossy link, it may hold a newer
             * stamp the write must be stamped above: the write waits, as one
             * of W + R > N does; waiving it then acknowledged a write whose
             * copy a newer one had replaced: seed 85 of W=1 R=1.) */
            o->first = NO_FIRST;
            progress(n, o);
            if (!o->used || o->answered) continue;
        }
        if (now >= o->deadline && !o->answered && may_wait(n, o, now)) {
            o->deadline = now + n->cfg.request_timeout_ms;
        } else if (now >= o->deadline) {
            if (!o->answered) answer_last(n, o);
            if (o->cmd == WIRE_GET) read_repair(n, o);
            op_free(r, o);
            continue;
        }
        /* resend to targets silent past their round-trip timeout (adding
         * stand-ins for silent replicas the first time) */
        bool due = false;
        for (size_t i = 0; i < o->nt && !due; i++)
            due = o->st[i] == T_WAIT && !self_index(o->t[i]) && !is_held(o, i) &&
                  resend_due(n, o, i, now);
        if (due) {
            size_t nt = o->nt;
            if (o->held) release_held(n, o); /* a late replica: ask the others too */
            if (!o->standins) add_standins(n, o);
            for (size_t i = 0; i < nt && o->used; i++)
                if (o->st[i] == T_WAIT && !self_index(o->t[i]) && resend_due(n, o, i, now))
                    send_to(n, o, i);
            if (o->used && o->nt != nt) progress(n, o);
        }
    }
}

/* Moves the first member of t[0..k) that is alive (not suspect) to the
 * front, the others in order; all suspect: t stays as it is. */
static void alive_to_front(node *n, uint32_t *t, size_t k) {
    size_t i = 0;
    while (i < k && members_at(n->members, t[i])->state != MEMBER_ALIVE) i++;
    if (i < k) {
        uint32_t first = t[i];
        memmove(&t[1], &t[0], i * sizeof *t);
        t[0] = first;
    }
}

size_t repl_slot_replicas(node *n, unsigned slot, uint32_t *out) {
    size_t k = members_pref(n->members, slot, n->cfg.replicas, out);
    alive_to_front(n, out, k);
    return k;
}

size_t repl_slot_redis_replicas(node *n, unsigned slot, uint32_t *out) {
    uint32_t rep[REPL_MAX_N];
    size_t k = members_pref(n->members, slot, n->cfg.replicas, rep), j = 0;
    for (size_t i = 0; i < k; i++)
        if (members_resp_port(n->members, rep[i])) out[j++] = rep[i];
    alive_to_front(n, out, j);
    return j;
}

long repl_slot_redirect(node *n, unsigned slot, bool any_replica) {
    uint32_t rep[REPL_MAX_N];
    size_t k = repl_slot_redis_replicas(n, slot, rep);
    for (size_t i = 0; i < k && (i == 0 || any_replica); i++)
        if (self_index(rep[i])) return -1;
    if (k == 0 || !members_slot_settled(n->members, slot) || members_misplaced(n->members))
        return -1;
    return rep[0];
}

int repl_is_replica(node *n, const uint8_t *key, size_t klen, uint32_t *owner) {
    uint32_t rep[REPL_MAX_N];
    size_t k = repl_slot_replicas(n, ring_key_slot(key, klen), rep);
    for (size_t i = 0; i < k; i++)
        if (self_index(rep[i])) return 1;
    /* forward to the first replica not suspected of being down; if all are
     * suspect, serve the request here (the replicas that answer will do) */
    if (k && members_at(n->members, rep[0])->state == MEMBER_ALIVE) {
        *owner = rep[0];
        return 0;
    }
    return 1;
}

size_t repl_hints(const repl *r) { return r->nhints; }

size_t repl_inflight(const repl *r) { return r->inflight; }

uint32_t repl_overload_wait_ms(const repl *r, const node *n) {
    /* about the time the operations in flight take to drain: the recent
     * latency, scaled by how full the node is */
    uint64_t lat = r->lat_ewma16 / 16 + 1, limit = n->cfg.max_inflight ? n->cfg.max_inflight : 1;
    uint64_t w = lat * (r->unanswered + limit) / limit;
    return w < 10 ? 10 : w > 2000 ? 2000 : (uint32_t)w;
}

/* ---- replica side ----------------------------------------------------- */

static long target_of(op *o, node *n, const struct sockaddr_in *from) {
    long m = members_find(n->members, from->sin_addr.s_addr, ntohs(from->sin_port));
    for (size_t i = 0; m >= 0 && i < o->nt; i++)
        if (o->t[i] == (uint32_t)m) return (long)i;
    return -1;
}

/* Sends the acks queued for one coordinator. */
static void send_acks(node *n, struct ackq *q) {
    Peer p = PEER__INIT;
    p.type = PEER_WRITE_ACKS;
    p.digests = q->ids;
    p.n_digests = q->n;
    uint8_t zero[WIRE_ID_LEN] = {0};
    node_send_peer(n, &q->to, zero, sizeof zero, &p);
    q->n = 0;
}

/* How long the acks of lazy WRITEs wait to leave together (node.h). */
static uint64_t lazy_ack_ms(const node *n) {
    uint64_t most = n->cfg.request_timeout_ms / 8;
    return most < 1 ? 1 : most < NODE_LAZY_ACK_MS ? most : NODE_LAZY_ACK_MS;
}

/* Queues the ack (err OK) of a lazy WRITE for its coordinator: the acks of
 * lazy_ack_ms leave as one PEER_WRITE_ACKS (repl_tick), not a message each.
 * False when no queue is free: it goes alone. */
static bool queue_ack(node *n, const struct sockaddr_in *to, const uint8_t id[WIRE_ID_LEN]) {
    struct ackq *q = NULL, *free_q = NULL;
    for (size_t i = 0; i < ACK_PEERS && !q; i++) {
        struct ackq *c = &n->repl->acks[i];
        if (!c->n) {
            if (!free_q) free_q = c;
        } else if (c->to.sin_addr.s_addr == to->sin_addr.s_addr && c->to.sin_port == to->sin_port) {
            q = c;
        }
    }
    if (!q && !(q = free_q)) return false;
    if (!q->n) {
        q->to = *to;
        q->due = node_now(n) + lazy_ack_ms(n);
    }
    q->ids[q->n++] = wire_get_le(id, 8);
    if (q->n == ACKS_MAX) send_acks(n, q);
    return true;
}

/* Sends the queued acks that are due; returns when the next are. */
static uint64_t acks_round(node *n, uint64_t now) {
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < ACK_PEERS; i++) {
        struct ackq *q = &n->repl->acks[i];
        if (!q->n) continue;
        if (now >= q->due) send_acks(n, q);
        else if (q->due < next) next = q->due;
    }
    return next;
}

/* PEER_WRITE_ACKS: acks of err OK for the lazy writes whose IDs (first
 * halves; the second is our salt) it lists. */
static void on_acks(node *n, const Peer *p, const struct sockaddr_in *from) {
    uint8_t id[WIRE_ID_LEN];
    memcpy(id + 8, &n->repl->salt, 8);
    for (size_t k = 0; k < p->n_digests; k++) {
        wire_put_le(id, p->digests[k], 8);
        op *o = op_from_id(n->repl, id, sizeof id);
        if (!o || o->cmd == WIRE_GET) continue; /* late: the op is over */
        long i = target_of(o, n, from);
        if (i < 0) continue;
        heard_from(n, o, (size_t)i);
        write_reply(n, o, (size_t)i, WIRE_OK, 0, false);
        progress(n, o);
    }
}

static void on_write(node *n, const uint8_t *id, size_t idlen, const Peer *p,
                     const struct sockaddr_in *from) {
    if (p->n_records != 1 || !record_ok(p->records[0])) return;
    const Record *rec = p->records[0];
    store_rec s = {rec->value.data, (uint32_t)rec->value.len, rec->version,
                   rec->stamp, rec->tombstone};
    Peer ack = PEER__INIT;
    ack.type = PEER_WRITE_ACK;
    uint64_t prior = 0;
    bool not_mine;
    ack.err = apply(n, rec->key.data, rec->key.len, &s, &prior, &ack.stamp, &not_mine);
    /* a REMOVE's ack tells the stamp of what it replaced (OK: a value,
     * NOT_FOUND: a tombstone, 0: nothing), and whether a tombstone held was
     * another REMOVE's, which its coordinator answers by */
    if (rec->tombstone && (ack.err == WIRE_OK || ack.err == WIRE_ENOKEY)) {
        ack.stamp = prior;
        if (not_mine) ack.flags |= PEER_FLAG_NOT_MINE;
    }
    if (p->hint_port && p->hint_port <= 65535 && p->hint_ip &&
        (ack.err == WIRE_OK || ack.err == WIRE_ENOKEY))
        hint_add(n, rec->key.data, rec->key.len, p->hint_ip, (uint16_t)p->hint_port);
    if (!(p->flags & PEER_FLAG_LAZY)) node_send_peer(n, from, id, idlen, &ack);
    else if (ack.err != WIRE_OK || ack.stamp || idlen != WIRE_ID_LEN || !queue_ack(n, from, id))
        node_send_peer_lazy(n, from, id, idlen, &ack);
}

static void on_read(node *n, const uint8_t *id, size_t idlen, const Peer *p,
                    const struct sockaddr_in *from) {
    if (p->key.len < 1 || p->key.len > WIRE_MAX_KEY) return;
    store_rec cur;
    Record rec;
    Record *recs[1] = {&rec};
    Peer rep = PEER__INIT;
    rep.type = PEER_READ_REPLY;
    int rc = get_held(n, p->key.data, p->key.len, &cur);
    if (rc == 0) {
        record_fill(&rec, p->key.data, p->key.len, &cur);
        rep.n_records = 1;
        rep.records = recs;
    } else {
        rep.err = WIRE_ENOKEY;
        if (rc != STORE_ENOTFOUND || !settled(n)) rep.flags = PEER_FLAG_UNSETTLED;
    }
    node_send_peer(n, from, id, idlen, &rep);
}

static void on_ack(node *n, const uint8_t *id, size_t idlen, const Peer *p,
                   const struct sockaddr_in *from) {
    if (hint_acked(n, id, idlen, p)) return;
    op *o = op_from_id(n->repl, id, idlen);
    if (!o) return; /* late: the op is over */
    long i = target_of(o, n, from);
    if (i < 0) return;
    if (o->sends[i] == 1 && o->st[i] == T_WAIT && !(o->lazy >> i & 1))
        rtt_sample(n->repl, o->t[i], node_now(n) - o->sent_at[i]);
    heard_from(n, o, (size_t)i);
    if (p->type == PEER_WRITE_ACK) {
        if (o->cmd == WIRE_GET) return;
        write_reply(n, o, (size_t)i, p->err, p->stamp, (p->flags & PEER_FLAG_NOT_MINE) != 0);
    } else {
        if (o->cmd != WIRE_GET) return;
        const Record *rec = p->n_records == 1 ? p->records[0] : NULL;
        if (rec && (!record_ok(rec) || rec->key.len != o->klen ||
                    memcmp(rec->key.data, o->key, o->klen) != 0))
            return;
        store_rec s;
        if (rec) {
            s = (store_rec){rec->value.data, (uint32_t)rec->value.len, rec->version,
                            rec->stamp, rec->tombstone};
            node_stamp_seen(n, rec->stamp);
        } else if (p->err != WIRE_ENOKEY || (p->flags & PEER_FLAG_UNSETTLED)) {
            o->unsure = true;
        }
        on_reply(o, (size_t)i, p->err, rec ? &s : NULL);
    }
    progress(n, o);
}

/* ---- re-replication and anti-entropy ---------------------------------- */

/* Per-peer SYNC batches, encoded by hand as a Peer payload: field 1
 * (type) then field 7 (records) repeated; valid protobuf by construction. */
typedef struct batch {
    uint8_t buf[BATCH_BYTES + 16 + WIRE_MAX_KEY + WIRE_MAX_VALUE + 64];
    size_t len;
} batch;

typedef struct pusher {
    node *n;
    batch **b;         /* by member index, allocated lazily */
    size_t nb;
    size_t sent;       /* records pushed */
    /* filters */
    long only_peer;    /* -1: every replica; else just this member, */
    uint64_t below_ms; /* ... the records stamped before this (settled at that horizon) */
    bool new_only;     /* only to replicas that were not replicas at the last sweep */
} pusher;

static void flush(node *n, size_t peer, batch *b) {
    if (b->len <= 2) return;
    uint8_t id[WIRE_ID_LEN] = {0};
    uint8_t dgram[NODE_MAX_PEER_DATAGRAM];
    size_t len = wire_pack_msg(dgram, sizeof dgram, id, sizeof id, b->buf, b->len,
                               WIRE_KIND_PEER);
    /* through the outbox: behind the writes queued for the peer, which a
     * push of newer records must not overtake (the peer would refuse them
     * as stale, and their coordinators stamp them again) */
    if (len) outbox_add(n->outbox, &members_at(n->members, peer)->addr, dgram, len, 0);
    b->len = 0;
}

static void batch_add(pusher *ps, size_t peer, const uint8_t *key, size_t klen,
                      const store_rec *s) {
    if (peer >= ps->nb || node_stale(ps->n, s->stamp)) return;
    batch *b = ps->b[peer];
    if (!b && !(b = ps->b[peer] = calloc(1, sizeof *b))) return;
    if (b->len == 0) {
        b->buf[0] = 0x08; /* field 1, varint: type */
        b->buf[1] = PEER_SYNC;
        b->len = 2;
    }
    Record rec;
    record_fill(&rec, key, klen, s);
    size_t rl = record__get_packed_size(&rec);
    b->buf[b->len++] = 0x3A; /* field 7, length-delimited: records */
    b->len += wire_put_varint(b->buf + b->len, rl);
    b->len += record__pack(&rec, b->buf + b->len);
    ps->sent++;
    if (b->len >= BATCH_BYTES) flush(ps->n, peer, b);
}

/* Whether member m was among slot's replicas at the last sweep. */
static bool in_swept(const repl *r, unsigned slot, uint32_t m) {
    uint32_t old[REPL_MAX_N];
    size_t k = ring_slot_lookup(r->swept, slot, r->n->cfg.replicas, old);
    for (size_t i = 0; i < k; i++)
        if (r->swept_map[old[i]] == m) return true;
    return false;
}

/* Whether member m was a replica of slot at the last sweep, as the same process
 * (swept_inc 1: its incarnation was not known yet then, as for a seed not
 * heard from; the first one learnt since is taken as the same process, and
 * kept by swept_learn, so that a restart after that is seen as one). */
static bool was_replica(node *n, unsigned slot, uint32_t m) {
    repl *r = n->repl;
    if (m >= r->swept_len || !r->swept_inc[m] ||
        (r->swept_inc[m] != 1 && r->swept_inc[m] != members_at(n->members, m)->incarnation))
        return false;
    return in_swept(r, slot, m);
}

/* Whether a sweep may push this node's record of slot (replicas pref[0..k))
 * however old: this node is one of the slot's replicas, or was at the last
 * sweep (its copy may be the only one, when joiners took every replica
 * place). Any other copy is a spare one, which sweeps pushed to new replicas
 * until 2026-12-07: older than a tombstone's lifetime, its key may have been
 * removed since and the tombstone collected at every replica while the copy
 * waited to be checked (CLEAN_BATCH a sync period), and pushed, the key came
 * back. Such a copy is dropped instead, as hints and spare checks drop it
 * (clean_finish). */
static bool may_push_outlived(node *n, unsigned slot, const uint32_t *pref, size_t k) {
    for (size_t i = 0; i < k; i++)
        if (self_index(pref[i])) return true;
    return n->repl->swept && in_swept(n->repl, slot, 0);
}

static int push_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *s) {
    pusher *ps = ctx;
    node *n = ps->n;
    unsigned slot = ring_key_slot(key, klen);
    uint32_t pref[REPL_MAX_N];
    size_t k = members_pref(n->members, slot, n->cfg.replicas, pref);
    if (ps->only_peer < 0 && outlived(n, s->stamp) && !may_push_outlived(n, slot, pref, k))
        return 0;
    for (size_t i = 0; i < k; i++) {
        if (self_index(pref[i])) continue;
        if (ps->new_only && was_replica(n, slot, pref[i])) continue;
        if (ps->only_peer >= 0 &&
            (pref[i] != (uint32_t)ps->only_peer || (s->stamp >> 16) >= ps->below_ms))
            continue;
        batch_add(ps, pref[i], key, klen, s);
    }
    return 0;
}

/* Whether this node and member m are both replicas of slot. */
static bool both_replicas(node *n, unsigned slot, uint32_t m) {
    uint32_t pref[REPL_MAX_N];
    size_t k = members_pref(n->members, slot, n->cfg.replicas, pref);
    bool me = false, it = false;
    for (size_t i = 0; i < k; i++) {
        me |= self_index(pref[i]);
        it |= pref[i] == m;
    }
    return me && it;
}

/* Pushes records to their replicas: all of them, or those new since the
 * last sweep, or (slots set, only_peer a member) the records of those
 * slots settled at the horizon compared (stamped before below_ms) to that
 * peer. Settled records only (digest.h): under a
 * steady stream of writes the buckets differed by the writes in flight,
 * and pushing whole buckets sent every record every period, a burst that
 * held up the writes' own messages past their resend time. */
static size_t push(node *n, long only_peer, const uint64_t *slots, bool new_only,
                   uint64_t below_ms) {
    pusher ps = {n, NULL, members_total(n->members), 0, only_peer, below_ms, new_only};
    ps.b = calloc(ps.nb, sizeof *ps.b);
    if (!ps.b) return 0;
    if (slots) store_iter_slots(n->store, slots, push_visit, &ps);
    else store_iter(n->store, push_visit, &ps);
    for (size_t i = 0; i < ps.nb; i++) {
        if (ps.b[i]) flush(n, i, ps.b[i]);
        free(ps.b[i]);
    }
    free(ps.b);
    return ps.sent;
}

/* Remembers the live set as the last sweep saw it. */
static void swept_save(node *n) {
    repl *r = n->repl;
    size_t total = members_total(n->members);
    ring_node *nodes = malloc(total * sizeof *nodes);
    uint32_t *map = malloc(total * sizeof *map);
    uint64_t *inc = calloc(total, sizeof *inc);
    ring *g = r->swept ? r->swept : ring_new(n->cfg.vnodes);
    if (!nodes || !map || !inc || !g || ring_set_replicas(g, n->cfg.replicas) != 0) goto fail;
    size_t k = members_live_set(n->members, nodes, map), unknown = 0;
    for (size_t j = 0; j < k; j++) {
        uint64_t c = members_at(n->members, map[j])->incarnation;
        inc[map[j]] = c ? c : 1;
        unknown += !c;
    }
    if (ring_build(g, nodes, k) != 0) goto fail;
    free(nodes);
    free(r->swept_map);
    free(r->swept_inc);
    r->swept = g;
    r->swept_map = map;
    r->swept_inc = inc;
    r->swept_len = total;
    r->swept_unknown = unknown;
    return;
fail: /* the next sweep pushes everything */
    if (g && g != r->swept) ring_free(g);
    ring_free(r->swept);
    r->swept = NULL;
    free(nodes);
    free(map);
    free(inc);
}

/* The first incarnation learnt of a member the last sweep knew none of
 * (swept_inc 1) is the process it swept: it goes into swept_inc, so that a
 * later one is a restart to hand the member its keys (was_replica). A
 * seed's first news is no restart and starts no sweep; kept as "any
 * incarnation" until the next, a restart after it looked like the process
 * swept, and a seed that restarted on an empty store before it was held
 * dead was pushed nothing (test_node: sweep_hands_keys_to_a_seed_restarted).
 * Run every tick while some are unknown: news of a restart comes a process
 * start after the first news, ticks later. */
static void swept_learn(node *n) {
    repl *r = n->repl;
    size_t left = 0, total = members_total(n->members);
    for (size_t i = 0; i < r->swept_len && i < total; i++) {
        if (r->swept_inc[i] != 1) continue;
        uint64_t c = members_at(n->members, i)->incarnation;
        if (c) r->swept_inc[i] = c;
        else left++;
    }
    r->swept_unknown = left;
}

/* Re-replication after the live set changed: every record goes to those of
 * its replicas that were not its replicas at the last sweep (or were, as a
 * process that has restarted since). The first sweep pushes everything. */
static void sweep(node *n) {
    size_t sent = push(n, -1, NULL, n->repl->swept != NULL, 0);
    n->stats.repushed += sent;
    swept_save(n);
    if (!n->cfg.quiet && sent) node_log(n, "re-replication: pushed %zu records", sent);
}

void repl_store_wiped(node *n) {
    if (n->repl) n->repl->wiped_ms = node_now(n) ? node_now(n) : 1;
}

void repl_membership_changed(node *n) {
    repl *r = n->repl;
    if (!r) return; /* members is being set up */
    r->changed_ms = node_now(n);
    /* the sweep waits for the changes to settle, but not for good: each
     * change put it off another 300 ms, and changes closer than that (a
     * big cluster's churn) put re-replication off while they went on, and
     * with it spare checks, tombstone collection and settled reads */
    if (!r->sweep_at) r->unswept_ms = r->changed_ms;
    uint64_t at = r->changed_ms + SWEEP_DELAY_MS, latest = r->unswept_ms + SWEEP_MAX_WAIT_MS;
    r->sweep_at = at < latest ? at : latest > r->changed_ms ? latest : r->changed_ms;
}

/* Our bucket digests for peer: of each bucket, the XOR of the settled
 * digests (digest.h) of its slots whose replicas include both this node
 * and peer. A pass over the slots, not the records. */
static void digests_for(node *n, uint32_t peer, uint64_t horizon, uint64_t out[BUCKETS]) {
    const digest *dg = n->repl->dg;
    const uint64_t *x = digest_slots(dg);
    memset(out, 0, BUCKETS * sizeof *out);
    if (horizon != digest_horizon(dg)) {
        digest_slots_at(dg, horizon, n->repl->slot_digests);
        x = n->repl->slot_digests;
    }
    for (unsigned slot = 0; slot < RING_SLOTS; slot++)
        if (x[slot] && both_replicas(n, slot, peer)) out[slot / BUCKET_SLOTS] ^= x[slot];
}

static void send_digest(node *n, uint32_t peer, const uint64_t *d, uint64_t horizon,
                        uint32_t flags) {
    Peer p = PEER__INIT;
    p.type = PEER_DIGEST;
    p.n_digests = BUCKETS;
    p.digests = (uint64_t *)d;
    p.stamp = horizon;
    p.flags = flags;
    uint8_t id[WIRE_ID_LEN] = {0};
    node_send_peer(n, &members_at(n->members, peer)->addr, id, sizeof id, &p);
}

#define DIGEST_REPLY 1u /* this digest answers one of yours: push, don't answer */

/* A peer's digests of the records we both replicate: those of buckets that
 * differ from ours are pushed to it, slot by slot, and unless this answers
 * our own digests, ours go back so that it pushes its side. Both sides
 * compare at the later of the two horizons: a node whose horizon is behind
 * (its clock, or an epoch began between the two passes) computes its
 * digests at the other's (digest_slots_at), and one that gets digests of an
 * earlier horizon sends its own to be compared there. (Digests of equal
 * horizons only, before: a member whose clock was two seconds or more off
 * was never compared with any, and a copy it lacked stayed lacking:
 * simulator, W=1 R=1, seed 34.) */
static void on_digest(node *n, const Peer *p, const struct sockaddr_in *from) {
    if (p->n_digests != BUCKETS) return;
    long peer = members_find(n->members, from->sin_addr.s_addr, ntohs(from->sin_port));
    if (peer <= 0) return;
    repl *r = n->repl;
    uint64_t mine_h = digest_advance(r->dg, node_cluster_ms(n)), horizon = p->stamp;
    uint64_t mine[BUCKETS];
    if (horizon < mine_h) { /* it is behind: it compares at ours */
        if (!(p->flags & DIGEST_REPLY)) {
            digests_for(n, (uint32_t)peer, mine_h, mine);
            send_digest(n, (uint32_t)peer, mine, mine_h, 0);
        }
        return;
    }
    if (!digest_reaches(r->dg, horizon)) return; /* too far ahead to tell */
    digests_for(n, (uint32_t)peer, horizon, mine);
    if (memcmp(mine, p->digests, sizeof mine) == 0) return;
    /* the differing buckets' slots, from where the last exchange stopped,
     * up to PUSH_BUDGET records */
    uint64_t slots[RING_SLOTS / 64] = {0};
    size_t records = 0;
    for (unsigned k = 0; k < RING_SLOTS && records < PUSH_BUDGET; k++) {
        unsigned slot = (r->push_from + k) % RING_SLOTS, bk = slot / BUCKET_SLOTS;
        uint32_t count = digest_count(r->dg, slot);
        if (mine[bk] == p->digests[bk] || !count || !both_replicas(n, slot, (uint32_t)peer)) continue;
        slots[slot / 64] |= 1ull << (slot % 64);
        records += count;
        r->push_from = (slot + 1) % RING_SLOTS;
    }
    n->stats.synced += push(n, peer, slots, false, horizon);
    if (!(p->flags & DIGEST_REPLY)) send_digest(n, (uint32_t)peer, mine, horizon, DIGEST_REPLY);
}

/* Spare copies: a node keeps records of keys it is no longer a replica of
 * (it was one before a join, or stood in for a replica). Once the live set
 * has been still for a while and no hint is waiting, each sync period takes
 * up to CLEAN_BATCH of them and reads the key from its replicas; a copy goes
 * when every replica answered with it or something newer, and is sent to
 * those that lack it otherwise (read repair does the rest). */
static bool still_for(node *n, unsigned periods) {
    repl *r = n->repl;
    return r->nhints == 0 && !r->sweep_at &&
           node_now(n) - r->changed_ms >= (uint64_t)periods * n->cfg.sync_ms;
}

static bool clean_due(node *n) { return still_for(n, CLEAN_QUIET_PERIODS); }

/* Whether this node's "not found" is believed without every replica's: its
 * live set has been still for CLEAN_QUIET_PERIODS sync periods (the records
 * of the last change pushed to their new replicas, anti-entropy run since,
 * no hint waiting here), it holds no records back (node.stale_below) and
 * its store was not wiped within as long (repl_store_wiped).
 * Before, a read of a key nobody holds asked all N replicas however long
 * membership had been still: 2.6 times a found key's CPU (README). */
static bool settled(node *n) {
    uint64_t quiet = (uint64_t)CLEAN_QUIET_PERIODS * n->cfg.sync_ms, wiped = n->repl->wiped_ms;
    return clean_due(n) && !n->stale_below && (!wiped || node_now(n) - wiped >= quiet);
}

static int spare_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *s) {
    repl *r = ctx;
    struct spare *sp = &r->spare[r->nspare++];
    memcpy(sp->key, key, klen);
    sp->klen = (uint8_t)klen;
    sp->stamp = s->stamp;
    return r->nspare == CLEAN_BATCH; /* full: stop */
}

/* Takes up to CLEAN_BATCH records of slots this node is no replica of. */
static void collect_spares(node *n) {
    uint64_t slots[RING_SLOTS / 64] = {0};
    bool any = false;
    for (unsigned slot = 0; slot < RING_SLOTS; slot++) {
        if (!digest_count(n->repl->dg, slot)) continue;
        uint32_t pref[REPL_MAX_N];
        size_t k = members_pref(n->members, slot, n->cfg.replicas, pref);
        bool mine = false;
        for (size_t i = 0; i < k; i++) mine |= self_index(pref[i]);
        if (!mine) slots[slot / 64] |= 1ull << (slot % 64), any = true;
    }
    if (any) store_iter_slots(n->store, slots, spare_visit, n->repl);
}

static void clean_start(node *n) {
    repl *r = n->repl;
    for (size_t j = 0; j < r->nspare; j++) {
        const struct spare *sp = &r->spare[j];
        op *o = op_start(n, WIRE_GET, sp->key, sp->klen);
        if (!o) break;
        o->answered = true; /* nobody waits for it */
        op_settled(r, o);
        o->clean_stamp = sp->stamp;
        o->need = (unsigned)o->nt;
        bool mine = false;
        for (size_t i = 0; i < o->nt; i++) mine |= self_index(o->t[i]);
        if (mine || !o->nt) {
            op_free(r, o);
            continue;
        }
        for (size_t i = 0; i < o->nt; i++) send_to(n, o, i);
    }
    r->nspare = 0;
}

/* Every replica answered the check of a spare copy. A replica that holds
 * nothing for a key whose spare copy is older than a tombstone's lifetime
 * may have collected the tombstone that ended it: such a copy is not
 * pushed back (that would bring a deleted key back) but dropped. */
static void clean_finish(node *n, op *o) {
    bool covered = true;
    store_rec cur;
    bool have = store_get(n->store, o->key, o->klen, &cur) == 0 && cur.stamp == o->clean_stamp;
    bool old = outlived(n, o->clean_stamp);
    uint8_t id[WIRE_ID_LEN] = {0};
    for (size_t i = 0; i < o->nt; i++) {
        if (o->st[i] == T_OK && o->tstamp[i] >= o->clean_stamp) continue;
        if (o->st[i] == T_OK && o->tstamp[i] == 0 && old) continue;
        covered = false;
        if (have) send_record(n, o->t[i], id, PEER_SYNC, o->key, o->klen, &cur, NO_HINT, false);
    }
    if (covered) store_drop(n->store, o->key, o->klen, o->clean_stamp);
}

/* Tombstones older than their lifetime go, but only while every member is
 * alive and membership has been still for a while (twice clean_due): a replica
 * that is down, or was until lately, may not hold a tombstone yet, and the
 * older copy of the key it holds would come back once no tombstone stands
 * against it. A member that stays dead keeps tombstones from going. */
static bool gc_due(node *n) {
    /* twice the wait of spare copies' cleaning: a spare copy of an old value
     * at a node that is no replica is checked and dropped first (pushed
     * back after its tombstone went, it would bring the key back) */
    if (!still_for(n, 2 * CLEAN_QUIET_PERIODS)) return false;
    for (size_t i = 1; i < members_total(n->members); i++) {
        int state = members_at(n->members, i)->state;
        if (state != MEMBER_ALIVE && state != MEMBER_GONE) return false;
    }
    return true;
}

static void sync_round(node *n) {
    repl *r = n->repl;
    uint64_t floor = tomb_floor(n);
    if (floor && gc_due(n)) {
        store_gc(n->store, floor);
        node_gc_ran(n, floor);
    }
    size_t total = members_total(n->members);
    if (total < 2) return;
    uint64_t horizon = digest_advance(r->dg, node_cluster_ms(n));
    r->nspare = 0;
    if (clean_due(n)) collect_spares(n);
    clean_start(n);
    for (unsigned k = 0; k < SYNC_PEERS; k++) {
        uint32_t peer = 1 + (uint32_t)(node_random(n) % (total - 1));
        if (members_at(n->members, peer)->state >= MEMBER_DEAD) continue;
        uint64_t d[BUCKETS];
        digests_for(n, peer, horizon, d);
        send_digest(n, peer, d, horizon, 0);
    }
}

/* Records pushed here (re-replication, anti-entropy, spare copies). One
 * older than ours says its sender is behind on that key: ours goes back to
 * it at once, rather than at the next anti-entropy round that pairs the
 * two (dht-sim 2263: a PUT acknowledged on a side of a one-way partition
 * whose view held two of the key's replicas dead; the push to them when
 * they came back was lost to the partition; after the heal they pushed
 * their older record here, as to a replica back from the dead, and a
 * quorum read of the two gave it 2.1 s after the heal, 1.4 s before
 * anti-entropy met them). Only a record older than a sync period: a
 * younger one is on its way in its write's own messages (anti-entropy under
 * a stream of writes pushes the settled copies of keys written since, and
 * each would come back). Never a record the sender lacks: it had this key,
 * so no tombstone collected since is undone. */
static void on_sync(node *n, const Peer *p, const struct sockaddr_in *from) {
    long peer = members_find(n->members, from->sin_addr.s_addr, ntohs(from->sin_port));
    pusher ps = {n, NULL, members_total(n->members), 0, -1, 0, false};
    for (size_t i = 0; i < p->n_records; i++) {
        const Record *rec = p->records[i];
        store_rec cur;
        if (apply_record(n, rec) != STORE_ESTALE || peer <= 0 ||
            get_held(n, rec->key.data, rec->key.len, &cur) != 0 || cur.stamp <= rec->stamp ||
            (cur.stamp >> 16) + n->cfg.sync_ms > node_cluster_ms(n))
            continue;
        if (!ps.b && !(ps.b = calloc(ps.nb, sizeof *ps.b))) return;
        batch_add(&ps, (size_t)peer, rec->key.data, rec->key.len, &cur);
    }
    if (!ps.b) return;
    n->stats.pushed_back += ps.sent;
    if (ps.b[peer]) flush(n, (size_t)peer, ps.b[peer]);
    free(ps.b[peer]);
    free(ps.b);
}

void repl_on_peer(node *n, const uint8_t *id, size_t idlen, const Peer *p,
                  const struct sockaddr_in *from) {
    switch (p->type) {
    case PEER_WRITE: on_write(n, id, idlen, p, from); break;
    case PEER_READ: on_read(n, id, idlen, p, from); break;
    case PEER_WRITE_ACK:
    case PEER_READ_REPLY: on_ack(n, id, idlen, p, from); break;
    case PEER_SYNC: on_sync(n, p, from); break;
    case PEER_DIGEST: on_digest(n, p, from); break;
    case PEER_WRITE_ACKS: on_acks(n, p, from); break;
    default: break;
    }
}

/* ---- life cycle ------------------------------------------------------- */

repl *repl_new(node *n) {
    repl *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n = n;
    r->ops = calloc(MAX_OPS, sizeof *r->ops);
    r->free_ops = malloc(MAX_OPS * sizeof *r->free_ops);
    if (!r->ops || !r->free_ops) {
        repl_free(r);
        return NULL;
    }
    for (size_t i = 0; i < MAX_OPS; i++) r->free_ops[i] = (uint32_t)(MAX_OPS - 1 - i);
    r->nfree = MAX_OPS;
    r->salt = node_random(n);
    uint64_t now = node_now(n);
    r->tick_at = now + tick_interval(n);
    r->handoff_at = now + REPL_HANDOFF_MS;
    r->sync_at = now + n->cfg.sync_ms;
    r->dg = digest_new(n->store, n->cfg.sync_ms, node_cluster_ms(n));
    if (!r->dg) {
        repl_free(r);
        return NULL;
    }
    return r;
}

void repl_free(repl *r) {
    if (!r) return;
    if (r->ops)
        for (size_t i = 0; i < MAX_OPS; i++) free(r->ops[i].val);
    free(r->ops);
    free(r->free_ops);
    digest_free(r->dg);
    free(r->hints);
    free(r->hint_heads);
    ring_free(r->swept);
    free(r->swept_map);
    free(r->swept_inc);
    free(r->prt);
    free(r);
}

uint64_t repl_tick(repl *r, uint64_t now) {
    node *n = r->n;
    uint64_t next = UINT64_MAX;
    if (node_due(&r->tick_at, now, tick_interval(n), &next)) ops_round(n, now);
    if (r->swept_unknown) swept_learn(n);
    if (r->sweep_at && now >= r->sweep_at) {
        r->sweep_at = 0;
        sweep(n);
    }
    if (node_due(&r->handoff_at, now, REPL_HANDOFF_MS, &next)) handoff_round(n, now);
    if (node_due(&r->sync_at, now, n->cfg.sync_ms, &next)) sync_round(n);
    if (r->sweep_at && r->sweep_at < next) next = r->sweep_at;
    uint64_t t = acks_round(n, now);
    return t < next ? t : next;
}
