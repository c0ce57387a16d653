/* auth: the cluster key and the seal of node-to-node datagrams (auth.h). */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG_SENT 0x31 /* field 6, fixed64 */
#define TAG_MAC 0x2a  /* field 5, length-delimited: BLAKE2b */
#define TAG_SIP 0x3a  /* field 7, length-delimited: SipHash */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int auth_parse_key(const char *s, size_t len, uint8_t key[AUTH_KEY_LEN]) {
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r')) len--;
    if (len != 2 * AUTH_KEY_LEN) return -1;
    for (size_t i = 0; i < AUTH_KEY_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        key[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int auth_load(const char *path, auth_keys *k, char *err, size_t errlen) {
    memset(k, 0, sizeof *k);
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to start");
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "#\n");
        size_t blank = strspn(line, " \t\r");
        if (blank >= len) continue;
        if (k->n == AUTH_MAX_KEYS) {
            snprintf(err, errlen, "%s:%d: more than %d keys", path, lineno, AUTH_MAX_KEYS);
            rc = -1;
        } else if (auth_parse_key(line, len, k->key[k->n]) != 0) {
            snprintf(err, errlen, "%s:%d: not a key (64 hex digits; make one with dht-cli keygen)",
                     path, lineno);
            rc = -1;
        } else {
            k->n++;
        }
    }
    if (rc == 0 && ferror(f)) { /* (a directory opens, then reads as nothing: "no key") */
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (rc == 0 && k->n == 0) {
        snprintf(err, errlen, "%s: no key in it (make one with dht-cli keygen)", path);
        rc = -1;
    }
    if (rc != 0) sodium_memzero(k, sizeof *k);
    else auth_keys_ready(k);
    return rc;
}

void auth_keygen(char out[66]) {
    uint8_t key[AUTH_KEY_LEN];
    if (sodium_init() < 0) abort(); /* no randomness to be had */
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(out, 65, key, sizeof key);
    out[64] = '\n';
    out[65] = 0;
    sodium_memzero(key, sizeof key);
}

static void mac(const uint8_t key[AUTH_KEY_LEN], const uint8_t *buf, size_t len,
                const uint8_t sent[8], uint8_t tag[AUTH_TAG_LEN]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, AUTH_KEY_LEN, AUTH_TAG_LEN);
    crypto_generichash_update(&st, buf, len);
    crypto_generichash_update(&st, sent, 8);
    crypto_generichash_final(&st, tag, AUTH_TAG_LEN);
}

static void sip_key(const uint8_t key[AUTH_KEY_LEN], uint8_t out[AUTH_SIP_KEY_LEN]) {
    _Static_assert(AUTH_SIP_KEY_LEN == crypto_shorthash_siphashx24_KEYBYTES, "SipHash key");
    crypto_generichash(out, AUTH_SIP_KEY_LEN, (const uint8_t *)AUTH_SIP_LABEL,
                       sizeof AUTH_SIP_LABEL - 1, key, AUTH_KEY_LEN);
}

void auth_keys_ready(auth_keys *k) {
    for (unsigned i = 0; i < k->n && i < AUTH_MAX_KEYS; i++) sip_key(k->key[i], k->sip[i]);
    k->ready = true;
}

/* SipHash of the n bytes at buf (the Msg and field 6) under key i of k. */
static void sip_mac(const auth_keys *k, unsigned i, const uint8_t *buf, size_t n,
                    uint8_t tag[AUTH_TAG_LEN]) {
    _Static_assert(AUTH_TAG_LEN == crypto_shorthash_siphashx24_BYTES, "SipHash output");
    uint8_t derived[AUTH_SIP_KEY_LEN];
    const uint8_t *key = k->sip[i];
    if (!k->ready) sip_key(k->key[i], derived), key = derived;
    crypto_shorthash_siphashx24(tag, buf, n, key);
    if (key == derived) sodium_memzero(derived, sizeof derived);
}

size_t auth_seal(const auth_keys *k, uint8_t *buf, size_t len, size_t cap, uint64_t sent_ms,
                 bool siphash) {
    if (cap < len || cap - len < AUTH_SEAL_LEN) return 0;
    uint8_t *p = buf + len;
    *p++ = TAG_SENT;
    for (int i = 0; i < 8; i++) *p++ = (uint8_t)(sent_ms >> (8 * i));
    *p++ = siphash ? TAG_SIP : TAG_MAC;
    *p++ = AUTH_TAG_LEN;
    if (siphash) sip_mac(k, 0, buf, len + 9, p);
    else mac(k->key[0], buf, len, buf + len + 1, p);
    return len + AUTH_SEAL_LEN;
}

int auth_open(const auth_keys *k, const uint8_t *buf, size_t len, uint64_t *sent_ms) {
    if (len < AUTH_SEAL_LEN) return 0;
    size_t body = len - AUTH_SEAL_LEN;
    const uint8_t *s = buf + body;
    if (s[0] != TAG_SENT || (s[9] != TAG_MAC && s[9] != TAG_SIP) || s[10] != AUTH_TAG_LEN)
        return 0;
    uint8_t tag[AUTH_TAG_LEN];
    for (unsigned i = 0; i < k->n; i++) {
        if (s[9] == TAG_SIP) sip_mac(k, i, buf, body + 9, tag);
        else mac(k->key[i], buf, body, s + 1, tag);
        if (sodium_memcmp(tag, s + 11, AUTH_TAG_LEN) == 0) {
            uint64_t t = 0;
            for (int j = 7; j >= 0; j--) t = t << 8 | s[1 + j];
            *sent_ms = t;
            return 1;
        }
    }
    return 0;
}

bool auth_private_addr(uint32_t ip) {
    uint32_t a = ntohl(ip);
    return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 20) == (172u << 4 | 1) ||
           (a >> 16) == (192u << 8 | 168) || (a >> 16) == (169u << 8 | 254);
}

int auth_parse_cidr(const char *s, auth_net *out) {
    char ip[INET_ADDRSTRLEN];
    const char *slash = strchr(s, '/');
    size_t iplen = slash ? (size_t)(slash - s) : strlen(s);
    if (iplen == 0 || iplen >= sizeof ip) return -1;
    memcpy(ip, s, iplen);
    ip[iplen] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1) return -1;
    unsigned bits = 32;
    if (slash) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (errno || end == slash + 1 || *end || v > 32) return -1;
        bits = (unsigned)v;
    }
    uint32_t mask = bits ? htonl(~0u << (32 - bits)) : 0;
    out->mask = mask;
    out->net = a.s_addr & mask;
    return 0;
}

bool auth_in_nets(const auth_net *nets, size_t k, uint32_t ip) {
    for (size_t i = 0; i < k; i++)
        if ((ip & nets[i].mask) == nets[i].net) return true;
    return false;
}
