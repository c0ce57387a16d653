/*
 * dht-cli: send one request to a dht node and print the answer.
 *
 * One unconnected UDP socket: the reply may come from another node than the
 * one asked (the owner of the key answers directly), so replies are matched
 * by message ID only; datagrams with another ID or a bad checksum are
 * ignored. A request is retried with the same ID (the node's reply cache
 * makes that at-most-once) after 100, 200, 400, 800 ms by default.
 *
 * Exit status: 0 ok, 1 the node answered an error, 2 no reply, 64 usage,
 * 68 unknown host, 71 local system error (as sysexits.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include "auth.h"
#include "client.h"
#include "ring.h"
#include "wire.h"

enum {
    EX_OK_ = 0,
    EX_SERVER = 1,
    EX_TIMEOUT = 2,
    EX_USAGE_ = 64,
    EX_NOHOST_ = 68,
    EX_OSERR_ = 71,
};

#define DEFAULT_SERVER "127.0.0.1:7000"
#define MAX_OVERLOAD_WAIT_MS 10000

typedef struct cli {
    const char *server_str;
    struct sockaddr_in server;
    int fd;
    wire_arena *arena;   /* replies are decoded here */
    unsigned timeout_ms; /* first try; doubles on every retry */
    unsigned retries;    /* tries in all */
    bool verbose;
    bool hex;
    bool has_version;
    int32_t version;
    unsigned vnodes;     /* ring points per node, as the servers' --vnodes */
    unsigned replicas;   /* N, as the servers' --replicas (slots are placed for it) */
    const char *key_file; /* --key-file: seals pause-gossip */
    int argc; /* the command's arguments, command name excluded */
    char **argv;
} cli;

/* Bytes of a key or value argument; data points into argv or into buf. */
typedef struct arg {
    const uint8_t *data;
    size_t len;
    uint8_t buf[WIRE_MAX_DATAGRAM];
} arg;

static uint8_t rxbuf[WIRE_MAX_DATAGRAM + 1];

static void usage(FILE *f) {
    fprintf(f,
        "usage: dht-cli [-s HOST:PORT] [--timeout MS] [--retries N] [-v] [--hex]\n"
        "               COMMAND [ARGS]\n"
        "\n"
        "Commands:\n"
        "  put KEY VALUE [--version N]  store VALUE ('-': read it from stdin)\n"
        "  get KEY                      print the value (with -v: and its version)\n"
        "  remove KEY                   delete the key\n"
        "  pid                          print the node's process id\n"
        "  alive                        check that the node answers\n"
        "  count                        print the node's membership count\n"
        "  members                      print the node's member list and slot shares\n"
        "  ring                         print the node's ring: vnodes and share of the\n"
        "                               16384 hash slots (as primary) per member\n"
        "  wipeout                      delete every key on the node\n"
        "  shutdown                     stop the node (checks it has stopped)\n"
        "  raw CMD_HEX [KEY [VALUE]]    send any command number, print every field\n"
        "  pause-gossip MS              debug: the node stops gossiping for MS\n"
        "                               (needs the cluster key: --key-file)\n"
        "  keygen [FILE]                make a cluster key for --cluster-key-file: into\n"
        "                               FILE (created 0600, never overwritten) or stdout\n"
        "\n"
        "Options:\n"
        "  -s, --server HOST:PORT  node to ask (default $DHT_SERVER or " DEFAULT_SERVER ")\n"
        "  -t, --timeout MS        first reply timeout, doubled on each retry (100)\n"
        "  -r, --retries N         tries in all, same message ID each time (4)\n"
        "  -x, --hex               KEY and VALUE are given, and values printed, in hex\n"
        "  -V, --version N         version field of the request (put, raw)\n"
        "      --vnodes N          ring points per node, as the servers' --vnodes (%d);\n"
        "                          shares are computed here from the member list\n"
        "      --replicas N        replicas a slot, as the servers' --replicas (%d)\n"
        "  -v, --verbose           say which node answered, after how long\n"
        "  -k, --key-file FILE     the cluster key, for pause-gossip\n"
        "  -h, --help              this help\n"
        "\n"
        "Keys and values are taken as bytes; put '--' before one that starts with '-'.\n"
        "Exit status: 0 ok, 1 the node answered an error, 2 no reply, 64 usage error,\n"
        "68 unknown host, 71 system error.\n", RING_DEFAULT_VNODES, RING_DEFAULT_REPLICAS);
}

static int usage_error(const char *fmt, const char *what) {
    fprintf(stderr, "dht-cli: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nTry 'dht-cli --help'.\n");
    return EX_USAGE_;
}

static bool parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi || *s == '-') return false;
    *out = v;
    return true;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- request / reply ---- */

/* Waits up to ms for a reply carrying one of ids[0..nids). Returns 1 with
 * *which and *resp set (valid until the next wire_reset()), 0 on timeout,
 * -1 on a socket error. */
static int await_reply(cli *c, const uint8_t (*ids)[WIRE_ID_LEN], int nids, unsigned ms,
                       int *which, KVResponse **resp) {
    uint64_t deadline = now_ms() + ms;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) return 0;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return 0;
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t len = recvfrom(c->fd, rxbuf, sizeof rxbuf, 0, (struct sockaddr *)&from, &flen);
        if (len < 0) {
            /* ECONNREFUSED: an ICMP error from an earlier send; keep waiting. */
            if (errno == EINTR || errno == EAGAIN || errno == ECONNREFUSED) continue;
            return -1;
        }
        wire_frame f;
        int rc = client_parse_reply(c->arena, rxbuf, (size_t)len, &f, resp);
        char a[32];
        if (rc != 0) {
            if (c->verbose)
                fprintf(stderr, "dht-cli: ignored a %s datagram from %s\n",
                        rc == CLIENT_ECHECKSUM ? "bad-checksum" : "malformed",
                        client_addr_str(&from, a, sizeof a));
            continue;
        }
        for (int i = 0; i < nids; i++) {
            if (memcmp(f.id, ids[i], WIRE_ID_LEN) == 0) {
                *which = i;
                if (c->verbose)
                    fprintf(stderr, "dht-cli: reply from %s\n",
                            client_addr_str(&from, a, sizeof a));
                return 1;
            }
        }
    }
}

static int send_dgram(cli *c, const uint8_t *d, size_t len) {
    for (;;) {
        ssize_t n = sendto(c->fd, d, len, 0, (const struct sockaddr *)&c->server,
                           sizeof c->server);
        if (n >= 0) return 0;
        if (errno == EINTR) continue;
        /* Lost like a dropped datagram: the retry timer handles it. */
        if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) return 0;
        return -1;
    }
}

static int os_error(const char *what) {
    fprintf(stderr, "dht-cli: %s: %s\n", what, strerror(errno));
    return EX_OSERR_;
}

static int build(uint8_t *d, size_t cap, const uint8_t id[WIRE_ID_LEN], uint32_t cmd,
                 const arg *key, const arg *val, int32_t version, size_t *len) {
    *len = wire_request(d, cap, id, cmd, key ? key->data : NULL, key ? key->len : 0,
                        val ? val->data : NULL, val ? val->len : 0, version);
    if (*len == 0) {
        fprintf(stderr, "dht-cli: request does not fit in a datagram\n");
        return EX_USAGE_;
    }
    return 0;
}

/* Sends a request and waits for its reply, retrying with the same ID.
 * A "temporary overload" answer is retried after overloadWaitTime while
 * tries remain. Returns 0 with *resp set, or an exit status (message
 * printed). */
static int call(cli *c, uint32_t cmd, const arg *key, const arg *val, KVResponse **resp) {
    uint8_t id[1][WIRE_ID_LEN];
    static uint8_t d[WIRE_MAX_DATAGRAM];
    size_t len;
    int rc;
    if ((rc = client_random_id(id[0])) < 0) {
        errno = -rc;
        return os_error("getrandom");
    }
    if ((rc = build(d, sizeof d, id[0], cmd, key, val, c->has_version ? c->version : 0, &len)))
        return rc;
    unsigned wait = c->timeout_ms;
    uint64_t t0 = now_ms();
    for (unsigned t = 1; t <= c->retries; t++) {
        if (send_dgram(c, d, len) < 0) return os_error("sendto");
        int which;
        rc = await_reply(c, (const uint8_t (*)[WIRE_ID_LEN])id, 1, wait, &which, resp);
        if (rc < 0) return os_error("recvfrom");
        if (rc == 1) {
            if (c->verbose)
                fprintf(stderr, "dht-cli: %s answered in %llu ms, try %u\n", wire_cmd_name(cmd),
                        (unsigned long long)(now_ms() - t0), t);
            if ((*resp)->errcode != WIRE_EOVERLOAD || t == c->retries) return 0;
            int32_t w = (*resp)->overloadwaittime;
            if (w < 1) w = (int32_t)wait;
            if (w > MAX_OVERLOAD_WAIT_MS) w = MAX_OVERLOAD_WAIT_MS;
            if (c->verbose) fprintf(stderr, "dht-cli: node overloaded, waiting %d ms\n", w);
            struct timespec ts = {w / 1000, (long)(w % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
            continue;
        }
        wait *= 2;
    }
    fprintf(stderr, "error: no reply from %s after %u tries\n", c->server_str, c->retries);
    return EX_TIMEOUT;
}

/* Exit status for an answer; prints the error name when it is one. */
static int check(const KVResponse *r) {
    if (r->errcode == WIRE_OK) return EX_OK_;
    const char *why = r->errcode == WIRE_EBADKEY     ? " (keys are 1 to 32 bytes)"
                      : r->errcode == WIRE_EBADVALUE ? " (values are at most 10,000 bytes)"
                                                     : "";
    fprintf(stderr, "error: %s%s\n", wire_err_name(r->errcode), why);
    return EX_SERVER;
}

/* Exit status for an answer to SHUTDOWN or WIPEOUT. A node answers those
 * UNKNOWN_COMMAND when the client is not in its --admin-from (README: Admin
 * commands): alone, "unknown command" read as if dht-cli had sent a wrong one. */
static int check_admin(const KVResponse *r) {
    if (r->errcode != WIRE_EUNKNOWN) return check(r);
    fprintf(stderr, "error: %s (refused: the node serves SHUTDOWN and WIPEOUT only to its "
                    "--admin-from networks, by default loopback and the members' hosts)\n",
            wire_err_name(r->errcode));
    return EX_SERVER;
}

/* ---- arguments and output ---- */

static int read_stdin(arg *a) {
    size_t n = 0;
    for (;;) {
        size_t got = fread(a->buf + n, 1, sizeof a->buf - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == sizeof a->buf) {
            fprintf(stderr, "dht-cli: value on stdin is larger than a datagram\n");
            return EX_USAGE_;
        }
    }
    if (ferror(stdin)) return os_error("stdin");
    a->data = a->buf;
    a->len = n;
    return 0;
}

/* Fills a from a command-line argument: bytes as given, or hex with --hex;
 * "-" reads stdin when allow_stdin. Returns 0 or an exit status. */
static int get_arg(cli *c, const char *s, const char *what, bool allow_stdin, arg *a) {
    if (allow_stdin && strcmp(s, "-") == 0) {
        int rc = read_stdin(a);
        if (rc || !c->hex) return rc;
        /* Hex on stdin: drop whitespace, then decode in place (byte i is
         * written after digits 2i and 2i+1 were read). read_stdin left
         * room for the terminating NUL. */
        size_t j = 0;
        for (size_t i = 0; i < a->len; i++)
            if (a->buf[i] > ' ') a->buf[j++] = a->buf[i];
        a->buf[j] = 0;
        if (client_hex_decode((const char *)a->buf, a->buf, sizeof a->buf, &a->len) < 0)
            return usage_error("%s on stdin: not hex", what);
        return 0;
    }
    if (c->hex) {
        if (client_hex_decode(s, a->buf, sizeof a->buf, &a->len) < 0)
            return usage_error("%s: not hex (even number of 0-9a-f digits)", what);
        a->data = a->buf;
        return 0;
    }
    a->data = (const uint8_t *)s;
    a->len = strlen(s);
    return 0;
}

static void print_hex(FILE *f, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
}

/* Prints bytes as a double-quoted C-style string, or in hex if --hex. */
static void print_quoted(const cli *c, const uint8_t *p, size_t n) {
    if (c->hex) {
        print_hex(stdout, p, n);
        return;
    }
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (b == '"' || b == '\\') printf("\\%c", b);
        else if (b == '\n') fputs("\\n", stdout);
        else if (b == '\t') fputs("\\t", stdout);
        else if (b < 0x20 || b >= 0x7f) printf("\\x%02x", b);
        else putchar(b);
    }
    putchar('"');
}

/* ---- commands ---- */

static int cmd_put(cli *c) {
    static arg key, val;
    int rc;
    KVResponse *r;
    if ((rc = get_arg(c, c->argv[0], "KEY", false, &key))) return rc;
    if ((rc = get_arg(c, c->argv[1], "VALUE", true, &val))) return rc;
    if ((rc = call(c, WIRE_PUT, &key, &val, &r))) return rc;
    if ((rc = check(r))) return rc;
    puts("ok");
    return 0;
}

static int cmd_get(cli *c) {
    static arg key;
    int rc;
    KVResponse *r;
    if ((rc = get_arg(c, c->argv[0], "KEY", false, &key))) return rc;
    if ((rc = call(c, WIRE_GET, &key, NULL, &r))) return rc;
    if ((rc = check(r))) return rc;
    if (c->hex) print_hex(stdout, r->value.data, r->value.len);
    else fwrite(r->value.data, 1, r->value.len, stdout);
    putchar('\n');
    if (c->verbose) printf("version %d\n", r->version);
    return 0;
}

static int cmd_remove(cli *c) {
    static arg key;
    int rc;
    KVResponse *r;
    if ((rc = get_arg(c, c->argv[0], "KEY", false, &key))) return rc;
    if ((rc = call(c, WIRE_REMOVE, &key, NULL, &r))) return rc;
    if ((rc = check(r))) return rc;
    puts("ok");
    return 0;
}

static int cmd_pid(cli *c) {
    KVResponse *r;
    int rc;
    if ((rc = call(c, WIRE_GET_PID, NULL, NULL, &r)) || (rc = check(r))) return rc;
    printf("%d\n", r->pid);
    return 0;
}

static int cmd_alive(cli *c) {
    KVResponse *r;
    int rc;
    if ((rc = call(c, WIRE_IS_ALIVE, NULL, NULL, &r)) || (rc = check(r))) return rc;
    printf("%s is alive\n", c->server_str);
    return 0;
}

static int cmd_count(cli *c) {
    KVResponse *r;
    int rc;
    if ((rc = call(c, WIRE_GET_MEMBERSHIP_COUNT, NULL, NULL, &r)) || (rc = check(r))) return rc;
    printf("%d\n", r->membershipcount);
    return 0;
}

static int cmd_wipeout(cli *c) {
    KVResponse *r;
    int rc;
    if ((rc = call(c, WIRE_WIPEOUT, NULL, NULL, &r)) || (rc = check_admin(r))) return rc;
    puts("ok");
    return 0;
}

/* ---- member list and ring ---- */

#define MEMBER_COLS 16

/* One line of the member list ("ip:port state [more...]"). A member that is
 * not dead and whose address parses is on the ring, as on the servers. */
typedef struct member_row {
    const char *f[MEMBER_COLS];
    size_t nf;
    bool on_ring;
    ring_node rn;
    double share;
} member_row;

typedef struct member_list {
    char *text;                   /* the list, cut into fields in place */
    const char *hdr[MEMBER_COLS]; /* column names */
    size_t ncols;                 /* fields of the widest line, at least 2 */
    member_row *rows;
    size_t nrows;
    size_t nring;                 /* rows on the ring */
} member_list;

static void free_member_list(member_list *l) {
    free(l->text);
    free(l->rows);
}

static bool parse_member_addr(const char *s, ring_node *out) {
    char ip[INET_ADDRSTRLEN];
    const char *colon = strrchr(s, ':');
    unsigned long port;
    struct in_addr a;
    if (!colon || (size_t)(colon - s) >= sizeof ip) return false;
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = 0;
    if (inet_pton(AF_INET, ip, &a) != 1 || !parse_ulong(colon + 1, 1, 65535, &port)) return false;
    out->ip = a.s_addr;
    out->port = (uint16_t)port;
    return true;
}

/* Parses the member list text (a first line starting with '#' names the
 * columns) into l and computes each member's share of the hash slots (those
 * it is the primary of) with `vnodes` points a node and `replicas` a slot, as
 * the servers do. Returns 0, or an exit status. */
static int load_member_list(const uint8_t *text, size_t len, unsigned vnodes, unsigned replicas,
                            member_list *l) {
    static char extra[MEMBER_COLS][32];
    memset(l, 0, sizeof *l);
    l->hdr[0] = "ADDRESS";
    l->hdr[1] = "STATE";
    l->ncols = 2;
    size_t nlines = 1;
    for (size_t i = 0; i < len; i++) nlines += text[i] == '\n';
    l->text = malloc(len + 1);
    l->rows = calloc(nlines, sizeof *l->rows);
    ring_node *nodes = malloc(nlines * sizeof *nodes);
    ring *r = ring_new(vnodes);
    int rc = EX_OK_;
    if (!l->text || !l->rows || !nodes || !r || ring_set_replicas(r, replicas) != 0) {
        rc = os_error("malloc");
        goto out;
    }
    memcpy(l->text, text, len);
    l->text[len] = 0;
    char *save = NULL;
    for (char *line = strtok_r(l->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        bool hdr = line[0] == '#';
        member_row *row = &l->rows[l->nrows];
        const char *f[MEMBER_COLS];
        size_t n = 0;
        char *save2 = NULL;
        for (char *w = strtok_r(hdr ? line + 1 : line, " \t\r", &save2); w && n < MEMBER_COLS;
             w = strtok_r(NULL, " \t\r", &save2))
            f[n++] = w;
        if (n == 0) continue;
        if (hdr) {
            memcpy(l->hdr, f, n * sizeof *f);
            continue;
        }
        if (n > l->ncols) l->ncols = n;
        memcpy(row->f, f, n * sizeof *f);
        row->nf = n;
        row->on_ring = (n < 2 || strcmp(f[1], "dead") != 0) && parse_member_addr(f[0], &row->rn);
        if (row->on_ring) nodes[l->nring++] = row->rn;
        l->nrows++;
    }
    for (size_t j = 2; j < l->ncols; j++) {
        if (!l->hdr[j]) {
            snprintf(extra[j], sizeof extra[j], "FIELD%zu", j + 1);
            l->hdr[j] = extra[j];
        }
    }
    if (ring_build(r, nodes, l->nring) != 0) {
        fprintf(stderr, "dht-cli: cannot build a ring of %zu nodes x %u vnodes\n", l->nring,
                vnodes);
        rc = EX_OSERR_;
        goto out;
    }
    for (size_t i = 0, k = 0; i < l->nrows; i++)
        if (l->rows[i].on_ring) l->rows[i].share = (double)ring_slot_count(r, (uint32_t)k++) / RING_SLOTS;
out:
    ring_free(r);
    free(nodes);
    if (rc) free_member_list(l);
    return rc;
}

/* Prints cells[nrows][ncols] (row-major; NULL: empty) as aligned columns. */
static void print_table(const char **cells, size_t nrows, size_t ncols) {
    size_t width[MEMBER_COLS + 2] = {0};
    for (size_t i = 0; i < nrows; i++)
        for (size_t j = 0; j < ncols; j++)
            if (cells[i * ncols + j] && strlen(cells[i * ncols + j]) > width[j])
                width[j] = strlen(cells[i * ncols + j]);
    for (size_t i = 0; i < nrows; i++) {
        const char **row = cells + i * ncols;
        size_t last = ncols; /* no padding after the last column present */
        while (last > 1 && !row[last - 1]) last--;
        for (size_t j = 0; j < last; j++) {
            const char *w = row[j] ? row[j] : "";
            if (j + 1 == last) printf("%s\n", w);
            else printf("%-*s  ", (int)width[j], w);
        }
    }
}

typedef char cell[24];

static void format_share(const member_row *row, char *out) {
    if (row->on_ring) snprintf(out, sizeof(cell), "%.2f%%", 100 * row->share);
    else snprintf(out, sizeof(cell), "-");
}

/* The member list as a table: the node's columns, then each member's ring
 * share computed here (dead members are off the ring). */
static int cmd_members(cli *c) {
    KVResponse *r;
    member_list l;
    int rc;
    if ((rc = call(c, WIRE_GET_MEMBERSHIP_LIST, NULL, NULL, &r)) || (rc = check(r))) return rc;
    if ((rc = load_member_list(r->value.data, r->value.len, c->vnodes, c->replicas, &l))) return rc;
    size_t ncols = l.ncols + 1;
    const char **cells = calloc((l.nrows + 1) * ncols, sizeof *cells);
    cell *shares = calloc(l.nrows + 1, sizeof *shares);
    if (!cells || !shares) {
        rc = os_error("malloc");
        goto out;
    }
    memcpy(cells, l.hdr, l.ncols * sizeof *cells);
    cells[l.ncols] = "SHARE";
    for (size_t i = 0; i < l.nrows; i++) {
        const char **row = cells + (i + 1) * ncols;
        memcpy(row, l.rows[i].f, l.rows[i].nf * sizeof *row);
        format_share(&l.rows[i], shares[i]);
        row[l.ncols] = shares[i];
    }
    print_table(cells, l.nrows + 1, ncols);
    printf("%zu member%s, %d live\n", l.nrows, l.nrows == 1 ? "" : "s", r->membershipcount);
out:
    free(cells);
    free(shares);
    free_member_list(&l);
    return rc;
}

/* The ring as this node's member list makes it: each live member's vnodes
 * and share of the hash slots (those it is the primary of), and how even
 * the shares are. */
static int cmd_ring(cli *c) {
    KVResponse *r;
    member_list l;
    int rc;
    if ((rc = call(c, WIRE_GET_MEMBERSHIP_LIST, NULL, NULL, &r)) || (rc = check(r))) return rc;
    if ((rc = load_member_list(r->value.data, r->value.len, c->vnodes, c->replicas, &l))) return rc;
    enum { NCOLS = 4 };
    const char **cells = calloc((l.nring + 1) * NCOLS, sizeof *cells);
    cell *text = calloc(2 * (l.nring + 1), sizeof *text);
    if (!cells || !text) {
        rc = os_error("malloc");
        goto out;
    }
    static const char *hdr[NCOLS] = {"ADDRESS", "STATE", "VNODES", "SHARE"};
    memcpy(cells, hdr, sizeof hdr);
    double lo = 1, hi = 0;
    size_t k = 0;
    for (size_t i = 0; i < l.nrows; i++) {
        const member_row *m = &l.rows[i];
        if (!m->on_ring) continue;
        const char **row = cells + ++k * NCOLS;
        row[0] = m->f[0];
        row[1] = m->nf > 1 ? m->f[1] : "";
        snprintf(text[2 * k], sizeof(cell), "%u", c->vnodes);
        format_share(m, text[2 * k + 1]);
        row[2] = text[2 * k];
        row[3] = text[2 * k + 1];
        if (m->share < lo) lo = m->share;
        if (m->share > hi) hi = m->share;
    }
    print_table(cells, l.nring + 1, NCOLS);
    if (l.nring)
        printf("%zu node%s on the ring, %u vnodes each, %u replica%s a slot; share of the %d "
               "slots min %.2f%%, max %.2f%% (%.2fx the mean)\n", l.nring, l.nring == 1 ? "" : "s",
               c->vnodes, c->replicas, c->replicas == 1 ? "" : "s", RING_SLOTS, 100 * lo, 100 * hi,
               hi * (double)l.nring);
    else
        printf("the ring is empty\n");
out:
    free(cells);
    free(text);
    free_member_list(&l);
    return rc;
}

/* The node exits without answering SHUTDOWN. Each try sends SHUTDOWN (same
 * ID every time) followed by an IS_ALIVE probe; the node serves datagrams in
 * order, so a probe that is answered means the SHUTDOWN was lost and is
 * sent again; silence from both means the node has stopped. */
static int cmd_shutdown(cli *c) {
    KVResponse *r;
    int rc;
    if ((rc = call(c, WIRE_IS_ALIVE, NULL, NULL, &r))) return rc;
    uint8_t ids[2][WIRE_ID_LEN];
    static uint8_t d[2][128];
    size_t len[2];
    for (int i = 0; i < 2; i++) {
        if ((rc = client_random_id(ids[i])) < 0) {
            errno = -rc;
            return os_error("getrandom");
        }
        if ((rc = build(d[i], sizeof d[i], ids[i], i ? WIRE_IS_ALIVE : WIRE_SHUTDOWN, NULL,
                        NULL, 0, &len[i])))
            return rc;
    }
    unsigned wait = c->timeout_ms;
    for (unsigned t = 1; t <= c->retries; t++, wait *= 2) {
        if (send_dgram(c, d[0], len[0]) < 0 || send_dgram(c, d[1], len[1]) < 0)
            return os_error("sendto");
        int which;
        rc = await_reply(c, (const uint8_t (*)[WIRE_ID_LEN])ids, 2, wait, &which, &r);
        if (rc < 0) return os_error("recvfrom");
        if (rc == 0) {
            printf("%s stopped\n", c->server_str);
            return 0;
        }
        if (which == 0) { /* it answered SHUTDOWN: trust the answer */
            if ((rc = check_admin(r))) return rc;
            printf("%s is shutting down\n", c->server_str);
            return 0;
        }
        if (c->verbose) fprintf(stderr, "dht-cli: node still alive after try %u\n", t);
    }
    fprintf(stderr, "error: %s still answers after %u shutdown tries\n", c->server_str,
            c->retries);
    return EX_SERVER;
}

static int cmd_raw(cli *c) {
    static arg key, val;
    unsigned long cmd;
    int rc;
    KVResponse *r;
    char *end;
    errno = 0;
    cmd = strtoul(c->argv[0], &end, 16); /* "22" or "0x22" */
    if (!*c->argv[0] || *end || errno || cmd > UINT32_MAX || c->argv[0][0] == '-')
        return usage_error("CMD_HEX: bad hex number '%s'", c->argv[0]);
    if (c->argc > 1 && (rc = get_arg(c, c->argv[1], "KEY", false, &key))) return rc;
    if (c->argc > 2 && (rc = get_arg(c, c->argv[2], "VALUE", true, &val))) return rc;
    if ((rc = call(c, (uint32_t)cmd, c->argc > 1 ? &key : NULL, c->argc > 2 ? &val : NULL, &r)))
        return rc;
    printf("command          0x%02lx %s\n", cmd, wire_cmd_name((uint32_t)cmd));
    printf("errCode          0x%02x %s\n", r->errcode, wire_err_name(r->errcode));
    printf("value            ");
    print_quoted(c, r->value.data, r->value.len);
    printf(" (%zu bytes)\n", r->value.len);
    printf("pid              %d\n", r->pid);
    printf("version          %d\n", r->version);
    printf("overloadWaitTime %d\n", r->overloadwaittime);
    printf("membershipCount  %d\n", r->membershipcount);
    return r->errcode == WIRE_OK ? EX_OK_ : EX_SERVER;
}

/* Debug hook: the node stops gossiping (and judging others) for MS, as if
 * frozen, so tests can make it look dead without killing it. No answer. */
static int cmd_pause_gossip(cli *c) {
    unsigned long ms;
    if (!parse_ulong(c->argv[0], 1, 600000, &ms))
        return usage_error("pause-gossip: expected 1..600000 ms, got '%s'", c->argv[0]);
    Peer p = PEER__INIT;
    p.type = PEER_DEBUG;
    p.flags = PEER_DEBUG_PAUSE_GOSSIP;
    p.bucket = (uint32_t)ms;
    uint8_t id[WIRE_ID_LEN];
    static uint8_t d[256];
    int rc = client_random_id(id);
    if (rc < 0) {
        errno = -rc;
        return os_error("getrandom");
    }
    size_t len = wire_pack(d, sizeof d, id, sizeof id, &p.base, WIRE_KIND_PEER);
    if (!len) return os_error("wire_pack");
    if (c->key_file) { /* nodes with a key take debug messages sealed with it only */
        auth_keys k;
        char err[256];
        struct timespec ts;
        if (auth_load(c->key_file, &k, err, sizeof err) != 0) {
            fprintf(stderr, "dht-cli: %s\n", err);
            return EX_USAGE_;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        len = auth_seal(&k, d, len, sizeof d,
                        (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                        false); /* (the seal every version opens) */
    }
    if (!len || send_dgram(c, d, len) < 0) return os_error("sendto");
    printf("%s: asked to pause gossip for %lu ms (not acknowledged: a node with a cluster key "
           "takes it only sealed with that key, --key-file)\n", c->server_str, ms);
    return 0;
}

/* Writes a fresh cluster key to the file argument (created 0600, not
 * overwritten) or to stdout. */
static int cmd_keygen(cli *c) {
    char key[66];
    auth_keygen(key);
    if (c->argc == 0) {
        fputs(key, stdout);
        return 0;
    }
    int fd = open(c->argv[0], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "dht-cli: keygen: %s: %s%s\n", c->argv[0], strerror(errno),
                errno == EEXIST ? " (a key is never overwritten: remove it first)" : "");
        return EX_USAGE_;
    }
    errno = 0;
    ssize_t w = write(fd, key, 65);
    if (w != 65 || close(fd) != 0) {
        if (w != 65 && errno == 0) errno = ENOSPC; /* a short write */
        int rc = os_error(c->argv[0]);
        unlink(c->argv[0]); /* an empty or partial key file would be refused by every node,
                             * and keygen never overwrites: the next try would fail too */
        return rc;
    }
    printf("%s: new cluster key; give every node --cluster-key-file %s\n", c->argv[0], c->argv[0]);
    return 0;
}

typedef struct command {
    const char *name;
    int min_args, max_args;
    int (*run)(cli *c);
} command;

static const command commands[] = {
    {"put", 2, 2, cmd_put},         {"get", 1, 1, cmd_get},
    {"remove", 1, 1, cmd_remove},   {"pid", 0, 0, cmd_pid},
    {"alive", 0, 0, cmd_alive},     {"count", 0, 0, cmd_count},
    {"members", 0, 0, cmd_members}, {"wipeout", 0, 0, cmd_wipeout},
    {"shutdown", 0, 0, cmd_shutdown}, {"raw", 1, 3, cmd_raw},
    {"pause-gossip", 1, 1, cmd_pause_gossip}, {"ring", 0, 0, cmd_ring},
    {"keygen", 0, 1, cmd_keygen},
};

enum { OPT_VNODES = 256, OPT_REPLICAS };

/* Parses the options into c; returns 0, -1 after --help, or an exit status. */
static int parse_options(cli *c, int argc, char **argv) {
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'}, {"timeout", required_argument, NULL, 't'},
        {"retries", required_argument, NULL, 'r'}, {"hex", no_argument, NULL, 'x'},
        {"version", required_argument, NULL, 'V'}, {"verbose", no_argument, NULL, 'v'},
        {"vnodes", required_argument, NULL, OPT_VNODES},
        {"replicas", required_argument, NULL, OPT_REPLICAS},
        {"key-file", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    unsigned long v;
    int o;
    while ((o = getopt_long(argc, argv, "s:t:r:xV:vk:h", opts, NULL)) != -1) {
        switch (o) {
        case 's': c->server_str = optarg; break;
        case 't':
            if (!parse_ulong(optarg, 1, 600000, &v))
                return usage_error("--timeout: expected 1..600000 ms, got '%s'", optarg);
            c->timeout_ms = (unsigned)v;
            break;
        case 'r':
            if (!parse_ulong(optarg, 1, 20, &v))
                return usage_error("--retries: expected 1..20, got '%s'", optarg);
            c->retries = (unsigned)v;
            break;
        case 'x': c->hex = true; break;
        case 'V': {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10); /* "010" is ten, not eight */
            if (!*optarg || *end || errno || n < INT32_MIN || n > INT32_MAX)
                return usage_error("--version: expected a 32-bit integer, got '%s'", optarg);
            c->version = (int32_t)n;
            c->has_version = true;
            break;
        }
        case 'v': c->verbose = true; break;
        case 'k': c->key_file = optarg; break;
        case OPT_VNODES:
            if (!parse_ulong(optarg, 1, 4096, &v))
                return usage_error("--vnodes: expected 1..4096, got '%s'", optarg);
            c->vnodes = (unsigned)v;
            break;
        case OPT_REPLICAS:
            if (!parse_ulong(optarg, 1, RING_MAX_REPLICAS, &v))
                return usage_error("--replicas: expected 1..7, got '%s'", optarg);
            c->replicas = (unsigned)v;
            break;
        case 'h': usage(stdout); return -1;
        default: fprintf(stderr, "Try 'dht-cli --help'.\n"); return EX_USAGE_;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    cli c = {.server_str = getenv("DHT_SERVER"), .fd = -1, .timeout_ms = 100, .retries = 4,
             .vnodes = RING_DEFAULT_VNODES,
             .replicas = RING_DEFAULT_REPLICAS};
    if (!c.server_str || !*c.server_str) c.server_str = DEFAULT_SERVER;
    int rc = parse_options(&c, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (optind >= argc) return usage_error("%s", "missing COMMAND");

    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[optind], commands[i].name) == 0) cmd = &commands[i];
    if (!cmd) return usage_error("unknown command '%s'", argv[optind]);
    c.argv = argv + optind + 1;
    c.argc = argc - optind - 1;
    if (c.argc < cmd->min_args || c.argc > cmd->max_args)
        return usage_error("%s: wrong number of arguments", cmd->name);
    if (c.has_version && cmd->run != cmd_put && cmd->run != cmd_raw)
        return usage_error("%s: --version applies to put and raw only", cmd->name);

    switch (client_parse_addr(c.server_str, &c.server)) {
    case 0: break;
    case CLIENT_ERESOLVE:
        fprintf(stderr, "dht-cli: cannot resolve host in '%s'\n", c.server_str);
        return EX_NOHOST_;
    default: return usage_error("bad server address '%s' (expected HOST:PORT)", c.server_str);
    }
    c.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return os_error("socket");
    if (!(c.arena = wire_arena_new())) return os_error("wire_arena_new");
    rc = cmd->run(&c);
    close(c.fd);
    wire_arena_free(c.arena);
    if (fflush(stdout) != 0 && rc == 0) rc = os_error("stdout");
    return rc;
}
