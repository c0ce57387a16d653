/* outbox: per-peer batching of node-to-node messages within a loop iteration. */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define SLOTS 64                 /* peers with messages queued at once */
#define BATCH_BYTES (16 << 10)   /* payload of one batch datagram */

typedef struct slot {
    struct sockaddr_in to;
    size_t len;                  /* bytes of framed messages in buf */
    size_t count;
    uint64_t due;                /* 0: an urgent message is queued; else when
                                  * the oldest message that may wait must leave */
    uint8_t *buf;                /* BATCH_BYTES, allocated on first use */
} slot;

struct outbox {
    node *n;
    size_t used;                 /* slots[0..used) hold messages */
    slot slots[SLOTS];
};

static const uint8_t batch_id[4] = {'b', 'a', 't', 'c'};

/* Sends a slot's messages: a lone one as it is, several as a batch. */
static void send_slot(outbox *o, slot *s) {
    if (s->count == 1) {
        size_t len;
        const uint8_t *p = s->buf, *end = s->buf + s->len, *msg;
        if (wire_batch_next(&p, end, &msg, &len) == 1) node_send_sealed(o->n, &s->to, msg, len);
    } else if (s->count > 1) {
        uint8_t dgram[NODE_MAX_PEER_DATAGRAM];
        size_t len = wire_pack_msg(dgram, sizeof dgram, batch_id, sizeof batch_id, s->buf,
                                   s->len, WIRE_KIND_BATCH);
        if (len) node_send_sealed(o->n, &s->to, dgram, len);
    }
    s->len = s->count = 0;
}

uint64_t outbox_flush(outbox *o, uint64_t now) {
    uint64_t next = UINT64_MAX;
    size_t kept = 0;
    for (size_t i = 0; i < o->used; i++) {
        slot *s = &o->slots[i];
        if (s->due > now) { /* only messages that may wait, and they may still */
            if (s->due < next) next = s->due;
            if (kept != i) { /* swap, so that the buffers stay owned by a slot */
                slot t = o->slots[kept];
                o->slots[kept] = *s;
                *s = t;
            }
            kept++;
        } else {
            send_slot(o, s);
        }
    }
    o->used = kept;
    return next;
}

outbox *outbox_new(node *n) {
    outbox *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->n = n;
    return o;
}

void outbox_free(outbox *o) {
    if (!o) return;
    for (size_t i = 0; i < SLOTS; i++) free(o->slots[i].buf);
    free(o);
}

int outbox_add(outbox *o, const struct sockaddr_in *to, const uint8_t *msg, size_t len,
               uint64_t due) {
    uint8_t head[10];
    size_t hlen = wire_put_varint(head, len), need = hlen + len;
    slot *s = NULL;
    for (size_t i = 0; i < o->used && !s; i++)
        if (o->slots[i].to.sin_addr.s_addr == to->sin_addr.s_addr &&
            o->slots[i].to.sin_port == to->sin_port)
            s = &o->slots[i];
    if (need > BATCH_BYTES) { /* alone, behind what is queued for the peer */
        if (s) send_slot(o, s);
        return node_send_sealed(o->n, to, msg, len);
    }
    if (!s) {
        if (o->used == SLOTS) return node_send_sealed(o->n, to, msg, len);
        s = &o->slots[o->used];
        if (!s->buf && !(s->buf = malloc(BATCH_BYTES))) return node_send_sealed(o->n, to, msg, len);
        o->used++;
        s->to = *to;
        s->len = s->count = 0;
    }
    if (s->len + need > BATCH_BYTES) send_slot(o, s);
    if (!s->count || due < s->due) s->due = due;
    memcpy(s->buf + s->len, head, hlen);
    s->len += hlen;
    memcpy(s->buf + s->len, msg, len);
    s->len += len;
    s->count++;
    return 0;
}
