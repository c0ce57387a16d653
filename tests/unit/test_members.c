/* Unit tests for members: merge rules, SWIM probes, news, full exchanges,
 * forgetting, the ring. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fake_env.h"
#include "members.h"
#include "repl.h"
#include "wire.h"

/* A node in a fake world (fake_env.h): a clock the test moves, datagrams kept. */
static node *n;

static int setup(void **state) {
    (void)state;
    fake_reset(5000, 1000);
    n = fake_node(NULL, 7000, 1 << 20);
    return n ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fake_node_free(n);
    return 0;
}

/* Moves the clock ms forward one ms at a time, ticking the node when due. */
static void run_for(uint64_t ms) {
    uint64_t end = fake.clock_ms + ms, next = node_tick(n);
    while (fake.clock_ms < end) {
        fake.clock_ms++;
        if (fake.clock_ms >= next) next = node_tick(n);
    }
}

static uint32_t lo(void) { return htonl(INADDR_LOOPBACK); }

static struct sockaddr_in addr(uint16_t port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = lo();
    return a;
}

/* Hands the node a GOSSIP from 127.0.0.1:sender with message ID id. */
static void deliver(uint16_t sender, const uint8_t *id, Peer *p) {
    uint8_t zero[WIRE_ID_LEN] = {0};
    struct sockaddr_in from = addr(sender);
    p->type = PEER_GOSSIP;
    members_receive(n->members, id ? id : zero, WIRE_ID_LEN, p, &from);
}

/* A gossip entry for 127.0.0.1:port, with Redis port resp_port (0: none
 * or not known). */
static Member entry(uint16_t port, uint64_t inc, uint64_t hb, int state, uint16_t resp_port) {
    Member m = MEMBER__INIT;
    m.ip = lo();
    m.port = port;
    m.incarnation = inc;
    m.heartbeat = hb;
    m.state = (uint32_t)state;
    m.resp_port = resp_port;
    return m;
}

/* Merges one gossiped entry, sent by 127.0.0.1:sender. */
static void gossip_entry(uint16_t sender, Member *m) {
    Member *ms[1] = {m};
    Peer p = PEER__INIT;
    p.n_members = 1;
    p.members = ms;
    deliver(sender, NULL, &p);
}

/* Merges one gossiped entry for 127.0.0.1:port, with Redis port resp_port
 * (0: none), sent by 127.0.0.1:sender. */
static void gossip_from(uint16_t sender, uint16_t port, uint64_t inc, uint64_t hb, int state,
                        uint16_t resp_port) {
    Member m = entry(port, inc, hb, state, resp_port);
    gossip_entry(sender, &m);
}

/* n becomes a new node at 7000 whose Redis port is resp_port (0: none). */
static void renew_with_resp_port(uint16_t resp_port) {
    fake_node_free(n);
    node_config c;
    node_defaults(&c);
    c.quiet = true;
    c.resp_port = resp_port;
    n = fake_node(&c, 7000, 1 << 20);
    assert_non_null(n);
}

/* The same, news from a stranger without a Redis port. */
static void gossip(uint16_t port, uint64_t inc, uint64_t hb, int state) {
    gossip_from(7999, port, inc, hb, state, 0);
}

static int state_of(uint16_t port) {
    long i = members_find(n->members, lo(), port);
    assert_true(i >= 0);
    return members_at(n->members, (size_t)i)->state;
}

/* The GOSSIP messages sent so far (batches opened), decoded into a; the
 * first to `port` with all of `flags` (any port: 0), or NULL. Its message
 * ID goes to id when id is not NULL. */
static Peer *sent_gossip_to(wire_arena *a, uint32_t ip, uint16_t port, uint32_t flags,
                            uint8_t *id) {
    size_t kept = fake.nsent < FAKE_SENT_KEEP ? fake.nsent : FAKE_SENT_KEEP;
    for (size_t k = 0; k < kept; k++) {
        if (port && ntohs(fake.sent[k].to.sin_port) != port) continue;
        if (ip && fake.sent[k].to.sin_addr.s_addr != ip) continue;
        wire_frame f;
        if (wire_unpack_msg(a, fake.sent[k].buf, fake.sent[k].len, &f) != 0) continue;
        const uint8_t *frames[64];
        size_t lens[64], nf = 0;
        if (f.kind == WIRE_KIND_BATCH) {
            const uint8_t *q = f.payload, *end = f.payload + f.plen, *fr;
            size_t len;
            while (nf < 64 && wire_batch_next(&q, end, &fr, &len) == 1) {
                frames[nf] = fr;
                lens[nf++] = len;
            }
        } else {
            frames[0] = fake.sent[k].buf;
            lens[0] = fake.sent[k].len;
            nf = 1;
        }
        for (size_t j = 0; j < nf; j++) {
            wire_frame g;
            if (wire_unpack_msg(a, frames[j], lens[j], &g) != 0 || g.kind != WIRE_KIND_PEER) continue;
            Peer *p = wire_unpack_peer(a, g.payload, g.plen);
            if (!p || p->type != PEER_GOSSIP || (p->flags & flags) != flags) continue;
            if (id && g.idlen == WIRE_ID_LEN) memcpy(id, g.id, WIRE_ID_LEN);
            return p;
        }
    }
    return NULL;
}

static Peer *sent_gossip(wire_arena *a, uint16_t port, uint32_t flags, uint8_t *id) {
    return sent_gossip_to(a, 0, port, flags, id);
}

/* Redis ports ride in the gossip entries (issue 12): a member's own
 * entry, or another's news of it, at its incarnation or a later one;
 * before any, the offset of our own; a restart with none clears it. */
static void test_resp_ports_are_gossiped(void **state) {
    (void)state;
    renew_with_resp_port(6000);
    assert_int_equal(members_resp_port(n->members, 0), 6000);
    assert_int_equal(members_add_seed(n->members, lo(), 7001), 0);
    long i = members_find(n->members, lo(), 7001);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 6001); /* not heard: the offset */
    Member m = MEMBER__INIT;
    m.ip = lo();
    m.port = 7001;
    m.incarnation = 5;
    m.heartbeat = 1;
    m.resp_port = 16379;
    Peer p = PEER__INIT;
    p.from = &m;
    deliver(7001, NULL, &p);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 16379);
    gossip(7001, 4, 9, MEMBER_ALIVE);   /* an older life says nothing: kept */
    assert_int_equal(members_resp_port(n->members, (size_t)i), 16379);
    gossip(7001, 6, 0, MEMBER_ALIVE);   /* a new life without one: none */
    assert_int_equal(members_at(n->members, (size_t)i)->resp_port, 0);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 6001);
    /* news of a stranger carries it, and our entries pass it on */
    gossip_from(7001, 7002, 3, 0, MEMBER_ALIVE, 7777);
    i = members_find(n->members, lo(), 7002);
    assert_true(i > 0);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 7777);
    fake.nsent = 0;
    run_for(2000);
    wire_arena *a = wire_arena_new();
    Peer *out = sent_gossip(a, 0, 0, NULL);
    assert_non_null(out);
    assert_non_null(out->from);
    assert_int_equal(out->from->resp_port, 6000);
    wire_arena_free(a);
}

/* A member without a Redis port says so (no_resp), and is then told apart
 * from one whose port is not heard yet: 0, not the offset of our own, so
 * that no Redis client is sent to it (repl_slot_redirect). A relay that
 * knows nothing of it leaves that as it is; a new life with a port clears
 * it; a port given with the flag wins over it. */
static void test_no_redis_port_is_gossiped(void **state) {
    (void)state;
    renew_with_resp_port(6000);
    assert_false(members_at(n->members, 0)->no_resp);
    Member m = entry(7001, 5, 1, MEMBER_ALIVE, 0);
    m.no_resp = true;
    gossip_entry(7001, &m);
    long i = members_find(n->members, lo(), 7001);
    assert_true(i > 0);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 0); /* not 6001 */
    gossip_from(7002, 7001, 5, 2, MEMBER_ALIVE, 0); /* a relay knowing nothing: kept */
    assert_int_equal(members_resp_port(n->members, (size_t)i), 0);
    assert_true(members_at(n->members, (size_t)i)->no_resp);
    /* our entries pass it on */
    fake.nsent = 0;
    run_for(2000);
    wire_arena *a = wire_arena_new();
    bool passed = false;
    for (uint16_t to = 7001; to <= 7002 && !passed; to++) {
        Peer *out = sent_gossip(a, to, 0, NULL);
        for (size_t k = 0; out && k < out->n_members; k++)
            if (out->members[k]->port == 7001) passed = out->members[k]->no_resp;
    }
    assert_true(passed);
    wire_arena_free(a);
    /* a new life with a Redis port */
    gossip_from(7001, 7001, 6, 0, MEMBER_ALIVE, 6390);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 6390);
    assert_false(members_at(n->members, (size_t)i)->no_resp);
    /* the same life saying none: a port known stays (it is the process's) */
    Member none = entry(7001, 6, 1, MEMBER_ALIVE, 0);
    none.no_resp = true;
    gossip_entry(7002, &none);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 6390);
    /* a new life with a port out of range: nothing known, the offset again */
    Member bad = entry(7001, 8, 0, MEMBER_ALIVE, 0);
    bad.resp_port = 70000;
    gossip_entry(7001, &bad);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 6001);
    /* a port and the flag: the port */
    m.port = 7003;
    m.resp_port = 6391;
    gossip_entry(7003, &m);
    i = members_find(n->members, lo(), 7003);
    assert_true(i > 0);
    assert_int_equal(members_resp_port(n->members, (size_t)i), 6391);
    assert_false(members_at(n->members, (size_t)i)->no_resp);
    /* and a node without one says so of itself */
    renew_with_resp_port(0);
    assert_true(members_at(n->members, 0)->no_resp);
    assert_int_equal(members_add_seed(n->members, lo(), 7001), 0);
    fake.nsent = 0;
    run_for(2000);
    a = wire_arena_new();
    Peer *out = sent_gossip(a, 0, 0, NULL);
    assert_non_null(out);
    assert_non_null(out->from);
    assert_true(out->from->no_resp);
    assert_int_equal(out->from->resp_port, 0);
    wire_arena_free(a);
}

/* The slots whose replicas are members a, b and c in that order, into out
 * (RING_SLOTS long); returns how many. */
static size_t slots_placed(uint32_t a, uint32_t b, uint32_t c, unsigned *out) {
    size_t k = 0;
    for (unsigned slot = 0; slot < RING_SLOTS; slot++) {
        uint32_t pref[REPL_MAX_N];
        if (members_pref(n->members, slot, 3, pref) == 3 && pref[0] == a && pref[1] == b &&
            pref[2] == c)
            out[k++] = slot;
    }
    return k;
}

/* A slot's replicas for Redis clients (repl_slot_redis_replicas, what
 * CLUSTER SLOTS lists and -MOVED names first) are those with a Redis port,
 * the first alive one first: with a slot's replicas 7001 (suspected),
 * 7002 (no Redis port) and 7003 in that order, 7003 then 7001. (Ordered by
 * the first alive replica, 7002, and then its Redis port skipped, the
 * suspected 7001 came first.) */
static void test_redis_replicas_put_the_alive_first(void **state) {
    (void)state;
    renew_with_resp_port(6000);
    gossip_from(7001, 7001, 1, 1, MEMBER_ALIVE, 6001);
    Member m = entry(7002, 1, 1, MEMBER_ALIVE, 0);
    m.no_resp = true;
    gossip_entry(7002, &m);
    gossip_from(7003, 7003, 1, 1, MEMBER_ALIVE, 6003);
    gossip(7001, 1, 2, MEMBER_SUSPECT);
    assert_int_equal(state_of(7001), MEMBER_SUSPECT);
    uint32_t i1 = (uint32_t)members_find(n->members, lo(), 7001),
             i2 = (uint32_t)members_find(n->members, lo(), 7002),
             i3 = (uint32_t)members_find(n->members, lo(), 7003);
    static unsigned slots[RING_SLOTS];
    size_t found = slots_placed(i1, i2, i3, slots);
    assert_true(found > 0);
    for (size_t j = 0; j < found; j++) {
        uint32_t rep[REPL_MAX_N];
        assert_int_equal(repl_slot_redis_replicas(n, slots[j], rep), 2);
        assert_int_equal(rep[0], i3);
        assert_int_equal(rep[1], i1);
    }
    /* none of them with a Redis port (new lives without): none, and then
     * this node serves the slot's keys itself (repl_slot_redirect: -1) */
    for (uint16_t port = 7001; port <= 7003; port += 2) {
        Member e = entry(port, 2, 1, MEMBER_ALIVE, 0);
        e.no_resp = true;
        gossip_entry(port, &e);
    }
    assert_int_equal(slots_placed(i1, i2, i3, slots), found); /* the same slots */
    for (size_t j = 0; j < found; j++) {
        uint32_t rep[REPL_MAX_N];
        assert_int_equal(repl_slot_redis_replicas(n, slots[j], rep), 0);
        assert_int_equal(repl_slot_redirect(n, slots[j], false), -1);
    }
}

static void test_self_is_member_zero(void **state) {
    (void)state;
    assert_int_equal(members_total(n->members), 1);
    assert_int_equal(members_live(n->members), 1);
    assert_int_equal(members_find(n->members, lo(), 7000), 0);
    assert_int_equal(members_add_seed(n->members, lo(), 7000), 0);
    assert_int_equal(members_total(n->members), 1);
}

static void test_seeds_count_as_live(void **state) {
    (void)state;
    for (uint16_t p = 7001; p < 7005; p++) assert_int_equal(members_add_seed(n->members, lo(), p), 0);
    assert_int_equal(members_total(n->members), 5);
    assert_int_equal(members_known(n->members), 5);
    assert_int_equal(members_live(n->members), 5);
}

static void test_newer_pair_wins_older_ignored(void **state) {
    (void)state;
    gossip(7001, 5, 10, MEMBER_ALIVE);
    const member *m = members_at(n->members, (size_t)members_find(n->members, lo(), 7001));
    assert_int_equal(m->heartbeat, 10);
    gossip(7001, 5, 9, MEMBER_ALIVE);
    assert_int_equal(m->heartbeat, 10);
    gossip(7001, 4, 99, MEMBER_ALIVE);
    assert_int_equal(m->heartbeat, 10);
    assert_int_equal(m->incarnation, 5);
}

/* At an equal pair a suspicion outranks alive (only a higher heartbeat
 * clears it); another's death verdict on a member we hold live is a short
 * suspicion here, a death only if it is not refuted in time. */
static void test_verdicts_at_equal_pair(void **state) {
    (void)state;
    n->cfg.suspicion_ms = 100;
    gossip(7001, 5, 10, MEMBER_ALIVE);
    gossip(7001, 5, 10, MEMBER_SUSPECT);
    assert_int_equal(state_of(7001), MEMBER_SUSPECT);
    gossip(7001, 5, 10, MEMBER_ALIVE);
    assert_int_equal(state_of(7001), MEMBER_SUSPECT);
    gossip(7001, 5, 11, MEMBER_ALIVE); /* refuted */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);

    gossip(7001, 5, 10, MEMBER_DEAD); /* stale verdict: ignored */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
    gossip(7001, 5, 11, MEMBER_DEAD);
    assert_int_equal(state_of(7001), MEMBER_SUSPECT);
    assert_int_equal(members_live(n->members), 2);
    run_for(60);
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    assert_int_equal(members_live(n->members), 1);
}

/* Makes 127.0.0.1:port dead here at (inc, hb). */
static void make_dead(uint16_t port, uint64_t inc, uint64_t hb) {
    n->cfg.suspicion_ms = 100;
    gossip(port, inc, hb, MEMBER_ALIVE);
    gossip(port, inc, hb, MEMBER_DEAD);
    run_for(60);
    assert_int_equal(state_of(port), MEMBER_DEAD);
}

static void test_dead_never_resurrected_by_stale_news(void **state) {
    (void)state;
    make_dead(7001, 5, 10);
    gossip(7001, 5, 10, MEMBER_ALIVE);
    gossip(7001, 5, 3, MEMBER_ALIVE);
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    gossip(7001, 5, 11, MEMBER_ALIVE); /* its own newer heartbeat */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
}

/* With --majority-ms, a node that saw most of the cluster die refuses
 * writes; once the members are back it goes on refusing for 5 gossip
 * periods, while its ring becomes the others' again. */
static void test_majority_comes_back_after_a_grace(void **state) {
    (void)state;
    n->cfg.majority_ms = 60000;
    for (uint16_t p = 7001; p <= 7003; p++) make_dead(p, 5, 10);
    assert_false(members_majority(n->members));
    n->cfg.suspicion_ms = 60000; /* they answer no probe here: suspected, not dead again */
    for (uint16_t p = 7001; p <= 7003; p++) gossip(p, 5, 11, MEMBER_ALIVE); /* refuted */
    run_for(100);
    assert_int_equal(members_live(n->members), 4);
    assert_false(members_majority(n->members));
    run_for(5 * n->cfg.gossip_ms);
    assert_true(members_majority(n->members));
}

/* A new process holds its seeds alive until probed: those it has not heard
 * from do not make a majority (one restarted on the minority side of a
 * partition took writes that lost). */
static void test_unheard_seeds_make_no_majority(void **state) {
    (void)state;
    n->cfg.majority_ms = 60000;
    n->cfg.suspicion_ms = 60000;
    ring_node seeds[3] = {{lo(), 7001}, {lo(), 7002}, {lo(), 7003}};
    assert_int_equal(members_add_seeds(n->members, seeds, 3), 0);
    assert_int_equal(members_live(n->members), 4);
    assert_false(members_majority(n->members));
    gossip(7001, 5, 0, MEMBER_ALIVE);
    run_for(100);
    assert_false(members_majority(n->members)); /* 2 heard of, 2 not */
    gossip(7002, 5, 0, MEMBER_ALIVE);
    run_for(100 + 5 * n->cfg.gossip_ms);
    assert_true(members_majority(n->members)); /* 3 against 1, and the grace past */
}

static void test_restart_outranks_previous_life(void **state) {
    (void)state;
    make_dead(7001, 5, 1000);
    gossip(7001, 6, 0, MEMBER_ALIVE); /* new incarnation, heartbeat restarts */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
}

static void test_unknown_member_learned_from_gossip(void **state) {
    (void)state;
    gossip(7100, 1, 1, MEMBER_ALIVE);
    assert_int_equal(members_total(n->members), 2);
    assert_int_equal(members_live(n->members), 2);
    /* a verdict on a member we never knew is not kept */
    gossip(7101, 1, 1, MEMBER_DEAD);
    gossip(7102, 1, 1, MEMBER_SUSPECT);
    assert_int_equal(members_total(n->members), 2);
}

static void test_bad_entries_ignored(void **state) {
    (void)state;
    gossip(0, 1, 1, MEMBER_ALIVE);
    gossip(7001, 1, 1, 7);
    Member m = MEMBER__INIT;
    m.ip = lo();
    m.port = 70000;
    Member *ms[1] = {&m};
    Peer p = PEER__INIT;
    p.n_members = 1;
    p.members = ms;
    deliver(7999, NULL, &p);
    assert_int_equal(members_total(n->members), 1);
}

static void test_self_entry_not_overwritten(void **state) {
    (void)state;
    gossip(7000, 99999, 5, MEMBER_DEAD);
    assert_int_equal(members_at(n->members, 0)->state, MEMBER_ALIVE);
    assert_int_equal(members_at(n->members, 0)->incarnation, 1000);
}

/* Fast timers: a 10 ms period, 60 ms suspicions. */
static void fast_timers(void) {
    n->cfg.gossip_ms = 10;
    n->cfg.suspicion_ms = 60;
}

/* Gossip naming a later incarnation of ourselves (our clock stepped back
 * since a past life) is refuted with a higher one; so is a dead verdict at
 * our own incarnation, with a higher heartbeat, sent out as news. */
static void test_refutes_what_others_say_of_us(void **state) {
    (void)state;
    gossip(7000, 1000, members_at(n->members, 0)->heartbeat + 5, MEMBER_DEAD);
    assert_int_equal(members_at(n->members, 0)->incarnation, 1000);
    assert_true(members_at(n->members, 0)->heartbeat > 5);
    assert_true(members_health(n->members) > 0); /* being accused counts against us */
    gossip(7000, 3000, 1, MEMBER_DEAD);
    assert_true(members_at(n->members, 0)->incarnation > 3000);
    assert_int_equal(members_at(n->members, 0)->state, MEMBER_ALIVE);
    assert_true(n->incarnation > 3000);
    /* an incarnation beyond the clock bound is not believed, of anyone */
    gossip(7000, 1000 + WIRE_MAX_AHEAD_MS + 1, 1, MEMBER_DEAD);
    assert_true(members_at(n->members, 0)->incarnation < 1000 + WIRE_MAX_AHEAD_MS);
    gossip(7001, 1000 + WIRE_MAX_AHEAD_MS + 1, 1, MEMBER_ALIVE);
    assert_true(members_find(n->members, lo(), 7001) < 0);

    /* the refutation goes out: the next message carries our new entry */
    members_add_seed(n->members, lo(), 7002);
    fake.nsent = 0;
    fast_timers();
    run_for(15);
    wire_arena *a = wire_arena_new();
    Peer *p = sent_gossip(a, 7002, PEER_GOSSIP_PROBE, NULL);
    assert_non_null(p);
    bool carried = false;
    for (size_t i = 0; i < p->n_members; i++)
        carried |= p->members[i]->port == 7000 && p->members[i]->incarnation > 3000;
    assert_true(carried);
    wire_arena_free(a);
}

/* A seed that never answers: probed, helpers asked (none here), suspected,
 * told so, and dead when the suspicion runs out. */
static void test_unanswered_probe_suspect_then_dead(void **state) {
    (void)state;
    fast_timers();
    members_add_seed(n->members, lo(), 9);
    run_for(5);
    wire_arena *a = wire_arena_new();
    assert_non_null(sent_gossip(a, 9, PEER_GOSSIP_PROBE, NULL));
    wire_arena_free(a);
    run_for(20); /* a probe waits 3 periods: a brief stall is no suspicion */
    assert_int_equal(state_of(9), MEMBER_ALIVE);
    run_for(10);
    assert_int_equal(state_of(9), MEMBER_SUSPECT);
    assert_int_equal(members_live(n->members), 2); /* still on the ring */
    run_for(40);
    assert_int_equal(state_of(9), MEMBER_SUSPECT);
    run_for(30);
    assert_int_equal(state_of(9), MEMBER_DEAD);
    assert_int_equal(members_live(n->members), 1);
}

static void test_own_stall_is_not_blamed_on_others(void **state) {
    (void)state;
    fast_timers();
    members_add_seed(n->members, lo(), 9);
    run_for(35);
    assert_int_equal(state_of(9), MEMBER_SUSPECT);
    /* a tick just before the suspicion runs out, then none for 300 ms:
     * the time is ours, all of it (what arrived meanwhile is read first) */
    run_for(members_at(n->members, (size_t)members_find(n->members, lo(), 9))->deadline - 1 -
            fake.clock_ms);
    node_tick(n);
    fake.clock_ms += 300;
    node_tick(n);
    assert_int_equal(state_of(9), MEMBER_SUSPECT);
    assert_true(members_health(n->members) > 0);
    /* the member's silence after that still counts */
    run_for(200);
    assert_int_equal(state_of(9), MEMBER_DEAD);
}

/* A ping is answered at once with an ACK under the ping's message ID; an
 * ACK for our own probe settles it (the target stays alive). */
static void test_ping_ack(void **state) {
    (void)state;
    Member from = MEMBER__INIT;
    from.ip = lo();
    from.port = 7100;
    from.incarnation = 5;
    Peer p = PEER__INIT;
    p.from = &from;
    p.flags = PEER_GOSSIP_PROBE;
    uint8_t id[WIRE_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    fake.nsent = 0;
    deliver(7100, id, &p);
    node_flush(n);
    assert_int_equal(fake.nsent, 1);
    wire_arena *a = wire_arena_new();
    uint8_t got[WIRE_ID_LEN];
    Peer *ans = sent_gossip(a, 7100, PEER_GOSSIP_ACK, got);
    assert_non_null(ans);
    assert_memory_equal(got, id, WIRE_ID_LEN);
    assert_int_equal(ans->flags & PEER_GOSSIP_PROBE, 0); /* an answer is not a probe */
    assert_int_equal(ans->from->port, 7000);
    assert_int_equal(ans->n_digests, 1);

    /* gossip without the flag is not answered */
    p.flags = 0;
    fake.nsent = 0;
    deliver(7100, id, &p);
    node_flush(n);
    assert_int_equal(fake.nsent, 0);

    /* our probe of 7100, acked through a helper (7101) */
    fast_timers();
    gossip(7101, 5, 0, MEMBER_ALIVE);
    for (int round = 0; round < 4; round++) {
        fake.nsent = 0;
        run_for(1);
        Peer *ping = sent_gossip(a, 0, PEER_GOSSIP_PROBE, got);
        if (!ping) {
            run_for(9);
            continue;
        }
        run_for(6); /* past half the period: helpers asked */
        Peer *req = sent_gossip(a, 0, PEER_GOSSIP_PROBE_REQ, NULL);
        assert_non_null(req);
        uint16_t target = (uint16_t)req->client_port;
        Peer ack = PEER__INIT;
        Member hf = MEMBER__INIT;
        hf.ip = lo();
        hf.port = target == 7100 ? 7101 : 7100;
        hf.incarnation = 5;
        ack.from = &hf;
        ack.flags = PEER_GOSSIP_ACK;
        deliver((uint16_t)hf.port, got, &ack);
        run_for(10);
        assert_int_equal(state_of(target), MEMBER_ALIVE);
        assert_int_equal(members_health(n->members), 0);
    }
    wire_arena_free(a);
}

/* A live member asks us to probe another: we ping it and relay its ACK
 * under the asker's ID, or NACK when none comes. A stranger's request is
 * ignored (no ping to an address a stranger picked). */
static void test_probe_request_relayed(void **state) {
    (void)state;
    fast_timers();
    gossip(7101, 5, 0, MEMBER_ALIVE);
    gossip(7102, 5, 0, MEMBER_ALIVE);
    n->cfg.gossip_ms = 1000; /* our own probes out of the way */
    run_for(1);
    uint8_t id[WIRE_ID_LEN] = {9, 9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8};
    Peer req = PEER__INIT;
    req.flags = PEER_GOSSIP_PROBE_REQ;
    req.client_ip = lo();
    req.client_port = 7102;

    fake.nsent = 0;
    deliver(7555, id, &req); /* a stranger */
    node_flush(n);
    wire_arena *a = wire_arena_new();
    assert_null(sent_gossip(a, 7102, PEER_GOSSIP_PROBE, NULL));

    deliver(7101, id, &req);
    node_flush(n);
    uint8_t ping_id[WIRE_ID_LEN];
    assert_non_null(sent_gossip(a, 7102, PEER_GOSSIP_PROBE, ping_id));
    Peer ack = PEER__INIT;
    ack.flags = PEER_GOSSIP_ACK;
    fake.nsent = 0;
    deliver(7102, ping_id, &ack);
    node_flush(n);
    uint8_t got[WIRE_ID_LEN];
    assert_non_null(sent_gossip(a, 7101, PEER_GOSSIP_ACK, got));
    assert_memory_equal(got, id, WIRE_ID_LEN);

    /* no answer: a NACK by the deadline */
    fake.nsent = 0;
    deliver(7101, id, &req);
    run_for(2100); /* helpers wait 2 periods, so that the asker hears in time */
    assert_non_null(sent_gossip(a, 7101, PEER_GOSSIP_NACK, got));
    assert_memory_equal(got, id, WIRE_ID_LEN);
    wire_arena_free(a);
}

/* News is bounded per message whatever the cluster size. */
static void test_messages_are_bounded(void **state) {
    (void)state;
    for (uint16_t p = 8000; p < 8300; p++) gossip(p, 5, 0, MEMBER_ALIVE);
    fast_timers();
    fake.nsent = 0;
    run_for(30);
    assert_true(fake.nsent > 0);
    size_t kept = fake.nsent < FAKE_SENT_KEEP ? fake.nsent : FAKE_SENT_KEEP;
    for (size_t k = 0; k < kept; k++) assert_true(fake.sent[k].len < 1400);
    wire_arena *a = wire_arena_new();
    Peer *p = sent_gossip(a, 0, 0, NULL);
    assert_non_null(p);
    assert_true(p->n_members <= MEMBERS_PIGGYBACK + 1);
    wire_arena_free(a);
}

/* A member dead for forget_ms is forgotten; stale news of its old life
 * does not bring it back, its next life does. */
static void test_dead_forgotten_rejoin_accepted(void **state) {
    (void)state;
    n->cfg.forget_ms = 1000;
    make_dead(7001, 5, 10);
    assert_int_equal(members_known(n->members), 2);
    run_for(1300); /* forgetting runs with the gossip rounds (200 ms) */
    assert_true(members_find(n->members, lo(), 7001) < 0);
    assert_int_equal(members_known(n->members), 1);
    char buf[256];
    members_format(n->members, buf, sizeof buf);
    assert_null(strstr(buf, ":7001"));
    gossip(7001, 5, 10, MEMBER_ALIVE); /* stale */
    assert_true(members_find(n->members, lo(), 7001) < 0);
    gossip(7001, 6, 0, MEMBER_ALIVE); /* restarted */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
    assert_int_equal(members_live(n->members), 2);
    /* a slot forgotten twice over is reused */
    make_dead(7001, 6, 10);
    size_t slots = members_total(n->members);
    run_for(2600);
    gossip(7050, 1, 0, MEMBER_ALIVE);
    assert_int_equal(members_total(n->members), slots);
}

/* Digests that differ twice in a row make us send our whole list, in
 * chunks; the peer answers with its own. */
static void test_digest_mismatch_exchanges_lists(void **state) {
    (void)state;
    for (uint16_t p = 8000; p < 8100; p++) members_add_seed(n->members, lo(), p);
    fast_timers();
    n->cfg.gossip_ms = 1000;
    wire_arena *a = wire_arena_new();
    uint64_t other = 42;
    int synced = 0;
    for (int round = 0; round < 4 && !synced; round++) {
        fake.clock_ms += 6000;
        fake.nsent = 0;
        run_for(1);
        uint8_t id[WIRE_ID_LEN];
        Peer *ping = sent_gossip(a, 0, PEER_GOSSIP_PROBE, id);
        assert_non_null(ping);
        uint16_t to = 0;
        for (size_t k = 0; k < FAKE_SENT_KEEP && !to; k++) to = ntohs(fake.sent[k].to.sin_port);
        Peer ack = PEER__INIT;
        ack.flags = PEER_GOSSIP_ACK;
        ack.digests = &other;
        ack.n_digests = 1;
        fake.nsent = 0;
        deliver(to, id, &ack);
        node_flush(n);
        if (sent_gossip(a, to, PEER_GOSSIP_SYNC_END, NULL)) synced = round + 1;
    }
    assert_int_equal(synced, 2);
    /* the chunks carry everyone, MEMBERS_SYNC_CHUNK at most each */
    size_t entries = 0, kept = fake.nsent < FAKE_SENT_KEEP ? fake.nsent : FAKE_SENT_KEEP;
    (void)kept;
    Peer *chunk = sent_gossip(a, 0, PEER_GOSSIP_SYNC, NULL);
    assert_non_null(chunk);
    entries = chunk->n_members;
    assert_true(entries <= MEMBERS_SYNC_CHUNK);
    wire_arena_free(a);
}

static void test_pref_lists_skip_dead(void **state) {
    (void)state;
    for (uint16_t p = 7001; p < 7010; p++) gossip(p, 1, 1, MEMBER_ALIVE);
    make_dead(7003, 1, 1);
    long dead = members_find(n->members, lo(), 7003);
    for (unsigned slot = 0; slot < RING_SLOTS; slot += 7) {
        uint32_t out[3];
        size_t k = members_pref(n->members, slot, 3, out);
        assert_int_equal(k, 3);
        for (size_t i = 0; i < k; i++) {
            assert_int_not_equal(out[i], (uint32_t)dead);
            for (size_t j = 0; j < i; j++) assert_int_not_equal(out[i], out[j]);
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < members_total(n->members); i++) total += members_slots(n->members, i);
    assert_int_equal(total, RING_SLOTS);
    assert_int_equal(members_slots(n->members, (size_t)dead), 0);
}

/* Slots where member x is one of the 3 replicas here. */
static size_t slots_held_by(long x) {
    size_t k = 0;
    for (unsigned s = 0; s < RING_SLOTS; s++) {
        uint32_t rep[3];
        size_t got = members_pref(n->members, s, 3, rep);
        for (size_t i = 0; i < got; i++) k += rep[i] == (uint32_t)x;
    }
    return k;
}

/* A slot is settled once neither its replicas nor their states changed
 * for members_settle_ms: a suspicion unsettles the suspect's slots, a
 * death the slots whose replicas it changed, each for that long. */
static void test_slots_settle_after_changes(void **state) {
    (void)state;
    for (uint16_t p = 7001; p <= 7005; p++) gossip(p, 1, 1, MEMBER_ALIVE);
    uint64_t wait = members_settle_ms(n->members);
    assert_int_equal(wait, 2 * 3 * 200 + 1000); /* 6 known: news goes out 3 times */
    assert_int_equal(members_slots_settling(n->members), RING_SLOTS); /* all just placed */
    fake.clock_ms += wait;
    assert_int_equal(members_slots_settling(n->members), 0);

    long x = members_find(n->members, lo(), 7003);
    size_t held = slots_held_by(x);
    gossip(7003, 1, 1, MEMBER_SUSPECT); /* on the ring still: its slots served elsewhere */
    assert_int_equal(state_of(7003), MEMBER_SUSPECT);
    assert_int_equal(members_slots_settling(n->members), held);
    for (unsigned s = 0; s < RING_SLOTS; s++) {
        uint32_t rep[3];
        members_pref(n->members, s, 3, rep);
        bool has = rep[0] == (uint32_t)x || rep[1] == (uint32_t)x || rep[2] == (uint32_t)x;
        assert_int_equal(members_slot_settled(n->members, s), !has);
    }
    fake.clock_ms += wait - 1;
    assert_int_equal(members_slots_settling(n->members), held);
    fake.clock_ms += 1;
    assert_int_equal(members_slots_settling(n->members), 0);

    make_dead(7003, 1, 1); /* off the ring: every slot it held changes replicas */
    size_t settling = members_slots_settling(n->members);
    assert_true(settling >= held && settling < RING_SLOTS);
    assert_int_equal(slots_held_by(x), 0);
    fake.clock_ms += wait;
    assert_int_equal(members_slots_settling(n->members), 0);

    /* a member's Redis port heard anew: -MOVED would name another port */
    long y = members_find(n->members, lo(), 7002);
    held = slots_held_by(y);
    gossip_from(7999, 7002, 1, 1, MEMBER_ALIVE, 6380);
    assert_int_equal(members_resp_port(n->members, (size_t)y), 6380);
    assert_int_equal(members_slots_settling(n->members), held);
    fake.clock_ms += wait;
    gossip_from(7999, 7002, 1, 1, MEMBER_ALIVE, 6380); /* the same again: nothing changed */
    assert_int_equal(members_slots_settling(n->members), 0);
}

/* A GOSSIP from 127.0.0.1:sender saying how it places slots. */
static void placement_from(uint16_t sender, uint32_t placement) {
    Peer p = PEER__INIT;
    p.placement = placement;
    deliver(sender, NULL, &p);
}

/* Members that place slots otherwise are counted (and the count, kept
 * between calls, follows every change: placements heard, deaths, returns). */
static void test_misplaced_members_counted(void **state) {
    (void)state;
    uint32_t ours = members_placement(3, RING_DEFAULT_VNODES), other = members_placement(3, 16);
    gossip(7001, 1, 1, MEMBER_ALIVE);
    gossip(7002, 1, 1, MEMBER_ALIVE);
    assert_int_equal(members_misplaced(n->members), 0); /* not heard yet */
    placement_from(7001, other);
    assert_int_equal(members_misplaced(n->members), 1);
    placement_from(7002, other);
    assert_int_equal(members_misplaced(n->members), 2);
    placement_from(7001, ours);
    assert_int_equal(members_misplaced(n->members), 1);
    make_dead(7002, 1, 1); /* the dead do not count */
    assert_int_equal(members_misplaced(n->members), 0);
    gossip(7002, 2, 1, MEMBER_ALIVE); /* back (a new life): as last heard */
    assert_int_equal(members_misplaced(n->members), 1);
}

static void test_format_lists_everyone(void **state) {
    (void)state;
    gossip(7001, 1, 1, MEMBER_ALIVE);
    make_dead(7002, 1, 1);
    char buf[256];
    size_t len = members_format(n->members, buf, sizeof buf);
    assert_int_equal(len, strlen(buf));
    assert_non_null(strstr(buf, "127.0.0.1:7000 alive\n"));
    assert_non_null(strstr(buf, "127.0.0.1:7001 alive\n"));
    assert_non_null(strstr(buf, "127.0.0.1:7002 dead\n"));
    char small[30];
    len = members_format(n->members, small, sizeof small);
    assert_true(len < sizeof small);
    assert_int_equal(len, strlen(small));
}


/* A node that holds every other member dead still pings them: it pinged
 * none (ping_dead returned when alone, the lost-seed ping skips the dead),
 * and a 2-node cluster, or one whose every node was cut off alone a few
 * seconds (a switch rebooting), stayed apart after the network was back,
 * until forget_ms (an hour). With one more live member it did. */
static void test_alone_still_pings_the_dead(void **state) {
    (void)state;
    make_dead(7001, 5, 10);
    assert_int_equal(members_live(n->members), 1);
    fake.nsent = 0;
    run_for(10000); /* 50 periods */
    wire_arena *a = wire_arena_new();
    assert_non_null(sent_gossip(a, 7001, PEER_GOSSIP_PROBE, NULL));
    wire_arena_free(a);
}

static void test_two_live_ping_the_dead(void **state) {
    (void)state;
    n->cfg.suspicion_ms = 60000;
    gossip(7002, 5, 0, MEMBER_ALIVE);
    make_dead(7001, 5, 10);
    n->cfg.suspicion_ms = 60000;
    fake.nsent = 0;
    run_for(2000);
    wire_arena *a = wire_arena_new();
    assert_non_null(sent_gossip(a, 7001, PEER_GOSSIP_PROBE, NULL));
    wire_arena_free(a);
}

/* A death verdict at heartbeat hb on member x (7001), heard by n from 7002
 * and by x, which refutes it: n holds x alive after a short suspicion. */
static void verdict_at_heartbeat(uint64_t hb) {
    node *x = fake_node(NULL, 7001, 1 << 20);
    assert_non_null(x);
    uint64_t inc = members_at(x->members, 0)->incarnation;
    n->cfg.suspicion_ms = 100;
    gossip(7001, inc, 0, MEMBER_ALIVE);
    Member v = entry(7001, inc, hb, MEMBER_DEAD, 0);
    gossip_entry(7002, &v);
    Member *vs[1] = {&v};
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.n_members = 1;
    p.members = vs;
    uint8_t zero[WIRE_ID_LEN] = {0};
    struct sockaddr_in from = addr(7002);
    members_receive(x->members, zero, WIRE_ID_LEN, &p, &from);
    const member *me = members_at(x->members, 0);
    Member r = entry(7001, me->incarnation, me->heartbeat, MEMBER_ALIVE, 0);
    Peer q = PEER__INIT;
    q.from = &r;
    deliver(7001, NULL, &q); /* x's refutation as it sends it, to n */
    run_for(60);             /* past the short suspicion, before a probe of ours fails */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
    fake_node_free(x);
}

/* A verdict at the last heartbeat is refuted: at UINT64_MAX (one entry from
 * a member, or a corrupt one) the accused answered UINT64_MAX + 1 = 0, which
 * ranks below it, and every node that heard it held the member dead until
 * it restarted. Heartbeats past MEMBERS_MAX_HEARTBEAT are refused; at it,
 * the accused takes a new incarnation. */
static void test_verdict_at_the_last_heartbeat_is_refuted(void **state) {
    (void)state;
    verdict_at_heartbeat(UINT64_MAX);
}

static void test_verdict_at_the_heartbeat_bound_is_refuted(void **state) {
    (void)state;
    verdict_at_heartbeat(MEMBERS_MAX_HEARTBEAT);
}

/* Forgetting many members at once frees their slots in one round (the
 * address index was rebuilt once a slot freed: quadratic, 594 ms for 20,000
 * in one tick), and the members left are still found. */
/* A GOSSIP from 127.0.0.1:sender, alive at incarnation 1, whose clock
 * field says stamp and whose own wall clock says wall (ms). */
static void gossip_clock(uint16_t sender, uint64_t hb, uint64_t stamp, uint64_t wall) {
    Member from = entry(sender, 1, hb, MEMBER_ALIVE, 0);
    Peer p = PEER__INIT;
    p.from = &from;
    p.stamp = stamp;
    p.wall = wall;
    deliver(sender, NULL, &p);
}

static uint64_t stamp_ms(void) { return node_stamp(n) >> 16; }

/* A member's wall clock ahead of ours runs on in our stamps while it lives
 * (node.h node_clock): heard 10 s ahead, then silent for 2 s, our stamps
 * are 12 s ahead, not stuck at what was heard (dht-sim 460, 8061: a write
 * stamped below one the node ahead acknowledged after that reading). A
 * clock passed on (another's stamp) stands still; a lead ends where it had
 * run when its member is forgotten, and at once when its clock is set back. */
static void test_a_lead_runs_on_while_its_member_lives(void **state) {
    (void)state;
    n->cfg.suspicion_ms = 100;
    uint64_t w0 = node_wall_ms(n);
    gossip_clock(7001, 1, (w0 + 10000) << 16, w0 + 10000);
    assert_true(stamp_ms() >= w0 + 10000);
    fake.clock_ms += 2000;
    assert_true(stamp_ms() >= w0 + 12000);
    /* our wall clock stepped 5 s ahead: 7001's is where it was, not 5 s
     * further (dht-sim 181: a lead heard while 23 s behind, then a step to
     * 27 s ahead, stamped writes 49 s ahead) */
    fake.wall_offset_ms += 5000;
    uint64_t s = stamp_ms();
    assert_true(s >= w0 + 12000 && s < w0 + 12100);
    fake.wall_offset_ms -= 5000;
    /* 7001 dead, as the far side of a partition is: its lead runs on
     * (dht-sim 1129: a client's write there acknowledged, its next one
     * here 2.3 s later stamped 75 ms below); forgotten, it stops where it
     * had run */
    n->cfg.forget_ms = 3000;
    gossip_from(7999, 7001, 1, 1, MEMBER_DEAD, 0);
    run_for(150);
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    fake.clock_ms += 2000;   /* 7001's clock: w0 + 14150 */
    s = stamp_ms();
    assert_true(s >= w0 + 14150 && s < w0 + 14300);
    run_for(3000);           /* forgotten at w0 + 15150 */
    assert_true(members_find(n->members, lo(), 7001) < 0);
    fake.clock_ms += 8000;
    s = stamp_ms();
    assert_true(s >= w0 + 15150 && s < w0 + 15500);
    /* a stamp passed on (another's) is heard, not run on */
    uint64_t w = node_wall_ms(n);
    gossip_clock(7002, 1, (w + 20000) << 16, w);
    assert_true(stamp_ms() >= w + 20000);
    fake.clock_ms += 1000;
    s = stamp_ms();
    assert_true(s >= w + 20000 && s < w + 20100);
    /* 7003 heard 30 s ahead, then set back to ours */
    gossip_clock(7003, 1, 0, node_wall_ms(n) + 30000);
    assert_true(stamp_ms() >= node_wall_ms(n) + 30000);
    uint64_t top = stamp_ms();
    gossip_clock(7003, 2, 0, node_wall_ms(n));
    run_for(150);
    fake.clock_ms += 5000;
    s = stamp_ms();
    assert_true(s >= top && s < top + 300);   /* stamps stay above it, standing */
}

/* A GOSSIP written by 7001 (alive, incarnation 1), its wall and monotonic
 * clocks reading wall and mono (Peer.wall, Peer.mono), that came from
 * 127.0.0.1:via: 7001's own address, or another's (a recording sent from
 * there). The same again is a recording of it. */
static void gossip_of_7001(uint16_t via, uint64_t wall, uint64_t mono) {
    Member from = entry(7001, 1, 0, MEMBER_ALIVE, 0);
    Peer p = PEER__INIT;
    p.from = &from;
    p.wall = wall;
    p.mono = mono;
    deliver(via, NULL, &p);
}

/* A recording of a member's GOSSIP sent again said its wall clock read what
 * it read then: the lead of a member ahead fell back by as long as the
 * recording was kept, and our stamps with it, below those the member stamps
 * meanwhile (a write after one it acknowledged lost to it). A GOSSIP more
 * than a second behind its sender's monotonic clock (Peer.mono, as
 * members_mono_late reckons it) says nothing of its wall clock. A fresh one
 * that says the clock was set back still ends the lead. */
static void test_a_replayed_gossip_holds_no_lead_back(void **state) {
    (void)state;
    uint64_t w0 = node_wall_ms(n), m0 = fake.clock_ms + 70000; /* 7001's monotonic clock */
    gossip_of_7001(7001, w0 + 10000, m0);
    assert_true(stamp_ms() >= w0 + 10000);
    run_for(3000);
    gossip_of_7001(7001, w0 + 13000, m0 + 3000);
    gossip_of_7001(7001, w0 + 10000, m0); /* the recording, 3 s old */
    run_for(1000);                        /* the lead is reckoned anew every 100 ms */
    uint64_t s = stamp_ms();
    assert_true(s >= w0 + 14000);
    gossip_of_7001(7001, node_wall_ms(n), m0 + 4000); /* 7001's clock set back to ours */
    run_for(150);
    fake.clock_ms += 5000;
    uint64_t t = stamp_ms();
    assert_true(t >= s && t < s + 300); /* standing where the lead had run */
}

/* A GOSSIP reads the clock of the member that wrote it (Peer.from), not of
 * whatever address it came from, and not when it is late: a recording of
 * 7001's, its clock then 30 s ahead, sent again from 7002's address after
 * 7001's clock was set back, was 7002's reading, a lead that ran on as
 * long as 7002 lived. */
static void test_a_gossip_reads_only_its_writers_clock(void **state) {
    (void)state;
    uint64_t w0 = node_wall_ms(n), m0 = fake.clock_ms + 70000;
    gossip_clock(7002, 1, 0, w0);
    gossip_of_7001(7001, w0 + 30000, m0);
    run_for(2000);
    gossip_of_7001(7001, node_wall_ms(n), m0 + 2000); /* 7001's clock set back to ours */
    run_for(150);
    uint64_t s0 = stamp_ms();
    gossip_of_7001(7002, w0 + 30000, m0); /* the recording, from 7002's address */
    run_for(150);
    assert_true(stamp_ms() < s0 + 1000);
}

/* A member held dead leads as a live one does (its death does not end a
 * lead: the far side of a partition), and its reading leads at once, not
 * at the next reckoning up to 100 ms later: until then our stamps stood
 * below those it stamps, as a live member's did before heard_wall. */
static void test_a_dead_members_reading_leads_at_once(void **state) {
    (void)state;
    uint64_t w0 = node_wall_ms(n);
    n->cfg.suspicion_ms = 100;
    gossip(7001, 1, 0, MEMBER_ALIVE);
    gossip(7001, 1, 1, MEMBER_DEAD); /* suspect here, then dead */
    run_for(150);
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    gossip_clock(7001, 1, 0, w0 + 10000); /* its own word, alive at the same pair: still dead */
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    assert_true(stamp_ms() >= w0 + 10000);
}

/* A member's lead is its life's: restarted (a new incarnation) as an
 * earlier version, which says no wall clock (Peer.wall 0), its last life's
 * reading ran on for good in our stamps, 30 s ahead however long it lived
 * (a rolling upgrade rolled back after its clock was fixed). The restart
 * ends the lead as a death does: the stamps stay where it had run. */
static void test_a_lead_ends_with_its_members_life(void **state) {
    (void)state;
    uint64_t w0 = node_wall_ms(n);
    gossip_clock(7001, 1, 0, w0 + 30000);
    assert_true(stamp_ms() >= w0 + 30000);
    Member from = entry(7001, 2, 0, MEMBER_ALIVE, 0); /* a new life, no wall said */
    Peer p = PEER__INIT;
    p.from = &from;
    deliver(7001, NULL, &p);
    uint64_t top = stamp_ms();
    assert_true(top >= w0 + 30000);
    run_for(10000);
    uint64_t s = stamp_ms();
    assert_true(s >= top && s < top + 300); /* standing, not 10 s further */
}

/* An address gossiped by a node that knows no life of it (incarnation 0:
 * a seed of its peers file it has not heard from) is not taken for a
 * member: it may be another address of one (dht-sim --aliases 3, seed 3:
 * a node restarted with such an address in its peers file told it to every
 * node, and each held it alive in its ring until it pinged it). Told with
 * a life, it is one. */
static void test_an_address_nobody_heard_is_no_member(void **state) {
    (void)state;
    gossip(7005, 0, 0, MEMBER_ALIVE);
    assert_true(members_find(n->members, lo(), 7005) < 0);
    assert_int_equal(members_live(n->members), 1);
    gossip(7005, 5, 0, MEMBER_ALIVE);
    assert_int_equal(state_of(7005), MEMBER_ALIVE);
}

static void test_many_forgotten_at_once(void **state) {
    (void)state;
    const unsigned K = 20000;
    n->cfg.forget_ms = 1000;
    n->cfg.suspicion_ms = 100;
    n->cfg.gossip_ms = 1000000; /* no probing: the forgetting alone */
    for (unsigned k = 0; k < K; k++) {
        Member m = MEMBER__INIT;
        m.ip = htonl(0x0a000000u + k + 1);
        m.port = 7000;
        m.incarnation = 5;
        gossip_entry(7999, &m);
        m.state = MEMBER_DEAD;
        gossip_entry(7999, &m);
    }
    n->cfg.gossip_ms = 200;
    for (int t = 0; t < 100 && members_known(n->members) > 1; t++) {
        fake.clock_ms += 100;
        node_tick(n); /* dead, then gone */
    }
    assert_int_equal(members_known(n->members), 1);
    assert_true(members_is_node(n->members, htonl(0x0a000001u), 7000)); /* gone, not freed */
    fake.clock_ms += 1200;
    node_tick(n); /* the slots freed */
    for (unsigned k = 0; k < K; k += 997)
        assert_false(members_is_node(n->members, htonl(0x0a000000u + k + 1), 7000));
    gossip(7003, 5, 0, MEMBER_ALIVE); /* freed slots are reused, and found */
    Member again = MEMBER__INIT;
    again.ip = htonl(0x0a000005u);
    again.port = 7000;
    again.incarnation = 9;
    gossip_entry(7003, &again);
    assert_true(members_find(n->members, htonl(INADDR_LOOPBACK), 7003) > 0);
    assert_true(members_find(n->members, htonl(0x0a000005u), 7000) > 0);
    assert_int_equal(members_known(n->members), 3);
}

/* ---- aliases (members.h) ---------------------------------------------------- */

static uint32_t alias_ip(void) { return htonl(0x7f000002u); } /* 127.0.0.2 */

/* A ping sent to 127.0.0.2:7000 reached us (127.0.0.1:7000, as a node
 * bound to 0.0.0.0 is reached): that address is ours, no member, though
 * our peers file names it; the ACK says it back, with our entry.
 * Gossip of it is ignored from then on. A ping to our own address makes
 * no alias, nor does one naming a member heard at a life of its own. */
static void test_pinged_at_an_alias(void **state) {
    (void)state;
    assert_int_equal(members_add_seed(n->members, alias_ip(), 7000), 0);
    gossip(7001, 5, 0, MEMBER_ALIVE);
    assert_int_equal(members_live(n->members), 3); /* before: ourselves twice */
    Member from = entry(7001, 5, 0, MEMBER_ALIVE, 0);
    Peer p = PEER__INIT;
    p.from = &from;
    p.flags = PEER_GOSSIP_PROBE;
    p.to_ip = alias_ip();
    p.to_port = 7000;
    uint8_t id[WIRE_ID_LEN] = {7, 1, 2, 3};
    fake.nsent = 0;
    deliver(7001, id, &p);
    node_flush(n);
    assert_true(members_find(n->members, alias_ip(), 7000) < 0);
    assert_int_equal(members_live(n->members), 2);
    assert_int_equal(members_known(n->members), 2);
    assert_int_equal(members_aliases(n->members), 1);
    wire_arena *a = wire_arena_new();
    Peer *ack = sent_gossip(a, 7001, PEER_GOSSIP_ACK, NULL);
    assert_non_null(ack);
    assert_int_equal(ack->to_ip, alias_ip());
    assert_int_equal(ack->to_port, 7000);
    assert_int_equal(ack->from->ip, lo());
    assert_int_equal(ack->from->port, 7000);

    Member al = entry(7000, 0, 0, MEMBER_ALIVE, 0);
    al.ip = alias_ip();
    gossip_entry(7001, &al);
    al.incarnation = 9; /* whatever pair a gossip gives it */
    gossip_entry(7001, &al);
    assert_true(members_find(n->members, alias_ip(), 7000) < 0);
    assert_int_equal(members_live(n->members), 2);
    char list[256];
    members_format(n->members, list, sizeof list);
    assert_null(strstr(list, "127.0.0.2"));

    p.to_ip = lo();
    fake.nsent = 0;
    deliver(7001, id, &p);
    node_flush(n);
    ack = sent_gossip(a, 7001, PEER_GOSSIP_ACK, NULL);
    assert_non_null(ack);
    assert_int_equal(ack->to_port, 0); /* said back only when not ours */
    assert_int_equal(members_aliases(n->members), 1);
    assert_int_equal(members_live(n->members), 2);

    /* a member heard of at a life of its own is no alias on a sender's word */
    gossip(7002, 5, 0, MEMBER_ALIVE);
    p.to_port = 7002;
    deliver(7001, id, &p);
    assert_true(members_find(n->members, lo(), 7002) > 0);
    assert_int_equal(members_aliases(n->members), 1);
    wire_arena_free(a);
}

/* Our peers file names us at 127.0.0.2 too: our ping of it comes back to
 * us, with our own entry and id. It is not answered (before, our own ACK
 * kept the phantom alive, on the ring beside us), and the address is
 * dropped: never suspected, pinged only every ALIAS_PING_PERIODS (to tell
 * an alias a replay made from a process of its own, test_auth), and each
 * such ping, back to us, keeps it an alias. */
static void test_own_ping_back_through_an_alias(void **state) {
    (void)state;
    assert_int_equal(members_add_seed(n->members, alias_ip(), 7000), 0);
    assert_int_equal(members_live(n->members), 2);
    fast_timers();
    fake.nsent = 0;
    run_for(1);
    struct fake_sent ping = {0};
    for (size_t k = 0; k < fake.nsent && k < FAKE_SENT_KEEP; k++)
        if (fake.sent[k].to.sin_addr.s_addr == alias_ip()) ping = fake.sent[k];
    assert_true(ping.len > 0);
    wire_arena *a = wire_arena_new();
    Peer *sent = sent_gossip(a, 7000, PEER_GOSSIP_PROBE, NULL);
    assert_non_null(sent);
    assert_int_equal(sent->from->id, members_self_id(n->members)); /* our life's, in a ping */
    struct sockaddr_in me = addr(7000);
    fake.nsent = 0;
    node_receive(n, &me, ping.buf, ping.len);
    node_flush(n);
    assert_null(sent_gossip(a, 7000, PEER_GOSSIP_ACK, NULL));
    wire_arena_free(a);
    assert_true(members_find(n->members, alias_ip(), 7000) < 0);
    assert_int_equal(members_live(n->members), 1);
    assert_int_equal(members_aliases(n->members), 1);
    int pings = 0;
    for (int t = 0; t < 500; t++) { /* 50 periods */
        fake.nsent = 0;
        run_for(1);
        for (size_t k = 0; k < fake.nsent && k < FAKE_SENT_KEEP; k++) {
            if (fake.sent[k].to.sin_addr.s_addr != alias_ip()) continue;
            pings++;
            struct fake_sent back = fake.sent[k];
            node_receive(n, &me, back.buf, back.len);
        }
    }
    assert_in_range(pings, 4, 6); /* one in 10 periods */
    assert_true(members_find(n->members, alias_ip(), 7000) < 0);
    assert_int_equal(members_live(n->members), 1);
    assert_int_equal(members_aliases(n->members), 1);
}

/* Our peers file names 7001 at 127.0.0.2, and 127.0.0.1:7001 answers our
 * ping of it, saying the address back: 127.0.0.2:7001 is its alias, and
 * leaves the list (before, both stood on the ring). A helper's relayed
 * ACK says nothing back, nor is an ACK believed that says back another
 * address than the ping's. A restart at the same address is a new life,
 * no alias; a process that advertises the alias itself makes it a member
 * again. */
static void test_answered_from_another_address(void **state) {
    (void)state;
    assert_int_equal(members_add_seed(n->members, alias_ip(), 7001), 0);
    gossip(7002, 5, 0, MEMBER_ALIVE);
    fast_timers();
    wire_arena *a = wire_arena_new();
    uint8_t pid[WIRE_ID_LEN];
    Peer *ping = NULL;
    for (int k = 0; k < 5 && !ping; k++) {
        fake.nsent = 0;
        run_for(10);
        ping = sent_gossip(a, 7001, PEER_GOSSIP_PROBE, pid);
    }
    assert_non_null(ping);
    assert_int_equal(ping->to_ip, alias_ip());
    assert_int_equal(ping->to_port, 7001);

    Member helper = entry(7002, 5, 0, MEMBER_ALIVE, 0), real = entry(7001, 5, 0, MEMBER_ALIVE, 0);
    Peer ack = PEER__INIT;
    ack.flags = PEER_GOSSIP_ACK;
    ack.from = &helper;
    deliver(7002, pid, &ack); /* relayed */
    assert_true(members_find(n->members, alias_ip(), 7001) > 0);
    ack.from = &real;
    ack.to_ip = lo(); /* not where the ping went */
    ack.to_port = 7001;
    deliver(7001, pid, &ack);
    uint8_t other[WIRE_ID_LEN] = {0xee, 0xee, 0xee};
    ack.to_ip = alias_ip();
    deliver(7001, other, &ack); /* no ping of ours had that ID */
    assert_true(members_find(n->members, alias_ip(), 7001) > 0);
    assert_int_equal(members_aliases(n->members), 0);

    deliver(7001, pid, &ack);
    assert_true(members_find(n->members, alias_ip(), 7001) < 0);
    assert_true(members_find(n->members, lo(), 7001) > 0);
    assert_int_equal(members_live(n->members), 3);
    assert_int_equal(members_aliases(n->members), 1);

    /* 7001 restarted at its address answers our ping of that address */
    ping = NULL;
    for (int k = 0; k < 5 && !ping; k++) {
        fake.nsent = 0;
        run_for(10);
        ping = sent_gossip_to(a, lo(), 7001, PEER_GOSSIP_PROBE, pid);
    }
    assert_non_null(ping);
    assert_int_equal(ping->to_ip, lo());
    real.incarnation = 9;
    ack.to_ip = lo();
    deliver(7001, pid, &ack);
    long i = members_find(n->members, lo(), 7001);
    assert_true(i > 0);
    assert_int_equal(members_at(n->members, (size_t)i)->incarnation, 9);
    assert_int_equal(members_aliases(n->members), 1);

    /* a process advertising 127.0.0.2:7001 itself */
    Member own = entry(7001, 12, 0, MEMBER_ALIVE, 0);
    own.ip = alias_ip();
    Peer g = PEER__INIT;
    g.from = &own;
    deliver(7001, NULL, &g);
    assert_true(members_find(n->members, alias_ip(), 7001) > 0);
    assert_int_equal(members_aliases(n->members), 0);
    assert_int_equal(members_live(n->members), 4);
    wire_arena_free(a);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_self_is_member_zero),
        T(test_seeds_count_as_live),
        T(test_newer_pair_wins_older_ignored),
        T(test_resp_ports_are_gossiped),
        T(test_no_redis_port_is_gossiped),
        T(test_redis_replicas_put_the_alive_first),
        T(test_verdicts_at_equal_pair),
        T(test_dead_never_resurrected_by_stale_news),
        T(test_majority_comes_back_after_a_grace),
        T(test_unheard_seeds_make_no_majority),
        T(test_restart_outranks_previous_life),
        T(test_unknown_member_learned_from_gossip),
        T(test_bad_entries_ignored),
        T(test_self_entry_not_overwritten),
        T(test_refutes_what_others_say_of_us),
        T(test_unanswered_probe_suspect_then_dead),
        T(test_own_stall_is_not_blamed_on_others),
        T(test_ping_ack),
        T(test_probe_request_relayed),
        T(test_messages_are_bounded),
        T(test_dead_forgotten_rejoin_accepted),
        T(test_digest_mismatch_exchanges_lists),
        T(test_pref_lists_skip_dead),
        T(test_slots_settle_after_changes),
        T(test_misplaced_members_counted),
        T(test_format_lists_everyone),
        T(test_alone_still_pings_the_dead),
        T(test_two_live_ping_the_dead),
        T(test_verdict_at_the_last_heartbeat_is_refuted),
        T(test_verdict_at_the_heartbeat_bound_is_refuted),
        T(test_many_forgotten_at_once),
        T(test_pinged_at_an_alias),
        T(test_own_ping_back_through_an_alias),
        T(test_answered_from_another_address),
        T(test_a_lead_runs_on_while_its_member_lives),
        T(test_a_replayed_gossip_holds_no_lead_back),
        T(test_a_gossip_reads_only_its_writers_clock),
        T(test_a_dead_members_reading_leads_at_once),
        T(test_a_lead_ends_with_its_members_life),
        T(test_an_address_nobody_heard_is_no_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
