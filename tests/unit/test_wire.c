/* Unit tests for wire: checksums, round trips, malformed and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cpuid.h>
#include <zlib.h>

#include "wire.h"

static uint8_t buf[WIRE_MAX_DATAGRAM];
static uint8_t big[2 * WIRE_MAX_DATAGRAM];
static wire_arena *arena;

static const uint8_t ID[WIRE_ID_LEN] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                        0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F};

static uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int teardown(void **state) {
    (void)state;
    wire_reset(arena);
    return 0;
}

/* The seed's test vector. */
static void test_crc_vector(void **state) {
    (void)state;
    const uint8_t id[4] = {1, 2, 3, 4}, pl[4] = {5, 6, 7, 8}, all[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(wire_crc(id, 4, pl, 4), 1070237893u);
    /* CRC of the concatenation, however it is split. */
    assert_int_equal(wire_crc(all, 8, NULL, 0), 1070237893u);
    assert_int_equal(wire_crc(NULL, 0, all, 8), 1070237893u);
    assert_int_equal(wire_crc(all, 3, all + 3, 5), 1070237893u);
    assert_int_equal(wire_crc(NULL, 0, NULL, 0), 0u);
    /* CRC-32/IEEE check value. */
    assert_int_equal(wire_crc("123456789", 9, NULL, 0), 0xCBF43926u);
}

/* wire_crc (ISA-L) is zlib's crc32 for every length and split, unaligned
 * starts included: the checksum other clients compute with zlib. */
static void test_crc_matches_zlib(void **state) {
    (void)state;
    uint64_t s = 42;
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)xorshift(&s);
    for (size_t len = 0; len < 3000; len += 1 + len / 8)
        for (size_t off = 0; off < 4; off++)
            for (size_t cut = 0; cut <= len; cut += 1 + len / 3) {
                uLong z = crc32(crc32(0L, Z_NULL, 0), big + off, (uInt)len);
                assert_int_equal(wire_crc(big + off, cut, big + off + cut, len - cut), (uint32_t)z);
            }
    uLong z = crc32(crc32(0L, Z_NULL, 0), big, WIRE_MAX_DATAGRAM);
    assert_int_equal(wire_crc(big, 16, big + 16, WIRE_MAX_DATAGRAM - 16), (uint32_t)z);
}

/* Msg is encoded and decoded by hand (wire.c): the bytes are msg__pack's,
 * and what msg__unpack accepts is accepted, with the same fields, over
 * random Msgs and random corruptions of them (unknown fields, cut,
 * flipped bytes). */
static void test_msg_codec_matches_protobuf_c(void **state) {
    (void)state;
    uint64_t s = 7;
    static uint8_t payload[3000], enc[4000], ref[4000];
    for (int iter = 0; iter < 20000; iter++) {
        size_t idlen = xorshift(&s) % (WIRE_ID_LEN + 3), plen = xorshift(&s) % 300;
        if (iter % 7 == 0) plen = 0;
        uint32_t kind = (uint32_t)(xorshift(&s) % 4);
        if (iter % 11 == 0) kind = (uint32_t)xorshift(&s);
        uint8_t id[WIRE_ID_LEN + 2];
        for (size_t i = 0; i < idlen; i++) id[i] = (uint8_t)xorshift(&s);
        for (size_t i = 0; i < plen; i++) payload[i] = (uint8_t)xorshift(&s);
        Msg m = MSG__INIT;
        m.messageid.data = id;
        m.messageid.len = idlen;
        m.payload.data = payload;
        m.payload.len = plen;
        m.checksum = wire_crc(id, idlen, payload, plen);
        m.kind = kind;
        size_t rn = msg__pack(&m, ref);
        size_t n = wire_pack_msg(enc, sizeof enc, id, idlen, payload, plen, kind);
        assert_int_equal(n, rn);
        assert_memory_equal(enc, ref, n);
        /* corrupt: append an unknown field, cut, or flip a byte */
        switch (xorshift(&s) % 4) {
        case 0: enc[n++] = 0x7A, enc[n++] = 3, enc[n++] = 1, enc[n++] = 2, enc[n++] = 3; break;
        case 1: n = n ? xorshift(&s) % n : 0; break;
        case 2: if (n) enc[xorshift(&s) % n] ^= (uint8_t)(1 + xorshift(&s) % 255); break;
        default: break;
        }
        wire_frame f;
        wire_reset(arena);
        int rc = wire_unpack_msg(arena, enc, n, &f);
        Msg *u = msg__unpack(NULL, n, enc);
        if (!u) {
            assert_int_equal(rc, WIRE_EMALFORMED);
            continue;
        }
        assert_int_equal(rc == WIRE_EMALFORMED, 0);
        assert_int_equal(f.idlen, u->messageid.len);
        assert_int_equal(f.plen, u->payload.len);
        assert_int_equal(f.kind, u->kind);
        if (f.idlen) assert_memory_equal(f.id, u->messageid.data, f.idlen);
        if (f.plen) assert_memory_equal(f.payload, u->payload.data, f.plen);
        uint32_t crc = wire_crc(u->messageid.data, u->messageid.len, u->payload.data, u->payload.len);
        assert_int_equal(rc == WIRE_ECHECKSUM, u->checksum != crc);
        msg__free_unpacked(u, NULL);
    }
}

/* The vector's datagram carries checkSum = 1070237893 as fixed64. */
static void test_pack_msg_carries_crc(void **state) {
    (void)state;
    const uint8_t id[4] = {1, 2, 3, 4}, pl[4] = {5, 6, 7, 8};
    size_t n = wire_pack_msg(buf, sizeof buf, id, 4, pl, 4, WIRE_KIND_CLIENT);
    assert_true(n > 0);
    Msg *m = msg__unpack(NULL, n, buf);
    assert_non_null(m);
    assert_true(m->checksum == 1070237893u);
    assert_int_equal(m->kind, 0);
    msg__free_unpacked(m, NULL);
    wire_frame f;
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
    assert_int_equal(f.idlen, 4);
    assert_memory_equal(f.id, id, 4);
    assert_int_equal(f.plen, 4);
    assert_memory_equal(f.payload, pl, 4);
    assert_int_equal(f.kind, WIRE_KIND_CLIENT);
}

static void test_request_round_trip(void **state) {
    (void)state;
    uint8_t key[WIRE_MAX_KEY], val[WIRE_MAX_VALUE];
    for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(0xA0 + i);
    for (size_t i = 0; i < sizeof val; i++) val[i] = (uint8_t)(i * 31);
    const uint32_t cmds[] = {WIRE_PUT, WIRE_GET, WIRE_REMOVE, WIRE_SHUTDOWN, WIRE_WIPEOUT,
                             WIRE_IS_ALIVE, WIRE_GET_PID, WIRE_GET_MEMBERSHIP_COUNT,
                             WIRE_GET_MEMBERSHIP_LIST};
    for (size_t c = 0; c < sizeof cmds / sizeof *cmds; c++) {
        size_t vlen = cmds[c] == WIRE_PUT ? sizeof val : 0;
        int32_t version = c & 1 ? -7 : 123456;
        size_t n = wire_request(buf, sizeof buf, ID, cmds[c], key, sizeof key, val, vlen, version);
        assert_true(n > 0);
        wire_frame f;
        assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
        assert_int_equal(f.idlen, WIRE_ID_LEN);
        assert_memory_equal(f.id, ID, WIRE_ID_LEN);
        assert_int_equal(f.kind, WIRE_KIND_CLIENT);
        KVRequest *r = wire_unpack_request(arena, f.payload, f.plen);
        assert_non_null(r);
        assert_int_equal(r->command, cmds[c]);
        assert_int_equal(r->key.len, sizeof key);
        assert_memory_equal(r->key.data, key, sizeof key);
        assert_int_equal(r->value.len, vlen);
        if (vlen) assert_memory_equal(r->value.data, val, vlen);
        assert_int_equal(r->version, version);
        wire_reset(arena);
    }
}

static void test_response_round_trip(void **state) {
    (void)state;
    KVResponse r = KVRESPONSE__INIT;
    r.errcode = WIRE_EOVERLOAD;
    r.value.data = (uint8_t *)"the value";
    r.value.len = 9;
    r.pid = 4242;
    r.version = -1;
    r.overloadwaittime = 250;
    r.membershipcount = 40;
    size_t n = wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT);
    assert_true(n > 0);
    wire_frame f;
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
    assert_memory_equal(f.id, ID, WIRE_ID_LEN);
    KVResponse *d = wire_unpack_response(arena, f.payload, f.plen);
    assert_non_null(d);
    assert_int_equal(d->errcode, WIRE_EOVERLOAD);
    assert_int_equal(d->value.len, 9);
    assert_memory_equal(d->value.data, "the value", 9);
    assert_int_equal(d->pid, 4242);
    assert_int_equal(d->version, -1);
    assert_int_equal(d->overloadwaittime, 250);
    assert_int_equal(d->membershipcount, 40);

    /* An all-default response is an empty payload and still round trips. */
    KVResponse z = KVRESPONSE__INIT;
    n = wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &z.base, WIRE_KIND_CLIENT);
    assert_true(n > 0);
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
    assert_int_equal(f.plen, 0);
    d = wire_unpack_response(arena, f.payload, f.plen);
    assert_non_null(d);
    assert_int_equal(d->errcode, 0);
    assert_int_equal(d->value.len, 0);
}

static void test_peer_round_trip(void **state) {
    (void)state;
    Member from = MEMBER__INIT, m1 = MEMBER__INIT, m2 = MEMBER__INIT;
    from.ip = 0x0100007Fu;
    from.port = 7000;
    from.incarnation = 1700000000123ull;
    from.heartbeat = 99;
    m1 = from;
    m1.port = 7001;
    m1.state = 1;
    m2 = from;
    m2.port = 7002;
    m2.state = 2;
    m2.heartbeat = UINT64_MAX;
    Member *members[2] = {&m1, &m2};
    Record rec = RECORD__INIT;
    rec.key.data = (uint8_t *)"k";
    rec.key.len = 1;
    rec.value.data = (uint8_t *)"vv";
    rec.value.len = 2;
    rec.version = -3;
    rec.stamp = 0x0123456789ABCDEFull;
    rec.tombstone = 1;
    Record *records[1] = {&rec};
    uint64_t digests[3] = {1, UINT64_MAX, 0};
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &from;
    p.n_members = 2;
    p.members = members;
    p.client_ip = 0x0A000001u;
    p.client_port = 65535;
    p.request.data = (uint8_t *)"req";
    p.request.len = 3;
    p.n_records = 1;
    p.records = records;
    p.key.data = (uint8_t *)"key";
    p.key.len = 3;
    p.err = WIRE_ENOKEY;
    p.n_digests = 3;
    p.digests = digests;
    p.bucket = 255;
    p.hint_ip = 0x0B000001u;
    p.hint_port = 7039;
    p.flags = PEER_FLAG_REMOVE;
    size_t n = wire_pack(buf, sizeof buf, ID, WIRE_ID_LEN, &p.base, WIRE_KIND_PEER);
    assert_true(n > 0);

    wire_frame f;
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
    assert_int_equal(f.kind, WIRE_KIND_PEER);
    Peer *d = wire_unpack_peer(arena, f.payload, f.plen);
    assert_non_null(d);
    assert_int_equal(d->type, PEER_GOSSIP);
    assert_non_null(d->from);
    assert_int_equal(d->from->ip, from.ip);
    assert_int_equal(d->from->port, 7000);
    assert_true(d->from->incarnation == from.incarnation);
    assert_true(d->from->heartbeat == 99);
    assert_int_equal(d->n_members, 2);
    assert_int_equal(d->members[0]->port, 7001);
    assert_int_equal(d->members[0]->state, 1);
    assert_int_equal(d->members[1]->port, 7002);
    assert_true(d->members[1]->heartbeat == UINT64_MAX);
    assert_int_equal(d->client_ip, 0x0A000001u);
    assert_int_equal(d->client_port, 65535);
    assert_int_equal(d->request.len, 3);
    assert_memory_equal(d->request.data, "req", 3);
    assert_int_equal(d->n_records, 1);
    assert_int_equal(d->records[0]->key.len, 1);
    assert_memory_equal(d->records[0]->value.data, "vv", 2);
    assert_int_equal(d->records[0]->version, -3);
    assert_true(d->records[0]->stamp == rec.stamp);
    assert_true(d->records[0]->tombstone);
    assert_int_equal(d->key.len, 3);
    assert_int_equal(d->err, WIRE_ENOKEY);
    assert_int_equal(d->n_digests, 3);
    assert_memory_equal(d->digests, digests, sizeof digests);
    assert_int_equal(d->bucket, 255);
    assert_int_equal(d->hint_ip, 0x0B000001u);
    assert_int_equal(d->hint_port, 7039);
    assert_int_equal(d->flags, PEER_FLAG_REMOVE);
}

/* Any change to the ID, payload or checksum gives WIRE_ECHECKSUM. */
static void test_bad_checksum_detected(void **state) {
    (void)state;
    uint8_t payload[64];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)i;
    Msg m = MSG__INIT;
    m.messageid.data = (uint8_t *)ID;
    m.messageid.len = WIRE_ID_LEN;
    m.payload.data = payload;
    m.payload.len = sizeof payload;
    m.checksum = wire_crc(ID, WIRE_ID_LEN, payload, sizeof payload) ^ 1;
    size_t n = msg__pack(&m, buf);
    wire_frame f;
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), WIRE_ECHECKSUM);

    /* High bits set: the CRC is 32 bits, the field 64. */
    m.checksum = wire_crc(ID, WIRE_ID_LEN, payload, sizeof payload) | (1ull << 32);
    n = msg__pack(&m, buf);
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), WIRE_ECHECKSUM);

    /* Checksum absent. */
    m.checksum = 0;
    n = msg__pack(&m, buf);
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), WIRE_ECHECKSUM);

    /* Flip each bit inside the ID and payload bytes of a good datagram:
     * still well formed, checksum wrong. */
    n = wire_pack_msg(buf, sizeof buf, ID, WIRE_ID_LEN, payload, sizeof payload, WIRE_KIND_CLIENT);
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
    /* Decoded bytes live in the arena: find where they sit in buf. */
    const uint8_t *idp = memmem(buf, n, ID, WIRE_ID_LEN);
    const uint8_t *plp = memmem(buf, n, payload, sizeof payload);
    assert_non_null(idp);
    assert_non_null(plp);
    size_t id_at = (size_t)(idp - buf), pl_at = (size_t)(plp - buf);
    for (size_t i = 0; i < WIRE_ID_LEN + sizeof payload; i++)
        for (int b = 0; b < 8; b++) {
            size_t at = i < WIRE_ID_LEN ? id_at + i : pl_at + (i - WIRE_ID_LEN);
            buf[at] ^= (uint8_t)(1u << b);
            assert_int_equal(wire_unpack_msg(arena, buf, n, &f), WIRE_ECHECKSUM);
            buf[at] ^= (uint8_t)(1u << b);
            wire_reset(arena);
        }
    assert_int_equal(wire_unpack_msg(arena, buf, n, &f), 0);
}

/* Every proper prefix of a client datagram is rejected (the checksum is its
 * last field), and an empty datagram never crashes. */
static void test_truncated_rejected(void **state) {
    (void)state;
    size_t n = wire_request(buf, sizeof buf, ID, WIRE_PUT, "key", 3, "value", 5, 1);
    assert_true(n > 0);
    wire_frame f;
    for (size_t len = 1; len < n; len++) {
        int rc = wire_unpack_msg(arena, buf, len, &f);
        assert_true(rc == WIRE_EMALFORMED || rc == WIRE_ECHECKSUM);
        wire_reset(arena);
    }
    /* Zero bytes decode as an all-default Msg (CRC of nothing is 0); the
     * caller must reject its empty ID. */
    int rc = wire_unpack_msg(arena, buf, 0, &f);
    if (rc == 0) assert_int_equal(f.idlen, 0);
    else assert_int_equal(rc, WIRE_EMALFORMED);

    /* Truncated payloads. */
    KVRequest r = KVREQUEST__INIT;
    r.command = WIRE_PUT;
    r.key.data = (uint8_t *)"key";
    r.key.len = 3;
    r.value.data = (uint8_t *)"value";
    r.value.len = 5;
    uint8_t p[64];
    size_t plen = kvrequest__pack(&r, p);
    size_t rejected = 0;
    for (size_t len = 0; len < plen; len++) {
        KVRequest *d = wire_unpack_request(arena, p, len);
        rejected += d == NULL;
        wire_reset(arena);
    }
    assert_true(rejected > 0);
    /* Cut inside the value's bytes: the length prefix overruns the input. */
    assert_null(wire_unpack_request(arena, p, plen - 1));
    assert_null(wire_unpack_response(arena, p, plen - 1));
    assert_null(wire_unpack_peer(arena, p, plen - 1));
}

static void test_garbage_rejected(void **state) {
    (void)state;
    wire_frame f;
    uint8_t ff[32];
    memset(ff, 0xFF, sizeof ff); /* an unterminated varint tag */
    assert_int_equal(wire_unpack_msg(arena, ff, sizeof ff, &f), WIRE_EMALFORMED);
    assert_null(wire_unpack_request(arena, ff, sizeof ff));
    assert_null(wire_unpack_response(arena, ff, sizeof ff));
    assert_null(wire_unpack_peer(arena, ff, sizeof ff));
    const uint8_t field0[] = {0x00, 0x01};           /* field number 0 */
    const uint8_t badwire[] = {0x0F, 0x01};          /* wire type 7 */
    const uint8_t overlong[] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}; /* 4 GiB ID */
    const uint8_t idtype[] = {0x08, 0x01};           /* messageID as a varint */
    assert_int_equal(wire_unpack_msg(arena, field0, sizeof field0, &f), WIRE_EMALFORMED);
    assert_int_equal(wire_unpack_msg(arena, badwire, sizeof badwire, &f), WIRE_EMALFORMED);
    assert_int_equal(wire_unpack_msg(arena, overlong, sizeof overlong, &f), WIRE_EMALFORMED);
    assert_int_equal(wire_unpack_msg(arena, idtype, sizeof idtype, &f), WIRE_EMALFORMED);
    const char *text = "GET /key HTTP/1.1\r\n\r\n";
    int rc = wire_unpack_msg(arena, (const uint8_t *)text, strlen(text), &f);
    assert_true(rc == WIRE_EMALFORMED || rc == WIRE_ECHECKSUM);
}

static void check_unpack_all(const uint8_t *p, size_t len) {
    wire_frame f;
    int rc = wire_unpack_msg(arena, p, len, &f);
    assert_true(rc == 0 || rc == WIRE_EMALFORMED || rc == WIRE_ECHECKSUM);
    if (rc != WIRE_EMALFORMED) {
        (void)wire_unpack_request(arena, f.payload, f.plen);
        (void)wire_unpack_response(arena, f.payload, f.plen);
        (void)wire_unpack_peer(arena, f.payload, f.plen);
    }
    (void)wire_unpack_request(arena, p, len);
    (void)wire_unpack_response(arena, p, len);
    (void)wire_unpack_peer(arena, p, len);
}

/* 100k random buffers of random lengths up to 2000: errors, never a crash
 * (run it under ASan), and the arena is reset each time. */
static void test_random_bytes_never_crash(void **state) {
    (void)state;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    size_t malformed = 0;
    for (int t = 0; t < 100000; t++) {
        size_t len = (size_t)(xorshift(&s) % 2001);
        for (size_t i = 0; i < len; i++) big[i] = (uint8_t)xorshift(&s);
        wire_reset(arena);
        wire_frame f;
        int rc = wire_unpack_msg(arena, big, len, &f);
        assert_true(rc == 0 || rc == WIRE_EMALFORMED || rc == WIRE_ECHECKSUM);
        malformed += rc == WIRE_EMALFORMED;
        check_unpack_all(big, len);
    }
    assert_true(malformed > 90000);
    wire_reset(arena);
}

/* Mutations of valid datagrams reach deeper than random bytes: flip, insert,
 * delete and overwrite bytes, then decode everything. */
static void test_mutated_datagrams_never_crash(void **state) {
    (void)state;
    uint8_t seed[3][512];
    size_t seedlen[3];
    seedlen[0] =
        wire_request(seed[0], sizeof seed[0], ID, WIRE_PUT, "some-key", 8, "a value", 7, 5);
    KVResponse r = KVRESPONSE__INIT;
    r.errcode = WIRE_OK;
    r.value.data = (uint8_t *)"abc";
    r.value.len = 3;
    r.pid = 77;
    seedlen[1] = wire_pack(seed[1], sizeof seed[1], ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT);
    Member m = MEMBER__INIT, *ms[1] = {&m};
    m.ip = 0x0100007Fu;
    m.port = 7000;
    Peer p = PEER__INIT;
    p.type = PEER_GOSSIP;
    p.from = &m;
    p.n_members = 1;
    p.members = ms;
    seedlen[2] = wire_pack(seed[2], sizeof seed[2], ID, WIRE_ID_LEN, &p.base, WIRE_KIND_PEER);
    uint64_t s = 42;
    size_t ok = 0;
    for (int t = 0; t < 100000; t++) {
        int which = t % 3;
        size_t len = seedlen[which];
        memcpy(big, seed[which], len);
        int edits = 1 + (int)(xorshift(&s) % 4);
        for (int e = 0; e < edits && len; e++) {
            size_t at = (size_t)(xorshift(&s) % len);
            switch (xorshift(&s) % 4) {
            case 0: big[at] ^= (uint8_t)(1u << (xorshift(&s) % 8)); break;
            case 1: big[at] = (uint8_t)xorshift(&s); break;
            case 2: memmove(big + at, big + at + 1, len - at - 1); len--; break;
            default:
                memmove(big + at + 1, big + at, len - at);
                big[at] = (uint8_t)xorshift(&s);
                len++;
                break;
            }
        }
        wire_reset(arena);
        wire_frame f;
        ok += wire_unpack_msg(arena, big, len, &f) == 0;
        check_unpack_all(big, len);
    }
    printf("wire: %zu of 100000 mutated datagrams still decoded with a good checksum\n", ok);
    wire_reset(arena);
}

/* The arena holds the worst case: a datagram-sized Peer made only of empty
 * sub-messages (one per two bytes). Without wire_reset it runs out, and
 * unpack fails cleanly instead of crashing. */
static void test_arena_worst_case(void **state) {
    (void)state;
    const uint8_t tags[] = {0x1A /* members */, 0x3A /* records */};
    for (size_t t = 0; t < sizeof tags; t++) {
        size_t len = (WIRE_MAX_DATAGRAM - 64) & ~(size_t)1;
        for (size_t i = 0; i < len; i += 2) {
            big[i] = tags[t];
            big[i + 1] = 0;
        }
        wire_reset(arena);
        Peer *d = wire_unpack_peer(arena, big, len);
        assert_non_null(d);
        assert_int_equal(t ? d->n_records : d->n_members, len / 2);
        int failed = 0;
        for (int k = 0; k < 10 && !failed; k++) failed = wire_unpack_peer(arena, big, len) == NULL;
        assert_true(failed);
        wire_reset(arena);
        assert_non_null(wire_unpack_peer(arena, big, len));
        wire_reset(arena);
    }
}

/* Encoders return 0 rather than write past cap or build an oversized
 * datagram; cap equal to the size is enough. */
static void test_oversized_pack_returns_zero(void **state) {
    (void)state;
    static uint8_t huge[WIRE_MAX_DATAGRAM + 100];
    memset(huge, 'v', sizeof huge);
    KVResponse r = KVRESPONSE__INIT;
    r.value.data = huge;
    r.value.len = sizeof huge;
    assert_int_equal(wire_pack(big, sizeof big, ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT), 0);
    assert_int_equal(wire_request(big, sizeof big, ID, WIRE_PUT, "k", 1, huge, sizeof huge, 0), 0);

    r.value.len = 100;
    size_t n = wire_pack(big, sizeof big, ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT);
    assert_true(n > 100);
    memset(buf, 0xEE, sizeof buf);
    assert_int_equal(wire_pack(buf, n - 1, ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT), 0);
    assert_int_equal(buf[0], 0xEE); /* nothing written */
    assert_int_equal(wire_pack(buf, n, ID, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT), n);
    assert_memory_equal(buf, big, n);
    n = wire_pack_msg(big, sizeof big, ID, WIRE_ID_LEN, huge, 100, 0);
    assert_true(n > 100);
    assert_int_equal(wire_pack_msg(buf, n - 1, ID, WIRE_ID_LEN, huge, 100, 0), 0);
    assert_int_equal(wire_pack_msg(buf, n, ID, WIRE_ID_LEN, huge, 100, 0), n);
    assert_int_equal(wire_pack_msg(buf, 0, ID, WIRE_ID_LEN, huge, 0, 0), 0);
    assert_int_equal(wire_request(buf, 10, ID, WIRE_GET, "k", 1, NULL, 0, 0), 0);
}

static void test_batch_frames(void **state) {
    (void)state;
    uint8_t v[10];
    assert_int_equal(wire_put_varint(v, 3), 1);
    assert_int_equal(v[0], 3);
    assert_int_equal(wire_put_varint(v, 200), 2);
    assert_int_equal(v[0], 0xC8);
    assert_int_equal(v[1], 0x01);
    assert_int_equal(wire_put_varint(v, UINT64_MAX), 10);
    /* two frames: 3 bytes, then 200 bytes (a two-byte varint) */
    uint8_t frames[1 + 3 + 2 + 200];
    frames[0] = 3;
    memset(frames + 1, 'a', 3);
    frames[4] = 0xC8; /* 200 = 0x48 | 0x80, then 0x01 */
    frames[5] = 0x01;
    memset(frames + 6, 'b', 200);
    const uint8_t *p = frames, *end = frames + sizeof frames, *frame;
    size_t len;
    assert_int_equal(wire_batch_next(&p, end, &frame, &len), 1);
    assert_ptr_equal(frame, frames + 1);
    assert_int_equal(len, 3);
    assert_int_equal(wire_batch_next(&p, end, &frame, &len), 1);
    assert_ptr_equal(frame, frames + 6);
    assert_int_equal(len, 200);
    assert_int_equal(wire_batch_next(&p, end, &frame, &len), 0);

    /* a frame running past the end, an empty frame, a varint cut short,
     * a varint longer than 64 bits */
    p = frames;
    assert_int_equal(wire_batch_next(&p, frames + 3, &frame, &len), -1);
    uint8_t zero[2] = {0, 1};
    p = zero;
    assert_int_equal(wire_batch_next(&p, zero + 2, &frame, &len), -1);
    uint8_t cut[1] = {0x80};
    p = cut;
    assert_int_equal(wire_batch_next(&p, cut + 1, &frame, &len), -1);
    uint8_t huge[11];
    memset(huge, 0xFF, sizeof huge);
    p = huge;
    assert_int_equal(wire_batch_next(&p, huge + sizeof huge, &frame, &len), -1);
}

/* The hand coder of Peer (wire.c) writes protobuf-c's bytes, and what it
 * decodes packs with protobuf-c to the bytes it came from: every field it
 * takes, extreme values, a negative version (a 10-byte varint), several
 * records; a Peer with a field it does not take goes to protobuf-c. */
static void test_peer_hand_coder_matches_protobuf_c(void **state) {
    (void)state;
    static uint8_t a[WIRE_MAX_DATAGRAM], b[WIRE_MAX_DATAGRAM];
    uint8_t key[32], val[300];
    memset(key, 'k', sizeof key);
    memset(val, 0xC3, sizeof val);
    Record r1 = RECORD__INIT, r2 = RECORD__INIT, r3 = RECORD__INIT;
    r1.key = (ProtobufCBinaryData){sizeof key, key};
    r1.value = (ProtobufCBinaryData){sizeof val, val};
    r1.version = -7;
    r1.stamp = UINT64_MAX;
    r2.key = (ProtobufCBinaryData){1, key};
    r2.tombstone = 1;
    r2.stamp = 1;
    r2.version = INT32_MAX;
    Record *recs[3] = {&r1, &r2, &r3}; /* r3: all defaults, an empty record */
    Member from = MEMBER__INIT;
    uint64_t digests[2] = {1, UINT64_MAX};
    for (int k = 0; k < 7; k++) {
        Peer p = PEER__INIT;
        p.type = k == 0 ? PEER_WRITE : k == 1 ? PEER_WRITE_ACK : k == 2 ? PEER_READ_REPLY : 300;
        p.n_records = k == 0 ? 1 : k == 2 ? 3 : 0;
        p.records = recs;
        if (k == 1) p.err = UINT32_MAX, p.stamp = 1ull << 63;
        if (k == 3) p.key = (ProtobufCBinaryData){5, key}, p.hint_ip = 0x7F000001,
                    p.hint_port = 65535, p.flags = 1, p.bucket = 255, p.gc_floor = 42;
        if (k == 4) p.from = &from;                      /* protobuf-c's */
        if (k == 5) p.n_digests = 2, p.digests = digests; /* protobuf-c's */
        if (k == 6) p.placement = 1u << 24 | 3u << 16 | 64; /* protobuf-c's (fuzz_wire found it dropped) */
        size_t n = protobuf_c_message_get_packed_size(&p.base);
        protobuf_c_message_pack(&p.base, a);
        assert_int_equal(wire_peer_pack_payload(&p, b, sizeof b), n);
        assert_memory_equal(a, b, n);
        assert_int_equal(wire_peer_pack_payload(&p, b, n ? n - 1 : 0), n ? SIZE_MAX : 0);
        wire_reset(arena);
        Peer *d = wire_unpack_peer(arena, a, n);
        assert_non_null(d);
        assert_int_equal(protobuf_c_message_get_packed_size(&d->base), n);
        protobuf_c_message_pack(&d->base, b);
        assert_memory_equal(a, b, n);
        assert_int_equal(d->n_records, p.n_records);
        if (k == 0) {
            assert_int_equal(d->records[0]->version, -7);
            assert_true(d->records[0]->stamp == UINT64_MAX);
        }
    }
    /* one field twice: the last one wins, as in protobuf-c */
    const uint8_t twice[] = {0x08, 0x01, 0x48, 0x05, 0x08, 0x02, 0x42, 0x01, 'a', 0x42, 0x01, 'b'};
    wire_reset(arena);
    Peer *d = wire_unpack_peer(arena, twice, sizeof twice);
    assert_non_null(d);
    assert_int_equal(d->type, 2);
    assert_int_equal(d->err, 5);
    assert_int_equal(d->key.len, 1);
    assert_int_equal(d->key.data[0], 'b');
    /* a known field of another wire type, a tag or a length prefix of more
     * than 5 bytes: refused, as by protobuf-c (fuzz_wire found the last) */
    const uint8_t wrong[] = {0x0D, 1, 2, 3, 4};
    const uint8_t long_tag[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01};
    const uint8_t long_len[] = {0x68, 0x00, 0x3A, 0x80, 0x80, 0x80, 0x80, 0x80,
                                0x80, 0x80, 0x80, 0x80, 0x02};
    const uint8_t *bad[] = {wrong, long_tag, long_len};
    size_t badlen[] = {sizeof wrong, sizeof long_tag, sizeof long_len};
    for (int i = 0; i < 3; i++) {
        assert_null(peer__unpack(NULL, badlen[i], bad[i]));
        assert_null(wire_unpack_peer(arena, bad[i], badlen[i]));
    }
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(wire_err_name(WIRE_OK), "ok");
    assert_string_equal(wire_err_name(WIRE_ENOKEY), "no such key");
    assert_string_equal(wire_err_name(WIRE_ENOSPACE), "out of space");
    assert_string_equal(wire_err_name(WIRE_EOVERLOAD), "temporary overload");
    assert_string_equal(wire_err_name(WIRE_EINTERNAL), "internal failure");
    assert_string_equal(wire_err_name(WIRE_EUNKNOWN), "unknown command");
    assert_string_equal(wire_err_name(WIRE_EBADKEY), "invalid key");
    assert_string_equal(wire_err_name(WIRE_EBADVALUE), "invalid value");
    assert_string_equal(wire_err_name(0x08), "unknown error");
    assert_string_equal(wire_err_name(UINT32_MAX), "unknown error");
    assert_string_equal(wire_cmd_name(WIRE_PUT), "PUT");
    assert_string_equal(wire_cmd_name(WIRE_GET), "GET");
    assert_string_equal(wire_cmd_name(WIRE_REMOVE), "REMOVE");
    assert_string_equal(wire_cmd_name(WIRE_SHUTDOWN), "SHUTDOWN");
    assert_string_equal(wire_cmd_name(WIRE_WIPEOUT), "WIPEOUT");
    assert_string_equal(wire_cmd_name(WIRE_IS_ALIVE), "IS_ALIVE");
    assert_string_equal(wire_cmd_name(WIRE_GET_PID), "GET_PID");
    assert_string_equal(wire_cmd_name(WIRE_GET_MEMBERSHIP_COUNT), "GET_MEMBERSHIP_COUNT");
    assert_string_equal(wire_cmd_name(WIRE_GET_MEMBERSHIP_LIST), "GET_MEMBERSHIP_LIST");
    for (uint32_t c = 0; c < 300; c++) {
        assert_non_null(wire_cmd_name(c));
        assert_non_null(wire_err_name(c));
    }
    assert_string_equal(wire_cmd_name(0), "UNKNOWN");
    assert_string_equal(wire_cmd_name(0x09), "UNKNOWN");
}

/* wire_crc leaves the vector registers' upper halves clean: ISA-L's
 * AVX-512 CRC returns with them in use, and every SSE instruction after it
 * then paid for that (wire.c, clear_upper). XGETBV with ECX = 1 reads
 * which state components are in use: bit 2, the upper halves of ymm0-15;
 * bit 6, those of zmm0-15. Skipped where the CPU cannot tell. */
static void test_crc_leaves_vector_state_clean(void **state) {
    (void)state;
    unsigned a, b, c, d;
    if (!__builtin_cpu_supports("avx") || !__get_cpuid_count(0xd, 1, &a, &b, &c, &d) ||
        !(a & 4)) {
        print_message("no XGETBV of the state in use here: skipped\n");
        skip();
    }
    static uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7);
    uint32_t crc = wire_crc(data, sizeof data, data, 100), lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(1));
    assert_int_equal(crc, crc32(crc32(0, data, sizeof data), data, 100));
    assert_int_equal(lo & (1u << 2 | 1u << 6), 0);
    (void)hi;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_crc_vector, teardown),
        cmocka_unit_test_teardown(test_crc_matches_zlib, teardown),
        cmocka_unit_test_teardown(test_crc_leaves_vector_state_clean, teardown),
        cmocka_unit_test_teardown(test_msg_codec_matches_protobuf_c, teardown),
        cmocka_unit_test_teardown(test_pack_msg_carries_crc, teardown),
        cmocka_unit_test_teardown(test_request_round_trip, teardown),
        cmocka_unit_test_teardown(test_response_round_trip, teardown),
        cmocka_unit_test_teardown(test_peer_round_trip, teardown),
        cmocka_unit_test_teardown(test_bad_checksum_detected, teardown),
        cmocka_unit_test_teardown(test_truncated_rejected, teardown),
        cmocka_unit_test_teardown(test_garbage_rejected, teardown),
        cmocka_unit_test_teardown(test_random_bytes_never_crash, teardown),
        cmocka_unit_test_teardown(test_mutated_datagrams_never_crash, teardown),
        cmocka_unit_test_teardown(test_arena_worst_case, teardown),
        cmocka_unit_test_teardown(test_oversized_pack_returns_zero, teardown),
        cmocka_unit_test_teardown(test_batch_frames, teardown),
        cmocka_unit_test_teardown(test_peer_hand_coder_matches_protobuf_c, teardown),
        cmocka_unit_test_teardown(test_names, teardown),
    };
    arena = wire_arena_new();
    if (!arena) return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    wire_arena_free(arena);
    return failed;
}
