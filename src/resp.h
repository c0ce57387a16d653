/*
 * resp: a Redis protocol (RESP2) front end on TCP, on with --resp-port.
 *
 * Redis clients (redis-cli, redis-benchmark, client libraries) talk to any
 * node. GET, SET, DEL, EXISTS, MGET and MSET run through repl_client_op
 * like UDP requests, so any node serves any key with the cluster's N/R/W
 * (the node coordinates even when it is not one of the key's replicas).
 * PING, ECHO, INFO, QUIT, SELECT 0 and what clients send on connecting
 * (COMMAND, CLIENT, CONFIG GET) are answered here; DBSIZE and FLUSHALL
 * count and wipe this node's store only. Multi-key commands are not atomic:
 * each key is its own operation, and the reply waits for all of them.
 *
 * A connection is a state machine:
 *
 *   STATE      READS  RUNS COMMANDS  LEAVES WHEN
 *   READING    yes    yes            EOF -> FINISHING; QUIT or a protocol
 *                                    error -> QUITTING; I/O error -> CLOSED
 *   FINISHING  no     those buffered every reply written -> CLOSED
 *   QUITTING   no     no             every reply written -> CLOSED
 *   CLOSED     no     no             the handle is closed and the last
 *                                    operation in flight completed: freed
 *
 * so a completion arriving after the client left finds its connection
 * still allocated, and drops its result.
 *
 * Replies go out in request order whatever order operations complete in:
 * every command takes a slot in its connection's queue (MGET one per key,
 * after the array header); completions fill slots, the filled prefix of the
 * queue moves to the output buffer, and the output is written once per loop
 * iteration.
 *
 * Bounds, per connection: a command of at most 4 MiB, a bulk string of at
 * most 1 MiB, an inline command or length line of at most 64 KiB, at most
 * 1M arguments; beyond them, or on malformed input, the client gets
 * "-ERR Protocol error: ..." and is disconnected, as Redis does. Keys of
 * 1..WIRE_MAX_KEY bytes and values of at most WIRE_MAX_VALUE bytes are the
 * store's limits; others get an -ERR reply. Reading pauses while 1024
 * replies are outstanding or 4 MiB of replies wait to be written.
 */
#ifndef DHT_RESP_H
#define DHT_RESP_H

#include "node.h"

/* Listens on cfg.bind_ip:cfg.resp_port (TCP) and serves Redis clients on
 * n's loop for the life of the process; n->resp is the listener. Returns 0,
 * or a negative libuv error after printing why (nothing is left listening). */
int resp_start(node *n);

#endif
