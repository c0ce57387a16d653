/* client: address parsing, message IDs, reply decoding, hex, histogram. */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

int client_parse_addr(const char *s, struct sockaddr_in *out) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || colon[1] == 0) return CLIENT_EADDR;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (*end || errno || port < 1 || port > 65535) return CLIENT_EADDR;
    char host[256];
    size_t hlen = (size_t)(colon - s);
    if (hlen >= sizeof host) return CLIENT_EADDR;
    memcpy(host, s, hlen);
    host[hlen] = 0;

    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1) return 0;

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return CLIENT_ERESOLVE;
    out->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

const char *client_addr_str(const struct sockaddr_in *a, char *buf, size_t cap) {
    char ip[INET_ADDRSTRLEN];
    if (!inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip)) strcpy(ip, "?");
    snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    return buf;
}

int client_random_id(uint8_t id[WIRE_ID_LEN]) {
    size_t got = 0;
    while (got < WIRE_ID_LEN) {
        ssize_t n = getrandom(id + got, WIRE_ID_LEN - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t client_rng_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void client_rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) { /* splitmix64 */
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        s[i] = z ^ (z >> 31);
    }
}

double client_rng_unit(uint64_t s[4]) { return (double)(client_rng_next(s) >> 11) * 0x1.0p-53; }

int client_parse_reply(wire_arena *a, const uint8_t *buf, size_t len, wire_frame *f,
                       KVResponse **resp) {
    wire_reset(a);
    int rc = wire_unpack_msg(a, buf, len, f);
    if (rc == WIRE_ECHECKSUM) return CLIENT_ECHECKSUM;
    if (rc != 0 || f->idlen != WIRE_ID_LEN || f->kind != WIRE_KIND_CLIENT)
        return CLIENT_EREPLY;
    *resp = wire_unpack_response(a, f->payload, f->plen);
    return *resp ? 0 : CLIENT_EREPLY;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int client_hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len) {
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap) return CLIENT_EHEX;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0) return CLIENT_EHEX;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}

/* Histogram. SUB = 2^SUB_BITS, HALF = SUB/2. Values below SUB map to
 * themselves; v >= SUB with top bit k maps to e = k - (SUB_BITS-1) >= 1 and
 * index e*HALF + (v >> e), where v >> e lies in [HALF, SUB). */
#define SUB ((uint64_t)1 << CLIENT_HIST_SUB_BITS)
#define HALF (SUB / 2)

_Static_assert((36 - (CLIENT_HIST_SUB_BITS - 1)) * HALF + SUB <= CLIENT_HIST_BUCKETS,
               "CLIENT_HIST_BUCKETS too small for CLIENT_HIST_MAX");

static size_t hist_index(uint64_t v) {
    if (v < SUB) return (size_t)v;
    unsigned e = (unsigned)(63 - __builtin_clzll(v)) - (CLIENT_HIST_SUB_BITS - 1);
    return (size_t)(e * HALF + (v >> e));
}

/* The highest value that maps to bucket i. */
static uint64_t hist_high(size_t i) {
    if (i < SUB) return i;
    unsigned e = (unsigned)(i / HALF) - 1;
    uint64_t m = i % HALF + HALF;
    return ((m + 1) << e) - 1;
}

void client_hist_init(client_hist *h) { memset(h, 0, sizeof *h); }

void client_hist_record(client_hist *h, uint64_t v) {
    if (v > CLIENT_HIST_MAX) v = CLIENT_HIST_MAX;
    if (h->count == 0 || v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->count++;
    h->sum += v;
    h->bucket[hist_index(v)]++;
}

uint64_t client_hist_percentile(const client_hist *h, double p) {
    if (h->count == 0) return 0;
    if (p < 0) p = 0;
    if (p > 100) p = 100;
    /* The rank of the sample at percentile p, 1-based, at least 1. */
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->count + 0.5);
    if (rank < 1) rank = 1;
    if (rank > h->count) rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < CLIENT_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = hist_high(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

double client_hist_mean(const client_hist *h) {
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
