/* Unit tests for auth (the cluster key and seals) and for the trust
 * boundary of a node: what it takes from whom. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "fake_env.h"
#include "members.h"
#include "node.h"
#include "repl.h"
#include "wire.h"

#define WALL0 1800000000000ull

static auth_keys key_a, key_b;

static void fill_key(auth_keys *k, uint8_t seed) {
    memset(k, 0, sizeof *k);
    k->n = 1;
    for (size_t i = 0; i < AUTH_KEY_LEN; i++) k->key[0][i] = (uint8_t)(seed + 7 * i);
}

static struct sockaddr_in addr(const char *ip, uint16_t port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* ---- auth --------------------------------------------------------------- */

/* Both seals: each opens under its key only, the SipHash keys derived at
 * use or beforehand (auth_keys_ready) alike; the two differ. */
static void test_seal_opens_only_under_its_key(void **state) {
    (void)state;
    uint8_t first[2][128];
    for (int sip = 0; sip < 2; sip++)
        for (int ready = 0; ready < 2; ready++) {
            fill_key(&key_a, 1);
            fill_key(&key_b, 2);
            if (ready) auth_keys_ready(&key_a), auth_keys_ready(&key_b);
            uint8_t buf[128] = "some encoded Msg";
            size_t len = strlen((char *)buf);
            size_t sealed = auth_seal(&key_a, buf, len, sizeof buf, WALL0 + 5, sip);
            assert_int_equal(sealed, len + AUTH_SEAL_LEN);
            if (!ready) memcpy(first[sip], buf, sizeof buf);
            else assert_memory_equal(first[sip], buf, sealed); /* derived = ready */
            uint64_t sent = 0;
            assert_int_equal(auth_open(&key_a, buf, sealed, &sent), 1);
            assert_true(sent == WALL0 + 5);
            assert_int_equal(auth_open(&key_b, buf, sealed, &sent), 0);
            /* a changed byte anywhere (body, time, tag) breaks it */
            for (size_t i = 0; i < sealed; i++) {
                buf[i] ^= 0x40;
                assert_int_equal(auth_open(&key_a, buf, sealed, &sent), 0);
                buf[i] ^= 0x40;
            }
            /* too short, or nothing sealed */
            assert_int_equal(auth_open(&key_a, buf, AUTH_SEAL_LEN - 1, &sent), 0);
            assert_int_equal(auth_open(&key_a, buf, len, &sent), 0);
            /* no room */
            assert_int_equal(auth_seal(&key_a, buf, len, len + AUTH_SEAL_LEN - 1, 1, sip), 0);
            /* two keys (a rotation): either opens, the first seals */
            auth_keys both = key_b;
            memcpy(both.key[1], key_a.key[0], AUTH_KEY_LEN);
            both.n = 2;
            if (ready) auth_keys_ready(&both);
            assert_int_equal(auth_open(&both, buf, sealed, &sent), 1);
            size_t again = auth_seal(&both, buf, len, sizeof buf, WALL0, sip);
            assert_int_equal(auth_open(&key_b, buf, again, &sent), 1);
            assert_int_equal(auth_open(&key_a, buf, again, &sent), 0);
        }
    /* the two kinds: another field, another MAC */
    assert_int_not_equal(first[0][strlen("some encoded Msg") + 9],
                         first[1][strlen("some encoded Msg") + 9]);
    assert_memory_not_equal(first[0] + strlen("some encoded Msg") + 11,
                            first[1] + strlen("some encoded Msg") + 11, AUTH_TAG_LEN);
}

static void test_key_files(void **state) {
    (void)state;
    char path[] = "/tmp/dht-test-key-XXXXXX", err[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char key[66];
    auth_keygen(key);
    assert_int_equal(strlen(key), 65);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# the cluster's key\n\n  %s", key);
    fclose(f);
    auth_keys k;
    assert_int_equal(auth_load(path, &k, err, sizeof err), 0);
    assert_int_equal(k.n, 1);
    uint8_t raw[AUTH_KEY_LEN];
    assert_int_equal(auth_parse_key(key, 64, raw), 0);
    assert_memory_equal(raw, k.key[0], AUTH_KEY_LEN);
    /* a second key; a third is refused */
    f = fopen(path, "a");
    fprintf(f, "%s", key);
    fclose(f);
    assert_int_equal(auth_load(path, &k, err, sizeof err), 0);
    assert_int_equal(k.n, 2);
    f = fopen(path, "a");
    fprintf(f, "%s", key);
    fclose(f);
    assert_int_equal(auth_load(path, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than"));
    /* not hex, short, empty, missing */
    f = fopen(path, "w");
    fprintf(f, "%.63s\n", key);
    fclose(f);
    assert_int_equal(auth_load(path, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a key"));
    f = fopen(path, "w");
    fprintf(f, "# nothing\n");
    fclose(f);
    assert_int_equal(auth_load(path, &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "no key"));
    unlink(path);
    assert_int_equal(auth_load(path, &k, err, sizeof err), -1);
    /* a file that cannot be read says why (a directory read as empty: "no key") */
    assert_int_equal(auth_load("/tmp", &k, err, sizeof err), -1);
    assert_non_null(strstr(err, "directory"));
    key[3] = 'g';
    assert_int_equal(auth_parse_key(key, 64, raw), -1);
}

static void test_addresses(void **state) {
    (void)state;
    const char *priv[] = {"127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                          "192.168.1.1", "169.254.3.3"};
    const char *pub[] = {"8.8.8.8", "172.15.255.255", "172.32.0.0", "192.169.0.1", "11.0.0.1",
                         "203.0.113.7", "0.0.0.0"};
    for (size_t i = 0; i < sizeof priv / sizeof *priv; i++)
        assert_true(auth_private_addr(addr(priv[i], 1).sin_addr.s_addr));
    for (size_t i = 0; i < sizeof pub / sizeof *pub; i++)
        assert_false(auth_private_addr(addr(pub[i], 1).sin_addr.s_addr));
    auth_net nets[2];
    assert_int_equal(auth_parse_cidr("10.1.0.0/16", &nets[0]), 0);
    assert_int_equal(auth_parse_cidr("192.0.2.7", &nets[1]), 0);
    assert_true(auth_in_nets(nets, 2, addr("10.1.200.3", 1).sin_addr.s_addr));
    assert_false(auth_in_nets(nets, 2, addr("10.2.0.1", 1).sin_addr.s_addr));
    assert_true(auth_in_nets(nets, 2, addr("192.0.2.7", 1).sin_addr.s_addr));
    assert_false(auth_in_nets(nets, 2, addr("192.0.2.8", 1).sin_addr.s_addr));
    auth_net all;
    assert_int_equal(auth_parse_cidr("0.0.0.0/0", &all), 0);
    assert_true(auth_in_nets(&all, 1, addr("8.8.8.8", 1).sin_addr.s_addr));
    const char *bad[] = {"", "10.0.0.0/33", "10.0.0/8", "10.0.0.0/", "x/8", "10.0.0.0/8x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(auth_parse_cidr(bad[i], &all), -1);
}

/* ---- a node's trust boundary ------------------------------------------- */

static node *n;

static node *keyed_node(const auth_keys *k) {
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.keys = k;
    return fake_node(&cfg, 7000, 1 << 20);
}

static int teardown(void **state) {
    (void)state;
    if (n) fake_node_free(n);
    n = NULL;
    return 0;
}

/* The monotonic clock of the members these tests speak for (Peer.mono):
 * it runs as ours, from elsewhere, whatever their wall clocks do. */
static uint64_t peer_mono(void) { return fake.clock_ms + 500000; }

/* A GOSSIP from `who` (its own entry) with these flags, saying its clock
 * reads `wall` (0: nothing said) and, when `to` is not NULL, that it was
 * sent there (a ping's to_ip, to_port), sealed with k unless k is NULL,
 * sent at wall-clock ms `sent`. Returns the datagram's length. */
static size_t gossip_from(uint8_t *buf, size_t cap, const struct sockaddr_in *who,
                          const auth_keys *k, uint64_t sent, uint32_t flags, bool sip,
                          uint64_t wall, const struct sockaddr_in *to) {
    Peer p = PEER__INIT;
    Member me = MEMBER__INIT;
    me.ip = who->sin_addr.s_addr;
    me.port = ntohs(who->sin_port);
    me.incarnation = WALL0 - 5000;
    me.heartbeat = 1;
    p.type = PEER_GOSSIP;
    p.flags = flags;
    p.from = &me;
    p.wall = wall;
    p.mono = peer_mono();
    if (to) {
        p.to_ip = to->sin_addr.s_addr;
        p.to_port = ntohs(to->sin_port);
    }
    uint8_t id[WIRE_ID_LEN] = {7};
    size_t len = wire_pack(buf, cap - AUTH_SEAL_LEN, id, sizeof id, &p.base, WIRE_KIND_PEER);
    assert_true(len > 0);
    return k ? auth_seal(k, buf, len, cap, sent, sip) : len;
}

/* A ping from `who`: gossip_from with PEER_GOSSIP_PROBE. */
static size_t ping_as(uint8_t *buf, size_t cap, const struct sockaddr_in *who,
                      const auth_keys *k, uint64_t sent, uint32_t flags, bool sip) {
    return gossip_from(buf, cap, who, k, sent, PEER_GOSSIP_PROBE | flags, sip, 0, NULL);
}

static size_t ping(uint8_t *buf, size_t cap, const struct sockaddr_in *who, const auth_keys *k,
                   uint64_t sent) {
    return ping_as(buf, cap, who, k, sent, 0, false);
}

static bool knows(const struct sockaddr_in *who) {
    return members_find(n->members, who->sin_addr.s_addr, ntohs(who->sin_port)) > 0;
}

/* The kind of seal at the end of a sealed datagram: the mac's tag byte. */
static uint8_t seal_kind(const struct fake_sent *d) { return d->buf[d->len - AUTH_SEAL_LEN + 9]; }

/* A node opens both seals, and seals with SipHash (field 7) to a member
 * whose last GOSSIP said it opens it, with BLAKE2b (field 5, what earlier
 * versions open) to the others: a member that comes back as an earlier
 * version (its GOSSIP without the flag) gets BLAKE2b again at once. Its
 * own GOSSIP says it opens SipHash. */
static void test_seal_follows_what_the_member_said(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    auth_keys_ready(&key_a);
    assert_non_null(n = keyed_node(&key_a));
    uint8_t buf[1024];
    struct sockaddr_in m1 = addr("10.0.0.2", 7000);
    wire_arena *a = wire_arena_new();
    const struct { uint32_t flags; bool sip; uint8_t want; } steps[] = {
        {0, false, 0x2a},                    /* an earlier version */
        {PEER_GOSSIP_SIPHASH, false, 0x3a},  /* this one, sealing as earlier */
        {PEER_GOSSIP_SIPHASH, true, 0x3a},
        {0, false, 0x2a},                    /* back as an earlier version */
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        fake.nsent = 0;
        node_receive(n, &m1, buf, ping_as(buf, sizeof buf, &m1, &key_a, WALL0, steps[i].flags,
                                          steps[i].sip));
        assert_true(knows(&m1));
        node_flush(n);
        assert_int_equal(fake.nsent, 1); /* the ack */
        assert_int_equal(seal_kind(&fake.sent[0]), steps[i].want);
        uint64_t sent;
        assert_int_equal(auth_open(&key_a, fake.sent[0].buf, fake.sent[0].len, &sent), 1);
        wire_frame f;
        assert_int_equal(wire_unpack_msg(a, fake.sent[0].buf, fake.sent[0].len - AUTH_SEAL_LEN, &f), 0);
        Peer *p = wire_unpack_peer(a, f.payload, f.plen);
        assert_non_null(p);
        assert_true(p->flags & PEER_GOSSIP_SIPHASH);
        wire_reset(a);
    }
    wire_arena_free(a);
}

/* With a key, a node takes node-to-node messages sealed with it (and sent
 * within the clock bound) and drops every other. */
static void test_keyed_node_takes_only_sealed_messages(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    fill_key(&key_b, 2);
    assert_non_null(n = keyed_node(&key_a));
    uint8_t buf[1024];
    struct sockaddr_in m1 = addr("10.0.0.2", 7000), m2 = addr("10.0.0.3", 7000),
                       m3 = addr("10.0.0.4", 7000), m4 = addr("10.0.0.5", 7000),
                       m5 = addr("8.8.8.8", 7000);
    node_receive(n, &m1, buf, ping(buf, sizeof buf, &m1, NULL, 0));
    assert_false(knows(&m1));
    node_receive(n, &m2, buf, ping(buf, sizeof buf, &m2, &key_b, WALL0));
    assert_false(knows(&m2));
    node_receive(n, &m3, buf, ping(buf, sizeof buf, &m3, &key_a, WALL0 - WIRE_MAX_AHEAD_MS - 1));
    node_receive(n, &m3, buf, ping(buf, sizeof buf, &m3, &key_a, WALL0 + WIRE_MAX_AHEAD_MS + 1));
    assert_false(knows(&m3));
    assert_int_equal(n->stats.dropped_unsealed, 2);
    assert_int_equal(n->stats.dropped_clock, 2);
    node_flush(n);
    assert_int_equal(fake.nsent, 0); /* not even an ack */
    /* sealed with the key, within the bound, from anywhere: a member */
    node_receive(n, &m4, buf, ping(buf, sizeof buf, &m4, &key_a, WALL0 + 20000));
    node_receive(n, &m5, buf, ping(buf, sizeof buf, &m5, &key_a, WALL0 - 20000));
    assert_true(knows(&m4));
    assert_true(knows(&m5));
    node_flush(n);
    assert_int_equal(fake.nsent, 2); /* the acks, sealed */
    uint64_t sent;
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(auth_open(&key_a, fake.sent[i].buf, fake.sent[i].len, &sent), 1);
        assert_true(sent == WALL0);
    }
    /* client requests need no seal */
    uint8_t id[WIRE_ID_LEN] = {3};
    size_t len = wire_request(buf, sizeof buf, id, WIRE_IS_ALIVE, NULL, 0, NULL, 0, 0);
    node_receive(n, &m1, buf, len);
    assert_int_equal(fake.nsent, 3);
    assert_int_equal(auth_open(&key_a, fake.sent[2].buf, fake.sent[2].len, &sent), 0);
}

/* Without a key, node-to-node messages come only from loopback and
 * private addresses. */
static void test_keyless_node_takes_peers_from_private_addresses_only(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    assert_non_null(n = keyed_node(NULL));
    uint8_t buf[1024];
    struct sockaddr_in pub = addr("203.0.113.7", 7000), priv = addr("192.168.5.5", 7000);
    node_receive(n, &pub, buf, ping(buf, sizeof buf, &pub, NULL, 0));
    assert_false(knows(&pub));
    assert_int_equal(n->stats.dropped_outsider, 1);
    node_receive(n, &priv, buf, ping(buf, sizeof buf, &priv, NULL, 0));
    assert_true(knows(&priv));
}

/* GOSSIP messages among the datagrams sent from the from-th on. */
static size_t gossip_sent(size_t from) {
    size_t k = 0;
    wire_arena *a = wire_arena_new();
    for (size_t i = from; i < fake.nsent && i < FAKE_SENT_KEEP; i++) {
        wire_frame f;
        wire_reset(a);
        if (wire_unpack_msg(a, fake.sent[i].buf, fake.sent[i].len, &f) != 0) continue;
        Peer *p = f.kind == WIRE_KIND_PEER ? wire_unpack_peer(a, f.payload, f.plen) : NULL;
        k += p && p->type == PEER_GOSSIP;
    }
    wire_arena_free(a);
    return k;
}

/* A debug message (pause gossip) is obeyed only sealed with the key. */
static void test_debug_needs_the_key(void **state) {
    (void)state;
    Peer p = PEER__INIT;
    p.type = PEER_DEBUG;
    p.flags = PEER_DEBUG_PAUSE_GOSSIP;
    p.bucket = 60000;
    uint8_t id[WIRE_ID_LEN] = {5}, buf[256];
    struct sockaddr_in from = addr("127.0.0.1", 9999);
    for (int keyed = 0; keyed < 2; keyed++) {
        fake_reset(1000, WALL0);
        fill_key(&key_a, 1);
        assert_non_null(n = keyed_node(keyed ? &key_a : NULL));
        size_t len = wire_pack(buf, sizeof buf - AUTH_SEAL_LEN, id, sizeof id, &p.base,
                               WIRE_KIND_PEER);
        if (keyed) len = auth_seal(&key_a, buf, len, sizeof buf, WALL0, false);
        node_tick(n);
        node_receive(n, &from, buf, len);
        /* a paused node sends no probe for a while: count what it sends to a seed */
        ring_node seed = {.ip = addr("127.0.0.2", 7000).sin_addr.s_addr, .port = 7000};
        assert_int_equal(node_add_seeds(n, &seed, 1), 0);
        size_t before = fake.nsent;
        for (int t = 0; t < 20; t++) {
            fake.clock_ms += 100;
            node_tick(n);
        }
        if (keyed) assert_int_equal(gossip_sent(before), 0); /* paused */
        else assert_true(gossip_sent(before) > 0);           /* not */
        teardown(NULL);
    }
}

/* Sends SHUTDOWN with message ID {idn} from `from`; returns the stops so far. */
static int shutdown_from(const struct sockaddr_in *from, uint8_t idn) {
    uint8_t buf[256], id[WIRE_ID_LEN] = {idn};
    size_t len = wire_request(buf, sizeof buf, id, WIRE_SHUTDOWN, NULL, 0, NULL, 0, 0);
    node_receive(n, from, buf, len);
    return fake.stops;
}

/* SHUTDOWN and WIPEOUT only from --admin-from (default: loopback, and the
 * hosts of members). */
static void test_admin_commands_from_admin_addresses_only(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    assert_non_null(n = keyed_node(NULL));
    uint8_t buf[256], id[WIRE_ID_LEN] = {2};
    struct sockaddr_in far = addr("192.168.7.7", 5000), lo = addr("127.0.0.1", 5000),
                       peer = addr("192.168.7.8", 7000), member_cli = addr("192.168.7.8", 5555);
    assert_int_equal(shutdown_from(&far, 1), 0);
    assert_int_equal(n->stats.refused_admin, 1);
    size_t len = wire_request(buf, sizeof buf, id, WIRE_WIPEOUT, NULL, 0, NULL, 0, 0);
    node_receive(n, &far, buf, len);
    assert_int_equal(n->stats.refused_admin, 2);
    wire_arena *a = wire_arena_new();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(a, fake.sent[fake.nsent - 1].buf,
                                     fake.sent[fake.nsent - 1].len, &f), 0);
    assert_int_equal(wire_unpack_response(a, f.payload, f.plen)->errcode, WIRE_EUNKNOWN);
    wire_arena_free(a);
    /* from a member's host */
    uint8_t pbuf[1024];
    node_receive(n, &peer, pbuf, ping(pbuf, sizeof pbuf, &peer, NULL, 0));
    assert_int_equal(shutdown_from(&member_cli, 3), 1);
    assert_int_equal(shutdown_from(&lo, 4), 2);
    teardown(NULL);

    /* --admin-from 192.168.7.7 replaces the defaults */
    auth_net net;
    assert_int_equal(auth_parse_cidr("192.168.7.7/32", &net), 0);
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.admin_nets = &net;
    cfg.admin_nets_n = 1;
    fake_reset(1000, WALL0);
    assert_non_null(n = fake_node(&cfg, 7000, 1 << 20));
    assert_int_equal(shutdown_from(&lo, 5), 0);
    assert_int_equal(shutdown_from(&far, 6), 1);
}

/* A forged forward (a node-to-node message naming a client) gets no reply
 * to that client unless it is sealed. */
static void test_forged_forward_reflects_nothing(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    assert_non_null(n = keyed_node(&key_a));
    uint8_t req[256], buf[512], id[WIRE_ID_LEN] = {9};
    size_t rl = wire_request(req, sizeof req, id, WIRE_GET_MEMBERSHIP_LIST, NULL, 0, NULL, 0, 0);
    wire_arena *a = wire_arena_new();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(a, req, rl, &f), 0);
    Peer p = PEER__INIT;
    p.type = PEER_FORWARD;
    p.client_ip = addr("198.51.100.1", 1).sin_addr.s_addr;
    p.client_port = 53;
    p.request.data = (uint8_t *)f.payload;
    p.request.len = f.plen;
    struct sockaddr_in from = addr("10.0.0.9", 7000);
    size_t len = wire_pack(buf, sizeof buf - AUTH_SEAL_LEN, id, sizeof id, &p.base, WIRE_KIND_PEER);
    node_receive(n, &from, buf, len);
    node_flush(n);
    assert_int_equal(fake.nsent, 0);
    len = auth_seal(&key_a, buf, len, sizeof buf, WALL0, true);
    node_receive(n, &from, buf, len);
    node_flush(n);
    assert_int_equal(fake.nsent, 1); /* a member's forward is served */
    assert_int_equal(ntohs(fake.sent[0].to.sin_port), 53);
    wire_arena_free(a);
}


/* A node at ip:port in the fake world, with a cluster key. */
static node *keyed_node_at(const char *ip, const auth_keys *k, store *st) {
    node_config c;
    node_defaults(&c);
    c.quiet = true;
    c.keys = k;
    c.port = 7000;
    struct sockaddr_in self = addr(ip, 7000);
    node_env env = {.now = fake_now, .wall = fake_wall, .send = fake_send, .random = fake_random,
                    .log = fake_log, .stop = fake_stop, .incarnation = fake_incarnation,
                    .alive = fake_alive};
    return node_new(&c, &env, &self, st, 1);
}

/* keyed_node_at on a new store in memory; *st gets it (freed by the test). */
static node *keyed_node_new(const char *ip, const auth_keys *k, store **st) {
    assert_int_equal(store_open(st, NULL, 1 << 20), 0);
    node *x = keyed_node_at(ip, k, *st);
    assert_non_null(x);
    return x;
}

/* Replies and requests are both kind 0, and every kind-0 datagram was
 * served as a request; now none from a node's address is. One datagram from an outsider without the key,
 * its source spoofed as member B's node port, sent to member A: A answers
 * B (UNKNOWN_COMMAND, 0x05), B reads that reply as a request, command 0x05
 * = WIPEOUT, from a member's host: served, B's store is wiped; B's answer
 * goes to A, A serves it (its cached answer) back to B, and so on for
 * ever: the two nodes echo each other until one stops. (INTERNAL_FAILURE,
 * 0x04, reads as SHUTDOWN the same way.) */
static void test_replies_of_nodes_are_not_requests(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    store *sa, *sb;
    node *a = keyed_node_new("192.168.7.1", &key_a, &sa);
    node *b = keyed_node_new("192.168.7.2", &key_a, &sb);
    struct sockaddr_in aa = addr("192.168.7.1", 7000), ba = addr("192.168.7.2", 7000);
    assert_int_equal(members_add_seed(a->members, ba.sin_addr.s_addr, 7000), 0);
    assert_int_equal(members_add_seed(b->members, aa.sin_addr.s_addr, 7000), 0);
    store_rec v = {(const uint8_t *)"v", 1, 0, WALL0 << 16, false};
    assert_int_equal(store_put(sb, (const uint8_t *)"k", 1, &v), 0);

    /* the outsider's one datagram: an unknown command, "from" B */
    uint8_t buf[256], id[WIRE_ID_LEN] = {0x77};
    size_t len = wire_request(buf, sizeof buf, id, 0x99, NULL, 0, NULL, 0, 0);
    fake.nsent = 0;
    node_receive(a, &ba, buf, len);
    /* pass on whatever the nodes send each other */
    size_t k = 0, echoes = 0;
    for (; k < fake.nsent && k < FAKE_SENT_KEEP; k++) {
        struct fake_sent *d = &fake.sent[k];
        bool to_b = d->to.sin_addr.s_addr == ba.sin_addr.s_addr;
        bool to_a = d->to.sin_addr.s_addr == aa.sin_addr.s_addr;
        if (!to_a && !to_b) continue;
        echoes++;
        node_receive(to_b ? b : a, to_b ? &aa : &ba, d->buf, d->len);
    }
    assert_int_equal(store_records(sb), 1); /* B's record is still there */
    assert_true(echoes < 4);                /* and the exchange dies out */
    node_free(a), store_close(sa);
    node_free(b), store_close(sb);
}


/* The first datagram whose GOSSIP from `to` (fake.sent from `from` on) is a
 * ping: its index, or -1. */
static long ping_sent_to(const struct sockaddr_in *to, size_t from) {
    long found = -1;
    wire_arena *a = wire_arena_new();
    for (size_t i = from; i < fake.nsent && i < FAKE_SENT_KEEP && found < 0; i++) {
        struct fake_sent *d = &fake.sent[i];
        if (d->to.sin_addr.s_addr != to->sin_addr.s_addr || d->to.sin_port != to->sin_port)
            continue;
        /* sealed, perhaps a batch: look at each Msg in it */
        wire_frame f;
        wire_reset(a);
        if (wire_unpack_msg(a, d->buf, d->len, &f) != 0) continue;
        const uint8_t *p = f.payload, *end = f.payload + f.plen, *fr;
        size_t flen;
        wire_frame one = f;
        bool batch = f.kind == WIRE_KIND_BATCH;
        while (found < 0 && (!batch || wire_batch_next(&p, end, &fr, &flen) == 1)) {
            if (batch && wire_unpack_batched(fr, flen, &one) != 0) break;
            Peer *pp = one.kind == WIRE_KIND_PEER ? wire_unpack_peer(a, one.payload, one.plen)
                                                   : NULL;
            if (pp && pp->type == PEER_GOSSIP && (pp->flags & PEER_GOSSIP_PROBE)) found = (long)i;
            if (!batch) break;
        }
    }
    wire_arena_free(a);
    return found;
}

static bool live_at(node *x, const struct sockaddr_in *who) {
    long i = members_find(x->members, who->sin_addr.s_addr, ntohs(who->sin_port));
    return i > 0 && members_at(x->members, (size_t)i)->state != MEMBER_DEAD;
}

/* A keyed node at 192.168.7.1 in a fresh fake world, its store in *sa. */
static node *fresh_node_a(store **sa) {
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    return keyed_node_new("192.168.7.1", &key_a, sa);
}

/* What a ping says of where it was sent can be a replay's: member Y's ping
 * of seed X, recorded and sent to A, which has not heard from X yet, makes
 * A take X for an address of its own (dht-sim --replayer-cover W=1 R=1
 * seed 3: a ping of a node's past life, sent back to it just after its
 * restart). Nothing corrected that while X did not speak to A, and X held
 * A forgotten, or for an alias itself: the two held each other dead for
 * good. An alias is pinged again now and then: X answers as itself and
 * is a member again. */
static void test_alias_from_a_replay_is_checked_again(void **state) {
    (void)state;
    store *sa;
    node *a = fresh_node_a(&sa);
    struct sockaddr_in xa = addr("192.168.7.2", 7000), ya = addr("192.168.7.3", 7000);
    ring_node seed = {.ip = xa.sin_addr.s_addr, .port = 7000};
    assert_int_equal(node_add_seeds(a, &seed, 1), 0);
    uint8_t buf[1024];
    node_receive(a, &ya, buf, ping(buf, sizeof buf, &ya, &key_a, WALL0));
    node_receive(a, &ya, buf, gossip_from(buf, sizeof buf, &ya, &key_a, WALL0, PEER_GOSSIP_PROBE,
                                          true, WALL0, &xa)); /* Y's ping of X, replayed */
    assert_int_equal(members_aliases(a->members), 1);
    assert_false(live_at(a, &xa));
    long k = -1;
    for (int t = 0; t < 600 && k < 0; t++) { /* 60 s */
        fake.nsent = 0;
        fake.clock_ms += 100;
        node_tick(a);
        node_receive(a, &ya, buf, ping(buf, sizeof buf, &ya, &key_a, node_wall_ms(a)));
        k = ping_sent_to(&xa, 0);
    }
    assert_true(k >= 0);
    node_receive(a, &xa, buf, gossip_from(buf, sizeof buf, &xa, &key_a, node_wall_ms(a),
                                          PEER_GOSSIP_ACK, true, node_wall_ms(a), NULL));
    assert_int_equal(members_aliases(a->members), 0);
    assert_true(live_at(a, &xa));
    node_free(a), store_close(sa);
}

/* A recording of our own ping of a dead member, sent back to us, read as
 * that ping come back through an address of ours: the member became our
 * alias, off the list. A node cut off alone took both others so, counted
 * itself the whole cluster and acknowledged W=2 writes with its one copy
 * (dht-sim --replayer-cover --nodes 3, seed 133). An address heard from as
 * a process of its own (a life of its own, dead or alive) is no alias on
 * any ping's word. */
static void test_own_ping_of_the_dead_replayed_makes_no_alias(void **state) {
    (void)state;
    store *sa;
    node *a = fresh_node_a(&sa);
    struct sockaddr_in ba = addr("192.168.7.2", 7000), far = addr("203.0.113.9", 4444);
    uint8_t buf[1024];
    node_receive(a, &ba, buf, ping(buf, sizeof buf, &ba, &key_a, WALL0));
    assert_true(live_at(a, &ba));
    long k = -1;
    for (int t = 0; t < 600 && k < 0; t++) { /* B answers nothing: suspect, dead, then pinged as dead */
        fake.nsent = 0;
        fake.clock_ms += 100;
        node_tick(a);
        if (!live_at(a, &ba)) k = ping_sent_to(&ba, 0);
    }
    assert_true(k >= 0);
    struct fake_sent rec = fake.sent[k];
    node_receive(a, &far, rec.buf, rec.len); /* back to A, from anywhere */
    assert_int_equal(members_aliases(a->members), 0);
    assert_true(members_find(a->members, ba.sin_addr.s_addr, 7000) > 0);
    node_free(a), store_close(sa);
}

/* A keyed node (n) of N=1 at 127.0.0.1:7000 with member y (pinged at
 * WALL0), and in key a key it holds: it answers a forward of it at once. */
static void forwarded_node(const struct sockaddr_in *y, char key[16]) {
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    node_config cfg;
    node_defaults(&cfg);
    cfg.quiet = true;
    cfg.keys = &key_a;
    cfg.replicas = 1, cfg.write_quorum = 1, cfg.read_quorum = 1;
    assert_non_null(n = fake_node(&cfg, 7000, 1 << 20));
    uint8_t buf[1024];
    node_receive(n, y, buf, ping(buf, sizeof buf, y, &key_a, WALL0));
    assert_true(knows(y));
    for (int i = 0;; i++) {
        uint32_t owner;
        snprintf(key, 16, "k%d", i);
        if (repl_is_replica(n, (const uint8_t *)key, strlen(key), &owner)) return;
    }
}

/* A sealed datagram replays for up to 60 s from anywhere (README: Left
 * open), which was to change nothing. But a ping names where it was sent,
 * and one that reached another address than its own was taken for proof
 * of an alias: A's ping of member B, recorded and sent back to A (from
 * any address), read as A's own ping come back through B's address, so
 * B was "an address of this node" and left A's list; sent to member D,
 * D answered A saying B's address back, and A took B for an alias of D.
 * Either way one recorded datagram took a live member off A's ring (until
 * B next spoke to A), as often as the attacker liked. A ping sent to an
 * address that does not reach the node is not for it: dropped. */
static void test_replayed_ping_takes_no_member_off(void **state) {
    (void)state;
    fill_key(&key_a, 1);
    for (int via_d = 0; via_d < 2; via_d++) {
        fake_reset(1000, WALL0);
        store *sa, *sd;
        node *a = keyed_node_new("192.168.7.1", &key_a, &sa);
        node *d = keyed_node_new("192.168.7.3", &key_a, &sd);
        struct sockaddr_in aa = addr("192.168.7.1", 7000), ba = addr("192.168.7.2", 7000),
                           da = addr("192.168.7.3", 7000), far = addr("203.0.113.9", 4444);
        /* B and D are members of A, at lives of their own; A and B of D */
        uint8_t buf[1024];
        node_receive(a, &ba, buf, ping(buf, sizeof buf, &ba, &key_a, WALL0));
        node_receive(a, &da, buf, ping(buf, sizeof buf, &da, &key_a, WALL0));
        node_receive(d, &ba, buf, ping(buf, sizeof buf, &ba, &key_a, WALL0));
        node_receive(d, &aa, buf, ping(buf, sizeof buf, &aa, &key_a, WALL0));
        assert_true(live_at(a, &ba));
        assert_true(live_at(d, &ba));
        /* A pings B: the attacker records it */
        fake.nsent = 0;
        long k = -1;
        for (int t = 0; t < 50 && k < 0; t++) {
            size_t before = fake.nsent;
            fake.clock_ms += 50;
            node_tick(a);
            k = ping_sent_to(&ba, before);
        }
        assert_true(k >= 0);
        struct fake_sent rec = fake.sent[k];
        size_t before = fake.nsent;
        if (!via_d) {
            node_receive(a, &far, rec.buf, rec.len); /* back to A, from anywhere */
        } else {
            node_receive(d, &aa, rec.buf, rec.len); /* to D, "from" A */
            node_flush(d);
            for (size_t i = before; i < fake.nsent && i < FAKE_SENT_KEEP; i++)
                if (fake.sent[i].to.sin_addr.s_addr == aa.sin_addr.s_addr)
                    node_receive(a, &da, fake.sent[i].buf, fake.sent[i].len);
        }
        assert_true(live_at(a, &ba)); /* B is still A's member */
        assert_int_equal(members_aliases(a->members), 0);
        assert_true(live_at(d, &ba));
        assert_int_equal(members_aliases(d->members), 0);
        node_free(a), store_close(sa);
        node_free(d), store_close(sd);
    }
}

/* A forward from member `from` (incarnation WALL0 - 5000, as ping_as says)
 * to the node at `to` (its incarnation to_inc), count seq, of a PUT of
 * key for client 10.0.0.50:5000, sealed at `sent`. */
static size_t forward_dgram(uint8_t *buf, size_t cap, const struct sockaddr_in *from,
                            const struct sockaddr_in *to, uint64_t to_inc, uint64_t seq,
                            const char *key, uint8_t idbyte, uint64_t sent) {
    uint8_t req[256], id[WIRE_ID_LEN] = {idbyte};
    size_t rl = wire_request(req, sizeof req, id, WIRE_PUT, key, strlen(key), "v", 1, 0);
    wire_arena *a = wire_arena_new();
    wire_frame f;
    assert_int_equal(wire_unpack_msg(a, req, rl, &f), 0);
    Peer p = PEER__INIT;
    Member me = MEMBER__INIT;
    me.ip = from->sin_addr.s_addr;
    me.port = ntohs(from->sin_port);
    me.incarnation = WALL0 - 5000;
    p.type = PEER_FORWARD;
    p.from = &me;
    p.to_ip = to->sin_addr.s_addr;
    p.to_port = ntohs(to->sin_port);
    p.to_incarnation = to_inc;
    p.forward_seq = seq;
    p.mono = peer_mono();
    p.client_ip = addr("10.0.0.50", 5000).sin_addr.s_addr;
    p.client_port = 5000;
    p.request.data = (uint8_t *)f.payload;
    p.request.len = f.plen;
    size_t len = wire_pack(buf, cap - AUTH_SEAL_LEN, id, sizeof id, &p.base, WIRE_KIND_PEER);
    assert_true(len > 0);
    wire_arena_free(a);
    return auth_seal(&key_a, buf, len, cap, sent, true);
}

/* A sealed datagram replays for up to 60 s (the clock bound), and a
 * forwarded client request replayed after its reply-cache entry expired
 * (5 s) ran again: a PUT stamped anew over whatever was written since
 * (dht-sim --replayer lost writes in every seed of 1..30). A forward names
 * its sender, the node it is for and a count of the sender's forwards
 * there: a replay is dropped, so is a forward meant for another node or
 * another life of this one, and the next forward is served. */
static void test_replayed_forward_runs_once(void **state) {
    (void)state;
    struct sockaddr_in y = addr("10.0.0.2", 7000), self = addr("127.0.0.1", 7000),
                       other = addr("10.0.0.3", 7000);
    char key[16];
    forwarded_node(&y, key);
    uint8_t buf[1024];
    uint8_t rec[1024];
    size_t rl = forward_dgram(rec, sizeof rec, &y, &self, n->incarnation, 1, key, 1, WALL0);
    node_receive(n, &y, rec, rl);
    node_flush(n);
    assert_int_equal(n->stats.requests[WIRE_PUT], 1);
    for (int t = 0; t < 100; t++) { /* 10 s: the reply cache has let it go */
        fake.clock_ms += 100;
        node_tick(n);
    }
    node_receive(n, &y, rec, rl); /* the recording, from y's address */
    node_receive(n, &other, rec, rl); /* and from another */
    node_flush(n);
    assert_int_equal(n->stats.requests[WIRE_PUT], 1);
    assert_int_equal(n->stats.dropped_replay, 2);
    uint64_t wall = WALL0 + 10000;
    /* meant for another node, or for an earlier life of this one */
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &other, n->incarnation, 2, key, 2, wall));
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation - 1, 3, key, 3, wall));
    assert_int_equal(n->stats.requests[WIRE_PUT], 1);
    /* y's next forward here is served */
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 4, key, 4, wall));
    assert_int_equal(n->stats.requests[WIRE_PUT], 2);
    /* and one sent a second before it, never seen, arriving after it */
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 3, key, 5, wall - 500));
    assert_int_equal(n->stats.requests[WIRE_PUT], 3);
    /* but not one sent 5 s before it (it never came: kept and sent now) */
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 2, key, 6, wall - 5000));
    assert_int_equal(n->stats.requests[WIRE_PUT], 3);
}

/* A GOSSIP from y whose clock reads `wall` (sealed then). */
static size_t gossip_at(uint8_t *buf, size_t cap, const struct sockaddr_in *y, uint64_t wall) {
    return gossip_from(buf, cap, y, &key_a, wall, 0, true, wall, NULL);
}

/* A forward that never came (lost), kept and sent again seconds later,
 * after the sender's clock was set back by as much: by the sender's clock
 * (its GOSSIP, the time of its newest forward) it was sent 200 ms before
 * that newest one, and a reordered datagram may be; it ran (dht-sim
 * --replayer W=1 R=1 seed 58: a PUT run again over the REMOVE after it).
 * By our clock it comes 6 s after that newest forward came: dropped. One
 * that is only reordered still runs. */
static void test_lost_forward_replayed_after_a_clock_step(void **state) {
    (void)state;
    struct sockaddr_in y = addr("10.0.0.2", 7000), self = addr("127.0.0.1", 7000);
    char key[16];
    forwarded_node(&y, key);
    uint8_t buf[1024], lost[1024];
    node_receive(n, &y, buf, gossip_at(buf, sizeof buf, &y, WALL0));
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 1, key, 1, WALL0));
    size_t ll = forward_dgram(lost, sizeof lost, &y, &self, n->incarnation, 2, key, 2, WALL0 + 100);
    fake.clock_ms += 300;
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 3, key, 3, WALL0 + 300));
    node_flush(n);
    assert_int_equal(n->stats.requests[WIRE_PUT], 2);
    for (int t = 0; t < 60; t++) { /* 6 s */
        fake.clock_ms += 100;
        node_tick(n);
    }
    /* y's clock was set back 6 s: it reads what it read at its last forward */
    node_receive(n, &y, buf, gossip_at(buf, sizeof buf, &y, WALL0 + 300));
    node_receive(n, &y, lost, ll);
    node_flush(n);
    assert_int_equal(n->stats.requests[WIRE_PUT], 2);
    assert_int_equal(n->stats.dropped_replay, 1);
    /* y's next two forwards, the second overtaken by the third */
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 5, key, 5, WALL0 + 310));
    fake.clock_ms += 5;
    node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 4, key, 4, WALL0 + 305));
    node_flush(n);
    assert_int_equal(n->stats.requests[WIRE_PUT], 4);
    assert_int_equal(n->stats.dropped_replay, 1);
}

/* A forward that never came, y's last to this node, kept and sent again
 * seconds later: above the window, nothing newer from y to tell it late
 * by our clock, so only y's clock could, as its GOSSIP says it reads. It
 * ran when that GOSSIP was a recording sent just before it (the
 * recording's wall clock is the forward's), or when y's clock had been set
 * back by about as long as the forward was kept. Dropped either way; y's
 * next forward runs. */
static void test_lost_last_forward_replayed_later(void **state) {
    (void)state;
    struct sockaddr_in y = addr("10.0.0.2", 7000), self = addr("127.0.0.1", 7000);
    for (int step = 0; step < 2; step++) {
        char key[16];
        forwarded_node(&y, key);
        uint8_t buf[1024], lost[1024], old[1024];
        size_t ol = gossip_at(old, sizeof old, &y, WALL0);
        node_receive(n, &y, old, ol);
        node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 1, key, 1, WALL0));
        fake.clock_ms += 100;
        size_t ll = forward_dgram(lost, sizeof lost, &y, &self, n->incarnation, 2, key, 2, WALL0 + 100);
        node_flush(n);
        assert_int_equal(n->stats.requests[WIRE_PUT], 1);
        for (int t = 1; t <= 60; t++) { /* 6 s, y gossiping every second */
            fake.clock_ms += 100;
            node_tick(n);
            if (t % 10 == 0) node_receive(n, &y, buf, gossip_at(buf, sizeof buf, &y, WALL0 + 100 + t * 100));
        }
        uint64_t y_wall = WALL0 + 6100;
        if (step) { /* y's clock is set back 6 s: it reads what it read at the lost forward */
            y_wall = WALL0 + 100;
            node_receive(n, &y, buf, gossip_at(buf, sizeof buf, &y, y_wall));
        } else {
            node_receive(n, &y, old, ol); /* the recording of y's first GOSSIP */
        }
        node_receive(n, &y, lost, ll);
        node_flush(n);
        assert_int_equal(n->stats.requests[WIRE_PUT], 1);
        assert_int_equal(n->stats.dropped_replay, 1);
        node_receive(n, &y, buf, forward_dgram(buf, sizeof buf, &y, &self, n->incarnation, 3, key, 3, y_wall + 5));
        node_flush(n);
        assert_int_equal(n->stats.requests[WIRE_PUT], 2);
        fake_node_free(n);
        n = NULL;
    }
}

/* --clients-from: a request from outside the networks given gets no answer
 * (its source may be spoofed: the answer would go to whoever it names),
 * one from inside is served; none given, anyone is. */
static void test_clients_from_only(void **state) {
    (void)state;
    fake_reset(1000, WALL0);
    fill_key(&key_a, 1);
    auth_net nets[1];
    assert_int_equal(auth_parse_cidr("10.0.0.0/8", &nets[0]), 0);
    for (int given = 0; given < 2; given++) {
        node_config cfg;
        node_defaults(&cfg);
        cfg.quiet = true;
        cfg.keys = &key_a;
        if (given) cfg.client_nets = nets, cfg.client_nets_n = 1;
        assert_non_null(n = fake_node(&cfg, 7000, 1 << 20));
        uint8_t buf[256], id[WIRE_ID_LEN] = {5};
        size_t len = wire_request(buf, sizeof buf, id, WIRE_IS_ALIVE, NULL, 0, NULL, 0, 0);
        struct sockaddr_in inside = addr("10.1.2.3", 5000), outside = addr("198.51.100.7", 53);
        fake.nsent = 0;
        node_receive(n, &outside, buf, len);
        node_flush(n);
        assert_int_equal(fake.nsent, given ? 0 : 1);
        assert_int_equal(n->stats.dropped_client, given ? 1 : 0);
        id[0] = 6;
        len = wire_request(buf, sizeof buf, id, WIRE_IS_ALIVE, NULL, 0, NULL, 0, 0);
        fake.nsent = 0;
        node_receive(n, &inside, buf, len);
        node_flush(n);
        assert_int_equal(fake.nsent, 1);
        assert_int_equal(fake.sent[0].to.sin_addr.s_addr, inside.sin_addr.s_addr);
        fake_node_free(n);
        n = NULL;
    }
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_opens_only_under_its_key),
        T(test_seal_follows_what_the_member_said),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_addresses),
        T(test_keyed_node_takes_only_sealed_messages),
        T(test_keyless_node_takes_peers_from_private_addresses_only),
        T(test_debug_needs_the_key),
        T(test_admin_commands_from_admin_addresses_only),
        T(test_forged_forward_reflects_nothing),
        T(test_replies_of_nodes_are_not_requests),
        T(test_replayed_ping_takes_no_member_off),
        T(test_replayed_forward_runs_once),
        T(test_lost_forward_replayed_after_a_clock_step),
        T(test_lost_last_forward_replayed_later),
        T(test_alias_from_a_replay_is_checked_again),
        T(test_own_ping_of_the_dead_replayed_makes_no_alias),
        T(test_clients_from_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
