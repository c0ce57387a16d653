/*
 * libFuzzer target for the wire codec: every byte string a socket can
 * deliver goes through wire_unpack_msg, then its payload (whatever the
 * checksum said, so the fuzzer need not learn CRC32) through
 * wire_unpack_request, wire_unpack_response and wire_unpack_peer, and as a
 * batch through wire_batch_next, each frame as a Msg. Decoded
 * objects are walked (so ASan checks every pointer), and whatever decodes is
 * encoded again and must decode to the same thing. The hand coder of Peer
 * (wire.c) is checked against protobuf-c's: the same bytes decode with both
 * or with neither, to messages protobuf-c packs to the same bytes, and a
 * Peer protobuf-c decoded is encoded by wire_peer_pack_payload to exactly
 * protobuf-c's bytes. See fuzz/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[WIRE_MAX_DATAGRAM];
static volatile uint32_t sink;
static wire_arena *arena, *parena;

static void check(int ok) {
    if (!ok) abort();
}

static int same_bytes(const void *a, size_t alen, const void *b, size_t blen) {
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static uint32_t walk_bytes(ProtobufCBinaryData d) {
    uint32_t h = (uint32_t)d.len;
    for (size_t i = 0; i < d.len; i++) h = h * 31 + d.data[i];
    return h;
}

static uint32_t walk_member(const Member *m) {
    return m ? m->ip ^ m->port ^ (uint32_t)m->incarnation ^ (uint32_t)m->heartbeat ^ m->state : 0;
}

static uint32_t walk_peer(const Peer *p) {
    uint32_t h = p->type ^ walk_member(p->from) ^ p->client_ip ^ p->client_port ^ p->err ^
                 p->bucket ^ p->hint_ip ^ p->hint_port ^ p->flags ^ p->placement;
    h ^= walk_bytes(p->request) ^ walk_bytes(p->key);
    for (size_t i = 0; i < p->n_members; i++) h ^= walk_member(p->members[i]);
    for (size_t i = 0; i < p->n_records; i++) {
        const Record *r = p->records[i];
        h ^= walk_bytes(r->key) ^ walk_bytes(r->value) ^ (uint32_t)r->version ^
             (uint32_t)r->stamp ^ (uint32_t)r->tombstone;
    }
    for (size_t i = 0; i < p->n_digests; i++) h ^= (uint32_t)p->digests[i];
    return h;
}

/* protobuf-c keeps unknown fields and packs them again, but it accepts a
 * field number 0 spelled as an overlong varint (80 00) that it then packs
 * as 00, which it rejects: a message with unknown fields need not survive
 * a round trip, so those are only decoded and walked. */
static int peer_has_unknown(const Peer *p) {
    size_t u = p->base.n_unknown_fields + (p->from ? p->from->base.n_unknown_fields : 0);
    for (size_t i = 0; i < p->n_members; i++) u += p->members[i]->base.n_unknown_fields;
    for (size_t i = 0; i < p->n_records; i++) u += p->records[i]->base.n_unknown_fields;
    return u != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!arena && !(arena = wire_arena_new())) abort();
    wire_reset(arena);
    wire_frame f;
    int rc = wire_unpack_msg(arena, data, size, &f);
    check(rc == 0 || rc == WIRE_EMALFORMED || rc == WIRE_ECHECKSUM);
    if (rc == WIRE_EMALFORMED) return 0;
    sink = walk_bytes((ProtobufCBinaryData){f.idlen, (uint8_t *)f.id}) ^ f.kind;

    if (rc == 0) {
        /* A good frame packs again into one that decodes to the same. (An
         * all-default Msg encodes to 0 bytes, which wire_pack_msg cannot
         * tell from "does not fit".) */
        size_t n = wire_pack_msg(out, sizeof out, f.id, f.idlen, f.payload, f.plen, f.kind);
        check(n > 0 || size > WIRE_MAX_DATAGRAM || (f.idlen == 0 && f.plen == 0 && f.kind == 0));
        if (n) {
            wire_frame g;
            check(wire_unpack_msg(arena, out, n, &g) == 0);
            check(same_bytes(g.id, g.idlen, f.id, f.idlen));
            check(same_bytes(g.payload, g.plen, f.payload, f.plen));
            check(g.kind == f.kind);
        }
    }

    KVRequest *q = wire_unpack_request(arena, f.payload, f.plen);
    if (q) {
        sink ^= q->command ^ walk_bytes(q->key) ^ walk_bytes(q->value) ^ (uint32_t)q->version;
        size_t n = q->base.n_unknown_fields
                       ? 0
                       : wire_pack(out, sizeof out, f.id, f.idlen, &q->base, WIRE_KIND_CLIENT);
        if (n) {
            wire_frame g;
            check(wire_unpack_msg(arena, out, n, &g) == 0);
            KVRequest *q2 = wire_unpack_request(arena, g.payload, g.plen);
            check(q2 != NULL);
            check(q2->command == q->command && q2->version == q->version);
            check(same_bytes(q2->key.data, q2->key.len, q->key.data, q->key.len));
            check(same_bytes(q2->value.data, q2->value.len, q->value.data, q->value.len));
        }
    }

    KVResponse *s = wire_unpack_response(arena, f.payload, f.plen);
    if (s)
        sink ^= s->errcode ^ walk_bytes(s->value) ^ (uint32_t)s->pid ^ (uint32_t)s->version ^
                (uint32_t)s->overloadwaittime ^ (uint32_t)s->membershipcount;

    /* hand coder against protobuf-c, in an arena of its own (one decode of
     * a datagram never fills it) */
    if (!parena && !(parena = wire_arena_new())) abort();
    wire_reset(parena);
    Peer *hp = f.plen <= WIRE_MAX_DATAGRAM ? wire_unpack_peer(parena, f.payload, f.plen) : NULL;
    Peer *ref = f.plen <= WIRE_MAX_DATAGRAM ? peer__unpack(NULL, f.plen, f.payload) : NULL;
    check((hp == NULL) == (ref == NULL));
    if (ref && !peer_has_unknown(ref)) {
        static uint8_t a[WIRE_MAX_DATAGRAM], b[WIRE_MAX_DATAGRAM];
        size_t na = protobuf_c_message_get_packed_size(&hp->base);
        size_t nb = protobuf_c_message_get_packed_size(&ref->base);
        check(na == nb && na <= sizeof a);
        protobuf_c_message_pack(&hp->base, a);
        protobuf_c_message_pack(&ref->base, b);
        check(memcmp(a, b, na) == 0);
        size_t nc = wire_peer_pack_payload(ref, a, sizeof a);
        check(nc == nb && memcmp(a, b, nb) == 0);
    }
    if (ref) peer__free_unpacked(ref, NULL);

    Peer *p = wire_unpack_peer(arena, f.payload, f.plen);
    if (p) {
        uint32_t h = walk_peer(p);
        sink ^= h;
        size_t n = peer_has_unknown(p)
                       ? 0
                       : wire_pack(out, sizeof out, f.id, f.idlen, &p->base, WIRE_KIND_PEER);
        if (n) {
            wire_frame g;
            check(wire_unpack_msg(arena, out, n, &g) == 0);
            Peer *p2 = wire_unpack_peer(arena, g.payload, g.plen);
            /* NULL only when the arena is full: many big decodes in one go. */
            if (p2) check(walk_peer(p2) == h);
        }
    }

    if (!f.plen) return 0; /* no batch: and f.payload may be NULL, where no offset applies */
    const uint8_t *b = f.payload, *end = f.payload + f.plen, *frame;
    size_t flen;
    while ((rc = wire_batch_next(&b, end, &frame, &flen)) == 1) {
        check(flen > 0 && frame >= f.payload && frame + flen <= end && b == frame + flen);
        wire_frame g, h;
        int r1 = wire_unpack_msg(arena, frame, flen, &g);
        int r2 = wire_unpack_batched(frame, flen, &h); /* the same, but for the sum */
        check(r2 == (r1 == WIRE_ECHECKSUM ? 0 : r1));
        if (r2 == 0)
            check(same_bytes(g.id, g.idlen, h.id, h.idlen) &&
                  same_bytes(g.payload, g.plen, h.payload, h.plen) && g.kind == h.kind);
        if (r1 != WIRE_EMALFORMED)
            sink ^= walk_bytes((ProtobufCBinaryData){g.plen, (uint8_t *)g.payload});
    }
    check(rc == 0 || rc == -1);
    return 0;
}
