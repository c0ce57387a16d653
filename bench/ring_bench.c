/* dht-ring-bench: costs of the ring (src/ring.h) at cluster sizes.
 *
 *   dht-ring-bench [NODESxVNODES ...]
 *
 * For each size (default: 100, 1000 and 10000 nodes with 64 and 1024
 * vnodes) builds a ring of distinct addresses (10.x.y.z:7000), then times
 * OPS single-node changes on it: ring_remove of a random node and ring_add
 * of the one removed before, each timed alone (median and max); a full ring_build (the
 * cost of a change before ring_add and ring_remove); lookups of 3 at
 * random points. Not a test: timings depend on the machine. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "client.h"
#include "ring.h"

enum { OPS = 50, BUILDS = 3, LOOKUPS = 2000000 };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}


static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts t[0..n) and returns its median. */
static double median(double *t, size_t n) {
    qsort(t, n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static int run(size_t n, unsigned vn) {
    ring_node *nodes = malloc(n * sizeof *nodes);
    ring *r = ring_new(vn);
    if (!nodes || !r) {
        fprintf(stderr, "dht-ring-bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        nodes[i] = (ring_node){htonl(0x0A000001u + (uint32_t)i), 7000};

    double build[BUILDS];
    for (int b = 0; b < BUILDS; b++) {
        double t0 = now_s();
        if (ring_build(r, nodes, n) != 0) {
            fprintf(stderr, "dht-ring-bench: cannot build %zu x %u\n", n, vn);
            ring_free(r);
            free(nodes);
            return 1;
        }
        build[b] = now_s() - t0;
    }

    /* Remove a random node, add back the one removed before it: the ring
     * stays at n - 1 nodes, and an add does not find the chunks its remove
     * just warmed. */
    double add[OPS], rem[OPS];
    uint64_t s[4];
    client_rng_seed(s, 0x5EED ^ n ^ (uint64_t)vn << 32);
    uint32_t out_id = (uint32_t)(client_rng_next(s) % n);
    int rc = ring_remove(r, out_id);
    for (int op = 0; op < OPS && rc == 0; op++) {
        uint32_t id;
        do id = (uint32_t)(client_rng_next(s) % n);
        while (id == out_id);
        double t0 = now_s();
        rc |= ring_remove(r, id);
        double t1 = now_s();
        rc |= ring_add(r, out_id, &nodes[out_id]);
        double t2 = now_s();
        rem[op] = t1 - t0;
        add[op] = t2 - t1;
        out_id = id;
    }
    if (rc) {
        fprintf(stderr, "dht-ring-bench: add or remove failed\n");
        return 1;
    }

    uint32_t out[3], acc = 0;
    double t0 = now_s();
    for (int i = 0; i < LOOKUPS; i++) {
        ring_lookup(r, client_rng_next(s), 3, out);
        acc += out[0] ^ out[2];
    }
    double rate = LOOKUPS / (now_s() - t0);

    double mb = median(build, BUILDS), ma = median(add, OPS), mr = median(rem, OPS);
    printf("%6zu x %4u  %9zu  %8.1f  %8.1f %8.1f  %8.1f %8.1f  %6.2f  (acc %u)\n", n, vn,
           n * vn, mb * 1e3, ma * 1e6, add[OPS - 1] * 1e6, mr * 1e6, rem[OPS - 1] * 1e6,
           rate / 1e6, acc);
    fflush(stdout);
    ring_free(r);
    free(nodes);
    return 0;
}

int main(int argc, char **argv) {
    static const struct {
        size_t n;
        unsigned vn;
    } def[] = {{100, 64},  {1000, 64},  {10000, 64},
               {100, 1024}, {1000, 1024}, {10000, 1024}};
    printf("nodes x vnodes     points  build ms  add us med/max    rem us med/max  "
           "lookup M/s\n");
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            size_t n;
            unsigned vn;
            if (sscanf(argv[i], "%zux%u", &n, &vn) != 2 || n == 0 || vn == 0) {
                fprintf(stderr, "usage: dht-ring-bench [NODESxVNODES ...]\n");
                return 2;
            }
            rc |= run(n, vn);
        }
    } else {
        for (size_t i = 0; i < sizeof def / sizeof *def; i++) rc |= run(def[i].n, def[i].vn);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) printf("max RSS %.0f MiB\n", ru.ru_maxrss / 1024.0);
    return rc;
}
