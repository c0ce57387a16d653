/*
 * members: the member list, SWIM failure detection, gossip, the ring.
 *
 * Every node knows every member by (ip, port) and orders what it knows of a
 * member by (incarnation, heartbeat, state): the incarnation is the member's
 * start time in ms, so a restarted node outranks its previous life; the
 * heartbeat is a counter only the member itself raises, to refute a
 * suspicion or a death verdict at its current pair; at an equal pair DEAD
 * outranks SUSPECT outranks ALIVE. An entry we receive replaces ours only
 * when it ranks higher (SWIM's and memberlist's rules), so stale news never
 * undoes a verdict: only the accused, answering with a higher heartbeat.
 *
 * Failure detection is SWIM with Lifeguard's local health, at a cost per
 * node that does not grow with the cluster:
 * - Every probe period (gossip_ms, times the local health multiplier) a node
 *   pings one member, going round a shuffled list. No ack within half the
 *   period: it asks `fanout` others to ping it on its behalf (PROBE_REQ);
 *   they relay the ack or answer NACK. No ack within 3 periods (longer than
 *   a brief stall of the member; probes overlap): the member is SUSPECT
 *   (still on the ring) and is told so directly. Suspects are pinged every
 *   period, a few at a time.
 * - A suspicion lasts suspicion_ms, scaled up with log10 of the cluster
 *   size; unrefuted, the member is DEAD (off the ring). Told it is suspected
 *   or dead, a member refutes with a higher heartbeat (or incarnation).
 * - Local health (Lifeguard): failed probes that the helpers did not nack
 *   either, refutations we had to make, and our own stalls raise a
 *   multiplier (0..8) that stretches our probe period and timeouts; acks
 *   lower it. A stalled node also forgives the time it lost.
 * - News (a member's state changed, it restarted, or it refuted) rides on
 *   the pings and acks and on a gossip message sent each period to `fanout`
 *   random members while there is news, each item a bounded number of times
 *   (3 x ceil(log10(n + 1))), newest first, at most MEMBERS_PIGGYBACK a
 *   message: every message has a bounded size.
 * - Pings and acks carry a digest of the membership (who is known, who is
 *   dead). When a peer's differs from ours twice in a row while neither has
 *   news in flight, the two exchange their whole lists, in chunks (a join,
 *   a healed partition); at most once per MEMBERS_SYNC_MS.
 * - The dead are pinged, about 3 times a period each by the cluster as a
 *   whole, so that healed partitions and restarted nodes are found again
 *   within a period or two. A member dead for forget_ms is
 *   forgotten (GONE: off the lists, its pair kept against stale news), and
 *   its slot is reused forget_ms later. A restarted node has a later
 *   incarnation, so it is always accepted back.
 *
 * Aliases: members are known by address, and a process may be reached at
 * more than the one it advertises (it binds 0.0.0.0 and a peers file names
 * it 127.0.0.2, or a host has two interfaces). Such an address is no
 * member: taken for one, it was pinged, the process answered for it, and it
 * stood on the ring beside the process, which then held two replica places
 * of a slot and acked the writes sent to the alias from its own address
 * (the writes went to stand-ins). So a ping says where it was sent (to_ip,
 * to_port) and carries its sender's random id for this life, and an ACK
 * says that address back when it is not the answering node's own:
 * - a node that hears its own ping (its id) knows the ping's address
 *   reaches it: an alias of itself; so is an address another node pinged
 *   it at, unless a member there was heard of at a life of its own (a
 *   sender's word takes no live member off the list); a ping, ours or
 *   another's, naming a live member's address (at a life of its own) was
 *   not sent to us but replayed (auth.h): dropped, unanswered, as its ACK
 *   would have made the pinger take that member for our alias;
 * - a node whose ping to an address is answered, directly (a helper's relay
 *   says nothing), by a process that advertises another address takes the
 *   pinged address for an alias of that process.
 * Either way the alias leaves the member list (off the ring, counted in no
 * list, never gossiped, forgotten never) and gossip about it is ignored
 * from then on; it is logged once. A process that itself advertises that
 * address (its own entry names it: a new setup) makes it a member again.
 * A node restarted at the same address answers for that address: a new
 * life, not an alias. Only nodes of this version find aliases (earlier
 * ones neither say where a ping went nor say it back): during a rolling
 * upgrade an alias stays a member where it was one.
 *
 * The ring holds the ALIVE and SUSPECT members and is updated one member at
 * a time; whenever the set changes the epoch grows and the `changed`
 * callback is called (also when a live member restarts: it may have lost
 * its records). Member indexes are stable while the member is known; index
 * 0 is the node itself.
 */
#ifndef DHT_MEMBERS_H
#define DHT_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "ring.h"
#include "wire.h"

enum member_state { MEMBER_ALIVE = 0, MEMBER_SUSPECT = 1, MEMBER_DEAD = 2, MEMBER_GONE = 3 };

#define MEMBERS_PIGGYBACK 32     /* news items a message carries at most */
#define MEMBERS_SYNC_CHUNK 48    /* entries a datagram of a full exchange carries */
#define MEMBERS_SYNC_MS 5000     /* least time between two full exchanges */
#define MEMBERS_MAX_HEALTH 8     /* local health multiplier bound */
#define MEMBERS_MAX_HEARTBEAT (1ull << 48) /* heartbeats past it are no member's */
#define MEMBERS_MAX 65536        /* members a node holds at most (dead and gone
                                    included): news of more is ignored */

typedef struct member {
    struct sockaddr_in addr;
    uint32_t ip;          /* network byte order */
    uint16_t port;        /* host byte order */
    uint8_t state;
    uint8_t news;         /* times our entry still goes out as news */
    uint64_t incarnation;
    uint64_t heartbeat;
    uint64_t deadline;    /* SUSPECT: dead then; DEAD: gone then; GONE: slot free then */
    uint64_t since;       /* node_now when it was added or its state or Redis
                           * port last changed (members_slot_settled) */
    uint16_t resp_port;   /* its Redis port as gossiped (0: none or not heard yet) */
    bool no_resp;         /* it said it runs no Redis port (resp_port 0: none) */
    bool siphash;         /* its last GOSSIP said it opens SipHash seals (auth.h) */
    bool placed;          /* a GOSSIP of its own was heard: placement is its */
    uint32_t placement;   /* how it places hash slots (members_placement; 0: an
                           * earlier version that does not say) */
    bool alias;           /* GONE for good: an address of another member (or of
                           * this node), never one itself (see Aliases above) */
    int64_t clock;        /* its wall clock less our node_now when its last
                           * GOSSIP came (INT64_MIN: none; node.h lead) */
    int64_t mono;         /* its monotonic clock less our node_now, by the
                           * reading the reckoning starts from (members_mono_late;
                           * INT64_MIN: none) */
    uint64_t mono_at;     /* node_now when that reading came */
    uint64_t mono_inc;    /* the life it is of */
    uint32_t pos[3];      /* place in the news, suspect and dead lists (internal) */
} member;

/* A member's monotonic clock (Peer.mono: ms, no step of its wall clock moves
 * it, suspends counted) against our node_now. Each GOSSIP it sends for
 * itself, and each forward of its taken, is a reading sent at most then:
 * the reckoning is the highest (the quickest to come), which a recording
 * sent again later cannot lower, let down by 1 ms a second for clocks
 * that run at rates of their own. members_heard_mono takes a reading of
 * life inc; members_mono_late judges a message of that life whose clock
 * read mono when sent: 1 when it is more than MEMBERS_LATE_MS behind the
 * reckoning (late: a forward is dropped, node.c forward_replayed, a
 * GOSSIP's wall clock not read, its lead, node.h node_clock), 0 when not,
 * -1 when it says no clock or none of that life was heard. */
#define MEMBERS_LATE_MS 1000
void members_heard_mono(members *m, uint32_t i, uint64_t inc, uint64_t mono);
int members_mono_late(const members *m, uint32_t i, uint64_t inc, uint64_t mono);

/* How a node places hash slots, as every GOSSIP it sends says: the scheme
 * (MEMBERS_PLACEMENT_SCHEME: ring.h's, slots capped on primaries and on
 * replica places), N and its ring points (--replicas, --vnodes). Nodes
 * whose placements differ do not agree on any slot's replicas, so a
 * member heard to place slots otherwise is logged and counted (INFO,
 * CLUSTER INFO, /metrics: dht_members_misplaced). Earlier versions, which
 * placed slots without caps on replica places, say nothing (0). */
#define MEMBERS_PLACEMENT_SCHEME 2u /* 2: a primary under its cap in freak rings too */
uint32_t members_placement(unsigned replicas, unsigned vnodes);

/* Live members whose last GOSSIP said they place hash slots otherwise than
 * this node (an earlier version included). */
size_t members_misplaced(members *m);

typedef void (*members_changed_fn)(void *ctx);

/* Creates the list with the node itself as member 0; changed(ctx) is called
 * as said above. NULL on no memory. */
members *members_new(node *n, members_changed_fn changed, void *ctx);
void members_free(members *m);

/* Adds members from the peers file, assumed alive until probed. The node's
 * own address is ignored. 0, or -1 on no memory (those added so far stay). */
int members_add_seeds(members *m, const ring_node *seeds, size_t k);
int members_add_seed(members *m, uint32_t ip, uint16_t port);

/* Runs what is due (probes, gossip, suspicion timeouts). Returns the time
 * it next has something to do. */
uint64_t members_tick(members *m, uint64_t now);

/* Handles a GOSSIP message (ping, ack, nack, probe request, news, or a
 * chunk of a full exchange) from `from`, whose message ID is id. */
void members_receive(members *m, const uint8_t *id, size_t idlen, const Peer *p,
                     const struct sockaddr_in *from);

size_t members_total(const members *m);   /* slots: indexes are below this */
size_t members_known(const members *m);   /* all known, dead too, gone not */
size_t members_live(const members *m);    /* alive + suspect, self included */
const member *members_at(const members *m, size_t i);
uint64_t members_epoch(const members *m); /* grows when the live set changes */
unsigned members_health(const members *m); /* local health multiplier, 0 best */

/* The Redis port of member i (its --resp-port), as its gossip entry says:
 * every entry carries the member's Redis port, learnt from the member itself
 * (its pings and acks) or from others' gossip. Until this node has heard
 * it, the port at the same offset from the member's UDP port as this
 * node's Redis port is from its own (clusters started with one rule for
 * all, as scripts/cluster's {port}, are right from the start); 0 when the
 * member said it runs none (no_resp), or this node has no Redis port and
 * has heard of none. */
uint16_t members_resp_port(const members *m, size_t i);

/* Addresses found to reach another member or this node (aliases, above):
 * /metrics dht_member_aliases. */
size_t members_aliases(const members *m);

/* This node's identity for this life: random, in its pings' entry. */
uint64_t members_self_id(const members *m);

/* Index of the known (not gone) member at ip:port, or -1. Constant time. */
long members_find(const members *m, uint32_t ip, uint16_t port);

/* Whether ip:port is a node's address this node knows of: itself, a member,
 * or one forgotten whose slot is not reused yet. Constant time. */
bool members_is_node(const members *m, uint32_t ip, uint16_t port);

/* True when this node sees most of the cluster alive: more live members
 * (itself included) than members that died within cfg.majority_ms. A node
 * cut off with a minority sees the others die together; members long dead
 * (crashed, not partitioned away) no longer count. Found at most every
 * 50 ms. Always true with majority_ms 0. */
bool members_majority(members *m);

/* True when a live member other than this node runs at ip. Linear time. */
bool members_has_host(const members *m, uint32_t ip);

/* The live members (alive or suspect): nodes[k] is member map[k]. Both
 * arrays need room for members_total. Returns how many. */
size_t members_live_set(const members *m, ring_node *nodes, uint32_t *map);

/* Up to `want` live member indexes for hash slot `slot` (ring_key_slot of
 * a key), preference order (ring_slot_lookup): the first N are the slot's
 * replicas. The first call after a change of the live set computes the
 * ring's slot table (ring.h). */
size_t members_pref(const members *m, unsigned slot, size_t want, uint32_t *out);

/* Whether hash slot `slot` is settled here: neither its replicas (the
 * ring's row for it) nor the state (alive, suspect) or Redis port of one
 * of them changed within members_settle_ms. A change reaches the members
 * one after another as news spreads, so for a while they place a slot
 * differently: those that see a member suspect serve its slots at the
 * next replica alive, those that see it dead at the first of the ring
 * without it (another node, where capped loads move slots), those that
 * have not heard of a joiner without it. A Redis Cluster client sent back
 * and forth between them by -MOVED gave up after 16 redirections (in 3 of
 * 11 runs of tests/blackbox/test_cluster_redis_cluster.py, about a second
 * after a node was killed; dht-sim: 130 of seeds 1..300), so in cluster
 * mode a node redirects only settled slots and serves the others wherever
 * asked (resp.c: keys_here), as any node may coordinate any key. */
bool members_slot_settled(members *m, unsigned slot);

/* A generous bound on how long news takes to reach every member: twice
 * news_budget gossip periods and a second (2.2 s at 6 members, 3.4 s at 10
 * to 100 known). An item goes out news_budget times, fanout messages a
 * round, so it spreads in fewer periods: this is a margin, not a bound
 * proved; members that disagree for longer (a member's state flapping, a
 * node stalled) may still redirect a client back and forth. */
uint64_t members_settle_ms(const members *m);

/* Hash slots not settled here (CLUSTER INFO dht_slots_settling). O(slots). */
size_t members_slots_settling(members *m);

/* Hash slots member i is the primary of (first in the list); 0 if off the
 * ring. */
size_t members_slots(const members *m, size_t i);

/* Writes "ip:port state\n" per known member into buf (NUL-terminated,
 * truncated to cap). Returns the length written. */
size_t members_format(const members *m, char *buf, size_t cap);

const char *members_state_name(int state);

/* Debug hook: stop probing and gossiping for ms. */
void members_pause(members *m, uint64_t ms);

#endif
