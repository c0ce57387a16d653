/* ring: consistent hashing with virtual nodes (see ring.h for the layout). */
#include "ring.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct ring {
    unsigned vnodes;
    size_t n;        /* nodes */
    size_t npoints;  /* n * vnodes */
    uint64_t *pos;   /* [npoints] point positions, ascending */
    uint32_t *owner; /* [npoints] owner[i] is the node index of pos[i] */
    double *share;   /* [n] fraction of the circle each node comes first for */
};

ring *ring_new(unsigned vnodes) {
    ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->vnodes = vnodes ? vnodes : RING_DEFAULT_VNODES;
    return r;
}

void ring_free(ring *r) {
    if (!r) return;
    free(r->pos);
    free(r->owner);
    free(r->share);
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

int ring_build(ring *r, const ring_node *nodes, size_t n) {
    size_t v = r->vnodes;
    if (n > UINT32_MAX / v) return -1; /* points are counted in 32 bits */
    size_t np = n * v;
    point *pts = malloc((np ? np : 1) * sizeof *pts);
    point *tmp = malloc((np ? np : 1) * sizeof *tmp);
    uint64_t *pos = malloc((np ? np : 1) * sizeof *pos);
    uint32_t *owner = malloc((np ? np : 1) * sizeof *owner);
    double *share = malloc((n ? n : 1) * sizeof *share);
    uint64_t *lo = calloc(n ? n : 1, sizeof *lo);
    if (!pts || !tmp || !pos || !owner || !share || !lo) goto fail;

    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < v; j++) {
            point *p = &pts[i * v + j];
            p->pos = ring_point(&nodes[i], (uint32_t)j);
            p->owner = (uint32_t)i;
        }
    sort_points(pts, tmp, np);
    for (size_t i = 0; i < np; i++) {
        pos[i] = pts[i].pos;
        owner[i] = pts[i].owner;
    }

    /* Point i owns the arc (pos[i-1], pos[i]]; point 0 the one wrapping
     * through 0. Arcs sum to exactly 2^64, so a node's total is hi * 2^64 +
     * lo with hi 1 only for a node owning the whole circle. */
    for (size_t i = 0; i < n; i++) share[i] = 0;
    if (np) {
        for (size_t i = 0; i < np; i++) {
            uint64_t arc = pos[i] - pos[i ? i - 1 : np - 1];
            uint32_t o = owner[i];
            lo[o] += arc;
            if (lo[o] < arc) share[o] += 1.0;
        }
        if (pos[0] == pos[np - 1]) share[owner[0]] = 1.0; /* all points coincide */
        for (size_t i = 0; i < n; i++) share[i] += ldexp((double)lo[i], -64);
    }

    free(pts);
    free(tmp);
    free(lo);
    free(r->pos);
    free(r->owner);
    free(r->share);
    r->pos = pos;
    r->owner = owner;
    r->share = share;
    r->n = n;
    r->npoints = np;
    return 0;

fail:
    free(pts);
    free(tmp);
    free(pos);
    free(owner);
    free(share);
    free(lo);
    return -1;
}

/* Index of the first point at or after h, wrapping to 0 past the last. */
static size_t successor(const ring *r, uint64_t h) {
    const uint64_t *base = r->pos;
    size_t len = r->npoints;
    /* Branch-free lower bound: the answer is in base[0..len] throughout. */
    while (len > 1) {
        size_t half = len / 2;
        base = base[half] < h ? base + half : base;
        len -= half;
    }
    size_t i = (size_t)(base - r->pos) + (*base < h);
    return i == r->npoints ? 0 : i;
}

size_t ring_lookup(const ring *r, uint64_t h, size_t want, uint32_t *out) {
    if (want > r->n) want = r->n;
    if (want == 0) return 0;
    size_t i = successor(r, h), k = 0;
    /* Every node has points, so one lap finds them all. */
    for (size_t step = 0; step < r->npoints && k < want; step++) {
        uint32_t o = r->owner[i];
        size_t j = 0;
        while (j < k && out[j] != o) j++;
        if (j == k) out[k++] = o;
        if (++i == r->npoints) i = 0;
    }
    return k;
}

double ring_share(const ring *r, uint32_t i) { return i < r->n ? r->share[i] : 0.0; }
