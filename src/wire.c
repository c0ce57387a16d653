/* wire: protobuf-c codec with an arena allocator, CRC32 checksums. */
#include "wire.h"

#include <isa-l/crc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Decoding allocates from an arena of chunks: the first chunk is kept
 * across resets, later ones (a large datagram's objects) are freed. The
 * largest datagram is 64 KiB; the worst case expansion (empty sub-messages,
 * one per two input bytes) needs well under ARENA_LIMIT. Exhaustion makes
 * unpack fail. */
#define ARENA_CHUNK (64u << 10)
#define ARENA_LIMIT (4u << 20)

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    _Alignas(16) uint8_t data[];
} chunk;

struct wire_arena {
    chunk *head;       /* the chunk being filled; the first one is last */
    size_t total;      /* bytes of all chunks */
    ProtobufCAllocator alloc;
};

static void *arena_alloc(void *ctx, size_t size) {
    wire_arena *a = ctx;
    size = (size + 15) & ~(size_t)15;
    chunk *c = a->head;
    if (!c || size > c->size - c->used) {
        size_t csize = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        if (a->total + csize > ARENA_LIMIT || !(c = malloc(sizeof *c + csize))) return NULL;
        c->size = csize;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += csize;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

static void arena_free(void *ctx, void *p) { (void)ctx; (void)p; }

wire_arena *wire_arena_new(void) {
    wire_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->alloc = (ProtobufCAllocator){arena_alloc, arena_free, a};
    return a;
}

void wire_arena_free(wire_arena *a) {
    if (!a) return;
    for (chunk *c = a->head, *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
    free(a);
}

void wire_reset(wire_arena *a) {
    while (a->head && a->head->next) {
        chunk *c = a->head;
        a->head = c->next;
        a->total -= c->size;
        free(c);
    }
    if (a->head) a->head->used = 0;
}

/* CRC32/IEEE as zlib's crc32() computes it, by ISA-L (carry-less multiply
 * folding where the CPU has it, tables otherwise): 17 times zlib 1.2.13's
 * speed on a 128-byte message here, where every byte of node-to-node
 * traffic is summed four times (a message, then its batch, on both sides). */
uint32_t wire_crc(const void *a, size_t alen, const void *b, size_t blen) {
    uint32_t c = 0;
    if (alen) c = crc32_gzip_refl(c, (const unsigned char *)a, (uint64_t)alen);
    if (blen) c = crc32_gzip_refl(c, (const unsigned char *)b, (uint64_t)blen);
    return c;
}

/* Reads a varint at *p (at most 10 bytes, before end). 0 when truncated or
 * too long. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (*p >= end) return 0;
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* Msg is decoded here rather than by protobuf-c, which copies the payload
 * (a batch's 16 KB) into the arena only for us to read it once: id and
 * payload point into buf. What protobuf-c accepts is accepted: fields in
 * any order, the last of a repeated field wins, unknown fields (the seal,
 * auth.h) are skipped; a known field of the wrong wire type, a group, field
 * number 0 or a truncated field is malformed, as there. */
int wire_unpack_msg(wire_arena *a, const uint8_t *buf, size_t len, wire_frame *f) {
    (void)a;
    const uint8_t *p = buf, *end = buf + len;
    uint64_t checksum = 0;
    *f = (wire_frame){0};
    while (p < end) {
        uint64_t tag, v;
        if (!get_varint(&p, end, &tag)) return WIRE_EMALFORMED;
        uint64_t field = tag >> 3;
        unsigned type = (unsigned)(tag & 7);
        if (field == 0 || field > 0x1FFFFFFF) return WIRE_EMALFORMED;
        bool known = field >= 1 && field <= 6; /* 5 and 6: the seal, read by auth.c */
        static const unsigned want[7] = {0, 2, 2, 1, 0, 2, 1};
        if (known && type != want[field]) return WIRE_EMALFORMED;
        switch (type) {
        case 0:
            if (!get_varint(&p, end, &v)) return WIRE_EMALFORMED;
            if (field == 4) f->kind = (uint32_t)v;
            break;
        case 1:
            if (end - p < 8) return WIRE_EMALFORMED;
            if (field == 3) {
                checksum = 0;
                for (int i = 7; i >= 0; i--) checksum = checksum << 8 | p[i];
            }
            p += 8;
            break;
        case 2:
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) return WIRE_EMALFORMED;
            if (field == 1) f->id = p, f->idlen = (size_t)v;
            if (field == 2) f->payload = p, f->plen = (size_t)v;
            p += v;
            break;
        case 5:
            if (end - p < 4) return WIRE_EMALFORMED;
            p += 4;
            break;
        default: return WIRE_EMALFORMED;
        }
    }
    if (!f->idlen) f->id = NULL;
    if (!f->plen) f->payload = NULL;
    if (checksum != wire_crc(f->id, f->idlen, f->payload, f->plen)) return WIRE_ECHECKSUM;
    return 0;
}

size_t wire_put_varint(uint8_t *p, uint64_t v) {
    size_t i = 0;
    while (v >= 0x80) p[i++] = (uint8_t)(v | 0x80), v >>= 7;
    p[i++] = (uint8_t)v;
    return i;
}

int wire_batch_next(const uint8_t **p, const uint8_t *end, const uint8_t **frame,
                    size_t *len) {
    const uint8_t *q = *p;
    if (q >= end) return 0;
    uint64_t v;
    if (!get_varint(&q, end, &v)) return -1;
    if (v == 0 || v > (uint64_t)(end - q)) return -1;
    *frame = q;
    *len = (size_t)v;
    *p = q + v;
    return 1;
}

KVRequest *wire_unpack_request(wire_arena *a, const uint8_t *p, size_t len) {
    return kvrequest__unpack(&a->alloc, len, p);
}

KVResponse *wire_unpack_response(wire_arena *a, const uint8_t *p, size_t len) {
    return kvresponse__unpack(&a->alloc, len, p);
}

Peer *wire_unpack_peer(wire_arena *a, const uint8_t *p, size_t len) {
    return peer__unpack(&a->alloc, len, p);
}

/* Msg's bytes before its payload: field 1 (id, when not empty) and field
 * 2's tag and length (when the payload is not empty), as protobuf-c writes
 * them for proto3. Returns the length. */
static size_t msg_head(uint8_t *h, const uint8_t *id, size_t idlen, size_t plen) {
    size_t n = 0;
    if (idlen) {
        h[n++] = 0x0A;
        n += wire_put_varint(h + n, idlen);
        memcpy(h + n, id, idlen);
        n += idlen;
    }
    if (plen) {
        h[n++] = 0x12;
        n += wire_put_varint(h + n, plen);
    }
    return n;
}

/* Msg's bytes after its payload: the checksum and the kind, each when not
 * zero. Returns the length (at most 15). */
static size_t msg_tail(uint8_t *t, uint32_t crc, uint32_t kind) {
    size_t n = 0;
    if (crc) {
        t[n++] = 0x19;
        for (int i = 0; i < 8; i++) t[n++] = i < 4 ? (uint8_t)(crc >> (8 * i)) : 0;
    }
    if (kind) {
        t[n++] = 0x20;
        n += wire_put_varint(t + n, kind);
    }
    return n;
}

/* Encoded by hand, byte for byte what msg__pack writes (tests/unit/test_wire.c
 * compares them), without its reflection over the fields. */
size_t wire_pack_msg(uint8_t *out, size_t cap, const uint8_t *id, size_t idlen,
                     const uint8_t *payload, size_t plen, uint32_t kind) {
    if (idlen > WIRE_MAX_DATAGRAM || plen > WIRE_MAX_DATAGRAM) return 0;
    if (idlen > WIRE_ID_LEN) { /* rare: an ID longer than ours, the slow way */
        Msg m = MSG__INIT;
        m.messageid.data = (uint8_t *)id;
        m.messageid.len = idlen;
        m.payload.data = (uint8_t *)payload;
        m.payload.len = plen;
        m.checksum = wire_crc(id, idlen, payload, plen);
        m.kind = kind;
        size_t n = msg__get_packed_size(&m);
        if (n > cap) return 0;
        return msg__pack(&m, out);
    }
    uint8_t head[WIRE_ID_LEN + 32], tail[16];
    size_t hlen = msg_head(head, id, idlen, plen);
    size_t tlen = msg_tail(tail, wire_crc(id, idlen, payload, plen), kind);
    if (hlen + plen + tlen > cap) return 0;
    memcpy(out, head, hlen);
    if (plen) memmove(out + hlen, payload, plen);
    memcpy(out + hlen + plen, tail, tlen);
    return hlen + plen + tlen;
}

/* The payload is packed straight into out, behind the head its size
 * gives, and summed there: no copy of it. When out might be too small (the
 * tail's size depends on the sum), the slow way: nothing is written to an
 * out that is too small. */
size_t wire_pack(uint8_t *out, size_t cap, const uint8_t *id, size_t idlen,
                 const ProtobufCMessage *m, uint32_t kind) {
    size_t plen = protobuf_c_message_get_packed_size(m);
    if (plen > WIRE_MAX_DATAGRAM) return 0;
    uint8_t head[WIRE_ID_LEN + 32], tail[16];
    size_t hlen = idlen <= WIRE_ID_LEN ? msg_head(head, id, idlen, plen) : 0;
    size_t tmax = msg_tail(tail, 1, kind); /* with a checksum: the longest tail */
    if (idlen > WIRE_ID_LEN || hlen + plen + tmax > cap) {
        uint8_t payload[WIRE_MAX_DATAGRAM];
        protobuf_c_message_pack(m, payload);
        return wire_pack_msg(out, cap, id, idlen, payload, plen, kind);
    }
    memcpy(out, head, hlen);
    if (plen) protobuf_c_message_pack(m, out + hlen);
    size_t tlen = msg_tail(tail, wire_crc(id, idlen, out + hlen, plen), kind);
    memcpy(out + hlen + plen, tail, tlen);
    return hlen + plen + tlen;
}

size_t wire_request(uint8_t *out, size_t cap, const uint8_t id[WIRE_ID_LEN],
                    uint32_t cmd, const void *key, size_t klen,
                    const void *val, size_t vlen, int32_t version) {
    KVRequest r = KVREQUEST__INIT;
    r.command = cmd;
    r.key.data = (uint8_t *)key;
    r.key.len = klen;
    r.value.data = (uint8_t *)val;
    r.value.len = vlen;
    r.version = version;
    return wire_pack(out, cap, id, WIRE_ID_LEN, &r.base, WIRE_KIND_CLIENT);
}

const char *wire_err_name(uint32_t err) {
    switch (err) {
    case WIRE_OK: return "ok";
    case WIRE_ENOKEY: return "no such key";
    case WIRE_ENOSPACE: return "out of space";
    case WIRE_EOVERLOAD: return "temporary overload";
    case WIRE_EINTERNAL: return "internal failure";
    case WIRE_EUNKNOWN: return "unknown command";
    case WIRE_EBADKEY: return "invalid key";
    case WIRE_EBADVALUE: return "invalid value";
    default: return "unknown error";
    }
}

const char *wire_cmd_name(uint32_t cmd) {
    switch (cmd) {
    case WIRE_PUT: return "PUT";
    case WIRE_GET: return "GET";
    case WIRE_REMOVE: return "REMOVE";
    case WIRE_SHUTDOWN: return "SHUTDOWN";
    case WIRE_WIPEOUT: return "WIPEOUT";
    case WIRE_IS_ALIVE: return "IS_ALIVE";
    case WIRE_GET_PID: return "GET_PID";
    case WIRE_GET_MEMBERSHIP_COUNT: return "GET_MEMBERSHIP_COUNT";
    case WIRE_GET_MEMBERSHIP_LIST: return "GET_MEMBERSHIP_LIST";
    default: return "UNKNOWN";
    }
}
