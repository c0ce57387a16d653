/* ring: consistent hashing with virtual nodes (see ring.h for the layout
 * and the structure). */
#include "ring.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Points a chunk holds at most. Inserting or deleting a point moves up to
 * CHUNK of them; a split or merge moves the chunk array, about P /
 * CHUNK_FILL entries. 512 keeps both a few microseconds at 10 M points. */
#define CHUNK 512
#define CHUNK_FILL (CHUNK * 3 / 4) /* after ring_build: room to add before splitting */
#define CHUNK_LOW (CHUNK / 4)      /* below this a chunk merges with a neighbour */

typedef struct chunk {
    uint32_t n;
    uint32_t owner[CHUNK]; /* ids */
    uint64_t pos[CHUNK];   /* ascending, ties in address order */
} chunk;

typedef struct entry {
    ring_node nd;
    bool present;
    uint64_t arcs;      /* total of its arcs mod 2^64 (see ring_share) */
    uint32_t primaries; /* hash slots it is the primary of (valid with the slot table) */
    uint32_t places;    /* hash slots it is one of the replicas of (likewise) */
} entry;

struct ring {
    unsigned vnodes;
    size_t n;       /* nodes */
    size_t npoints;
    chunk **ch;     /* [nc] the points in circle order, none empty */
    uint64_t *first; /* [nc] first[c] = ch[c]->pos[0]: searched without touching chunks */
    size_t nc, ccap;
    entry *ids;     /* [nids] by id */
    size_t nids;
    unsigned replicas; /* N, the replicas a slot's table row holds */
    size_t width;      /* min(replicas, n): the nodes each row holds, when !stale */
    uint32_t *table;   /* [RING_SLOTS * replicas]: slot s's replicas at
                        * table[s * replicas], its primary first, when !stale;
                        * UINT32_MAX past width */
    bool stale;        /* the nodes changed since the slot table was computed */
    uint64_t mark;     /* ring_set_mark's: what a row changed next gets */
    uint64_t *marks;   /* [RING_SLOTS]: the mark when slot s's row last changed */
};

/* A point's place: chunk c, index i. i == ch[c]->n only at the end (one
 * past the last point, c the last chunk). */
typedef struct cur {
    size_t c;
    uint32_t i;
} cur;

ring *ring_new(unsigned vnodes) {
    ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->vnodes = vnodes ? vnodes : RING_DEFAULT_VNODES;
    r->marks = calloc(RING_SLOTS, sizeof *r->marks);
    if (!r->marks || ring_set_replicas(r, RING_DEFAULT_REPLICAS) != 0) {
        free(r->marks);
        free(r);
        return NULL;
    }
    return r;
}

int ring_set_replicas(ring *r, unsigned replicas) {
    if (replicas < 1 || replicas > RING_MAX_REPLICAS) return -1;
    if (replicas == r->replicas) return 0;
    uint32_t *t = malloc((size_t)RING_SLOTS * replicas * sizeof *t);
    if (!t) return -1;
    memset(t, 0xff, (size_t)RING_SLOTS * replicas * sizeof *t); /* no row yet: all change */
    free(r->table);
    r->table = t;
    r->replicas = replicas;
    r->stale = true;
    return 0;
}

static void free_chunks(chunk **ch, size_t nc) {
    for (size_t c = 0; c < nc; c++) free(ch[c]);
}

void ring_free(ring *r) {
    if (!r) return;
    free_chunks(r->ch, r->nc);
    free(r->ch);
    free(r->first);
    free(r->ids);
    free(r->table);
    free(r->marks);
    free(r);
}

size_t ring_size(const ring *r) { return r->n; }

/* ---- hash slots ---- */

static const uint16_t crc16tab[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
    0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
    0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
    0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
    0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
    0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
    0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
    0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
    0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
    0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
    0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
    0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
    0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
    0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
    0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
    0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
    0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
    0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
    0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
    0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
    0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

uint16_t ring_crc16(const void *p, size_t len) {
    const uint8_t *b = p;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) crc = (uint16_t)(crc << 8 ^ crc16tab[(crc >> 8 ^ b[i]) & 0xFF]);
    return crc;
}

unsigned ring_key_slot(const void *key, size_t klen) {
    const char *k = key, *open = klen ? memchr(k, '{', klen) : NULL, *close;
    if (open && (close = memchr(open + 1, '}', klen - (size_t)(open + 1 - k))) && close > open + 1)
        return ring_crc16(open + 1, (size_t)(close - open - 1)) & (RING_SLOTS - 1);
    return ring_crc16(k, klen) & (RING_SLOTS - 1);
}

uint64_t ring_slot_point(unsigned slot) {
    return (uint64_t)slot << 50 | 1ull << 49; /* 2^64 / RING_SLOTS = 2^50 */
}

uint64_t ring_point(const ring_node *nd, uint32_t index) {
    uint8_t b[10];
    memcpy(b, &nd->ip, 4);
    b[4] = (uint8_t)(nd->port >> 8);
    b[5] = (uint8_t)nd->port;
    b[6] = (uint8_t)(index >> 24);
    b[7] = (uint8_t)(index >> 16);
    b[8] = (uint8_t)(index >> 8);
    b[9] = (uint8_t)index;
    return XXH64(b, sizeof b, 0);
}

/* Orders points at the same position: the address as a big-endian number,
 * then the port. Intrinsic to the node, so the same on every host and
 * whatever order nodes were added in. */
static uint64_t addr_key(const ring_node *nd) {
    uint8_t b[4];
    memcpy(b, &nd->ip, 4);
    return (uint64_t)b[0] << 40 | (uint64_t)b[1] << 32 | (uint64_t)b[2] << 24 |
           (uint64_t)b[3] << 16 | nd->port;
}

/* ---- moving around the points ---- */

static uint64_t pos_at(const ring *r, cur p) { return r->ch[p.c]->pos[p.i]; }
static uint32_t owner_at(const ring *r, cur p) { return r->ch[p.c]->owner[p.i]; }
static bool at_end(const ring *r, cur p) { return p.i == r->ch[p.c]->n; }

/* The next place, not wrapping: the end after the last point. */
static cur forward(const ring *r, cur p) {
    if (++p.i == r->ch[p.c]->n && p.c + 1 < r->nc) {
        p.c++;
        p.i = 0;
    }
    return p;
}

/* The next point clockwise, wrapping (p is a point, or the end). */
static cur next(const ring *r, cur p) {
    if (!at_end(r, p)) p = forward(r, p);
    return at_end(r, p) ? (cur){0, 0} : p;
}

/* The previous point clockwise, wrapping (p is a point, or the end). */
static cur prev(const ring *r, cur p) {
    if (p.i == 0) {
        p.c = p.c ? p.c - 1 : r->nc - 1;
        p.i = r->ch[p.c]->n;
    }
    p.i--;
    return p;
}

/* Index of the first of pos[0..n) at or after h, guessing it near g < n:
 * a binary search of the SEARCH_WINDOW places either side of g if the
 * answer is there, else of the whole chunk. Branch-free but for that one
 * test, which the guess makes predictable. */
#define SEARCH_WINDOW 32
static uint32_t search_near(const uint64_t *pos, uint32_t n, uint32_t g, uint64_t h) {
    uint32_t lo = g > SEARCH_WINDOW ? g - SEARCH_WINDOW : 0;
    uint32_t hi = n - g > SEARCH_WINDOW ? g + SEARCH_WINDOW : n; /* the answer in [lo, hi]? */
    for (uint32_t i = lo; i < hi; i += 8) __builtin_prefetch(&pos[i]); /* misses in parallel */
    if ((lo > 0 && pos[lo - 1] >= h) || (hi < n && pos[hi] < h)) {
        lo = 0;
        hi = n;
    }
    const uint64_t *base = pos + lo;
    for (uint32_t len = hi - lo; len > 1;) {
        uint32_t half = len / 2;
        base = base[half] < h ? base + half : base;
        len -= half;
    }
    return (uint32_t)(base - pos) + (*base < h);
}

/* The first point at or after h, or the end if none. nc > 0. */
static cur lower(const ring *r, uint64_t h) {
    /* The last chunk starting below h (or chunk 0): branch-free, the answer
     * is in [c, c + len) throughout. Equal positions may straddle chunks,
     * hence "below": the first of them is then in chunk c. */
    size_t c = 0, len = r->nc;
    while (len > 1) {
        size_t half = len / 2;
        c = r->first[c + half] < h ? c + half : c;
        len -= half;
    }
    const chunk *k = r->ch[c];
    if (h <= r->first[c]) return (cur){c, 0}; /* c is 0 */
    /* Positions are hashes, spread evenly: interpolating between this
     * chunk's start and the next's lands within a few places of the answer
     * (about 10 for a chunk of 384), so a window of 8 cache lines fetched
     * at once replaces a binary search's chain of about log2(CHUNK) misses:
     * add and remove at 10 M points take 0.7 ms instead of 1.2. */
    uint64_t lo = r->first[c], hi = c + 1 < r->nc ? r->first[c + 1] : UINT64_MAX;
    double frac = (double)(h - lo) / (double)(hi - lo); /* lo < h <= hi */
    uint32_t g = (uint32_t)(frac * k->n);
    cur p = {c, search_near(k->pos, k->n, g < k->n ? g : k->n - 1, h)};
    if (p.i == k->n && c + 1 < r->nc) p = (cur){c + 1, 0};
    return p;
}

/* ---- the chunk array ---- */

static int reserve_chunks(ring *r, size_t want) {
    if (want <= r->ccap) return 0;
    size_t cap = r->ccap ? r->ccap * 2 : 16;
    while (cap < want) cap *= 2;
    chunk **ch = realloc(r->ch, cap * sizeof *ch);
    if (ch) r->ch = ch;
    uint64_t *first = realloc(r->first, cap * sizeof *first);
    if (first) r->first = first;
    if (!ch || !first) return -1;
    r->ccap = cap;
    return 0;
}

/* Puts k at c in the array (room reserved). */
static void put_chunk(ring *r, size_t c, chunk *k) {
    memmove(&r->ch[c + 1], &r->ch[c], (r->nc - c) * sizeof *r->ch);
    memmove(&r->first[c + 1], &r->first[c], (r->nc - c) * sizeof *r->first);
    r->ch[c] = k;
    r->first[c] = k->pos[0];
    r->nc++;
}

/* Frees chunk c and takes it out of the array. */
static void drop_chunk(ring *r, size_t c) {
    free(r->ch[c]);
    memmove(&r->ch[c], &r->ch[c + 1], (r->nc - c - 1) * sizeof *r->ch);
    memmove(&r->first[c], &r->first[c + 1], (r->nc - c - 1) * sizeof *r->first);
    r->nc--;
}

/* Moves points [from, k->n) of k to the end of d. */
static void move_points(chunk *d, chunk *k, uint32_t from) {
    uint32_t m = k->n - from;
    memcpy(&d->pos[d->n], &k->pos[from], m * sizeof *d->pos);
    memcpy(&d->owner[d->n], &k->owner[from], m * sizeof *d->owner);
    d->n += m;
    k->n = from;
}

/* Splits the full chunk p.c in two halves; returns where p went. p.c is
 * unchanged on failure (*ok false). */
static cur split(ring *r, cur p, bool *ok) {
    chunk *b = malloc(sizeof *b);
    if (!b || reserve_chunks(r, r->nc + 1) != 0) {
        free(b);
        *ok = false;
        return p;
    }
    b->n = 0;
    move_points(b, r->ch[p.c], CHUNK / 2);
    put_chunk(r, p.c + 1, b);
    *ok = true;
    /* A place at the middle goes to the start of the upper half: i ==
     * ch[c]->n stays the end only. */
    return p.i >= CHUNK / 2 ? (cur){p.c + 1, p.i - CHUNK / 2} : p;
}

/* Chunk c went below CHUNK_LOW: folds it into a neighbour when they fit
 * without being near full, so chunks stay at least a quarter full on
 * average and the chunk array stays O(P / CHUNK). */
static void maybe_merge(ring *r, size_t c) {
    chunk *k = r->ch[c];
    if (c + 1 < r->nc && k->n + r->ch[c + 1]->n <= CHUNK_FILL) {
        move_points(k, r->ch[c + 1], 0);
        drop_chunk(r, c + 1);
    } else if (c > 0 && r->ch[c - 1]->n + k->n <= CHUNK_FILL) {
        move_points(r->ch[c - 1], k, 0);
        drop_chunk(r, c);
    }
}

/* ---- points ---- */

/* The new point at p takes (predecessor, p] from the successor's arc, and
 * gives it back when removed: that keeps every node's total exact. */
static void move_arc(ring *r, uint32_t from, uint32_t to, uint64_t arc) {
    r->ids[from].arcs -= arc;
    r->ids[to].arcs += arc;
}

/* Inserts point (pos, id) in order; ids[id] is set. 0, or -1 on no memory
 * (nothing changed). */
static int insert_point(ring *r, uint64_t pos, uint32_t id) {
    if (r->nc == 0) {
        chunk *k = malloc(sizeof *k);
        if (!k || reserve_chunks(r, 1) != 0) {
            free(k);
            return -1;
        }
        k->n = 1;
        k->pos[0] = pos;
        k->owner[0] = id;
        put_chunk(r, 0, k); /* alone, it owns the whole circle: arcs 0 mod 2^64 */
        r->npoints = 1;
        return 0;
    }
    uint64_t key = addr_key(&r->ids[id].nd);
    cur p = lower(r, pos);
    while (!at_end(r, p) && pos_at(r, p) == pos && addr_key(&r->ids[owner_at(r, p)].nd) < key)
        p = forward(r, p);
    if (r->ch[p.c]->n == CHUNK) {
        bool ok;
        p = split(r, p, &ok);
        if (!ok) return -1;
    }
    /* The point now at p (or the first, at the end) will follow the new one. */
    cur q = prev(r, p), s = at_end(r, p) ? (cur){0, 0} : p;
    move_arc(r, owner_at(r, s), id, pos - pos_at(r, q));

    chunk *k = r->ch[p.c];
    memmove(&k->pos[p.i + 1], &k->pos[p.i], (k->n - p.i) * sizeof *k->pos);
    memmove(&k->owner[p.i + 1], &k->owner[p.i], (k->n - p.i) * sizeof *k->owner);
    k->pos[p.i] = pos;
    k->owner[p.i] = id;
    k->n++;
    r->first[p.c] = k->pos[0];
    r->npoints++;
    return 0;
}

/* Deletes point (pos, id), which is on the ring. */
static void delete_point(ring *r, uint64_t pos, uint32_t id) {
    cur p = lower(r, pos);
    while (owner_at(r, p) != id) p = forward(r, p); /* past equal positions */
    cur q = prev(r, p), s = next(r, p);
    move_arc(r, id, owner_at(r, s), pos - pos_at(r, q)); /* 0 for the last point */

    chunk *k = r->ch[p.c];
    k->n--;
    memmove(&k->pos[p.i], &k->pos[p.i + 1], (k->n - p.i) * sizeof *k->pos);
    memmove(&k->owner[p.i], &k->owner[p.i + 1], (k->n - p.i) * sizeof *k->owner);
    r->npoints--;
    if (k->n == 0) {
        drop_chunk(r, p.c);
        return;
    }
    r->first[p.c] = k->pos[0];
    if (k->n < CHUNK_LOW) maybe_merge(r, p.c);
}

/* ---- nodes ---- */

static bool has_id(const ring *r, uint32_t id) { return id < r->nids && r->ids[id].present; }

/* Is nd's address on the ring? Its point 0 would sit where nd's does. */
static bool has_addr(const ring *r, const ring_node *nd) {
    if (r->nc == 0) return false;
    uint64_t pos = ring_point(nd, 0), key = addr_key(nd);
    for (cur p = lower(r, pos); !at_end(r, p) && pos_at(r, p) == pos; p = forward(r, p))
        if (addr_key(&r->ids[owner_at(r, p)].nd) == key) return true;
    return false;
}

static int reserve_ids(ring *r, uint32_t id) {
    if (id < r->nids) return 0;
    size_t cap = r->nids ? r->nids : 16;
    while (cap <= id) cap *= 2;
    entry *ids = realloc(r->ids, cap * sizeof *ids);
    if (!ids) return -1;
    memset(&ids[r->nids], 0, (cap - r->nids) * sizeof *ids);
    r->ids = ids;
    r->nids = cap;
    return 0;
}

int ring_add(ring *r, uint32_t id, const ring_node *nd) {
    uint32_t v = r->vnodes;
    if (has_id(r, id) || r->npoints > UINT32_MAX - v || reserve_ids(r, id) != 0 ||
        has_addr(r, nd))
        return -1;
    r->ids[id] = (entry){*nd, true, 0, 0, 0};
    for (uint32_t j = 0; j < v; j++) {
        if (insert_point(r, ring_point(nd, j), id) == 0) continue;
        while (j-- > 0) delete_point(r, ring_point(nd, j), id); /* back as it was */
        r->ids[id] = (entry){0};
        return -1;
    }
    r->n++;
    r->stale = true;
    return 0;
}

int ring_remove(ring *r, uint32_t id) {
    if (!has_id(r, id)) return -1;
    const ring_node *nd = &r->ids[id].nd;
    for (uint32_t j = 0; j < r->vnodes; j++) delete_point(r, ring_point(nd, j), id);
    r->ids[id] = (entry){0};
    r->n--;
    r->stale = true;
    return 0;
}

/* ---- building from scratch ---- */

typedef struct point {
    uint64_t pos;
    uint32_t owner;
} point;

/* Stable LSD radix sort of a[0..n) by pos, 8 bits a pass, through tmp.
 * Passes whose digit is the same in every point are skipped. */
static void sort_points(point *a, point *tmp, size_t n) {
    size_t count[8][256];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 8; d++) count[d][(a[i].pos >> (8 * d)) & 0xFF]++;
    point *src = a, *dst = tmp;
    for (int d = 0; d < 8; d++) {
        size_t *c = count[d], sum = 0;
        if (n && c[(a[0].pos >> (8 * d)) & 0xFF] == n) continue;
        for (int k = 0; k < 256; k++) {
            size_t t = c[k];
            c[k] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) dst[c[(src[i].pos >> (8 * d)) & 0xFF]++] = src[i];
        point *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * sizeof *a);
}

/* Orders each run of equal positions by address, as insert_point does
 * (insertion sort: runs are one point long but for a 64-bit collision). */
static void order_ties(point *a, size_t n, const entry *ids) {
    for (size_t i = 1; i < n; i++) {
        if (a[i].pos != a[i - 1].pos) continue;
        point t = a[i];
        uint64_t key = addr_key(&ids[t.owner].nd);
        size_t j = i;
        while (j > 0 && a[j - 1].pos == t.pos && addr_key(&ids[a[j - 1].owner].nd) > key) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = t;
    }
}

int ring_build(ring *r, const ring_node *nodes, size_t n) {
    return ring_build_ids(r, nodes, NULL, n);
}

int ring_build_ids(ring *r, const ring_node *nodes, const uint32_t *id, size_t n) {
    size_t v = r->vnodes;
    if (n > UINT32_MAX / v) return -1; /* points are counted in 32 bits */
    size_t nids = n;
    for (size_t i = 0; id && i < n; i++)
        if ((size_t)id[i] + 1 > nids) nids = (size_t)id[i] + 1;
    size_t np = n * v, nc = (np + CHUNK_FILL - 1) / CHUNK_FILL, made = 0;
    size_t ccap = nc ? nc + nc / 8 + 1 : 0; /* a little room for splits */
    point *pts = malloc((np ? np : 1) * sizeof *pts);
    point *tmp = malloc((np ? np : 1) * sizeof *tmp);
    chunk **ch = malloc((ccap ? ccap : 1) * sizeof *ch);
    uint64_t *first = malloc((ccap ? ccap : 1) * sizeof *first);
    entry *ids = calloc(nids ? nids : 1, sizeof *ids);
    if (!pts || !tmp || !ch || !first || !ids) goto fail;
    for (; made < nc; made++)
        if (!(ch[made] = malloc(sizeof *ch[made]))) goto fail;

    for (size_t i = 0; i < n; i++) {
        uint32_t k = id ? id[i] : (uint32_t)i;
        if (ids[k].present) goto fail; /* an id twice */
        ids[k] = (entry){nodes[i], true, 0, 0, 0};
        for (size_t j = 0; j < v; j++)
            pts[i * v + j] = (point){ring_point(&nodes[i], (uint32_t)j), k};
    }
    sort_points(pts, tmp, np);
    order_ties(pts, np, ids);

    /* Point i owns the arc (pos[i-1], pos[i]]; point 0 the one wrapping
     * through 0. Totals are kept mod 2^64 (see ring_share). */
    for (size_t i = 0; i < np; i++) {
        ids[pts[i].owner].arcs += pts[i].pos - pts[i ? i - 1 : np - 1].pos;
        chunk *k = ch[i / CHUNK_FILL];
        size_t at = i % CHUNK_FILL;
        k->pos[at] = pts[i].pos;
        k->owner[at] = pts[i].owner;
        k->n = (uint32_t)at + 1;
    }
    for (size_t c = 0; c < nc; c++) first[c] = ch[c]->pos[0];

    free(pts);
    free(tmp);
    free_chunks(r->ch, r->nc);
    free(r->ch);
    free(r->first);
    free(r->ids);
    r->ch = ch;
    r->first = first;
    r->nc = nc;
    r->ccap = ccap;
    r->ids = ids;
    r->nids = nids;
    r->n = n;
    r->npoints = np;
    r->stale = true;
    return 0;

fail:
    if (ch) free_chunks(ch, made);
    free(pts);
    free(tmp);
    free(ch);
    free(first);
    free(ids);
    return -1;
}

/* ---- queries ---- */

/* Walks the ring from the first point at or after h, adding owners not in
 * out[0..k) until want are there; returns how many. Every node has points,
 * so one lap finds them all. */
static size_t walk(const ring *r, uint64_t h, size_t want, uint32_t *out, size_t k) {
    cur p = lower(r, h);
    if (at_end(r, p)) p = (cur){0, 0};
    size_t c = p.c;
    uint32_t i = p.i;
    for (size_t step = 0; step < r->npoints && k < want; step++) {
        const chunk *ck = r->ch[c];
        uint32_t o = ck->owner[i];
        size_t j = 0;
        while (j < k && out[j] != o) j++;
        if (j == k) out[k++] = o;
        if (++i == ck->n) {
            i = 0;
            if (++c == r->nc) c = 0;
        }
    }
    return k;
}

size_t ring_lookup(const ring *r, uint64_t h, size_t want, uint32_t *out) {
    if (want > r->n) want = r->n;
    if (want == 0) return 0;
    return walk(r, h, want, out, 0);
}

/* arcs is the exact total mod 2^64, so 0 means none or the whole circle.
 * A node with the whole circle owns the first point (whose arc, wrapping
 * through 0, is never empty unless every point coincides, and then the
 * first point owns everything); one with none does not: its points only
 * tie behind others. */
double ring_share(const ring *r, uint32_t id) {
    if (!has_id(r, id)) return 0.0;
    if (r->ids[id].arcs) return ldexp((double)r->ids[id].arcs, -64);
    return r->ch[0]->owner[0] == id ? 1.0 : 0.0;
}

/* ---- hash slots: the slot table ---- */

/* Fills row t (k nodes) of the slot whose walk starts at point p: its
 * primary, the first node met with fewer than cap primaries and fewer than
 * room places so far, then the next k - 1 distinct nodes met with fewer
 * than room places, in walk order (those met before the primary included).
 * The rooms add up to 5% more than there are places, so one lap finds them
 * all, save for the last slots in a freak ring (3% of rings of 6 nodes on
 * random ports): there the nodes with room left are too few, so a second
 * lap takes the first nodes met whatever their places, the primary a node
 * still under its cap (the nodes the first lap took as replicas are at
 * theirs, and the caps add up to more than the slots, so one is met; the
 * third lap, whatever the counts, never runs: a guard). Every row is full.
 * Before, the second lap took any node as primary: one was primary of
 * 2,971 slots where the cap is 2,868 (1.088 x the mean; test_ring.c). */
static void place_slot(ring *r, cur p, uint32_t cap, uint32_t room, uint32_t *t, size_t k) {
    size_t got = 0;      /* others, in t[1..got] */
    bool primary = false;
    for (int lap = 0; lap < 3 && (!primary || got < k - 1); lap++) {
        cur q = p;
        for (size_t step = 0; step < r->npoints && (!primary || got < k - 1); step++) {
            uint32_t o = owner_at(r, q);
            q = next(r, q);
            const entry *e = &r->ids[o];
            bool seen = primary && t[0] == o;
            for (size_t j = 1; j <= got && !seen; j++) seen = t[j] == o;
            if (seen || (lap == 0 && e->places >= room)) continue;
            if (!primary && (lap == 2 || e->primaries < cap)) {
                t[0] = o;
                primary = true;
            } else if (got < k - 1) {
                t[++got] = o;
            }
        }
    }
    r->ids[t[0]].primaries++;
    for (size_t j = 0; j < k; j++) r->ids[t[j]].places++;
}

/* What one of n nodes may hold of `total`: 1.05 times its share, rounded up. */
static uint32_t bound(uint64_t total, uint64_t n) {
    return (uint32_t)((total * 105 + 100 * n - 1) / (100 * n));
}

/* Each slot's replicas (ring.h): slots in order, each placed by place_slot
 * under caps of 1.05 times the mean, rounded up, on primaries and on
 * places. A slot's walk mostly takes the first nodes it meets: a node is
 * full only near the end of the pass and for a few of its arcs. Called
 * when the table is stale. */
static void slot_table(ring *r) {
    r->stale = false;
    for (size_t i = 0; i < r->nids; i++) r->ids[i].primaries = r->ids[i].places = 0;
    r->width = r->n < r->replicas ? r->n : r->replicas;
    if (r->n == 0) { /* no replicas: every row empties */
        for (unsigned s = 0; s < RING_SLOTS; s++) {
            uint32_t *row = r->table + (size_t)s * r->replicas;
            if (row[0] != UINT32_MAX) r->marks[s] = r->mark;
            memset(row, 0xff, r->replicas * sizeof *row);
        }
        return;
    }
    uint64_t n = r->n, k = r->width;
    uint32_t cap = bound(RING_SLOTS, n), room = bound(RING_SLOTS * k, n);
    /* slot points ascend: one cursor moves along the points, unless there
     * are so many points that a search per slot costs less */
    bool search = r->npoints > 8 * (size_t)RING_SLOTS;
    cur p = {0, 0};
    for (unsigned s = 0; s < RING_SLOTS; s++) {
        uint64_t h = ring_slot_point(s);
        if (search) p = lower(r, h);
        else
            while (!at_end(r, p) && pos_at(r, p) < h) p = forward(r, p);
        uint32_t *row = r->table + (size_t)s * r->replicas, old[RING_MAX_REPLICAS];
        memcpy(old, row, r->replicas * sizeof *row);
        place_slot(r, at_end(r, p) ? (cur){0, 0} : p, cap, room, row, k);
        for (size_t j = k; j < r->replicas; j++) row[j] = UINT32_MAX;
        if (memcmp(old, row, r->replicas * sizeof *row) != 0) r->marks[s] = r->mark;
    }
}

void ring_set_mark(ring *r, uint64_t mark) { r->mark = mark; }

uint64_t ring_slot_mark(ring *r, unsigned slot) {
    if (r->stale) slot_table(r);
    return r->marks[slot & (RING_SLOTS - 1)];
}

size_t ring_slot_lookup(ring *r, unsigned slot, size_t want, uint32_t *out) {
    if (want > r->n) want = r->n;
    if (want == 0) return 0;
    if (r->stale) slot_table(r); /* the check here: a call per lookup cost 1% of a node */
    slot &= RING_SLOTS - 1;
    size_t k = want < r->width ? want : r->width;
    memcpy(out, r->table + (size_t)slot * r->replicas, k * sizeof *out);
    if (want == k) return k;
    return walk(r, ring_slot_point(slot), want, out, k); /* beyond the replicas */
}

size_t ring_slot_count(ring *r, uint32_t id) {
    if (!has_id(r, id)) return 0;
    if (r->stale) slot_table(r);
    return r->ids[id].primaries;
}

size_t ring_slot_places(ring *r, uint32_t id) {
    if (!has_id(r, id)) return 0;
    if (r->stale) slot_table(r);
    return r->ids[id].places;
}
