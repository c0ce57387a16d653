/*
 * ring: consistent hashing with virtual nodes.
 *
 * Each node (an IPv4 address and port) owns `vnodes` points on a 64-bit
 * circle. Point j of a node sits at XXH64 (seed 0) of these 10 bytes
 * (ring_point):
 *
 *   OFFSET  SIZE  MEANING
 *   0       4     IPv4 address, network byte order (as in ring_node.ip)
 *   4       2     port, big-endian
 *   6       4     point index j (0 .. vnodes-1), big-endian
 *
 * so every node computes the same circle from the same member set, whatever
 * its own byte order. A key lives at ring_hash(key) = XXH64(key, seed 0)
 * (deliberately not XXH3, which the store's table uses: placement and table
 * slots stay uncorrelated). A point owns the arc (previous point, point]:
 * the key at h belongs to the first point at or after h, wrapping past the
 * top. Its preference list is the first `want` distinct nodes met walking
 * clockwise from there. The ring is rebuilt from the current set of live
 * members whenever membership changes (ring_build), so lookups need no
 * knowledge of liveness.
 *
 * Balance: a node's share varies by about 1/sqrt(vnodes) around the mean.
 * With the default 1024 points, 40 nodes (127.0.0.1:7000..7039, or
 * 10.0.0.1..40:7000) see the most loaded node at 1.09x and 1.08x the mean
 * share (256 points: 1.13x and 1.14x, and over 1.15x for about a third of
 * random 40-address sets). 40 nodes x 1024 points is 480 KiB and about
 * 1.3 ms per ring_build; a lookup is a binary search plus a short walk.
 *
 * Nodes are named by their index in the array passed to ring_build; lookups
 * return those indexes. The nodes must be distinct addresses. The ring
 * copies what it needs from that array. A ring is not thread-safe for
 * concurrent ring_build; concurrent lookups are fine.
 */
#ifndef DHT_RING_H
#define DHT_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_DEFAULT_VNODES 1024

typedef struct ring_node {
    uint32_t ip;   /* network byte order */
    uint16_t port; /* host byte order */
} ring_node;

typedef struct ring ring;

/* Returns an empty ring with `vnodes` points per node (0: the default), or
 * NULL when out of memory. */
ring *ring_new(unsigned vnodes);
void ring_free(ring *r);

/* Replaces the ring's nodes with nodes[0..n) (n may be 0). 0, or -1 when
 * out of memory or when n * vnodes exceeds UINT32_MAX (the ring is then
 * unchanged). */
int ring_build(ring *r, const ring_node *nodes, size_t n);

size_t ring_size(const ring *r); /* nodes in the ring */

/* Hash of a key: where it sits on the circle. XXH64, seed 0. */
uint64_t ring_hash(const void *key, size_t klen);

/* Position of point `index` of node nd (the layout above). */
uint64_t ring_point(const ring_node *nd, uint32_t index);

/* Writes up to `want` distinct node indexes, in preference order, for the
 * point h into out; returns how many (min(want, ring_size); 0 on an empty
 * ring). O(log points + steps * want), steps being the points walked:
 * about want for want much smaller than ring_size. */
size_t ring_lookup(const ring *r, uint64_t h, size_t want, uint32_t *out);

/* Fraction of the circle for which node i comes first (sums to 1): the
 * exact total of its arcs over 2^64, rounded once to a double. 0 when i is
 * not a node. */
double ring_share(const ring *r, uint32_t i);

#endif
