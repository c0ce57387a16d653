/* members: member list, heartbeat gossip, failure detection, the ring. */
#include "members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

struct members {
    node *n;
    member *v;
    size_t len, cap;
    uint32_t *index;      /* open addressing on (ip, port): member index + 1, 0 empty */
    size_t index_mask;
    ring *ring;
    uint32_t *ring_map;   /* ring index -> member index */
    size_t live;
    uint64_t epoch;
    members_changed_fn changed;   /* the live set changed, or a member restarted */
    void *changed_ctx;
    uint64_t next_gossip;         /* loop time of the next gossip round */
    uint64_t paused_until;
    uint64_t last_tick;   /* loop time of the last gossip round */
    uint64_t rnd;         /* xorshift state for picking peers */
};

static uint64_t rnd_next(members *m) {
    uint64_t x = m->rnd;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return m->rnd = x;
}

static size_t addr_slot(const members *m, uint32_t ip, uint16_t port) {
    uint64_t k = ((uint64_t)ip << 16 | port) * 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 32) & m->index_mask;
}

/* Rebuilds the index for at least `want` members. 0, or -1 on no memory. */
static int index_grow(members *m, size_t want) {
    size_t size = 64;
    while (size < 2 * want) size *= 2;
    uint32_t *ix = calloc(size, sizeof *ix);
    if (!ix) return -1;
    free(m->index);
    m->index = ix;
    m->index_mask = size - 1;
    for (size_t i = 0; i < m->len; i++) {
        size_t j = addr_slot(m, m->v[i].ip, m->v[i].port);
        while (ix[j]) j = (j + 1) & m->index_mask;
        ix[j] = (uint32_t)i + 1;
    }
    return 0;
}

static int add(members *m, uint32_t ip, uint16_t port) {
    if (2 * (m->len + 1) > m->index_mask + 1 && index_grow(m, m->len + 1) != 0) return -1;
    if (m->len == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        member *nv = realloc(m->v, ncap * sizeof *nv);
        uint32_t *nmap = realloc(m->ring_map, ncap * sizeof *nmap);
        if (nv) m->v = nv;
        if (nmap) m->ring_map = nmap;
        if (!nv || !nmap) return -1;
        m->cap = ncap;
    }
    member *e = &m->v[m->len];
    memset(e, 0, sizeof *e);
    e->ip = ip;
    e->port = port;
    e->addr.sin_family = AF_INET;
    e->addr.sin_addr.s_addr = ip;
    e->addr.sin_port = htons(port);
    e->state = MEMBER_ALIVE;
    e->seen_ms = e->changed_ms = node_now(m->n);
    size_t j = addr_slot(m, ip, port);
    while (m->index[j]) j = (j + 1) & m->index_mask;
    m->index[j] = (uint32_t)m->len + 1;
    return (int)m->len++;
}

size_t members_live_set(const members *m, ring_node *nodes, uint32_t *map) {
    size_t k = 0;
    for (size_t i = 0; i < m->len; i++) {
        if (m->v[i].state == MEMBER_DEAD) continue;
        nodes[k] = (ring_node){m->v[i].ip, m->v[i].port};
        map[k++] = (uint32_t)i;
    }
    return k;
}

/* Rebuilds the ring from the live members. */
static void rebuild(members *m) {
    size_t cap = m->len ? m->len : 1;
    ring_node *nodes = malloc(cap * sizeof *nodes);
    uint32_t *map = malloc(cap * sizeof *map);
    if (!nodes || !map) goto out; /* keep the old ring: stale, never wrong in shape */
    size_t k = members_live_set(m, nodes, map);
    if (ring_build(m->ring, nodes, k) == 0) {
        memcpy(m->ring_map, map, k * sizeof *map);
        m->live = k;
        m->epoch++;
    }
out:
    free(nodes);
    free(map);
}

static void set_state(members *m, member *e, int state) {
    if (e->state == state) return;
    int was_live = e->state != MEMBER_DEAD, is_live = state != MEMBER_DEAD;
    e->state = state;
    e->changed_ms = node_now(m->n);
    if (m->n->env.member_state) m->n->env.member_state(m->n->env.ctx, e->ip, e->port, state);
    if (!m->n->cfg.quiet) {
        char a[32];
        node_log(m->n, "member %s is %s", node_addr_str(e->ip, e->port, a),
                 members_state_name(state));
    }
    if (was_live != is_live) {
        rebuild(m);
        m->changed(m->changed_ctx);
    }
}

members *members_new(node *n, members_changed_fn changed, void *ctx) {
    members *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n = n;
    m->changed = changed;
    m->changed_ctx = ctx;
    m->ring = ring_new(n->cfg.vnodes);
    if (!m->ring || add(m, n->self.sin_addr.s_addr, ntohs(n->self.sin_port)) < 0) {
        members_free(m);
        return NULL;
    }
    m->v[0].incarnation = n->incarnation;
    m->rnd = node_random(n) | 1;
    m->next_gossip = node_now(n);
    rebuild(m);
    return m;
}

void members_free(members *m) {
    if (!m) return;
    ring_free(m->ring);
    free(m->index);
    free(m->v);
    free(m->ring_map);
    free(m);
}

long members_find(const members *m, uint32_t ip, uint16_t port) {
    if (!m->index) return -1;
    for (size_t j = addr_slot(m, ip, port); m->index[j]; j = (j + 1) & m->index_mask) {
        const member *e = &m->v[m->index[j] - 1];
        if (e->ip == ip && e->port == port) return (long)m->index[j] - 1;
    }
    return -1;
}

int members_add_seeds(members *m, const ring_node *seeds, size_t k) {
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        if (members_find(m, seeds[i].ip, seeds[i].port) < 0 &&
            add(m, seeds[i].ip, seeds[i].port) < 0)
            rc = -1;
    rebuild(m);
    return rc;
}

int members_add_seed(members *m, uint32_t ip, uint16_t port) {
    ring_node one = {ip, port};
    return members_add_seeds(m, &one, 1);
}

static int pair_cmp(uint64_t ia, uint64_t ha, uint64_t ib, uint64_t hb) {
    if (ia != ib) return ia < ib ? -1 : 1;
    if (ha != hb) return ha < hb ? -1 : 1;
    return 0;
}

/* Only we speak for ourselves, but what others say of us matters. An entry
 * naming a later incarnation than ours (a past life whose clock ran ahead of
 * ours, or our clock stepped back since) outranks everything we say and
 * would keep us off their rings for good: we answer with an incarnation
 * above it (memberlist's refute). A verdict of suspect or dead at our
 * incarnation is answered by a heartbeat above the one it names. */
static void refute(members *m, const Member *in) {
    member *me = &m->v[0];
    if (in->incarnation > me->incarnation) {
        me->incarnation = in->incarnation + 1;
        me->heartbeat = 0;
        m->n->incarnation = me->incarnation;
        if (m->n->env.incarnation) m->n->env.incarnation(m->n->env.ctx, me->incarnation);
        if (!m->n->cfg.quiet)
            node_log(m->n, "refuting incarnation %llu: now %llu",
                     (unsigned long long)in->incarnation, (unsigned long long)me->incarnation);
    } else if (in->incarnation == me->incarnation && in->state != MEMBER_ALIVE &&
               in->heartbeat >= me->heartbeat) {
        me->heartbeat = in->heartbeat + 1;
    }
}

static void merge_one(members *m, const Member *in) {
    if (in->port == 0 || in->port > 65535 || in->state > MEMBER_DEAD) return;
    /* an incarnation from a clock far ahead would stand for good: refused */
    if (in->incarnation > node_wall_ms(m->n) + WIRE_MAX_AHEAD_MS) return;
    long i = members_find(m, in->ip, (uint16_t)in->port);
    if (i == 0) {
        refute(m, in);
        return;
    }
    bool is_new = i < 0;
    if (is_new) {
        if ((i = add(m, in->ip, (uint16_t)in->port)) < 0) return;
        m->v[i].state = MEMBER_DEAD; /* set below, rebuilding the ring once */
    }
    member *e = &m->v[i];
    int c = is_new ? 1 : pair_cmp(in->incarnation, in->heartbeat, e->incarnation, e->heartbeat);
    if (c > 0) {
        /* a new process at a live address may have lost its records:
         * re-replication hands it its keys */
        if (!is_new && in->incarnation > e->incarnation && e->state != MEMBER_DEAD &&
            in->state != MEMBER_DEAD)
            m->changed(m->changed_ctx);
        e->incarnation = in->incarnation;
        e->heartbeat = in->heartbeat;
        e->seen_ms = node_now(m->n);
        set_state(m, e, in->state == MEMBER_DEAD ? MEMBER_DEAD : MEMBER_ALIVE);
    } else if (c == 0 && in->state == MEMBER_DEAD) {
        set_state(m, e, MEMBER_DEAD);
    }
}

static void send_own_entry(members *m, const member *to, uint32_t flags);

void members_merge(members *m, const Peer *p) {
    if (node_now(m->n) < m->paused_until) return;
    if (p->from) merge_one(m, p->from);
    for (size_t i = 0; i < p->n_members; i++) merge_one(m, p->members[i]);
    /* a probe is answered at once with a fresh heartbeat */
    if ((p->flags & PEER_GOSSIP_PROBE) && p->from && p->from->port && p->from->port <= 65535) {
        long i = members_find(m, p->from->ip, (uint16_t)p->from->port);
        if (i > 0) {
            m->v[0].heartbeat++;
            send_own_entry(m, &m->v[i], 0);
        }
    }
}

static void fill(const member *e, Member *out) {
    member__init(out);
    out->ip = e->ip;
    out->port = e->port;
    out->incarnation = e->incarnation;
    out->heartbeat = e->heartbeat;
    out->state = (uint32_t)e->state;
}

static void send_gossip(members *m, const member *to, Peer *p) {
    uint8_t id[WIRE_ID_LEN] = {0};
    node_send_peer(m->n, &to->addr, id, sizeof id, p);
}

/* Picks up to k distinct random members in `state_live` (live or dead),
 * never ourselves. */
static size_t pick(members *m, bool live, size_t k, size_t *out) {
    size_t cand = 0;
    for (size_t i = 1; i < m->len; i++)
        if ((m->v[i].state != MEMBER_DEAD) == live) cand++;
    size_t got = 0;
    for (size_t i = 1; i < m->len && got < k; i++) {
        if ((m->v[i].state != MEMBER_DEAD) != live) continue;
        /* selection sampling: each candidate with probability need/left */
        if (rnd_next(m) % cand < k - got) out[got++] = i;
        cand--;
    }
    return got;
}

/* Sends only our own entry to one member (a probe, or a probe's answer). */
static void send_own_entry(members *m, const member *to, uint32_t flags) {
    Member self;
    fill(&m->v[0], &self);
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &self;
    p.flags = flags;
    send_gossip(m, to, &p);
}

/* Silence makes a member suspect, then dead. Past half the suspicion
 * timeout, a silent member is also probed directly every gossip period:
 * news of its heartbeat may just be slow to spread, and its answer settles
 * that before anyone suspects it. */
static void check_timeouts(members *m, uint64_t now) {
    const node_config *cfg = &m->n->cfg;
    for (size_t i = 1; i < m->len; i++) {
        member *e = &m->v[i];
        if (e->state == MEMBER_DEAD) continue;
        uint64_t quiet = now - e->seen_ms;
        if (quiet >= cfg->dead_ms) set_state(m, e, MEMBER_DEAD);
        else if (quiet >= cfg->suspect_ms) set_state(m, e, MEMBER_SUSPECT);
        if (e->state != MEMBER_DEAD && quiet >= cfg->suspect_ms / 2 &&
            now - e->probed_ms >= cfg->gossip_ms) {
            e->probed_ms = now;
            send_own_entry(m, e, PEER_GOSSIP_PROBE);
        }
    }
}

/* When this node itself was held up (no CPU, a long stall), everyone's
 * silence meanwhile is not theirs: the time lost is forgiven. */
static void forgive_stall(members *m, uint64_t now) {
    uint64_t period = m->n->cfg.gossip_ms;
    if (m->last_tick && now - m->last_tick > 2 * period) {
        uint64_t lost = now - m->last_tick - period;
        for (size_t i = 1; i < m->len; i++)
            if (m->v[i].state != MEMBER_DEAD) {
                uint64_t s = m->v[i].seen_ms + lost;
                m->v[i].seen_ms = s < now ? s : now;
            }
    }
    m->last_tick = now;
}

/* One gossip round: our heartbeat grows, silent members are timed out,
 * and the whole list goes to `fanout` live members and one dead one. */
static void gossip_round(members *m, uint64_t now) {
    member *self = &m->v[0];
    self->heartbeat++;
    self->seen_ms = now;
    forgive_stall(m, now);
    check_timeouts(m, now);

    Member *all = malloc(m->len * sizeof *all);
    Member **ptrs = malloc(m->len * sizeof *ptrs);
    size_t *targets = malloc((m->n->cfg.fanout + 1) * sizeof *targets);
    if (!all || !ptrs || !targets) goto done;
    for (size_t i = 0; i < m->len; i++) {
        fill(&m->v[i], &all[i]);
        ptrs[i] = &all[i];
    }
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &all[0];
    p.n_members = m->len;
    p.members = ptrs;
    size_t k = pick(m, true, m->n->cfg.fanout, targets);
    k += pick(m, false, 1, targets + k);
    for (size_t i = 0; i < k; i++) send_gossip(m, &m->v[targets[i]], &p);
done:
    free(all);
    free(ptrs);
    free(targets);
}

uint64_t members_tick(members *m, uint64_t now) {
    uint64_t next = UINT64_MAX;
    if (node_due(&m->next_gossip, now, m->n->cfg.gossip_ms, &next) && now >= m->paused_until)
        gossip_round(m, now);
    return next;
}

void members_pause(members *m, uint64_t ms) {
    uint64_t now = node_now(m->n);
    m->paused_until = now + ms;
    /* On waking, silence while paused is not the others' fault. */
    for (size_t i = 1; i < m->len; i++) m->v[i].seen_ms = now + ms;
}

size_t members_total(const members *m) { return m->len; }
size_t members_live(const members *m) { return m->live; }
const member *members_at(const members *m, size_t i) { return i < m->len ? &m->v[i] : NULL; }
uint64_t members_epoch(const members *m) { return m->epoch; }

size_t members_pref(const members *m, uint64_t h, size_t want, uint32_t *out) {
    size_t k = ring_lookup(m->ring, h, want, out);
    for (size_t i = 0; i < k; i++) out[i] = m->ring_map[out[i]];
    return k;
}

double members_share(const members *m, size_t i) {
    for (size_t r = 0; r < m->live; r++)
        if (m->ring_map[r] == i) return ring_share(m->ring, (uint32_t)r);
    return 0;
}

const char *members_state_name(int state) {
    switch (state) {
    case MEMBER_ALIVE: return "alive";
    case MEMBER_SUSPECT: return "suspect";
    default: return "dead";
    }
}

size_t members_format(const members *m, char *buf, size_t cap) {
    size_t off = 0;
    if (cap) buf[0] = 0;
    for (size_t i = 0; i < m->len && off + 1 < cap; i++) {
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
