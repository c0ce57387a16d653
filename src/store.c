/*
 * store: the node's table of records, two engines behind one interface.
 *
 * Common rules (both engines), checked in store_put before anything else:
 * a key is 1..STORE_MAX_KEY bytes, a value 0..STORE_MAX_VALUE bytes, and a
 * non-empty value has a non-NULL pointer (STORE_EINVAL otherwise). A
 * tombstone keeps no value: rec->val/vlen are ignored when rec->tomb is set.
 * Then the stamp rule (STORE_ESTALE), then the cap (STORE_ENOSPACE); a put
 * that fails changes nothing.
 *
 * Memory engine
 * -------------
 * An open-addressing hash table with linear probing over 2^k slots. A slot
 * holds the 64-bit XXH3 hash of the key and a pointer to the record (NULL:
 * empty slot). The table doubles when the load would exceed 3/4, so there is
 * always an empty slot and probe sequences stay short. Records are dropped
 * (store_gc) by backward-shift deletion: no deleted markers, so lookups never
 * slow down with churn. One malloc per record holds key and value inline:
 *
 *   struct mrec { stamp, version, vlen, klen, tomb, data[klen + vlen] }
 *
 * A replaced record is allocated anew before the old one is freed, so a
 * failed allocation leaves the store as it was (reported as STORE_ENOSPACE).
 * Each record is also on its hash slot's list (store_iter_slots walks a
 * slot's records only), and every tombstone put goes on a min-heap by stamp
 * (stamp, key), so store_gc takes what is old enough off its top
 * rather than walk the table; entries of tombstones replaced or dropped
 * since are skipped as they come up. Should the heap fail to grow, the next
 * store_gc walks the table and makes the heap again.
 *
 * LMDB engine
 * -----------
 * One environment in dir, its unnamed database, flags MDB_NOSYNC |
 * MDB_WRITEMAP | MDB_NOTLS: a write is in the shared file mapping as soon as
 * its transaction commits, so it survives a SIGKILL of the process;
 * store_sync flushes it to disk (mdb_env_sync). One write transaction per
 * put. Key: the key bytes. Data (little endian):
 *
 *   OFFSET  SIZE  MEANING
 *   0       8     stamp (uint64)
 *   8       4     version (int32, two's complement)
 *   12      1     flags: bit 0 = tombstone; other bits 0
 *   13      vlen  value bytes (vlen = data size - 13; 0 for a tombstone)
 *
 * A named database, IDX_NAME, indexes the records by hash slot: a key of
 * the slot (2 bytes, big endian) then the record's key, empty data; it is
 * changed in the transaction that changes the record, so store_iter_slots
 * reads the records of the slots it is asked for, not the whole store (as
 * the memory engine's slot lists). Its name, longer than any key, is a
 * record of the unnamed database that is no record of ours: the walks skip
 * it. A store of an older version gets the index at its first open here
 * (one walk); older versions refuse a store that has it (a record they
 * cannot read fails their open). Should there be no room to make it, the
 * store runs without, walking the whole store for store_iter_slots, and
 * makes it at a later open.
 *
 * store_count / store_records / store_bytes are kept in the struct and
 * recomputed by a full scan at open, which also puts the tombstones on the
 * heap store_gc takes them from (as the memory engine's, above); a record that does not decode (short
 * data, bad key or value length, value on a tombstone) fails the open with
 * STORE_EIO rather than being served. A store opened above its cap keeps
 * its records; puts that would grow it fail until it shrinks.
 * store_get copies the value into a buffer owned by the store (valid as the
 * header says); store_iter hands out pointers into the map, valid during the
 * visitor call only.
 *
 * Room on disk (LMDB)
 * -------------------
 * With MDB_WRITEMAP, LMDB writes pages through a shared mapping of
 * data.mdb. A page of a sparse file gets its disk block when it is first
 * written, and when the file system has no block left the kernel answers
 * that memory write with SIGBUS (tmpfs and ext4 alike): the process dies,
 * and again after every restart. So the map never covers a byte of the file
 * that has no block yet:
 *
 *  - the map is as large as data.mdb, and every byte of it is allocated
 *    (posix_fallocate) before the map is set to cover it. At open it is the
 *    file's size when the file is allocated throughout (the map of the last
 *    life), else MAP_MIN or the data's size (LMDB then truncates the file to
 *    the map: a sparse file of an older version shrinks to its data);
 *  - a write that needs more pages than the map holds gets MDB_MAP_FULL
 *    from LMDB (nothing is written); the store allocates a step more of the
 *    file (a quarter of the map, GROW_MIN .. GROW_MAX, halved down to
 *    GROW_MIN while the disk has less), grows the map and runs the write
 *    again, or answers STORE_ENOSPACE when neither the disk nor the map's
 *    limit (STORE_LMDB_MAPSIZE) leaves room;
 *  - writes that free room (a tombstone or a smaller value over a record,
 *    store_drop, store_gc, store_wipe) must go on when the disk is full, yet
 *    LMDB copies the pages it changes and may need a few new ones for them
 *    too. So does the write after one of them: LMDB reuses the pages a
 *    transaction freed only from the one after the next (the last two
 *    snapshots stay whole), so on a full map the write right after a remove
 *    finds none of the pages the remove freed. These writes have a reserve:
 *    dir/reserve, a file of reserve_want() bytes (RESERVE_MIN + 1/256 of the
 *    map: more than the free-page list of a store that frees every page).
 *    When nothing else is left the file is cut by GROW_MIN and those blocks
 *    go to the map, for these writes only. The map grows for a write that
 *    adds bytes only once the reserve is whole again, so a store taking
 *    such writes has it.
 *  - LMDB's lock file is a shared mapping too: its first page (the header
 *    and the reader slots of this process) is allocated before LMDB opens.
 *
 * Dropping MDB_WRITEMAP would avoid SIGBUS as well (LMDB then writes with
 * pwrite, which answers ENOSPC), but it cost 40% of the write throughput of
 * one node (dht-bench, 100% PUT: 148k -> 88k ops/s).
 *
 * Full
 * ----
 * store_full() is the reason the last write that needed room was refused
 * (the cap, memory, the disk, the map's limit), until a write that adds
 * bytes succeeds or the store is wiped; store_refused() counts puts refused
 * for room since open.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <xxhash.h>

#include "ring.h"

_Static_assert(STORE_SLOTS == RING_SLOTS, "the store's slots are the ring's");

#define LREC_HDR 13                          /* see the table above */
#define MAP_MIN ((size_t)1 << 20)            /* a new map */
#define GROW_MIN ((size_t)64 << 10)          /* map growth steps */
#define GROW_MAX ((size_t)256 << 20)
#define RESERVE_MIN ((size_t)256 << 10)      /* reserve for writes that free room */
#define LMDB_EMAPFULL (-100)                 /* internal: MDB_MAP_FULL, grow and retry */
#define GC_BATCH 4096                        /* records lmdb_gc drops a transaction, at most */
#define LREC_TOMB 0x01
#define IDX_NAME "dht index: hash slot (2 bytes, big endian), then key" /* > STORE_MAX_KEY */
#define IDX_KEY_MAX (2 + STORE_MAX_KEY)
_Static_assert(sizeof IDX_NAME - 1 > STORE_MAX_KEY, "the index's name is no key");
#define MEM_MIN_SLOTS 64

typedef struct mrec {
    struct mrec *sprev, *snext; /* the other records of its hash slot */
    uint64_t stamp;
    int32_t version;
    uint32_t vlen;
    uint16_t slot;  /* ring_key_slot of the key */
    uint8_t klen;
    uint8_t tomb;
    uint8_t data[]; /* key, then value */
} mrec;

typedef struct slot {
    uint64_t hash;
    mrec *r; /* NULL: empty */
} slot;

typedef struct tomb_ent { /* a tombstone put (heap by stamp) */
    uint64_t stamp;
    uint8_t klen;
    uint8_t key[STORE_MAX_KEY];
} tomb_ent;

struct store {
    bool lmdb;
    size_t max_bytes;
    size_t records; /* tombstones included */
    size_t live;    /* not tombstones */
    size_t bytes;   /* key + value bytes of every record */

    /* memory engine */
    slot *slots;
    size_t mask; /* slot count - 1 (a power of two) */
    slot *old;    /* while the table grows: the former one, moved step by step */
    size_t old_mask, old_pos; /* its slots [0, old_pos) have been moved */
    mrec **shead; /* [STORE_SLOTS]: each hash slot's records, a list */
    tomb_ent *th; /* min-heap by stamp of the tombstones put (some since replaced) */
    size_t nth, cap_th;
    bool th_lost; /* a tombstone could not be put on the heap: gc walks the store */

    store_observer_fn obs; /* store_observe */
    void *obs_ctx;

    /* room: see "Full" above */
    int why;         /* STORE_FULL_* of the last refusal */
    int full;        /* store_full() */
    uint64_t refused;

    /* LMDB engine */
    MDB_env *env;
    MDB_dbi dbi;
    MDB_dbi idx;     /* IDX_NAME, when has_idx */
    bool has_idx;
    size_t iter_read; /* records the last store_iter_slots read */
    MDB_txn *rtxn; /* read transaction kept reset between store_get calls */
    uint8_t *buf;  /* STORE_MAX_VALUE bytes: the value store_get returns */
    int fd;          /* data.mdb (LMDB's descriptor) */
    int reserve_fd;  /* dir/reserve, -1: none */
    size_t map;      /* map size = size of data.mdb, every byte allocated */
    size_t map_limit;/* writes that add bytes grow the map up to this */
    size_t reserve;  /* bytes allocated to dir/reserve */
    bool freed;      /* the last write committed freed room (lmdb_grow) */
    bool unsure;     /* the map's blocks could not be allocated: no writes */
    bool broken;     /* a remap failed: LMDB has no map, nothing is served */
};

static int valid(const uint8_t *key, size_t klen, const store_rec *rec) {
    if (!key || klen == 0 || klen > STORE_MAX_KEY || !rec) return STORE_EINVAL;
    if (!rec->tomb && (rec->vlen > STORE_MAX_VALUE || (rec->vlen && !rec->val)))
        return STORE_EINVAL;
    return 0;
}

/* Whether replacing a record of old_sz bytes (0: none) by one of new_sz
 * bytes keeps store_bytes() under the cap. Shrinking is always allowed. */
static bool fits(store *s, size_t old_sz, size_t new_sz) {
    if (new_sz <= old_sz) return true;
    size_t after = s->bytes - old_sz + new_sz;
    if (after <= s->max_bytes) return true;
    s->why = STORE_FULL_CAP;
    return false;
}

/* Tells the observer of a change (store_observe). */
static void tell(store *s, const uint8_t *key, size_t klen, const store_rec *rec, int change) {
    if (s->obs) s->obs(s->obs_ctx, key, klen, rec, change);
}

/* ---- memory engine ------------------------------------------------------ */

/* A record as the interface hands it out (pointing into r). */
static store_rec mrec_rec(const mrec *r) {
    return (store_rec){r->tomb ? NULL : r->data + r->klen, r->vlen, r->version, r->stamp, r->tomb};
}

static void tell_mrec(store *s, const mrec *r, int change) {
    store_rec out = mrec_rec(r);
    tell(s, r->data, r->klen, &out, change);
}

/* Takes r off its slot's list; with by, puts by in its place. */
static void sunlink(store *s, mrec *r, mrec *by) {
    mrec *prev = r->sprev, *next = r->snext;
    if (by) {
        by->sprev = prev;
        by->snext = next;
        if (next) next->sprev = by;
    } else if (next) {
        next->sprev = prev;
    }
    mrec *put = by ? by : next;
    if (prev) prev->snext = put;
    else s->shead[r->slot] = put;
}

static void slink(store *s, mrec *r) {
    r->sprev = NULL;
    r->snext = s->shead[r->slot];
    if (r->snext) r->snext->sprev = r;
    s->shead[r->slot] = r;
}

static uint64_t khash(const uint8_t *key, size_t klen) {
    return XXH3_64bits(key, klen);
}

/* Index of the slot holding key, or of the empty slot where it would go. */
static size_t mfind(const store *s, uint64_t h, const uint8_t *key, size_t klen) {
    size_t i = (size_t)h & s->mask;
    for (;;) {
        const slot *sl = &s->slots[i];
        if (!sl->r) return i;
        if (sl->hash == h && sl->r->klen == klen && memcmp(sl->r->data, key, klen) == 0)
            return i;
        i = (i + 1) & s->mask;
    }
}

/* Growth. The table doubles when the load would pass 3/4, but its records
 * move to the new table a few slots at a time (MOVE_STEP with each put),
 * not all at once: at a million records a doubling held the node for
 * 80 ms. Meanwhile the former table (s->old) is still looked in; a slot
 * of it whose record has moved, or been replaced or dropped since, holds
 * MOVED, which probes pass over (emptied, it would cut the probe sequences
 * of the records after it). New records go to the new table only. The new
 * table has twice the slots, so it holds what moves and what comes before
 * the move is over (MOVE_STEP * put count > old slots long before it
 * could fill); should it fill first, the move is finished at once. Each
 * slot moved lands at a random place of the new table (a cache miss, and
 * at first a page fault), so a put that moves 128 costs some 13 us: at
 * 1.5 million records, under 60,000 puts a second, the nodes of a cluster
 * ran 100-113 ms between ticks for the third of a second the move took,
 * their peers' answers unread, and resent to all of them (bench: 6 nodes,
 * dht-resp-bench -P 16, README "Big stores"). 16 a put spreads the move
 * over 8 times as many puts at a put's own cost. */
#define MOVE_STEP 16
static mrec moved_rec;
#define MOVED (&moved_rec)

/* Index of key's slot in the former table, or SIZE_MAX. */
static size_t ofind(const store *s, uint64_t h, const uint8_t *key, size_t klen) {
    for (size_t i = (size_t)h & s->old_mask;; i = (i + 1) & s->old_mask) {
        const slot *sl = &s->old[i];
        if (!sl->r) return SIZE_MAX;
        if (sl->r != MOVED && sl->hash == h && sl->r->klen == klen &&
            memcmp(sl->r->data, key, klen) == 0)
            return i;
    }
}

/* Moves up to `step` slots of the former table (SIZE_MAX: all). */
static void move_some(store *s, size_t step) {
    if (!s->old) return;
    for (size_t k = 0; k < step && s->old_pos <= s->old_mask; k++, s->old_pos++) {
        slot *sl = &s->old[s->old_pos];
        if (!sl->r || sl->r == MOVED) continue;
        size_t j = (size_t)sl->hash & s->mask;
        while (s->slots[j].r) j = (j + 1) & s->mask;
        s->slots[j] = *sl;
        sl->r = MOVED;
    }
    if (s->old_pos > s->old_mask) {
        free(s->old);
        s->old = NULL;
    }
}

static int mgrow(store *s) {
    move_some(s, SIZE_MAX); /* (the last growth's move, if it is not over) */
    size_t n = (s->mask + 1) * 2;
    slot *ns = calloc(n, sizeof *ns);
    if (!ns) {
        s->why = STORE_FULL_MEMORY;
        return STORE_ENOSPACE;
    }
    s->old = s->slots;
    s->old_mask = s->mask;
    s->old_pos = 0;
    s->slots = ns;
    s->mask = n - 1;
    return 0;
}

/* Empties slot i and shifts the rest of its cluster back so that every
 * record stays reachable from its home slot. Only slots after i (in probe
 * order, up to the next empty slot) change. */
static void mdelete(store *s, size_t i) {
    size_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (!s->slots[j].r) break;
        size_t home = (size_t)s->slots[j].hash & s->mask;
        /* s->slots[j] may move to the hole at i unless its home lies
         * cyclically in (i, j]. */
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i].r = NULL;
    s->slots[i].hash = 0;
}

/* The heap of tombstones: store_gc takes the ones old enough off its top
 * instead of walking the table (a million records: tens of ms every sync
 * period, while collection is due). An entry whose record has been
 * replaced or dropped since is left there and skipped when it comes up.
 * Those only go when collected, and a key removed and written again over
 * and over (a lock) added one a time for as long as its tombstones lived
 * or collection was not due (an hour, or a member's death): 48 bytes a
 * REMOVE over a store of one record. Past TH_SLACK entries more than the
 * records, the heap is dropped and the next collection walks the store
 * and makes it again (th_lost): a walk every records + TH_SLACK puts at
 * most. */
#define TH_SLACK 1024
static void th_push(store *s, uint64_t stamp, const uint8_t *key, size_t klen) {
    if (s->th_lost) return; /* the next collection makes it again */
    if (s->nth >= s->records + TH_SLACK) {
        s->nth = 0;
        s->th_lost = true;
        return;
    }
    if (s->nth == s->cap_th) {
        size_t cap = s->cap_th ? 2 * s->cap_th : 256;
        tomb_ent *t = realloc(s->th, cap * sizeof *t);
        if (!t) {
            s->th_lost = true;
            return;
        }
        s->th = t;
        s->cap_th = cap;
    }
    size_t i = s->nth++;
    while (i > 0 && s->th[(i - 1) / 2].stamp > stamp) {
        s->th[i] = s->th[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->th[i].stamp = stamp;
    s->th[i].klen = (uint8_t)klen;
    memcpy(s->th[i].key, key, klen);
}

static tomb_ent th_pop(store *s) {
    tomb_ent top = s->th[0], last = s->th[--s->nth];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nth) break;
        if (c + 1 < s->nth && s->th[c + 1].stamp < s->th[c].stamp) c++;
        if (s->th[c].stamp >= last.stamp) break;
        s->th[i] = s->th[c];
        i = c;
    }
    if (s->nth) s->th[i] = last;
    return top;
}

/* key's record (NULL: none), in the table or, while it grows, the former
 * one: *i is its slot in the table (or the empty slot where it would go),
 * *j its slot in the former table (SIZE_MAX when it is not there). */
static mrec *mlookup(const store *s, uint64_t h, const uint8_t *key, size_t klen, size_t *i,
                     size_t *j) {
    *i = mfind(s, h, key, klen);
    *j = SIZE_MAX;
    mrec *r = s->slots[*i].r;
    if (!r && s->old && (*j = ofind(s, h, key, klen)) != SIZE_MAX) r = s->old[*j].r;
    return r;
}

static int mem_get(store *s, const uint8_t *key, size_t klen, store_rec *out) {
    size_t i, j;
    const mrec *r = mlookup(s, khash(key, klen), key, klen, &i, &j);
    if (!r) return STORE_ENOTFOUND;
    *out = mrec_rec(r);
    return 0;
}

static int mem_put(store *s, const uint8_t *key, size_t klen, const store_rec *rec) {
    uint64_t h = khash(key, klen);
    move_some(s, MOVE_STEP);
    size_t i, j;
    mrec *old = mlookup(s, h, key, klen, &i, &j);
    if (old) {
        store_rec cur = mrec_rec(old);
        if (store_rec_cmp(rec, &cur) <= 0) return STORE_ESTALE;
    }
    uint32_t vlen = rec->tomb ? 0 : rec->vlen;
    size_t old_sz = old ? (size_t)old->klen + old->vlen : 0;
    size_t new_sz = klen + vlen;
    if (!fits(s, old_sz, new_sz)) return STORE_ENOSPACE;

    mrec *r = malloc(sizeof *r + new_sz);
    if (!r) {
        s->why = STORE_FULL_MEMORY;
        return STORE_ENOSPACE;
    }
    if (!old && (s->records + 1) * 4 > (s->mask + 1) * 3) {
        if (mgrow(s) != 0) {
            free(r);
            return STORE_ENOSPACE;
        }
        i = mfind(s, h, key, klen);
    }
    r->stamp = rec->stamp;
    r->version = rec->version;
    r->vlen = vlen;
    r->slot = (uint16_t)ring_key_slot(key, klen);
    r->klen = (uint8_t)klen;
    r->tomb = rec->tomb ? 1 : 0;
    memcpy(r->data, key, klen);
    if (vlen) memcpy(r->data + klen, rec->val, vlen);

    if (old) {
        if (!old->tomb) s->live--;
        tell_mrec(s, old, STORE_REPLACED);
        sunlink(s, old, r);
        free(old);
        if (j != SIZE_MAX) s->old[j].r = MOVED; /* the new one goes to the new table */
    } else {
        s->records++;
        slink(s, r);
    }
    tell_mrec(s, r, +1);
    if (!r->tomb) s->live++;
    s->bytes = s->bytes - old_sz + new_sz;
    s->slots[i].hash = h;
    s->slots[i].r = r;
    if (r->tomb) th_push(s, r->stamp, key, klen);
    return 0;
}

static void mem_forget(store *s, size_t i, size_t j);

static int mem_drop(store *s, const uint8_t *key, size_t klen, uint64_t stamp) {
    size_t i, j;
    const mrec *r = mlookup(s, khash(key, klen), key, klen, &i, &j);
    if (!r) return STORE_ENOTFOUND;
    if (r->stamp != stamp) return STORE_ESTALE;
    mem_forget(s, i, j);
    return 0;
}

static void mem_free_all(store *s) {
    for (size_t i = 0; i <= s->mask; i++) free(s->slots[i].r);
    if (s->old)
        for (size_t i = 0; i <= s->old_mask; i++)
            if (s->old[i].r != MOVED) free(s->old[i].r);
    free(s->old);
    s->old = NULL;
}

static int mem_wipe(store *s) {
    slot *ns = calloc(MEM_MIN_SLOTS, sizeof *ns);
    if (ns) {
        mem_free_all(s);
        free(s->slots);
        s->slots = ns;
        s->mask = MEM_MIN_SLOTS - 1;
    } else { /* keep the big table, emptied */
        mem_free_all(s);
        memset(s->slots, 0, (s->mask + 1) * sizeof *s->slots);
    }
    memset(s->shead, 0, STORE_SLOTS * sizeof *s->shead);
    s->nth = 0;
    s->th_lost = false;
    tell(s, NULL, 0, NULL, 0);
    return 0;
}

/* Drops record j of the former table, or (j SIZE_MAX) record i of the
 * table, as mlookup found it. */
static void mem_forget(store *s, size_t i, size_t j) {
    mrec *r = j != SIZE_MAX ? s->old[j].r : s->slots[i].r;
    if (!r->tomb) s->live--;
    s->bytes -= (size_t)r->klen + r->vlen;
    s->records--;
    tell_mrec(s, r, -1);
    sunlink(s, r, NULL);
    free(r);
    if (j != SIZE_MAX) s->old[j].r = MOVED;
    else mdelete(s, i);
}

/* Drops the tombstones stamped below min_stamp, from the heap's top. */
static size_t mem_gc_heap(store *s, uint64_t min_stamp) {
    size_t dropped = 0;
    while (s->nth && s->th[0].stamp < min_stamp) {
        tomb_ent t = th_pop(s);
        size_t i, j; /* the tombstone, if it is still there */
        const mrec *r = mlookup(s, khash(t.key, t.klen), t.key, t.klen, &i, &j);
        if (r && r->tomb && r->stamp == t.stamp) {
            mem_forget(s, i, j);
            dropped++;
        }
    }
    return dropped;
}

/* Drops the tombstones stamped below min_stamp, or with all every record. */
static size_t mem_gc(store *s, uint64_t min_stamp, bool all) {
    if (!all && !s->th_lost) return mem_gc_heap(s, min_stamp);
    move_some(s, SIZE_MAX); /* the walk below is of one table */
    /* Start just after an empty slot: no cluster then wraps past the start,
     * and backward shifts only move records into the slot being looked at
     * (looked at again) or into slots not reached yet. */
    size_t start = 0;
    while (s->slots[start].r) start++;
    size_t dropped = 0, n = s->mask + 1;
    for (size_t k = 1; k <= n; k++) {
        size_t i = (start + k) & s->mask;
        for (;;) {
            mrec *r = s->slots[i].r;
            if (!r || (!r->tomb && !all) || r->stamp >= min_stamp) break;
            mem_forget(s, i, SIZE_MAX);
            dropped++;
        }
    }
    if (s->th_lost) { /* the heap again, of the tombstones left */
        s->nth = 0;
        s->th_lost = false;
        for (size_t i = 0; i <= s->mask; i++)
            if (s->slots[i].r && s->slots[i].r->tomb)
                th_push(s, s->slots[i].r->stamp, s->slots[i].r->data, s->slots[i].r->klen);
    }
    return dropped;
}

static int mem_iter_table(const slot *t, size_t mask, store_visit_fn fn, void *ctx) {
    for (size_t i = 0; i <= mask; i++) {
        const mrec *r = t[i].r;
        if (!r || r == MOVED) continue;
        store_rec out = mrec_rec(r);
        int rc = fn(ctx, r->data, r->klen, &out);
        if (rc) return rc;
    }
    return 0;
}

static int mem_iter(store *s, store_visit_fn fn, void *ctx) {
    int rc = mem_iter_table(s->slots, s->mask, fn, ctx);
    return rc || !s->old ? rc : mem_iter_table(s->old, s->old_mask, fn, ctx);
}

static int mem_iter_slots(store *s, const uint64_t *slots, store_visit_fn fn, void *ctx) {
    s->iter_read = 0;
    for (unsigned w = 0; w < STORE_SLOTS / 64; w++)
        for (uint64_t bits = slots[w]; bits; bits &= bits - 1) {
            unsigned sl = w * 64 + (unsigned)__builtin_ctzll(bits);
            for (const mrec *r = s->shead[sl]; r; r = r->snext) {
                store_rec out = mrec_rec(r);
                s->iter_read++;
                int rc = fn(ctx, r->data, r->klen, &out);
                if (rc) return rc;
            }
        }
    return 0;
}

/* ---- LMDB engine -------------------------------------------------------- */

static void enc(uint8_t *p, const store_rec *rec) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(rec->stamp >> (8 * i));
    uint32_t v = (uint32_t)rec->version;
    for (int i = 0; i < 4; i++) p[8 + i] = (uint8_t)(v >> (8 * i));
    p[12] = rec->tomb ? LREC_TOMB : 0;
    if (!rec->tomb && rec->vlen) memcpy(p + LREC_HDR, rec->val, rec->vlen);
}

/* Decodes k/d into *out (out->val points into d). 0 or STORE_EIO. */
static int dec(const MDB_val *k, const MDB_val *d, store_rec *out) {
    if (k->mv_size == 0 || k->mv_size > STORE_MAX_KEY || d->mv_size < LREC_HDR ||
        d->mv_size - LREC_HDR > STORE_MAX_VALUE)
        return STORE_EIO;
    const uint8_t *p = d->mv_data;
    uint64_t stamp = 0;
    for (int i = 0; i < 8; i++) stamp |= (uint64_t)p[i] << (8 * i);
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[8 + i] << (8 * i);
    if (p[12] & ~LREC_TOMB) return STORE_EIO;
    out->stamp = stamp;
    out->version = (int32_t)v;
    out->tomb = p[12] & LREC_TOMB;
    out->vlen = (uint32_t)(d->mv_size - LREC_HDR);
    out->val = out->tomb ? NULL : p + LREC_HDR;
    if (out->tomb && out->vlen) return STORE_EIO;
    return 0;
}

/* Whether k is the index's entry in the unnamed database (no record). */
static bool is_idx_entry(const MDB_val *k) {
    return k->mv_size == sizeof IDX_NAME - 1 && memcmp(k->mv_data, IDX_NAME, k->mv_size) == 0;
}

/* The index's key of a record's key into out (IDX_KEY_MAX bytes). */
static MDB_val idx_key(uint8_t *out, const void *key, size_t klen) {
    unsigned sl = ring_key_slot(key, klen);
    out[0] = (uint8_t)(sl >> 8);
    out[1] = (uint8_t)sl;
    memcpy(out + 2, key, klen);
    return (MDB_val){klen + 2, out};
}

/* An LMDB error as a store error. ENOSPC does not come from writes through
 * the map (that would be SIGBUS: see "Room on disk"), but LMDB writes the
 * first pages of a new file with pwrite. */
static int lerr(store *s, int rc) {
    if (rc == MDB_MAP_FULL) return LMDB_EMAPFULL;
    if (rc == ENOSPC || rc == EDQUOT) {
        s->why = STORE_FULL_DISK;
        return STORE_ENOSPACE;
    }
    return STORE_EIO;
}

/* ---- room on disk (LMDB) ------------------------------------------------ */

static size_t reserve_want(const store *s) {
    return RESERVE_MIN + (s->map / 256 + GROW_MIN - 1) / GROW_MIN * GROW_MIN;
}

/* Gives file fd the blocks of bytes [from, to) (the size grows to `to` if
 * it was less). 0 or posix_fallocate's error. */
static int alloc(int fd, size_t from, size_t to) {
    int rc;
    do {
        rc = posix_fallocate(fd, (off_t)from, (off_t)(to - from));
    } while (rc == EINTR);
    return rc;
}

/* Sets the map to size bytes (LMDB raises it to the data's size if that is
 * more; with MDB_WRITEMAP it truncates the file to the map) and reads back
 * what it is. The read transaction kept between store_get calls goes first:
 * no transaction may be open while the map changes. 0, or STORE_EIO: LMDB
 * unmapped the old map and could not map the new one, so the store serves
 * nothing any more (s->broken). */
static int remap(store *s, size_t size) {
    if (s->rtxn) {
        mdb_txn_abort(s->rtxn);
        s->rtxn = NULL;
    }
    MDB_envinfo info;
    if (mdb_env_set_mapsize(s->env, size) != 0 || mdb_env_info(s->env, &info) != 0) {
        s->broken = true;
        return STORE_EIO;
    }
    s->map = info.me_mapsize;
    return 0;
}

/* Allocates dir/reserve up to reserve_want(). 0 when it is whole (or there
 * is no reserve file), -1 when the disk has no room for it. */
static int reserve_fill(store *s) {
    size_t want = reserve_want(s);
    if (s->reserve_fd < 0 || s->reserve >= want) return 0;
    if (alloc(s->reserve_fd, s->reserve, want) != 0) return -1;
    s->reserve = want;
    return 0;
}

/* Makes room for a write that got MDB_MAP_FULL: grows the map by a step of
 * newly allocated file (for a write that adds bytes, only once the reserve
 * is whole), or else by GROW_MIN of the reserve's blocks, for a write that
 * frees room or the first write after one (LMDB reuses the pages a
 * transaction freed from the one after the next: a full store would refuse
 * every write after a remove). 0 (run the write again), STORE_ENOSPACE
 * (s->why says why) or STORE_EIO. */
static int lmdb_grow(store *s, bool frees) {
    int why = STORE_FULL_MAP;
    if (s->map < s->map_limit) {
        why = STORE_FULL_DISK;
        size_t step = s->map / 4 / GROW_MIN * GROW_MIN;
        if (step < GROW_MIN) step = GROW_MIN;
        if (step > GROW_MAX) step = GROW_MAX;
        if (reserve_fill(s) == 0 || frees) {
            for (; step >= GROW_MIN; step /= 2) {
                size_t to = s->map_limit - s->map < step ? s->map_limit : s->map + step;
                if (alloc(s->fd, s->map, to) == 0) return remap(s, to);
            }
        }
    }
    if ((frees || s->freed) && s->reserve >= GROW_MIN) {
        /* blocks of the reserve go back to the file system, and at once to
         * data.mdb: past the map's limit too */
        size_t left = s->reserve - GROW_MIN;
        if (ftruncate(s->reserve_fd, (off_t)left) == 0) {
            s->reserve = left;
            if (alloc(s->fd, s->map, s->map + GROW_MIN) == 0) return remap(s, s->map + GROW_MIN);
        }
    }
    s->why = why;
    return STORE_ENOSPACE;
}

/* Whether a write that got *rc runs again: the map was full and has grown.
 * Otherwise *rc is the write's result. */
static bool lmdb_again(store *s, int *rc, bool frees) {
    if (*rc != LMDB_EMAPFULL) return false;
    *rc = lmdb_grow(s, frees);
    return *rc == 0;
}

/* Before any write: the map's blocks are all there (lmdb_open could not
 * make sure of it when the disk was full). 0 or STORE_ENOSPACE. */
static int lmdb_settled(store *s) {
    if (s->broken) return STORE_EIO;
    if (!s->unsure) return 0;
    if (alloc(s->fd, 0, s->map) == 0) {
        s->unsure = false;
        return 0;
    }
    s->why = STORE_FULL_DISK;
    return STORE_ENOSPACE;
}

/* LMDB's lock file is a shared mapping too, written at open: its first
 * page (the header and the reader slots this process uses) gets its block
 * before. 0, STORE_ENOSPACE (no room for it) or STORE_EIO. */
static int lock_prepare(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return STORE_EIO;
    long page = sysconf(_SC_PAGESIZE);
    int rc = alloc(fd, 0, page > 0 ? (size_t)page : 4096);
    close(fd);
    return rc == ENOSPC || rc == EDQUOT ? STORE_ENOSPACE : 0;
}

/* A file's size when every byte of it has its block, else 0. */
static size_t allocated_size(const struct stat *st) {
    return st->st_size > 0 && (off_t)st->st_blocks * 512 >= st->st_size ? (size_t)st->st_size : 0;
}

/* Gives path (a file of the store) to its owner alone, if others may read
 * or write it (a store an earlier version created 0644). */
static void owner_only(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &st) == 0 && (st.st_mode & 077)) chmod(path, st.st_mode & 0700);
}

/* Makes the index of every record, in one transaction. 0 or an error
 * (LMDB_EMAPFULL: see lmdb_again). */
static int idx_build(store *s) {
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    int rc = mdb_dbi_open(txn, IDX_NAME, MDB_CREATE, &s->idx);
    if (rc != 0 || (rc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
        mdb_txn_abort(txn);
        return lerr(s, rc);
    }
    MDB_val k, d, none = {0, NULL};
    uint8_t ik[IDX_KEY_MAX];
    for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (is_idx_entry(&k)) continue;
        MDB_val x = idx_key(ik, k.mv_data, k.mv_size);
        if ((rc = mdb_put(txn, s->idx, &x, &none, 0)) != 0) break;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return lerr(s, rc);
    }
    return (rc = mdb_txn_commit(txn)) != 0 ? lerr(s, rc) : 0;
}

/* Opens the index, or makes it (the first open of a store of an older
 * version). 0 (without room to make it, the store runs without: has_idx
 * false) or STORE_EIO. */
static int idx_open(store *s) {
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) return STORE_EIO;
    int rc = mdb_dbi_open(txn, IDX_NAME, 0, &s->idx);
    if (rc == 0) {
        if (mdb_txn_commit(txn) != 0) return STORE_EIO; /* keeps the handle */
        s->has_idx = true;
        return 0;
    }
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND) return STORE_EIO;
    if (lmdb_settled(s) != 0) return 0;
    for (;;) {
        rc = idx_build(s);
        if (!lmdb_again(s, &rc, false)) break;
    }
    s->has_idx = rc == 0;
    return rc == 0 || rc == STORE_ENOSPACE ? 0 : rc;
}

static int lmdb_open(store *s, const char *dir) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return STORE_EIO;
    int rc = lock_prepare(dir);
    if (rc != 0) return rc;
    s->buf = malloc(STORE_MAX_VALUE);
    if (!s->buf) return STORE_EIO;
    if (mdb_env_create(&s->env) != 0) {
        s->env = NULL;
        return STORE_EIO;
    }
    /* the map of the last life if data.mdb is allocated throughout, else a
     * small one (LMDB raises it to the data's size) */
    char path[4096];
    struct stat st;
    size_t map = MAP_MIN;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) == 0 && allocated_size(&st)) map = allocated_size(&st);
    if (mdb_env_set_mapsize(s->env, map) != 0 || mdb_env_set_maxdbs(s->env, 1) != 0)
        return STORE_EIO;
    if ((rc = mdb_env_open(s->env, dir, MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS, 0600)) != 0)
        return rc == MDB_MAP_FULL ? STORE_EIO : lerr(s, rc);
    owner_only(dir, "data.mdb");
    owner_only(dir, "lock.mdb");
    MDB_envinfo info;
    if (mdb_env_get_fd(s->env, &s->fd) != 0 || mdb_env_info(s->env, &info) != 0)
        return STORE_EIO;
    s->map = info.me_mapsize;
    if (alloc(s->fd, 0, s->map) != 0) {
        /* no room for the whole map: the data's pages alone, which were
         * written, so have their blocks */
        if (remap(s, 1) != 0) return STORE_EIO;
        s->unsure = alloc(s->fd, 0, s->map) != 0;
    }
    snprintf(path, sizeof path, "%s/reserve", dir);
    s->reserve_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->reserve_fd >= 0 && fstat(s->reserve_fd, &st) == 0) s->reserve = allocated_size(&st);
    reserve_fill(s); /* if the disk has room */

    int dead;
    mdb_reader_check(s->env, &dead); /* slots left by a killed process */

    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    if (mdb_dbi_open(txn, NULL, 0, &s->dbi) != 0 || mdb_cursor_open(txn, s->dbi, &cur) != 0)
        goto fail;
    MDB_val k, d;
    rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        store_rec r;
        if (is_idx_entry(&k)) continue;
        if (dec(&k, &d, &r) != 0) break;
        s->records++;
        if (!r.tomb) s->live++;
        else th_push(s, r.stamp, k.mv_data, k.mv_size);
        s->bytes += k.mv_size + r.vlen;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) goto fail;
    if (mdb_txn_commit(txn) != 0) return STORE_EIO; /* keeps the dbi handle */
    return idx_open(s);
fail:
    mdb_txn_abort(txn);
    return STORE_EIO;
}

static int lmdb_get(store *s, const uint8_t *key, size_t klen, store_rec *out) {
    if (s->broken) return STORE_EIO;
    int rc = s->rtxn ? mdb_txn_renew(s->rtxn)
                     : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
    if (rc != 0) {
        if (s->rtxn) mdb_txn_abort(s->rtxn);
        s->rtxn = NULL;
        return STORE_EIO;
    }
    MDB_val k = {klen, (void *)key}, d;
    rc = mdb_get(s->rtxn, s->dbi, &k, &d);
    if (rc == 0) {
        rc = dec(&k, &d, out);
        if (rc == 0 && !out->tomb) { /* never hand out a pointer into the map */
            if (out->vlen) memcpy(s->buf, out->val, out->vlen);
            out->val = s->buf;
        }
    } else {
        rc = rc == MDB_NOTFOUND ? STORE_ENOTFOUND : STORE_EIO;
    }
    mdb_txn_reset(s->rtxn);
    return rc;
}

/* LMDB_EMAPFULL when the map is full: see lmdb_again. *frees tells whether
 * the write frees room (a tombstone or a smaller value over a record). */
static int lmdb_put(store *s, const uint8_t *key, size_t klen, const store_rec *rec,
                    bool *frees) {
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    MDB_val k = {klen, (void *)key}, d;
    store_rec old;
    bool had = false;
    int rc = mdb_get(txn, s->dbi, &k, &d);
    if (rc == 0) {
        if (dec(&k, &d, &old) != 0) {
            rc = STORE_EIO;
            goto fail;
        }
        had = true;
    } else if (rc != MDB_NOTFOUND) {
        rc = STORE_EIO;
        goto fail;
    }
    if (had && store_rec_cmp(rec, &old) <= 0) {
        rc = STORE_ESTALE;
        goto fail;
    }
    uint32_t vlen = rec->tomb ? 0 : rec->vlen;
    size_t old_sz = had ? klen + old.vlen : 0, new_sz = klen + vlen;
    *frees = had && new_sz <= old_sz;
    if (!fits(s, old_sz, new_sz)) {
        rc = STORE_ENOSPACE;
        goto fail;
    }
    if (had && old.vlen) { /* told of below: the put may overwrite it in place */
        memcpy(s->buf, old.val, old.vlen);
        old.val = s->buf;
    }
    d.mv_size = LREC_HDR + vlen;
    d.mv_data = NULL;
    if ((rc = mdb_put(txn, s->dbi, &k, &d, MDB_RESERVE)) != 0) {
        rc = lerr(s, rc);
        goto fail;
    }
    enc(d.mv_data, rec);
    if (!had && s->has_idx) {
        uint8_t ik[IDX_KEY_MAX];
        MDB_val x = idx_key(ik, key, klen), none = {0, NULL};
        if ((rc = mdb_put(txn, s->idx, &x, &none, 0)) != 0) {
            rc = lerr(s, rc);
            goto fail;
        }
    }
    if (had) tell(s, key, klen, &old, STORE_REPLACED);
    tell(s, key, klen, rec, +1);
    if ((rc = mdb_txn_commit(txn)) != 0) {
        tell(s, NULL, 0, NULL, 0);
        return lerr(s, rc);
    }
    if (had) {
        if (!old.tomb) s->live--;
    } else {
        s->records++;
    }
    if (!rec->tomb) s->live++;
    else th_push(s, rec->stamp, key, klen);
    s->bytes = s->bytes - old_sz + new_sz;
    return 0;
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* Takes a record's key off the index (one it lacks is no error). 0 or
 * LMDB's error. */
static int idx_del(store *s, MDB_txn *txn, const void *key, size_t klen) {
    if (!s->has_idx) return 0;
    uint8_t ik[IDX_KEY_MAX];
    MDB_val x = idx_key(ik, key, klen);
    int rc = mdb_del(txn, s->idx, &x, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int lmdb_drop(store *s, const uint8_t *key, size_t klen, uint64_t stamp) {
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    MDB_val k = {klen, (void *)key}, d;
    store_rec old;
    int rc = mdb_get(txn, s->dbi, &k, &d);
    if (rc != 0 || dec(&k, &d, &old) != 0) {
        rc = rc == MDB_NOTFOUND ? STORE_ENOTFOUND : STORE_EIO;
    } else if (old.stamp != stamp) {
        rc = STORE_ESTALE;
    } else if (tell(s, key, klen, &old, -1), (rc = mdb_del(txn, s->dbi, &k, NULL)) != 0 ||
               (rc = idx_del(s, txn, key, klen)) != 0) {
        tell(s, NULL, 0, NULL, 0);
        rc = lerr(s, rc);
    } else if ((rc = mdb_txn_commit(txn)) != 0) {
        tell(s, NULL, 0, NULL, 0);
        return lerr(s, rc); /* a failed commit has freed the transaction */
    } else {
        if (!old.tomb) s->live--;
        s->records--;
        s->bytes -= klen + old.vlen;
        return 0;
    }
    mdb_txn_abort(txn);
    return rc;
}

static int lmdb_wipe(store *s) {
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    /* the index first, emptied (its pages freed, its handle kept): emptying
     * the unnamed database takes the index's entry too, and the commit
     * writes it back, for the empty index */
    int rc = s->has_idx ? mdb_drop(txn, s->idx, 0) : 0;
    if (rc == 0) rc = mdb_drop(txn, s->dbi, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return lerr(s, rc);
    }
    if ((rc = mdb_txn_commit(txn)) != 0) return lerr(s, rc);
    s->nth = 0;
    s->th_lost = false;
    tell(s, NULL, 0, NULL, 0);
    return 0;
}

/* Where a walk of lmdb_gc stands between its transactions. */
typedef struct gc_walk {
    uint64_t min_stamp;
    bool all;                    /* values too (store_drop_older), not only tombstones */
    bool again;                  /* the heap is made again of the tombstones kept */
    size_t batch;                /* records the next transaction drops, at most */
    uint8_t from[STORE_MAX_KEY]; /* the next transaction starts at this key */
    size_t flen;                 /* 0: at the first */
    bool done;                   /* the walk has reached the end */
    size_t dropped;              /* by the transactions committed */
} gc_walk;

/* One transaction of a walk: drops up to w->batch old records from w->from
 * on, and stops at the next one to drop (the next transaction's from) or
 * at the end (w->done). 0, or an error (nothing of this transaction done). */
static int lmdb_gc_batch(store *s, gc_walk *w) {
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    if (mdb_cursor_open(txn, s->dbi, &cur) != 0) {
        mdb_txn_abort(txn);
        return STORE_EIO;
    }
    size_t n = 0, freed = 0, live = 0;
    bool told = false; /* an observer was told of a drop: on failure, told it is untold */
    MDB_val k = {w->flen, w->from}, d;
    MDB_cursor_op op = w->flen ? MDB_SET_RANGE : MDB_FIRST;
    uint8_t next[STORE_MAX_KEY];
    size_t nlen = 0; /* 0: the walk is at its end */
    int rc;
    /* After mdb_cursor_del, MDB_NEXT yields the record that followed the
     * deleted one (LMDB's C_DEL flag), so the walk skips nothing. */
    while ((rc = mdb_cursor_get(cur, &k, &d, op)) == 0) {
        op = MDB_NEXT;
        store_rec r;
        if (dec(&k, &d, &r) != 0) continue;
        if ((!r.tomb && !w->all) || r.stamp >= w->min_stamp) {
            if (w->again && r.tomb) th_push(s, r.stamp, k.mv_data, k.mv_size);
            continue;
        }
        if (n == w->batch) { /* (its key is a record's: dec took it) */
            memcpy(next, k.mv_data, nlen = k.mv_size);
            break;
        }
        size_t sz = k.mv_size + r.vlen;
        uint8_t key[STORE_MAX_KEY];
        size_t klen = k.mv_size;
        memcpy(key, k.mv_data, klen);
        tell(s, k.mv_data, k.mv_size, &r, -1); /* (r points into the page: before the delete) */
        told = true;
        if ((rc = mdb_cursor_del(cur, 0)) != 0 || (rc = idx_del(s, txn, key, klen)) != 0) break;
        n++;
        live += !r.tomb;
        freed += sz;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND && !nlen) {
        mdb_txn_abort(txn);
        if (told) tell(s, NULL, 0, NULL, 0);
        return lerr(s, rc);
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        if (told) tell(s, NULL, 0, NULL, 0);
        return lerr(s, rc);
    }
    s->records -= n;
    s->live -= live;
    s->bytes -= freed;
    w->dropped += n;
    w->done = nlen == 0;
    memcpy(w->from, next, w->flen = nlen);
    return 0;
}

/* Drops old tombstones (all: every record) stamped below min_stamp, up to
 * GC_BATCH a transaction, each going on from the key the last stopped at.
 * One transaction of them all may never fit a full disk (it copies the
 * index's pages, most of them); in batches, the pages one frees serve the
 * one after the next (LMDB keeps the last two snapshots whole). A batch
 * refused for room is tried again with half as many, down to one; they
 * grow again as they pass. 0, or the error that stopped the walk;
 * *dropped says how many went (by the batches committed, also when a
 * later one failed). */
static int lmdb_gc(store *s, uint64_t min_stamp, bool all, size_t *dropped) {
    gc_walk w = {.min_stamp = min_stamp, .all = all, .again = s->th_lost, .batch = GC_BATCH};
    if (w.again) s->nth = 0, s->th_lost = false;
    int rc = 0, ok = 0; /* batches committed in a row */
    while (!w.done) {
        if ((rc = lmdb_gc_batch(s, &w)) == 0) {
            /* twice as many after two: the pages the first freed serve the third */
            if (++ok % 2 == 0 && w.batch < GC_BATCH) w.batch *= 2;
            continue;
        }
        ok = 0;
        if (w.again) { /* the failed batch pushed tombstones its retry would push again,
                        * and a walk cut short leaves the rest off: the next collection
                        * walks the store (th_lost) */
            w.again = false;
            s->th_lost = true;
        }
        if (lmdb_again(s, &rc, true)) continue;
        if (rc != STORE_ENOSPACE || w.batch == 1) break;
        w.batch /= 2;
    }
    *dropped = w.dropped;
    return rc;
}

/* Drops the tombstones stamped below min_stamp, from the heap's top, in
 * one transaction; entries taken off go back on when it fails. */
static int lmdb_gc_heap(store *s, uint64_t min_stamp, size_t *dropped) {
    *dropped = 0;
    if (!s->nth || s->th[0].stamp >= min_stamp) return 0;
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn) != 0) return STORE_EIO;
    tomb_ent *taken = NULL;
    size_t ntaken = 0, cap = 0, n = 0, freed = 0;
    bool told = false; /* an observer was told of a drop: on failure, told it is untold
                        * (counted by n, after the delete, a first delete refused by a
                        * full map left the digest counting the record gone twice) */
    int rc = 0;
    while (s->nth && s->th[0].stamp < min_stamp) {
        if (ntaken == cap) {
            size_t c = cap ? 2 * cap : 64;
            tomb_ent *t = realloc(taken, c * sizeof *t);
            if (!t) break; /* the rest at the next collection */
            taken = t;
            cap = c;
        }
        tomb_ent t = taken[ntaken++] = th_pop(s);
        MDB_val k = {t.klen, t.key}, d;
        store_rec r;
        if ((rc = mdb_get(txn, s->dbi, &k, &d)) == MDB_NOTFOUND) {
            rc = 0;
            continue;
        }
        if (rc != 0) break;
        if (dec(&k, &d, &r) != 0 || !r.tomb || r.stamp != t.stamp) continue;
        tell(s, t.key, t.klen, &r, -1);
        told = true;
        if ((rc = mdb_del(txn, s->dbi, &k, NULL)) != 0 || (rc = idx_del(s, txn, t.key, t.klen)) != 0)
            break;
        n++;
        freed += t.klen;
    }
    if (rc != 0) mdb_txn_abort(txn);
    else rc = mdb_txn_commit(txn);
    if (rc != 0) {
        if (told) tell(s, NULL, 0, NULL, 0);
        for (size_t i = 0; i < ntaken; i++)
            th_push(s, taken[i].stamp, taken[i].key, taken[i].klen);
        free(taken);
        return lerr(s, rc);
    }
    free(taken);
    s->records -= n;
    s->bytes -= freed;
    *dropped = n;
    return 0;
}

/* A walk of the whole store, passing on the records of the slots set in
 * `slots` (NULL: every record); with the index, the slots' records only. */
static int lmdb_iter(store *s, const uint64_t *slots, store_visit_fn fn, void *ctx) {
    if (s->broken) return STORE_EIO;
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t read = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0) return STORE_EIO;
    bool by_idx = slots && s->has_idx;
    if (mdb_cursor_open(txn, by_idx ? s->idx : s->dbi, &cur) != 0) {
        mdb_txn_abort(txn);
        return STORE_EIO;
    }
    MDB_val k, d;
    store_rec r;
    int ret = 0, rc = MDB_NOTFOUND;
    if (by_idx) {
        for (unsigned w = 0; w < STORE_SLOTS / 64 && !ret; w++)
            for (uint64_t bits = slots[w]; bits && !ret; bits &= bits - 1) {
                unsigned sl = w * 64 + (unsigned)__builtin_ctzll(bits);
                uint8_t at[2] = {(uint8_t)(sl >> 8), (uint8_t)sl};
                k = (MDB_val){2, at};
                for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); rc == 0;
                     rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
                    const uint8_t *x = k.mv_data;
                    if (k.mv_size < 3 || x[0] != at[0] || x[1] != at[1]) break;
                    MDB_val key = {k.mv_size - 2, (void *)(x + 2)};
                    read++;
                    if ((rc = mdb_get(txn, s->dbi, &key, &d)) == MDB_NOTFOUND) continue;
                    if (rc != 0) break;
                    if (dec(&key, &d, &r) != 0) continue;
                    if ((ret = fn(ctx, key.mv_data, key.mv_size, &r)) != 0) break;
                }
                if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND) ret = STORE_EIO;
            }
        rc = MDB_NOTFOUND;
    } else {
        for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
            read++;
            if (dec(&k, &d, &r) != 0) continue; /* the index's entry; open checked the rest */
            if (slots) {
                unsigned sl = ring_key_slot(k.mv_data, k.mv_size);
                if (!(slots[sl / 64] >> (sl % 64) & 1)) continue;
            }
            if ((ret = fn(ctx, k.mv_data, k.mv_size, &r)) != 0) break;
        }
    }
    if (ret == 0 && rc != MDB_NOTFOUND) ret = STORE_EIO;
    if (slots) s->iter_read = read;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return ret;
}

/* ---- interface ---------------------------------------------------------- */

int store_open(store **out, const char *dir, size_t max_bytes) {
    if (!out) return STORE_EINVAL;
    *out = NULL;
    if (dir && !*dir) return STORE_EINVAL;
    store *s = calloc(1, sizeof *s);
    if (!s) return STORE_EIO;
    s->max_bytes = max_bytes;
    if (dir) {
        s->lmdb = true;
        s->fd = s->reserve_fd = -1;
        s->map_limit = STORE_LMDB_MAPSIZE;
        int rc = lmdb_open(s, dir);
        if (rc != 0) {
            store_close(s);
            return rc;
        }
    } else {
        s->slots = calloc(MEM_MIN_SLOTS, sizeof *s->slots);
        s->shead = calloc(STORE_SLOTS, sizeof *s->shead);
        if (!s->slots || !s->shead) {
            free(s->slots);
            free(s->shead);
            free(s);
            return STORE_EIO;
        }
        s->mask = MEM_MIN_SLOTS - 1;
    }
    *out = s;
    return 0;
}

void store_close(store *s) {
    if (!s) return;
    if (s->lmdb) {
        if (s->rtxn) mdb_txn_abort(s->rtxn);
        if (s->env) mdb_env_close(s->env);
        if (s->reserve_fd >= 0) close(s->reserve_fd);
        free(s->buf);
    } else {
        mem_free_all(s);
        free(s->slots);
        free(s->shead);
    }
    free(s->th);
    free(s);
}

int store_get(store *s, const uint8_t *key, size_t klen, store_rec *rec) {
    if (!s || !key || klen == 0 || klen > STORE_MAX_KEY || !rec) return STORE_ENOTFOUND;
    return s->lmdb ? lmdb_get(s, key, klen, rec) : mem_get(s, key, klen, rec);
}

int store_put(store *s, const uint8_t *key, size_t klen, const store_rec *rec) {
    if (!s) return STORE_EINVAL;
    int rc = valid(key, klen, rec);
    if (rc) return rc;
    size_t before = s->bytes;
    if (!s->lmdb) {
        rc = mem_put(s, key, klen, rec);
    } else if ((rc = lmdb_settled(s)) == 0) {
        bool frees = false;
        for (;;) {
            rc = lmdb_put(s, key, klen, rec, &frees);
            if (!lmdb_again(s, &rc, frees)) break;
        }
        if (rc == 0) s->freed = frees;
    }
    if (rc == STORE_ENOSPACE) {
        s->refused++;
        s->full = s->why;
    } else if (rc == 0 && s->bytes > before) {
        s->full = STORE_ROOM;
    }
    return rc;
}

int store_rec_cmp(const store_rec *a, const store_rec *b) {
    if (a->stamp != b->stamp) return a->stamp < b->stamp ? -1 : 1;
    if (a->tomb != b->tomb) return a->tomb ? 1 : -1;
    if (a->tomb) return 0;
    if (a->vlen != b->vlen) return a->vlen < b->vlen ? -1 : 1;
    int c = a->vlen ? memcmp(a->val, b->val, a->vlen) : 0;
    if (c) return c < 0 ? -1 : 1;
    if (a->version != b->version) return a->version < b->version ? -1 : 1;
    return 0;
}

int store_drop(store *s, const uint8_t *key, size_t klen, uint64_t stamp) {
    if (!s || !key || klen == 0 || klen > STORE_MAX_KEY) return STORE_ENOTFOUND;
    if (!s->lmdb) return mem_drop(s, key, klen, stamp);
    int rc = lmdb_settled(s);
    while (rc == 0) {
        rc = lmdb_drop(s, key, klen, stamp);
        if (!lmdb_again(s, &rc, true)) break;
    }
    if (rc == 0) s->freed = true;
    return rc;
}

int store_wipe(store *s) {
    if (!s) return STORE_EINVAL;
    int rc = 0;
    if (!s->lmdb) {
        rc = mem_wipe(s);
    } else if ((rc = lmdb_settled(s)) == 0) {
        for (;;) {
            rc = lmdb_wipe(s);
            if (!lmdb_again(s, &rc, true)) break;
        }
        if (rc == 0) s->freed = true;
    }
    if (rc == 0) {
        s->records = s->live = s->bytes = 0;
        s->full = STORE_ROOM;
    }
    return rc;
}

/* store_gc and store_drop_older: 0 or an error, *dropped how many went. */
static int gc(store *s, uint64_t min_stamp, bool all, size_t *dropped) {
    *dropped = 0;
    if (!s) return STORE_EINVAL;
    if (!all && s->records == s->live) {
        /* no tombstone: every entry of the heap is of one replaced since,
         * and goes (nothing else took them off: a key removed and written
         * again and again, with no other tombstone, grew it 48 bytes a time) */
        s->nth = 0;
        s->th_lost = false;
        return 0;
    }
    if (!s->lmdb) {
        *dropped = mem_gc(s, min_stamp, all);
        return 0;
    }
    int rc = lmdb_settled(s);
    if (rc == 0 && (all || s->th_lost)) {
        rc = lmdb_gc(s, min_stamp, all, dropped);
    } else {
        while (rc == 0) {
            rc = lmdb_gc_heap(s, min_stamp, dropped);
            if (!lmdb_again(s, &rc, true)) break;
        }
    }
    if (*dropped) s->freed = true;
    return rc;
}

size_t store_gc(store *s, uint64_t min_stamp) {
    size_t dropped;
    gc(s, min_stamp, false, &dropped);
    return dropped;
}

size_t store_heap_entries(const store *s) { return s ? s->nth : 0; }

int store_drop_older(store *s, uint64_t min_stamp, size_t *dropped) {
    size_t n;
    int rc = gc(s, min_stamp, true, &n);
    if (dropped) *dropped = n;
    return rc;
}

int store_iter(store *s, store_visit_fn fn, void *ctx) {
    if (!s || !fn) return STORE_EINVAL;
    return s->lmdb ? lmdb_iter(s, NULL, fn, ctx) : mem_iter(s, fn, ctx);
}

int store_iter_slots(store *s, const uint64_t *slots, store_visit_fn fn, void *ctx) {
    if (!s || !slots || !fn) return STORE_EINVAL;
    return s->lmdb ? lmdb_iter(s, slots, fn, ctx) : mem_iter_slots(s, slots, fn, ctx);
}

void store_observe(store *s, store_observer_fn fn, void *ctx) {
    if (!s) return;
    s->obs = fn;
    s->obs_ctx = ctx;
}

size_t store_count(const store *s) { return s ? s->live : 0; }
size_t store_iter_read(const store *s) { return s ? s->iter_read : 0; }
size_t store_records(const store *s) { return s ? s->records : 0; }
size_t store_bytes(const store *s) { return s ? s->bytes : 0; }
size_t store_max_bytes(const store *s) { return s ? s->max_bytes : 0; }
const char *store_engine(const store *s) { return s && s->lmdb ? "lmdb" : "memory"; }
int store_full(const store *s) { return s ? s->full : STORE_ROOM; }
uint64_t store_refused(const store *s) { return s ? s->refused : 0; }
size_t store_disk_bytes(const store *s) { return s && s->lmdb ? s->map + s->reserve : 0; }

const char *store_full_name(int why) {
    switch (why) {
    case STORE_ROOM: return "room";
    case STORE_FULL_CAP: return "cap";
    case STORE_FULL_MEMORY: return "memory";
    case STORE_FULL_DISK: return "disk";
    case STORE_FULL_MAP: return "map";
    default: return "?";
    }
}

void store_set_map_limit(store *s, size_t bytes) {
    if (s && s->lmdb) s->map_limit = bytes;
}

int store_sync(store *s) {
    if (!s) return STORE_EINVAL;
    if (!s->lmdb) return 0;
    return !s->broken && mdb_env_sync(s->env, 1) == 0 ? 0 : STORE_EIO;
}
