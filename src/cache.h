/*
 * cache: the reply cache that makes client requests at-most-once.
 *
 * Keyed by the client's message ID. An entry is PENDING (the request is
 * being served: a retry that arrives now is dropped, the first answer is on
 * its way), DONE (it holds the whole reply datagram, re-sent as is to a
 * retry) or FORWARDED (it holds the address of the node the request was
 * forwarded to: a retry goes to the same node, whose own cache answers it,
 * so a request is served by one coordinator however the ring changes).
 * Entries live `ttl_ms` after they were completed and are then dropped,
 * oldest first. No entry goes earlier: that would let a retry run twice.
 * Instead the entries' bytes are bounded by `max_bytes`: past it a new
 * request is refused (cache_begin fails: the caller answers "overload", and
 * the client backs off) until old entries expire.
 *
 * The cache owns its entries; pointers to an entry's reply stay valid until
 * the next cache_* call that inserts or expires.
 */
#ifndef DHT_CACHE_H
#define DHT_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cache cache;

enum cache_state { CACHE_MISS = 0, CACHE_PENDING = 1, CACHE_DONE = 2, CACHE_FORWARDED = 3 };

/* Returns a new cache or NULL when out of memory. */
cache *cache_new(uint64_t ttl_ms, size_t max_bytes);
void cache_free(cache *c);

/* Looks id up. On CACHE_DONE, *reply and *len give the cached datagram; on
 * CACHE_FORWARDED, the bytes given to cache_forwarded. */
int cache_lookup(cache *c, const uint8_t *id, size_t idlen,
                 const uint8_t **reply, size_t *len);

/* Marks id as being served. 0, or -1 when out of memory or when a new
 * entry would take the cache past max_bytes (refuse the request). */
int cache_begin(cache *c, const uint8_t *id, size_t idlen, uint64_t now_ms);

/* Stores the reply for id (pending or not yet known). 0, or -1 when out of
 * memory, or when id was not known and the cache is full (the reply is then
 * not kept: nothing was promised for it). The cache copies reply. */
int cache_done(cache *c, const uint8_t *id, size_t idlen, const uint8_t *reply,
               size_t len, uint64_t now_ms);

/* Remembers that id was forwarded to `to` (tolen opaque bytes, copied).
 * 0, or -1 as cache_done. */
int cache_forwarded(cache *c, const uint8_t *id, size_t idlen, const void *to, size_t tolen,
                    uint64_t now_ms);

/* Forgets a pending id (the request was dropped without a reply). */
void cache_abort(cache *c, const uint8_t *id, size_t idlen);

/* Drops entries completed more than ttl_ms before now_ms. */
void cache_expire(cache *c, uint64_t now_ms);

size_t cache_entries(const cache *c);
size_t cache_bytes(const cache *c);

#endif
