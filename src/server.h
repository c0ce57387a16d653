/*
 * server: the libuv driver of a node (dht-server).
 *
 * server_run() opens the store, binds the UDP port, creates the node (node.h)
 * with an environment of real time, the UDP socket and getrandom, joins the
 * cluster from the peers file and runs the loop until SIGINT/SIGTERM or
 * SHUTDOWN. Datagrams go to node_receive; node_tick runs once per loop
 * iteration and a timer wakes the loop at the deadline it returns; the
 * Redis and HTTP front ends (resp.h, http.h) run on the same loop.
 */
#ifndef DHT_SERVER_H
#define DHT_SERVER_H

#include "node.h"

/* Runs a node until it is told to stop. Returns 0 on a clean stop, or a
 * negative error after printing why it could not start. */
int server_run(const node_config *cfg);

#endif
