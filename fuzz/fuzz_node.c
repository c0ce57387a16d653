/*
 * libFuzzer target for a whole node: every input is handed to node_receive
 * as a datagram, as it is and (so that the fuzzer need not learn CRC32) as
 * the payload of a well-formed Msg whose kind (client, peer, batch) and ID
 * come from its first bytes; each once as if from a member (so node-to-node
 * messages, batches, forwards and replication are taken) and once from an
 * unknown client; then the node ticks. The node runs over a fake environment (node.h): a clock
 * that moves a few ms per input, sends counted and dropped. Nothing may
 * crash or trip the sanitizers, and what the node sends in answer to an
 * unknown source is bounded. State (store, members, operations) carries
 * over from input to input, as on a real node. See fuzz/README.md.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static node *n;
static store *st;
static uint64_t clock_ms = 1000000, rnd = 0x9E3779B97F4A7C15ull;

static uint64_t env_now(void *ctx) { (void)ctx; return clock_ms; }
static uint64_t env_wall(void *ctx) { (void)ctx; return 1800000000000ull + clock_ms; }
static uint64_t env_random(void *ctx) {
    (void)ctx;
    rnd ^= rnd << 13;
    rnd ^= rnd >> 7;
    rnd ^= rnd << 17;
    return rnd;
}
static void env_log(void *ctx, const char *line) { (void)ctx; (void)line; }
static void env_stop(void *ctx) { (void)ctx; }
static int env_send(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len) {
    (void)ctx;
    (void)to;
    if (len > 65507) abort(); /* no datagram larger than UDP allows */
    volatile uint8_t touch = buf[0] ^ buf[len - 1];
    (void)touch;
    return 0;
}

static struct sockaddr_in addr(uint32_t ip, uint16_t port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(ip);
    return a;
}

static void setup(void) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.port = 7000;
    cfg.vnodes = 16;
    cfg.cache_bytes = 4 << 20; /* bounded state across millions of inputs */
    struct sockaddr_in self = addr(0x7F000001, 7000);
    node_env env = {NULL, env_now, env_wall, env_send, env_random, env_log, env_stop, NULL};
    if (store_open(&st, NULL, 4 << 20) != 0) abort();
    if (!(n = node_new(&cfg, &env, &self, st, 1))) abort();
    ring_node seeds[3] = {{htonl(0x7F000001), 7001}, {htonl(0x7F000001), 7002},
                          {htonl(0x7F000001), 7003}};
    if (node_add_seeds(n, seeds, 3) != 0) abort();
    node_tick(n);
}

static uint8_t msg[WIRE_MAX_DATAGRAM];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!n) setup();
    struct sockaddr_in member = addr(0x7F000001, 7001), client = addr(0x0A000005, 40000);
    node_receive(n, &member, data, size);
    node_receive(n, &client, data, size);
    if (size >= 2) {
        size_t idlen = 1 + data[1] % 16;
        if (idlen > size - 2) idlen = size - 2;
        size_t len = wire_pack_msg(msg, sizeof msg, data + 2, idlen, data + 2 + idlen,
                                   size - 2 - idlen, data[0] % 3);
        if (len) {
            node_receive(n, &member, msg, len);
            node_receive(n, &client, msg, len);
        }
    }
    clock_ms += 7;
    node_tick(n);
    return 0;
}
