/* Unit tests for node: the core driven through a fake environment. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "node.h"
#include "wire.h"

static node *n;
static store *st;
static uint64_t clock_ms, wall_ms;
static int stops;
static size_t sent, sent_len;
static uint8_t last[WIRE_MAX_DATAGRAM];

static uint64_t env_now(void *ctx) { (void)ctx; return clock_ms; }
static uint64_t env_wall(void *ctx) { (void)ctx; return wall_ms; }
static uint64_t env_random(void *ctx) { (void)ctx; return 42; }
static void env_log(void *ctx, const char *line) { (void)ctx; (void)line; }
static void env_stop(void *ctx) { (void)ctx; stops++; }
static int env_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    (void)ctx;
    (void)to;
    sent++;
    sent_len = len;
    memcpy(last, buf, len);
    return 0;
}

static int setup(void **state) {
    (void)state;
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.port = 7000;
    struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = htons(7000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    node_env env = {NULL, env_now, env_wall, env_send, env_random, env_log, env_stop, NULL};
    clock_ms = 1000;
    wall_ms = 1800000000000ull;
    stops = 0;
    sent = 0;
    if (store_open(&st, NULL, 1 << 20) != 0) return -1;
    n = node_new(&cfg, &env, &self, st, 1234);
    return n ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    node_free(n);
    store_close(st);
    return 0;
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
    assert_int_equal(stops, 1);
}

/* A single node serves a PUT and a GET through its environment alone. */
static void test_single_node_put_get(void **state) {
    (void)state;
    uint8_t buf[256];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    node_receive(n, &from, buf, request(buf, WIRE_PUT, "k", "v"));
    node_tick(n);
    assert_int_equal(sent, 1);
    wire_arena *a = wire_arena_new();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(a, last, sent_len, &f), 0);
    KVResponse *r = wire_unpack_response(a, f.payload, f.plen);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    uint8_t id2[WIRE_ID_LEN] = {9};
    size_t len = wire_request(buf, sizeof buf, id2, WIRE_GET, "k", 1, NULL, 0, 0);
    node_receive(n, &from, buf, len);
    assert_int_equal(sent, 2);
    assert_int_equal(wire_unpack_msg(a, last, sent_len, &f), 0);
    r = wire_unpack_response(a, f.payload, f.plen);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_int_equal(r->value.len, 1);
    assert_memory_equal(r->value.data, "v", 1);
    wire_arena_free(a);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_stamps_unique_and_bounded),
        T(test_shutdown_asks_the_environment),
        T(test_single_node_put_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
