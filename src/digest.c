/* digest: per-slot digests of settled records, following the store. */
#include "digest.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "ring.h"

#define RECENT DIGEST_RECENT

typedef struct sdig {
    uint32_t count;           /* records */
    uint32_t ahead;           /* records of epochs past the recent ones */
} sdig;

struct digest {
    store *st;
    uint64_t epoch_ms;
    uint64_t h;               /* horizon, in epochs: those before it are settled */
    bool rebuild;             /* the store changed untold: compute everything again */
    bool replacing;           /* told of a record being replaced (STORE_REPLACED): */
    uint64_t old_x, old_e;    /* its digest and epoch */
    sdig *slot;               /* [STORE_SLOTS] */
    uint64_t *settled;        /* [STORE_SLOTS]: records of epochs before the horizon */
    /* [RECENT][STORE_SLOTS]: records of epoch e (horizon <= e < horizon +
     * RECENT) at row e % RECENT, a row per epoch so that folding an epoch
     * into the settled digests reads one row */
    uint64_t (*recent)[STORE_SLOTS];
};

uint64_t digest_rec(const uint8_t *key, size_t klen, const store_rec *rec) {
    return XXH3_64bits_withSeed(key, klen, rec->stamp) +
           XXH3_64bits_withSeed(rec->val, rec->tomb ? 0 : rec->vlen, rec->tomb);
}

static uint64_t epoch_of(const digest *d, uint64_t stamp) { return (stamp >> 16) / d->epoch_ms; }

/* Adds (change +1) or takes out (-1) a record of digest x and epoch e. */
static void account(digest *d, unsigned slot, uint64_t x, uint64_t e, int change) {
    sdig *s = &d->slot[slot];
    s->count = (uint32_t)((int64_t)s->count + change);
    if (e >= d->h + RECENT) s->ahead = (uint32_t)((int64_t)s->ahead + change);
    else if (e < d->h) d->settled[slot] ^= x;
    else d->recent[e % RECENT][slot] ^= x;
}

/* A record replaced by a recent one counts as settled until the new one
 * settles: the new one's epoch's digest takes the old out and the new in.
 * So a slot's settled digest is of the newest version of each key stamped
 * before the horizon, which is what a replica the write has not reached
 * yet holds too: otherwise every write in flight over a settled record
 * made its bucket differ (a million keys, a stream of writes: most
 * buckets, every exchange). It does not depend on when the horizon moved
 * here, so two nodes that moved theirs a second apart still agree. */
static void observe(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec, int change) {
    digest *d = ctx;
    if (change == 0) d->rebuild = true;
    if (d->rebuild) return;
    uint64_t x = digest_rec(key, klen, rec), e = epoch_of(d, rec->stamp);
    if (change == STORE_REPLACED) { /* the new version comes next */
        d->replacing = true;
        d->old_x = x;
        d->old_e = e;
        return;
    }
    unsigned slot = ring_key_slot(key, klen);
    if (change > 0 && d->replacing) {
        d->replacing = false;
        if (e >= d->h && e < d->h + RECENT) { /* (the old one is not ahead: older) */
            d->recent[e % RECENT][slot] ^= d->old_x ^ x;
            return;
        }
        account(d, slot, d->old_x, d->old_e, -1);
    }
    account(d, slot, x, e, change);
}

static int visit(void *ctx, const uint8_t *key, size_t klen, const store_rec *rec) {
    digest *d = ctx;
    account(d, ring_key_slot(key, klen), digest_rec(key, klen, rec), epoch_of(d, rec->stamp), +1);
    return 0;
}

static void rebuild(digest *d) {
    memset(d->slot, 0, STORE_SLOTS * sizeof *d->slot);
    memset(d->settled, 0, STORE_SLOTS * sizeof *d->settled);
    memset(d->recent, 0, RECENT * sizeof *d->recent);
    d->rebuild = store_iter(d->st, visit, d) != 0; /* the engine failed: again later */
}

digest *digest_new(store *st, uint64_t epoch_ms, uint64_t wall_ms) {
    digest *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->slot = calloc(STORE_SLOTS, sizeof *d->slot);
    d->settled = calloc(STORE_SLOTS, sizeof *d->settled);
    d->recent = calloc(RECENT, sizeof *d->recent);
    if (!d->slot || !d->settled || !d->recent) {
        free(d->slot);
        free(d->settled);
        free(d->recent);
        free(d);
        return NULL;
    }
    d->st = st;
    d->epoch_ms = epoch_ms ? epoch_ms : 1;
    uint64_t cur = wall_ms / d->epoch_ms;
    d->h = cur ? cur - 1 : 0;
    rebuild(d);
    store_observe(st, observe, d);
    return d;
}

void digest_free(digest *d) {
    if (!d) return;
    store_observe(d->st, NULL, NULL);
    free(d->slot);
    free(d->settled);
    free(d->recent);
    free(d);
}

uint64_t digest_advance(digest *d, uint64_t wall_ms) {
    uint64_t cur = wall_ms / d->epoch_ms, h = cur ? cur - 1 : 0;
    if (d->rebuild) {
        if (h > d->h) d->h = h;
        rebuild(d);
        return d->h * d->epoch_ms;
    }
    if (h <= d->h) return d->h * d->epoch_ms;
    uint64_t steps = h - d->h < RECENT ? h - d->h : RECENT;
    for (uint64_t e = d->h; e < d->h + steps; e++) {
        uint64_t *row = d->recent[e % RECENT];
        for (unsigned i = 0; i < STORE_SLOTS; i++) d->settled[i] ^= row[i];
        memset(row, 0, sizeof *d->recent);
    }
    uint64_t again[STORE_SLOTS / 64] = {0}; /* slots with records ahead */
    bool any = false;
    for (unsigned i = 0; i < STORE_SLOTS; i++) {
        if (!d->slot[i].ahead) continue;
        again[i / 64] |= 1ull << (i % 64);
        memset(&d->slot[i], 0, sizeof d->slot[i]);
        d->settled[i] = 0;
        for (unsigned r = 0; r < RECENT; r++) d->recent[r][i] = 0;
        any = true;
    }
    d->h = h;
    if (any && store_iter_slots(d->st, again, visit, d) != 0) d->rebuild = true;
    return d->h * d->epoch_ms;
}

uint64_t digest_horizon(const digest *d) { return d->h * d->epoch_ms; }

bool digest_reaches(const digest *d, uint64_t h_ms) {
    uint64_t h = h_ms / d->epoch_ms;
    return h_ms % d->epoch_ms == 0 && h >= d->h && h - d->h <= RECENT;
}

void digest_slots_at(const digest *d, uint64_t h_ms, uint64_t out[STORE_SLOTS]) {
    memcpy(out, d->settled, STORE_SLOTS * sizeof *out);
    for (uint64_t e = d->h; e < h_ms / d->epoch_ms && e < d->h + RECENT; e++) {
        const uint64_t *row = d->recent[e % RECENT];
        for (unsigned i = 0; i < STORE_SLOTS; i++) out[i] ^= row[i];
    }
}

const uint64_t *digest_slots(const digest *d) { return d->settled; }

uint32_t digest_count(const digest *d, unsigned slot) {
    return slot < STORE_SLOTS ? d->slot[slot].count : 0;
}
