/*
 * client: helpers shared by the client programs dht-cli and dht-bench.
 *
 * - Addresses: "host:port" resolved to one IPv4 sockaddr_in (the wire
 *   protocol and the member list are IPv4 only).
 * - Message IDs: WIRE_ID_LEN random bytes from getrandom(2).
 * - Replies: client_parse_reply() decodes one received datagram into its
 *   frame and KVResponse; the caller then matches frame.id against the IDs
 *   it has outstanding. A reply may come from any address (the node that
 *   owns the key answers directly), so nothing here looks at the source.
 * - Hex: decoding of command-line arguments given in hex.
 * - Latency histogram: log-linear buckets in the manner of HdrHistogram.
 *   A value v < 2^CLIENT_HIST_SUB_BITS has a bucket of its own; above that,
 *   each power-of-two range [2^k, 2^(k+1)) is cut into 2^(SUB_BITS-1) equal
 *   buckets, so a bucket is at most 1/128 of the values it holds wide: a
 *   percentile is reported within 0.8% of the true sample. Values above
 *   CLIENT_HIST_MAX are counted as CLIENT_HIST_MAX. Fixed size (32 KiB),
 *   no allocation; min, max, sum and count are kept exact.
 *
 * Nothing here owns memory beyond the caller's structures; the KVResponse
 * returned by client_parse_reply lives in the caller's wire arena and stays
 * valid until the next wire_reset() of it.
 */
#ifndef DHT_CLIENT_H
#define DHT_CLIENT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define CLIENT_EADDR (-1)    /* not "host:port", or port out of range */
#define CLIENT_ERESOLVE (-2) /* host has no IPv4 address */
#define CLIENT_EREPLY (-3)   /* malformed datagram, bad ID length or not client traffic */
#define CLIENT_ECHECKSUM (-4)
#define CLIENT_EHEX (-5)     /* odd length, bad digit or does not fit */

/* Resolves "host:port" (host: a name or dotted quad) into *out.
 * Returns 0, CLIENT_EADDR or CLIENT_ERESOLVE. */
int client_parse_addr(const char *s, struct sockaddr_in *out);

/* Formats a as "a.b.c.d:port" into buf (at least 22 bytes); returns buf. */
const char *client_addr_str(const struct sockaddr_in *a, char *buf, size_t cap);

/* Fills id with random bytes. Returns 0 or -errno. */
int client_random_id(uint8_t id[WIRE_ID_LEN]);

/* xoshiro256** seeded by splitmix64: fast, seedable random numbers for
 * workloads (dht-bench) and simulations (dht-sim); the same seed gives the
 * same sequence everywhere. Not for anything secret. */
void client_rng_seed(uint64_t s[4], uint64_t seed);
uint64_t client_rng_next(uint64_t s[4]);
double client_rng_unit(uint64_t s[4]);   /* uniform in [0, 1) */

/* Decodes one datagram into a (calls wire_reset(a) first, so earlier decoded
 * objects die). On 0, *f holds the frame (f->idlen == WIRE_ID_LEN) and *resp
 * the response, both valid until the next wire_reset(a). Returns 0,
 * CLIENT_EREPLY or CLIENT_ECHECKSUM. */
int client_parse_reply(wire_arena *a, const uint8_t *buf, size_t len, wire_frame *f,
                       KVResponse **resp);

/* Decodes hex string s (upper or lower case) into out. Returns 0 with *len
 * set, or CLIENT_EHEX. */
int client_hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len);

#define CLIENT_HIST_SUB_BITS 8
#define CLIENT_HIST_MAX ((uint64_t)1 << 36) /* ~19 hours in microseconds */
#define CLIENT_HIST_BUCKETS 4096

typedef struct client_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t bucket[CLIENT_HIST_BUCKETS];
} client_hist;

/* Empties h. */
void client_hist_init(client_hist *h);

/* Counts one value. */
void client_hist_record(client_hist *h, uint64_t v);

/* Returns the value at percentile p (0..100): the highest value of the
 * bucket that holds it, capped at the exact maximum. 0 when h is empty. */
uint64_t client_hist_percentile(const client_hist *h, double p);

/* Mean of the values recorded; 0 when h is empty. */
double client_hist_mean(const client_hist *h);

#endif
