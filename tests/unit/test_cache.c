/* Unit tests for cache: the at-most-once reply cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"

static void id_of(uint32_t i, uint8_t id[16]) {
    memset(id, 0xAB, 16);
    memcpy(id, &i, sizeof i);
}

static void test_miss_pending_done(void **state) {
    (void)state;
    cache *c = cache_new(5000, 1 << 20);
    uint8_t id[16];
    id_of(1, id);
    const uint8_t *r;
    size_t len;
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_MISS);
    assert_int_equal(cache_begin(c, id, 16, 0), 0);
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_PENDING);
    assert_int_equal(cache_done(c, id, 16, (const uint8_t *)"reply", 5, 10), 0);
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_DONE);
    assert_int_equal(len, 5);
    assert_memory_equal(r, "reply", 5);
    assert_int_equal(cache_entries(c), 1);
    cache_free(c);
}

static void test_kept_for_ttl_then_expired(void **state) {
    (void)state;
    cache *c = cache_new(5000, 1 << 20);
    uint8_t id[16];
    id_of(7, id);
    const uint8_t *r;
    size_t len;
    cache_done(c, id, 16, (const uint8_t *)"x", 1, 1000);
    cache_expire(c, 5999);
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_DONE);
    cache_expire(c, 6000);
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_MISS);
    assert_int_equal(cache_entries(c), 0);
    assert_int_equal(cache_bytes(c), 0);
    cache_free(c);
}

static void test_abort_forgets_pending_only(void **state) {
    (void)state;
    cache *c = cache_new(5000, 1 << 20);
    uint8_t a[16], b[16];
    id_of(1, a);
    id_of(2, b);
    const uint8_t *r;
    size_t len;
    cache_begin(c, a, 16, 0);
    cache_abort(c, a, 16);
    assert_int_equal(cache_lookup(c, a, 16, &r, &len), CACHE_MISS);
    cache_done(c, b, 16, (const uint8_t *)"y", 1, 0);
    cache_abort(c, b, 16);
    assert_int_equal(cache_lookup(c, b, 16, &r, &len), CACHE_DONE);
    cache_free(c);
}

/* A cache at its byte cap keeps every entry within its window (dropping one
 * would let its retry run again) and refuses new requests until entries
 * expire. */
static void test_full_cache_refuses_new_requests_keeps_old(void **state) {
    (void)state;
    uint8_t big[1000];
    memset(big, 1, sizeof big);
    cache *c = cache_new(5000, 64 * 1024);
    uint8_t id[16];
    uint32_t i, kept = 0;
    for (i = 0; i < 1000; i++) {
        id_of(i, id);
        if (cache_begin(c, id, 16, i) != 0) break;
        assert_int_equal(cache_done(c, id, 16, big, sizeof big, i), 0);
        kept++;
    }
    assert_true(kept > 10 && kept < 1000);
    assert_true(cache_bytes(c) <= 64 * 1024 + sizeof big);
    const uint8_t *r;
    size_t len;
    for (uint32_t j = 0; j < kept; j++) {
        id_of(j, id);
        assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_DONE);
    }
    id_of(5000, id);
    assert_int_not_equal(cache_begin(c, id, 16, 10), 0);
    cache_expire(c, 5000 + kept);
    assert_int_equal(cache_entries(c), 0);
    assert_int_equal(cache_begin(c, id, 16, 6000), 0);
    cache_free(c);
}

static void test_forwarded_remembers_where(void **state) {
    (void)state;
    cache *c = cache_new(5000, 1 << 20);
    uint8_t id[16];
    id_of(7, id);
    const uint8_t *r;
    size_t len;
    assert_int_equal(cache_forwarded(c, id, 16, "node-b", 6, 0), 0);
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_FORWARDED);
    assert_int_equal(len, 6);
    assert_memory_equal(r, "node-b", 6);
    cache_expire(c, 5000);
    assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_MISS);
    cache_free(c);
}

static void test_many_ids_grow_table(void **state) {
    (void)state;
    cache *c = cache_new(5000, 1 << 30);
    uint8_t id[16];
    for (uint32_t i = 0; i < 200000; i++) {
        id_of(i, id);
        assert_int_equal(cache_done(c, id, 16, (const uint8_t *)&i, sizeof i, 0), 0);
    }
    assert_int_equal(cache_entries(c), 200000);
    for (uint32_t i = 0; i < 200000; i += 997) {
        const uint8_t *r;
        size_t len;
        id_of(i, id);
        assert_int_equal(cache_lookup(c, id, 16, &r, &len), CACHE_DONE);
        assert_memory_equal(r, &i, sizeof i);
    }
    cache_expire(c, 5000);
    assert_int_equal(cache_entries(c), 0);
    cache_free(c);
}

static void test_odd_id_lengths(void **state) {
    (void)state;
    cache *c = cache_new(5000, 1 << 20);
    uint8_t longid[100];
    memset(longid, 3, sizeof longid);
    const uint8_t *r;
    size_t len;
    assert_int_equal(cache_done(c, longid, sizeof longid, (const uint8_t *)"z", 1, 0), 0);
    assert_int_equal(cache_lookup(c, longid, sizeof longid, &r, &len), CACHE_DONE);
    assert_int_equal(cache_done(c, NULL, 0, (const uint8_t *)"e", 1, 0), 0);
    assert_int_equal(cache_lookup(c, NULL, 0, &r, &len), CACHE_DONE);
    cache_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_pending_done),
        cmocka_unit_test(test_kept_for_ttl_then_expired),
        cmocka_unit_test(test_abort_forgets_pending_only),
        cmocka_unit_test(test_full_cache_refuses_new_requests_keeps_old),
        cmocka_unit_test(test_forwarded_remembers_where),
        cmocka_unit_test(test_many_ids_grow_table),
        cmocka_unit_test(test_odd_id_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
