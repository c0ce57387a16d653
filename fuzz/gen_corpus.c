/*
 * Writes the seed corpus of fuzz_wire: a few valid datagrams of each kind
 * (and one with a bad checksum). Usage: gen_corpus DIR. See fuzz/README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const char *dir;
static uint8_t buf[WIRE_MAX_DATAGRAM];
static const uint8_t ID[WIRE_ID_LEN] = {0xC0, 0xFF, 0xEE, 0x00, 0x01, 0x02, 0x03, 0x04,
                                        0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C};

static void put(const char *name, size_t n) {
    char path[4096];
    if (n == 0) {
        fprintf(stderr, "%s: encoding failed\n", name);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    const uint8_t vid[4] = {1, 2, 3, 4}, vpl[4] = {5, 6, 7, 8};
    put("vector", wire_pack_msg(buf, sizeof buf, vid, 4, vpl, 4, WIRE_KIND_CLIENT));
    put("put", wire_request(buf, sizeof buf, ID, WIRE_PUT, "user:1", 6, "hello world", 11, 3));
    put("get", wire_request(buf, sizeof buf, ID, WIRE_GET, "user:1", 6, NULL, 0, 0));
    put("remove", wire_request(buf, sizeof buf, ID, WIRE_REMOVE, "user:1", 6, NULL, 0, 0));
    put("is_alive", wire_request(buf, sizeof buf, ID, WIRE_IS_ALIVE, NULL, 0, NULL, 0, 0));
    put("membership_list",
        wire_request(buf, sizeof buf, ID, WIRE_GET_MEMBERSHIP_LIST, NULL, 0, NULL, 0, 0));

    KVResponse r = KVRESPONSE__INIT;
    r.value.data = (uint8_t *)"hello world";
    r.value.len = 11;
    r.version = 3;
    r.pid = 4242;
    put("response_ok", wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT));
    KVResponse o = KVRESPONSE__INIT;
    o.errcode = WIRE_EOVERLOAD;
    o.overloadwaittime = 200;
    o.membershipcount = 40;
    put("response_overload",
        wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &o.base, WIRE_KIND_CLIENT));

    Member from = MEMBER__INIT, m[3] = {MEMBER__INIT, MEMBER__INIT, MEMBER__INIT};
    Member *mp[3] = {&m[0], &m[1], &m[2]};
    from.ip = 0x0100007Fu; /* 127.0.0.1 */
    from.port = 7000;
    from.incarnation = 1700000000000ull;
    from.heartbeat = 12;
    for (int i = 0; i < 3; i++) {
        m[i] = from;
        m[i].port = (uint32_t)(7001 + i);
        m[i].state = (uint32_t)i;
    }
    Peer g = PEER__INIT;
    g.type = PEER_GOSSIP;
    g.from = &from;
    g.n_members = 3;
    g.members = mp;
    put("peer_gossip", wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &g.base, WIRE_KIND_PEER));

    KVRequest q = KVREQUEST__INIT;
    uint8_t qb[64];
    q.command = WIRE_PUT;
    q.key.data = (uint8_t *)"k";
    q.key.len = 1;
    q.value.data = (uint8_t *)"v";
    q.value.len = 1;
    Peer fw = PEER__INIT;
    fw.type = PEER_FORWARD;
    fw.from = &from;
    fw.client_ip = 0x0100007Fu;
    fw.client_port = 50000;
    fw.request.data = qb;
    fw.request.len = kvrequest__pack(&q, qb);
    put("peer_forward", wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &fw.base, WIRE_KIND_PEER));

    Record rec = RECORD__INIT, *recs[1] = {&rec};
    rec.key.data = (uint8_t *)"k";
    rec.key.len = 1;
    rec.value.data = (uint8_t *)"v";
    rec.value.len = 1;
    rec.stamp = 0x0001020304050607ull;
    Peer w = PEER__INIT;
    w.type = PEER_WRITE;
    w.from = &from;
    w.n_records = 1;
    w.records = recs;
    w.hint_ip = 0x0100007Fu;
    w.hint_port = 7005;
    w.flags = PEER_FLAG_REMOVE;
    put("peer_write", wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &w.base, WIRE_KIND_PEER));

    uint64_t dg[4] = {1, 2, 0xFFFFFFFFFFFFFFFFull, 0};
    Peer d = PEER__INIT;
    d.type = PEER_DIGEST;
    d.from = &from;
    d.n_digests = 4;
    d.digests = dg;
    d.bucket = 17;
    put("peer_digest", wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &d.base, WIRE_KIND_PEER));

    size_t n = wire_request(buf, sizeof buf, ID, WIRE_GET, "user:1", 6, NULL, 0, 0);
    buf[n - 1] ^= 0x55; /* the last byte is the checksum's */
    put("bad_checksum", n);
    return 0;
}
