/* cache: chained hash table of replies plus a FIFO list in completion order. */
#include "cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define MAX_ID 64 /* longer IDs are hashed but compared on their first 64 bytes */

typedef struct entry {
    struct entry *hnext;             /* hash chain */
    struct entry *prev, *next;       /* FIFO: oldest first */
    uint64_t hash;
    uint64_t stamp_ms;               /* when begun or completed */
    int state;
    uint8_t idlen;
    uint8_t id[MAX_ID];
    size_t len;                      /* reply length */
    uint8_t *reply;                  /* NULL while pending */
} entry;

struct cache {
    entry **tab;
    size_t mask;                     /* table size - 1 */
    size_t n;
    size_t bytes;
    size_t max_bytes;
    uint64_t ttl_ms;
    entry *head, *tail;              /* FIFO */
};

static size_t entry_cost(const entry *e) { return sizeof *e + e->len; }

cache *cache_new(uint64_t ttl_ms, size_t max_bytes) {
    cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->mask = 1023;
    c->tab = calloc(c->mask + 1, sizeof *c->tab);
    if (!c->tab) {
        free(c);
        return NULL;
    }
    c->ttl_ms = ttl_ms;
    c->max_bytes = max_bytes;
    return c;
}

void cache_free(cache *c) {
    if (!c) return;
    for (entry *e = c->head, *nx; e; e = nx) {
        nx = e->next;
        free(e->reply);
        free(e);
    }
    free(c->tab);
    free(c);
}

static uint64_t id_hash(const uint8_t *id, size_t idlen) { return XXH3_64bits(id, idlen); }

static entry **find_slot(cache *c, const uint8_t *id, size_t idlen, uint64_t h) {
    size_t cmp = idlen < MAX_ID ? idlen : MAX_ID;
    entry **p = &c->tab[h & c->mask];
    for (; *p; p = &(*p)->hnext)
        if ((*p)->hash == h && (*p)->idlen == cmp && (!cmp || memcmp((*p)->id, id, cmp) == 0))
            return p;
    return p;
}

static void fifo_unlink(cache *c, entry *e) {
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void fifo_push(cache *c, entry *e) {
    e->prev = c->tail;
    e->next = NULL;
    if (c->tail) c->tail->next = e; else c->head = e;
    c->tail = e;
}

static void drop(cache *c, entry *e) {
    entry **p = find_slot(c, e->id, e->idlen, e->hash);
    if (*p == e) *p = e->hnext;
    fifo_unlink(c, e);
    c->bytes -= entry_cost(e);
    c->n--;
    free(e->reply);
    free(e);
}

static void grow(cache *c) {
    size_t nmask = c->mask * 2 + 1;
    entry **nt = calloc(nmask + 1, sizeof *nt);
    if (!nt) return; /* keep the old table: longer chains, still correct */
    for (size_t i = 0; i <= c->mask; i++) {
        for (entry *e = c->tab[i], *nx; e; e = nx) {
            nx = e->hnext;
            e->hnext = nt[e->hash & nmask];
            nt[e->hash & nmask] = e;
        }
    }
    free(c->tab);
    c->tab = nt;
    c->mask = nmask;
}

int cache_lookup(cache *c, const uint8_t *id, size_t idlen,
                 const uint8_t **reply, size_t *len) {
    entry *e = *find_slot(c, id, idlen, id_hash(id, idlen));
    if (!e) return CACHE_MISS;
    if (e->state == CACHE_DONE || e->state == CACHE_FORWARDED) {
        *reply = e->reply;
        *len = e->len;
    }
    return e->state;
}

static entry *insert(cache *c, const uint8_t *id, size_t idlen, uint64_t h) {
    entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->hash = h;
    e->idlen = (uint8_t)(idlen < MAX_ID ? idlen : MAX_ID);
    if (e->idlen) memcpy(e->id, id, e->idlen);
    entry **slot = &c->tab[h & c->mask];
    e->hnext = *slot;
    *slot = e;
    c->n++;
    c->bytes += entry_cost(e);
    if (c->n > (c->mask + 1) * 2) grow(c);
    return e;
}

/* Whether a new entry of `extra` reply bytes fits under the cap. */
static bool room(const cache *c, size_t extra) {
    return c->bytes + sizeof(entry) + extra <= c->max_bytes;
}

int cache_begin(cache *c, const uint8_t *id, size_t idlen, uint64_t now_ms) {
    uint64_t h = id_hash(id, idlen);
    entry *e = *find_slot(c, id, idlen, h);
    if (!e && (!room(c, 0) || !(e = insert(c, id, idlen, h)))) return -1;
    else if (e->prev || e->next || c->head == e) fifo_unlink(c, e);
    e->state = CACHE_PENDING;
    e->stamp_ms = now_ms;
    fifo_push(c, e);
    return 0;
}

/* Keeps bytes for id in `state` (a reply, or where the request went). */
static int keep(cache *c, const uint8_t *id, size_t idlen, const uint8_t *bytes, size_t len,
                uint64_t now_ms, int state) {
    uint64_t h = id_hash(id, idlen);
    entry *e = *find_slot(c, id, idlen, h);
    if (!e && !room(c, len)) return -1; /* nothing was promised for this id */
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return -1;
    memcpy(copy, bytes, len);
    if (!e && !(e = insert(c, id, idlen, h))) {
        free(copy);
        return -1;
    }
    if (e->prev || e->next || c->head == e) fifo_unlink(c, e);
    c->bytes -= entry_cost(e);
    free(e->reply);
    e->reply = copy;
    e->len = len;
    c->bytes += entry_cost(e);
    e->state = state;
    e->stamp_ms = now_ms;
    fifo_push(c, e);
    return 0;
}

int cache_done(cache *c, const uint8_t *id, size_t idlen, const uint8_t *reply,
               size_t len, uint64_t now_ms) {
    return keep(c, id, idlen, reply, len, now_ms, CACHE_DONE);
}

int cache_forwarded(cache *c, const uint8_t *id, size_t idlen, const void *to, size_t tolen,
                    uint64_t now_ms) {
    return keep(c, id, idlen, to, tolen, now_ms, CACHE_FORWARDED);
}

void cache_abort(cache *c, const uint8_t *id, size_t idlen) {
    entry *e = *find_slot(c, id, idlen, id_hash(id, idlen));
    if (e && e->state == CACHE_PENDING) drop(c, e);
}

void cache_expire(cache *c, uint64_t now_ms) {
    /* Pending entries older than the TTL belong to requests that never
     * finished (their coordinator gave up): forgetting them is right too. */
    while (c->head && c->head->stamp_ms + c->ttl_ms <= now_ms) drop(c, c->head);
}

size_t cache_entries(const cache *c) { return c->n; }
size_t cache_bytes(const cache *c) { return c->bytes; }
