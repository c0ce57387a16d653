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
 * its own byte order. A point owns the arc (previous point, point]: the
 * position h belongs to the first point at or after h, wrapping past the
 * top, and its preference list (ring_lookup) is the first `want` distinct
 * nodes met walking clockwise from there. Points at the same position
 * (equal hashes) are ordered by (position, IPv4 address as a big-endian
 * number, port): the order depends on the member set only, never on how
 * the ring got there. The ring holds the current live members, so lookups
 * need no knowledge of liveness.
 *
 * Keys are placed by hash slot, as in Redis Cluster (issue 12): a key's
 * slot (ring_key_slot) is CRC16-XMODEM of the key, or of its hash tag (the
 * bytes between the first '{' and the next '}', when there are some), mod
 * RING_SLOTS = 16384, so "{user1}.a" and "{user1}.b" share a slot. Slot s
 * sits on the circle at the middle of its 1/16384 of it (ring_slot_point:
 * s << 50 | 1 << 49). Its N replicas (ring_set_replicas; N = 3 unless set)
 * are chosen by consistent hashing with bounded loads (Mirrokni et al.
 * 2018), slots taken in order 0..16383, walking clockwise from the slot's
 * point:
 *
 *   1. its primary: the first node met that is primary of fewer than
 *      cap = ceil(1.05 * RING_SLOTS / nodes) slots before it, and one of
 *      the replicas of fewer than room = ceil(1.05 * N * RING_SLOTS /
 *      nodes);
 *   2. its other N - 1 replicas: the next nodes met, in walk order (those
 *      met before the primary first), that are replicas of fewer than room.
 *
 * The last slots of a freak ring (about 3% of rings of 6 nodes on random
 * ports) find no node with both to spare on one lap: a second lap takes
 * the first nodes met whatever their places, the primary a node still
 * under its cap (the caps add up to more than the slots). A lookup of
 * more than N nodes (stand-ins for replicas that do not answer) goes on
 * with the nodes the walk meets after, in order, whatever their counts.
 *
 * So a slot's replicas are the first N nodes its walk meets unless one of
 * them is full, and no node holds more than 1.05x the mean of primaries
 * (+ 1 slot), nor of replica places but in freak rings (10 of 300 rings of
 * 6 in tests/unit/test_ring.c, up to 1.10x there; up to 1.17x in 5 of 1,000
 * rings of 40 x 16 points, where one node took the whole overflow: README). Without caps, a node's
 * load follows its share of the circle (about 1/sqrt(vnodes) around the mean) and where
 * the slots fall in its arcs (a node's places are a sample of 3 x 16,384 /
 * nodes walks: 49 at 1,000 nodes): the most loaded held, in places, 1.03x
 * the mean at 40 nodes x 1024 points (1.04x at 10.0.0.1..40), 1.14x at 200 and 1.49x at 1,000,
 * and with 64 points 1.12x at 40. With the caps and 64 points a node
 * holds at most 1.05x at 6 to 1,000 nodes, and a node joining or leaving
 * moves about its share: at 40 nodes 2.4-3.0% of the replica places
 * (1/41 = 2.44%) and 3.7-4.1% of the primaries (tests/unit/test_ring.c,
 * README). Few points make few runs of slots with the same replicas,
 * which is what CLUSTER SLOTS lists: about 320 at 6 nodes x 64 points and
 * 2,300 at 40 (4,300 and 14,900 with 1024 points).
 *
 * The slot table (each slot's N replicas, 4 N bytes a slot) is computed at
 * the first slot lookup after a change, in O(points + slots x walk), about
 * 0.3 ms at 40 x 64 points; adds and removes only mark it stale. So
 * ring_slot_lookup, ring_slot_count and ring_slot_places write to the ring
 * and are not safe alongside other calls on the same ring.
 *
 * Node ids: the caller names each node by a small integer id of its choice
 * (a member slot, say: ids should be dense, the ring keeps a table of
 * max id + 1 entries). ring_add and ring_remove change one node's points;
 * ring_build replaces everything, node i of its array getting id i. Lookups
 * and shares speak in ids. A ring reached by any sequence of adds and
 * removes answers every lookup and share exactly as a ring_build of the
 * same final nodes would (ids mapped accordingly). The nodes must be
 * distinct addresses: ring_add refuses an address already on the ring.
 *
 * Structure: the points, in circle order, live in chunks of at most 512
 * (position, id) pairs, plus an array of the chunks' first positions. A
 * lookup is a binary search of that array, a search inside a chunk (near
 * where interpolation puts h: positions are hashes, spread evenly) and a
 * short walk. Adding or removing one point moves at most a chunk's worth
 * of points; a full chunk splits in two, a chunk below a quarter full
 * merges with a neighbour when together they fill at most three quarters,
 * and a split or merge also moves the chunk array (one pointer and one
 * position a chunk, P / 384 or so entries for P points, a few microseconds
 * at 10 M points; a split comes once in 128 or more inserts). ring_add or
 * ring_remove of a node thus costs O(vnodes * (log P + 512)) plus the rare
 * split or merge, not O(P).
 * Each node's share is kept exact through adds and removes (a new point
 * takes part of its successor's arc), so ring_share is O(1).
 *
 * Costs (dht-ring-bench on a 2-core VM; add and remove: median of 50 ops
 * of one node each, cold chunks):
 *
 *   NODES x VNODES  POINTS  ring_build  ring_add  ring_remove  LOOKUP OF 3
 *     100 x   64      6 K     0.3 ms       7 us        7 us      25 M/s
 *   10000 x   64    640 K      49 ms      10 us       30 us      11 M/s
 *    1000 x 1024      1 M      80 ms     330 us      330 us     9.5 M/s
 *   10000 x 1024     10 M     1.3 s      0.7 ms      0.8 ms     3.6 M/s
 *
 * Balance of the circle (ring_share, ring_lookup): a node's share varies
 * by about 1/sqrt(vnodes) around the mean. With 1024 points, 40 nodes
 * (127.0.0.1:7000..7039, or 10.0.0.1..40:7000) see the most loaded node at
 * 1.09x and 1.08x the mean share; with the default 64, the first node of
 * the slots' walks would be primary of 1.25x and 1.19x the mean slots
 * (hence the caps, above). Memory is about 16 bytes a point (12 in a
 * chunk, chunks three quarters full after a build): 40 nodes x 64 points
 * is about 40 KiB, and the slot table 4 N bytes a slot (192 KiB for N = 3).
 *
 * The ring copies what it needs from the nodes it is given. A ring is not
 * thread-safe for concurrent changes; concurrent ring_lookup and ring_share
 * calls are fine (slot lookups are not: above).
 */
#ifndef DHT_RING_H
#define DHT_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_DEFAULT_VNODES 64
#define RING_DEFAULT_REPLICAS 3    /* N, unless ring_set_replicas says */
#define RING_MAX_REPLICAS 7
#define RING_SLOTS 16384           /* hash slots, as Redis Cluster's */

typedef struct ring_node {
    uint32_t ip;   /* network byte order */
    uint16_t port; /* host byte order */
} ring_node;

typedef struct ring ring;

/* Returns an empty ring with `vnodes` points per node (0: the default) and
 * RING_DEFAULT_REPLICAS replicas a slot, or NULL when out of memory. */
ring *ring_new(unsigned vnodes);

/* Sets N, the replicas each slot gets (1 .. RING_MAX_REPLICAS): the nodes
 * of the same ring place slots alike only with the same N. 0, or -1 (the
 * ring unchanged) when out of range or out of memory. */
int ring_set_replicas(ring *r, unsigned replicas);
void ring_free(ring *r);

/* Replaces the ring's nodes with nodes[0..n) (n may be 0), node i getting
 * id i. 0, or -1 when out of memory or when n * vnodes exceeds UINT32_MAX
 * (the ring is then unchanged). O(P) for P = n * vnodes points. */
int ring_build(ring *r, const ring_node *nodes, size_t n);

/* The same with node i under id[i] (distinct ids; -1 if one repeats). */
int ring_build_ids(ring *r, const ring_node *nodes, const uint32_t *id, size_t n);

/* Adds node nd's points under id. 0, or -1 (the ring unchanged) when id is
 * already on the ring (it is not replaced: remove it first), when nd's
 * address is already on the ring under another id, when the points would
 * exceed UINT32_MAX, or when out of memory. */
int ring_add(ring *r, uint32_t id, const ring_node *nd);

/* Removes node id's points. 0, or -1 when id is not on the ring. Never
 * allocates, so never fails otherwise. */
int ring_remove(ring *r, uint32_t id);

size_t ring_size(const ring *r); /* nodes in the ring */

/* CRC16-XMODEM (CCITT polynomial 0x1021, initial 0, no reflection) of
 * p[0..len), as Redis Cluster's crc16(): "123456789" gives 0x31C3. */
uint16_t ring_crc16(const void *p, size_t len);

/* The hash slot of a key (0 .. RING_SLOTS - 1), by Redis Cluster's rule:
 * ring_crc16 of the key, or of its hash tag when it has one (the bytes
 * after the first '{' up to the next '}', if that is not empty), mod
 * RING_SLOTS. "foo" is in slot 12182. The one function that places keys:
 * every module that asks where a key lives goes through it. */
unsigned ring_key_slot(const void *key, size_t klen);

/* Position of hash slot `slot` on the circle: slot << 50 | 1 << 49. */
uint64_t ring_slot_point(unsigned slot);

/* Writes up to `want` distinct node ids for hash slot `slot` (below
 * RING_SLOTS), in preference order (the slot's primary, its other
 * replicas, then the nodes its walk meets after: see above), into out;
 * returns how many (min(want, ring_size)). Computes the slot table first if
 * the ring changed since; then O(want) up to N, and a walk beyond. */
size_t ring_slot_lookup(ring *r, unsigned slot, size_t want, uint32_t *out);

/* Marks for when slots' replicas change (members.h: members_slot_settled).
 * A table computation that finds slot s's replicas (its row, in order)
 * not what they were records the mark set last as the slot's;
 * ring_slot_mark returns it (computing the table first if the ring changed
 * since). Set the mark before every change of the nodes or of N (the
 * computation is lazy: a change left without one would give its rows an
 * older mark). Every row changes at the first computation on a non-empty
 * ring, after ring_set_replicas, and when the ring empties. Marks start
 * at 0. */
void ring_set_mark(ring *r, uint64_t mark);
uint64_t ring_slot_mark(ring *r, unsigned slot);

/* How many hash slots node id is the primary of (0 when id is not on the
 * ring); they sum to RING_SLOTS over the nodes of a non-empty ring.
 * Computes the slot table first if the ring changed since, then O(1). */
size_t ring_slot_count(ring *r, uint32_t id);

/* How many hash slots node id is one of the N replicas of (0 when id is
 * not on the ring); they sum to min(N, ring_size) x RING_SLOTS. */
size_t ring_slot_places(ring *r, uint32_t id);

/* Position of point `index` of node nd (the layout above). */
uint64_t ring_point(const ring_node *nd, uint32_t index);

/* Writes up to `want` distinct node ids, in walk order, for the point h
 * into out (the first owns h's arc); returns how many (min(want, ring_size); 0 on an empty
 * ring). O(log points + steps * want), steps being the points walked:
 * about want for want much smaller than ring_size. */
size_t ring_lookup(const ring *r, uint64_t h, size_t want, uint32_t *out);

/* Fraction of the circle for which node id comes first (sums to 1 over the
 * nodes): the exact total of its arcs over 2^64, rounded once to a double.
 * 0 when id is not on the ring. O(1). */
double ring_share(const ring *r, uint32_t id);

#endif
