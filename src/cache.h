/*
 * cache: the reply cache that makes client requests at-most-once.
 *
 * Keyed by the client's message ID. An entry is either PENDING (the request
 * is being served: a retry that arrives now is dropped, the first answer is
 * on its way) or DONE (it holds the whole reply datagram, re-sent as is to a
 * retry). Entries live at least `ttl_ms` after they were completed and are
 * dropped oldest first once that has passed, or earlier when the entries'
 * bytes would exceed `max_bytes` (so a flood cannot exhaust memory; the
 * oldest go first, which are the least likely to be retried).
 *
 * The cache owns its entries; pointers to an entry's reply stay valid until
 * the next cache_* call that inserts or expires.
 */
#ifndef DHT_CACHE_H
#define DHT_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache cache;

enum cache_state { CACHE_MISS = 0, CACHE_PENDING = 1, CACHE_DONE = 2 };

/* Returns a new cache or NULL when out of memory. */
cache *cache_new(uint64_t ttl_ms, size_t max_bytes);
void cache_free(cache *c);

/* Looks id up. On CACHE_DONE, *reply and *len give the cached datagram. */
int cache_lookup(cache *c, const uint8_t *id, size_t idlen,
                 const uint8_t **reply, size_t *len);

/* Marks id as being served. 0, or -1 when out of memory. */
int cache_begin(cache *c, const uint8_t *id, size_t idlen, uint64_t now_ms);

/* Stores the reply for id (pending or not yet known). 0, or -1 when out of
 * memory. The cache copies reply. */
int cache_done(cache *c, const uint8_t *id, size_t idlen, const uint8_t *reply,
               size_t len, uint64_t now_ms);

/* Forgets a pending id (the request was dropped without a reply). */
void cache_abort(cache *c, const uint8_t *id, size_t idlen);

/* Drops entries completed more than ttl_ms before now_ms. */
void cache_expire(cache *c, uint64_t now_ms);

size_t cache_entries(const cache *c);
size_t cache_bytes(const cache *c);

#endif
