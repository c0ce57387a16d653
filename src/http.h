/*
 * http: a small HTTP/1.1 front end for operators, on --http-port.
 *
 *   GET /         a self-contained page (no external resources) that polls
 *                 /status every 2 s and draws the ring and the member list
 *   GET /metrics  Prometheus text format 0.0.4: node_stats, store and
 *                 member gauges, the coordinated latency histogram
 *   GET /status   JSON: this node, its store, N/R/W and every member with
 *                 its state and ring share
 *
 * One request per connection: every response carries Connection: close.
 * Anything but GET is 405, an unknown path 404, a request line that is not
 * "METHOD /target HTTP/1.x" 400, and a request head over HTTP_MAX_HEAD
 * bytes 431. A connection is a small state machine (read the head, write
 * the response, half-close and drain until the peer closes), bounded in
 * time at every state; at most HTTP_MAX_CONNS are open at once, the others
 * are closed as soon as they are accepted. The server owns its
 * connections; a connection owns its buffers and frees them when both of
 * its handles are closed, so a peer that vanishes at any point costs
 * nothing.
 */
#ifndef DHT_HTTP_H
#define DHT_HTTP_H

#include "node.h"

#define HTTP_MAX_HEAD 8192  /* request line + headers, bytes */
#define HTTP_MAX_CONNS 64

/* Listens on cfg.bind_ip:cfg.http_port and stores the server in n->http.
 * 0, or a negative libuv error after printing why. */
int http_start(node *n);

#endif
