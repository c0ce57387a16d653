/* Unit tests for store: both engines (memory, LMDB in a mkdtemp directory)
 * run every behavioural test; LMDB adds persistence across close/open, a
 * full map (a small map limit) and a full disk (a tmpfs in a child process
 * with its own mount namespace, skipped where that is not allowed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "digest.h"
#include "ring.h"
#include "store.h"

#define BIG_CAP ((size_t)1 << 30)

typedef struct fx {
    store *s;
    bool lmdb;
    char dir[64]; /* LMDB only */
} fx;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup_mem(void **state) {
    fx *f = calloc(1, sizeof *f);
    if (!f || store_open(&f->s, NULL, BIG_CAP) != 0) return -1;
    *state = f;
    return 0;
}

static int setup_lmdb(void **state) {
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->lmdb = true;
    strcpy(f->dir, "/tmp/test_store.XXXXXX");
    if (!mkdtemp(f->dir) || store_open(&f->s, f->dir, BIG_CAP) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    store_close(f->s);
    if (f->lmdb) nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Closes the fixture's store and opens it again (same dir) with cap. */
static void reopen(fx *f, size_t cap) {
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(&f->s, f->lmdb ? f->dir : NULL, cap), 0);
    assert_int_equal(store_max_bytes(f->s), cap);
}

static const uint8_t *K(const char *k) { return (const uint8_t *)k; }

static int put(store *s, const char *key, const char *val, uint64_t stamp) {
    store_rec r = {(const uint8_t *)val, (uint32_t)strlen(val), 7, stamp, false};
    return store_put(s, K(key), strlen(key), &r);
}

static int tomb(store *s, const char *key, uint64_t stamp) {
    store_rec r = {NULL, 0, 0, stamp, true};
    return store_put(s, K(key), strlen(key), &r);
}

/* store_drop_older, which must succeed: how many it dropped. */
static size_t drop_older(store *s, uint64_t min_stamp) {
    size_t dropped = SIZE_MAX;
    assert_int_equal(store_drop_older(s, min_stamp, &dropped), 0);
    return dropped;
}

static void expect_val(store *s, const char *key, const char *val, uint64_t stamp) {
    store_rec r;
    assert_int_equal(store_get(s, K(key), strlen(key), &r), 0);
    assert_false(r.tomb);
    assert_int_equal(r.stamp, stamp);
    assert_int_equal(r.vlen, strlen(val));
    assert_non_null(r.val);
    assert_memory_equal(r.val, val, r.vlen);
}

static void expect_tomb(store *s, const char *key, uint64_t stamp) {
    store_rec r;
    assert_int_equal(store_get(s, K(key), strlen(key), &r), 0);
    assert_true(r.tomb);
    assert_int_equal(r.stamp, stamp);
    assert_null(r.val);
    assert_int_equal(r.vlen, 0);
}

static void expect_none(store *s, const char *key) {
    store_rec r;
    assert_int_equal(store_get(s, K(key), strlen(key), &r), STORE_ENOTFOUND);
}

static void expect_sizes(store *s, size_t count, size_t records, size_t bytes) {
    assert_int_equal(store_count(s), count);
    assert_int_equal(store_records(s), records);
    assert_int_equal(store_bytes(s), bytes);
}

/* ---- basic behaviour (both engines) ------------------------------------- */

static void test_put_get_roundtrip(void **state) {
    fx *f = *state;
    store *s = f->s;
    assert_string_equal(store_engine(s), f->lmdb ? "lmdb" : "memory");
    assert_int_equal(store_max_bytes(s), BIG_CAP);
    expect_sizes(s, 0, 0, 0);
    expect_none(s, "alpha");

    store_rec r = {K("hello"), 5, -42, 100, false};
    assert_int_equal(store_put(s, K("alpha"), 5, &r), 0);
    store_rec g;
    assert_int_equal(store_get(s, K("alpha"), 5, &g), 0);
    assert_int_equal(g.vlen, 5);
    assert_memory_equal(g.val, "hello", 5);
    assert_int_equal(g.version, -42);
    assert_int_equal(g.stamp, 100);
    assert_false(g.tomb);
    expect_sizes(s, 1, 1, 10);

    /* An empty value is a live record, not a tombstone. */
    assert_int_equal(put(s, "empty", "", 5), 0);
    expect_val(s, "empty", "", 5);
    expect_sizes(s, 2, 2, 15);

    /* Keys are compared as bytes, by length too. */
    expect_none(s, "alph");
    expect_none(s, "alphaa");
    const uint8_t bin[3] = {0, 1, 0};
    r = (store_rec){bin, 3, 1, UINT64_MAX, false};
    assert_int_equal(store_put(s, bin, 3, &r), 0);
    assert_int_equal(store_get(s, bin, 3, &g), 0);
    assert_memory_equal(g.val, bin, 3);
    assert_int_equal(g.stamp, UINT64_MAX);
    assert_int_equal(store_get(s, bin, 2, &g), STORE_ENOTFOUND);
    assert_int_equal(store_sync(s), 0);
}

static void test_newer_stamp_overwrites(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(put(s, "k", "first", 10), 0);
    assert_int_equal(put(s, "k", "second-longer", 11), 0);
    expect_val(s, "k", "second-longer", 11);
    expect_sizes(s, 1, 1, 1 + 13);
    assert_int_equal(put(s, "k", "3", 1000), 0);
    expect_val(s, "k", "3", 1000);
    expect_sizes(s, 1, 1, 2);
}

/* Two writes with one stamp (two coordinators in the same instant): every
 * replica keeps the same one, whichever order they arrive in, so replicas
 * cannot disagree for good. */
static void test_equal_stamps_agree_whatever_the_order(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(put(s, "a", "apple", 10), 0);
    assert_int_equal(put(s, "a", "pear", 10), STORE_ESTALE);
    assert_int_equal(put(s, "b", "pear", 10), 0);
    assert_int_equal(put(s, "b", "apple", 10), 0);
    expect_val(s, "a", "apple", 10);
    expect_val(s, "b", "apple", 10);
    /* a tombstone wins over a value with its stamp, in either order */
    assert_int_equal(tomb(s, "a", 10), 0);
    assert_int_equal(tomb(s, "c", 10), 0);
    assert_int_equal(put(s, "c", "apple", 10), STORE_ESTALE);
    store_rec r;
    assert_int_equal(store_get(s, (const uint8_t *)"a", 1, &r), 0);
    assert_true(r.tomb);
    assert_int_equal(store_get(s, (const uint8_t *)"c", 1, &r), 0);
    assert_true(r.tomb);
}

static void test_older_or_equal_stamp_is_stale(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(put(s, "k", "kept", 10), 0);
    assert_int_equal(put(s, "k", "kept", 10), STORE_ESTALE);  /* the same record */
    assert_int_equal(put(s, "k", "kep", 10), STORE_ESTALE);   /* equal stamp, less content */
    assert_int_equal(put(s, "k", "older", 9), STORE_ESTALE);
    assert_int_equal(put(s, "k", "zero", 0), STORE_ESTALE);
    assert_int_equal(tomb(s, "k", 9), STORE_ESTALE);
    expect_val(s, "k", "kept", 10);
    expect_sizes(s, 1, 1, 5);
    /* Applying the same record twice changes nothing. */
    assert_int_equal(put(s, "k", "again", 11), 0);
    assert_int_equal(put(s, "k", "again", 11), STORE_ESTALE);
    expect_val(s, "k", "again", 11);
    expect_sizes(s, 1, 1, 6);
}

static void test_tombstone_not_counted_but_returned(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(put(s, "a", "value", 10), 0);
    assert_int_equal(put(s, "b", "other", 10), 0);
    assert_int_equal(tomb(s, "a", 20), 0);
    expect_tomb(s, "a", 20);
    expect_sizes(s, 1, 2, 1 + 1 + 5); /* tombstone counts its key bytes */

    /* An older write after the remove loses to it. */
    assert_int_equal(put(s, "a", "late", 15), STORE_ESTALE);
    expect_tomb(s, "a", 20);

    /* A tombstone for a key never seen is stored too. */
    assert_int_equal(tomb(s, "ghost", 5), 0);
    expect_tomb(s, "ghost", 5);
    expect_sizes(s, 1, 3, 1 + 6 + 5);

    /* A tombstone's value is ignored. */
    store_rec r = {K("junk"), 4, 3, 6, true};
    assert_int_equal(store_put(s, K("ghost"), 5, &r), 0);
    expect_tomb(s, "ghost", 6);
    expect_sizes(s, 1, 3, 1 + 6 + 5);

    /* A newer write brings the key back. */
    assert_int_equal(put(s, "a", "back", 21), 0);
    expect_val(s, "a", "back", 21);
    expect_sizes(s, 2, 3, 5 + 6 + 5);
}

static void test_gc_drops_old_tombstones_only(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(tomb(s, "t5", 5), 0);
    assert_int_equal(tomb(s, "t10", 10), 0);
    assert_int_equal(tomb(s, "t15", 15), 0);
    assert_int_equal(put(s, "live1", "v", 1), 0);    /* old but live */
    assert_int_equal(put(s, "live99", "vv", 99), 0);
    expect_sizes(s, 2, 5, 2 + 3 + 3 + 6 + 8);

    assert_int_equal(store_gc(s, 5), 0); /* strictly below */
    assert_int_equal(store_gc(s, 10), 1);
    expect_none(s, "t5");
    expect_tomb(s, "t10", 10);
    expect_sizes(s, 2, 4, 3 + 3 + 6 + 8);

    assert_int_equal(store_gc(s, UINT64_MAX), 2);
    expect_none(s, "t10");
    expect_none(s, "t15");
    expect_val(s, "live1", "v", 1);
    expect_val(s, "live99", "vv", 99);
    expect_sizes(s, 2, 2, 6 + 8);
    assert_int_equal(store_gc(s, UINT64_MAX), 0);

    /* A key whose tombstone was dropped can be written again at any stamp. */
    assert_int_equal(put(s, "t5", "new", 1), 0);
    expect_val(s, "t5", "new", 1);
}

/* A store the cluster outlived (node.h): every record below the stamp goes,
 * values and tombstones, and the counts follow. */
static int count_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    (void)key, (void)klen, (void)rec;
    ++*(size_t *)ctx;
    return 0;
}

/* While the memory engine's table grows (its records move a few at a time)
 * every record stays readable, replaceable, droppable and walked once. */
static void test_growth_keeps_every_record(void **state) {
    store *s = ((fx *)*state)->s;
    char key[32], half[32];
    const int n = 60000;
    size_t dropped = 0;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "g%d", i);
        assert_int_equal(put(s, key, key, 10), 0);
        snprintf(half, sizeof half, "g%d", i / 2);
        if (i % 2 == 0 && i / 2 % 5 != 0) expect_val(s, half, half, 10);
        if (i / 2 % 5 == 1 && i % 2 == 0) assert_int_equal(put(s, half, "new", 11), 0);
        if (i % 10 == 0 && i > 0) { /* drop one put a while ago */
            snprintf(half, sizeof half, "g%d", i / 2);
            store_rec r;
            assert_int_equal(store_get(s, K(half), strlen(half), &r), 0);
            assert_int_equal(store_drop(s, K(half), strlen(half), r.stamp), 0);
            dropped++;
        }
        if (i % 4099 == 0) {
            size_t seen = 0;
            assert_int_equal(store_iter(s, count_visit, &seen), 0);
            assert_int_equal(seen, store_records(s));
        }
    }
    assert_int_equal(store_records(s), n - dropped);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "g%d", i);
        if (i % 5 == 0 && i > 0 && i < n / 2) expect_none(s, key);
        else if (i % 5 == 1 && i < n / 2) expect_val(s, key, "new", 11);
        else expect_val(s, key, key, 10);
    }
}

/* Tombstones replaced, dropped or put again (store_gc's heap keeps stale
 * entries of them) are collected once, by their current stamp. */
static void test_gc_after_tombstones_replaced(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(tomb(s, "a", 5), 0);
    assert_int_equal(put(s, "a", "v", 6), 0);      /* no longer a tombstone */
    assert_int_equal(tomb(s, "b", 5), 0);
    assert_int_equal(tomb(s, "b", 9), 0);          /* a newer tombstone */
    assert_int_equal(tomb(s, "c", 4), 0);
    assert_int_equal(store_drop(s, K("c"), 1, 4), 0);
    assert_int_equal(tomb(s, "c", 12), 0);         /* back, later */
    assert_int_equal(store_gc(s, 9), 0);
    assert_int_equal(store_records(s), 3);
    assert_int_equal(store_gc(s, 10), 1);          /* b */
    expect_none(s, "b");
    assert_int_equal(tomb(s, "a", 11), 0);
    assert_int_equal(store_gc(s, 12), 1);          /* a, not c */
    assert_int_equal(store_records(s), 1);
    assert_int_equal(store_gc(s, 100), 1);
    assert_int_equal(store_records(s), 0);
    assert_int_equal(store_gc(s, 100), 0);
}

/* LMDB: the tombstones of the last life are collected after a reopen
 * (the heap is made by the open's walk). */
static void test_lmdb_gc_after_reopen(void **state) {
    fx *f = *state;
    assert_int_equal(tomb(f->s, "a", 5), 0);
    assert_int_equal(tomb(f->s, "b", 7), 0);
    assert_int_equal(put(f->s, "c", "v", 6), 0);
    reopen(f, BIG_CAP);
    assert_int_equal(store_gc(f->s, 6), 1);
    assert_int_equal(store_gc(f->s, 100), 1);
    assert_int_equal(store_records(f->s), 1);
    expect_val(f->s, "c", "v", 6);
}

static void test_drop_older_drops_values_and_tombstones(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(put(s, "a", "va", 10), 0);
    assert_int_equal(tomb(s, "t", 11), 0);
    assert_int_equal(put(s, "b", "vbb", 12), 0);
    assert_int_equal(put(s, "c", "vcccc", 20), 0);
    expect_sizes(s, 3, 4, 3 + 1 + 4 + 6);
    assert_int_equal(drop_older(s, 10), 0); /* strictly below */
    assert_int_equal(drop_older(s, 13), 3);
    expect_none(s, "a");
    expect_none(s, "t");
    expect_none(s, "b");
    expect_val(s, "c", "vcccc", 20);
    expect_sizes(s, 1, 1, 6);
    assert_int_equal(drop_older(s, 13), 0);
}

static void test_drop_only_the_same_record(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(put(s, "a", "va", 10), 0);
    assert_int_equal(tomb(s, "t", 11), 0);
    assert_int_equal(put(s, "b", "vbb", 12), 0);
    expect_sizes(s, 2, 3, 3 + 1 + 4);
    assert_int_equal(store_drop(s, K("a"), 1, 9), STORE_ESTALE);  /* another write */
    assert_int_equal(store_drop(s, K("zz"), 2, 10), STORE_ENOTFOUND);
    expect_val(s, "a", "va", 10);
    assert_int_equal(store_drop(s, K("a"), 1, 10), 0);
    expect_none(s, "a");
    expect_sizes(s, 1, 2, 1 + 4);
    assert_int_equal(store_drop(s, K("t"), 1, 11), 0); /* tombstones too */
    expect_none(s, "t");
    expect_sizes(s, 1, 1, 4);
    expect_val(s, "b", "vbb", 12);
    assert_int_equal(store_drop(s, K("a"), 1, 10), STORE_ENOTFOUND);
    /* nothing of a dropped key remains: any stamp writes it again */
    assert_int_equal(put(s, "a", "new", 1), 0);
    expect_val(s, "a", "new", 1);
    /* many drops inside long probe runs keep every other key reachable */
    char k[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(put(s, k, "v", 100 + (uint64_t)i), 0);
    }
    for (int i = 0; i < 2000; i += 2) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(store_drop(s, K(k), strlen(k), 100 + (uint64_t)i), 0);
    }
    size_t bytes = 4 + 4; /* "a" "new", "b" "vbb" */
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        if (i % 2) {
            expect_val(s, k, "v", 100 + (uint64_t)i);
            bytes += strlen(k) + 1;
        } else {
            expect_none(s, k);
        }
    }
    expect_sizes(s, 2 + 1000, 2 + 1000, bytes);
}

/* Many tombstones, dropped in one gc, among live keys: exercises deletion
 * inside long probe runs (memory) and cursor deletes across pages (LMDB). */
static void test_gc_many_keeps_table_correct(void **state) {
    store *s = ((fx *)*state)->s;
    char key[32];
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        assert_int_equal(put(s, key, key, 1), 0);
        if (i % 3 != 0) assert_int_equal(tomb(s, key, 2 + (uint64_t)(i % 2)), 0);
    }
    size_t live = (size_t)(n + 2) / 3;
    assert_int_equal(store_count(s), live);
    assert_int_equal(store_records(s), n);
    /* Tombstones with stamp 2 (even i not divisible by 3) go first. */
    size_t even = 0, odd = 0;
    for (int i = 0; i < n; i++)
        if (i % 3 != 0) *(i % 2 ? &odd : &even) += 1;
    assert_int_equal(store_gc(s, 3), even);
    assert_int_equal(store_records(s), n - even);
    assert_int_equal(store_gc(s, 4), odd);
    assert_int_equal(store_records(s), live);
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        if (i % 3 == 0) {
            expect_val(s, key, key, 1);
            bytes += 2 * strlen(key);
        } else {
            expect_none(s, key);
        }
    }
    assert_int_equal(store_bytes(s), bytes);
}

static void test_cap_enospace_changes_nothing(void **state) {
    fx *f = *state;
    reopen(f, 20);
    store *s = f->s;
    assert_int_equal(put(s, "aaaa", "123456", 1), 0); /* 10 bytes */
    assert_int_equal(put(s, "bb", "12345678", 1), 0); /* 10 bytes: exactly 20 */
    expect_sizes(s, 2, 2, 20);

    /* A new key, even a tombstone (its key bytes count), does not fit. */
    assert_int_equal(put(s, "c", "", 1), STORE_ENOSPACE);
    assert_int_equal(tomb(s, "c", 1), STORE_ENOSPACE);
    /* Growing an existing record does not fit either. */
    assert_int_equal(put(s, "aaaa", "1234567", 2), STORE_ENOSPACE);
    expect_sizes(s, 2, 2, 20);
    expect_val(s, "aaaa", "123456", 1);
    expect_val(s, "bb", "12345678", 1);
    expect_none(s, "c");

    /* A stale put is reported as such, even when it would not fit. */
    assert_int_equal(put(s, "aaaa", "1234567890", 0), STORE_ESTALE);

    /* Replacing by a smaller value works; the bytes follow exactly. */
    assert_int_equal(put(s, "aaaa", "12", 3), 0);
    expect_sizes(s, 2, 2, 16);
    expect_val(s, "aaaa", "12", 3);
    /* Same size at the cap too. */
    assert_int_equal(put(s, "aaaa", "123456", 4), 0);
    expect_sizes(s, 2, 2, 20);
    assert_int_equal(put(s, "aaaa", "abcdef", 5), 0);
    expect_sizes(s, 2, 2, 20);
    /* A remove frees the value bytes, then a new key fits. */
    assert_int_equal(tomb(s, "bb", 6), 0);
    expect_sizes(s, 1, 2, 12);
    assert_int_equal(put(s, "c", "1234567", 7), 0);
    expect_sizes(s, 2, 3, 20);
    assert_int_equal(put(s, "d", "", 7), STORE_ENOSPACE);
    /* gc frees the tombstone's key bytes. */
    assert_int_equal(store_gc(s, 100), 1);
    expect_sizes(s, 2, 2, 18);
    assert_int_equal(put(s, "dd", "", 8), 0);
    expect_sizes(s, 3, 3, 20);
}

static void test_cap_zero_refuses_all(void **state) {
    fx *f = *state;
    reopen(f, 0);
    assert_int_equal(put(f->s, "k", "", 1), STORE_ENOSPACE);
    assert_int_equal(tomb(f->s, "k", 1), STORE_ENOSPACE);
    expect_sizes(f->s, 0, 0, 0);
}

static void test_wipe_removes_everything(void **state) {
    store *s = ((fx *)*state)->s;
    char key[16];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "w%d", i);
        assert_int_equal(i % 5 ? put(s, key, "v", 10) : tomb(s, key, 10), 0);
    }
    assert_int_equal(store_records(s), 500);
    assert_int_equal(store_wipe(s), 0);
    expect_sizes(s, 0, 0, 0);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "w%d", i);
        expect_none(s, key);
    }
    /* Stamps are forgotten too: an old write is accepted after a wipe. */
    assert_int_equal(put(s, "w1", "again", 1), 0);
    expect_val(s, "w1", "again", 1);
    expect_sizes(s, 1, 1, 7);
    assert_int_equal(store_wipe(s), 0);
    assert_int_equal(store_wipe(s), 0);
    expect_sizes(s, 0, 0, 0);
}

typedef struct seen {
    uint8_t *hits; /* per key index */
    int n;
    int visits;
    int stop_after; /* 0: never */
    bool bad;
} seen;

static int visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    seen *sn = ctx;
    char buf[STORE_MAX_KEY + 1];
    memcpy(buf, key, klen);
    buf[klen] = 0;
    int i;
    if (sscanf(buf, "it%d", &i) != 1 || i < 0 || i >= sn->n) {
        sn->bad = true;
        return 0;
    }
    sn->hits[i]++;
    sn->visits++;
    /* Every 4th key is a tombstone; others hold their own key as value. */
    if (i % 4 == 0) {
        if (!rec->tomb || rec->vlen || rec->val) sn->bad = true;
    } else if (rec->tomb || rec->vlen != klen || memcmp(rec->val, key, klen) ||
               rec->stamp != (uint64_t)i + 1 || rec->version != i) {
        sn->bad = true;
    }
    if (sn->stop_after && sn->visits == sn->stop_after) return 77;
    return 0;
}

static void test_iter_visits_each_once_and_stops(void **state) {
    store *s = ((fx *)*state)->s;
    const int n = 3000;
    char key[16];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "it%d", i);
        store_rec r = {K(key), (uint32_t)strlen(key), i, (uint64_t)i + 1, i % 4 == 0};
        assert_int_equal(store_put(s, K(key), strlen(key), &r), 0);
    }
    seen sn = {calloc((size_t)n, 1), n, 0, 0, false};
    assert_int_equal(store_iter(s, visit, &sn), 0);
    assert_false(sn.bad);
    assert_int_equal(sn.visits, n);
    for (int i = 0; i < n; i++) assert_int_equal(sn.hits[i], 1);

    memset(sn.hits, 0, (size_t)n);
    sn.visits = 0;
    sn.stop_after = 10;
    assert_int_equal(store_iter(s, visit, &sn), 77);
    assert_int_equal(sn.visits, 10);
    free(sn.hits);

    /* An empty store calls nothing. */
    assert_int_equal(store_wipe(s), 0);
    seen none = {NULL, 0, 0, 0, false};
    assert_int_equal(store_iter(s, visit, &none), 0);
    assert_int_equal(none.visits, 0);
    assert_false(none.bad);
}

static void test_einval_bounds(void **state) {
    store *s = ((fx *)*state)->s;
    static uint8_t big[STORE_MAX_VALUE + 1];
    uint8_t key[STORE_MAX_KEY + 1];
    memset(key, 'k', sizeof key);
    memset(big, 'v', sizeof big);
    store_rec r = {big, 1, 0, 1, false};

    assert_int_equal(store_put(s, key, 0, &r), STORE_EINVAL);
    assert_int_equal(store_put(s, key, STORE_MAX_KEY + 1, &r), STORE_EINVAL);
    assert_int_equal(store_put(s, NULL, 1, &r), STORE_EINVAL);
    assert_int_equal(store_put(s, key, 1, NULL), STORE_EINVAL);
    assert_int_equal(store_put(NULL, key, 1, &r), STORE_EINVAL);
    r.vlen = STORE_MAX_VALUE + 1;
    assert_int_equal(store_put(s, key, 1, &r), STORE_EINVAL);
    r = (store_rec){NULL, 3, 0, 1, false}; /* length without bytes */
    assert_int_equal(store_put(s, key, 1, &r), STORE_EINVAL);
    expect_sizes(s, 0, 0, 0);

    /* The bounds themselves are fine. */
    r = (store_rec){big, STORE_MAX_VALUE, 0, 1, false};
    assert_int_equal(store_put(s, key, STORE_MAX_KEY, &r), 0);
    assert_int_equal(store_put(s, key, 1, &r), 0);
    expect_sizes(s, 2, 2, STORE_MAX_KEY + 1 + 2 * STORE_MAX_VALUE);
    store_rec g;
    assert_int_equal(store_get(s, key, STORE_MAX_KEY, &g), 0);
    assert_int_equal(g.vlen, STORE_MAX_VALUE);
    assert_memory_equal(g.val, big, STORE_MAX_VALUE);

    /* store_get never finds an out-of-bounds key. */
    assert_int_equal(store_get(s, key, 0, &g), STORE_ENOTFOUND);
    assert_int_equal(store_get(s, key, STORE_MAX_KEY + 1, &g), STORE_ENOTFOUND);
    assert_int_equal(store_get(s, NULL, 1, &g), STORE_ENOTFOUND);
    assert_int_equal(store_iter(s, NULL, NULL), STORE_EINVAL);
}

static void test_open_bad_args(void **state) {
    (void)state;
    store *s = (store *)1;
    assert_int_equal(store_open(NULL, NULL, 1), STORE_EINVAL);
    assert_int_equal(store_open(&s, "", 1), STORE_EINVAL);
    assert_null(s);
    /* A path under a regular file cannot be an LMDB directory. */
    assert_int_equal(store_open(&s, "/dev/null/x", 1), STORE_EIO);
    assert_null(s);
    store_close(NULL);
}

/* ---- LMDB only ---------------------------------------------------------- */

static void test_lmdb_persists_across_reopen(void **state) {
    fx *f = *state;
    store *s = f->s;
    assert_int_equal(put(f->s, "a", "alpha", 10), 0);
    assert_int_equal(put(f->s, "b", "beta", 11), 0);
    assert_int_equal(tomb(f->s, "c", 12), 0);
    assert_int_equal(put(f->s, "e", "", 13), 0);
    store_rec r = {K("neg"), 3, -5, 14, false};
    assert_int_equal(store_put(s, K("d"), 1, &r), 0);
    assert_int_equal(store_sync(s), 0);
    expect_sizes(s, 4, 5, 6 + 5 + 1 + 1 + 4);

    reopen(f, BIG_CAP);
    s = f->s;
    assert_string_equal(store_engine(s), "lmdb");
    expect_sizes(s, 4, 5, 6 + 5 + 1 + 1 + 4);
    expect_val(s, "a", "alpha", 10);
    expect_val(s, "b", "beta", 11);
    expect_tomb(s, "c", 12);
    expect_val(s, "e", "", 13);
    store_rec g;
    assert_int_equal(store_get(s, K("d"), 1, &g), 0);
    assert_int_equal(g.version, -5);
    assert_memory_equal(g.val, "neg", 3);
    /* Stamps persist: stale writes stay stale. */
    assert_int_equal(put(s, "a", "old", 10), STORE_ESTALE);

    /* A store reopened under a smaller cap keeps what it has. */
    reopen(f, 4);
    s = f->s;
    assert_int_equal(store_records(s), 5);
    assert_int_equal(put(s, "a", "alph", 20), 0); /* shrinking is fine */
    assert_int_equal(put(s, "a", "alpha", 21), STORE_ENOSPACE);

    /* gc and wipe persist too. */
    reopen(f, BIG_CAP);
    s = f->s;
    assert_int_equal(store_gc(s, 100), 1);
    reopen(f, BIG_CAP);
    s = f->s;
    expect_sizes(f->s, 4, 4, 5 + 5 + 1 + 4);
    expect_none(s, "c");
    assert_int_equal(store_wipe(s), 0);
    reopen(f, BIG_CAP);
    expect_sizes(f->s, 0, 0, 0);
}

static void test_lmdb_creates_missing_dir(void **state) {
    fx *f = *state;
    char sub[96];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    store *s;
    assert_int_equal(store_open(&s, sub, 100), 0);
    assert_int_equal(put(s, "k", "v", 1), 0);
    store_close(s);
    assert_int_equal(store_open(&s, sub, 100), 0);
    expect_val(s, "k", "v", 1);
    store_close(s); /* teardown removes sub with the rest */
}

/* A record that does not decode fails the open instead of being served. */
static void test_lmdb_corrupt_record_fails_open(void **state) {
    fx *f = *state;
    assert_int_equal(put(f->s, "good", "v", 1), 0);
    store_close(f->s);
    f->s = NULL;

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)8 << 30), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_WRITEMAP | MDB_NOTLS, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {3, "bad"}, d = {5, "short"}; /* shorter than the 13-byte header */
    assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    store *s = (store *)1;
    assert_int_equal(store_open(&s, f->dir, BIG_CAP), STORE_EIO);
    assert_null(s);
    /* Leave a working store for teardown. */
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(store_open(&f->s, f->dir, BIG_CAP), 0);
    expect_sizes(f->s, 0, 0, 0);
}

/* ---- LMDB: full map, full disk ------------------------------------------ */

/* Values of STORE_MAX_VALUE bytes (3 LMDB pages each), key "big" + i,
 * filled with a byte of i and the stamp. */
static int put_big(store *s, int i, uint64_t stamp) {
    static uint8_t v[STORE_MAX_VALUE];
    char key[16];
    snprintf(key, sizeof key, "big%05d", i);
    memset(v, i & 0xff, sizeof v);
    memcpy(v, &stamp, sizeof stamp);
    store_rec r = {v, sizeof v, 0, stamp, false};
    return store_put(s, K(key), strlen(key), &r);
}

static bool big_is(store *s, int i, uint64_t stamp) {
    char key[16];
    snprintf(key, sizeof key, "big%05d", i);
    store_rec r;
    if (store_get(s, K(key), strlen(key), &r) != 0 || r.tomb || r.stamp != stamp ||
        r.vlen != STORE_MAX_VALUE || memcmp(r.val, &stamp, sizeof stamp) != 0)
        return false;
    for (size_t j = sizeof stamp; j < r.vlen; j++)
        if (r.val[j] != (i & 0xff)) return false;
    return true;
}

static int tomb_big(store *s, int i, uint64_t stamp) {
    char key[16];
    snprintf(key, sizeof key, "big%05d", i);
    return tomb(s, key, stamp);
}

/* PUTs big values first..first+limit-1 (stamp 100 + i) until one is
 * refused; returns how many were taken. */
static int fill_big(store *s, int first, int limit) {
    int n = 0;
    while (n < limit && put_big(s, first + n, 100 + (uint64_t)(first + n)) == 0) n++;
    return n;
}

static void test_lmdb_full_map_refuses_then_takes_writes_again(void **state) {
    fx *f = *state;
    store *s = f->s;
    store_set_map_limit(s, (size_t)2 << 20); /* 512 pages */
    assert_int_equal(store_full(s), STORE_ROOM);
    int n = fill_big(s, 0, 1000);
    print_message("a 2 MiB map holds %d values of %d bytes\n", n, STORE_MAX_VALUE);
    assert_true(n >= 150 && n < 171);
    assert_int_equal(store_full(s), STORE_FULL_MAP);
    assert_int_equal(store_refused(s), 1);
    assert_true(store_disk_bytes(s) >= (size_t)2 << 20);
    /* refused writes change nothing; reads go on */
    assert_int_equal(put_big(s, n, 1), STORE_ENOSPACE);
    assert_int_equal(store_refused(s), 2);
    expect_sizes(s, (size_t)n, (size_t)n, (size_t)n * (8 + STORE_MAX_VALUE));
    for (int i = 0; i < n; i++) assert_true(big_is(s, i, 100 + (uint64_t)i));
    char key[16];
    snprintf(key, sizeof key, "big%05d", n);
    expect_none(s, key);

    /* A remove goes on, and its room takes a new value at once (LMDB reuses
     * pages freed by a transaction only from the one after the next). */
    assert_int_equal(tomb_big(s, 0, 10000), 0);
    assert_int_equal(store_full(s), STORE_FULL_MAP); /* no write that adds bytes yet */
    assert_int_equal(put_big(s, 2000, 20000), 0);
    assert_int_equal(store_full(s), STORE_ROOM);
    assert_true(big_is(s, 2000, 20000));
    /* more removes, more room */
    for (int i = 1; i < 20; i++) assert_int_equal(tomb_big(s, i, 10000 + (uint64_t)i), 0);
    int again = fill_big(s, 2001, 19);
    print_message("after 19 more removes, %d of 19 new values fit\n", again);
    assert_true(again >= 12);
    /* store_gc and store_drop at the limit */
    assert_int_equal(store_gc(s, 10010), 10);
    assert_int_equal(store_drop(s, K("big00010"), 8, 10010), 0);

    /* a larger limit: writes that add bytes go on */
    store_set_map_limit(s, STORE_LMDB_MAPSIZE);
    assert_int_equal(fill_big(s, 3000, 100), 100);
    assert_int_equal(store_full(s), STORE_ROOM);
    size_t count = store_count(s);
    reopen(f, BIG_CAP);
    assert_int_equal(store_count(f->s), count);
    for (int i = 20; i < n; i++) assert_true(big_is(f->s, i, 100 + (uint64_t)i));
    for (int i = 0; i < 100; i++) assert_true(big_is(f->s, 3000 + i, 3100 + (uint64_t)i));
    assert_int_equal(store_refused(f->s), 0); /* counted since open */
}

static void test_lmdb_wipe_on_a_full_map(void **state) {
    fx *f = *state;
    store *s = f->s;
    store_set_map_limit(s, (size_t)2 << 20);
    int n = fill_big(s, 0, 1000);
    assert_int_equal(store_full(s), STORE_FULL_MAP);
    assert_int_equal(store_wipe(s), 0);
    assert_int_equal(store_full(s), STORE_ROOM);
    expect_sizes(s, 0, 0, 0);
    int m = fill_big(s, 5000, 1000);
    print_message("%d values before the wipe, %d after\n", n, m);
    assert_true(m >= n * 8 / 10); /* LMDB's reused pages are not all in runs of 3 */
}

/* A data.mdb of an older version: an 8 GiB sparse file (a map that large
 * was set at every open). The store takes it, truncated to its data. */
static void test_lmdb_sparse_map_file_of_an_older_version(void **state) {
    fx *f = *state;
    for (int i = 0; i < 50; i++) assert_int_equal(put_big(f->s, i, 100 + (uint64_t)i), 0);
    store_close(f->s);
    f->s = NULL;
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)8 << 30), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_WRITEMAP | MDB_NOTLS, 0644), 0);
    mdb_env_close(env);
    char path[96];
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, (size_t)8 << 30);

    assert_int_equal(store_open(&f->s, f->dir, BIG_CAP), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true((size_t)st.st_size < (size_t)8 << 20);
    assert_true(st.st_blocks * 512 >= st.st_size); /* every byte of the map allocated */
    assert_true(store_disk_bytes(f->s) >= (size_t)st.st_size);
    for (int i = 0; i < 50; i++) assert_true(big_is(f->s, i, 100 + (uint64_t)i));
    assert_int_equal(fill_big(f->s, 50, 200), 200);
}

#define CHILD_CHECK(c)                                                           \
    do {                                                                         \
        if (!(c)) {                                                              \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c);     \
            _exit(1);                                                            \
        }                                                                        \
    } while (0)

static bool write_text(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return false;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    return close(fd) == 0 && ok;
}

/* In a child process: a mount namespace of its own (in a user namespace
 * unless root) and a tmpfs of `size` on dir. 0, or -1 if not allowed. */
static int private_tmpfs(const char *dir, const char *size) {
    unsigned uid = (unsigned)getuid(), gid = (unsigned)getgid();
    char text[64];
    if (geteuid() != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return -1;
        write_text("/proc/self/setgroups", "deny");
        snprintf(text, sizeof text, "0 %u 1", uid);
        if (!write_text("/proc/self/uid_map", text)) return -1;
        snprintf(text, sizeof text, "0 %u 1", gid);
        if (!write_text("/proc/self/gid_map", text)) return -1;
    } else if (unshare(CLONE_NEWNS) != 0) {
        return -1;
    }
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    snprintf(text, sizeof text, "size=%s", size);
    return mount("tmpfs", dir, "tmpfs", 0, text);
}

/* The child's test on a 4 MiB tmpfs holding a 512 KiB file: the store
 * fills the rest, refuses writes (no SIGBUS), serves reads, opens again
 * on the full disk, and takes writes again once the file is deleted. */
static int full_disk(const char *dir) {
    char data[128], filler[128];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT, 0644);
    CHILD_CHECK(fd >= 0 && posix_fallocate(fd, 0, 512 << 10) == 0 && close(fd) == 0);
    store *s;
    CHILD_CHECK(store_open(&s, data, BIG_CAP) == 0);
    int n = fill_big(s, 0, 2000);
    fprintf(stderr, "    a 4 MiB tmpfs with 512 KiB used takes %d values of %d bytes\n", n,
            STORE_MAX_VALUE);
    CHILD_CHECK(n >= 200);
    CHILD_CHECK(store_full(s) == STORE_FULL_DISK);
    CHILD_CHECK(put_big(s, n, 1) == STORE_ENOSPACE);
    for (int i = 0; i < n; i++) CHILD_CHECK(big_is(s, i, 100 + (uint64_t)i));
    for (int i = 0; i < 10; i++) CHILD_CHECK(tomb_big(s, i, 10000 + (uint64_t)i) == 0);
    int again = fill_big(s, 2000, 10);
    CHILD_CHECK(again >= 5);
    store_close(s);

    CHILD_CHECK(store_open(&s, data, BIG_CAP) == 0); /* on the full disk */
    for (int i = 10; i < n; i++) CHILD_CHECK(big_is(s, i, 100 + (uint64_t)i));
    CHILD_CHECK(fill_big(s, 3000, 10) < 10);
    CHILD_CHECK(store_full(s) == STORE_FULL_DISK);
    CHILD_CHECK(unlink(filler) == 0);
    int more = fill_big(s, 4000, 2000);
    fprintf(stderr, "    %d more once 512 KiB were freed\n", more);
    CHILD_CHECK(more >= 30);
    for (int i = 10; i < n; i++) CHILD_CHECK(big_is(s, i, 100 + (uint64_t)i));
    for (int i = 0; i < more; i++) CHILD_CHECK(big_is(s, 4000 + i, 4100 + (uint64_t)i));
    store_close(s);
    return 0;
}

/* Runs child(dir) in a child process on a private 4 MiB tmpfs at dir:
 * passes when it exits 0, fails when it dies of a signal or exits else,
 * skipped where no mount namespace can be had. */
static void on_small_tmpfs(int (*child)(const char *dir)) {
    char dir[] = "/tmp/test_store_tmpfs.XXXXXX";
    assert_non_null(mkdtemp(dir));
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(private_tmpfs(dir, "4m") != 0 ? 77 : child(dir));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    rmdir(dir);
    if (WIFSIGNALED(st))
        fail_msg("the store died of signal %d (%s) on a full disk", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    if (WEXITSTATUS(st) == 77) {
        print_message("no mount namespace for a tmpfs here: skipped\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_lmdb_full_disk_refuses_writes_without_sigbus(void **state) {
    (void)state;
    on_small_tmpfs(full_disk);
}

/* ---- stress against a reference model (both engines) -------------------- */

#define NKEYS 100000

typedef struct model {
    bool present;
    bool tomb;
    uint8_t vlen;
    uint8_t seed;
    int32_t version;
    uint64_t stamp;
} model;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { /* xorshift64*, deterministic */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static size_t key_of(uint32_t i, char *buf) {
    /* Lengths 1..32 over the key space: hex index, padded with g..z (not
     * hex digits, so sscanf("%x") gets the index back). */
    int n = snprintf(buf, 40, "%x", i);
    int want = 1 + (int)(i % STORE_MAX_KEY);
    for (; n < want; n++) buf[n] = (char)('g' + (i + (uint32_t)n) % 20);
    return (size_t)(want < n ? n : want);
}

static void val_of(uint8_t seed, uint8_t vlen, uint8_t *out) {
    for (int i = 0; i < vlen; i++) out[i] = (uint8_t)(seed + i * 31);
}

static size_t model_bytes(const model *m, size_t klen) {
    return m->present ? klen + (m->tomb ? 0 : m->vlen) : 0;
}

typedef struct mcheck {
    const model *m;
    size_t visits;
    bool bad;
    uint8_t *hits;
} mcheck;

static int check_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    mcheck *c = ctx;
    char buf[40];
    memcpy(buf, key, klen);
    buf[klen] = 0;
    unsigned i;
    if (sscanf(buf, "%x", &i) != 1 || i >= NKEYS) {
        c->bad = true;
        return 0;
    }
    char kb[40];
    if (key_of(i, kb) != klen || memcmp(kb, key, klen) != 0) {
        c->bad = true;
        return 0;
    }
    const model *m = &c->m[i];
    c->visits++;
    c->hits[i]++;
    uint8_t v[256];
    val_of(m->seed, m->vlen, v);
    if (!m->present || m->tomb != rec->tomb || m->stamp != rec->stamp ||
        (!m->tomb && (m->vlen != rec->vlen || m->version != rec->version ||
                      (m->vlen && memcmp(v, rec->val, m->vlen)))))
        c->bad = true;
    return 0;
}

static void check_all(store *s, const model *m, size_t records, size_t live, size_t bytes) {
    expect_sizes(s, live, records, bytes);
    char kb[40];
    uint8_t v[256];
    for (uint32_t i = 0; i < NKEYS; i++) {
        size_t klen = key_of(i, kb);
        store_rec r;
        int rc = store_get(s, (uint8_t *)kb, klen, &r);
        if (!m[i].present) {
            assert_int_equal(rc, STORE_ENOTFOUND);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(r.stamp, m[i].stamp);
        assert_int_equal(r.tomb, m[i].tomb);
        if (!m[i].tomb) {
            assert_int_equal(r.vlen, m[i].vlen);
            assert_int_equal(r.version, m[i].version);
            val_of(m[i].seed, m[i].vlen, v);
            if (r.vlen) assert_memory_equal(r.val, v, r.vlen);
        }
    }
    mcheck c = {m, 0, false, calloc(NKEYS, 1)};
    assert_int_equal(store_iter(s, check_visit, &c), 0);
    assert_false(c.bad);
    assert_int_equal(c.visits, records);
    for (uint32_t i = 0; i < NKEYS; i++) assert_int_equal(c.hits[i], m[i].present);
    free(c.hits);
}

static void test_stress_random_ops_vs_model(void **state) {
    fx *f = *state;
    /* A cap the workload reaches now and then, so ENOSPACE is exercised. */
    const size_t cap = (size_t)NKEYS * 58;
    reopen(f, cap);
    store *s = f->s;
    model *m = calloc(NKEYS, sizeof *m);
    assert_non_null(m);
    rng_state = 0x9E3779B97F4A7C15ull; /* same workload for both engines */
    size_t records = 0, live = 0, bytes = 0, nospace = 0, stale = 0;
    uint64_t clock = 1000;
    char kb[40];
    uint8_t v[256];
    const int ops = 400000;
    for (int op = 0; op < ops; op++) {
        uint64_t x = rnd();
        uint32_t i = (uint32_t)(x % NKEYS);
        size_t klen = key_of(i, kb);
        unsigned kind = (unsigned)(x >> 32) % 100;
        model *e = &m[i];
        if (op % 2000 == 1999) { /* now and then, gc below a recent point */
            uint64_t min = clock - (x >> 40) % 1000;
            size_t want = 0;
            for (uint32_t j = 0; j < NKEYS; j++) {
                if (m[j].present && m[j].tomb && m[j].stamp < min) {
                    want++;
                    records--;
                    bytes -= key_of(j, kb);
                    m[j].present = false;
                }
            }
            assert_int_equal(store_gc(s, min), want);
            continue;
        }
        if (kind < 12) { /* get */
            store_rec r;
            int rc = store_get(s, (uint8_t *)kb, klen, &r);
            assert_int_equal(rc, e->present ? 0 : STORE_ENOTFOUND);
            if (e->present) {
                assert_int_equal(r.stamp, e->stamp);
                assert_int_equal(r.tomb, e->tomb);
            }
            continue;
        }
        /* put or remove, usually newer, sometimes a replayed older stamp */
        bool is_tomb = kind < 30;
        uint64_t stamp = ++clock;
        if (kind % 10 == 0) /* a replay: equal or older than what is there */
            stamp = e->present ? e->stamp - (x >> 48) % 2 : clock - (x >> 48) % 500;
        uint8_t vlen = is_tomb ? 0 : (uint8_t)((x >> 16) % 120);
        uint8_t seed = (uint8_t)(x >> 24);
        val_of(seed, vlen, v);
        store_rec r = {v, vlen, (int32_t)(x >> 8), stamp, is_tomb};
        int rc = store_put(s, (uint8_t *)kb, klen, &r);
        int want;
        size_t old_sz = model_bytes(e, klen);
        size_t new_sz = klen + vlen;
        uint8_t mv[256]; /* val_of writes up to 255 */
        if (e->present) val_of(e->seed, e->vlen, mv);
        store_rec held = {mv, e->vlen, e->version, e->stamp, e->tomb};
        if (e->present && store_rec_cmp(&r, &held) <= 0) want = STORE_ESTALE;
        else if (new_sz > old_sz && bytes - old_sz + new_sz > cap) want = STORE_ENOSPACE;
        else want = 0;
        assert_int_equal(rc, want);
        if (rc == STORE_ESTALE) stale++;
        if (rc == STORE_ENOSPACE) nospace++;
        if (rc != 0) continue;
        if (!e->present) records++;
        if (e->present && !e->tomb) live--;
        if (!is_tomb) live++;
        bytes = bytes - old_sz + new_sz;
        *e = (model){true, is_tomb, vlen, seed, r.version, stamp};
        if (op % 100000 == 0) expect_sizes(s, live, records, bytes);
    }
    print_message("%s: %zu records, %zu live, %zu bytes; %zu stale, %zu over the cap\n",
                  store_engine(s), records, live, bytes, stale, nospace);
    assert_true(nospace > 0);
    assert_true(stale > 0);
    check_all(s, m, records, live, bytes);
    if (f->lmdb) { /* everything again after a reopen */
        reopen(f, cap);
        check_all(f->s, m, records, live, bytes);
    }
    free(m);
}


/* What digest.c should hold, computed from a walk of the store, and the
 * settled records replaced by recent ones, which stay until their
 * replacement's epoch (`until`) settles, unless their slot is computed
 * again (a wipe; records ahead in the slot when the horizon moved). */
typedef struct expect {
    const digest *d;
    uint64_t settled[STORE_SLOTS];
    uint32_t count[STORE_SLOTS];
} expect;

typedef struct kept {
    unsigned slot;
    uint64_t x, from, until; /* the old record's digest, its epoch, the new one's */
} kept;

static int expect_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    expect *e = ctx;
    unsigned slot = ring_key_slot(key, klen);
    e->count[slot]++;
    if ((rec->stamp >> 16) < digest_horizon(e->d)) e->settled[slot] ^= digest_rec(key, klen, rec);
    return 0;
}

static void check_digest(store *s, const digest *d, const kept *k, size_t nk) {
    expect *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->d = d;
    assert_int_equal(store_iter(s, expect_visit, e), 0);
    uint64_t h = digest_horizon(d) / 1000;
    for (size_t i = 0; i < nk; i++)
        if (k[i].from < h && k[i].until >= h) e->settled[k[i].slot] ^= k[i].x;
    for (unsigned slot = 0; slot < STORE_SLOTS; slot++) {
        assert_int_equal(digest_count(d, slot), e->count[slot]);
        assert_true(digest_slots(d)[slot] == e->settled[slot]);
    }
    free(e);
}

typedef struct slot_walk {
    const uint64_t *bits;
    size_t seen, wrong;
} slot_walk;

static int slot_walk_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    (void)rec;
    slot_walk *w = ctx;
    unsigned slot = ring_key_slot(key, klen);
    w->seen++;
    w->wrong += !(w->bits[slot / 64] >> (slot % 64) & 1);
    return 0;
}

/* Slots with a record stamped at or past epoch `from` (ms epochs of 1 s). */
typedef struct ahead_walk {
    uint64_t from;
    bool slot[STORE_SLOTS];
} ahead_walk;

static int ahead_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    ahead_walk *a = ctx;
    if ((rec->stamp >> 16) / 1000 >= a->from) a->slot[ring_key_slot(key, klen)] = true;
    return 0;
}

static int count_in(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    (void)rec;
    slot_walk *w = ctx;
    unsigned slot = ring_key_slot(key, klen);
    w->seen += w->bits[slot / 64] >> (slot % 64) & 1;
    return 0;
}

/* The records of slots `bits` a walk of s by slot finds, each once, and
 * no more read; how many. */
static size_t walk_slots(store *s, const uint64_t *bits) {
    slot_walk w = {bits, 0, 0}, all = {bits, 0, 0};
    assert_int_equal(store_iter_slots(s, bits, slot_walk_visit, &w), 0);
    assert_int_equal(store_iter(s, count_in, &all), 0);
    assert_int_equal(w.wrong, 0);
    assert_int_equal(w.seen, all.seen);
    assert_int_equal(store_iter_read(s), w.seen);
    return w.seen;
}

/* The slot digests follow every kind of change (puts that replace, stale
 * puts, drops, tombstone collection, drop_older, a wipe) and the horizon's
 * moves, records stamped ahead of it included; store_iter_slots walks the
 * records of the slots asked for, and only them. Fails if any change is
 * not told to the observer, or told with the wrong record. */
static void test_digest_follows_the_store(void **state) {
    fx *f = *state;
    store *s = f->s;
    uint64_t wall = 100000; /* ms */
    digest *d = digest_new(s, 1000, wall);
    assert_non_null(d);
    rng_state = 0x1234567ull;
    char kb[16];
    uint8_t v[64];
    uint64_t *bits = calloc(STORE_SLOTS / 64, sizeof *bits);
    kept *k = calloc(40 * 400, sizeof *k);
    ahead_walk *aw = calloc(1, sizeof *aw);
    assert_non_null(bits);
    assert_non_null(k);
    assert_non_null(aw);
    size_t nk = 0, deferred = 0;
    for (int round = 0; round < 40; round++) {
        for (int op = 0; op < 400; op++) {
            uint64_t x = rnd();
            int klen = snprintf(kb, sizeof kb, "k%u", (unsigned)(x % 3000));
            unsigned kind = (unsigned)(x >> 20) % 100;
            /* stamps from 5 s behind to 9 s ahead of the wall clock */
            uint64_t ms = wall - 5000 + (x >> 32) % 14000;
            uint64_t stamp = ms << 16 | ((x >> 8) & 0xFF);
            if (kind < 70) {
                uint8_t vlen = (uint8_t)((x >> 40) % 40);
                memset(v, (int)(x >> 48), vlen);
                store_rec r = {v, vlen, 1, stamp, kind < 15}, old;
                uint8_t ov[64];
                bool had = store_get(s, (uint8_t *)kb, (size_t)klen, &old) == 0;
                if (had && !old.tomb) memcpy(ov, old.val, old.vlen), old.val = ov;
                uint64_t h = digest_horizon(d) / 1000, e_old = (old.stamp >> 16) / 1000,
                         e_new = ms / 1000;
                if (store_put(s, (uint8_t *)kb, (size_t)klen, &r) == 0 && had &&
                    e_new >= h && e_new < h + DIGEST_RECENT) {
                    k[nk++] = (kept){ring_key_slot(kb, (size_t)klen),
                                     digest_rec((uint8_t *)kb, (size_t)klen, &old), e_old, e_new};
                    deferred++;
                }
            } else if (kind < 90) {
                store_rec cur;
                if (store_get(s, (uint8_t *)kb, (size_t)klen, &cur) == 0)
                    assert_int_equal(store_drop(s, (uint8_t *)kb, (size_t)klen, cur.stamp), 0);
            } else if (kind < 99) {
                store_gc(s, stamp);
            } else {
                drop_older(s, (wall - 4000) << 16);
            }
        }
        if (round == 25) {
            assert_int_equal(store_wipe(s), 0);
            nk = 0;
        }
        wall += round % 3 == 0 ? 7000 : 600; /* now and then past every recent epoch */
        uint64_t h = digest_horizon(d) / 1000;
        if (wall / 1000 - 1 > h) { /* slots with records ahead are computed again */
            memset(aw, 0, sizeof *aw);
            aw->from = h + DIGEST_RECENT;
            assert_int_equal(store_iter(s, ahead_visit, aw), 0);
            size_t j = 0;
            for (size_t i = 0; i < nk; i++)
                if (!aw->slot[k[i].slot]) k[j++] = k[i];
            nk = j;
        }
        digest_advance(d, wall);
        check_digest(s, d, k, nk);
        memset(bits, 0, STORE_SLOTS / 64 * sizeof *bits);
        for (int j = 0; j < 2000; j++) {
            unsigned slot = (unsigned)(rnd() % STORE_SLOTS);
            bits[slot / 64] |= 1ull << (slot % 64);
        }
        walk_slots(s, bits); /* (LMDB: its index holds no more than the records) */
    }
    assert_true(store_records(s) > 0);
    assert_true(deferred > 100);
    digest_free(d);
    free(k);
    free(aw);
    /* no observer now: changes go on without it */
    assert_int_equal(put(s, "after", "x", (wall + 1) << 16), 0);
    free(bits);
}

/* A store of an older version (records in the unnamed database, no slot
 * index) gets its index at open: a walk by slot reads those slots' records
 * only, after that open and the next; changes since keep it whole. */
static void test_lmdb_index_made_for_an_older_store(void **state) {
    fx *f = *state;
    store_close(f->s);
    f->s = NULL;
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)64 << 20), 0);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_WRITEMAP | MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    char kb[16];
    for (unsigned i = 0; i < 3000; i++) { /* as store.c writes them: stamp, version, flags, value */
        uint8_t rec[13 + 2] = {(uint8_t)(i + 1), (uint8_t)((i + 1) >> 8), 0, 0, 0, 0, 0, 0,
                               1, 0, 0, 0, 0, 'v', 'w'};
        MDB_val k = {(size_t)snprintf(kb, sizeof kb, "old%u", i), kb}, d = {sizeof rec, rec};
        assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    assert_int_equal(store_open(&f->s, f->dir, BIG_CAP), 0);
    expect_sizes(f->s, 3000, 3000, 3000 * 2 + 10 * 4 + 90 * 5 + 900 * 6 + 2000 * 7);
    uint64_t bits[STORE_SLOTS / 64] = {0};
    for (unsigned i = 0; i < 3000; i += 37) {
        unsigned sl = ring_key_slot(kb, (size_t)snprintf(kb, sizeof kb, "old%u", i));
        bits[sl / 64] |= 1ull << (sl % 64);
    }
    size_t n = walk_slots(f->s, bits);
    assert_true(n >= 3000 / 37);
    reopen(f, BIG_CAP);
    assert_int_equal(walk_slots(f->s, bits), n);
    /* removes and collection take records off the index, puts add them */
    store_rec cur;
    for (unsigned i = 0; i < 3000; i += 3) {
        int klen = snprintf(kb, sizeof kb, "old%u", i);
        assert_int_equal(store_get(f->s, (uint8_t *)kb, (size_t)klen, &cur), 0);
        assert_int_equal(store_drop(f->s, (uint8_t *)kb, (size_t)klen, cur.stamp), 0);
        assert_int_equal(tomb(f->s, kb, 5000), 0);
    }
    assert_int_equal(store_gc(f->s, 6000), 1000);
    assert_int_equal(put(f->s, "new", "x", 7000), 0);
    unsigned sl = ring_key_slot("new", 3);
    bits[sl / 64] |= 1ull << (sl % 64);
    reopen(f, BIG_CAP);
    n = walk_slots(f->s, bits);
    assert_int_equal(drop_older(f->s, 3001), 2000);
    assert_true(walk_slots(f->s, bits) == 1 && n > 1);
}

/* A store of an older version (no slot index) on a full disk: it opens
 * without the index, walks the whole store for a walk by slot, and gets
 * the index at the first open with room. */
static int older_store_on_a_full_disk(const char *dir) {
    char data[128], filler[128], kb[16];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(filler, sizeof filler, "%s/filler", dir);
    CHILD_CHECK(mkdir(data, 0700) == 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    CHILD_CHECK(mdb_env_create(&env) == 0 && mdb_env_set_mapsize(env, (size_t)2 << 20) == 0);
    CHILD_CHECK(mdb_env_open(env, data, MDB_WRITEMAP | MDB_NOTLS, 0600) == 0);
    CHILD_CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0 && mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
    for (unsigned i = 0; i < 10000; i++) {
        uint8_t rec[13] = {(uint8_t)(i + 1), (uint8_t)((i + 1) >> 8), 0};
        MDB_val k = {(size_t)snprintf(kb, sizeof kb, "k%u", i), kb}, d = {sizeof rec, rec};
        CHILD_CHECK(mdb_put(txn, dbi, &k, &d, 0) == 0);
    }
    CHILD_CHECK(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
    int fd = open(filler, O_WRONLY | O_CREAT, 0644);
    CHILD_CHECK(fd >= 0);
    for (off_t at = 0; posix_fallocate(fd, at, 4096) == 0; at += 4096) {
    }
    CHILD_CHECK(close(fd) == 0);

    uint64_t bits[STORE_SLOTS / 64] = {0};
    unsigned sl = ring_key_slot("k7", 2);
    bits[sl / 64] |= 1ull << (sl % 64);
    slot_walk w = {bits, 0, 0};
    store *s;
    CHILD_CHECK(store_open(&s, data, BIG_CAP) == 0);
    CHILD_CHECK(store_records(s) == 10000);
    CHILD_CHECK(store_iter_slots(s, bits, slot_walk_visit, &w) == 0 && w.seen >= 1 && !w.wrong);
    CHILD_CHECK(store_iter_read(s) == 10000); /* no index: the whole store */
    store_close(s);
    CHILD_CHECK(unlink(filler) == 0);
    CHILD_CHECK(store_open(&s, data, BIG_CAP) == 0);
    slot_walk w2 = {bits, 0, 0};
    CHILD_CHECK(store_iter_slots(s, bits, slot_walk_visit, &w2) == 0 && w2.seen == w.seen);
    CHILD_CHECK(store_iter_read(s) == w.seen); /* the index, made at this open */
    store_close(s);
    fprintf(stderr, "    10,000 records of an older store: index made once the disk had room\n");
    return 0;
}

static void test_lmdb_index_waits_for_room(void **state) {
    (void)state;
    on_small_tmpfs(older_store_on_a_full_disk);
}

/* Counts what the observer is told: records added and gone. */
typedef struct tally {
    long net;      /* +1 - 1 over the calls (replacements: 0) */
    long minus;    /* -1 calls */
    int untold;    /* change 0 calls */
} tally;

static void tally_obs(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec,
                      int change) {
    (void)key, (void)klen, (void)rec;
    tally *t = ctx;
    if (change == 0) t->untold++;
    else if (change == -1) t->net--, t->minus++;
    else if (change == +1) t->net++;
    else if (change == STORE_REPLACED) t->net--;
}

/* A 1 MiB map made full to its last page: 8-byte values until refused, a
 * tombstone, new keys until refused, then each value one byte longer until
 * refused (no page left for a write that copies a path). */
static void fill_to_the_last_page(store *s, int *nkeys) {
    char key[16], val[16];
    store_set_map_limit(s, (size_t)1 << 20);
    int i = 0;
    for (;; i++) {
        snprintf(key, sizeof key, "k%06d", i);
        if (put(s, key, "vvvvvvvv", 100 + (uint64_t)i) != 0) break;
    }
    assert_int_equal(tomb(s, "k000000", 50000), 0);
    for (int j = 0;; j++) {
        snprintf(key, sizeof key, "z%06d", j);
        if (put(s, key, "vvvvvvvv", 60000 + (uint64_t)j) != 0) break;
    }
    for (int j = 0;; j++) {
        snprintf(key, sizeof key, "y%06d", j);
        if (put(s, key, "x", 70000 + (uint64_t)j) != 0) break;
    }
    memcpy(val, "wwwwwwwww", 10);
    int j = 1;
    for (; j < i; j++) {
        snprintf(key, sizeof key, "k%06d", j);
        if (put(s, key, val, 90000 + (uint64_t)j) != 0) break;
    }
    assert_true(j < i); /* refused: the map is full */
    *nkeys = i;
}

/* store_gc on a map full to the last page: the first mdb_del of the
 * collection gets MDB_MAP_FULL after its tombstone was told gone (-1);
 * nothing was deleted yet, and no "untold" change followed (counted by the
 * deletes done), so the retry once the map had grown told the same
 * tombstone gone again. */
static void test_lmdb_gc_on_a_full_map_tells_each_drop_once(void **state) {
    fx *f = *state;
    store *s = f->s;
    int n;
    fill_to_the_last_page(s, &n);
    tally t = {0};
    store_observe(s, tally_obs, &t);
    size_t before = store_records(s);
    size_t got = store_gc(s, (uint64_t)1 << 20);
    print_message("gc dropped %zu of %zu records; observer told: %ld gone, untold %d\n", got,
                  before, t.minus, t.untold);
    assert_int_equal(got, 1);
    assert_int_equal(store_records(s), before - 1);
    assert_true(t.untold > 0 || t.minus == (long)got); /* each drop told once */
}

/* The same with a digest following the store (repl.c's): the slot's count
 * went one below the store's, and its settled digest kept the collected
 * tombstone (XORed out twice), so anti-entropy saw that bucket differ from
 * every replica's until the next rebuild (a restart or a wipe). */
static void test_lmdb_digest_after_gc_on_a_full_map(void **state) {
    fx *f = *state;
    store *s = f->s;
    int n;
    fill_to_the_last_page(s, &n);
    digest *d = digest_new(s, 1000, 100000); /* every record settled */
    assert_non_null(d);
    assert_int_equal(store_gc(s, (uint64_t)1 << 20), 1);
    digest_advance(d, 101000);
    unsigned sl = ring_key_slot("k000000", 7);
    print_message("slot %u: digest_count %u\n", sl, digest_count(d, sl));
    check_digest(s, d, NULL, 0);
    digest_free(d);
}


/* A key removed and written again, over and over (a lock, a flag), while
 * the store holds no other tombstone: every REMOVE puts an entry on the
 * tombstone heap, and store_gc returned at once when records == live (no
 * tombstone), so those entries (48 bytes each, not counted in store_bytes
 * or --max-memory) were never taken off: 200,000 here (12 MB). */
static void test_tombstone_heap_stays_bounded(void **state) {
    fx *f = *state;
    store *s = f->s;
    uint64_t stamp = 1000;
    for (int i = 0; i < 200000; i++) {
        assert_int_equal(tomb(s, "lock", stamp++), 0);
        assert_int_equal(put(s, "lock", "held", stamp++), 0);
        if (i % 1000 == 999) store_gc(s, stamp); /* every tombstone put is past its time */
    }
    expect_sizes(s, 1, 1, 8);
    assert_true(store_heap_entries(s) <= 1000); /* 200,000 before */
}


/* The same while no collection takes the entries off: the tombstones are
 * within their lifetime, or collection is not due (repl.c gc_due: a
 * member dead, membership not still for a minute). A lock taken and freed
 * 1,000 times a second kept 3.6 million entries (173 MB) for the hour a
 * tombstone lives, and for as long as a member stayed dead, over a store
 * of one record: the heap now stays within the records it could need. The
 * tombstones are collected all the same once old enough. */
static void test_tombstone_heap_bounded_between_collections(void **state) {
    store *s = ((fx *)*state)->s;
    assert_int_equal(tomb(s, "gone", 500), 0);
    uint64_t stamp = 1000;
    for (int i = 0; i < 100000; i++) {
        assert_int_equal(tomb(s, "lock", stamp++), 0);
        assert_int_equal(put(s, "lock", "held", stamp++), 0);
        if (i % 1000 == 999) assert_int_equal(store_gc(s, 1), 0); /* none old enough */
    }
    assert_int_equal(tomb(s, "lock", stamp++), 0);
    expect_sizes(s, 0, 2, 8);
    print_message("heap entries: %zu\n", store_heap_entries(s));
    assert_true(store_heap_entries(s) <= 2 + 1024); /* 100,002 before */
    assert_int_equal(store_gc(s, stamp - 1), 1);   /* "gone"; the lock's is younger */
    expect_sizes(s, 0, 1, 4);
    assert_int_equal(store_gc(s, stamp), 1);
    expect_sizes(s, 0, 0, 0);
}

/* After a wipe, the index still follows the records, across a reopen. */
static void test_lmdb_index_after_wipe_and_reopen(void **state) {
    fx *f = *state;
    char kb[16];
    for (int i = 0; i < 500; i++) {
        snprintf(kb, sizeof kb, "a%d", i);
        assert_int_equal(put(f->s, kb, "v", 100), 0);
    }
    assert_int_equal(store_wipe(f->s), 0);
    for (int i = 0; i < 300; i++) {
        snprintf(kb, sizeof kb, "b%d", i);
        assert_int_equal(put(f->s, kb, "v", 200), 0);
    }
    reopen(f, BIG_CAP);
    uint64_t bits[STORE_SLOTS / 64];
    memset(bits, 0xff, sizeof bits);
    assert_int_equal(walk_slots(f->s, bits), 300);
    assert_int_equal(store_iter_read(f->s), 300);
}

/* Records stamped below a stamp. */
typedef struct older {
    uint64_t below;
    size_t n;
} older;

static int older_visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    (void)key, (void)klen;
    older *o = ctx;
    o->n += rec->stamp < o->below;
    return 0;
}

static size_t count_older(store *s, uint64_t below) {
    older o = {below, 0};
    assert_int_equal(store_iter(s, older_visit, &o), 0);
    return o.n;
}

/* The store's records are what a walk finds, by slot (the index) too, and
 * what a digest following the store counts. */
static void expect_consistent(store *s, const digest *d) {
    uint64_t bits[STORE_SLOTS / 64];
    memset(bits, 0xff, sizeof bits);
    assert_int_equal(walk_slots(s, bits), store_records(s));
    check_digest(s, d, NULL, 0);
}

/* store_drop_older on a map full to the last page, most of its records
 * old: one transaction of them all copied more pages than the reserve
 * holds and failed, answering 0 ("none dropped") with every record still
 * there. In batches they all go, each told once (the digest follows), the
 * index with them, and so it stays across a reopen. */
static void test_lmdb_drop_older_on_a_full_map(void **state) {
    fx *f = *state;
    int n;
    fill_to_the_last_page(f->s, &n);
    digest *d = digest_new(f->s, 1000, 100000); /* every record settled */
    assert_non_null(d);
    size_t before = store_records(f->s), old = count_older(f->s, 70000), dropped = 0;
    int rc = store_drop_older(f->s, 70000, &dropped);
    print_message("%zu records, %zu old: rc %d, %zu dropped\n", before, old, rc, dropped);
    assert_int_equal(rc, 0);
    assert_int_equal(dropped, old);
    assert_int_equal(store_records(f->s), before - old);
    assert_int_equal(count_older(f->s, 70000), 0);
    digest_advance(d, 101000);
    expect_consistent(f->s, d);
    digest_free(d);
    size_t records = store_records(f->s), live = store_count(f->s), bytes = store_bytes(f->s);
    reopen(f, BIG_CAP);
    expect_sizes(f->s, live, records, bytes);
}

/* Fills the pages the last write that freed room took (of the reserve):
 * new keys of round r until refused, then their values longer by a byte
 * until refused. */
static void refill(store *s, int r) {
    char key[32];
    int i = 0;
    for (;; i++) {
        snprintf(key, sizeof key, "r%02d%05d", r, i);
        if (put(s, key, "vvvvvvvv", 80000 + (uint64_t)i) != 0) break;
    }
    for (int j = 0; j < i; j++) {
        snprintf(key, sizeof key, "r%02d%05d", r, j);
        if (put(s, key, "wwwwwwwww", 85000 + (uint64_t)j) != 0) break;
    }
}

/* A store full to the last page whose reserve is spent (less than a step
 * left): a record dropped takes a step of it, the refill uses the step. */
static void spend_the_reserve(fx *f) {
    int n;
    char path[128], key[16];
    struct stat st;
    fill_to_the_last_page(f->s, &n);
    snprintf(path, sizeof path, "%s/reserve", f->dir);
    for (int r = 0;; r++) {
        assert_int_equal(stat(path, &st), 0);
        if (st.st_size < (64 << 10)) break;
        assert_true(r < 100);
        snprintf(key, sizeof key, "k%06d", n - 1 - r); /* (not made longer: stamp as put) */
        assert_int_equal(store_drop(f->s, K(key), 7, 100 + (uint64_t)(n - 1 - r)), 0);
        refill(f->s, r);
    }
}

/* The same with the reserve spent: not even a batch of one record fits,
 * and store_drop_older says so (STORE_ENOSPACE, not "0 dropped"), what it
 * did drop counted and told; with room again it drops the rest. */
static void test_lmdb_drop_older_without_room_says_so(void **state) {
    fx *f = *state;
    spend_the_reserve(f);
    digest *d = digest_new(f->s, 1000, 100000);
    assert_non_null(d);
    size_t before = store_records(f->s), old = count_older(f->s, 70000), dropped = SIZE_MAX;
    int rc = store_drop_older(f->s, 70000, &dropped);
    print_message("%zu records, %zu old: rc %d, %zu dropped\n", before, old, rc, dropped);
    assert_int_equal(rc, STORE_ENOSPACE);
    assert_true(dropped < old);
    assert_int_equal(store_records(f->s), before - dropped);
    assert_int_equal(count_older(f->s, 70000), old - dropped);
    digest_advance(d, 101000);
    expect_consistent(f->s, d);
    store_set_map_limit(f->s, STORE_LMDB_MAPSIZE); /* room again */
    size_t rest = SIZE_MAX;
    assert_int_equal(store_drop_older(f->s, 70000, &rest), 0);
    assert_int_equal(dropped + rest, old);
    assert_int_equal(count_older(f->s, 70000), 0);
    digest_advance(d, 101000); /* (a batch refused before the map grew told it untold) */
    expect_consistent(f->s, d);
    digest_free(d);
}

#define BOTH(fn)                                                            \
    cmocka_unit_test_setup_teardown(fn, setup_mem, teardown),              \
        cmocka_unit_test_setup_teardown(fn, setup_lmdb, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        BOTH(test_put_get_roundtrip),
        BOTH(test_newer_stamp_overwrites),
        BOTH(test_older_or_equal_stamp_is_stale),
        BOTH(test_equal_stamps_agree_whatever_the_order),
        BOTH(test_tombstone_not_counted_but_returned),
        BOTH(test_gc_drops_old_tombstones_only),
        BOTH(test_gc_many_keeps_table_correct),
        BOTH(test_drop_only_the_same_record),
        BOTH(test_gc_after_tombstones_replaced),
        BOTH(test_growth_keeps_every_record),
        BOTH(test_drop_older_drops_values_and_tombstones),
        BOTH(test_cap_enospace_changes_nothing),
        BOTH(test_cap_zero_refuses_all),
        BOTH(test_wipe_removes_everything),
        BOTH(test_iter_visits_each_once_and_stops),
        BOTH(test_einval_bounds),
        cmocka_unit_test(test_open_bad_args),
        cmocka_unit_test_setup_teardown(test_lmdb_persists_across_reopen, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_creates_missing_dir, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_index_made_for_an_older_store, setup_lmdb,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_gc_after_reopen, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_corrupt_record_fails_open, setup_lmdb,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_full_map_refuses_then_takes_writes_again,
                                        setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_wipe_on_a_full_map, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_sparse_map_file_of_an_older_version,
                                        setup_lmdb, teardown),
        cmocka_unit_test(test_lmdb_full_disk_refuses_writes_without_sigbus),
        cmocka_unit_test(test_lmdb_index_waits_for_room),
        BOTH(test_stress_random_ops_vs_model),
        BOTH(test_digest_follows_the_store),
        BOTH(test_tombstone_heap_stays_bounded),
        BOTH(test_tombstone_heap_bounded_between_collections),
        cmocka_unit_test_setup_teardown(test_lmdb_index_after_wipe_and_reopen, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_gc_on_a_full_map_tells_each_drop_once, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_digest_after_gc_on_a_full_map, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_drop_older_on_a_full_map, setup_lmdb, teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_drop_older_without_room_says_so, setup_lmdb,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
