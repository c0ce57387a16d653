/* Unit tests for node: the core driven through a fake environment. */
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fake_env.h"
#include "members.h"
#include "node.h"
#include "outbox.h"
#include "repl.h"
#include "ring.h"
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

/* A node on a store holding two records of a life that ended at
 * last_alive (wall ms), with one peer known. */
static node *back_on_old_store(uint64_t last_alive, uint16_t port) {
    store *st;
    assert_int_equal(store_open(&st, NULL, 1 << 20), 0);
    store_rec v = {(const uint8_t *)"v", 1, 0, (last_alive - 5000) << 16, false};
    store_rec t = {NULL, 0, 0, (last_alive - 4000) << 16, true};
    assert_int_equal(store_put(st, (const uint8_t *)"old", 3, &v), 0);
    assert_int_equal(store_put(st, (const uint8_t *)"gone", 4, &t), 0);
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.last_alive_ms = last_alive;
    node *m = fake_node_on(&cfg, port, st);
    assert_non_null(m);
    ring_node peer = {.ip = htonl(0x7f000002), .port = 7000};
    assert_int_equal(node_add_seeds(m, &peer, 1), 0);
    return m;
}

/* A node back on a store whose last life ended two hours ago (its peers
 * forgot it after one) holds that life's records back until it hears a
 * peer's tombstone floor: past that life, they are dropped (a deleted key's
 * value may have outlived its collected tombstone); not past it, they count
 * again 20 gossip periods after the first floor heard. A life that ended
 * lately is not held back. The node tells the driver when it is alive. */
static void test_store_of_a_forgotten_life_is_held_back(void **state) {
    (void)state;
    uint64_t wall = fake_wall(NULL), ended = wall - 2 * 3600 * 1000;
    node *m = back_on_old_store(ended, 7001);
    assert_true(node_stale(m, (ended - 5000) << 16));
    assert_false(node_stale(m, wall << 16)); /* what it takes now is not */
    node_floor_seen(m, (ended - 1000) << 16); /* a peer that collected before the end */
    fake.clock_ms += 1000;
    node_tick(m);
    assert_true(node_stale(m, (ended - 5000) << 16)); /* still listening */
    fake.clock_ms += 20 * m->cfg.gossip_ms;
    node_tick(m);
    assert_false(node_stale(m, (ended - 5000) << 16));
    assert_int_equal(store_records(m->store), 2);
    assert_int_equal(fake.alive_ms, wall + 1000); /* told at the first tick */
    fake_node_free(m);

    m = back_on_old_store(ended, 7001);
    node_floor_seen(m, (wall - 3600 * 1000) << 16); /* collected past the end */
    assert_int_equal(store_records(m->store), 0);
    assert_int_equal(m->stats.outlived, 2);
    assert_false(node_stale(m, (ended - 5000) << 16));
    fake_node_free(m);

    m = back_on_old_store(wall - 10000, 7001); /* down 10 s: nothing to fear */
    assert_false(node_stale(m, (wall - 15000) << 16));
    node_floor_seen(m, (wall - 1000) << 16);
    assert_int_equal(store_records(m->store), 2);
    fake_node_free(m);
}

static int rm_one_n(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Review: a node back on a store of a forgotten life, its disk full (here
 * an LMDB map at its limit, full to the last page): the peer's floor says
 * the records may have outlived their tombstones, store_drop_older could
 * not delete them all in its one transaction (0: the engine failed), and
 * node_floor_seen cleared stale_below all the same: the records it had to
 * drop counted again, the removed key's value with them. Now LMDB drops
 * in batches, which a full map takes. */
static void test_held_back_store_on_a_full_disk_stays_held(void **state) {
    (void)state;
    uint64_t wall = fake_wall(NULL), ended = wall - 2 * 3600 * 1000;
    char dir[] = "/tmp/test_node_full.XXXXXX";
    assert_non_null(mkdtemp(dir));
    store *st;
    assert_int_equal(store_open(&st, dir, (size_t)1 << 30), 0);
    store_set_map_limit(st, (size_t)16 << 20);
    /* "old": a value whose REMOVE the cluster took and collected while
     * this node was away; then the life's other records, to the last page */
    store_rec v = {(const uint8_t *)"v", 1, 0, (ended - 5000) << 16, false};
    assert_int_equal(store_put(st, (const uint8_t *)"old", 3, &v), 0);
    char key[16];
    int i = 0;
    for (;; i++) {
        store_rec f = {(const uint8_t *)"vvvvvvvv", 8, 0, ((ended - 4000) << 16) + (uint64_t)i, false};
        snprintf(key, sizeof key, "k%06d", i);
        if (store_put(st, (const uint8_t *)key, strlen(key), &f) != 0) break;
    }
    for (int j = 1; j < i; j++) { /* each one byte longer until refused */
        store_rec f = {(const uint8_t *)"wwwwwwwww", 9, 0, ((ended - 3000) << 16) + (uint64_t)j, false};
        snprintf(key, sizeof key, "k%06d", j);
        if (store_put(st, (const uint8_t *)key, strlen(key), &f) != 0) break;
    }
    size_t records = store_records(st);
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.last_alive_ms = ended;
    node *m = fake_node_on(&cfg, 7001, st);
    assert_non_null(m);
    ring_node peer = {.ip = htonl(0x7f000002), .port = 7000};
    assert_int_equal(node_add_seeds(m, &peer, 1), 0);
    assert_true(node_stale(m, (ended - 5000) << 16));

    node_floor_seen(m, (wall - 3600 * 1000) << 16); /* collected past the end */
    print_message("%zu records held back; after the floor: %zu records, %llu dropped, "
                  "\"old\" held back: %d\n",
                  records, store_records(m->store), (unsigned long long)m->stats.outlived,
                  node_stale(m, (ended - 5000) << 16));
    /* either dropped, or still held back: never served or pushed again */
    assert_true(store_records(m->store) == 0 || node_stale(m, (ended - 5000) << 16));
    fake_node_free(m);
    nftw(dir, rm_one_n, 8, FTW_DEPTH | FTW_PHYS);
}

/* New keys of an LMDB store (prefix p, stamps from stamp) until refused,
 * then their values a byte longer until refused: its map is full to the
 * last page. */
static void fill_up(store *st, char p, uint64_t stamp) {
    char key[16];
    int i = 0;
    for (;; i++) {
        store_rec v = {(const uint8_t *)"vvvvvvvv", 8, 0, stamp + (uint64_t)i, false};
        snprintf(key, sizeof key, "%c%06d", p, i);
        if (store_put(st, (const uint8_t *)key, 7, &v) != 0) break;
    }
    for (int j = 0; j < i; j++) {
        store_rec w = {(const uint8_t *)"wwwwwwwww", 9, 0, stamp + (uint64_t)(i + j), false};
        snprintf(key, sizeof key, "%c%06d", p, j);
        if (store_put(st, (const uint8_t *)key, 7, &w) != 0) break;
    }
}

/* Its disk bytes kept for writes that free room (store.c's reserve). */
static off_t reserve_of(const char *dir) {
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "%s/reserve", dir);
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static int log_lines;
static char log_last[512];
static void log_keep(void *ctx, const char *line) {
    (void)ctx;
    log_lines++;
    snprintf(log_last, sizeof log_last, "%s", line);
}

/* The same node with no room at all: a 1 MiB map full to the last page,
 * its reserve spent (a record dropped takes a step of it, new records
 * fill the step). The drop the floor calls for fails (STORE_ENOSPACE): the
 * records stay held back, also once the first floor heard is 20 gossip
 * periods old (they counted again then); the failure is logged once, the
 * drop tried again every 5 s, and once there is room it succeeds and says
 * it failed before. */
static void test_condemned_records_stay_held_until_dropped(void **state) {
    (void)state;
    uint64_t wall = fake_wall(NULL), ended = wall - 2 * 3600 * 1000;
    char dir[] = "/tmp/test_node_full.XXXXXX";
    assert_non_null(mkdtemp(dir));
    store *st;
    assert_int_equal(store_open(&st, dir, (size_t)1 << 30), 0);
    store_set_map_limit(st, (size_t)1 << 20);
    store_rec v = {(const uint8_t *)"v", 1, 0, (ended - 5000) << 16, false};
    assert_int_equal(store_put(st, (const uint8_t *)"old", 3, &v), 0);
    fill_up(st, 'a', (ended - 4000) << 16);
    for (char p = 'b'; reserve_of(dir) >= 64 << 10; p++) {
        assert_true(p < 'z');
        char key[8];
        store_rec r;
        snprintf(key, sizeof key, "%c000000", p - 1);
        assert_int_equal(store_get(st, (const uint8_t *)key, 7, &r), 0);
        assert_int_equal(store_drop(st, (const uint8_t *)key, 7, r.stamp), 0);
        fill_up(st, p, (ended - 4000) << 16);
    }
    size_t records = store_records(st);
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.last_alive_ms = ended;
    node *m = fake_node_on(&cfg, 7001, st);
    assert_non_null(m);
    ring_node peer = {.ip = htonl(0x7f000002), .port = 7000};
    assert_int_equal(node_add_seeds(m, &peer, 1), 0);
    m->env.log = log_keep;
    log_lines = 0;

    node_floor_seen(m, (wall - 3600 * 1000) << 16); /* collected past the end */
    print_message("%zu records held back; after the floor: %zu records, %llu dropped: %s\n",
                  records, store_records(m->store), (unsigned long long)m->stats.outlived,
                  log_last);
    assert_true(store_records(m->store) > 0);
    assert_true(node_stale(m, (ended - 5000) << 16));
    assert_int_equal(log_lines, 1);
    for (int i = 0; i < 3; i++) { /* past stale_until, and tried again */
        fake.clock_ms += 20 * m->cfg.gossip_ms;
        node_tick(m);
        node_floor_seen(m, (wall - 3600 * 1000) << 16);
        assert_true(node_stale(m, (ended - 5000) << 16));
    }
    assert_int_equal(log_lines, 1);
    assert_true(store_records(m->store) > 0);

    store_set_map_limit(m->store, STORE_LMDB_MAPSIZE); /* room again */
    fake.clock_ms += 5000;
    node_tick(m);
    print_message("with room: %zu records, %llu dropped: %s\n", store_records(m->store),
                  (unsigned long long)m->stats.outlived, log_last);
    assert_int_equal(store_records(m->store), 0);
    assert_int_equal(m->stats.outlived, records);
    assert_false(node_stale(m, (ended - 5000) << 16));
    assert_int_equal(log_lines, 2);
    assert_non_null(strstr(log_last, "failed"));
    fake_node_free(m);
    nftw(dir, rm_one_n, 8, FTW_DEPTH | FTW_PHYS);
}

/* A node with one peer that is alive (gossip is too slow to suspect it in
 * these tests) but never answers: a busy replica. N=2, W=2. */
static node *busy_pair(unsigned max_inflight) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.replicas = 2;
    cfg.gossip_ms = 60000;
    cfg.max_inflight = max_inflight;
    node *m = fake_node(&cfg, 7001, 1 << 20);
    assert_non_null(m);
    ring_node peer = {.ip = htonl(0x7f000002), .port = 7000};
    assert_int_equal(node_add_seeds(m, &peer, 1), 0);
    return m;
}

/* The reply to a client (kind 0) among the datagrams sent from the from-th
 * on, decoded into a; NULL when there is none. */
static KVResponse *client_reply(wire_arena *a, size_t from) {
    for (size_t i = from; i < fake.nsent; i++) {
        wire_frame f;
        if (wire_unpack_msg(a, fake.sent[i].buf, fake.sent[i].len, &f) == 0 &&
            f.kind == WIRE_KIND_CLIENT)
            return wire_unpack_response(a, f.payload, f.plen);
    }
    return NULL;
}

/* Live replicas too slow for a write's deadline: the client is told
 * SYSTEM_OVERLOAD with a wait, not INTERNAL_FAILURE, and the answer is not
 * remembered: a retry of the same message ID runs the write again. */
static void test_slow_replica_answers_overload_not_failure(void **state) {
    (void)state;
    node *m = busy_pair(64);
    uint8_t buf[256];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t len = request(buf, WIRE_PUT, "k", "v");
    node_receive(m, &from, buf, len);
    wire_arena *a = wire_arena_new();
    size_t mark = fake.nsent;
    KVResponse *r = NULL;
    for (int t = 0; t < 60 && !r; t++) {
        fake.clock_ms += 50;
        node_tick(m);
        r = client_reply(a, mark);
    }
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_EOVERLOAD);
    assert_true(r->overloadwaittime > 0);
    assert_int_equal(m->stats.overload[NODE_OVERLOAD_SLOW], 1);
    /* the retry is not answered from the reply cache: it runs again */
    size_t before = fake.nsent;
    node_receive(m, &from, buf, len);
    node_flush(m);
    wire_reset(a);
    assert_null(client_reply(a, before));
    assert_true(fake.nsent > before); /* the write goes to the replica again */
    wire_arena_free(a);
    fake_node_free(m);
}

/* Past max_inflight operations, a client is turned away at once with
 * SYSTEM_OVERLOAD and a wait; the operations admitted go on. */
static void test_admission_bounds_operations_in_flight(void **state) {
    (void)state;
    node *m = busy_pair(2);
    uint8_t buf[256];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    wire_arena *a = wire_arena_new();
    for (uint8_t i = 0; i < 3; i++) {
        uint8_t id[WIRE_ID_LEN] = {i + 1};
        size_t len = wire_request(buf, sizeof buf, id, WIRE_PUT, "k", 1, "v", 1, 0);
        size_t before = fake.nsent;
        node_receive(m, &from, buf, len);
        wire_reset(a);
        KVResponse *r = client_reply(a, before);
        if (i < 2) {
            assert_null(r); /* admitted: waiting for the replica */
        } else {
            assert_non_null(r);
            assert_int_equal(r->errcode, WIRE_EOVERLOAD);
            assert_true(r->overloadwaittime >= 10);
        }
    }
    assert_int_equal(repl_inflight(m->repl), 2);
    assert_int_equal(m->stats.overload[NODE_OVERLOAD_INFLIGHT], 1);
    wire_arena_free(a);
    fake_node_free(m);
}

/* Hands node `to` (at 127.0.0.1:port) the datagrams sent to that port from
 * the from-th up to the end-th (not it), as coming from 127.0.0.1:sender. */
static void relay_until(node *to, uint16_t port, uint16_t sender, size_t from, size_t end) {
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(sender),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (size_t i = from; i < end && i < FAKE_SENT_KEEP; i++)
        if (ntohs(fake.sent[i].to.sin_port) == port)
            node_receive(to, &src, fake.sent[i].buf, fake.sent[i].len);
    node_flush(to);
}

/* relay_until up to what has been sent; returns the count sent by then,
 * where the next call takes over. */
static size_t relay(node *to, uint16_t port, uint16_t sender, size_t from) {
    size_t end = fake.nsent < FAKE_SENT_KEEP ? fake.nsent : FAKE_SENT_KEEP;
    relay_until(to, port, sender, from, end);
    return end;
}

/* Moves the clock past NODE_LAZY_MS and ticks x: what waited leaves. */
static void after_lazy(node *x) {
    fake.clock_ms += NODE_LAZY_MS;
    node_tick(x);
}

/* A client's address, 127.0.0.1:5000. */
static struct sockaddr_in client_addr(void) {
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(5000),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* Nodes m (7001) and p (7002) that know each other and 7003, which never
 * answers. */
static void two_and_a_silent_third(const node_config *cfg, node **m, node **p) {
    *m = fake_node(cfg, 7001, 1 << 20);
    *p = fake_node(cfg, 7002, 1 << 20);
    assert_true(*m && *p);
    ring_node peers[2] = {{htonl(INADDR_LOOPBACK), 7002}, {htonl(INADDR_LOOPBACK), 7003}};
    ring_node back[2] = {{htonl(INADDR_LOOPBACK), 7001}, {htonl(INADDR_LOOPBACK), 7003}};
    assert_int_equal(node_add_seeds(*m, peers, 2), 0);
    assert_int_equal(node_add_seeds(*p, back, 2), 0);
}

/* Hands m the node-to-node message p, from 127.0.0.1:port with message ID id
 * (WIRE_ID_LEN bytes). */
static void peer_from(node *m, uint16_t port, const uint8_t *id, Peer *p) {
    uint8_t dgram[2048];
    size_t len = wire_pack(dgram, sizeof dgram, id, WIRE_ID_LEN, &p->base, WIRE_KIND_PEER);
    assert_true(len > 0);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    node_receive(m, &from, dgram, len);
}

/* 7002 hands m a write of key k (value val) hinted for 7003: m stands in
 * for it. */
static void hinted_write(node *m, const char *k, const uint8_t *val, size_t vlen,
                         const uint8_t *id) {
    Record rec = RECORD__INIT, *recs[1] = {&rec};
    rec.key = (ProtobufCBinaryData){strlen(k), (uint8_t *)k};
    rec.value = (ProtobufCBinaryData){vlen, (uint8_t *)val};
    rec.stamp = fake_wall(NULL) << 16 | 1;
    Peer w = PEER__INIT;
    w.type = PEER_WRITE;
    w.n_records = 1;
    w.records = recs;
    w.hint_ip = htonl(INADDR_LOOPBACK);
    w.hint_port = 7003;
    peer_from(m, 7002, id, &w);
}

/* Ticks m `rounds` times, step_ms apart, flushing what it sends. */
static void tick_for(node *m, int rounds, uint64_t step_ms) {
    for (int i = 0; i < rounds; i++) {
        fake.clock_ms += step_ms;
        node_tick(m), node_flush(m);
    }
}

/* Answered operations still waiting for a silent third replica (N=3,
 * W=2: this node and one that acks make the quorum) do not count against
 * max_inflight: clients are served, not told SYSTEM_OVERLOAD, however many
 * answered ones wait. */
static void test_admission_counts_only_unanswered_operations(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    cfg.max_inflight = 2;
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    for (uint8_t i = 0; i < 10; i++) {
        fake.nsent = 0;
        uint8_t buf[256], id[WIRE_ID_LEN] = {i + 1};
        char key[8];
        snprintf(key, sizeof key, "k%u", i);
        node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_PUT, key, strlen(key),
                                                   "v", 1, 0));
        node_flush(m);
        size_t at = relay(p, 7002, 7001, 0); /* the write reaches p ... */
        relay(m, 7001, 7002, at);             /* ... and its ack comes back */
        wire_reset(a);
        KVResponse *r = client_reply(a, 0);
        assert_non_null(r);
        assert_int_equal(r->errcode, WIRE_OK);
    }
    assert_int_equal(repl_inflight(m->repl), 10); /* all waiting for 7003 */
    assert_int_equal(m->stats.overload[NODE_OVERLOAD_INFLIGHT], 0);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* The frames a datagram sent carries, in order (a batch's, or itself), at
 * most max of them; how many. */
static size_t frames_in(wire_arena *a, const struct fake_sent *d, const uint8_t **frames,
                        size_t *lens, size_t max) {
    wire_frame f;
    if (wire_unpack_msg(a, d->buf, d->len, &f) != 0) return 0;
    if (f.kind != WIRE_KIND_BATCH) {
        frames[0] = d->buf, lens[0] = d->len;
        return 1;
    }
    const uint8_t *q = f.payload, *end = f.payload + f.plen, *fr;
    size_t len, nf = 0;
    while (nf < max && wire_batch_next(&q, end, &fr, &len) == 1) frames[nf] = fr, lens[nf++] = len;
    return nf;
}

/* The Peer messages a datagram sent carries, in order (a batch's, or its
 * own), at most max of them; how many. Their frames' IDs go to ids, unless
 * NULL (a frame's without an ID of WIRE_ID_LEN: zeros). */
static size_t peers_in(wire_arena *a, const struct fake_sent *d, Peer **out, size_t max,
                       uint8_t (*ids)[WIRE_ID_LEN]) {
    const uint8_t *frames[64];
    size_t lens[64], nf = frames_in(a, d, frames, lens, 64), np = 0;
    for (size_t j = 0; j < nf && np < max; j++) {
        wire_frame g;
        if (wire_unpack_msg(a, frames[j], lens[j], &g) != 0 || g.kind != WIRE_KIND_PEER) continue;
        Peer *p = wire_unpack_peer(a, g.payload, g.plen);
        if (!p) continue;
        if (ids) {
            memset(ids[np], 0, WIRE_ID_LEN);
            if (g.idlen == WIRE_ID_LEN) memcpy(ids[np], g.id, WIRE_ID_LEN);
        }
        out[np++] = p;
    }
    return np;
}

/* Peer messages of `type` sent so far to 127.0.0.1:port, from the from-th
 * datagram on, that carry every bit of `flags` (and a record of value val,
 * unless NULL). */
static size_t peer_msgs_to_v(wire_arena *a, uint16_t port, size_t from, uint32_t type,
                             uint32_t flags, const char *val) {
    size_t end = fake.nsent < FAKE_SENT_KEEP ? fake.nsent : FAKE_SENT_KEEP, k = 0;
    for (size_t i = from; i < end; i++) {
        if (ntohs(fake.sent[i].to.sin_port) != port) continue;
        Peer *ps[64];
        size_t np = peers_in(a, &fake.sent[i], ps, 64, NULL);
        for (size_t j = 0; j < np; j++) {
            const Peer *p = ps[j];
            k += p->type == type && (p->flags & flags) == flags &&
                 (!val || (p->n_records == 1 && p->records[0]->value.len == strlen(val) &&
                           memcmp(p->records[0]->value.data, val, strlen(val)) == 0));
        }
    }
    return k;
}

static size_t peer_msgs_to(wire_arena *a, uint16_t port, size_t from, uint32_t type,
                           uint32_t flags) {
    return peer_msgs_to_v(a, port, from, type, flags, NULL);
}

static size_t reads_to(wire_arena *a, uint16_t port, size_t from) {
    return peer_msgs_to(a, port, from, PEER_READ, 0);
}

/* The first key prefix + i, i >= from, whose replicas are, in order, m,
 * 7002 and 7003 (with m_first false: 7002, m, 7003), into key; returns i. */
static int key_placed(node *m, bool m_first, const char *prefix, int from, char key[16]) {
    uint32_t i2 = (uint32_t)members_find(m->members, htonl(INADDR_LOOPBACK), 7002);
    for (int i = from; i < 1000; i++) {
        snprintf(key, 16, "%s%d", prefix, i);
        uint32_t rep[REPL_MAX_N];
        assert_int_equal(repl_slot_replicas(m, ring_key_slot(key, strlen(key)), rep), 3);
        if (rep[0] == (m_first ? 0 : i2) && rep[1] == (m_first ? i2 : 0)) return i;
    }
    fail_msg("no key so placed");
    return -1;
}

static int key_on_m_7002_7003(node *m, const char *prefix, int from, char key[16]) {
    return key_placed(m, true, prefix, from, key);
}

/* A client's PUT of key k = v through m, with what m sends counted from
 * zero: m does not answer it at once. */
static void put_not_answered_yet(node *m, wire_arena *a, uint8_t idb, const char *k, const char *v) {
    struct sockaddr_in client = client_addr();
    uint8_t buf[256], id[WIRE_ID_LEN] = {idb};
    fake.nsent = 0;
    node_receive(m, &client, buf,
                 wire_request(buf, sizeof buf, id, WIRE_PUT, k, strlen(k), v, strlen(v), 0));
    node_flush(m);
    wire_reset(a);
    assert_null(client_reply(a, 0));
}

/* p (7002) takes what m (7001) sent it from sent[from] on, m takes p's
 * answers, and then the client has its answer from m: OK. */
static void relayed_then_ok(node *m, node *p, wire_arena *a, size_t from) {
    size_t at = relay(p, 7002, 7001, from);
    relay(m, 7001, 7002, at);
    wire_reset(a);
    KVResponse *r = client_reply(a, 0);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
}

/* Ticks m an eighth of a request timeout at a time, `rounds` times at most,
 * until the client has an answer; returns it (NULL: none). */
static KVResponse *tick_until_answered(node *m, wire_arena *a, int rounds) {
    KVResponse *r = NULL;
    for (int t = 0; t < rounds && !r; t++) {
        fake.clock_ms += m->cfg.request_timeout_ms / 8;
        node_tick(m);
        node_flush(m);
        wire_reset(a);
        r = client_reply(a, 0);
    }
    return r;
}

/* m (7001) and p (7002) of two_and_a_silent_third with W=1 R=1, and a key
 * whose replicas are, in order, 7002, m, 7003. */
static void weak_pair(node **m, node **p, const char *prefix, char key[16]) {
    node_config cfg = quiet_config();
    cfg.write_quorum = 1;
    cfg.read_quorum = 1;
    two_and_a_silent_third(&cfg, m, p);
    key_placed(*m, false, prefix, 0, key);
}

/* With no consistency asked for (W + R <= N), a write goes at once to as
 * many replicas as its quorum needs beside this node, in preference order,
 * and to the others lazily (NODE_LAZY_MS later, flagged, so that their
 * acks wait too): N=3, W=1 sends none at once, W=2 (R=1) one, and the
 * client of W=1 is answered before any. With W + R > N all go at once. */
static void test_writes_beyond_the_quorum_wait(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    uint8_t buf[256], id1[WIRE_ID_LEN] = {1}, id2[WIRE_ID_LEN] = {2}, id3[WIRE_ID_LEN] = {3};
    char k[16];
    key_on_m_7002_7003(m, "k", 0, k);
    /* W=2, R=2: both at once */
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id1, WIRE_PUT, k, strlen(k), "v", 1, 0));
    node_flush(m);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, 0), 1);
    assert_int_equal(peer_msgs_to(a, 7003, 0, PEER_WRITE, 0), 1);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, PEER_FLAG_LAZY), 0);
    assert_int_equal(peer_msgs_to(a, 7003, 0, PEER_WRITE, PEER_FLAG_LAZY), 0);
    /* W=2, R=1: 7002 at once, 7003 lazily */
    m->cfg.read_quorum = 1;
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id2, WIRE_PUT, k, strlen(k), "w", 1, 0));
    node_flush(m);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, 0), 1);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, PEER_FLAG_LAZY), 0);
    assert_int_equal(peer_msgs_to(a, 7003, 0, PEER_WRITE, 0), 0);
    assert_true(node_tick(m) <= fake.clock_ms + NODE_LAZY_MS); /* it asks to be woken for it */
    size_t at = fake.nsent;
    after_lazy(m);
    assert_int_equal(peer_msgs_to(a, 7003, at, PEER_WRITE, PEER_FLAG_LAZY), 1);
    assert_int_equal(peer_msgs_to(a, 7002, at, PEER_WRITE, 0), 0);
    /* W=1: the client is answered from this node's copy; both WRITEs wait */
    m->cfg.write_quorum = 1;
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id3, WIRE_PUT, k, strlen(k), "x", 1, 0));
    node_flush(m);
    wire_reset(a);
    KVResponse *r = client_reply(a, 0);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, 0), 0);
    assert_int_equal(peer_msgs_to(a, 7003, 0, PEER_WRITE, 0), 0);
    after_lazy(m);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, PEER_FLAG_LAZY), 1);
    assert_int_equal(peer_msgs_to(a, 7003, 0, PEER_WRITE, PEER_FLAG_LAZY), 1);
    /* p's ack of a lazy WRITE waits as well, longer than the copies
     * (NODE_LAZY_ACK_MS), and leaves with the others of that time in one
     * PEER_WRITE_ACKS, which m takes for each of them */
    char k2[16];
    uint8_t id4[WIRE_ID_LEN] = {4};
    key_on_m_7002_7003(m, "j", 0, k2); /* another key */
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id4, WIRE_PUT, k2, strlen(k2), "y", 1, 0));
    after_lazy(m);
    size_t waiting = repl_inflight(m->repl);
    assert_int_equal(m->stats.resent, 0);
    at = relay(p, 7002, 7001, 0);
    assert_int_equal(peer_msgs_to(a, 7001, at, PEER_WRITE_ACKS, 0), 0);
    after_lazy(p);
    assert_int_equal(peer_msgs_to(a, 7001, at, PEER_WRITE_ACKS, 0), 0); /* not with the copies */
    uint64_t wake = node_tick(p);
    assert_true(wake > fake.clock_ms && wake <= fake.clock_ms + NODE_LAZY_ACK_MS);
    fake.clock_ms = wake;
    node_tick(p);
    assert_int_equal(peer_msgs_to(a, 7001, at, PEER_WRITE_ACK, 0), 0);
    assert_int_equal(peer_msgs_to(a, 7001, at, PEER_WRITE_ACKS, 0), 1);
    relay(m, 7001, 7002, at);
    assert_int_equal(repl_inflight(m->repl), waiting); /* 7003 never answers: they stay */
    /* at the resend time, the writes p acked are sent again to 7003 only:
     * m took p's acks (those of W=2 above, which p never got, go again) */
    at = fake.nsent;
    for (int t = 0; t < 10 && m->stats.resent == 0; t++) {
        fake.clock_ms += cfg.request_timeout_ms / 4;
        node_tick(m);
    }
    assert_true(m->stats.resent > 0);
    for (const char *v = "xy"; *v; v++) {
        char val[2] = {*v, 0};
        assert_int_equal(peer_msgs_to_v(a, 7002, at, PEER_WRITE, 0, val), 0);
        assert_int_equal(peer_msgs_to_v(a, 7003, at, PEER_WRITE, 0, val), 1);
    }
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}


/* A client's PUT of k = v through m (message ID idbyte), flushed: returns
 * the count sent before it, from where its messages are. */
static size_t client_put(node *m, uint8_t idbyte, const char *k, const char *v) {
    struct sockaddr_in client = client_addr();
    uint8_t buf[256], id[WIRE_ID_LEN] = {idbyte};
    size_t at = fake.nsent;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_PUT, k, strlen(k), v, strlen(v), 0));
    node_flush(m);
    return at;
}

/* A replica that answers, in order, requests sent before a silent one is
 * behind, not deaf: past its resend time the silent request is not sent
 * again while the replica keeps answering older ones (it is in the
 * replica's queue; a resend would only lengthen it), and is once the
 * replica answers a request sent after it (it was lost) or answers nothing
 * for a resend time. W=2 R=2: m (7001) writes to p (7002) and 7003 (never
 * answers). */
static void test_a_replica_behind_is_not_resent_to(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    wire_arena *a = wire_arena_new();
    char k[16];
    key_on_m_7002_7003(m, "b", 0, k);
    uint64_t lo = cfg.request_timeout_ms / 4; /* the least resend time */
    /* a round trip of 0 ms: m's resend time to p is its least */
    size_t acks = relay(p, 7002, 7001, client_put(m, 1, k, "z"));
    relay(m, 7001, 7002, acks);
    /* e, then o a millisecond later; p answers e late, at lo - 1 */
    uint64_t t = fake.clock_ms;
    size_t at_e = client_put(m, 2, k, "e");
    fake.clock_ms = t + 1;
    size_t at_o = client_put(m, 3, k, "o");
    fake.clock_ms = t + lo - 1;
    acks = fake.nsent;
    relay_until(p, 7002, 7001, at_e, at_o);
    relay(m, 7001, 7002, acks);
    /* o's resend time passes (lo and the late sample's deviation), p heard
     * from since: o is not sent again to p (7003, silent, is resent to) */
    size_t from = fake.nsent;
    for (uint64_t now = t + lo; now < t + 2 * lo; now += lo / 8) {
        fake.clock_ms = now;
        node_tick(m);
    }
    assert_int_equal(peer_msgs_to_v(a, 7003, from, PEER_WRITE, 0, "o"), 1);
    assert_int_equal(peer_msgs_to_v(a, 7002, from, PEER_WRITE, 0, "o"), 0);
    /* p answers a request sent after o: o was lost on the way, it goes again */
    size_t at_n = client_put(m, 4, k, "n");
    acks = fake.nsent;
    relay_until(p, 7002, 7001, at_n, acks);
    relay(m, 7001, 7002, acks);
    from = fake.nsent;
    fake.clock_ms += lo / 2; /* the operations' round (a request timeout / 8) */
    node_tick(m);
    assert_int_equal(peer_msgs_to_v(a, 7002, from, PEER_WRITE, 0, "o"), 1);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* Hinted writes waiting for a replica go to it REPL_HANDOFF_BYTES (keys
 * and values) a round at most, not all in the first round: m holds 600
 * writes of 1,000 bytes for 7003 (stand-in for it: p sent them with a
 * hint), and 7003 is alive. Each round sends at most the bound, each hint
 * once before its resend time, and all of them within three rounds. */
static void test_handoff_rounds_are_bounded(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    enum { HINTS = 600, VLEN = 1000 };
    static uint8_t val[VLEN];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < HINTS; i++) {
        char key[16];
        snprintf(key, sizeof key, "h%d", i);
        uint8_t id[WIRE_ID_LEN] = {7, (uint8_t)i, (uint8_t)(i >> 8)};
        hinted_write(m, key, val, VLEN, id);
    }
    node_flush(m);
    assert_int_equal(repl_hints(m->repl), HINTS);
    const uint64_t most = REPL_HANDOFF_BYTES / (3 + VLEN) + 1; /* keys of 2 to 4 bytes */
    uint64_t sent = 0;
    for (int round = 0; round < 3; round++) {
        fake.clock_ms += REPL_HANDOFF_MS;
        node_tick(m);
        uint64_t now = m->stats.handed_off - sent;
        sent = m->stats.handed_off;
        print_message("round %d: %llu hinted writes sent\n", round, (unsigned long long)now);
        assert_true(now > 0 && now <= most);
    }
    assert_int_equal(sent, HINTS);                  /* each once: its resend is 1 s away */
    assert_int_equal(repl_hints(m->repl), HINTS);   /* 7003 acknowledges none */
    fake_node_free(p);
    fake_node_free(m);
}

/* With W + R <= N a write is acknowledged once the slot's first live
 * replica holds it, wherever it was sent: on m, a replica but not the
 * first (7002 is), a W=1 PUT is not answered from m's copy alone. 7002
 * holds a newer stamp (a write made through it while m's clock is behind):
 * it refuses, m stamps the write again above it, and answers once 7002 has
 * taken that. (Answered from m's copy, the write lost to the older one:
 * simulator, W=1 R=1, seed 23.) With `late`, the refusal comes after the
 * request timeout (m was held up): the write may be a late one, overtaken
 * by the newer write 7002 holds, so it is not stamped again and fails; m's
 * own copy is no acknowledgement, 7002 having answered without taking it
 * (answered OK, the write lost: dht-sim --nodes 5 --clients 16
 * --write-quorum 1 --read-quorum 1, seed 10). */
static void weak_write_refused_by_the_first(bool late) {
    node *m, *p;
    char k[16];
    weak_pair(&m, &p, late ? "g" : "f", k);
    wire_arena *a = wire_arena_new();
    uint64_t ahead = (fake_wall(NULL) + 5000) << 16;
    store_rec old = {(const uint8_t *)"old", 3, 0, ahead, false};
    assert_int_equal(store_put(p->store, (const uint8_t *)k, strlen(k), &old), 0);
    put_not_answered_yet(m, a, 9, k, "new");                         /* m's copy is not enough */
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, 0), 1);     /* 7002 is asked at once */
    size_t at = relay(p, 7002, 7001, 0);                              /* it refuses: newer there */
    if (late) {
        fake.clock_ms += m->cfg.request_timeout_ms + 50;
        node_tick(m);
    }
    relay(m, 7001, 7002, at);
    assert_int_equal(m->stats.restamped, late ? 0 : 1);
    wire_reset(a);
    if (late) {
        KVResponse *r = client_reply(a, 0);
        assert_non_null(r);
        assert_int_equal(r->errcode, WIRE_EINTERNAL);
    } else {
        assert_null(client_reply(a, 0));
        relayed_then_ok(m, p, a, at);                                 /* the write stamped again */
        store_rec got;
        assert_int_equal(store_get(p->store, (const uint8_t *)k, strlen(k), &got), 0);
        assert_true(got.stamp > ahead);
        assert_memory_equal(got.val, "new", 3);
        assert_int_equal(store_get(m->store, (const uint8_t *)k, strlen(k), &got), 0);
        assert_memory_equal(got.val, "new", 3);
    }
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

static void test_weak_write_waits_for_the_first_replica(void **state) {
    (void)state;
    weak_write_refused_by_the_first(false);
}

static void test_weak_write_refused_late_by_the_first_fails(void **state) {
    (void)state;
    weak_write_refused_by_the_first(true);
}

/* With W + R <= N a suspected first replica is still the first: while m
 * alone suspects 7002 (the slot's first), a W=1 PUT through m (a replica,
 * not the first) waits for 7002's answer, not m's copy alone. Skipped at
 * once, m was a second first for the slot, and its writes, stamped by its
 * clock, lost to those 7002 took (simulator, W=1 R=1, seed 2000: a node
 * suspected another alone after a partition healed). Silent past its
 * resend time and still suspected, 7002 is waived: the write is answered. */
static void test_weak_write_waits_for_a_suspected_first(void **state) {
    (void)state;
    node *m, *p;
    char k[16];
    weak_pair(&m, &p, "s", k);
    Member e = MEMBER__INIT; /* 7003's news: 7002 is suspected */
    e.ip = htonl(INADDR_LOOPBACK);
    e.port = 7002;
    e.incarnation = 1;
    e.heartbeat = 1;
    e.state = MEMBER_SUSPECT;
    Member *es[1] = {&e};
    Peer g = PEER__INIT;
    g.type = PEER_GOSSIP;
    g.n_members = 1;
    g.members = es;
    uint8_t gid[WIRE_ID_LEN] = {0};
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(7003),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    members_receive(m->members, gid, sizeof gid, &g, &from);
    long i2 = members_find(m->members, htonl(INADDR_LOOPBACK), 7002);
    assert_true(i2 > 0);
    assert_int_equal(members_at(m->members, (size_t)i2)->state, MEMBER_SUSPECT);
    wire_arena *a = wire_arena_new();
    put_not_answered_yet(m, a, 21, k, "v");                       /* m's copy is not enough */
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_WRITE, 0), 1); /* 7002 is asked at once */
    relayed_then_ok(m, p, a, 0);                                  /* it takes the write */
    store_rec got;
    assert_int_equal(store_get(p->store, (const uint8_t *)k, strlen(k), &got), 0);
    assert_memory_equal(got.val, "v", 1);
    /* 7002 silent now: waived at its resend time (a quarter of the request
     * timeout), as it was suspected when the write began, not at the
     * deadline: a dead first held every write of its slots that long */
    put_not_answered_yet(m, a, 22, k, "w");
    uint64_t began = fake.clock_ms;
    KVResponse *r = tick_until_answered(m, a, 40);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_true(fake.clock_ms - began < m->cfg.request_timeout_ms / 2);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* With W + R <= N a read is answered by the slot's first live replica too
 * (as a Redis Cluster client's read goes to the slot's master): on m, a
 * replica but not the first, a GET of R=1 is not answered from m's copy
 * alone, and 7002's newer value is the answer. On a READONLY connection
 * (any_replica) m's copy answers. (Answered from m's copy, a read missed a
 * write acknowledged before it, with no fault: simulator, W=1 R=1, seeds 8
 * and 20 once writes waited for the first replica.) */
/* A W=1 REMOVE through m waits for the slot's first replica (7002) as a
 * PUT does, to the end: 7002 silent but alive, the client is told to come
 * back later (SYSTEM_OVERLOAD), not answered from m's tombstone (7002 may
 * hold a newer write, which the REMOVE would then not have removed). */
static void test_weak_remove_waits_for_the_first_replica(void **state) {
    (void)state;
    node *m, *p;
    char k[16];
    weak_pair(&m, &p, "d", k);
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    store_rec there = {(const uint8_t *)"v", 1, 0, fake_wall(NULL) << 16, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)k, strlen(k), &there), 0);
    uint8_t buf[256], id[WIRE_ID_LEN] = {11};
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_REMOVE, k, strlen(k), NULL, 0, 0));
    node_flush(m);
    KVResponse *r = tick_until_answered(m, a, 400); /* 7002 never answers */
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_EOVERLOAD);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

struct weak_read { bool done; uint32_t err; char val[8]; };

static void weak_read_done(node *x, const repl_origin *o, const repl_result *res) {
    (void)x;
    struct weak_read *w = o->ctx;
    w->done = true;
    w->err = res->err;
    snprintf(w->val, sizeof w->val, "%.*s", (int)res->vlen, (const char *)res->val);
}

static void test_weak_read_asks_the_first_replica(void **state) {
    (void)state;
    node *m, *p;
    char k[16];
    weak_pair(&m, &p, "r", k);
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    uint64_t now = fake_wall(NULL) << 16;
    store_rec older = {(const uint8_t *)"old", 3, 0, now, false};
    store_rec newer = {(const uint8_t *)"new", 3, 0, now + 1, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)k, strlen(k), &older), 0);
    assert_int_equal(store_put(p->store, (const uint8_t *)k, strlen(k), &newer), 0);
    /* any replica may answer a READONLY read: m's own copy, at once */
    struct weak_read res = {0};
    repl_origin o;
    memset(&o, 0, sizeof o);
    o.done = weak_read_done;
    o.ctx = &res;
    o.idlen = 8;
    o.any_replica = true;
    fake.nsent = 0;
    assert_int_equal(repl_client_op(m, &o, WIRE_GET, (const uint8_t *)k, strlen(k), NULL, 0, 0), 0);
    node_flush(m);
    assert_true(res.done);
    assert_int_equal(res.err, WIRE_OK);
    assert_string_equal(res.val, "old");
    assert_int_equal(reads_to(a, 7002, 0), 0);
    /* any other read goes to 7002 as well, and takes its newer value */
    uint8_t buf[256], id[WIRE_ID_LEN] = {7};
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_GET, k, strlen(k), NULL, 0, 0));
    node_flush(m);
    wire_reset(a);
    assert_null(client_reply(a, 0));
    assert_int_equal(reads_to(a, 7002, 0), 1);
    assert_int_equal(reads_to(a, 7003, 0), 0);
    size_t at = relay(p, 7002, 7001, 0);
    relay(m, 7001, 7002, at);
    wire_reset(a);
    KVResponse *r = client_reply(a, 0);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_int_equal(r->value.len, 3);
    assert_memory_equal(r->value.data, "new", 3);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* Whether a record only m holds reaches p by anti-entropy within 30 sync
 * periods, m's clock skew_ms ahead of p's; with gossip false, the members
 * do not gossip (nor learn each other's clocks). */
static bool anti_entropy_reaches(uint64_t skew_ms, bool gossip) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    if (!gossip) cfg.gossip_ms = 600000;
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    uint64_t base = fake.wall_offset_ms, ahead = base + skew_ms;
    /* membership settles first (7003 is found dead), and with it the
     * re-replication sweeps that follow a change */
    for (int t = 0; t < 60; t++) {
        fake.clock_ms += 250;
        fake.nsent = 0;
        fake.wall_offset_ms = ahead;
        node_tick(m);
        fake.wall_offset_ms = base;
        node_tick(p);
        size_t at = relay(p, 7002, 7001, 0);
        fake.wall_offset_ms = ahead;
        relay(m, 7001, 7002, at);
    }
    fake.wall_offset_ms = base;
    if (gossip) assert_int_equal(members_live(m->members), 2);
    store_rec r = {(const uint8_t *)"old", 3, 1, (fake_wall(NULL) - 60000) << 16, false}, got;
    assert_int_equal(store_put(m->store, (const uint8_t *)"lonely", 6, &r), 0);
    bool there = false;
    for (int round = 0; round < 30 && !there; round++) {
        fake.clock_ms += cfg.sync_ms;
        fake.nsent = 0;
        fake.wall_offset_ms = ahead; /* m's clock */
        node_tick(m);
        fake.wall_offset_ms = base;  /* p's */
        node_tick(p);
        size_t at = relay(p, 7002, 7001, 0);     /* m's digests reach p, p's go out */
        fake.wall_offset_ms = ahead;
        size_t at2 = relay(m, 7001, 7002, at);   /* p's reach m */
        fake.wall_offset_ms = base;
        relay(p, 7002, 7001, at2);               /* m's pushes reach p */
        there = store_get(p->store, (const uint8_t *)"lonely", 6, &got) == 0;
    }
    fake.wall_offset_ms = base;
    if (there) assert_memory_equal(got.val, "old", 3);
    fake_node_free(p);
    fake_node_free(m);
    return there;
}

/* Anti-entropy between replicas whose clocks are apart. Digests were
 * compared at equal horizons only, read off each node's wall clock: a
 * member whose clock was two seconds (an epoch) or more off never compared
 * with anyone. Now the one behind compares at the other's horizon (up to
 * DIGEST_RECENT epochs on: 5 s apart, even with no gossip between them),
 * and horizons are read off the clock gossip carries, which follows the
 * fastest member's (20 s apart, past what the first reaches). */
static void test_anti_entropy_across_skewed_clocks(void **state) {
    (void)state;
    assert_true(anti_entropy_reaches(5000, false));
    fake_reset(1000, 1800000000000ull);
    assert_true(anti_entropy_reaches(20000, true));
}

/* A read asks R replicas first (N=3, R=2: this node and one other), not
 * all three; the third is asked only when the two cannot settle it: here
 * a key neither has ("not found" needs every replica). */
static void test_reads_ask_r_replicas_first(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    uint8_t buf[256], id1[WIRE_ID_LEN] = {1}, id2[WIRE_ID_LEN] = {2}, id3[WIRE_ID_LEN] = {3};
    /* two keys whose replicas are, in order, m, 7002, 7003 */
    char k[16], x[16];
    key_on_m_7002_7003(m, "k", key_on_m_7002_7003(m, "k", 0, k) + 1, x);
    /* k: read by m and 7002, which settle it; 7003 is not asked */
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id1, WIRE_PUT, k, strlen(k), "v", 1, 0));
    node_flush(m);
    relay(m, 7001, 7002, relay(p, 7002, 7001, 0));
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id2, WIRE_GET, k, strlen(k), NULL, 0, 0));
    node_flush(m);
    size_t at = fake.nsent;
    assert_int_equal(reads_to(a, 7002, 0), 1);
    assert_int_equal(reads_to(a, 7003, 0), 0);
    relay(m, 7001, 7002, relay(p, 7002, 7001, 0));
    wire_reset(a);
    KVResponse *r = client_reply(a, at);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_int_equal(r->value.len, 1);
    assert_int_equal(repl_inflight(m->repl), 1); /* the write still waits for 7003's ack */
    /* x, never written: once m and 7002 said they do not hold it, 7003 is
     * asked too */
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id3, WIRE_GET, x, strlen(x), NULL, 0, 0));
    node_flush(m);
    wire_reset(a);
    assert_int_equal(reads_to(a, 7003, 0), 0);
    at = relay(p, 7002, 7001, 0);
    relay(m, 7001, 7002, at);
    wire_reset(a);
    assert_int_equal(reads_to(a, 7003, at), 1);
    assert_null(client_reply(a, 0)); /* waits for it (or the deadline) */
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* Runs nodes x[0..nx) on ports 7001.. for `rounds` ticks of step_ms,
 * every datagram sent among them delivered (those to other ports dropped),
 * but, with `side`, those between nodes of different sides (a partition). */
static void run_apart(node **x, size_t nx, int rounds, uint64_t step_ms, const int *side) {
    static uint16_t by[FAKE_SENT_KEEP];
    for (int r = 0; r < rounds; r++) {
        fake.clock_ms += step_ms;
        fake.nsent = 0;
        for (size_t i = 0; i < nx; i++) {
            size_t before = fake.nsent;
            node_tick(x[i]);
            node_flush(x[i]);
            for (size_t k = before; k < fake.nsent && k < FAKE_SENT_KEEP; k++)
                by[k] = (uint16_t)(7001 + i);
        }
        for (size_t j = 0; j < fake.nsent && j < FAKE_SENT_KEEP; j++) {
            size_t i = ntohs(fake.sent[j].to.sin_port) - 7001u;
            if (i >= nx || (side && side[i] != side[by[j] - 7001u])) continue;
            struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(by[j]),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            size_t before = fake.nsent;
            node_receive(x[i], &src, fake.sent[j].buf, fake.sent[j].len);
            node_flush(x[i]);
            for (size_t k = before; k < fake.nsent && k < FAKE_SENT_KEEP; k++)
                by[k] = (uint16_t)(7001 + i);
        }
    }
}

static void run_together(node **x, size_t nx, int rounds, uint64_t step_ms) {
    run_apart(x, nx, rounds, step_ms, NULL);
}

/* The defaults, quiet; gossip runs (unlike quiet_config's). */
static node_config live_config(void) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    return cfg;
}

/* Three nodes of config cfg on 7001-7003, knowing no seeds yet. */
static void three_nodes(const node_config *cfg, node *x[3]) {
    for (uint16_t i = 0; i < 3; i++) {
        x[i] = fake_node(cfg, (uint16_t)(7001 + i), 1 << 20);
        assert_non_null(x[i]);
    }
}

/* A GET from a client at x[0] of key, which x[0], x[1] and x[2] (7001-3)
 * do not hold; whether 7003 was asked before the answer (not found). */
static bool missing_key_asks_the_third(node **x, const char *key, uint8_t idbyte) {
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    uint8_t buf[256], id[WIRE_ID_LEN] = {idbyte};
    fake.nsent = 0;
    node_receive(x[0], &client, buf, wire_request(buf, sizeof buf, id, WIRE_GET, key, strlen(key), NULL, 0, 0));
    node_flush(x[0]);
    size_t at = relay(x[1], 7002, 7001, 0);
    relay(x[0], 7001, 7002, at);
    wire_reset(a);
    bool asked = reads_to(a, 7003, 0) > 0;
    if (asked) {
        assert_null(client_reply(a, 0)); /* waits for 7003 */
        at = relay(x[2], 7003, 7001, at);
        relay(x[0], 7001, 7003, at);
        wire_reset(a);
    }
    KVResponse *r = client_reply(a, at);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_ENOKEY);
    wire_arena_free(a);
    return asked;
}

/* Once membership has been still for a while (15 sync periods: records
 * pushed to new replicas, anti-entropy run since), "not found" from the R
 * replicas asked is believed and the third is not asked (a read of a
 * missing key cost 2.6 times a found one's CPU). A replica whose live set
 * changed lately, or whose store was wiped (WIPEOUT, FLUSHALL), says so in
 * its answer (PEER_FLAG_UNSETTLED), and then the third is asked, as every
 * replica is while the coordinator itself is not settled
 * (test_reads_ask_r_replicas_first). */
static void test_settled_not_found_needs_r_replicas(void **state) {
    (void)state;
    node_config cfg = live_config();
    cfg.sync_ms = 200;
    node *x[3];
    three_nodes(&cfg, x);
    for (uint16_t i = 0; i < 3; i++) {
        ring_node peers[2];
        for (uint16_t j = 0, k = 0; j < 3; j++)
            if (j != i) peers[k++] = (ring_node){htonl(INADDR_LOOPBACK), (uint16_t)(7001 + j)};
        assert_int_equal(node_add_seeds(x[i], peers, 2), 0);
    }
    run_together(x, 3, 60, 100); /* 6 s; settled after 3 s still at sync_ms 200 */
    assert_int_equal(members_live(x[0]->members), 3);
    char k[16];
    key_on_m_7002_7003(x[0], "k", 0, k);
    assert_false(missing_key_asks_the_third(x, k, 1));
    assert_int_equal(node_wipe(x[1]), 0); /* 7002 wiped: its "not found" is not enough */
    assert_true(missing_key_asks_the_third(x, k, 2));
    run_together(x, 3, 40, 100);
    assert_false(missing_key_asks_the_third(x, k, 3));
    repl_membership_changed(x[1]); /* 7002's live set changes */
    assert_true(missing_key_asks_the_third(x, k, 4));
    for (size_t i = 0; i < 3; i++) fake_node_free(x[i]);
}

/* Two sides apart for longer than forget_ms forget each other (GONE), and
 * for as long again their slots are freed. Neither pinged the other after:
 * a partition that outlasted forget_ms (an hour by default) left two
 * clusters for good once it healed. A seed not held live is pinged (here
 * 7001 is 7003's seed, 7003 none of the others'), and a forgotten member
 * heard from is told it is dead, so that it refutes above the pair kept of
 * it (7001 holds 7003 forgotten: without, 7003 was not taken back before
 * its slot was freed). */
static void test_forgotten_seeds_rejoin_after_a_heal(void **state) {
    (void)state;
    node_config cfg = live_config();
    cfg.forget_ms = 10000;
    node *x[3];
    three_nodes(&cfg, x);
    ring_node seed = {htonl(INADDR_LOOPBACK), 7001};
    assert_int_equal(node_add_seeds(x[2], &seed, 1), 0);
    assert_int_equal(node_add_seeds(x[1], &seed, 1), 0);
    assert_int_equal(node_add_seeds(x[0], NULL, 0), 0);
    run_together(x, 3, 40, 100);
    for (int i = 0; i < 3; i++) assert_int_equal(members_live(x[i]->members), 3);
    const int side[3] = {0, 0, 1};
    /* 15 s apart: dead after about 2 s, forgotten 10 s later; then 25 s
     * apart: the forgotten one's slot is freed as well */
    int apart[2] = {150, 250};
    for (int round = 0; round < 2; round++) {
        run_apart(x, 3, apart[round], 100, side);
        assert_int_equal(members_live(x[0]->members), 2);
        assert_int_equal(members_live(x[2]->members), 1);
        bool gone = false; /* 7003 at 7001: its pair kept, or its slot freed */
        for (size_t j = 1; j < members_total(x[0]->members); j++)
            gone |= members_at(x[0]->members, j)->port == 7003 &&
                    members_at(x[0]->members, j)->state == MEMBER_GONE;
        assert_int_equal(gone, round == 0);
        run_together(x, 3, 50, 100); /* healed: 5 s */
        for (int i = 0; i < 3; i++) {
            assert_int_equal(members_live(x[i]->members), 3);
            for (uint16_t port = 7001; port <= 7003; port++) {
                long j = members_find(x[i]->members, htonl(INADDR_LOOPBACK), port);
                assert_true(j >= 0);
                assert_int_equal(members_at(x[i]->members, (size_t)j)->state, MEMBER_ALIVE);
            }
        }
    }
    for (size_t i = 0; i < 3; i++) fake_node_free(x[i]);
}

/* Makes 127.0.0.1:7002 a member of x (a seed); its address. */
static struct sockaddr_in member_7002(node *x) {
    ring_node peer = {htonl(INADDR_LOOPBACK), 7002};
    assert_int_equal(node_add_seeds(x, &peer, 1), 0);
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(7002),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A READ of a one-byte key. */
static Peer read_of(const char *key) {
    Peer p = PEER__INIT;
    p.type = PEER_READ;
    p.key.data = (uint8_t *)key;
    p.key.len = 1;
    return p;
}

/* A message that may wait (node_send_peer_lazy) stays queued until
 * NODE_LAZY_MS have passed, and the node asks to be ticked then; a message
 * for the same peer that may not wait takes it along, in order. */
static void test_outbox_lazy_waits_until_due(void **state) {
    (void)state;
    struct sockaddr_in to = member_7002(n);
    node_tick(n);
    uint8_t id[WIRE_ID_LEN] = {9};
    Peer p = read_of("a");
    fake.nsent = 0;
    assert_int_equal(node_send_peer_lazy(n, &to, id, sizeof id, &p), 0);
    node_flush(n);
    assert_int_equal(fake.nsent, 0);
    assert_true(node_tick(n) <= fake.clock_ms + NODE_LAZY_MS);
    assert_int_equal(fake.nsent, 0);
    p.key.data = (uint8_t *)"b";
    assert_int_equal(node_send_peer(n, &to, id, sizeof id, &p), 0);
    node_flush(n);
    assert_int_equal(fake.nsent, 1); /* one batch: a, then b */
    wire_arena *a = wire_arena_new();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(a, fake.sent[0].buf, fake.sent[0].len, &f), 0);
    assert_int_equal(f.kind, WIRE_KIND_BATCH);
    Peer *got[2];
    assert_int_equal(peers_in(a, &fake.sent[0], got, 2, NULL), 2);
    assert_memory_equal(got[0]->key.data, "a", 1);
    assert_memory_equal(got[1]->key.data, "b", 1);
    /* alone, it leaves at its time */
    assert_int_equal(node_send_peer_lazy(n, &to, id, sizeof id, &p), 0);
    node_tick(n);
    assert_int_equal(fake.nsent, 1);
    fake.clock_ms += NODE_LAZY_MS;
    node_tick(n);
    assert_int_equal(fake.nsent, 2);
    wire_arena_free(a);
}

/* Messages to one peer leave in the order they were queued, even one too
 * big to be batched: it goes after what was queued before it (a push of
 * records overtaking writes made the replica refuse them as stale). */
static void test_outbox_keeps_order_per_peer(void **state) {
    (void)state;
    struct sockaddr_in to = member_7002(n);
    node_flush(n);
    uint8_t id[WIRE_ID_LEN] = {9};
    Peer p = read_of("k");
    fake.nsent = 0;
    assert_int_equal(node_send_peer(n, &to, id, sizeof id, &p), 0);
    assert_int_equal(fake.nsent, 0); /* queued */
    static uint8_t big[20000], payload[19000];
    memset(payload, 'x', sizeof payload);
    size_t len = wire_pack_msg(big, sizeof big, id, sizeof id, payload, sizeof payload,
                               WIRE_KIND_PEER);
    assert_true(len > 16384);
    assert_int_equal(outbox_add(n->outbox, &to, big, len, 0), 0);
    assert_int_equal(fake.nsent, 2);
    assert_true(fake.sent[0].len > 0 && fake.sent[0].len < 1000); /* the small one first */
    assert_int_equal(fake.sent[1].len, 0); /* then the big one (too big for fake_env to keep) */
    node_flush(n);
    assert_int_equal(fake.nsent, 2);
}

/* A node that saw most of the cluster die together (it is on the minority
 * side of a partition) refuses writes at once, while those deaths are
 * recent; reads still run. So with W + R <= N as well (W=1 R=1 took writes
 * there, acknowledged by that node alone, and lost them after the heal:
 * simulator seeds 67, 122, 475 of 1..600). */
static void minority_refuses_writes(unsigned w, unsigned r_quorum) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.majority_ms = 5000;
    cfg.write_quorum = w;
    cfg.read_quorum = r_quorum;
    node *m = fake_node(&cfg, 7001, 1 << 20);
    assert_non_null(m);
    ring_node peers[4];
    for (uint32_t i = 0; i < 4; i++) peers[i] = (ring_node){.ip = htonl(0x7f000002 + i), .port = 7000};
    assert_int_equal(node_add_seeds(m, peers, 4), 0);
    for (int t = 0; t < 100 && members_live(m->members) > 1; t++) { /* nobody answers */
        fake.clock_ms += 50;
        node_tick(m);
    }
    assert_int_equal(members_live(m->members), 1);
    uint8_t buf[256];
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    wire_arena *a = wire_arena_new();
    size_t before = fake.nsent;
    node_receive(m, &from, buf, request(buf, WIRE_PUT, "k", "v"));
    KVResponse *r = client_reply(a, before);
    assert_non_null(r); /* at once, not after a timeout */
    assert_int_equal(r->errcode, WIRE_EINTERNAL);
    assert_int_equal(m->stats.refused_minority, 1);
    /* deaths older than majority_ms no longer count: the write is tried */
    fake.clock_ms += 6000;
    node_tick(m);
    uint8_t id[WIRE_ID_LEN] = {42};
    node_receive(m, &from, buf, wire_request(buf, sizeof buf, id, WIRE_PUT, "k", 1, "v", 1, 0));
    assert_int_equal(m->stats.refused_minority, 1);
    wire_arena_free(a);
    fake_node_free(m);
}

static void test_minority_refuses_writes(void **state) {
    (void)state;
    minority_refuses_writes(2, 2);
    minority_refuses_writes(1, 1);
}

/* ---- spare copies and sweeps ------------------------------------------- */

#define LO htonl(INADDR_LOOPBACK)

/* Bit s of out: x is a replica of slot s. */
static void slots_of_self(node *x, uint64_t out[RING_SLOTS / 64]) {
    memset(out, 0, RING_SLOTS / 8);
    for (unsigned slot = 0; slot < RING_SLOTS; slot++) {
        uint32_t rep[REPL_MAX_N];
        size_t k = members_pref(x->members, slot, x->cfg.replicas, rep);
        for (size_t j = 0; j < k; j++)
            if (rep[j] == 0) out[slot / 64] |= 1ull << (slot % 64);
    }
}

/* The first key prefix + i whose replicas include member `with` and not x,
 * and whose slot x was a replica of by `before` (was) or not (!was). */
static void key_left_to(node *x, uint16_t with, const uint64_t *before, bool was,
                        const char *prefix, char key[16]) {
    uint32_t w = (uint32_t)members_find(x->members, LO, with);
    for (int i = 0; i < 100000; i++) {
        snprintf(key, 16, "%s%d", prefix, i);
        unsigned slot = ring_key_slot(key, strlen(key));
        if ((bool)(before[slot / 64] >> (slot % 64) & 1) != was) continue;
        uint32_t rep[REPL_MAX_N];
        size_t k = members_pref(x->members, slot, x->cfg.replicas, rep);
        bool self = false, has = false;
        for (size_t j = 0; j < k; j++) self |= rep[j] == 0, has |= rep[j] == w;
        if (!self && has) return;
    }
    fail_msg("no such key");
}

/* The sweep after a membership change pushes records to their new
 * replicas, but not a spare copy (of a slot this node was no replica of at
 * the last sweep either) older than a tombstone's lifetime: its key may have
 * been removed since and the tombstone collected, and the copy would bring it
 * back (as hints and spare checks, which drop such copies). A copy this node
 * held as a replica until the change is pushed however old: it may be the
 * only one (every replica place of its slot taken by joiners). */
static void test_sweep_keeps_outlived_spare_copies_back(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *s = fake_node(&cfg, 7001, 1 << 20), *a = fake_node(&cfg, 7002, 1 << 20);
    assert_true(s && a);
    ring_node three[3] = {{LO, 7003}, {LO, 7004}, {LO, 7005}};
    assert_int_equal(node_add_seeds(s, three, 3), 0);
    fake.clock_ms += 400;
    node_tick(s), node_flush(s); /* the first sweep: s and the three */
    uint64_t before[RING_SLOTS / 64];
    slots_of_self(s, before);
    ring_node back[4] = {{LO, 7001}, {LO, 7003}, {LO, 7004}, {LO, 7005}};
    assert_int_equal(node_add_seeds(a, back, 4), 0);
    ring_node join = {LO, 7002};
    assert_int_equal(node_add_seeds(s, &join, 1), 0); /* a joins */
    char spare_old[16], spare_young[16], moved_old[16];
    key_left_to(s, 7002, before, false, "o", spare_old);
    key_left_to(s, 7002, before, false, "y", spare_young);
    key_left_to(s, 7002, before, true, "m", moved_old);
    uint64_t wall = fake_wall(NULL), hours2 = (wall - 2 * 3600 * 1000ull) << 16;
    store_rec old = {(const uint8_t *)"v", 1, 0, hours2, false};
    store_rec young = {(const uint8_t *)"v", 1, 0, (wall - 1000) << 16, false};
    assert_int_equal(store_put(s->store, (const uint8_t *)spare_old, strlen(spare_old), &old), 0);
    assert_int_equal(store_put(s->store, (const uint8_t *)spare_young, strlen(spare_young), &young), 0);
    assert_int_equal(store_put(s->store, (const uint8_t *)moved_old, strlen(moved_old), &old), 0);
    fake.nsent = 0;
    fake.clock_ms += 400;
    node_tick(s), node_flush(s); /* the sweep after the join */
    relay(a, 7002, 7001, 0);
    store_rec got;
    assert_int_equal(store_get(a->store, (const uint8_t *)spare_old, strlen(spare_old), &got),
                     STORE_ENOTFOUND);
    assert_int_equal(store_get(a->store, (const uint8_t *)spare_young, strlen(spare_young), &got), 0);
    assert_int_equal(store_get(a->store, (const uint8_t *)moved_old, strlen(moved_old), &got), 0);
    fake_node_free(a);
    fake_node_free(s);
}

/* A record pushed here older than ours goes back to its sender at once, in
 * a SYNC of ours (dht-sim 2263: replicas back after a one-way partition
 * pushed their older copy of a key to the one replica that had the
 * acknowledged newer write, and until anti-entropy paired them, 1.4 s
 * later, a quorum read of the two gave the older). Not for a record as new
 * as ours or newer (taken), nor to a sender that is no member. */
static void test_an_older_record_pushed_here_is_answered_with_ours(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m = fake_node(&cfg, 7001, 1 << 20);
    assert_non_null(m);
    ring_node peer = {LO, 7002};
    assert_int_equal(node_add_seeds(m, &peer, 1), 0);
    uint64_t now = (fake_wall(NULL) - cfg.sync_ms) << 16; /* a sync period old */
    store_rec mine = {(const uint8_t *)"new", 3, 0, now, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)"k", 1, &mine), 0);
    wire_arena *a = wire_arena_new();
    static const uint8_t id[WIRE_ID_LEN] = {7};
    struct { uint16_t from; uint64_t stamp; const char *val; size_t back; } cases[] = {
        {7002, now - (1000ull << 16), "old", 1}, /* older: ours goes back */
        {7002, now + (1000ull << 16), "newer", 0}, /* newer: taken */
        {7002, now + (1000ull << 16), "newer", 0}, /* as new: nothing to say */
        {7009, now - (2000ull << 16), "older", 0}, /* from no member: not answered */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        Record rec = RECORD__INIT, *recs[1] = {&rec};
        rec.key.data = (uint8_t *)"k";
        rec.key.len = 1;
        rec.value.data = (uint8_t *)cases[c].val;
        rec.value.len = strlen(cases[c].val);
        rec.stamp = cases[c].stamp;
        Peer p = PEER__INIT;
        p.type = PEER_SYNC;
        p.n_records = 1;
        p.records = recs;
        fake.nsent = 0;
        peer_from(m, cases[c].from, id, &p);
        node_flush(m);
        wire_reset(a);
        const char *held = c == 0 ? "new" : "newer";
        assert_int_equal(peer_msgs_to_v(a, cases[c].from, 0, PEER_SYNC, 0, held), cases[c].back);
    }
    assert_int_equal(m->stats.pushed_back, 1);
    /* a record of ours younger than a sync period is on its way in its
     * write's own messages: not sent back */
    store_rec young = {(const uint8_t *)"young", 5, 0, fake_wall(NULL) << 16, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)"y", 1, &young), 0);
    Record rec = RECORD__INIT, *recs[1] = {&rec};
    rec.key.data = (uint8_t *)"y";
    rec.key.len = 1;
    rec.value.data = (uint8_t *)"old";
    rec.value.len = 3;
    rec.stamp = now;
    Peer p = PEER__INIT;
    p.type = PEER_SYNC;
    p.n_records = 1;
    p.records = recs;
    fake.nsent = 0;
    peer_from(m, 7002, id, &p);
    node_flush(m);
    wire_reset(a);
    assert_int_equal(peer_msgs_to(a, 7002, 0, PEER_SYNC, 0), 0);
    assert_int_equal(m->stats.pushed_back, 1);
    wire_arena_free(a);
    fake_node_free(m);
}

/* A spare copy's check reads each replica once, as a client read does
 * (send_to): it was sent outside that bookkeeping, and resent at the next
 * round as if silent past its resend time (and the answer timed against
 * the resend, a round trip too short). */
static void test_spare_check_reads_once(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    cfg.sync_ms = 200;
    node *s = fake_node(&cfg, 7001, 1 << 20);
    ring_node four[4] = {{LO, 7002}, {LO, 7003}, {LO, 7004}, {LO, 7005}};
    assert_int_equal(node_add_seeds(s, four, 4), 0);
    uint64_t none[RING_SLOTS / 64] = {0};
    char k[16];
    key_left_to(s, 7002, none, false, "s", k);
    store_rec spare = {(const uint8_t *)"v", 1, 0, fake_wall(NULL) << 16, false};
    assert_int_equal(store_put(s->store, (const uint8_t *)k, strlen(k), &spare), 0);
    wire_arena *a = wire_arena_new();
    size_t first = 0;
    for (int t = 0; t < 400 && !first; t++) { /* until the check begins */
        fake.nsent = 0;
        fake.clock_ms += 10;
        node_tick(s), node_flush(s);
        wire_reset(a);
        first = reads_to(a, 7002, 0);
    }
    assert_int_equal(first, 1);
    fake.nsent = 0;
    tick_for(s, 6, 10); /* within a quarter request timeout: no resend due */
    wire_reset(a);
    assert_int_equal(reads_to(a, 7002, 0), 0);
    assert_int_equal(s->stats.resent, 0);
    wire_arena_free(a);
    fake_node_free(s);
}

/* p tells m (two_and_a_silent_third) member port is in state, at heartbeat
 * hb of an incarnation a second old, in a GOSSIP of ID gid. */
static void told_state(node *m, uint16_t port, uint64_t hb, int state, const uint8_t *gid) {
    Member e = MEMBER__INIT, *mm[1] = {&e};
    e.ip = LO;
    e.port = port;
    e.incarnation = fake_wall(NULL) - 1000;
    e.heartbeat = hb;
    e.state = state;
    Peer g = PEER__INIT;
    g.type = PEER_GOSSIP;
    g.n_members = 1;
    g.members = mm;
    peer_from(m, 7002, gid, &g);
}

static void told_dead(node *m, uint16_t port, uint64_t hb, const uint8_t *gid) {
    told_state(m, port, hb, MEMBER_DEAD, gid);
}

/* m (two_and_a_silent_third) suspects 7003: p told it 7003 is dead. */
static void suspect_7003(node *m) {
    uint8_t gid[WIRE_ID_LEN] = {9};
    told_dead(m, 7003, 0, gid);
    long i3 = members_find(m->members, LO, 7003);
    assert_int_equal(members_at(m->members, (size_t)i3)->state, MEMBER_SUSPECT);
}

/* A client's cmd of key k through m, p's answer relayed; m ticked every 10
 * ms until it answers or `most` ms passed. The answer, or NULL. */
static KVResponse *answered_within(node *m, node *p, wire_arena *a, uint32_t cmd, const char *k,
                                   uint64_t most) {
    struct sockaddr_in client = client_addr();
    uint8_t buf[256], id[WIRE_ID_LEN] = {42, (uint8_t)cmd};
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, cmd, k, strlen(k), NULL, 0, 0));
    node_flush(m);
    size_t at = relay(p, 7002, 7001, 0);
    relay(m, 7001, 7002, at);
    KVResponse *r = NULL;
    for (uint64_t t = 0; t < most && !r; t += 10) {
        fake.clock_ms += 10;
        node_tick(m), node_flush(m);
        wire_reset(a);
        r = client_reply(a, 0);
    }
    return r;
}

/* An operation whose quorum is made but that waits for every replica does
 * not wait deadline after deadline on one that cannot change its outcome:
 * a REMOVE of a key none of those heard held waited OP_MAX_WAITS request
 * timeouts (2 s) on a suspected replica, for its answer code. A read whose
 * "not found" is not believed yet (new replicas, membership not settled)
 * still waits for a suspect: it may hold the value. */
static void test_no_wait_on_a_suspect_once_the_quorum_is_made(void **state) {
    (void)state;
    node_config cfg = quiet_config(); /* N=3 W=2 R=2 */
    cfg.suspicion_ms = 60000;         /* 7003 stays suspected throughout */
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    char k[16];
    key_on_m_7002_7003(m, "x", 0, k);
    suspect_7003(m);
    wire_arena *a = wire_arena_new();
    KVResponse *r = answered_within(m, p, a, WIRE_REMOVE, k, 2 * m->cfg.request_timeout_ms);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_ENOKEY);
    key_on_m_7002_7003(m, "y", 0, k); /* (not the removed key: its tombstones are an answer) */
    repl_membership_changed(m);       /* unsettled: "not found" needs every replica */
    assert_null(answered_within(m, p, a, WIRE_GET, k, 2 * m->cfg.request_timeout_ms));
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* A client's REMOVE of key k through node x (message ID byte idb); returns
 * where what x sent for it starts in fake.sent. */
static size_t client_remove(node *x, uint8_t idb, const char *k) {
    struct sockaddr_in client = client_addr();
    uint8_t buf[256], id[WIRE_ID_LEN] = {idb};
    size_t at = fake.nsent;
    node_receive(x, &client, buf, wire_request(buf, sizeof buf, id, WIRE_REMOVE, k, strlen(k), NULL, 0, 0));
    node_flush(x);
    return at;
}

/* A REMOVE is answered by what its replicas replaced (OK: a value), and a
 * tombstone of its own (a resend, a duplicate) was known by its stamp
 * alone. Two REMOVEs of one key through two nodes in the same millisecond
 * get the same stamp: p's tombstone, at p before m's REMOVE came, was
 * taken for m's own, and m answered OK from its own copy of the value
 * (dht-sim --faults crash,skew,partition W=1 R=1 seed 4080: OK 0.13 ms
 * after the key's previous REMOVE was acknowledged). A tombstone bears its
 * REMOVE's mark, and p says when the one it held bore another. */
static void test_a_remove_tells_another_removes_tombstone(void **state) {
    (void)state;
    node_config cfg = quiet_config(); /* N=3 W=2 R=2 */
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    char k[16];
    key_on_m_7002_7003(m, "r", 0, k);
    wire_arena *a = wire_arena_new();
    size_t at = client_put(m, 1, k, "v");
    relay(m, 7001, 7002, relay(p, 7002, 7001, at));
    KVResponse *r = client_reply(a, at);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    fake.clock_ms += 5;        /* a millisecond of its own: both stamp it with counter 0 */
    client_remove(p, 2, k);    /* p's tombstone, its write to m not there yet */
    at = client_remove(m, 3, k);
    relay(m, 7001, 7002, relay(p, 7002, 7001, at)); /* m's write to p, and p's ack */
    r = NULL;
    for (int t = 0; t < 400 && !r; t++) { /* "not found" waits for 7003, until the deadline */
        fake.clock_ms += 10;
        node_tick(m), node_flush(m);
        wire_reset(a);
        r = client_reply(a, at);
    }
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_ENOKEY); /* before: OK, at once */
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* Batched acks of lazy writes (PEER_WRITE_ACKS) carry the first half of
 * each op ID only, the coordinator adding its own salt: a batch meant for
 * the coordinator's previous life (a replica that stalled holding it across
 * a restart) named ops of the new life by the same slot and generation, and
 * counted as acks of writes the replica never had. */
static void test_lazy_acks_of_a_past_life_are_not_counted(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    cfg.write_quorum = 1;
    cfg.read_quorum = 1;
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    char k[16];
    key_on_m_7002_7003(m, "l", 0, k);
    wire_arena *a = wire_arena_new();
    fake.nsent = 0;
    client_put(m, 1, k, "v1");
    after_lazy(m), node_flush(m);
    size_t at = relay(p, 7002, 7001, 0); /* the lazy write: p queues its ack */
    fake.clock_ms += NODE_LAZY_ACK_MS + 1;
    node_tick(p), node_flush(p);
    size_t end = fake.nsent;
    assert_int_equal(peer_msgs_to(a, 7001, at, PEER_WRITE_ACKS, 0), 1);
    /* m restarts on its address; the first write of its new life */
    fake_node_free(m);
    m = fake_node(&cfg, 7001, 1 << 20);
    ring_node peers[2] = {{LO, 7002}, {LO, 7003}};
    assert_int_equal(node_add_seeds(m, peers, 2), 0);
    client_put(m, 2, k, "v2");
    after_lazy(m), node_flush(m);
    relay_until(m, 7001, 7002, at, end); /* the old life's acks, late */
    size_t from = fake.nsent;
    tick_for(m, 30, 10); /* past the resend time */
    wire_reset(a);
    assert_true(peer_msgs_to(a, 7002, from, PEER_WRITE, 0) >= 1); /* not taken as acked */
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* m (two_and_a_silent_third) holds member port dead: p says so, and the
 * suspicion (short) runs out. */
static void held_dead(node *m, uint16_t port) {
    uint8_t gid[WIRE_ID_LEN] = {9, (uint8_t)port};
    told_dead(m, port, 5, gid);
    tick_for(m, 100, 10);
    long i = members_find(m->members, LO, port);
    assert_int_equal(members_at(m->members, (size_t)i)->state, MEMBER_DEAD);
}

/* A hinted write for a replica held dead waits for it (HINT_DEAD_KEEP_MS):
 * it was dropped at once, and a replica back a moment later (a partition
 * healing) never got it: a REMOVE acknowledged by two stand-ins 0.1 s after
 * a heal, the replicas' quorum read 2 s later gave the removed value. */
static void test_hint_waits_for_a_replica_held_dead(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    cfg.suspicion_ms = 100;
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    held_dead(m, 7003);
    uint8_t hid[WIRE_ID_LEN] = {11, 'h'}, iid[WIRE_ID_LEN] = {11, 'i'};
    hinted_write(m, "h", (const uint8_t *)"v", 1, hid);
    node_flush(m);
    tick_for(m, 290, 100); /* 29 s, 7003 dead: kept, not sent */
    assert_int_equal(repl_hints(m->repl), 1);
    hinted_write(m, "i", (const uint8_t *)"v", 1, iid);
    node_flush(m);
    tick_for(m, 20, 100); /* h is 31 s old: dropped; i kept */
    assert_int_equal(repl_hints(m->repl), 1);
    assert_int_equal(m->stats.handed_off, 0);
    /* 7003 is back (its own gossip, a new life): i goes to it */
    Member back = MEMBER__INIT;
    back.ip = LO;
    back.port = 7003;
    back.incarnation = fake_wall(NULL);
    back.heartbeat = 1;
    Peer g = PEER__INIT;
    g.type = PEER_GOSSIP;
    g.from = &back;
    uint8_t gid[WIRE_ID_LEN] = {12};
    peer_from(m, 7003, gid, &g);
    long i3 = members_find(m->members, LO, 7003);
    assert_int_equal(members_at(m->members, (size_t)i3)->state, MEMBER_ALIVE);
    tick_for(m, 5, 100);
    assert_int_equal(m->stats.handed_off, 1);
    fake_node_free(p);
    fake_node_free(m);
}

/* With fewer replicas alive than the quorum (2 of 3 dead), an operation is
 * answered at once with what it has: INTERNAL_FAILURE for a write, the value
 * for a read of a key held here (a degraded read). Every replica asked had
 * answered, none was left to ask, and the operation was freed unanswered:
 * the client heard nothing, ever (redis-cli waited for good). */
static void test_too_few_replicas_alive_is_answered(void **state) {
    (void)state;
    node_config cfg = quiet_config(); /* N=3 W=2 R=2 */
    cfg.suspicion_ms = 100;
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    held_dead(m, 7003);
    held_dead(m, 7002);
    assert_int_equal(members_live(m->members), 1);
    store_rec v = {(const uint8_t *)"held", 4, 0, fake_wall(NULL) << 16, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)"h", 1, &v), 0);
    struct sockaddr_in client = client_addr();
    wire_arena *a = wire_arena_new();
    uint8_t buf[256], id[WIRE_ID_LEN] = {77};
    fake.nsent = 0;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_PUT, "k", 1, "v", 1, 0));
    node_flush(m);
    KVResponse *r = client_reply(a, 0);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_EINTERNAL);
    id[0] = 78;
    fake.nsent = 0;
    wire_reset(a);
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_GET, "h", 1, NULL, 0, 0));
    node_flush(m);
    r = client_reply(a, 0);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_OK);
    assert_memory_equal(r->value.data, "held", 4);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* 7002 tells m (two_and_a_silent_third) of itself, alive at incarnation
 * inc, in a GOSSIP of ID gid. */
static void gossip_from_7002(node *m, uint64_t inc, uint8_t gid0) {
    Member me = MEMBER__INIT;
    me.ip = LO;
    me.port = 7002;
    me.incarnation = inc;
    me.heartbeat = 1;
    Peer g = PEER__INIT;
    g.type = PEER_GOSSIP;
    g.from = &me;
    uint8_t gid[WIRE_ID_LEN] = {13, gid0};
    peer_from(m, 7002, gid, &g);
}

/* A member that restarts (a later incarnation, alive all along: back
 * before it was held dead, its store perhaps empty) is handed its keys by
 * the sweep that follows. The sweep remembered a member whose incarnation
 * it did not know yet (a seed not heard from, as at a cluster's start) as
 * "any incarnation", and so took the restarted process for the one it had
 * swept: when the restart came after m first heard of the seed (its first
 * news is no restart, and sweeps nothing), m pushed it nothing. */
static void test_sweep_hands_keys_to_a_seed_restarted(void **state) {
    (void)state;
    node_config cfg = quiet_config(); /* N=3: m, 7002 and 7003 replicate every slot */
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    tick_for(m, 4, 100); /* the first sweep: 7002's incarnation not known yet */
    store_rec v = {(const uint8_t *)"kept", 4, 0, fake_wall(NULL) << 16, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)"k", 1, &v), 0);
    uint64_t inc = fake_wall(NULL) - 5000;
    gossip_from_7002(m, inc, 1); /* its first news */
    tick_for(m, 4, 100);
    long i2 = members_find(m->members, LO, 7002);
    assert_int_equal(members_at(m->members, (size_t)i2)->incarnation, inc);
    fake.nsent = 0;
    gossip_from_7002(m, fake_wall(NULL), 2); /* restarted */
    tick_for(m, 4, 100);                     /* the sweep after it */
    wire_arena *a = wire_arena_new();
    assert_int_equal(peer_msgs_to_v(a, 7002, 0, PEER_SYNC, 0, "kept"), 1);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* Changes of the live set closer than the sweep's settle time (300 ms)
 * put re-replication off each time, for as long as they went on (a big
 * cluster's churn); it runs a second after the first change not swept. */
static void test_sweep_is_not_put_off_for_good(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m = fake_node(&cfg, 7001, 1 << 20);
    assert_non_null(m);
    store_rec v = {(const uint8_t *)"kept", 4, 0, fake_wall(NULL) << 16, false};
    assert_int_equal(store_put(m->store, (const uint8_t *)"k", 1, &v), 0);
    fake.nsent = 0;
    ring_node peer = {LO, 7002};
    assert_int_equal(node_add_seeds(m, &peer, 1), 0); /* a change: the first sweep due */
    wire_arena *a = wire_arena_new();
    uint64_t t0 = fake.clock_ms, pushed_at = 0;
    for (int k = 0; k < 25 && !pushed_at; k++) { /* a change every 200 ms for 5 s */
        tick_for(m, 20, 10);
        wire_reset(a);
        if (peer_msgs_to_v(a, 7002, 0, PEER_SYNC, 0, "kept")) pushed_at = fake.clock_ms;
        repl_membership_changed(m);
    }
    assert_true(pushed_at && pushed_at - t0 <= 1200); /* before: never while they went on */
    wire_arena_free(a);
    fake_node_free(m);
}

/* A client's GET_MEMBERSHIP_LIST (message ID k) to m: the reply. */
static KVResponse *member_list_reply(node *m, wire_arena *a, unsigned k) {
    struct sockaddr_in client = client_addr();
    uint8_t buf[64], id[WIRE_ID_LEN] = {21, (uint8_t)k, (uint8_t)(k >> 8)};
    fake.nsent = 0;
    node_receive(m, &client, buf,
                 wire_request(buf, sizeof buf, id, WIRE_GET_MEMBERSHIP_LIST, NULL, 0, NULL, 0, 0));
    node_flush(m);
    wire_reset(a);
    KVResponse *r = client_reply(a, 0);
    assert_non_null(r);
    return r;
}

/* The member list (up to 63 KB for a request of 25 bytes, from any source
 * address the request claims) is answered at most 50 times a second, in
 * bursts of 100, and TEMPORARY_OVERLOAD with the wait past that; nor is it
 * remembered, so the ID of one answered gets no list again once the rate
 * is spent. Before: every one, from the reply cache too. */
static void test_member_lists_are_rate_limited(void **state) {
    (void)state;
    node *m = fake_node(NULL, 7001, 1 << 20);
    assert_non_null(m);
    wire_arena *a = wire_arena_new();
    unsigned lists = 0;
    for (unsigned k = 0; k < 300; k++) {
        KVResponse *r = member_list_reply(m, a, k);
        if (r->errcode == WIRE_OK) {
            lists++;
            continue;
        }
        assert_int_equal(r->errcode, WIRE_EOVERLOAD);
        assert_true(r->overloadwaittime > 0 && r->overloadwaittime <= 20);
    }
    assert_int_equal(lists, 100);
    assert_int_equal(member_list_reply(m, a, 0)->errcode, WIRE_EOVERLOAD); /* not from the cache */
    assert_int_equal(m->stats.overload[NODE_OVERLOAD_LIST], 201);
    fake.clock_ms += 1000;
    for (unsigned k = 300; k < 400; k++) lists += member_list_reply(m, a, k)->errcode == WIRE_OK;
    assert_int_equal(lists, 150);
    wire_arena_free(a);
    fake_node_free(m);
}

/* The ID of the first PEER_WRITE sent to 127.0.0.1:port from the from-th
 * datagram on, into id; false when none. */
static bool write_id_to(wire_arena *a, uint16_t port, size_t from, uint8_t id[WIRE_ID_LEN]) {
    size_t end = fake.nsent < FAKE_SENT_KEEP ? fake.nsent : FAKE_SENT_KEEP;
    for (size_t i = from; i < end; i++) {
        if (ntohs(fake.sent[i].to.sin_port) != port) continue;
        Peer *ps[64];
        uint8_t ids[64][WIRE_ID_LEN];
        size_t np = peers_in(a, &fake.sent[i], ps, 64, ids);
        for (size_t j = 0; j < np; j++)
            if (ps[j]->type == PEER_WRITE) {
                memcpy(id, ids[j], WIRE_ID_LEN);
                return true;
            }
    }
    return false;
}

/* A write admitted while its node saw a majority (--majority-ms) and whose
 * quorum came in once the node saw itself cut off with a minority is not
 * acknowledged: INTERNAL_FAILURE, as at its start (dht-sim 7220: a PUT
 * admitted by a node cut off alone, before it had held most members dead,
 * made its quorum 170 ms after the heal on replicas of its own ring, which
 * the others' did not use, and lost to the client's earlier PUT). m, p and
 * 7003 (never heard) hold every key; four members more, heard of alive,
 * then die while the write waits for p. */
static void test_a_write_is_not_acknowledged_in_a_minority(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    cfg.majority_ms = 60000;
    cfg.suspicion_ms = 200;
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    gossip_from_7002(m, fake_wall(NULL) - 5000, 1);
    size_t at = client_put(m, 1, "k", "v");
    assert_int_equal(m->stats.refused_minority, 0); /* admitted */
    for (uint16_t port = 7004; port < 7008; port++) {
        uint8_t gid[WIRE_ID_LEN] = {23, (uint8_t)port};
        told_state(m, port, 1, MEMBER_ALIVE, gid);
        gid[0] = 24;
        told_dead(m, port, 1, gid);
    }
    tick_for(m, 30, 10); /* their suspicions end: dead */
    assert_int_equal(members_live(m->members), 3);
    size_t sent = relay(p, 7002, 7001, at); /* the write reaches p ... */
    relay(m, 7001, 7002, sent);             /* ... and its ack comes back */
    wire_arena *a = wire_arena_new();
    KVResponse *r = client_reply(a, at);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_EINTERNAL); /* before: OK */
    assert_int_equal(m->stats.refused_minority, 1);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* Writes of one key that miss one replica keep one hint, not one a write:
 * a hot key written 65,536 times while its replica could not take them
 * filled MAX_HINTS with copies of one hint (every other key's then
 * refused), each handed off on its own (10 KB values, 25 a round: 11
 * minutes, with spare copies, tombstones and "not found" unsettled as long
 * as hints wait). A write over a hint whose older record is on its way
 * still goes: the ack of the older one does not take the hint. */
static void test_hints_of_one_key_are_one(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    for (int i = 0; i < 100; i++) {
        uint8_t id[WIRE_ID_LEN] = {14, (uint8_t)i};
        hinted_write(m, "hot", (const uint8_t *)"v1", 2, id);
        fake.clock_ms += 1; /* a later stamp each */
    }
    node_flush(m);
    assert_int_equal(repl_hints(m->repl), 1); /* 100 before */
    fake.nsent = 0;
    tick_for(m, 1, REPL_HANDOFF_MS); /* v1 goes to 7003 (alive, as a seed) */
    wire_arena *a = wire_arena_new();
    uint8_t sent_id[WIRE_ID_LEN];
    assert_true(write_id_to(a, 7003, 0, sent_id));
    uint8_t id2[WIRE_ID_LEN] = {15};
    hinted_write(m, "hot", (const uint8_t *)"v2", 2, id2); /* a newer write meanwhile */
    Peer ack = PEER__INIT;
    ack.type = PEER_WRITE_ACK;
    peer_from(m, 7003, sent_id, &ack); /* 7003 acks v1 */
    assert_int_equal(repl_hints(m->repl), 1);
    fake.nsent = 0;
    tick_for(m, 5, REPL_HANDOFF_MS);
    wire_reset(a);
    assert_true(peer_msgs_to_v(a, 7003, 0, PEER_WRITE, 0, "v2") >= 1);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

/* A REMOVE answers by the newest record its home replicas held before it,
 * not by any one's value: a replica that missed the key's previous REMOVE
 * (its copy lost) still holds the value that REMOVE took, and a second
 * REMOVE was answered OK (a DEL of a key GET says is absent counted 1;
 * dht-sim seed 12, W=2 R=2, every node up and held alive by all). Here m,
 * which coordinates, holds the older value, p the tombstone, and 7003
 * held nothing: NOT_FOUND, which p's ack says by the tombstone's stamp. */
static void test_a_remove_answers_by_the_newest_record(void **state) {
    (void)state;
    node_config cfg = quiet_config();
    node *m, *p;
    two_and_a_silent_third(&cfg, &m, &p);
    const char *k = "gone";
    uint64_t older = fake_wall(NULL) << 16, removed = older + (100 << 16);
    store_rec value = {(const uint8_t *)"v", 1, 0, older, false};
    store_rec tomb = {NULL, 0, 0, removed, true};
    assert_int_equal(store_put(m->store, (const uint8_t *)k, strlen(k), &value), 0);
    assert_int_equal(store_put(p->store, (const uint8_t *)k, strlen(k), &tomb), 0);
    fake.clock_ms += 1000;
    struct sockaddr_in client = client_addr();
    uint8_t buf[256], id[WIRE_ID_LEN] = {16};
    size_t at = fake.nsent;
    node_receive(m, &client, buf, wire_request(buf, sizeof buf, id, WIRE_REMOVE, k, strlen(k), NULL, 0, 0));
    node_flush(m);
    size_t sent = relay(p, 7002, 7001, at); /* the tombstone reaches p ... */
    relay(m, 7001, 7002, sent);             /* ... whose ack comes back */
    wire_arena *a = wire_arena_new();
    assert_null(client_reply(a, at)); /* before: OK, by m's own value */
    uint8_t sent_id[WIRE_ID_LEN];
    assert_true(write_id_to(a, 7003, at, sent_id));
    Peer ack = PEER__INIT;
    ack.type = PEER_WRITE_ACK;
    ack.err = WIRE_ENOKEY; /* 7003 held nothing */
    peer_from(m, 7003, sent_id, &ack);
    node_flush(m);
    KVResponse *r = client_reply(a, at);
    assert_non_null(r);
    assert_int_equal(r->errcode, WIRE_ENOKEY);
    wire_arena_free(a);
    fake_node_free(p);
    fake_node_free(m);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_stamps_unique_and_bounded),
        T(test_shutdown_asks_the_environment),
        T(test_admission_counts_only_unanswered_operations),
        T(test_reads_ask_r_replicas_first),
        T(test_settled_not_found_needs_r_replicas),
        T(test_forgotten_seeds_rejoin_after_a_heal),
        T(test_outbox_keeps_order_per_peer),
        T(test_outbox_lazy_waits_until_due),
        T(test_writes_beyond_the_quorum_wait),
        T(test_a_replica_behind_is_not_resent_to),
        T(test_handoff_rounds_are_bounded),
        T(test_weak_write_waits_for_the_first_replica),
        T(test_weak_write_waits_for_a_suspected_first),
        T(test_weak_write_refused_late_by_the_first_fails),
        T(test_weak_read_asks_the_first_replica),
        T(test_weak_remove_waits_for_the_first_replica),
        T(test_anti_entropy_across_skewed_clocks),
        T(test_single_node_put_get),
        T(test_incarnation_above_the_last_life),
        T(test_store_of_a_forgotten_life_is_held_back),
        T(test_slow_replica_answers_overload_not_failure),
        T(test_admission_bounds_operations_in_flight),
        T(test_minority_refuses_writes),
        T(test_a_write_is_not_acknowledged_in_a_minority),
        T(test_sweep_keeps_outlived_spare_copies_back),
        T(test_an_older_record_pushed_here_is_answered_with_ours),
        T(test_held_back_store_on_a_full_disk_stays_held),
        T(test_condemned_records_stay_held_until_dropped),
        T(test_spare_check_reads_once),
        T(test_no_wait_on_a_suspect_once_the_quorum_is_made),
        T(test_a_remove_tells_another_removes_tombstone),
        T(test_lazy_acks_of_a_past_life_are_not_counted),
        T(test_too_few_replicas_alive_is_answered),
        T(test_hint_waits_for_a_replica_held_dead),
        T(test_sweep_hands_keys_to_a_seed_restarted),
        T(test_sweep_is_not_put_off_for_good),
        T(test_member_lists_are_rate_limited),
        T(test_hints_of_one_key_are_one),
        T(test_a_remove_answers_by_the_newest_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
