/*
 * ring: consistent hashing with virtual nodes.
 *
 * Each node (an IPv4 address and port) owns `vnodes` points on a 64-bit
 * circle, at xxh64 of its address and the point's index. A key lives at
 * xxh64(key); its preference list is the first `want` distinct nodes met
 * walking clockwise from there. The ring is rebuilt from the current set of
 * live members whenever membership changes (ring_build), so lookups need no
 * knowledge of liveness.
 *
 * Nodes are named by their index in the array passed to ring_build; lookups
 * return those indexes. The ring copies what it needs from that array.
 */
#ifndef DHT_RING_H
#define DHT_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_DEFAULT_VNODES 256

typedef struct ring_node {
    uint32_t ip;   /* network byte order */
    uint16_t port; /* host byte order */
} ring_node;

typedef struct ring ring;

/* Returns an empty ring, or NULL when out of memory. */
ring *ring_new(unsigned vnodes);
void ring_free(ring *r);

/* Replaces the ring's nodes with nodes[0..n). 0, or -1 when out of memory
 * (the ring is then unchanged). */
int ring_build(ring *r, const ring_node *nodes, size_t n);

size_t ring_size(const ring *r); /* nodes in the ring */

/* Hash of a key: where it sits on the circle. */
uint64_t ring_hash(const void *key, size_t klen);

/* Writes up to `want` distinct node indexes, in preference order, for the
 * point h into out; returns how many (min(want, ring_size)). */
size_t ring_lookup(const ring *r, uint64_t h, size_t want, uint32_t *out);

/* Fraction of the circle for which node i comes first (sums to 1). */
double ring_share(const ring *r, uint32_t i);

#endif
