/*
 * wire: the datagram formats, encoded with protobuf-c (proto/kv.proto).
 *
 * Every datagram is one Msg:
 *
 *   FIELD  TYPE     MEANING
 *   1      bytes    messageID: 16 bytes chosen by the client, echoed in the reply
 *   2      bytes    payload: KVRequest / KVResponse (kind 0), Peer (kind 1),
 *                   or a batch (kind 2)
 *   3      fixed64  checkSum: CRC32/IEEE of messageID bytes then payload bytes
 *   4      uint32   kind: 0 client traffic, 1 node-to-node, 2 a batch of
 *                   node-to-node Msgs (our extensions)
 *
 * A batch's payload is a sequence of frames, each a varint length then that
 * many bytes of one whole Msg of kind 1 (with its own ID and checksum); it
 * is read with wire_batch_next. Only nodes send batches, only to members.
 *
 * A datagram whose checksum does not match is dropped by the caller.
 *
 * Decoded payloads (and protobuf-c's copies of their bytes fields) live in
 * a wire_arena owned by the caller (each node has its own), and every
 * pointer returned by wire_unpack_request/response/peer stays valid until
 * the next wire_reset() of that arena; a Msg (the envelope) is decoded in
 * place, its ID and payload pointing into the datagram (wire_frame). A
 * node resets its arena once per datagram. Encoding
 * writes into a caller-supplied buffer and returns the length, or 0 when the
 * encoded datagram would not fit in cap.
 */
#ifndef DHT_WIRE_H
#define DHT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "kv.pb-c.h"

#define WIRE_ID_LEN 16
#define WIRE_MAX_KEY 32
#define WIRE_MAX_VALUE 10000
#define WIRE_MAX_DATAGRAM 65507

enum wire_kind { WIRE_KIND_CLIENT = 0, WIRE_KIND_PEER = 1, WIRE_KIND_BATCH = 2 };

enum wire_cmd {
    WIRE_PUT = 0x01,
    WIRE_GET = 0x02,
    WIRE_REMOVE = 0x03,
    WIRE_SHUTDOWN = 0x04,
    WIRE_WIPEOUT = 0x05,
    WIRE_IS_ALIVE = 0x06,
    WIRE_GET_PID = 0x07,
    WIRE_GET_MEMBERSHIP_COUNT = 0x08,
    WIRE_GET_MEMBERSHIP_LIST = 0x22,
};

enum wire_err {
    WIRE_OK = 0x00,
    WIRE_ENOKEY = 0x01,
    WIRE_ENOSPACE = 0x02,
    WIRE_EOVERLOAD = 0x03,
    WIRE_EINTERNAL = 0x04,
    WIRE_EUNKNOWN = 0x05,
    WIRE_EBADKEY = 0x06,
    WIRE_EBADVALUE = 0x07,
};

/* Peer.err only (never sent to a client): a WRITE refused because the
 * replica holds a newer stamp for the key (Peer.stamp); the coordinator
 * stamps the write again above it. */
#define WIRE_ESTALE 0x80u

/* Stamps (repl.h) whose clock part is further ahead of a node's wall clock
 * than this are refused: no node may run ahead of the others for good. */
#define WIRE_MAX_AHEAD_MS 60000

/* Peer.type: node-to-node messages (Msg.kind = WIRE_KIND_PEER). */
enum wire_peer_type {
    PEER_GOSSIP = 1,      /* from, members, digests, flags: membership (members.h) */
    PEER_FORWARD = 2,     /* client_ip/port, request: serve and reply to the client */
    PEER_WRITE = 3,       /* records[0]: store it, answer WRITE_ACK (flags: REMOVE) */
    PEER_WRITE_ACK = 4,   /* err */
    PEER_READ = 5,        /* key: answer READ_REPLY */
    PEER_READ_REPLY = 6,  /* err, records[0] when found */
    PEER_SYNC = 7,        /* records: store those newer than ours, no answer */
    PEER_DIGEST = 8,      /* digests: per-bucket hashes of the records we share */
    PEER_DEBUG = 9,       /* flags: debug hooks (PEER_DEBUG_*) */
    PEER_WRITE_ACKS = 10, /* digests: the first 8 bytes (little endian) of the IDs of
                           * lazy WRITEs (PEER_FLAG_LAZY) stored: WRITE_ACKs of
                           * err OK for them all, in one message */
};

#define PEER_FLAG_REMOVE 1u       /* WRITE of a tombstone: ack says if it existed, and
                                   * the stamp of what it replaced */
#define PEER_FLAG_LAZY 2u         /* WRITE the sender's quorum does not wait for:
                                   * the ack may wait too (node_send_peer_lazy) */
#define PEER_FLAG_NOT_MINE 8u     /* WRITE_ACK of a tombstone: what it held was a
                                   * tombstone of another REMOVE (another mark,
                                   * Record.version), however equal the stamps */
#define PEER_FLAG_UNSETTLED 4u    /* READ_REPLY without a record from a node whose
                                   * "not found" is not to be believed alone: its
                                   * live set changed lately (the key may not have
                                   * been pushed to it yet), it holds records back,
                                   * its store was wiped lately, or it failed */
#define PEER_DEBUG_PAUSE_GOSSIP 1u /* bucket = ms to stay silent */
/* GOSSIP flags. Every GOSSIP carries the sender's entry (from), up to
 * MEMBERS_PIGGYBACK entries of news (members) and, but for chunks of a full
 * exchange, the sender's membership digest (digests[0]). */
#define PEER_GOSSIP_PROBE 1u       /* a ping: answer ACK with the same message ID */
#define PEER_GOSSIP_ACK 2u         /* a ping's answer (or one relayed by a helper) */
#define PEER_GOSSIP_PROBE_REQ 4u   /* ping client_ip:port for me; relay its ACK or NACK */
#define PEER_GOSSIP_NACK 8u        /* a helper got no ack in time */
#define PEER_GOSSIP_SYNC 16u       /* a chunk of the sender's whole list */
#define PEER_GOSSIP_SYNC_END 32u   /* its last chunk: answer with ours */
#define PEER_GOSSIP_SYNC_REPLY 64u /* that answer: not to be answered */
#define PEER_GOSSIP_BUSY 128u      /* the sender has news in flight */
#define PEER_GOSSIP_SIPHASH 256u   /* the sender opens SipHash seals (auth.h) */

/* Return codes of wire_unpack_msg. */
#define WIRE_EMALFORMED (-1)
#define WIRE_ECHECKSUM (-2)

/* A decoded Msg; id and payload point into the buffer it was decoded from
 * (wire_unpack_msg copies nothing) and are valid as long as that is. */
typedef struct wire_frame {
    const uint8_t *id;
    size_t idlen;
    const uint8_t *payload;
    size_t plen;
    uint32_t kind;
} wire_frame;

/* CRC32 (IEEE, as zlib computes it) of a then b. */
uint32_t wire_crc(const void *a, size_t alen, const void *b, size_t blen);

/* Scratch memory for decoding. NULL when out of memory. */
typedef struct wire_arena wire_arena;
wire_arena *wire_arena_new(void);
void wire_arena_free(wire_arena *a);

/* Frees every object decoded into a since the last call. */
void wire_reset(wire_arena *a);

/* Decodes a Msg from buf into *f (a is not used: the Msg is read in place).
 * Returns 0, WIRE_EMALFORMED or WIRE_ECHECKSUM. */
int wire_unpack_msg(wire_arena *a, const uint8_t *buf, size_t len, wire_frame *f);

/* Decodes a payload into a; NULL when malformed. Valid until wire_reset(a). */
/* wire_unpack_msg for a frame of a batch whose checksum was good: the
 * batch's sum covered its bytes, so its own is not computed again (a
 * quarter of the CRC work of node-to-node traffic). */
int wire_unpack_batched(const uint8_t *buf, size_t len, wire_frame *f);

KVRequest *wire_unpack_request(wire_arena *a, const uint8_t *p, size_t len);
KVResponse *wire_unpack_response(wire_arena *a, const uint8_t *p, size_t len);
Peer *wire_unpack_peer(wire_arena *a, const uint8_t *p, size_t len);

/* Encodes m's bytes (the payload of a Peer datagram) into out, as
 * protobuf-c would; the length, or SIZE_MAX when cap is too small. */
size_t wire_peer_pack_payload(const Peer *m, uint8_t *out, size_t cap);

/* Encodes Msg{id, payload, crc, kind} into out. Returns length or 0. */
size_t wire_pack_msg(uint8_t *out, size_t cap, const uint8_t *id, size_t idlen,
                     const uint8_t *payload, size_t plen, uint32_t kind);

/* Writes v as a protobuf varint at p (room for 10 bytes); returns its length. */
size_t wire_put_varint(uint8_t *p, uint64_t v);

/* Little-endian integers of n bytes (fixed32, fixed64; message IDs). */
static inline uint64_t wire_get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static inline uint8_t *wire_put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + n;
}

/* Reads the frame at *p in a batch payload ending at end: 1 with *frame and
 * *len set and *p moved past it, 0 at the end, -1 when malformed (a bad
 * varint, an empty frame, or one running past end). */
int wire_batch_next(const uint8_t **p, const uint8_t *end, const uint8_t **frame, size_t *len);

/* Encodes a whole datagram carrying m (a KVRequest, KVResponse or Peer) as
 * the payload of a Msg. Returns length or 0 if it does not fit in cap. */
size_t wire_pack(uint8_t *out, size_t cap, const uint8_t *id, size_t idlen,
                 const ProtobufCMessage *m, uint32_t kind);

/* Client side helpers (dht-cli, dht-bench, tests). */
size_t wire_request(uint8_t *out, size_t cap, const uint8_t id[WIRE_ID_LEN],
                    uint32_t cmd, const void *key, size_t klen,
                    const void *val, size_t vlen, int32_t version);

/* Human-readable names; never NULL. */
const char *wire_err_name(uint32_t err);
const char *wire_cmd_name(uint32_t cmd);

#endif
