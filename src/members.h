/*
 * members: the member list, gossip and failure detection.
 *
 * Every node knows every member by (ip, port) and orders what it knows of a
 * member by the pair (incarnation, heartbeat): the incarnation is the
 * member's start time in ms, so a restarted node outranks its previous life;
 * the heartbeat grows by one every gossip period, and only the member itself
 * raises it. Each gossip period a node sends its whole list to `fanout`
 * random live members (and to one dead member, so that healed partitions and
 * restarted nodes are found again). A received entry with a greater pair
 * replaces ours and makes the member alive (unless the sender already holds
 * it dead at that pair); an entry with an equal pair and a dead verdict
 * spreads that verdict; anything older is ignored, so a dead verdict is never
 * undone by stale news, only by the member's own newer heartbeat.
 *
 * A member whose heartbeat has not grown for suspect_ms is SUSPECT (still on
 * the ring), for dead_ms DEAD (off the ring). Members are never forgotten;
 * indexes are stable for the life of the process and 0 is the node itself.
 *
 * The ring holds the ALIVE and SUSPECT members; whenever that set changes the
 * ring is rebuilt, the epoch grows and the `changed` callback is called (it
 * is also called when a live member restarts: it may have lost its records).
 */
#ifndef DHT_MEMBERS_H
#define DHT_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "ring.h"
#include "wire.h"

enum member_state { MEMBER_ALIVE = 0, MEMBER_SUSPECT = 1, MEMBER_DEAD = 2 };

typedef struct member {
    struct sockaddr_in addr;
    uint32_t ip;          /* network byte order */
    uint16_t port;        /* host byte order */
    uint64_t incarnation;
    uint64_t heartbeat;
    int state;
    uint64_t seen_ms;     /* loop time when the pair last grew */
    uint64_t changed_ms;  /* loop time of the last state change */
    uint64_t probed_ms;   /* loop time of the last direct probe */
} member;

typedef void (*members_changed_fn)(void *ctx);

/* Creates the list with the node itself as member 0; changed(ctx) is called
 * as said above. NULL on no memory. */
members *members_new(node *n, members_changed_fn changed, void *ctx);
void members_free(members *m);

/* Adds a member from the peers file (assumed alive until silent for
 * dead_ms). The node's own address is ignored. 0, or -1 on no memory. */
int members_add_seed(members *m, uint32_t ip, uint16_t port);

/* Adds k members at once (one ring build). 0, or -1 on no memory (those
 * added so far stay). */
int members_add_seeds(members *m, const ring_node *seeds, size_t k);

/* Gossips when a round is due (every gossip_ms, the first at once) and
 * times out silent members. Returns the time of the next round. */
uint64_t members_tick(members *m, uint64_t now);

/* Merges a GOSSIP (or any Peer carrying `from` and `members`). */
void members_merge(members *m, const Peer *p);

size_t members_total(const members *m);   /* all known, dead too */
size_t members_live(const members *m);    /* alive + suspect, self included */
const member *members_at(const members *m, size_t i);
uint64_t members_epoch(const members *m); /* grows when the live set changes */

/* Index of the member at ip:port, or -1. Constant time (a hash index). */
long members_find(const members *m, uint32_t ip, uint16_t port);

/* The live members (alive or suspect), as the ring is built from them:
 * nodes[k] is member map[k]. Both arrays need room for members_total.
 * Returns how many. */
size_t members_live_set(const members *m, ring_node *nodes, uint32_t *map);

/* Up to `want` live member indexes for ring point h, preference order. */
size_t members_pref(const members *m, uint64_t h, size_t want, uint32_t *out);

/* Share of the ring owned (as first in the list) by member i; 0 if off it. */
double members_share(const members *m, size_t i);

/* Writes "ip:port state\n" per member into buf (NUL-terminated, truncated to
 * cap). Returns the length written. */
size_t members_format(const members *m, char *buf, size_t cap);

const char *members_state_name(int state);

/* Debug hook: stop gossiping (sending and timing out others) for ms. */
void members_pause(members *m, uint64_t ms);

#endif
