/* Unit tests for members: merge rules, failure detection, the ring. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "members.h"
#include "server.h"
#include "wire.h"

static node n;

static int setup(void **state) {
    (void)state;
    memset(&n, 0, sizeof n);
    server_defaults(&n.cfg);
    n.cfg.quiet = true;
    n.cfg.port = 7000;
    n.loop = uv_default_loop();
    n.self.sin_family = AF_INET;
    n.self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    n.self.sin_port = htons(7000);
    n.incarnation = 1000;
    n.members = members_new(&n);
    return n.members ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    members_free(n.members);
    return 0;
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
    members_merge(n.members, &p);
}

static int state_of(uint16_t port) {
    long i = members_find(n.members, lo(), port);
    assert_true(i >= 0);
    return members_at(n.members, (size_t)i)->state;
}

static void test_self_is_member_zero(void **state) {
    (void)state;
    assert_int_equal(members_total(n.members), 1);
    assert_int_equal(members_live(n.members), 1);
    assert_int_equal(members_find(n.members, lo(), 7000), 0);
    assert_int_equal(members_add_seed(n.members, lo(), 7000), 0);
    assert_int_equal(members_total(n.members), 1);
}

static void test_seeds_count_as_live(void **state) {
    (void)state;
    for (uint16_t p = 7001; p < 7005; p++) assert_int_equal(members_add_seed(n.members, lo(), p), 0);
    assert_int_equal(members_total(n.members), 5);
    assert_int_equal(members_live(n.members), 5);
}

static void test_newer_pair_wins_older_ignored(void **state) {
    (void)state;
    gossip(7001, 5, 10, MEMBER_ALIVE);
    const member *m = members_at(n.members, (size_t)members_find(n.members, lo(), 7001));
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
    assert_int_equal(members_live(n.members), 1);
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
    assert_int_equal(members_total(n.members), 2);
    assert_int_equal(members_live(n.members), 2);
    gossip(7101, 1, 1, MEMBER_DEAD);
    assert_int_equal(members_total(n.members), 3);
    assert_int_equal(members_live(n.members), 2);
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
    members_merge(n.members, &p);
    assert_int_equal(members_total(n.members), 1);
}

static void test_self_entry_not_overwritten(void **state) {
    (void)state;
    gossip(7000, 99999, 5, MEMBER_DEAD);
    assert_int_equal(members_at(n.members, 0)->state, MEMBER_ALIVE);
    assert_int_equal(members_at(n.members, 0)->incarnation, 1000);
}

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

static void bind_node_socket(void) {
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    assert_int_equal(uv_udp_init(n.loop, &n.udp), 0);
    assert_int_equal(uv_udp_bind(&n.udp, (const struct sockaddr *)&any, 0), 0);
}

static void close_node_socket(void) {
    uv_close((uv_handle_t *)&n.udp, NULL);
    uv_run(n.loop, UV_RUN_NOWAIT);
}

/* Starts gossip with fast timers and one seed, 127.0.0.1:9, that never answers. */
static void start_with_silent_seed(void) {
    n.cfg.gossip_ms = 10;
    n.cfg.suspect_ms = 60;
    n.cfg.dead_ms = 150;
    uv_update_time(n.loop);
    bind_node_socket(); /* gossip goes out through the node's socket */
    members_add_seed(n.members, lo(), 9);
    assert_int_equal(members_start(n.members), 0);
}

static void test_silence_makes_suspect_then_dead(void **state) {
    (void)state;
    start_with_silent_seed();
    uv_timer_t t;
    uv_timer_init(n.loop, &t);
    uv_timer_start(&t, stop_loop, 100, 0);
    uv_run(n.loop, UV_RUN_DEFAULT);
    assert_int_equal(state_of(9), MEMBER_SUSPECT);
    assert_int_equal(members_live(n.members), 2);
    uv_timer_start(&t, stop_loop, 120, 0);
    uv_run(n.loop, UV_RUN_DEFAULT);
    assert_int_equal(state_of(9), MEMBER_DEAD);
    assert_int_equal(members_live(n.members), 1);
    assert_true(members_at(n.members, 0)->heartbeat >= 10);
    members_stop(n.members);
    uv_close((uv_handle_t *)&t, NULL);
    close_node_socket();
}

static void stall(uv_timer_t *t) {
    (void)t;
    struct timespec ts = {0, 250 * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_own_stall_is_not_blamed_on_others(void **state) {
    (void)state;
    start_with_silent_seed();
    /* the loop stalls 250 ms at 30 ms: longer than dead_ms, but the
     * member's silence is ours */
    uv_timer_t t, st;
    uv_timer_init(n.loop, &st);
    uv_timer_start(&st, stall, 30, 0);
    uv_timer_init(n.loop, &t);
    uv_timer_start(&t, stop_loop, 300, 0);
    uv_run(n.loop, UV_RUN_DEFAULT);
    assert_int_equal(state_of(9), MEMBER_ALIVE);
    /* its own silence after that still counts */
    uv_timer_start(&t, stop_loop, 200, 0);
    uv_run(n.loop, UV_RUN_DEFAULT);
    assert_int_equal(state_of(9), MEMBER_DEAD);
    members_stop(n.members);
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&st, NULL);
    close_node_socket();
}

static void test_probe_is_answered_directly(void **state) {
    (void)state;
    uv_update_time(n.loop);
    bind_node_socket();
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = {.sin_family = AF_INET, .sin_addr.s_addr = lo()};
    socklen_t ml = sizeof me;
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof me), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &ml), 0);
    uint16_t port = ntohs(me.sin_port);
    members_add_seed(n.members, lo(), port);
    uint64_t hb = members_at(n.members, 0)->heartbeat;

    Member from = MEMBER__INIT;
    from.ip = lo();
    from.port = port;
    from.incarnation = 5;
    from.heartbeat = 1;
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &from;
    p.flags = PEER_GOSSIP_PROBE;
    members_merge(n.members, &p);

    uint8_t buf[2048];
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t len = recv(fd, buf, sizeof buf, 0);
    assert_true(len > 0);
    wire_reset();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(buf, (size_t)len, &f), 0);
    assert_int_equal(f.kind, WIRE_KIND_PEER);
    Peer *ans = wire_unpack_peer(f.payload, f.plen);
    assert_non_null(ans);
    assert_int_equal(ans->type, PEER_GOSSIP);
    assert_int_equal(ans->flags & PEER_GOSSIP_PROBE, 0); /* an answer is not a probe */
    assert_non_null(ans->from);
    assert_int_equal(ans->from->port, 7000);
    assert_true(ans->from->heartbeat > hb);

    /* gossip without the flag is not answered */
    p.flags = 0;
    from.heartbeat = 2;
    members_merge(n.members, &p);
    tv.tv_sec = 0;
    tv.tv_usec = 100000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_true(recv(fd, buf, sizeof buf, 0) < 0);
    close(fd);
    close_node_socket();
}

static void test_pref_lists_skip_dead(void **state) {
    (void)state;
    for (uint16_t p = 7001; p < 7010; p++) gossip(p, 1, 1, MEMBER_ALIVE);
    gossip(7003, 1, 1, MEMBER_DEAD);
    long dead = members_find(n.members, lo(), 7003);
    for (uint64_t h = 0; h < 1000; h++) {
        uint32_t out[3];
        size_t k = members_pref(n.members, h * 0x9E3779B97F4A7C15ull, 3, out);
        assert_int_equal(k, 3);
        for (size_t i = 0; i < k; i++) {
            assert_int_not_equal(out[i], (uint32_t)dead);
            for (size_t j = 0; j < i; j++) assert_int_not_equal(out[i], out[j]);
        }
    }
    double total = 0;
    for (size_t i = 0; i < members_total(n.members); i++) total += members_share(n.members, i);
    assert_true(total > 0.999 && total < 1.001);
    assert_true(members_share(n.members, (size_t)dead) == 0);
}

static void test_format_lists_everyone(void **state) {
    (void)state;
    gossip(7001, 1, 1, MEMBER_ALIVE);
    gossip(7002, 1, 1, MEMBER_DEAD);
    char buf[256];
    size_t len = members_format(n.members, buf, sizeof buf);
    assert_int_equal(len, strlen(buf));
    assert_non_null(strstr(buf, "127.0.0.1:7000 alive\n"));
    assert_non_null(strstr(buf, "127.0.0.1:7001 alive\n"));
    assert_non_null(strstr(buf, "127.0.0.1:7002 dead\n"));
    char small[30];
    len = members_format(n.members, small, sizeof small);
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
        T(test_silence_makes_suspect_then_dead),
        T(test_own_stall_is_not_blamed_on_others),
        T(test_probe_is_answered_directly),
        T(test_pref_lists_skip_dead),
        T(test_format_lists_everyone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
