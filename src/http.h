/*
 * http: a small HTTP/1.1 front end for operators, on --http-port.
 *
 *   GET /         a self-contained page (no external resources) that polls
 *                 /status every 2 s and draws the ring and the member list
 *   GET /metrics  Prometheus text format 0.0.4: node_stats, store and
 *                 member gauges, the coordinated latency histogram
 *   GET /status   JSON: this node, its store, N/R/W and every member with
 *                 its state, the hash slots it is the primary of ("slots")
 *                 and their share of the 16384 ("share")
 *
 * One request per connection: every response carries Connection: close.
 * Anything but GET is 405, an unknown path 404, a request line that is not
 * "METHOD /target HTTP/1.x" 400, and a request head over HTTP_MAX_HEAD
 * bytes 431. On a loopback address, a GET whose Host names anything but an
 * IP literal or localhost is 421 (http_host_is_local: DNS rebinding). A connection is a small state machine (read the head, write
 * the response, half-close and drain until the peer closes), bounded in
 * time at every state; at most HTTP_MAX_CONNS are open at once: a new one
 * takes the place of the oldest still sending its head (or answered and
 * lingering), so that slow heads cannot keep requests out, and is closed
 * when every other is being answered. The server owns its
 * connections; a connection owns its buffers and frees them when both of
 * its handles are closed, so a peer that vanishes at any point costs
 * nothing.
 *
 * The pages have no authentication and /status lists every member: they
 * are for the operator of the machine, so the port listens on loopback
 * (HTTP_DEFAULT_BIND) unless --http-bind says otherwise. A web page the
 * operator opens could still reach it by DNS rebinding (its host name
 * re-resolved to 127.0.0.1: the browser sends the page's requests to the
 * node and lets it read the answers), but such requests carry the page's
 * host name in Host, and a node on loopback refuses those.
 */
#ifndef DHT_HTTP_H
#define DHT_HTTP_H

#include <uv.h>

#include "node.h"

#define HTTP_MAX_HEAD 8192  /* request line + headers, bytes */
#define HTTP_MAX_CONNS 64
#define HTTP_DEFAULT_BIND "127.0.0.1"

/* A request head, as http_parse_head finds it: pointers into its buffer. */
typedef struct http_request {
    const char *method;  /* a token (RFC 9110) */
    size_t method_len;
    const char *path;    /* the target up to its first '?' or '#': starts with '/' */
    size_t path_len;
    size_t head_len;     /* bytes of the head, its ending empty line included */
} http_request;

/* Parses the request head at the start of buf[0..len) (what a connection
 * has received so far), without sockets. The head ends at the first empty
 * line (LF LF or LF CR LF), which must come within HTTP_MAX_HEAD bytes;
 * its first line must be "METHOD SP /target SP HTTP/1.d", ended by LF or
 * CRLF, the target without control characters, spaces or bytes over 126.
 * Returns the status to answer with:
 *   0    the head has not ended yet: call again with more bytes;
 *   200  a GET: every field of *req filled; the caller routes the path
 *        (404 if it has no such page);
 *   400  the request line is malformed (req->head_len filled);
 *   405  the method is not GET (req->head_len and req->method filled);
 *   431  no end of head within HTTP_MAX_HEAD bytes.
 * Fields not said filled are left undefined; pointers point into buf. */
int http_parse_head(const char *buf, size_t len, http_request *req);

/* The value of the first Host field of head[0..head_len) (a head as
 * http_parse_head found it, its request line first), without the blanks
 * around it: true with *host and *len set, false if there is none. */
bool http_find_host(const char *head, size_t head_len, const char **host, size_t *len);

/* Whether a Host value names no host a DNS name could point elsewhere: empty,
 * localhost, an IPv4 literal (digits and dots) or an IPv6 one in brackets,
 * each with an optional :port. Case-insensitive. */
bool http_host_is_local(const char *host, size_t len);

/* Listens on cfg.http_bind (NULL: HTTP_DEFAULT_BIND):cfg.http_port on
 * loop (an IPv4 or IPv6 address) and serves node n's pages
 * for the life of the process. 0, or a negative libuv error after printing
 * why. */
int http_start(uv_loop_t *loop, node *n);

#endif
