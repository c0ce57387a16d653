/*
 * fake_env: a node environment (node.h) for tests and fuzz targets, in one
 * header of static functions: a monotonic clock the test moves by hand, a
 * wall clock at a fixed offset from it, xorshift random numbers from a fixed
 * seed, SHUTDOWN counted, log lines dropped, and the datagrams sent kept (the
 * first FAKE_SENT_KEEP of them, up to FAKE_SENT_BYTES each; all counted;
 * one that no datagram could be aborts).
 * One fake world a process: `fake` is the state.
 */
#ifndef DHT_FAKE_ENV_H
#define DHT_FAKE_ENV_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "wire.h"

#define FAKE_SENT_KEEP 256
#define FAKE_SENT_BYTES 4096

static struct fake {
    uint64_t clock_ms;          /* the node's monotonic time */
    uint64_t wall_offset_ms;    /* wall = clock + this */
    uint64_t rnd;
    int stops;
    uint64_t incarnation;       /* the last one the node told of */
    uint64_t alive_ms, gc_floor;/* what the node last told env.alive */
    size_t nsent;               /* datagrams sent in all */
    struct fake_sent {
        struct sockaddr_in to;
        uint8_t buf[FAKE_SENT_BYTES];
        size_t len;
    } sent[FAKE_SENT_KEEP];
} fake;

static uint64_t fake_now(void *ctx) { (void)ctx; return fake.clock_ms; }
static uint64_t fake_wall(void *ctx) { (void)ctx; return fake.clock_ms + fake.wall_offset_ms; }
static void fake_log(void *ctx, const char *line) { (void)ctx; (void)line; }
static void fake_stop(void *ctx) { (void)ctx; fake.stops++; }
static void fake_incarnation(void *ctx, uint64_t inc) { (void)ctx; fake.incarnation = inc; }
static void fake_alive(void *ctx, uint64_t alive_ms, uint64_t gc_floor) {
    (void)ctx;
    fake.alive_ms = alive_ms;
    fake.gc_floor = gc_floor;
}

static uint64_t fake_random(void *ctx) {
    (void)ctx;
    fake.rnd ^= fake.rnd << 13;
    fake.rnd ^= fake.rnd >> 7;
    fake.rnd ^= fake.rnd << 17;
    return fake.rnd;
}

static int fake_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    (void)ctx;
    if (len == 0 || len > WIRE_MAX_DATAGRAM) abort(); /* no such datagram exists */
    if (fake.nsent < FAKE_SENT_KEEP && len <= FAKE_SENT_BYTES) {
        struct fake_sent *s = &fake.sent[fake.nsent];
        s->to = *to;
        memcpy(s->buf, buf, len);
        s->len = len;
    }
    fake.nsent++;
    return 0;
}

/* Resets the fake world: clock at clock_ms, wall clock wall_ms then. */
static void fake_reset(uint64_t clock_ms, uint64_t wall_ms) {
    memset(&fake, 0, sizeof fake);
    fake.clock_ms = clock_ms;
    fake.wall_offset_ms = wall_ms - clock_ms;
    fake.rnd = 88172645463325252ull;
}

/* A node on 127.0.0.1:port in the fake world, on store st (which it then
 * owns). NULL when out of memory. cfg NULL: the defaults, quiet. Free it
 * (and its store) with fake_node_free. */
/* The tests' config: the defaults, quiet, gossip slow enough not to run. */
static inline node_config quiet_config(void) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.gossip_ms = 60000;
    return cfg;
}

static node *fake_node_on(const node_config *cfg, uint16_t port, store *st) {
    node_config c;
    if (cfg) c = *cfg;
    else {
        node_defaults(&c);
        c.quiet = true;
    }
    c.port = port;
    struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = htons(port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    node_env env = {.now = fake_now, .wall = fake_wall, .send = fake_send, .random = fake_random,
                    .log = fake_log, .stop = fake_stop, .incarnation = fake_incarnation,
                    .alive = fake_alive};
    node *n = node_new(&c, &env, &self, st, 1234);
    if (!n) store_close(st);
    return n;
}

/* The same on a new store in memory of max_bytes. */
static node *fake_node(const node_config *cfg, uint16_t port, size_t max_bytes) {
    store *st;
    if (store_open(&st, NULL, max_bytes) != 0) return NULL;
    return fake_node_on(cfg, port, st);
}

static void fake_node_free(node *n) {
    store *st = n->store;
    node_free(n);
    store_close(st);
}

#endif
