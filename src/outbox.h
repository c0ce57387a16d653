/*
 * outbox: node-to-node messages bound for the same peer within one loop
 * iteration leave in one datagram.
 *
 * Under load a node answers many datagrams per loop iteration (recvmmsg
 * batches, RESP pipelines), and most of what it sends goes to the same few
 * replicas. Each message still costs a system call on both sides when sent
 * alone; queued here, the messages to one peer go out together, as a batch
 * (wire.h: a Msg of kind WIRE_KIND_BATCH whose payload is the framed Msgs),
 * when the driver flushes (node_flush, node_tick: once per loop iteration)
 * or when the peer's buffer is full. A lone message is sent as it is.
 * Nothing waits longer than the loop iteration that queued it, so batching
 * adds no latency, except what the sender says may wait (`due`): a message
 * nobody waits for, such as a copy of a write whose quorum is made without
 * it (repl.c), stays until `due` (NODE_LAZY_MS later) unless something
 * urgent for the same peer takes it along first. Under a stream of a few
 * writes per loop iteration, that wakes each replica about once a
 * millisecond instead of once an iteration. Messages to one peer leave in
 * the order they were queued: one too big for a batch goes alone, after
 * the batch queued before it.
 *
 * Only members are sent batches (node_send_peer decides); anything else,
 * such as a test tool reading a replica directly, gets plain datagrams.
 * Node-to-node messages to members all go through here, so that they keep
 * their order: a push of records (anti-entropy, re-replication) sent ahead
 * of writes queued before it made the replicas refuse those writes as
 * older than what they held (dht_restamps_total), costing a round trip.
 */
#ifndef DHT_OUTBOX_H
#define DHT_OUTBOX_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

/* Creates the outbox of n. NULL on failure. */
outbox *outbox_new(node *n);

/* Frees it. Queued messages are dropped (the node is ending). */
void outbox_free(outbox *o);

/* Queues one encoded Msg (at most WIRE_MAX_DATAGRAM bytes) for `to`, to
 * leave at the next flush (due 0) or at the first flush at or after `due`
 * (monotonic ms). 0, or a negative error when it could not be queued nor
 * sent. */
int outbox_add(outbox *o, const struct sockaddr_in *to, const uint8_t *msg, size_t len,
               uint64_t due);

/* Sends what is queued for the peers that have an urgent message, or one
 * due at or before now. Returns the earliest due time of what is left
 * (UINT64_MAX: nothing). */
uint64_t outbox_flush(outbox *o, uint64_t now);

#endif
