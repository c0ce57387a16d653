/* wire: protobuf-c codec with an arena allocator, CRC32 checksums. */
#include "wire.h"

#include <isa-l/crc.h>
#include <stdbool.h>
#include <immintrin.h>
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

/* ISA-L's AVX-512 CRC (crc32_gzip_refl_by16_10) returns with the upper
 * halves of the vector registers it used still dirty (no vzeroupper), and
 * on Intel CPUs every SSE instruction after that, ours or libc's, pays for
 * them until something clears them. libsodium's BLAKE2b, which seals every
 * node-to-node datagram and ends with vzeroupper, hid it; with a SipHash
 * seal in its place the six nodes of bench/redis-compare (W=1, SET -P 16)
 * took 4.0-4.2 us of CPU per SET without this, 2.5-2.6 us with it. */
__attribute__((target("avx"))) static void clear_upper(void) { _mm256_zeroupper(); }

/* CRC32/IEEE as zlib's crc32() computes it, by ISA-L (carry-less multiply
 * folding where the CPU has it, tables otherwise): 17 times zlib 1.2.13's
 * speed on a 128-byte message here, where every byte of node-to-node
 * traffic is summed four times (a message, then its batch, on both sides). */
uint32_t wire_crc(const void *a, size_t alen, const void *b, size_t blen) {
    static int avx = -1;
    uint32_t c = 0;
    if (alen) c = crc32_gzip_refl(c, (const unsigned char *)a, (uint64_t)alen);
    if (blen) c = crc32_gzip_refl(c, (const unsigned char *)b, (uint64_t)blen);
    if (avx < 0) avx = __builtin_cpu_supports("avx");
    if (avx) clear_upper();
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
static int unpack_msg(const uint8_t *buf, size_t len, wire_frame *f, bool check);

int wire_unpack_msg(wire_arena *a, const uint8_t *buf, size_t len, wire_frame *f) {
    (void)a;
    return unpack_msg(buf, len, f, true);
}

int wire_unpack_batched(const uint8_t *buf, size_t len, wire_frame *f) {
    return unpack_msg(buf, len, f, false);
}

static int unpack_msg(const uint8_t *buf, size_t len, wire_frame *f, bool check) {
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
            if (field == 3) checksum = wire_get_le(p, 8);
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
    if (check && checksum != wire_crc(f->id, f->idlen, f->payload, f->plen)) return WIRE_ECHECKSUM;
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

/* ---- Peer, by hand ------------------------------------------------------
 *
 * The messages of the data path (WRITE, WRITE_ACK, READ, READ_REPLY, SYNC)
 * are coded here; protobuf-c's generic code (reflection over the fields)
 * was 16% of a node's cycles under redis-benchmark -P 16. The hand coder
 * takes only what it can code exactly as protobuf-c does: Peer fields 1,
 * 7-9 and 11-16 and Record's five, of the right wire types, no unknown
 * fields. Anything else (membership, forwards, digests, a field protobuf-c
 * would refuse or keep as unknown) goes to protobuf-c, which then decides.
 * fuzz/fuzz_wire.c checks that both decode and encode alike. */

/* A tag or a length prefix: protobuf-c reads at most 5 bytes of them (a
 * longer one is malformed there), so the hand coder takes no more. */
static int get_short(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    const uint8_t *start = *p;
    return get_varint(p, end, v) && *p - start <= 5;
}

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

/* A varint's bytes say true, as protobuf-c reads a bool: any value bit set
 * (bits past the 64th count too). p..end is the varint. */
static bool varint_true(const uint8_t *p, const uint8_t *end) {
    for (; p < end; p++)
        if (*p & 0x7F) return true;
    return false;
}

/* Copies n bytes into the arena (as protobuf-c does; NULL for none). With
 * no arena, only checks. */
static bool arena_bytes(wire_arena *a, ProtobufCBinaryData *b, const uint8_t *p, size_t n) {
    b->len = n;
    b->data = NULL;
    if (!n || !a) return true;
    if (!(b->data = arena_alloc(a, n))) return false;
    memcpy(b->data, p, n);
    return true;
}

/* Decodes a Record (a NULL: only checks it); false when the hand coder
 * does not take it. */
static bool fast_record(wire_arena *a, const uint8_t *p, const uint8_t *end, Record *r) {
    record__init(r);
    while (p < end) {
        uint64_t tag, v;
        if (!get_short(&p, end, &tag)) return false;
        const uint8_t *start = p;
        switch (tag) {
        case 1 << 3 | 2:
        case 2 << 3 | 2:
            if (!get_short(&p, end, &v) || v > (uint64_t)(end - p)) return false;
            if (!arena_bytes(a, tag >> 3 == 1 ? &r->key : &r->value, p, (size_t)v)) return false;
            p += v;
            break;
        case 3 << 3 | 0:
            if (!get_varint(&p, end, &v)) return false;
            r->version = (int32_t)(uint32_t)v;
            break;
        case 4 << 3 | 1:
            if (end - p < 8) return false;
            r->stamp = wire_get_le(p, 8);
            p += 8;
            break;
        case 5 << 3 | 0:
            if (!get_varint(&p, end, &v)) return false;
            r->tombstone = varint_true(start, p);
            break;
        default: return false;
        }
    }
    return true;
}

/* Decodes a Peer; NULL when the hand coder does not take it (or the arena
 * is exhausted). Two passes: the first checks everything and counts the
 * records, the second allocates and fills, and fails only for want of
 * arena. */
static Peer *fast_peer(wire_arena *a, const uint8_t *buf, size_t len) {
    const uint8_t *end = len ? buf + len : buf; /* (no payload: buf may be NULL) */
    size_t nrec = 0;
    for (int pass = 0; pass < 2; pass++) {
        Peer *m = NULL;
        if (pass == 1) {
            if (!(m = arena_alloc(a, sizeof *m))) return NULL;
            peer__init(m);
            if (nrec) {
                Record **rp = arena_alloc(a, nrec * sizeof *rp);
                Record *rs = arena_alloc(a, nrec * sizeof *rs);
                if (!rp || !rs) return NULL;
                for (size_t i = 0; i < nrec; i++) rp[i] = &rs[i];
                m->records = rp;
            }
        }
        const uint8_t *p = buf;
        while (p < end) {
            uint64_t tag, v;
            if (!get_short(&p, end, &tag)) return NULL;
            switch (tag) {
            case 1 << 3 | 0: case 9 << 3 | 0: case 11 << 3 | 0: case 13 << 3 | 0: case 14 << 3 | 0:
                if (!get_varint(&p, end, &v)) return NULL;
                if (m) {
                    uint32_t x = (uint32_t)v;
                    switch (tag >> 3) {
                    case 1: m->type = x; break;
                    case 9: m->err = x; break;
                    case 11: m->bucket = x; break;
                    case 13: m->hint_port = x; break;
                    default: m->flags = x; break;
                    }
                }
                break;
            case 7 << 3 | 2: case 8 << 3 | 2:
                if (!get_short(&p, end, &v) || v > (uint64_t)(end - p)) return NULL;
                if (tag >> 3 == 7 && !m) { /* checked and counted */
                    Record check;
                    if (!fast_record(NULL, p, p + v, &check)) return NULL;
                    nrec++;
                } else if (tag >> 3 == 7) {
                    if (!fast_record(a, p, p + v, m->records[m->n_records++])) return NULL;
                } else if (m && !arena_bytes(a, &m->key, p, (size_t)v)) {
                    return NULL;
                }
                p += v;
                break;
            case 12 << 3 | 5:
                if (end - p < 4) return NULL;
                if (m) m->hint_ip = (uint32_t)wire_get_le(p, 4);
                p += 4;
                break;
            case 15 << 3 | 1: case 16 << 3 | 1:
                if (end - p < 8) return NULL;
                if (m) *(tag >> 3 == 15 ? &m->stamp : &m->gc_floor) = wire_get_le(p, 8);
                p += 8;
                break;
            default: return NULL;
            }
        }
        if (m) return m;
    }
    return NULL;
}

Peer *wire_unpack_peer(wire_arena *a, const uint8_t *p, size_t len) {
    Peer *m = fast_peer(a, p, len);
    return m ? m : peer__unpack(&a->alloc, len, p);
}

static size_t record_size(const Record *r) {
    size_t n = 0;
    if (r->key.len) n += 1 + varint_size(r->key.len) + r->key.len;
    if (r->value.len) n += 1 + varint_size(r->value.len) + r->value.len;
    if (r->version) n += 1 + varint_size((uint64_t)(int64_t)r->version);
    if (r->stamp) n += 9;
    if (r->tombstone) n += 2;
    return n;
}

/* The size of m coded by hand, or SIZE_MAX when protobuf-c is to code it
 * (gossip, forwards, digests, placement, ping addresses, clocks: fields the hand
 * coder has not; a field added to Peer goes here, or fuzz_wire finds it
 * dropped). */
static size_t fast_peer_size(const Peer *m) {
    if (m->base.n_unknown_fields || m->from || m->n_members || m->client_ip || m->client_port ||
        m->request.len || m->n_digests || m->placement || m->to_ip || m->to_port || m->wall ||
        m->forward_seq || m->to_incarnation || m->mono)
        return SIZE_MAX;
    size_t n = 0;
    if (m->type) n += 1 + varint_size(m->type);
    for (size_t i = 0; i < m->n_records; i++) {
        if (m->records[i]->base.n_unknown_fields) return SIZE_MAX;
        size_t r = record_size(m->records[i]);
        n += 1 + varint_size(r) + r;
    }
    if (m->key.len) n += 1 + varint_size(m->key.len) + m->key.len;
    if (m->err) n += 1 + varint_size(m->err);
    if (m->bucket) n += 1 + varint_size(m->bucket);
    if (m->hint_ip) n += 5;
    if (m->hint_port) n += 1 + varint_size(m->hint_port);
    if (m->flags) n += 1 + varint_size(m->flags);
    if (m->stamp) n += 9;
    if (m->gc_floor) n += 10;
    return n;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const ProtobufCBinaryData *b) {
    *p++ = tag;
    p += wire_put_varint(p, b->len);
    memcpy(p, b->data, b->len);
    return p + b->len;
}

static uint8_t *put_u32(uint8_t *p, uint8_t tag, uint32_t v) {
    *p++ = tag;
    return p + wire_put_varint(p, v);
}

/* Codes m (fast_peer_size said it can) in field order, as protobuf-c. */
static void fast_peer_pack(const Peer *m, uint8_t *p) {
    if (m->type) p = put_u32(p, 1 << 3 | 0, m->type);
    for (size_t i = 0; i < m->n_records; i++) {
        const Record *r = m->records[i];
        *p++ = 7 << 3 | 2;
        p += wire_put_varint(p, record_size(r));
        if (r->key.len) p = put_bytes(p, 1 << 3 | 2, &r->key);
        if (r->value.len) p = put_bytes(p, 2 << 3 | 2, &r->value);
        if (r->version) {
            *p++ = 3 << 3 | 0;
            p += wire_put_varint(p, (uint64_t)(int64_t)r->version);
        }
        if (r->stamp) *p++ = 4 << 3 | 1, p = wire_put_le(p, r->stamp, 8);
        if (r->tombstone) *p++ = 5 << 3 | 0, *p++ = 1;
    }
    if (m->key.len) p = put_bytes(p, 8 << 3 | 2, &m->key);
    if (m->err) p = put_u32(p, 9 << 3 | 0, m->err);
    if (m->bucket) p = put_u32(p, 11 << 3 | 0, m->bucket);
    if (m->hint_ip) *p++ = 12 << 3 | 5, p = wire_put_le(p, m->hint_ip, 4);
    if (m->hint_port) p = put_u32(p, 13 << 3 | 0, m->hint_port);
    if (m->flags) p = put_u32(p, 14 << 3 | 0, m->flags);
    if (m->stamp) *p++ = 15 << 3 | 1, p = wire_put_le(p, m->stamp, 8);
    if (m->gc_floor) *p++ = (uint8_t)(16 << 3 | 1 | 0x80), *p++ = 1, p = wire_put_le(p, m->gc_floor, 8);
}

/* m's size and coder: by hand for the Peers that can be, else protobuf-c. */
static size_t payload_size(const ProtobufCMessage *m, bool *fast) {
    *fast = false;
    if (m->descriptor == &peer__descriptor) {
        size_t n = fast_peer_size((const Peer *)m);
        if (n != SIZE_MAX) {
            *fast = true;
            return n;
        }
    }
    return protobuf_c_message_get_packed_size(m);
}

static void payload_pack(const ProtobufCMessage *m, bool fast, uint8_t *out) {
    if (fast) fast_peer_pack((const Peer *)m, out);
    else protobuf_c_message_pack(m, out);
}

size_t wire_peer_pack_payload(const Peer *m, uint8_t *out, size_t cap) {
    bool fast;
    size_t n = payload_size(&m->base, &fast);
    if (n > cap) return SIZE_MAX;
    payload_pack(&m->base, fast, out);
    return n;
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
        n = (size_t)(wire_put_le(t + n, crc, 8) - t);
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
    bool fast;
    size_t plen = payload_size(m, &fast);
    if (plen > WIRE_MAX_DATAGRAM) return 0;
    uint8_t head[WIRE_ID_LEN + 32], tail[16];
    size_t hlen = idlen <= WIRE_ID_LEN ? msg_head(head, id, idlen, plen) : 0;
    size_t tmax = msg_tail(tail, 1, kind); /* with a checksum: the longest tail */
    if (idlen > WIRE_ID_LEN || hlen + plen + tmax > cap) {
        uint8_t payload[WIRE_MAX_DATAGRAM];
        payload_pack(m, fast, payload);
        return wire_pack_msg(out, cap, id, idlen, payload, plen, kind);
    }
    memcpy(out, head, hlen);
    if (plen) payload_pack(m, fast, out + hlen);
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
