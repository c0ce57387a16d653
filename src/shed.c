/* Closing a connection a listener has no memory for (shed.h). */
#include "shed.h"

void conn_spare_init(conn_spare *sp, uv_stream_t *listener, uv_connection_cb cb) {
    *sp = (conn_spare){.listener = listener, .cb = cb};
}

static void on_spare_closed(uv_handle_t *h) {
    conn_spare *sp = h->data;
    sp->busy = false;
    if (sp->waiting) {
        sp->waiting = false;
        sp->cb(sp->listener, 0);
    }
}

void conn_shed(conn_spare *sp) {
    if (sp->busy) {
        sp->waiting = true; /* libuv holds it, the listener unwatched, until then */
        return;
    }
    sp->busy = true;
    uv_tcp_init(sp->listener->loop, &sp->tcp);
    sp->tcp.data = sp;
    /* on failure libuv has closed the connection itself */
    (void)uv_accept(sp->listener, (uv_stream_t *)&sp->tcp);
    uv_close((uv_handle_t *)&sp->tcp, on_spare_closed);
}
