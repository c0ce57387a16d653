/*
 * repl: client operations over the replicas, and keeping replicas whole.
 *
 * A key's replicas are the first N live members of the preference list of
 * its hash slot (ring_key_slot, members_pref). The node that serves a client operation (the
 * coordinator) stamps writes with its hybrid logical clock, sends them to
 * every replica and answers once W replicas acknowledged; reads ask R
 * replicas (this node first when it is one) and answer from the newest
 * record of their R replies, asking the others too when one of them is
 * late or none found the key ("not found" needs every replica). Replies
 * feed read repair: replicas that answered with an older record (or none)
 * are sent the newest one.
 *
 * A replica that does not answer a write in time is replaced by a stand-in,
 * the next live member of the preference list (sloppy quorum); the stand-in
 * keeps a hint and hands the record to the replica once that replica is
 * alive again (hinted handoff).
 *
 * When the live set changes, every node pushes each record it holds to the
 * record's current replicas (re-replication after a death, hand-off after a
 * join). Every sync period, each node also exchanges per-bucket digests of
 * the records it shares with each peer (a two-level hash tree: 256 buckets
 * of 64 hash slots, each the XOR of hash(key, stamp)); buckets that differ are
 * pushed both ways, so replicas that diverged for any reason converge.
 * Applying a record is idempotent and ordered by stamp, so pushing too much
 * costs bandwidth, never correctness.
 *
 * Ownership: operations copy what they keep (key, value, client address);
 * callers may free their buffers when repl_client_op returns.
 */
#ifndef DHT_REPL_H
#define DHT_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "ring.h"
#include "wire.h"

#define REPL_MAX_N 7
#define REPL_MAX_WAITS 5 /* request timeouts a client op may wait for live replicas */
_Static_assert(REPL_MAX_N <= RING_MAX_REPLICAS, "the ring places up to N replicas");

/* The outcome of a client operation, handed to its completion. val is
 * valid only during the call. */
typedef struct repl_result {
    uint32_t err;           /* wire_err */
    const uint8_t *val;
    size_t vlen;
    int32_t version;
} repl_result;

struct repl_origin;
typedef void (*repl_done_fn)(node *n, const struct repl_origin *o,
                             const repl_result *res);

/* Where an answer goes: a completion with its context, plus the client's
 * message ID and address for UDP clients (copied). The completion gets the
 * operation's copy of the origin. */
typedef struct repl_origin {
    repl_done_fn done;
    void *ctx;
    uint8_t id[64];
    size_t idlen;
    struct sockaddr_in addr;
    uint64_t start_ms;
    uint64_t start_us;  /* node_now_us, for the latency histogram */
    bool any_replica;   /* a read any replica may answer (READONLY); else, with
                         * W + R <= N, the slot's first live replica answers it */
    bool admitted;      /* one of a multi-key command's operations, admitted with
                         * it (repl_admits): not refused for max_inflight */
} repl_origin;

/* Creates n's replication state. NULL when out of memory. */
repl *repl_new(node *n);
void repl_free(repl *r);

/* Runs what is due at now: operation timeouts and resends, re-replication
 * after a membership change, hinted handoff, anti-entropy. Returns when it
 * is next due. */
uint64_t repl_tick(repl *r, uint64_t now);

/* Whether ops more client operations may start now (the operations not
 * answered yet stay within max_inflight); counts a refusal. A command of
 * several keys is admitted, or refused, whole. */
bool repl_admits(node *n, size_t ops);

/* Runs PUT, GET or REMOVE for key as coordinator. origin->done is called
 * exactly once, possibly before this returns. Returns 0, or -1 when too many
 * operations are in flight (done is then not called: answer overload). */
int repl_client_op(node *n, const repl_origin *origin, uint32_t cmd,
                   const uint8_t *key, size_t klen, const uint8_t *val,
                   size_t vlen, int32_t version);

/* The replicas of hash slot `slot` (the first N live members of its
 * preference list), the first alive one (not suspect) moved to the front:
 * out[0] is the node the slot's UDP requests are forwarded to, the slot's
 * primary unless that one is suspected. All suspect: the list as it is.
 * (Redis Cluster clients are told of repl_slot_redis_replicas'.)
 * Writes up to REPL_MAX_N member indexes; returns how many. */
size_t repl_slot_replicas(node *n, unsigned slot, uint32_t *out);

/* The replicas of hash slot `slot` that Redis clients may be sent to: those
 * with a Redis port (members_resp_port; a member may run without one), the
 * first alive one (else the first suspected) first, the others in
 * preference order. What CLUSTER SLOTS and SHARDS list, -MOVED names the
 * first. Writes up to REPL_MAX_N member indexes; returns how many (0: none
 * has a Redis port). */
size_t repl_slot_redis_replicas(node *n, unsigned slot, uint32_t *out);

/* Where a Redis Cluster client that sent a command on hash slot `slot`
 * here is sent (cluster mode, resp.c's -MOVED): the member index of the
 * slot's first replica for Redis clients (repl_slot_redis_replicas), or -1
 * when this node serves it: it is that replica, or any of them when
 * any_replica (a read on a READONLY connection), or none has a Redis
 * port, or the slot is not settled here (members.h: members_slot_settled:
 * the members may not agree yet on where it is served, and redirecting
 * could send a client round in circles), or a live member places slots
 * otherwise (members_misplaced: a rolling upgrade across placement
 * schemes; the two never agree). dht-sim checks that following it from
 * any node never goes round in a circle once the membership has been
 * agreed for a while. */
long repl_slot_redirect(node *n, unsigned slot, bool any_replica);

/* 1 when this node should coordinate an operation on key: it is one of the
 * key's replicas, or none of them is above suspicion. 0 otherwise, with
 * *owner the member index to forward to (repl_slot_replicas' first). */
int repl_is_replica(node *n, const uint8_t *key, size_t klen, uint32_t *owner);

/* Handles replica traffic: WRITE, WRITE_ACK, READ, READ_REPLY, SYNC, DIGEST.
 * id is the Msg's messageID. Everything is validated; nothing trusted. */
void repl_on_peer(node *n, const uint8_t *id, size_t idlen, const Peer *p,
                  const struct sockaddr_in *from);

/* Called by members when the live set changed. */
void repl_membership_changed(node *n);

/* Called when the store was wiped (node_wipe): the other replicas still
 * hold what it held, so for the time membership takes to settle this
 * node's "not found" is not believed alone (PEER_FLAG_UNSETTLED). */
void repl_store_wiped(node *n);

/* Hinted handoff: a round every REPL_HANDOFF_MS sends each member
 * REPL_HANDOFF_BYTES of the keys and values held for it, at most. */
#define REPL_HANDOFF_MS 250
#define REPL_HANDOFF_BYTES (256 << 10)

/* Hinted-handoff records waiting for their replicas (metrics). */
size_t repl_hints(const repl *r);

/* In-flight operation count (metrics). */
size_t repl_inflight(const repl *r);

/* The overloadWaitTime to tell a client turned away (ms): about the time
 * the operations in flight take to drain. */
uint32_t repl_overload_wait_ms(const repl *r, const node *n);

/* Smoothed round trip of replica requests to member m (ms; 0: none yet). */
uint64_t repl_rtt_ms(const repl *r, uint32_t m);

#endif
