/*
 * shed: closing a connection a listener has no memory for, so that the
 * listener goes on hearing the next ones.
 *
 * libuv accepts a connection before the listener's callback runs, and stops
 * watching the listener until the callback takes the connection with
 * uv_accept. A callback that returns without it (no memory for the
 * connection's state) leaves the port deaf for good: every later client
 * waits in the kernel's backlog and nobody answers, though the node lives
 * on. conn_shed takes such a connection into the listener's spare handle
 * and closes it (the client sees the connection end, as at a refusal); one
 * that arrives while the spare is still closing waits for it, and the
 * listener's callback runs for it again then (when memory may be back).
 * The Redis and HTTP ports (resp.c, http.c) each keep one.
 */
#ifndef DHT_SHED_H
#define DHT_SHED_H

#include <stdbool.h>

#include <uv.h>

typedef struct conn_spare {
    uv_tcp_t tcp;
    uv_stream_t *listener;
    uv_connection_cb cb; /* the listener's, run again for a connection that waited */
    bool busy;           /* the last connection shed is closing */
    bool waiting;        /* one waits for the spare */
} conn_spare;

void conn_spare_init(conn_spare *sp, uv_stream_t *listener, uv_connection_cb cb);

/* From the listener's callback, in place of uv_accept: the connection
 * accepted is closed. */
void conn_shed(conn_spare *sp);

#endif
