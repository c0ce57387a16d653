/*
 * digest: each hash slot's digest of the store's settled records, kept up to
 * date as the store changes, for anti-entropy.
 *
 * Two replicas compare what they hold bucket by bucket (repl.c); a bucket's
 * digest is the XOR of its slots' digests, a slot's the XOR of its records'
 * (digest_rec: key, stamp and content). Computing them with a pass over the
 * store every sync period stalled a node for 100-400 ms at a million keys,
 * and under a stream of writes every bucket differed by the writes in flight,
 * so every exchange pushed the store. Here each slot's digest follows the
 * store's changes (store_observe), and only settled records count: those
 * whose stamp's wall time is before the horizon, the start of the epoch
 * (epoch_ms long) before the current one, so at least one epoch old. Two
 * nodes compare digests of one horizon (carried with them), and a write in
 * flight is in neither.
 *
 * Records of the current and last epochs are kept per epoch (a ring of
 * RECENT) and folded into the settled digest as the horizon passes them;
 * records stamped further ahead (a clock ahead of ours) are only counted,
 * and their slots computed again from the store when the horizon moves.
 * A change the store could not tell record by record (a wipe) has the
 * whole table computed again, once, at the next digest_advance.
 */
#ifndef DHT_DIGEST_H
#define DHT_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Epochs from the horizon on kept apart (a record stamped past them is
 * "ahead": counted only, its slot computed again when the horizon moves).
 * They also let a node compare digests at a peer's horizon up to that many
 * epochs ahead of its own (digest_slots_at): an epoch begun between the
 * two nodes' passes, or a peer whose clock is ahead (8 s at the default
 * 2-s epochs). */
#define DIGEST_RECENT 4

typedef struct digest digest;

/* Follows st (store_observe: st's one observer) from its current records.
 * NULL on failure. */
digest *digest_new(store *st, uint64_t epoch_ms, uint64_t wall_ms);

/* Stops following the store and frees d. */
void digest_free(digest *d);

/* Moves the horizon up to wall_ms (never back); returns it, in wall ms. */
uint64_t digest_advance(digest *d, uint64_t wall_ms);

/* The horizon: records stamped before it (in wall ms) are settled. */
uint64_t digest_horizon(const digest *d);

/* Whether digest_slots_at can tell digests at horizon h_ms: an epoch start,
 * at or after this digest's horizon and at most DIGEST_RECENT epochs on. */
bool digest_reaches(const digest *d, uint64_t h_ms);

/* Every slot's digest of the records settled at horizon h_ms
 * (digest_reaches), into out: those of the epochs between the horizons
 * count too. */
void digest_slots_at(const digest *d, uint64_t h_ms, uint64_t out[STORE_SLOTS]);

/* Every slot's settled digest ([STORE_SLOTS], valid until the next
 * change), and how many records (settled or not) a slot has. */
const uint64_t *digest_slots(const digest *d);
uint32_t digest_count(const digest *d, unsigned slot);

/* A record's digest: key, stamp and content, so that two records with one
 * stamp and different values differ. */
uint64_t digest_rec(const uint8_t *key, size_t klen, const store_rec *rec);

#endif
