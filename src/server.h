/*
 * server: the UDP front end of a node and its life cycle.
 *
 * server_run() opens the store, binds the UDP port, joins the cluster from
 * the peers file and runs the loop until SIGINT/SIGTERM or SHUTDOWN. Each
 * datagram is decoded (wire), checked (checksum, bounds) and either answered
 * from the reply cache, served here (this node is one of the key's
 * replicas), or forwarded with the client's address to the key's first
 * replica, which answers the client directly.
 */
#ifndef DHT_SERVER_H
#define DHT_SERVER_H

#include "node.h"

/* Fills cfg with the defaults. */
void server_defaults(node_config *cfg);

/* Runs a node until it is told to stop. Returns 0 on a clean stop, or a
 * negative error after printing why it could not start. */
int server_run(const node_config *cfg);

#endif
