/*
 * libFuzzer target for the HTTP request-head parser (http_parse_head): the
 * input is what a client sends on a connection. It is parsed all at hand,
 * and again as http.c's connection meets it: growing prefixes (pieces of
 * 1..64 bytes, sizes drawn from a hash of the input) until one gives an
 * answer, each prefix a fresh copy of exactly its bytes so ASan catches a
 * read past them. The answer must be the same both ways (a head ends where
 * it ends, whatever follows); what it points at is checked to lie in the
 * head and walked, and so is the Host field (http_find_host,
 * http_host_is_local). See fuzz/README.md.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint32_t sink;

static void check(int ok) {
    if (!ok) abort();
}

static uint32_t rng(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Checks what http_parse_head answered for buf[0..len): status, *req. */
static void verify(const char *buf, size_t len, int status, const http_request *req) {
    switch (status) {
    case 0:
        check(len < HTTP_MAX_HEAD);
        return;
    case 431:
        check(len >= HTTP_MAX_HEAD);
        return;
    case 200: case 400: case 405:
        break;
    default:
        check(0);
    }
    size_t h = req->head_len;
    check(h >= 2 && h <= len && h <= HTTP_MAX_HEAD && buf[h - 1] == '\n');
    check(buf[h - 2] == '\n' || (h >= 3 && buf[h - 2] == '\r' && buf[h - 3] == '\n'));
    if (status == 400) return;
    /* the method: a token at the start, then a space */
    check(req->method == buf && req->method_len > 0 && req->method_len < h);
    check(buf[req->method_len] == ' ');
    for (size_t i = 0; i < req->method_len; i++) check(buf[i] > 32 && buf[i] < 127);
    bool get = req->method_len == 3 && memcmp(buf, "GET", 3) == 0;
    check(get == (status == 200));
    if (status == 405) return;
    /* the path: after the space, in the first line, '/' then printable
     * bytes without '?' and '#' */
    check(req->path == buf + 4 && req->path_len > 0 && req->path + req->path_len < buf + h);
    check(req->path[0] == '/');
    uint32_t x = 0;
    for (size_t i = 0; i < req->path_len; i++) {
        char ch = req->path[i];
        check(ch > 32 && ch < 127 && ch != '?' && ch != '#');
        x = x * 31 + (uint8_t)ch;
    }
    /* the Host field, if any: within the head, after the request line */
    const char *host;
    size_t hlen;
    if (http_find_host(buf, h, &host, &hlen)) {
        check(host > buf + 4 && host + hlen <= buf + h);
        x += http_host_is_local(host, hlen);
    }
    sink = x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    http_request whole, req = {0};
    int status = http_parse_head(buf, size, &whole);
    verify(buf, size, status, &whole);

    /* as a connection receives it: the first prefix with an answer */
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 16777619u;
    seed |= 1;
    size_t have = 0;
    int got = 0;
    while (!got && have < size && have < HTTP_MAX_HEAD) {
        size_t more = 1 + rng(&seed) % 64;
        have = more < size - have ? have + more : size;
        if (have > HTTP_MAX_HEAD) have = HTTP_MAX_HEAD;  /* the connection's buffer */
        char *copy = malloc(have);
        check(copy != NULL);
        memcpy(copy, data, have);
        got = http_parse_head(copy, have, &req);
        verify(copy, have, got, &req);
        /* pointers into the copy, as offsets into the input */
        if (got == 200 || got == 405) req.method = buf + (req.method - copy);
        if (got == 200) req.path = buf + (req.path - copy);
        free(copy);
    }
    check(got == status);
    if (status == 200 || status == 400 || status == 405) check(req.head_len == whole.head_len);
    if (status == 200 || status == 405)
        check(req.method == whole.method && req.method_len == whole.method_len);
    if (status == 200) check(req.path == whole.path && req.path_len == whole.path_len);
    return 0;
}
