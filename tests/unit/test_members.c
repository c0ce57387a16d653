/* Unit tests for members: merge rules, failure detection, the ring. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fake_env.h"
#include "members.h"
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

/* Merges one gossiped entry for 127.0.0.1:port. */
static void gossip(uint16_t port, uint64_t inc, uint64_t hb, int state) {
    Member m = MEMBER__INIT;
    m.ip = lo();
    m.port = port;
    m.incarnation = inc;
    m.heartbeat = hb;
    m.state = (uint32_t)state;
    Member *ms[1] = {&m};
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.n_members = 1;
    p.members = ms;
    members_merge(n->members, &p);
}

static int state_of(uint16_t port) {
    long i = members_find(n->members, lo(), port);
    assert_true(i >= 0);
    return members_at(n->members, (size_t)i)->state;
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

static void test_dead_verdict_spreads_at_equal_pair(void **state) {
    (void)state;
    gossip(7001, 5, 10, MEMBER_ALIVE);
    gossip(7001, 5, 9, MEMBER_DEAD); /* stale verdict: ignored */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
    gossip(7001, 5, 10, MEMBER_DEAD);
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    assert_int_equal(members_live(n->members), 1);
}

static void test_dead_never_resurrected_by_stale_news(void **state) {
    (void)state;
    gossip(7001, 5, 10, MEMBER_ALIVE);
    gossip(7001, 5, 10, MEMBER_DEAD);
    gossip(7001, 5, 10, MEMBER_ALIVE);
    gossip(7001, 5, 3, MEMBER_ALIVE);
    assert_int_equal(state_of(7001), MEMBER_DEAD);
    gossip(7001, 5, 11, MEMBER_ALIVE); /* its own newer heartbeat */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
}

static void test_restart_outranks_previous_life(void **state) {
    (void)state;
    gossip(7001, 5, 1000, MEMBER_ALIVE);
    gossip(7001, 5, 1000, MEMBER_DEAD);
    gossip(7001, 6, 0, MEMBER_ALIVE); /* new incarnation, heartbeat restarts */
    assert_int_equal(state_of(7001), MEMBER_ALIVE);
}

static void test_unknown_member_learned_from_gossip(void **state) {
    (void)state;
    gossip(7100, 1, 1, MEMBER_ALIVE);
    assert_int_equal(members_total(n->members), 2);
    assert_int_equal(members_live(n->members), 2);
    gossip(7101, 1, 1, MEMBER_DEAD);
    assert_int_equal(members_total(n->members), 3);
    assert_int_equal(members_live(n->members), 2);
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
    members_merge(n->members, &p);
    assert_int_equal(members_total(n->members), 1);
}

static void test_self_entry_not_overwritten(void **state) {
    (void)state;
    gossip(7000, 99999, 5, MEMBER_DEAD);
    assert_int_equal(members_at(n->members, 0)->state, MEMBER_ALIVE);
    assert_int_equal(members_at(n->members, 0)->incarnation, 1000);
}

/* Starts with fast timers and one seed, 127.0.0.1:9, that never answers. */
static void start_with_silent_seed(void) {
    n->cfg.gossip_ms = 10;
    n->cfg.suspect_ms = 60;
    n->cfg.dead_ms = 150;
    members_add_seed(n->members, lo(), 9);
}

/* Gossip naming a later incarnation of ourselves (our clock stepped back
 * since a past life) is refuted with a higher one; so is a dead verdict at
 * our own incarnation, with a higher heartbeat. */
static void test_refutes_what_others_say_of_us(void **state) {
    (void)state;
    gossip(7000, 1000, members_at(n->members, 0)->heartbeat + 5, MEMBER_DEAD);
    assert_int_equal(members_at(n->members, 0)->incarnation, 1000);
    assert_true(members_at(n->members, 0)->heartbeat > 5);
    gossip(7000, 3000, 1, MEMBER_DEAD);
    assert_true(members_at(n->members, 0)->incarnation > 3000);
    assert_int_equal(members_at(n->members, 0)->state, MEMBER_ALIVE);
    assert_true(n->incarnation > 3000);
    /* an incarnation beyond the clock bound is not believed, of anyone */
    gossip(7000, 1000 + WIRE_MAX_AHEAD_MS + 1, 1, MEMBER_DEAD);
    assert_true(members_at(n->members, 0)->incarnation < 1000 + WIRE_MAX_AHEAD_MS);
    gossip(7001, 1000 + WIRE_MAX_AHEAD_MS + 1, 1, MEMBER_ALIVE);
    assert_true(members_find(n->members, lo(), 7001) < 0);
}

static void test_silence_makes_suspect_then_dead(void **state) {
    (void)state;
    start_with_silent_seed();
    run_for(100);
    assert_int_equal(state_of(9), MEMBER_SUSPECT);
    assert_int_equal(members_live(n->members), 2);
    assert_true(fake.nsent > 0); /* gossip went to the seed */
    assert_int_equal(ntohs(fake.sent[0].to.sin_port), 9);
    run_for(120);
    assert_int_equal(state_of(9), MEMBER_DEAD);
    assert_int_equal(members_live(n->members), 1);
    assert_true(members_at(n->members, 0)->heartbeat >= 10);
}

static void test_own_stall_is_not_blamed_on_others(void **state) {
    (void)state;
    start_with_silent_seed();
    /* the node gets no tick for 250 ms at 30 ms: longer than dead_ms, but
     * the member's silence is ours */
    run_for(30);
    fake.clock_ms += 250;
    run_for(10);
    assert_int_equal(state_of(9), MEMBER_ALIVE);
    /* its own silence after that still counts */
    run_for(200);
    assert_int_equal(state_of(9), MEMBER_DEAD);
}

static void test_probe_is_answered_directly(void **state) {
    (void)state;
    uint16_t port = 7100;
    members_add_seed(n->members, lo(), port);
    uint64_t hb = members_at(n->members, 0)->heartbeat;

    Member from = MEMBER__INIT;
    from.ip = lo();
    from.port = port;
    from.incarnation = 5;
    from.heartbeat = 1;
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &from;
    p.flags = PEER_GOSSIP_PROBE;
    fake.nsent = 0;
    members_merge(n->members, &p);
    node_flush(n);

    assert_int_equal(fake.nsent, 1);
    assert_int_equal(ntohs(fake.sent[0].to.sin_port), port);
    wire_arena *a = wire_arena_new();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(a, fake.sent[0].buf, fake.sent[0].len, &f), 0);
    assert_int_equal(f.kind, WIRE_KIND_PEER);
    Peer *ans = wire_unpack_peer(a, f.payload, f.plen);
    assert_non_null(ans);
    assert_int_equal(ans->type, PEER_GOSSIP);
    assert_int_equal(ans->flags & PEER_GOSSIP_PROBE, 0); /* an answer is not a probe */
    assert_non_null(ans->from);
    assert_int_equal(ans->from->port, 7000);
    assert_true(ans->from->heartbeat > hb);
    wire_arena_free(a);

    /* gossip without the flag is not answered */
    p.flags = 0;
    from.heartbeat = 2;
    fake.nsent = 0;
    members_merge(n->members, &p);
    node_flush(n);
    assert_int_equal(fake.nsent, 0);
}

static void test_pref_lists_skip_dead(void **state) {
    (void)state;
    for (uint16_t p = 7001; p < 7010; p++) gossip(p, 1, 1, MEMBER_ALIVE);
    gossip(7003, 1, 1, MEMBER_DEAD);
    long dead = members_find(n->members, lo(), 7003);
    for (uint64_t h = 0; h < 1000; h++) {
        uint32_t out[3];
        size_t k = members_pref(n->members, h * 0x9E3779B97F4A7C15ull, 3, out);
        assert_int_equal(k, 3);
        for (size_t i = 0; i < k; i++) {
            assert_int_not_equal(out[i], (uint32_t)dead);
            for (size_t j = 0; j < i; j++) assert_int_not_equal(out[i], out[j]);
        }
    }
    double total = 0;
    for (size_t i = 0; i < members_total(n->members); i++) total += members_share(n->members, i);
    assert_true(total > 0.999 && total < 1.001);
    assert_true(members_share(n->members, (size_t)dead) == 0);
}

static void test_format_lists_everyone(void **state) {
    (void)state;
    gossip(7001, 1, 1, MEMBER_ALIVE);
    gossip(7002, 1, 1, MEMBER_DEAD);
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

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_self_is_member_zero),
        T(test_seeds_count_as_live),
        T(test_newer_pair_wins_older_ignored),
        T(test_dead_verdict_spreads_at_equal_pair),
        T(test_dead_never_resurrected_by_stale_news),
        T(test_restart_outranks_previous_life),
        T(test_unknown_member_learned_from_gossip),
        T(test_bad_entries_ignored),
        T(test_self_entry_not_overwritten),
        T(test_refutes_what_others_say_of_us),
        T(test_silence_makes_suspect_then_dead),
        T(test_own_stall_is_not_blamed_on_others),
        T(test_probe_is_answered_directly),
        T(test_pref_lists_skip_dead),
        T(test_format_lists_everyone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
