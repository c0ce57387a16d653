/*
 * store: the node's table of records, key -> (value, version, stamp, tomb).
 *
 * Two engines behind one interface: an in-memory hash table (default) and
 * LMDB (store_open with a directory), which survives a crash of the process.
 *
 * Invariants:
 *  - keys are 1..STORE_MAX_KEY bytes, values 0..STORE_MAX_VALUE bytes;
 *  - a record replaces the one it finds only if it is newer by
 *    store_rec_cmp: a greater stamp (last writer wins; stamps are hybrid-
 *    logical-clock values), or an equal stamp and greater content, so that
 *    replicas given two writes with one stamp keep the same one whatever the
 *    order; applying the same record twice, or an older one after a newer
 *    one, changes nothing;
 *  - a REMOVE is stored as a tombstone (tomb = 1, no value) so that it wins
 *    over older copies elsewhere; tombstones are not counted as keys and are
 *    dropped by store_gc once old enough;
 *  - store_bytes() counts key + value bytes of every record, tombstones
 *    included; a put that would take it above the cap fails with
 *    STORE_ENOSPACE and changes nothing.
 *
 * The store owns all memory it returns. A pointer returned through a
 * store_rec (the value) stays valid until the next call that changes the
 * store (put, wipe, gc, close) or the next store_get.
 * Single-threaded: no call may run concurrently with another.
 */
#ifndef DHT_STORE_H
#define DHT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_MAX_KEY 32
#define STORE_MAX_VALUE 10000

#define STORE_ENOTFOUND (-1) /* no record (store_get) */
#define STORE_ENOSPACE (-2)  /* over the memory cap */
#define STORE_ESTALE (-3)    /* put: an equal or newer record is there */
#define STORE_EIO (-4)       /* the engine failed (LMDB error) */
#define STORE_EINVAL (-5)    /* key or value out of bounds */

typedef struct store store;

typedef struct store_rec {
    const uint8_t *val; /* value bytes; NULL/0 for a tombstone */
    uint32_t vlen;
    int32_t version;    /* the client's version field, stored as given */
    uint64_t stamp;     /* orders writes: greater wins */
    bool tomb;          /* record of a REMOVE */
} store_rec;

/* Visitor for store_iter: return 0 to go on, anything else stops the walk
 * and is returned by store_iter. The store must not be changed from inside. */
typedef int (*store_visit_fn)(void *ctx, const uint8_t *key, size_t klen,
                              const store_rec *rec);

/* Opens a store. dir NULL: in memory; otherwise an LMDB environment in dir
 * (created if missing, mode 0700) whose records are loaded as they are; its
 * files are the owner's alone (0600, made so if they were not). max_bytes
 * caps store_bytes(). Returns 0 and *out, or STORE_EIO / STORE_EINVAL. */
int store_open(store **out, const char *dir, size_t max_bytes);
void store_close(store *s);

/* 0 and *rec filled (tombstones too: check rec->tomb), or STORE_ENOTFOUND
 * (also for a key out of bounds), or STORE_EIO (LMDB failed). */
int store_get(store *s, const uint8_t *key, size_t klen, store_rec *rec);

/* Applies rec if its stamp is greater than the stored one's (or none is
 * stored). Returns 0 when applied, STORE_ESTALE when not (not an error for
 * replication), STORE_ENOSPACE, STORE_EINVAL or STORE_EIO; a put that
 * fails changes nothing. The store copies key and value. A tombstone stores
 * no value: rec->val and rec->vlen are ignored when rec->tomb is set. */
int store_put(store *s, const uint8_t *key, size_t klen, const store_rec *rec);

/* Orders two records of one key: by stamp, then (equal stamps: writes of
 * two coordinators in the same instant) a tombstone over a value, then by
 * value length, bytes and version. <0, 0 (the same record) or >0. */
int store_rec_cmp(const store_rec *a, const store_rec *b);

/* Forgets key's record if it is still the one with this stamp (a copy this
 * node no longer needs): 0, STORE_ESTALE when the record has another stamp
 * (it changed: kept), STORE_ENOTFOUND or STORE_EIO. Nothing of it remains,
 * not even a tombstone. */
int store_drop(store *s, const uint8_t *key, size_t klen, uint64_t stamp);

/* Removes every record, tombstones included. 0 or STORE_EIO. */
int store_wipe(store *s);

/* Drops tombstones whose stamp is below min_stamp (live records are never
 * dropped). Returns how many; 0 if the engine failed (nothing dropped). */
size_t store_gc(store *s, uint64_t min_stamp);

/* Calls fn for every record (tombstones too), in no particular order. */
int store_iter(store *s, store_visit_fn fn, void *ctx);

size_t store_count(const store *s);      /* live keys (not tombstones) */
size_t store_records(const store *s);    /* records, tombstones included */
size_t store_bytes(const store *s);      /* key + value bytes */
size_t store_max_bytes(const store *s);
const char *store_engine(const store *s); /* "memory" or "lmdb" */

/* Makes LMDB writes durable on disk (no-op in memory). 0 or STORE_EIO. */
int store_sync(store *s);

#endif
