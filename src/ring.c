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

typedef struct slot {
    ring_node nd;
    bool present;
    uint64_t arcs; /* total of its arcs mod 2^64 (see ring_share) */
} slot;

struct ring {
    unsigned vnodes;
    size_t n;       /* nodes */
    size_t npoints;
    chunk **ch;     /* [nc] the points in circle order, none empty */
    uint64_t *first; /* [nc] first[c] = ch[c]->pos[0]: searched without touching chunks */
    size_t nc, ccap;
    slot *ids;      /* [nids] by id */
    size_t nids;
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
    return r;
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
    free(r);
}

size_t ring_size(const ring *r) { return r->n; }

uint64_t ring_hash(const void *key, size_t klen) { return XXH64(key, klen, 0); }

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
    slot *ids = realloc(r->ids, cap * sizeof *ids);
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
    r->ids[id] = (slot){*nd, true, 0};
    for (uint32_t j = 0; j < v; j++) {
        if (insert_point(r, ring_point(nd, j), id) == 0) continue;
        while (j-- > 0) delete_point(r, ring_point(nd, j), id); /* back as it was */
        r->ids[id] = (slot){0};
        return -1;
    }
    r->n++;
    return 0;
}

int ring_remove(ring *r, uint32_t id) {
    if (!has_id(r, id)) return -1;
    const ring_node *nd = &r->ids[id].nd;
    for (uint32_t j = 0; j < r->vnodes; j++) delete_point(r, ring_point(nd, j), id);
    r->ids[id] = (slot){0};
    r->n--;
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
static void order_ties(point *a, size_t n, const slot *ids) {
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
    slot *ids = calloc(nids ? nids : 1, sizeof *ids);
    if (!pts || !tmp || !ch || !first || !ids) goto fail;
    for (; made < nc; made++)
        if (!(ch[made] = malloc(sizeof *ch[made]))) goto fail;

    for (size_t i = 0; i < n; i++) {
        uint32_t k = id ? id[i] : (uint32_t)i;
        if (ids[k].present) goto fail; /* an id twice */
        ids[k] = (slot){nodes[i], true, 0};
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

size_t ring_lookup(const ring *r, uint64_t h, size_t want, uint32_t *out) {
    if (want > r->n) want = r->n;
    if (want == 0) return 0;
    cur p = lower(r, h);
    if (at_end(r, p)) p = (cur){0, 0};
    size_t k = 0, c = p.c;
    uint32_t i = p.i;
    /* Every node has points, so one lap finds them all. */
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
