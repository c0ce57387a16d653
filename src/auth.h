/*
 * auth: the cluster key, and the seal every node-to-node datagram carries.
 *
 * Members share a secret (a file of 64 hex digits made by `dht-cli keygen`,
 * given with --cluster-key-file). A node seals every datagram it sends to
 * another node (Msg kinds 1 and 2; never a reply to a client) by appending
 * two fields to the encoded Msg:
 *
 *   FIELD  TYPE     MEANING
 *   6      fixed64  sentMs: the sender's wall clock, ms since the epoch
 *   7      bytes    mac: 16 bytes, SipHash-2-4 with a 128-bit output
 *                   (libsodium's crypto_shorthash_siphashx24) of every byte
 *                   before field 7 (the Msg, field 6's tag, sentMs), under
 *                   the key's SipHash key: the first 16 bytes of keyed
 *                   BLAKE2b of AUTH_SIP_LABEL under the key
 *   or 5   bytes    mac: 16 bytes, keyed BLAKE2b (libsodium's
 *                   crypto_generichash) of every byte before field 6, then
 *                   sentMs as 8 little-endian bytes
 *
 * always last and in this order, so the 27 bytes of the seal are found at
 * the end of the datagram without decoding it. A node opens both. It seals
 * with SipHash (3-8 times faster: 50 ns against 390 ns for 60 bytes, 8 us
 * against 20 us for 16 KiB) to the members whose last GOSSIP said they open
 * it (PEER_GOSSIP_SIPHASH), and with BLAKE2b, the seal of earlier versions,
 * to the others, so that a rolling upgrade keeps every pair talking. A receiving node with a key
 * drops a node-to-node datagram whose seal is missing or wrong under every
 * key it holds, or whose sentMs is further than WIRE_MAX_AHEAD_MS (the
 * cluster's clock bound) from its own clock: a recorded datagram replays
 * for at most that long, and what it carries is idempotent or ordered by
 * stamps and incarnations (README: Security of the cluster).
 *
 * Key rotation: a key file holds one or two keys, one a line. The first
 * seals; every one opens. Add the new key as the second line on every node
 * (restart each), then make it the first, then remove the old one.
 *
 * Without a key a node accepts node-to-node datagrams only from loopback
 * and private addresses (auth_private_addr), and says so when it starts.
 */
#ifndef DHT_AUTH_H
#define DHT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_LEN 32
#define AUTH_MAX_KEYS 2
#define AUTH_TAG_LEN 16
#define AUTH_SEAL_LEN (1 + 8 + 1 + 1 + AUTH_TAG_LEN) /* 27 bytes */
#define AUTH_SIP_KEY_LEN 16
#define AUTH_SIP_LABEL "dht seal: SipHash-2-4-128 key"

typedef struct auth_keys {
    uint8_t key[AUTH_MAX_KEYS][AUTH_KEY_LEN];
    unsigned n;                 /* 1 or 2; key[0] seals */
    /* each key's SipHash key, once auth_keys_ready has run (auth_load runs
     * it; without it they are derived at each use) */
    bool ready;
    uint8_t sip[AUTH_MAX_KEYS][AUTH_SIP_KEY_LEN];
} auth_keys;

/* Derives the SipHash keys of k->key[0 .. k->n). */
void auth_keys_ready(auth_keys *k);

/* Reads a key file: one or two lines of 64 hex digits ('#' comments and
 * blank lines allowed). 0, or -1 with a reason in err. */
int auth_load(const char *path, auth_keys *k, char *err, size_t errlen);

/* Parses one key of 64 hex digits (surrounding blanks allowed). 0 or -1. */
int auth_parse_key(const char *s, size_t len, uint8_t key[AUTH_KEY_LEN]);

/* Writes 64 hex digits of a fresh random key and a newline into out (at
 * least 66 bytes). */
void auth_keygen(char out[66]);

/* Appends the seal to the len bytes of a Msg at buf (of capacity cap), a
 * SipHash one or (siphash false) a BLAKE2b one. Returns the new length, or
 * 0 when it does not fit. */
size_t auth_seal(const auth_keys *k, uint8_t *buf, size_t len, size_t cap, uint64_t sent_ms,
                 bool siphash);

/* Checks the seal at the end of buf, of either kind. Returns 1 when it
 * opens under one of the keys (with *sent_ms set), 0 when it is missing or
 * wrong. */
int auth_open(const auth_keys *k, const uint8_t *buf, size_t len, uint64_t *sent_ms);

/* True for 127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and
 * 169.254.0.0/16 (ip in network byte order). */
bool auth_private_addr(uint32_t ip);

/* One network of an allow list: ip & mask == net (network byte order). */
typedef struct auth_net {
    uint32_t net, mask;
} auth_net;

/* Parses "10.0.0.0/8" or "10.1.2.3" (a /32). 0 or -1. */
int auth_parse_cidr(const char *s, auth_net *out);

/* True when ip is in one of the k networks. */
bool auth_in_nets(const auth_net *nets, size_t k, uint32_t ip);

#endif
