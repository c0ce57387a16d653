/* members: member list, SWIM probes, news gossip, full exchanges, the ring
 * (see members.h for the protocol). */
#include "members.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ring.h"

#define NONE UINT32_MAX
#define RELAYS 16               /* probes we run for others at once */
#define SUSPECT_PINGS 3         /* suspects pinged directly each period */
#define PROBE_PERIODS 3         /* a probe waits this many periods for its ack */
#define PROBES (PROBE_PERIODS + 1)
#define DEAD_PINGS 3            /* pings a dead member gets a period, cluster-wide */

enum { L_NEWS, L_SUSPECT, L_DEAD }; /* L_DEAD holds the DEAD and the GONE */

typedef struct idxlist {
    uint32_t *v;
    size_t n, cap;
} idxlist;

/* A probe we run for another member (PROBE_REQ): its ack is relayed. */
typedef struct relay {
    bool on;
    struct sockaddr_in to;      /* the member that asked */
    uint8_t id[WIRE_ID_LEN];    /* its probe's ID */
    uint64_t seq;               /* our ping's */
    uint64_t deadline;          /* NACK then */
} relay;

#define FLOOR_EVERY 8 /* gossip messages per one carrying the tombstone floor */
#define SEED_PING_PERIODS 10 /* a seed we do not hold live is pinged this often */
#define ALIAS_PING_PERIODS 10 /* an alias is pinged again, one at a time, this often */
#define MAJORITY_GRACE_PERIODS 5 /* writes wait this long after a minority ends */
#define ALIASES_MAX 1024 /* aliases kept that were never members here: a member
                         * naming a new address in every ping grows no list */
#define PINGS_KEPT 128 /* our last pings' addresses, by seq: an ACK saying one back is
                        * one of ours (3 periods of probes, suspects, the dead, relays) */

struct members {
    node *n;
    member *v;
    size_t len, cap;
    uint32_t *index;      /* open addressing on (ip, port): member index + 1, 0 empty */
    size_t index_mask;
    idxlist free_slots;   /* slots of forgotten members, for reuse */
    idxlist lists[3];
    ring *ring;
    size_t known;
    uint64_t epoch;
    uint64_t placements;  /* grows when a member is heard to place slots anew
                           * or joins or leaves the live set */
    uint64_t misplaced_at; /* placements when misplaced was counted, plus 1 */
    size_t misplaced;     /* members_misplaced's count then */
    uint64_t digest;      /* sum of entry_digest over the known */
    uint32_t floor_every; /* messages sent: one in FLOOR_EVERY carries gc_floor */
    members_changed_fn changed;   /* the live set changed, or a member restarted */
    void *changed_ctx;

    uint32_t *order;      /* probe order: a shuffled pass over the live */
    size_t norder, opos;
    struct probe {
        bool on, asked;   /* out; helpers were asked */
        uint32_t target;
        uint64_t seq;
        uint64_t ask_at, end_at;
        unsigned helpers, nacks;
    } probes[PROBES];     /* a new one every period, each out for PROBE_PERIODS */
    relay relays[RELAYS];
    uint64_t seq;         /* of our pings */
    unsigned health;      /* Lifeguard's local health multiplier */
    unsigned mismatches;  /* digests seen differing in a row */
    bool accused;         /* the message being read holds us suspect or dead */
    bool full_logged;     /* MEMBERS_MAX reached, said once */
    bool majority;        /* members_majority's last answer, */
    uint64_t majority_at; /* ... and when it was found */
    uint64_t minority_at; /* when this node last saw itself in a minority */

    uint64_t next_probe, next_gossip;
    uint64_t last_tick, last_sync, last_sync_reply;
    uint64_t paused_until;
    uint64_t lead_at;     /* when the node's lead was last taken from the members */
    uint64_t rnd;         /* xorshift state for picking members */
    ring_node *seeds;     /* the peers file's members, kept for good (ping_lost_seed) */
    size_t nseeds, seed_next;
    uint64_t next_seed_ping;
    size_t alias_next;          /* ping_alias: where the last look for one ended */
    uint64_t next_alias_ping;

    uint64_t self_id;     /* our identity for this life (Member.id of our entry) */
    struct pinged {       /* where our ping of a seq went (slot seq % PINGS_KEPT) */
        uint64_t seq;
        uint32_t ip;
        uint16_t port;
    } pinged[PINGS_KEPT];
    uint32_t echo_ip;     /* an ACK being sent says this address back (0:0: none) */
    uint16_t echo_port;
    size_t aliases;       /* members_aliases */
};

static uint64_t rnd_next(members *m) {
    uint64_t x = m->rnd;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return m->rnd = x;
}

static bool is_live(int state) { return state == MEMBER_ALIVE || state == MEMBER_SUSPECT; }

static uint64_t period(const members *m) { return (uint64_t)m->n->cfg.gossip_ms; }
static uint64_t probe_period(const members *m) { return period(m) * (1 + m->health); }

/* ---- index lists -------------------------------------------------------- */

static void list_add(members *m, int l, uint32_t i) {
    idxlist *L = &m->lists[l];
    if (m->v[i].pos[l] != NONE) return;
    if (L->n == L->cap) {
        size_t ncap = L->cap ? 2 * L->cap : 64;
        uint32_t *nv = realloc(L->v, ncap * sizeof *nv);
        if (!nv) return; /* the member misses this list: news not sent, a timer late */
        L->v = nv;
        L->cap = ncap;
    }
    m->v[i].pos[l] = (uint32_t)L->n;
    L->v[L->n++] = i;
}

static void list_del(members *m, int l, uint32_t i) {
    idxlist *L = &m->lists[l];
    uint32_t p = m->v[i].pos[l];
    if (p == NONE) return;
    uint32_t last = L->v[--L->n];
    L->v[p] = last;
    m->v[last].pos[l] = p;
    m->v[i].pos[l] = NONE;
}

/* ---- the address index ---------------------------------------------------- */

static size_t addr_slot(const members *m, uint32_t ip, uint16_t port) {
    uint64_t k = ((uint64_t)ip << 16 | port) * 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 32) & m->index_mask;
}

/* Rebuilds the index for at least `want` members, skipping free slots.
 * 0, or -1 on no memory. */
static int index_rebuild(members *m, size_t want) {
    size_t size = 64;
    while (size < 2 * want) size *= 2;
    uint32_t *ix = calloc(size, sizeof *ix);
    if (!ix) return -1;
    free(m->index);
    m->index = ix;
    m->index_mask = size - 1;
    for (size_t i = 0; i < m->len; i++) {
        if (m->v[i].port == 0) continue; /* a free slot */
        size_t j = addr_slot(m, m->v[i].ip, m->v[i].port);
        while (ix[j]) j = (j + 1) & m->index_mask;
        ix[j] = (uint32_t)i + 1;
    }
    return 0;
}

/* Index of the member at ip:port, gone ones too, or -1. */
static long find_any(const members *m, uint32_t ip, uint16_t port) {
    if (!m->index) return -1;
    for (size_t j = addr_slot(m, ip, port); m->index[j]; j = (j + 1) & m->index_mask) {
        const member *e = &m->v[m->index[j] - 1];
        if (e->ip == ip && e->port == port) return (long)m->index[j] - 1;
    }
    return -1;
}

bool members_is_node(const members *m, uint32_t ip, uint16_t port) {
    return find_any(m, ip, port) >= 0;
}

long members_find(const members *m, uint32_t ip, uint16_t port) {
    long i = find_any(m, ip, port);
    return i >= 0 && m->v[i].state == MEMBER_GONE ? -1 : i;
}

bool members_has_host(const members *m, uint32_t ip) {
    for (size_t i = 1; i < m->len; i++)
        if (m->v[i].ip == ip && is_live(m->v[i].state)) return true;
    return false;
}

/* What a known member adds to the digest: who it is, which life, whether
 * dead (not the heartbeat, which only refutations raise, nor suspicion,
 * which comes and goes). Nodes that start from the same peers file agree on
 * who but not on which life until they exchange lists once. */
static uint64_t entry_digest(const member *e) {
    uint8_t b[15];
    memcpy(b, &e->ip, 4);
    memcpy(b + 4, &e->port, 2);
    memcpy(b + 6, &e->incarnation, 8);
    b[14] = e->state == MEMBER_DEAD;
    return XXH64(b, sizeof b, 0);
}

/* A member's lead (node.h node_clock) ends when it is forgotten or with its
 * life: our stamps stay above where its clock had run. Its death does not
 * end it: the far side of a partition is dead to us, and the client whose
 * write a node ahead there acknowledged writes next on our side (dht-sim
 * 1129: its next write, 2.3 s later, stamped 75 ms below, lost). */
static void lead_ends(members *m, member *e) {
    if (e->clock == INT64_MIN) return;
    int64_t led = (int64_t)node_now(m->n) + e->clock;
    if (led > 0) node_stamp_seen(m->n, (uint64_t)led << 16);
    e->clock = INT64_MIN;
}

/* Sets a member's pair, keeping the digest. */
static void set_pair(members *m, uint32_t i, uint64_t inc, uint64_t hb) {
    member *e = &m->v[i];
    /* a new life: only its own reading leads (an earlier version says none,
     * and its last life's ran on) */
    if (inc != e->incarnation) lead_ends(m, e);
    if (e->state != MEMBER_GONE) m->digest -= entry_digest(e);
    e->incarnation = inc;
    e->heartbeat = hb;
    if (e->state != MEMBER_GONE) m->digest += entry_digest(e);
}

/* ---- the ring ------------------------------------------------------------ */

size_t members_live_set(const members *m, ring_node *nodes, uint32_t *map) {
    size_t k = 0;
    for (size_t i = 0; i < m->len; i++) {
        if (!is_live(m->v[i].state) || m->v[i].port == 0) continue;
        nodes[k] = (ring_node){m->v[i].ip, m->v[i].port};
        map[k++] = (uint32_t)i;
    }
    return k;
}

/* Builds the ring anew from the live members (a batch of seeds). */
static void rebuild(members *m) {
    size_t cap = m->len ? m->len : 1;
    ring_node *nodes = malloc(cap * sizeof *nodes);
    uint32_t *ids = malloc(cap * sizeof *ids);
    if (nodes && ids) {
        size_t k = members_live_set(m, nodes, ids);
        ring_set_mark(m->ring, node_now(m->n));
        if (ring_build_ids(m->ring, nodes, ids, k) == 0) m->epoch++;
    } /* else the old ring stays: stale, never wrong in shape */
    free(nodes);
    free(ids);
}

/* Member i joined or left the live set: its points go on or off the ring
 * (a full rebuild only if memory ran short). */
static void ring_update(members *m, uint32_t i) {
    const member *e = &m->v[i];
    ring_set_mark(m->ring, node_now(m->n));
    int rc = is_live(e->state) ? ring_add(m->ring, i, &(ring_node){e->ip, e->port})
                               : ring_remove(m->ring, i);
    if (rc == 0) m->epoch++;
    else rebuild(m);
}

/* ---- members --------------------------------------------------------------- */

static void order_insert(members *m, uint32_t i);

/* A new slot (a reused one or a fresh one) for ip:port, ALIVE at pair
 * (0, 0). Its index, or -1 on no memory or past MEMBERS_MAX. Not yet on
 * the ring. */
static long add(members *m, uint32_t ip, uint16_t port) {
    if (m->known >= MEMBERS_MAX) { /* whatever a peer claims, memory stays bounded */
        if (!m->full_logged) node_log(m->n, "members: %d known, the most a node holds: "
                                      "news of more is ignored", MEMBERS_MAX);
        m->full_logged = true;
        return -1;
    }
    if (2 * (m->len + 1) > m->index_mask + 1 && index_rebuild(m, m->len + 1) != 0) return -1;
    uint32_t i;
    if (m->free_slots.n) {
        i = m->free_slots.v[--m->free_slots.n];
    } else {
        if (m->len == m->cap) {
            size_t ncap = m->cap ? m->cap * 2 : 64;
            member *nv = realloc(m->v, ncap * sizeof *nv);
            if (nv) m->v = nv;
            uint32_t *nord = realloc(m->order, ncap * sizeof *nord);
            if (nord) m->order = nord;
            if (!nv || !nord) return -1;
            m->cap = ncap;
        }
        i = (uint32_t)m->len++;
    }
    member *e = &m->v[i];
    memset(e, 0, sizeof *e);
    e->ip = ip;
    e->port = port;
    e->addr.sin_family = AF_INET;
    e->addr.sin_addr.s_addr = ip;
    e->addr.sin_port = htons(port);
    e->state = MEMBER_ALIVE;
    e->since = node_now(m->n);
    e->clock = INT64_MIN;
    e->mono = INT64_MIN;
    m->placements++;
    e->pos[0] = e->pos[1] = e->pos[2] = NONE;
    size_t j = addr_slot(m, ip, port);
    while (m->index[j]) j = (j + 1) & m->index_mask;
    m->index[j] = i + 1;
    m->known++;
    m->digest += entry_digest(e);
    if (i) order_insert(m, i);
    return i;
}

/* How long a suspicion lasts: suspicion_ms, longer in larger clusters,
 * where news takes longer to reach the accused and come back. */
static uint64_t suspicion_ms(const members *m) {
    double n = (double)m->known, scale = 1.0;
    if (n > 100) scale += log10(n / 100) / 2;
    return (uint64_t)(m->n->cfg.suspicion_ms * scale);
}

/* Times an item of news is sent: 3 ceil(log10(n + 1)). */
static uint8_t news_budget(const members *m) {
    return (uint8_t)(3 * (unsigned)ceil(log10((double)m->known + 1)));
}

static void announce(members *m, uint32_t i) {
    m->v[i].news = news_budget(m);
    list_add(m, L_NEWS, i);
}

static void set_state(members *m, uint32_t i, int state) {
    member *e = &m->v[i];
    if (e->state == state) return;
    uint64_t now = node_now(m->n);
    bool was_live = is_live(e->state);
    if (e->state != MEMBER_GONE) m->digest -= entry_digest(e);
    else m->known++;
    if (state == MEMBER_GONE) lead_ends(m, e);
    e->state = (uint8_t)state;
    e->since = now;
    if (state != MEMBER_GONE) m->digest += entry_digest(e);
    else m->known--;

    if (state == MEMBER_SUSPECT) {
        e->deadline = now + suspicion_ms(m);
        list_add(m, L_SUSPECT, i);
    } else {
        list_del(m, L_SUSPECT, i);
    }
    if (state == MEMBER_DEAD || state == MEMBER_GONE) {
        e->deadline = now + m->n->cfg.forget_ms;
        list_add(m, L_DEAD, i);
    } else {
        list_del(m, L_DEAD, i);
        if (!was_live) order_insert(m, i); /* back from the dead: probed in this pass */
    }
    if (m->n->env.member_state) m->n->env.member_state(m->n->env.ctx, e->ip, e->port, state);
    if (!m->n->cfg.quiet) {
        char a[32];
        node_log(m->n, "member %s is %s (%llu.%llu)", node_addr_str(e->ip, e->port, a),
                 members_state_name(state), (unsigned long long)e->incarnation,
                 (unsigned long long)e->heartbeat);
    }
    if (was_live != is_live(state)) {
        m->placements++;
        ring_update(m, i);
        m->changed(m->changed_ctx);
    }
}

/* A gone member's slot becomes free: out of the index, reusable. */
static void free_slot(members *m, uint32_t i) {
    list_del(m, L_NEWS, i);
    list_del(m, L_DEAD, i);
    idxlist *F = &m->free_slots;
    if (F->n == F->cap) {
        size_t ncap = F->cap ? 2 * F->cap : 64;
        uint32_t *nv = realloc(F->v, ncap * sizeof *nv);
        if (!nv) return; /* stays gone, not reused */
        F->v = nv;
        F->cap = ncap;
    }
    m->v[i].port = 0;
    m->v[i].ip = 0;
    F->v[F->n++] = i;
}

members *members_new(node *n, members_changed_fn changed, void *ctx) {
    members *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n = n;
    m->changed = changed;
    m->changed_ctx = ctx;
    m->ring = ring_new(n->cfg.vnodes);
    if (!m->ring || ring_set_replicas(m->ring, n->cfg.replicas) != 0 ||
        add(m, n->self.sin_addr.s_addr, ntohs(n->self.sin_port)) < 0) {
        members_free(m);
        return NULL;
    }
    set_pair(m, 0, n->incarnation, 0);
    m->v[0].resp_port = n->cfg.resp_port;
    m->v[0].no_resp = !n->cfg.resp_port;
    m->v[0].placement =
        members_placement(n->cfg.replicas, n->cfg.vnodes ? n->cfg.vnodes : RING_DEFAULT_VNODES);
    m->v[0].placed = true;
    m->rnd = node_random(n) | 1;
    /* from the same draw (one more would move every simulated run's random
     * numbers): random, as it is, and not the probe order's state itself */
    m->self_id = XXH64(&m->rnd, sizeof m->rnd, 0x616c696173ull) | 1;
    uint64_t now = node_now(n);
    m->next_probe = m->next_gossip = now;
    rebuild(m);
    return m;
}

void members_free(members *m) {
    if (!m) return;
    ring_free(m->ring);
    free(m->index);
    free(m->v);
    free(m->order);
    free(m->free_slots.v);
    for (int l = 0; l < 3; l++) free(m->lists[l].v);
    free(m->seeds);
    free(m);
}

/* Keeps seed for good (ping_lost_seed), once. */
static int keep_seed(members *m, ring_node seed) {
    if (seed.ip == m->v[0].ip && seed.port == m->v[0].port) return 0;
    for (size_t j = 0; j < m->nseeds; j++)
        if (m->seeds[j].ip == seed.ip && m->seeds[j].port == seed.port) return 0;
    ring_node *v = realloc(m->seeds, (m->nseeds + 1) * sizeof *v);
    if (!v) return -1;
    m->seeds = v;
    m->seeds[m->nseeds++] = seed;
    return 0;
}

int members_add_seeds(members *m, const ring_node *seeds, size_t k) {
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        if (keep_seed(m, seeds[i]) != 0 ||
            (find_any(m, seeds[i].ip, seeds[i].port) < 0 && add(m, seeds[i].ip, seeds[i].port) < 0))
            rc = -1;
    rebuild(m);
    m->changed(m->changed_ctx);
    return rc;
}

int members_add_seed(members *m, uint32_t ip, uint16_t port) {
    ring_node one = {ip, port};
    return members_add_seeds(m, &one, 1);
}

/* ---- picking members ------------------------------------------------------- */

/* Inserts member i at a random place in the rest of this probe pass. */
static void order_insert(members *m, uint32_t i) {
    if (!m->order || m->norder >= m->cap) return; /* full of duplicates: next pass */
    size_t r = m->opos + rnd_next(m) % (m->norder - m->opos + 1);
    m->order[m->norder++] = m->order[r];
    m->order[r] = i;
}

/* The next member to probe: a pass over the live in random order. */
static long next_target(members *m) {
    for (int pass = 0; pass < 2; pass++) {
        while (m->opos < m->norder) {
            uint32_t i = m->order[m->opos++];
            if (i && i < m->len && is_live(m->v[i].state)) return i;
        }
        m->norder = m->opos = 0;
        for (uint32_t i = 1; i < m->len; i++)
            if (is_live(m->v[i].state)) m->order[m->norder++] = i;
        for (size_t i = m->norder; i > 1; i--) { /* Fisher-Yates */
            size_t j = rnd_next(m) % i;
            uint32_t t = m->order[i - 1];
            m->order[i - 1] = m->order[j];
            m->order[j] = t;
        }
    }
    return -1;
}

/* A random member in `state` other than us and `not`, or -1. Random draws:
 * constant time while such members are not rare. */
static long random_member(members *m, int state, long not) {
    if (m->len < 2) return -1;
    for (int tries = 0; tries < 32; tries++) {
        uint32_t i = 1 + (uint32_t)(rnd_next(m) % (m->len - 1));
        if ((long)i != not && m->v[i].state == state && m->v[i].port) return i;
    }
    return -1;
}

/* ---- messages --------------------------------------------------------------- */

static void fill(const member *e, Member *out) {
    member__init(out);
    out->ip = e->ip;
    out->port = e->port;
    out->incarnation = e->incarnation;
    out->heartbeat = e->heartbeat;
    out->state = e->state == MEMBER_GONE ? MEMBER_DEAD : e->state;
    out->resp_port = e->resp_port;
    out->no_resp = e->no_resp;
}

static void seq_id(uint64_t seq, uint8_t id[WIRE_ID_LEN]) {
    memset(id, 0, WIRE_ID_LEN);
    memcpy(id, &seq, sizeof seq);
}

static uint64_t id_seq(const uint8_t *id, size_t idlen) {
    uint64_t seq = 0;
    if (idlen == WIRE_ID_LEN) memcpy(&seq, id, sizeof seq);
    return seq;
}

/* Takes up to `room` items of news, newest (most sends left) first, each
 * counted as sent once. */
static size_t take_news(members *m, Member *out, Member **ptrs, size_t room) {
    idxlist *L = &m->lists[L_NEWS];
    unsigned floor = 0;
    if (L->n > room) { /* the room-th largest count: those above it go */
        unsigned count[256] = {0}, seen = 0;
        for (size_t k = 0; k < L->n; k++) count[m->v[L->v[k]].news]++;
        for (floor = 255; floor > 0 && seen + count[floor] < room; floor--) seen += count[floor];
    }
    size_t got = 0;
    for (size_t k = 0; k < L->n && got < room;) {
        uint32_t i = L->v[k];
        if (m->v[i].news < floor) {
            k++;
            continue;
        }
        fill(&m->v[i], &out[got]);
        ptrs[got] = &out[got];
        got++;
        if (--m->v[i].news == 0) list_del(m, L_NEWS, i); /* moves another to k */
        else k++;
    }
    return got;
}

/* Sends a GOSSIP message: our entry, `about`'s entry when it is not alive
 * (so that it refutes), news, our digest. */
static void send_msg(members *m, const struct sockaddr_in *to, const uint8_t *id, uint32_t flags,
                     const member *about, const member *target) {
    Member self, ents[MEMBERS_PIGGYBACK + 1];
    Member *ptrs[MEMBERS_PIGGYBACK + 1];
    size_t k = 0;
    fill(&m->v[0], &self);
    if (flags & PEER_GOSSIP_PROBE) self.id = m->self_id; /* a ping of ours come back: ours */
    if (about && about->state != MEMBER_ALIVE) {
        fill(about, &ents[0]);
        ptrs[0] = &ents[0];
        k = 1;
    }
    k += take_news(m, ents + k, ptrs + k, MEMBERS_PIGGYBACK);
    uint64_t digest = m->digest;
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &self;
    p.members = ptrs;
    p.n_members = k;
    p.flags = flags | PEER_GOSSIP_SIPHASH | (m->lists[L_NEWS].n ? PEER_GOSSIP_BUSY : 0);
    p.placement = m->v[0].placement;
    p.digests = &digest;
    p.n_digests = 1;
    p.stamp = node_clock(m->n);
    p.wall = node_wall_ms(m->n);
    p.mono = node_mono(m->n);
    /* a tombstone floor for a node back from a long absence (node.h): one
     * message in FLOOR_EVERY, and every whole list, is enough for it */
    if (++m->floor_every % FLOOR_EVERY == 0) p.gc_floor = m->n->gc_floor;
    if (target) {
        p.client_ip = target->ip;
        p.client_port = target->port;
    }
    if (flags & PEER_GOSSIP_PROBE) { /* where it goes, kept to check the ACK's (aliases) */
        p.to_ip = to->sin_addr.s_addr;
        p.to_port = ntohs(to->sin_port);
        uint64_t seq = id ? id_seq(id, WIRE_ID_LEN) : 0;
        m->pinged[seq % PINGS_KEPT] = (struct pinged){seq, p.to_ip, (uint16_t)p.to_port};
    } else if (flags & PEER_GOSSIP_ACK) {
        p.to_ip = m->echo_ip;
        p.to_port = m->echo_port;
    }
    uint8_t zero[WIRE_ID_LEN] = {0};
    node_send_peer(m->n, to, id ? id : zero, WIRE_ID_LEN, &p);
}

/* Our whole list, in chunks; the last is flagged SYNC_END. */
static void send_full(members *m, const struct sockaddr_in *to, uint32_t flags) {
    Member self, ents[MEMBERS_SYNC_CHUNK];
    Member *ptrs[MEMBERS_SYNC_CHUNK];
    fill(&m->v[0], &self);
    uint8_t id[WIRE_ID_LEN] = {0};
    size_t i = 0;
    do {
        size_t k = 0;
        for (; i < m->len && k < MEMBERS_SYNC_CHUNK; i++) {
            if (m->v[i].port == 0 || m->v[i].state == MEMBER_GONE) continue;
            fill(&m->v[i], &ents[k]);
            ptrs[k] = &ents[k];
            k++;
        }
        Peer p = PEER__INIT;
        p.type = PEER_GOSSIP;
        p.from = &self;
        p.members = ptrs;
        p.n_members = k;
        p.flags = flags | PEER_GOSSIP_SYNC | PEER_GOSSIP_SIPHASH |
                  (i >= m->len ? PEER_GOSSIP_SYNC_END : 0);
        p.placement = m->v[0].placement;
        p.stamp = node_clock(m->n);
        p.wall = node_wall_ms(m->n);
        p.mono = node_mono(m->n);
        p.gc_floor = m->n->gc_floor;
        node_send_peer(m->n, to, id, sizeof id, &p);
    } while (i < m->len);
}

/* ---- merging what others say ---------------------------------------------- */

/* A forgotten member's entry (its pair kept) as a death verdict, which it
 * refutes when told: GONE entries are not sent (merge_one ignores them). */
static member as_dead(const member *e) {
    member d = *e;
    d.state = MEMBER_DEAD;
    return d;
}

static int rank_cmp(uint64_t ia, uint64_t ha, int sa, uint64_t ib, uint64_t hb, int sb) {
    if (ia != ib) return ia < ib ? -1 : 1;
    if (ha != hb) return ha < hb ? -1 : 1;
    if (sa == MEMBER_GONE) sa = MEMBER_DEAD;
    if (sb == MEMBER_GONE) sb = MEMBER_DEAD;
    return sa < sb ? -1 : sa > sb;
}

/* Only we speak for ourselves, but what others say of us matters. An entry
 * naming a later incarnation than ours (a past life whose clock ran ahead of
 * ours, or our clock stepped back since) outranks everything we say: we take
 * an incarnation above it (memberlist's refute). A suspicion or a death at
 * our pair is answered by a heartbeat above it. Either way the news goes
 * out, and having been accused counts against our local health. */
static void refute(members *m, const Member *in) {
    member *me = &m->v[0];
    bool accused = in->incarnation == me->incarnation && in->state != MEMBER_ALIVE &&
                   in->heartbeat >= me->heartbeat;
    if (in->incarnation > me->incarnation ||
        (accused && in->heartbeat >= MEMBERS_MAX_HEARTBEAT)) { /* (no heartbeat above it) */
        set_pair(m, 0, in->incarnation + 1, 0);
        m->n->incarnation = me->incarnation;
        if (m->n->env.incarnation) m->n->env.incarnation(m->n->env.ctx, me->incarnation);
        if (!m->n->cfg.quiet)
            node_log(m->n, "refuting incarnation %llu: now %llu",
                     (unsigned long long)in->incarnation, (unsigned long long)me->incarnation);
    } else if (accused) {
        me->heartbeat = in->heartbeat + 1;
    } else {
        return;
    }
    if (accused && m->health < MEMBERS_MAX_HEALTH) m->health++;
    announce(m, 0);
}

static void merge_one(members *m, const Member *in) {
    if (in->port == 0 || in->port > 65535 || in->state > MEMBER_DEAD) return;
    /* a heartbeat only refutations raise, one at a time: one past the bound
     * is no member's (at UINT64_MAX a verdict could not be refuted: the
     * accused's answer wrapped to 0) */
    if (in->heartbeat > MEMBERS_MAX_HEARTBEAT) return;
    /* an incarnation from a clock far ahead would stand for good: refused */
    if (in->incarnation > node_wall_ms(m->n) + WIRE_MAX_AHEAD_MS) return;
    long i = find_any(m, in->ip, (uint16_t)in->port);
    if (i > 0 && m->v[i].alias) return; /* an address of another member's, or ours */
    if (i == 0) {
        refute(m, in);
        if (in->state != MEMBER_ALIVE) m->accused = true;
        return;
    }
    /* A verdict from a node that never learnt the member's incarnation
     * (a seed it has not heard from) cannot be refuted: the accused answers
     * above a pair it never had. It stays that node's own. */
    if (in->incarnation == 0 && in->state != MEMBER_ALIVE) return;
    if (i < 0) {
        /* verdicts on members we do not know are not ours to keep; nor is
         * an address whose life the sender does not know (incarnation 0: a
         * seed of its peers file it has not heard from), which may be no
         * member's own but another address of one (an alias): it spread to
         * every node whose peers file did not name it, each of which held
         * it alive in its ring until its own ping found it out (dht-sim
         * --aliases 3, seed 3: a node back from a restart told it to all,
         * and writes went to one replica less for 2 s). A member speaks for
         * itself, and whoever hears it tells its life. */
        if (in->state != MEMBER_ALIVE || in->incarnation == 0 ||
            (i = add(m, in->ip, (uint16_t)in->port)) < 0)
            return;
        set_pair(m, (uint32_t)i, in->incarnation, in->heartbeat);
        if (in->resp_port <= 65535) {
            m->v[i].resp_port = (uint16_t)in->resp_port;
            m->v[i].no_resp = !in->resp_port && in->no_resp;
        }
        announce(m, (uint32_t)i);
        ring_update(m, (uint32_t)i);
        m->changed(m->changed_ctx);
        return;
    }
    member *e = &m->v[i];
    /* the Redis port is the process's: a later incarnation's replaces what
     * we knew (even with nothing known, or a port out of range), the same
     * one's fills it in: a port, or none (no_resp) while no port is known */
    uint16_t port = in->resp_port <= 65535 ? (uint16_t)in->resp_port : 0;
    bool none = !in->resp_port && in->no_resp;
    if ((in->incarnation > e->incarnation ||
         (in->incarnation == e->incarnation && (port || (none && !e->resp_port)))) &&
        (e->resp_port != port || e->no_resp != none)) {
        e->resp_port = port;
        e->no_resp = none;
        e->since = node_now(m->n); /* where -MOVED sends its slots' clients changed */
    }
    if (rank_cmp(in->incarnation, in->heartbeat, (int)in->state, e->incarnation, e->heartbeat,
                 e->state) <= 0)
        return;
    /* a new process at a live address may have lost its records:
     * re-replication hands it its keys (a seed's first news is no restart) */
    bool restart = in->incarnation > e->incarnation && e->incarnation != 0 &&
                   is_live(e->state) && in->state != MEMBER_DEAD;
    int state = (int)in->state;
    if (state == MEMBER_DEAD && is_live(e->state)) {
        /* Another's death verdict on a member we hold live (it may come
         * from the far side of a partition, long ago) is a suspicion here,
         * a short one, told to the accused at once: it refutes if it can. */
        uint64_t soon = node_now(m->n) + suspicion_ms(m) / 2;
        set_pair(m, (uint32_t)i, in->incarnation, in->heartbeat);
        if (e->state == MEMBER_ALIVE) {
            announce(m, (uint32_t)i);
            set_state(m, (uint32_t)i, MEMBER_SUSPECT);
        }
        if (e->deadline > soon) e->deadline = soon;
        send_msg(m, &e->addr, NULL, 0, e, NULL);
        return;
    }
    if (e->state == MEMBER_GONE && state != MEMBER_ALIVE) state = MEMBER_GONE;
    /* Anything new is news (a refutation must overtake the suspicion it
     * answers), but for the first pair learnt of a seed from the peers
     * file, which every member learns from the seed itself. */
    bool news = state != e->state || e->incarnation != 0;
    set_pair(m, (uint32_t)i, in->incarnation, in->heartbeat);
    if (news && state != MEMBER_GONE) announce(m, (uint32_t)i);
    set_state(m, (uint32_t)i, state);
    if (restart) m->changed(m->changed_ctx);
}

/* ---- probes ---------------------------------------------------------------- */

static void start_probe(members *m, uint64_t now) {
    struct probe *pr = NULL;
    for (int k = 0; k < PROBES && !pr; k++)
        if (!m->probes[k].on) pr = &m->probes[k];
    long t = next_target(m);
    if (!pr || t < 0) return;
    uint8_t id[WIRE_ID_LEN];
    *pr = (struct probe){.on = true, .target = (uint32_t)t, .seq = ++m->seq,
                         .ask_at = now + probe_period(m) / 2,
                         .end_at = now + PROBE_PERIODS * probe_period(m)};
    seq_id(pr->seq, id);
    send_msg(m, &m->v[t].addr, id, PEER_GOSSIP_PROBE, &m->v[t], NULL);
}

static struct probe *probe_find(members *m, uint64_t seq) {
    for (int k = 0; k < PROBES; k++)
        if (m->probes[k].on && m->probes[k].seq == seq) return &m->probes[k];
    return NULL;
}

/* No direct ack yet: `fanout` others ping the target for us. */
static void ask_helpers(members *m, struct probe *pr) {
    uint8_t id[WIRE_ID_LEN];
    seq_id(pr->seq, id);
    pr->asked = true;
    long used[64];
    for (unsigned k = 0; k < m->n->cfg.fanout && k < 64; k++) {
        long h = random_member(m, MEMBER_ALIVE, pr->target);
        bool dup = h < 0;
        for (unsigned j = 0; j < pr->helpers && !dup; j++) dup = used[j] == h;
        if (dup) continue;
        used[pr->helpers++] = h;
        send_msg(m, &m->v[h].addr, id, PEER_GOSSIP_PROBE_REQ, NULL, &m->v[pr->target]);
    }
}

/* No ack at all in PROBE_PERIODS periods (longer than a brief stall of the
 * target): it is suspected and told so at once (it refutes if it is only
 * slow). Helpers that did not nack either say the fault may be ours: our
 * health drops. */
static void probe_failed(members *m, struct probe *pr) {
    pr->on = false;
    if (pr->asked && pr->nacks < pr->helpers && m->health < MEMBERS_MAX_HEALTH) m->health++;
    uint32_t t = pr->target;
    if (m->v[t].state != MEMBER_ALIVE) return;
    announce(m, t);
    set_state(m, t, MEMBER_SUSPECT);
    send_msg(m, &m->v[t].addr, NULL, 0, &m->v[t], NULL);
}

static void probe_acked(members *m, struct probe *pr) {
    pr->on = false;
    if (m->health) m->health--;
}

static relay *relay_find(members *m, uint64_t seq) {
    for (int k = 0; k < RELAYS; k++)
        if (m->relays[k].on && m->relays[k].seq == seq) return &m->relays[k];
    return NULL;
}

/* A member asks us to ping `target` for it. Only live members may ask, and
 * only about members we know: no ping goes to an address a stranger picked. */
static void run_relay(members *m, const uint8_t *id, size_t idlen, const Peer *p,
                      const struct sockaddr_in *from) {
    long asker = members_find(m, from->sin_addr.s_addr, ntohs(from->sin_port));
    if (asker <= 0 || !is_live(m->v[asker].state) || idlen != WIRE_ID_LEN ||
        p->client_port == 0 || p->client_port > 65535)
        return;
    long t = members_find(m, p->client_ip, (uint16_t)p->client_port);
    if (t <= 0) return;
    for (int k = 0; k < RELAYS; k++) {
        relay *r = &m->relays[k];
        if (r->on) continue;
        r->on = true;
        r->to = *from;
        memcpy(r->id, id, WIRE_ID_LEN);
        r->seq = ++m->seq;
        r->deadline = node_now(m->n) + (PROBE_PERIODS - 1) * period(m); /* NACK in time */
        uint8_t pid[WIRE_ID_LEN];
        seq_id(r->seq, pid);
        send_msg(m, &m->v[t].addr, pid, PEER_GOSSIP_PROBE, &m->v[t], NULL);
        return;
    }
}

/* ---- receiving ------------------------------------------------------------- */

uint32_t members_placement(unsigned replicas, unsigned vnodes) {
    return MEMBERS_PLACEMENT_SCHEME << 24 | (replicas & 0xff) << 16 | (vnodes & 0xffff);
}

static void heard_wall(members *m, uint32_t i, uint64_t wall); /* the clock, below */

/* A member's GOSSIP said how it places slots: a change to one other than
 * ours is logged (whatever --quiet says: keys go astray). */
static void heard_placement(members *m, uint32_t i, uint32_t placement) {
    member *e = &m->v[i];
    bool news = !e->placed || e->placement != placement;
    e->placed = true;
    e->placement = placement;
    m->placements += news;
    if (!news || placement == m->v[0].placement) return;
    char a[32], how[64];
    if (!placement)
        snprintf(how, sizeof how, "an earlier version");
    else if (placement >> 24 != MEMBERS_PLACEMENT_SCHEME)
        snprintf(how, sizeof how, "placement scheme %u", placement >> 24);
    else
        snprintf(how, sizeof how, "--replicas %u --vnodes %u", placement >> 16 & 0xff,
                 placement & 0xffff);
    node_log(m->n, "member %s places hash slots otherwise (%s): it and this node disagree on "
             "where keys live; run one version, --replicas and --vnodes on every node",
             node_addr_str(e->ip, e->port, a), how);
}

/* ---- aliases (members.h) ----------------------------------------------------- */

/* ip:port reaches the process that advertises oip:oport (ours: this node):
 * it is no member. Taken off the list for good (GONE, in no list, never
 * freed), probes of it dropped; logged once. */
static void make_alias(members *m, uint32_t oip, uint16_t oport, uint32_t ip, uint16_t port) {
    if (!port || (ip == oip && port == oport)) return;
    long i = find_any(m, ip, port);
    if (i == 0 || (i > 0 && m->v[i].alias)) return; /* our own address, or known */
    /* An address heard from as a process of its own (a life of its own,
     * dead or alive) is no alias on any ping's word: a sealed datagram
     * replays for 60 s, and a recording of our own ping of a dead member,
     * sent back to us, read as that ping come back through an address of
     * ours. A node cut off alone took both others so, counted itself the
     * whole cluster and acknowledged W=2 writes with its one copy (dht-sim
     * --replayer-cover --nodes 3, seed 133). */
    if (i > 0 && m->v[i].incarnation != 0) return;
    if (i < 0 && m->aliases >= ALIASES_MAX) return;
    char a[32], o[32];
    node_addr_str(ip, port, a);
    if (oip == m->v[0].ip && oport == m->v[0].port)
        node_log(m->n, "%s is an address of this node (a ping sent to it reached this node): "
                 "not a member, dropped from the member list", a);
    else
        node_log(m->n, "%s is another address of member %s (a ping sent to it was answered by "
                 "that node): not a member, dropped from the member list", a,
                 node_addr_str(oip, oport, o));
    if (i < 0) { /* never a member here: kept, so that gossip of it is ignored */
        if ((i = add(m, ip, port)) < 0) return;
        m->digest -= entry_digest(&m->v[i]);
        m->known--;
        m->v[i].state = MEMBER_GONE;
    } else if (m->v[i].state != MEMBER_GONE) {
        set_state(m, (uint32_t)i, MEMBER_GONE); /* off the ring: its slots move */
    }
    member *e = &m->v[i];
    list_del(m, L_NEWS, (uint32_t)i);
    list_del(m, L_SUSPECT, (uint32_t)i);
    list_del(m, L_DEAD, (uint32_t)i);
    e->alias = true;
    e->since = node_now(m->n);
    m->aliases++;
    for (int k = 0; k < PROBES; k++)
        if (m->probes[k].on && m->probes[k].target == (uint32_t)i) m->probes[k].on = false;
}

/* A process speaks as ip:port, which we took for an alias: it is a member
 * after all (the setup changed). */
static void unalias(members *m, uint32_t ip, uint16_t port) {
    long i = find_any(m, ip, port);
    if (i <= 0 || !m->v[i].alias) return;
    m->v[i].alias = false;
    m->aliases--;
    char a[32];
    node_log(m->n, "%s speaks for itself: a member again, no alias", node_addr_str(ip, port, a));
}

/* An ACK to our ping of the address it says back, from a process that
 * advertises another: the pinged address is that process's alias. A relayed
 * ACK says none back (the helper's entry is not the pinged one's). */
static void alias_from_ack(members *m, uint64_t seq, const Peer *p) {
    if (!p->from || !p->to_port || p->to_port > 65535 || p->from->port == 0 ||
        p->from->port > 65535)
        return;
    const struct pinged *g = &m->pinged[seq % PINGS_KEPT];
    if (!seq || g->seq != seq || g->ip != p->to_ip || g->port != p->to_port) return;
    make_alias(m, p->from->ip, (uint16_t)p->from->port, p->to_ip, (uint16_t)p->to_port);
}

size_t members_aliases(const members *m) { return m->aliases; }
uint64_t members_self_id(const members *m) { return m->self_id; }

/* A probe's ack carries the peer's digest: twice in a row different from
 * ours while neither of us has news in flight, we exchange whole lists. */
static void compare_digests(members *m, const Peer *p, const struct sockaddr_in *from) {
    if (p->n_digests < 1 || p->digests[0] == m->digest) {
        m->mismatches = 0;
        return;
    }
    uint64_t now = node_now(m->n);
    if ((p->flags & PEER_GOSSIP_BUSY) || m->lists[L_NEWS].n ||
        (m->last_sync && now - m->last_sync < MEMBERS_SYNC_MS))
        return;
    if (++m->mismatches < 2) return;
    m->mismatches = 0;
    m->last_sync = now;
    send_full(m, from, 0);
}

void members_receive(members *m, const uint8_t *id, size_t idlen, const Peer *p,
                     const struct sockaddr_in *from) {
    uint64_t now = node_now(m->n);
    if (now < m->paused_until) return;
    bool to_ok = p->to_port && p->to_port <= 65535;
    /* the ping was sent to an address not ours */
    bool to_other = to_ok && (p->to_ip != m->v[0].ip || p->to_port != m->v[0].port);
    /* ... to a live member's, one heard of at a life of its own: it was not
     * sent to us. A sealed datagram replays from anywhere for up to 60 s
     * (auth.h), and such a ping was taken for proof of an alias: A's ping
     * of B sent back to A read as A's own come back through B's address,
     * and B left A's list; sent to D, D's ACK said B's address back and A
     * took B for D's alias. One recorded datagram took a live member off
     * the ring. Dropped unanswered: if that address does reach us (the
     * setup changed), the member dies for want of answers, and a ping of
     * the dead finds the alias then. */
    if ((p->flags & PEER_GOSSIP_PROBE) && to_other) {
        long t = find_any(m, p->to_ip, (uint16_t)p->to_port);
        if (t > 0 && !m->v[t].alias && is_live(m->v[t].state) && m->v[t].incarnation != 0)
            return;
    }
    /* Our own datagram, back through an address of ours that we took for a
     * member's (a peers file names us by it): a ping of it is not answered
     * (our own ACK kept it alive), and the address leaves the list. */
    if (p->from && p->from->id == m->self_id) {
        if ((p->flags & PEER_GOSSIP_PROBE) && to_ok)
            make_alias(m, m->v[0].ip, m->v[0].port, p->to_ip, (uint16_t)p->to_port);
        return;
    }
    /* a process that advertises an address we took for an alias */
    if (p->from && p->from->port && p->from->port <= 65535)
        unalias(m, p->from->ip, (uint16_t)p->from->port);
    m->accused = false;
    /* clocks: our stamps go above what the others stamped (node.h) */
    if (p->stamp) node_stamp_seen(m->n, p->stamp);
    /* tombstones: whether our store was outlived by the cluster (node.h) */
    node_floor_seen(m->n, p->gc_floor);
    if (p->from) merge_one(m, p->from);
    for (size_t i = 0; i < p->n_members; i++) merge_one(m, p->members[i]);
    /* Pinged at an address not ours: one that reaches us, no member (before
     * pointers into the list are taken: make_alias may grow it). Only the
     * sender says so: a member heard of at a life of its own is left to our
     * own pings of it (which come back to us if it is ours), so that no
     * member's word takes a live one off our list. */
    if ((p->flags & PEER_GOSSIP_PROBE) && to_other) {
        long a = find_any(m, p->to_ip, (uint16_t)p->to_port);
        if (a < 0 || m->v[a].incarnation == 0)
            make_alias(m, m->v[0].ip, m->v[0].port, p->to_ip, (uint16_t)p->to_port);
    }
    uint64_t seq = id_seq(id, idlen);
    long sender = members_find(m, from->sin_addr.s_addr, ntohs(from->sin_port));
    if (sender > 0) {
        m->v[sender].siphash = (p->flags & PEER_GOSSIP_SIPHASH) != 0;
        heard_placement(m, (uint32_t)sender, p->placement);
    }
    /* The clocks read are those of the member that wrote it (its own entry,
     * sealed with it), not of the address it came from (a recording of
     * another's sent from there read as that address's own), and a GOSSIP
     * well behind its writer's monotonic clock (a recording sent again)
     * does not read its wall clock: that reading would hold its lead back
     * by as long as the recording was kept, and our stamps with it. */
    long writer = p->from && p->from->port && p->from->port <= 65535
                      ? members_find(m, p->from->ip, (uint16_t)p->from->port) : -1;
    if (writer > 0) {
        uint64_t inc = p->from->incarnation;
        members_heard_mono(m, (uint32_t)writer, inc, p->mono);
        if (members_mono_late(m, (uint32_t)writer, inc, p->mono) != 1)
            heard_wall(m, (uint32_t)writer, p->wall);
    }
    const member *about = sender > 0 ? &m->v[sender] : NULL;
    /* A member we forgot (GONE: dead for forget_ms, as the far side of a
     * long partition is) is alive after all. Its entry ranks below ours at
     * the pair we kept, so it is told it is dead (a ping's ack carries it,
     * otherwise a message of its own) and refutes above it. */
    member dead;
    long g = sender < 0 ? find_any(m, from->sin_addr.s_addr, ntohs(from->sin_port)) : -1;
    if (g > 0 && m->v[g].state == MEMBER_GONE && !m->v[g].alias) {
        dead = as_dead(&m->v[g]);
        about = &dead;
        if (!(p->flags & PEER_GOSSIP_PROBE)) send_msg(m, from, NULL, 0, about, NULL);
    }
    /* A member that holds us suspect or dead, even at a pair we have left
     * behind (one that never learnt our incarnation), hears our entry from us
     * at once: a ping's ack carries it; otherwise a message of its own. */
    if (m->accused && sender > 0 && !(p->flags & PEER_GOSSIP_PROBE))
        send_msg(m, from, NULL, 0, about, NULL);

    if (p->flags & PEER_GOSSIP_PROBE) {
        if (idlen == WIRE_ID_LEN) { /* the ACK says where the ping came, if not here */
            m->echo_ip = to_other ? p->to_ip : 0;
            m->echo_port = to_other ? (uint16_t)p->to_port : 0;
            send_msg(m, from, id, PEER_GOSSIP_ACK, about, NULL);
            m->echo_ip = m->echo_port = 0;
        }
    } else if (p->flags & PEER_GOSSIP_PROBE_REQ) {
        run_relay(m, id, idlen, p, from);
    } else if (p->flags & PEER_GOSSIP_ACK) {
        relay *r;
        alias_from_ack(m, seq, p);
        struct probe *pr = seq ? probe_find(m, seq) : NULL;
        if (pr) {
            probe_acked(m, pr);
            compare_digests(m, p, from);
        } else if (seq && (r = relay_find(m, seq))) {
            r->on = false;
            send_msg(m, &r->to, r->id, PEER_GOSSIP_ACK, NULL, NULL);
        }
    } else if (p->flags & PEER_GOSSIP_NACK) {
        struct probe *pr = seq ? probe_find(m, seq) : NULL;
        if (pr) pr->nacks++;
    } else if ((p->flags & PEER_GOSSIP_SYNC_END) && !(p->flags & PEER_GOSSIP_SYNC_REPLY) &&
               sender > 0 && (!m->last_sync_reply || now - m->last_sync_reply >= 1000)) {
        m->last_sync_reply = now;
        send_full(m, from, PEER_GOSSIP_SYNC_REPLY);
    }
}

/* ---- the clock --------------------------------------------------------------- */

/* A member's own reading of its wall clock (node.h node_clock), kept
 * against node_now, which no step of our wall clock moves: the node's lead
 * goes up at once, and down at the next reckoning (lead_reckon). A reading
 * past the clock bound is none. */
static void heard_wall(members *m, uint32_t i, uint64_t wall) {
    if (!wall || wall > node_wall_ms(m->n) + WIRE_MAX_AHEAD_MS) return;
    int64_t clock = (int64_t)wall - (int64_t)node_now(m->n);
    m->v[i].clock = clock;
    /* as lead_reckon counts it: dead or not (a lead outlives its death) */
    if (clock > m->n->lead && m->v[i].state != MEMBER_GONE) m->n->lead = clock;
}

/* The lead anew from the members' clocks, every LEAD_RECKON_MS: a member
 * whose clock was set back, or that was forgotten, leads no more. */
#define LEAD_RECKON_MS 100
static void lead_reckon(members *m, uint64_t now) {
    if (now < m->lead_at + LEAD_RECKON_MS) return;
    m->lead_at = now;
    int64_t lead = INT64_MIN;
    for (uint32_t i = 1; i < m->len; i++)
        if (m->v[i].clock > lead && m->v[i].state != MEMBER_GONE) lead = m->v[i].clock;
    m->n->lead = lead;
}

#define MONO_DRIFT 1000 /* the reckoning falls 1 ms each MONO_DRIFT ms */

static int64_t mono_reckoned(const member *e, uint64_t now) {
    return e->mono - (int64_t)((now - e->mono_at) / MONO_DRIFT);
}

void members_heard_mono(members *m, uint32_t i, uint64_t inc, uint64_t mono) {
    member *e = &m->v[i];
    if (!mono || !inc || inc != e->incarnation) return;
    uint64_t now = node_now(m->n);
    int64_t off = (int64_t)mono - (int64_t)now;
    if (e->mono != INT64_MIN && e->mono_inc == inc && off <= mono_reckoned(e, now)) return;
    e->mono = off; /* the reckoning starts again from here */
    e->mono_inc = inc;
    e->mono_at = now;
}

int members_mono_late(const members *m, uint32_t i, uint64_t inc, uint64_t mono) {
    const member *e = &m->v[i];
    if (!mono || e->mono == INT64_MIN || !inc || e->mono_inc != inc) return -1;
    uint64_t now = node_now(m->n);
    int64_t its = (int64_t)now + mono_reckoned(e, now);
    if (its <= 0) return -1;
    return (int64_t)(mono + MEMBERS_LATE_MS) < its;
}

/* When this node itself was held up (no CPU, a long stall), the silence of
 * others meanwhile is not theirs: the time lost is forgiven, and our health
 * drops (Lifeguard), slowing our probes until acks come back. */
static void forgive_stall(members *m, uint64_t now) {
    if (!m->last_tick || now <= m->last_tick + 2 * period(m)) return;
    /* the whole gap: what is due now waits until what arrived during the
     * stall (refutations, acks) has been read */
    uint64_t lost = now - m->last_tick;
    for (int k = 0; k < PROBES; k++) {
        m->probes[k].ask_at += lost;
        m->probes[k].end_at += lost;
    }
    for (int k = 0; k < RELAYS; k++) m->relays[k].deadline += lost;
    idxlist *S = &m->lists[L_SUSPECT];
    for (size_t k = 0; k < S->n; k++) m->v[S->v[k]].deadline += lost;
    if (m->health < MEMBERS_MAX_HEALTH) m->health++;
}

static void gossip_round(members *m, uint64_t now) {
    if (m->lists[L_NEWS].n) {
        for (unsigned k = 0; k < m->n->cfg.fanout; k++) {
            long t = random_member(m, MEMBER_ALIVE, -1);
            if (t > 0) send_msg(m, &m->v[t].addr, NULL, 0, NULL, NULL);
        }
    }
    /* the dead: forgotten after forget_ms, their slots freed after as long */
    idxlist *D = &m->lists[L_DEAD];
    bool freed = false;
    for (size_t k = 0; k < D->n;) {
        uint32_t i = D->v[k];
        if (now < m->v[i].deadline) k++;
        else if (m->v[i].state == MEMBER_DEAD) set_state(m, i, MEMBER_GONE), k++;
        else free_slot(m, i), freed = true; /* moves another to k */
    }
    /* the index, once for all the slots freed (once a slot, forgetting
     * 20,000 members at once took one round 594 ms); until then a freed
     * slot's entry (address 0:0) matches no lookup, and on failure the old
     * index stays */
    if (freed) index_rebuild(m, m->len);
}

/* The suspected are pinged every period, a few at a time, their entry in
 * the ping: one that can hear refutes within a period (after a partition
 * heals, for one), not after a whole pass of the probe order. */
static void ping_suspects(members *m) {
    idxlist *S = &m->lists[L_SUSPECT];
    for (unsigned k = 0; k < SUSPECT_PINGS && k < S->n; k++) {
        uint32_t i = S->v[S->n <= SUSPECT_PINGS ? k : rnd_next(m) % S->n];
        uint8_t id[WIRE_ID_LEN];
        seq_id(++m->seq, id);
        send_msg(m, &m->v[i].addr, id, PEER_GOSSIP_PROBE, &m->v[i], NULL);
    }
}

/* The dead are pinged, their entry in the ping, so that a healed partition
 * or a restarted node is found within a period or two: each dead member
 * about DEAD_PINGS times a period by the cluster as a whole, whatever its
 * size (a node pings one with chance DEAD_PINGS x dead / live). */
static void ping_dead(members *m) {
    size_t live = ring_size(m->ring), dead = m->known - live;
    idxlist *D = &m->lists[L_DEAD];
    if (!dead || !D->n) return;
    /* alone (every other member dead here), a dead one each period: it
     * returned at once when alone, and a 2-node cluster, or one whose every
     * node was cut off alone for a few seconds, stayed apart for forget_ms
     * (an hour) after the network came back (dht-sim --nodes 2 --faults
     * partition: 8 of seeds 1..10) */
    double chance = live < 2 ? 1.0 : (double)DEAD_PINGS * (double)dead / (double)(live - 1);
    if (chance < 1 && (double)(rnd_next(m) % 1000000) >= chance * 1e6) return;
    for (int tries = 0; tries < 8; tries++) {
        uint32_t i = D->v[rnd_next(m) % D->n];
        if (m->v[i].state != MEMBER_DEAD) continue; /* gone */
        uint8_t id[WIRE_ID_LEN];
        seq_id(++m->seq, id);
        send_msg(m, &m->v[i].addr, id, PEER_GOSSIP_PROBE, &m->v[i], NULL);
        return;
    }
}

/* A seed (the peers file) that we do not hold live (forgotten, or never
 * heard of) is pinged every SEED_PING_PERIODS periods, one at a time, as a
 * dead member is (its entry, as dead, in the ping, so that it refutes).
 * Without it the two sides of a partition that outlasted forget_ms had
 * forgotten each other and stayed apart for good after it healed: the dead
 * are pinged, the forgotten not. */
static void ping_lost_seed(members *m, uint64_t now) {
    if (!m->nseeds || now < m->next_seed_ping) return;
    m->next_seed_ping = now + SEED_PING_PERIODS * period(m);
    for (size_t tries = 0; tries < m->nseeds; tries++) {
        ring_node s = m->seeds[m->seed_next++ % m->nseeds];
        long i = find_any(m, s.ip, s.port);
        if (i >= 0 && (m->v[i].state != MEMBER_GONE || m->v[i].alias)) continue;
        member dead = i > 0 ? as_dead(&m->v[i]) : (member){0};
        struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(s.port),
                                 .sin_addr.s_addr = s.ip};
        uint8_t id[WIRE_ID_LEN];
        seq_id(++m->seq, id);
        send_msg(m, &to, id, PEER_GOSSIP_PROBE, i > 0 ? &dead : NULL, NULL);
        return;
    }
}

/* An alias is taken from what a datagram says of where a ping went, and a
 * sealed datagram replays for up to 60 s: member Y's ping of X, sent again
 * to a node that had not heard from X yet (just restarted), made X an
 * address of that node. That stood while X did not speak to it, and X did
 * not when it had forgotten the node, or taken it for an alias in turn: the
 * two held each other dead for good (dht-sim --replayer-cover W=1 R=1 seed
 * 3). So every ALIAS_PING_PERIODS periods one alias is pinged, in turn:
 * an address of ours brings our ping back, another member's answers with
 * that member's ACK saying the address back (both keep it an alias), and a
 * process of its own answers as itself, a member again (unalias). */
static void ping_alias(members *m, uint64_t now) {
    if (!m->aliases || m->len < 2 || now < m->next_alias_ping) return;
    m->next_alias_ping = now + ALIAS_PING_PERIODS * period(m);
    for (size_t k = 1; k < m->len; k++) {
        uint32_t i = 1 + (uint32_t)(m->alias_next++ % (m->len - 1));
        if (!m->v[i].alias) continue;
        uint8_t id[WIRE_ID_LEN];
        seq_id(++m->seq, id);
        send_msg(m, &m->v[i].addr, id, PEER_GOSSIP_PROBE, NULL, NULL);
        return;
    }
}

/* Whether more members are live, and heard from, than died within
 * majority_ms or are seeds never heard from; notes when not (minority_at).
 * A new process holds its seeds alive until its probes say otherwise: one
 * restarted on the minority side of a partition counted itself in a
 * majority and took a write that lost to an earlier one (dht-sim 1212). */
static bool majority_now(members *m, uint64_t now) {
    size_t live = ring_size(m->ring), recent = 0, unheard = 0;
    idxlist *D = &m->lists[L_DEAD];
    for (size_t k = 0; k < D->n; k++) {
        const member *e = &m->v[D->v[k]];
        uint64_t died = e->deadline - m->n->cfg.forget_ms; /* deadline: gone then */
        recent += e->state == MEMBER_DEAD && died + m->n->cfg.majority_ms > now;
    }
    for (size_t i = 1; i < m->len; i++)
        unheard += is_live(m->v[i].state) && m->v[i].incarnation == 0 && m->v[i].port;
    bool majority = live - unheard > recent + unheard;
    if (!majority) m->minority_at = now ? now : 1;
    return majority;
}

/* A minority ends as the members on the far side come back one by one,
 * before this node's ring is the others' again: for MAJORITY_GRACE_PERIODS
 * after, writes are still refused (a write taken 100 ms after a heal, on
 * replicas another node's ring did not use, lost to an earlier one:
 * dht-sim seeds 1212, 1831). The gossip rounds note a minority (members_tick)
 * when no write asks. */
bool members_majority(members *m) {
    uint64_t now = node_now(m->n), grace = MAJORITY_GRACE_PERIODS * period(m);
    if (!m->n->cfg.majority_ms) return true;
    if (m->majority_at && now - m->majority_at < 50) return m->majority;
    m->majority_at = now ? now : 1;
    bool majority = majority_now(m, now);
    return m->majority = majority && (!m->minority_at || now - m->minority_at >= grace);
}

uint64_t members_tick(members *m, uint64_t now) {
    forgive_stall(m, now);
    m->last_tick = now;
    if (now < m->paused_until) return m->paused_until;
    uint64_t next = UINT64_MAX;
    lead_reckon(m, now);

    for (int k = 0; k < PROBES; k++) {
        struct probe *pr = &m->probes[k];
        if (pr->on && !pr->asked && now >= pr->ask_at) ask_helpers(m, pr);
        if (pr->on && now >= pr->end_at) probe_failed(m, pr);
    }
    if (now >= m->next_probe) {
        start_probe(m, now);
        m->next_probe = now + probe_period(m);
    }
    for (int k = 0; k < PROBES; k++) {
        const struct probe *pr = &m->probes[k];
        uint64_t due = pr->asked ? pr->end_at : pr->ask_at;
        if (pr->on && due < next) next = due;
    }
    if (m->next_probe < next) next = m->next_probe;

    idxlist *S = &m->lists[L_SUSPECT];
    for (size_t k = 0; k < S->n;) {
        uint32_t i = S->v[k];
        if (now >= m->v[i].deadline) {
            announce(m, i);
            set_state(m, i, MEMBER_DEAD); /* moves another to k */
        } else {
            if (m->v[i].deadline < next) next = m->v[i].deadline;
            k++;
        }
    }
    for (int k = 0; k < RELAYS; k++) {
        relay *r = &m->relays[k];
        if (!r->on) continue;
        if (now >= r->deadline) {
            r->on = false;
            send_msg(m, &r->to, r->id, PEER_GOSSIP_NACK, NULL, NULL);
        } else if (r->deadline < next) {
            next = r->deadline;
        }
    }
    if (node_due(&m->next_gossip, now, m->n->cfg.gossip_ms, &next)) {
        gossip_round(m, now);
        ping_suspects(m);
        ping_dead(m);
        ping_lost_seed(m, now);
        ping_alias(m, now);
        if (m->n->cfg.majority_ms) majority_now(m, now);
    }
    return next;
}

void members_pause(members *m, uint64_t ms) { m->paused_until = node_now(m->n) + ms; }

/* ---- queries --------------------------------------------------------------- */

size_t members_total(const members *m) { return m->len; }
size_t members_known(const members *m) { return m->known; }
size_t members_live(const members *m) { return ring_size(m->ring); }
const member *members_at(const members *m, size_t i) { return i < m->len ? &m->v[i] : NULL; }
uint64_t members_epoch(const members *m) { return m->epoch; }
unsigned members_health(const members *m) { return m->health; }

size_t members_pref(const members *m, unsigned slot, size_t want, uint32_t *out) {
    return ring_slot_lookup(m->ring, slot, want, out); /* ring ids are member indexes */
}

uint16_t members_resp_port(const members *m, size_t i) {
    if (i >= m->len) return 0;
    if (m->v[i].resp_port || m->v[i].no_resp) return m->v[i].resp_port;
    /* not heard yet: the offset of our own */
    long p = (long)m->v[i].port + (long)m->v[0].resp_port - (long)m->v[0].port;
    return m->v[0].resp_port && p > 0 && p <= 65535 ? (uint16_t)p : 0;
}

uint64_t members_settle_ms(const members *m) {
    return 2 * (uint64_t)news_budget(m) * period(m) + 1000;
}

/* Whether slot's row and its members' states are older than now - wait. */
static bool settled(members *m, unsigned slot, uint64_t now, uint64_t wait) {
    if (ring_slot_mark(m->ring, slot) + wait > now) return false;
    uint32_t rep[RING_MAX_REPLICAS];
    size_t k = members_pref(m, slot, m->n->cfg.replicas, rep);
    for (size_t i = 0; i < k; i++)
        if (m->v[rep[i]].since + wait > now) return false;
    return true;
}

bool members_slot_settled(members *m, unsigned slot) {
    return settled(m, slot, node_now(m->n), members_settle_ms(m));
}

size_t members_slots_settling(members *m) {
    uint64_t now = node_now(m->n), wait = members_settle_ms(m);
    size_t k = 0;
    for (unsigned s = 0; s < RING_SLOTS; s++) k += !settled(m, s, now, wait);
    return k;
}

size_t members_slots(const members *m, size_t i) { return ring_slot_count(m->ring, (uint32_t)i); }

size_t members_misplaced(members *m) {
    /* counted again only when the live set or a placement heard changed:
     * every -MOVED asks (repl_slot_redirect) */
    if (m->misplaced_at == m->placements + 1) return m->misplaced;
    size_t k = 0;
    for (size_t i = 1; i < m->len; i++)
        k += m->v[i].port && is_live(m->v[i].state) && m->v[i].placed &&
             m->v[i].placement != m->v[0].placement;
    m->misplaced_at = m->placements + 1;
    m->misplaced = k;
    return k;
}

const char *members_state_name(int state) {
    switch (state) {
    case MEMBER_ALIVE: return "alive";
    case MEMBER_SUSPECT: return "suspect";
    case MEMBER_DEAD: return "dead";
    default: return "gone";
    }
}

size_t members_format(const members *m, char *buf, size_t cap) {
    size_t off = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; i < m->len && off + 1 < cap; i++) {
        if (m->v[i].port == 0 || m->v[i].state == MEMBER_GONE) continue;
        char a[32];
        int w = snprintf(buf + off, cap - off, "%s %s\n",
                         node_addr_str(m->v[i].ip, m->v[i].port, a),
                         members_state_name(m->v[i].state));
        if (w < 0 || (size_t)w >= cap - off) {
            buf[off] = 0;
            break;
        }
        off += (size_t)w;
    }
    return off;
}
