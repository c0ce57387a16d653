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
 *    STORE_ENOSPACE and changes nothing;
 *  - a full disk (or LMDB map) is an answer, never a crash: a write that
 *    does not fit fails with STORE_ENOSPACE and changes nothing, reads go
 *    on, and writes that free room (a tombstone or a smaller value over a
 *    record, store_drop, store_gc, store_wipe) have a reserve of disk for
 *    the pages LMDB copies. Once room returns (records removed, space freed
 *    on the file system) writes succeed again, no reopen needed. The
 *    engines' room is in store.c ("Room on disk").
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
#define STORE_LMDB_MAPSIZE ((size_t)8 << 30) /* LMDB: writes that add bytes stop here */

#define STORE_ENOTFOUND (-1) /* no record (store_get) */
#define STORE_ENOSPACE (-2)  /* no room: over the cap, or the disk or map is full */
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

/* Why a store refuses writes for room (store_full). */
#define STORE_ROOM 0          /* it does not */
#define STORE_FULL_CAP 1      /* store_bytes() would pass max_bytes */
#define STORE_FULL_MEMORY 2   /* memory engine: an allocation failed */
#define STORE_FULL_DISK 3     /* LMDB: the file system has no room for the map to grow */
#define STORE_FULL_MAP 4      /* LMDB: the map is at its limit (STORE_LMDB_MAPSIZE) */

/* Opens a store. dir NULL: in memory; otherwise an LMDB environment in dir
 * (created if missing, mode 0700; LMDB's data.mdb and lock.mdb, and
 * `reserve`, the disk kept for writes that free room) whose records are
 * loaded as they are; its files are the owner's alone (0600, made so if they
 * were not). max_bytes caps store_bytes(). Opens on a full disk too (reads
 * are served, writes refused until there is room), unless the directory is
 * new and LMDB's first pages do not fit. Returns 0 and *out, or STORE_EIO /
 * STORE_EINVAL / STORE_ENOSPACE. */
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
 * dropped). Returns how many went (if the engine failed, those dropped
 * before: the next collection takes the rest). */
size_t store_gc(store *s, uint64_t min_stamp);

/* Drops every record, values and tombstones, stamped below min_stamp (a
 * store outlived by its cluster). 0 when every one went, else
 * STORE_ENOSPACE (a full disk: LMDB drops in batches, and one found no
 * room) or STORE_EIO, some of them left. *dropped (may be NULL) says how
 * many went, also when it fails. */
int store_drop_older(store *s, uint64_t min_stamp, size_t *dropped);

/* Entries on the tombstone heap (tests). */
size_t store_heap_entries(const store *s);

/* Calls fn for every record (tombstones too), in no particular order. */
int store_iter(store *s, store_visit_fn fn, void *ctx);

/* Hash slots (ring_key_slot of the key, as Redis Cluster's). The memory
 * engine keeps each slot's records on a list of their own, so that a walk
 * of a few slots costs their records only; LMDB walks the whole store. */
#define STORE_SLOTS 16384

/* Calls fn for every record of the slots whose bit is set in
 * slots[STORE_SLOTS / 64] (bit s % 64 of word s / 64), as store_iter. */
int store_iter_slots(store *s, const uint64_t *slots, store_visit_fn fn, void *ctx);

/* Records the last store_iter_slots read to find those of its slots: with
 * the memory engine and with LMDB's index (store.c), the slots' own; LMDB
 * without its index reads every record. */
size_t store_iter_read(const store *s);

/* Told of every change to the records: change +1, a record added (new, or
 * the new version of a replaced one); -1, a record gone (dropped or
 * collected); STORE_REPLACED, the old version of a record that the next
 * call (+1, same key) replaces; 0, key NULL:
 * the store changed in a way not told record by record (wiped, or an LMDB
 * transaction that failed after it told of drops): what was learnt of it
 * is to be learnt again with store_iter. Called from inside the store call
 * that makes the change: it must not call the store. The pointers are
 * valid during the call only. */
#define STORE_REPLACED (-2)
typedef void (*store_observer_fn)(void *ctx, const uint8_t *key, size_t klen,
                                  const store_rec *rec, int change);

/* Sets the one observer (fn NULL: none). */
void store_observe(store *s, store_observer_fn fn, void *ctx);

size_t store_count(const store *s);      /* live keys (not tombstones) */
size_t store_records(const store *s);    /* records, tombstones included */
size_t store_bytes(const store *s);      /* key + value bytes */
size_t store_max_bytes(const store *s);
const char *store_engine(const store *s); /* "memory" or "lmdb" */

/* Whether the store is full: the STORE_FULL_* reason of the last write that
 * needed room and was refused, or STORE_ROOM once a write that adds bytes
 * has succeeded since (or the store was wiped). */
int store_full(const store *s);
/* "room", "cap", "memory", "disk", "map": a static string. */
const char *store_full_name(int why);
/* Puts refused with STORE_ENOSPACE since the store was opened. */
uint64_t store_refused(const store *s);
/* LMDB: bytes the store holds on disk (the data file, every byte
 * allocated, and its reserve); 0 in memory. */
size_t store_disk_bytes(const store *s);
/* LMDB: the size past which writes that add bytes no longer grow the map
 * (STORE_LMDB_MAPSIZE at open); for tests, which make a small store full
 * this way. No effect in memory. */
void store_set_map_limit(store *s, size_t bytes);

/* Makes LMDB writes durable on disk (no-op in memory). 0 or STORE_EIO. */
int store_sync(store *s);

#endif
