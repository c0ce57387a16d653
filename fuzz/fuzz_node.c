/*
 * libFuzzer target for a whole node: every input is handed to node_receive
 * as a datagram, as it is and (so that the fuzzer need not learn CRC32) as
 * the payload of a well-formed Msg whose kind (client, peer, batch) and ID
 * come from its first bytes; each once as if from a member (so node-to-node
 * messages, batches, forwards and replication are taken) and once from an
 * unknown client; then the node ticks. The node runs over the unit tests'
 * fake environment (tests/unit/fake_env.h): a clock that moves a few ms per
 * input, sends counted (and checked to fit a datagram). Nothing may crash or
 * trip the sanitizers. State (store, members, operations) carries over from
 * input to input, as on a real node. A second node holds a cluster key: it
 * gets the input as it is (its seal parser must hold) and the wrapped Msg
 * sealed with its key (so what a member may send is fuzzed past the seal);
 * it runs W=1 R=1 (W + R <= N: lazy copies, batched acks, the slot's first
 * replica waited for), the first node the defaults. See fuzz/README.md.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/unit/fake_env.h"
#include "node.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static node *n, *keyed;
static auth_keys key = {.n = 1};

static struct sockaddr_in addr(uint32_t ip, uint16_t port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(ip);
    return a;
}

static void setup(void) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.vnodes = 16;
    cfg.cache_bytes = 4 << 20; /* bounded state across millions of inputs */
    fake_reset(1000000, 1800000000000ull);
    if (!(n = fake_node(&cfg, 7000, 4 << 20))) abort();
    ring_node seeds[3] = {{htonl(0x7F000001), 7001}, {htonl(0x7F000001), 7002},
                          {htonl(0x7F000001), 7003}};
    if (node_add_seeds(n, seeds, 3) != 0) abort();
    node_tick(n);
    for (size_t i = 0; i < AUTH_KEY_LEN; i++) key.key[0][i] = (uint8_t)(i * 37 + 1);
    cfg.keys = &key;
    cfg.write_quorum = 1;
    cfg.read_quorum = 1;
    if (!(keyed = fake_node(&cfg, 7010, 4 << 20))) abort();
    if (node_add_seeds(keyed, seeds, 3) != 0) abort();
    node_tick(keyed);
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
            len = auth_seal(&key, msg, len, sizeof msg, fake_wall(NULL), data[0] & 4);
            if (len) node_receive(keyed, &member, msg, len);
        }
    }
    node_receive(keyed, &client, data, size);
    fake.clock_ms += 7;
    fake.nsent = FAKE_SENT_KEEP; /* keep nothing: the fuzzer runs millions */
    node_tick(n);
    node_tick(keyed);
    return 0;
}
