/*
 * libFuzzer target for the RESP2 request parser (resp_parse): the input is
 * what a client sends on one connection. It is parsed twice, command after
 * command as resp.c's connection does: once all at hand, once arriving in
 * pieces of 1..64 bytes (sizes drawn from a hash of the input), each call
 * given a fresh copy of exactly the bytes received, so ASan catches a read
 * past them and a parser that kept a pointer into an old buffer. Every
 * argument is walked; both runs must see the same commands and end the
 * same way (as long as the input is within RESP_MAX_LINE, the only bound
 * that depends on how much has arrived). A third run, all at hand, parses
 * as for a client yet to authenticate (noauth): every multibulk it returns
 * keeps the bounds before AUTH, it never sees more than the first run, and
 * it sees the same unless it stops on a protocol error. An inline word
 * with quotes is unquoted into the parser's own buffer (resp_parser.inl);
 * every other argument lies in the input. See fuzz/README.md.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok) {
    if (!ok) abort();
}

/* How one run went. */
typedef struct outcome {
    size_t commands;   /* whole commands, empty ones included */
    size_t consumed;   /* their bytes */
    uint32_t hash;     /* of their arguments: offsets, lengths, bytes */
    int rc;            /* the last resp_parse: 0 or an error */
    char err[sizeof ((resp_parser *)0)->err];
} outcome;

static uint32_t mix(uint32_t h, uint32_t v) { return (h ^ v) * 16777619u; }

/* Checks and walks the command p just returned, of used bytes at cmd,
 * where len bytes were given. */
static void walk(outcome *o, const resp_parser *p, const char *cmd, size_t len, size_t used) {
    check(used > 0 && used <= len);
    check(p->argc <= RESP_MAX_ARGS);
    bool multibulk = cmd[0] == '*';
    if (multibulk) check(used <= RESP_MAX_QUERY && (!p->noauth || p->argc <= RESP_NOAUTH_MAX_ARGS));
    else check(memchr(cmd, '\n', used) == cmd + used - 1);
    o->hash = mix(o->hash, (uint32_t)p->argc);
    for (size_t i = 0; i < p->argc; i++) {
        const resp_arg *a = &p->argv[i];
        /* in the input, but for an inline word that had quotes: unquoted,
         * in the parser's own buffer */
        bool in_input = a->p >= cmd && a->len <= used && a->p + a->len <= cmd + used;
        const char *base = in_input ? cmd : p->inl;
        if (multibulk) {
            check(in_input);
            check(a->len <= (p->noauth ? RESP_NOAUTH_MAX_BULK : RESP_MAX_BULK));
        } else if (in_input) {
            /* a word without quotes: not empty, no blanks, no line end */
            check(a->len > 0);
            for (size_t k = 0; k < a->len; k++)
                check(a->p[k] != ' ' && a->p[k] != '\t' && a->p[k] != '\n' && a->p[k] != '\r');
        } else {
            check(p->inl && a->p >= p->inl && a->p + a->len <= p->inl + p->inl_len);
        }
        o->hash = mix(mix(o->hash, (uint32_t)(a->p - base)), (uint32_t)a->len);
        for (size_t k = 0; k < a->len; k++) o->hash = mix(o->hash, (uint8_t)a->p[k]);
    }
    o->commands++;
    o->consumed += used;
}

static uint32_t rng(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Parses data[0..size) as one connection would. pieces: the bytes arrive
 * a few at a time (seed drawing the sizes), else all at once. noauth: with
 * the bounds before AUTH. */
static void run(const uint8_t *data, size_t size, bool pieces, bool noauth, uint32_t seed,
                outcome *o) {
    resp_parser p;
    resp_parser_init(&p);
    p.noauth = noauth;
    memset(o, 0, sizeof *o);
    o->hash = 2166136261u;
    size_t start = 0, have = pieces ? 0 : size;
    for (;;) {
        size_t len = have - start, used = 0;
        int rc = 0;
        if (len) {
            char *copy = pieces ? malloc(len) : NULL;
            const char *cmd = pieces ? copy : (const char *)data + start;
            check(cmd != NULL);
            if (pieces) memcpy(copy, data + start, len);
            rc = resp_parse(&p, cmd, len, &used);
            if (rc == 1) walk(o, &p, cmd, len, used);
            free(copy);
        }
        if (rc == 1) {
            start += used;
            continue;
        }
        if (rc == 0 && have < size) {
            size_t more = 1 + rng(&seed) % 64;
            have = more < size - have ? have + more : size;
            continue;
        }
        check(rc == 0 || rc == RESP_EPROTO);
        if (rc == RESP_EPROTO) {
            size_t n = strnlen(p.err, sizeof p.err);
            check(n < sizeof p.err);
            memcpy(o->err, p.err, n + 1);
        }
        o->rc = rc;
        break;
    }
    check(o->consumed == start && start <= size);
    resp_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    outcome whole, pieces, noauth;
    run(data, size, false, false, 0, &whole);
    run(data, size, false, true, 0, &noauth);
    check(noauth.commands <= whole.commands && noauth.consumed <= whole.consumed);
    if (noauth.rc != RESP_EPROTO) {   /* within the bounds all along: the same run */
        check(noauth.commands == whole.commands && noauth.consumed == whole.consumed);
        check(noauth.hash == whole.hash && noauth.rc == whole.rc);
    }
    if (size > RESP_MAX_LINE) return 0;
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size; i++) seed = mix(seed, data[i]);
    run(data, size, true, false, seed | 1, &pieces);
    check(whole.commands == pieces.commands && whole.consumed == pieces.consumed);
    check(whole.hash == pieces.hash && whole.rc == pieces.rc);
    check(strcmp(whole.err, pieces.err) == 0);
    return 0;
}
