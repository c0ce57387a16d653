/* Unit tests for node: the core driven through a fake environment. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fake_env.h"
#include "node.h"
#include "wire.h"

static node *n;

static int setup(void **state) {
    (void)state;
    fake_reset(1000, 1800000000000ull);
    n = fake_node(NULL, 7000, 1 << 20);
    return n ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    fake_node_free(n);
    return 0;
}

/* The reply in the i-th datagram sent, decoded into a. */
static KVResponse *reply_at(wire_arena *a, size_t i) {
    wire_frame f;
    assert_true(i < fake.nsent);
    assert_int_equal(wire_unpack_msg(a, fake.sent[i].buf, fake.sent[i].len, &f), 0);
    KVResponse *r = wire_unpack_response(a, f.payload, f.plen);
    assert_non_null(r);
    return r;
}

/* Stamps grow strictly and stay with the wall clock: a million in one
 * millisecond run at most 16 ms ahead (the old 6-bit count ran 15.6 s). */
static void test_stamps_unique_and_bounded(void **state) {
    (void)state;
    uint64_t prev = 0;
    for (int i = 0; i < 1000000; i++) {
        uint64_t s = node_stamp(n);
        assert_true(s > prev);
        prev = s;
    }
    uint64_t wall_ms = fake_wall(NULL);
    assert_true((prev >> 16) <= wall_ms + 16);
    /* a stamp from a clock too far ahead is not believed */
    node_stamp_seen(n, (wall_ms + WIRE_MAX_AHEAD_MS + 1000) << 16);
    assert_true((node_stamp(n) >> 16) <= wall_ms + 16);
    /* one within the bound is: later stamps are above it */
    uint64_t near = (wall_ms + 5000) << 16;
    node_stamp_seen(n, near);
    assert_true(node_stamp(n) > near);
}

static size_t request(uint8_t *buf, uint32_t cmd, const char *key, const char *val) {
    uint8_t id[WIRE_ID_LEN] = {1, 2, 3};
    return wire_request(buf, WIRE_MAX_DATAGRAM, id, cmd, key, key ? strlen(key) : 0, val,
                        val ? strlen(val) : 0, 0);
}

/* SHUTDOWN asks the environment to stop; the core never exits by itself. */
static void test_shutdown_asks_the_environment(void **state) {
    (void)state;
    uint8_t buf[256];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    node_receive(n, &from, buf, request(buf, WIRE_SHUTDOWN, NULL, NULL));
    assert_int_equal(fake.stops, 1);
}

/* A single node serves a PUT and a GET through its environment alone. */
static void test_single_node_put_get(void **state) {
    (void)state;
    uint8_t buf[256];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    node_receive(n, &from, buf, request(buf, WIRE_PUT, "k", "v"));
    node_tick(n);
    assert_int_equal(fake.nsent, 1);
    wire_arena *a = wire_arena_new();
    assert_int_equal(reply_at(a, 0)->errcode, WIRE_OK);
    uint8_t id2[WIRE_ID_LEN] = {9};
    size_t len = wire_request(buf, sizeof buf, id2, WIRE_GET, "k", 1, NULL, 0, 0);
    node_receive(n, &from, buf, len);
    assert_int_equal(fake.nsent, 2);
    KVResponse *r = reply_at(a, 1);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_int_equal(r->value.len, 1);
    assert_memory_equal(r->value.data, "v", 1);
    wire_arena_free(a);
}

/* A node takes an incarnation above its previous life's (kept by the
 * driver), even when its clock has stepped back below it, and tells the
 * driver of it. */
static void test_incarnation_above_the_last_life(void **state) {
    (void)state;
    assert_int_equal(fake.incarnation, n->incarnation); /* told at start */
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.last_incarnation = fake_wall(NULL) + 20000;
    node *m = fake_node(&cfg, 7001, 1 << 20);
    assert_non_null(m);
    assert_int_equal(m->incarnation, cfg.last_incarnation + 1);
    assert_int_equal(fake.incarnation, cfg.last_incarnation + 1);
    fake_node_free(m);
    /* one beyond belief (a past life's clock an hour ahead) is capped */
    cfg.last_incarnation = fake_wall(NULL) + 3600000;
    m = fake_node(&cfg, 7001, 1 << 20);
    assert_non_null(m);
    assert_true(m->incarnation < fake_wall(NULL) + WIRE_MAX_AHEAD_MS);
    fake_node_free(m);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_stamps_unique_and_bounded),
        T(test_shutdown_asks_the_environment),
        T(test_single_node_put_get),
        T(test_incarnation_above_the_last_life),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
