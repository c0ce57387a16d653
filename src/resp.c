/* resp: RESP2 parsing, command dispatch and in-order replies over libuv TCP. */
#include "resp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "members.h"
#include "repl.h"
#include "ring.h"
#include "shed.h"
#include "wire.h"

#define MAX_PENDING 1024          /* outstanding replies before reading pauses */
#define MAX_OUTPUT (4u << 20)     /* reply bytes waiting before reading pauses */
#define OUTPUT_KEEP (16u << 10)   /* an output buffer kept between replies, at most */
#define SLOTS_KEEP 64             /* reply slots, and parser arguments, kept between commands */
#define READ_CHUNK (64u << 10)
#define BACKLOG 511
#define NOTE_EVERY_MS 10000       /* a log line of each kind of refusal, at most */
#define KEYS_WINDOW 256           /* a multi-key command's operations in flight at once */

static const char err_maxclients[] = "-ERR max number of clients reached\r\n";
static const char err_noauth[] = "-NOAUTH Authentication required.\r\n";
static const char err_wrongpass[] = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
static const char err_denied[] =
    "-DENIED dht is running in protected mode because protected mode is enabled and no "
    "password is set. In this mode connections are only accepted from the loopback "
    "interface. To serve other clients, set a password (--requirepass-file), or bind to a "
    "loopback address (--resp-bind), or turn protected mode off (--protected-mode no) once "
    "the port is not reachable from untrusted networks.\r\n";

/* A growable byte buffer. After a failed allocation it stays failed (oom)
 * and drops appends: its owner must give up on what it was building. */
typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

typedef resp_arg arg;          /* a command's name or argument, in the input buffer */

enum conn_state { CONN_READING, CONN_FINISHING, CONN_QUITTING, CONN_CLOSED };

/* How a slot answers once its operations completed: LOCAL slots are
 * answered at once; VALUE (GET, one MGET key) with the value or nil; COUNT
 * (DEL, EXISTS) with how many keys were found; OK (SET, MSET) with +OK;
 * ARRAY (MGET) with the array header of the VALUE slots after it, once
 * they are all answered, or with the first failure among them alone. */
enum slot_kind { SLOT_LOCAL, SLOT_VALUE, SLOT_COUNT, SLOT_OK, SLOT_ARRAY };

typedef struct slot {
    buf reply;          /* filled while slots ahead are not: waits here */
    uint32_t pending;   /* COUNT, OK, ARRAY: operations in flight, +1 while starting them */
    uint32_t err;       /* first failure among them (wire_err) */
    uint32_t up;        /* a VALUE slot of an ARRAY: how many slots back it is; else 0 */
    long long count;    /* COUNT: operations that found their key; ARRAY: its values */
    uint8_t kind;
    bool ready;
} slot;

/* A multi-key command's keys not started yet. At most KEYS_WINDOW of its
 * operations run at once (a command of 3,000 keys started them all at once,
 * and those past --max-inflight were refused whatever the load); the others
 * wait here, copied out of the input, and the connection runs nothing after
 * the command until all its keys have started, so that a later write of one
 * of them is stamped after it. */
typedef struct key_queue {
    uint64_t seq;       /* the command's slot (MGET: its ARRAY slot) */
    uint32_t cmd;       /* WIRE_PUT, WIRE_GET, WIRE_REMOVE */
    size_t step;        /* 2: each key is followed by its value */
    size_t from;        /* the first key queued */
    size_t next, n;     /* the next of the command's n keys to start */
    arg *argv;          /* the arguments of keys next..n-1, pointing into data */
    size_t bytes;       /* its size (conn_bytes) */
    char data[];
} key_queue;

typedef struct conn conn;

typedef struct resp_server resp_server;

/* Counters shown by INFO. */
typedef struct resp_stats {
    unsigned long long accepted;    /* connections served */
    unsigned long long rejected;    /* over maxclients */
    unsigned long long denied;      /* protected mode */
    unsigned long long timed_out;   /* query or idle timeout */
    unsigned long long evicted;     /* over max_held */
    unsigned long long auth_failed; /* WRONGPASS replies */
} resp_stats;

struct resp_server {
    node *n;
    uv_tcp_t listener;
    conn_spare spare;           /* closes the connections no memory is left for */
    uv_check_t flush;           /* services dirty connections once per iteration */
    uv_timer_t sweep;           /* closes the clients past a timeout */
    conn *dirty;
    conn *all;                  /* every connection not closed */
    size_t clients;             /* of them */
    size_t maxclients;
    size_t held, max_held;      /* bytes held for all clients (conn_bytes), the bound */
    uint64_t query_ms, idle_ms; /* timeouts; idle_ms 0: none */
    const char *password;       /* NULL: none */
    size_t password_len;
    bool protected_mode;
    resp_stats stats;
    uint64_t last_id;           /* the last CLIENT ID given */
    uint64_t noted[6];          /* when each kind of refusal was last logged */
    char rbuf[READ_CHUNK];      /* what a connection holding no input reads into */
};

struct conn {
    uv_tcp_t tcp;
    resp_server *srv;
    enum conn_state state;
    bool reading;
    bool dirty;
    bool authed;                /* AUTH succeeded */
    bool readonly;              /* READONLY: reads served by any replica (cluster mode) */
    uint64_t id;                /* CLIENT ID: 1, 2, ... in the order accepted */
    uint64_t born;              /* loop ms it was accepted */
    char *name;                 /* CLIENT SETNAME's (NULL: none), name_len bytes */
    size_t name_len;
    const char *last_cmd;       /* the name of the last command run ("client|info") */
    key_queue *keys;            /* a command's keys not started yet (NULL: none) */
    conn *dirty_prev, *dirty_next;
    conn *all_prev, *all_next;  /* srv->all, until closed */
    unsigned refs;              /* the handle until closed, + operations in flight */
    size_t held;                /* conn_bytes as counted in srv->held */
    uint64_t last_io;           /* loop ms of the last byte read or written */
    uint64_t query_since;       /* loop ms since a command is partly here; 0: none */
    /* input: in.p NULL when empty (reads go to srv->rbuf) */
    buf in;
    size_t start;               /* first byte of the command being received */
    resp_parser parser;         /* its progress */
    /* replies: slots head..tail-1 in a ring of slots_cap (a power of 2) */
    slot *slots;
    size_t slots_cap;
    uint64_t head, tail;
    size_t slot_bytes;          /* replies waiting in slots behind the head */
    buf out;
    size_t writing;             /* bytes handed to uv_write, not yet written */
};

typedef struct write_req {
    uv_write_t req;
    conn *c;
    char *data;
    size_t len;
} write_req;

typedef void (*command_fn)(conn *c, uint64_t seq, size_t argc, const arg *argv);

/* A command, and what COMMAND says of it, as Redis 7 does: cluster
 * clients (redis-py's RedisCluster) find a command's keys there, to send it
 * to the node of their slot. Lists are space-separated words. */
typedef struct command {
    const char *name;
    int arity;                  /* argc with the name; negative: at least -arity */
    command_fn fn;              /* NULL for a subcommand (its command runs it) */
    const char *flags;          /* "readonly fast", ... */
    const char *acl;            /* ACL categories: "@read @string @fast" */
    const char *tips;           /* "request_policy:multi_shard", ... */
    int first, last, step;      /* keys: argv[first], then every step-th up to last
                                 * (negative: from the end); 0 0 0: none */
    const char *key_flags;      /* the keys' flags ("RO access"), when there are keys */
    const struct command *subs; /* subcommands ("cluster|slots"), nsubs of them */
    size_t nsubs;
} command;

static void conn_close(conn *c);
static void conn_account(conn *c);
static size_t conn_bytes(const conn *c);

/* ---- buffers and reply encoding ---------------------------------------- */

static bool buf_reserve(buf *b, size_t more) {
    if (b->cap - b->len >= more) return true;
    if (b->oom) return false;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void buf_put(buf *b, const void *p, size_t len) {
    if (!len || !buf_reserve(b, len)) return;
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

static void buf_free(buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* A type byte, a decimal number, CRLF: ":12\r\n", "$5\r\n", "*3\r\n". */
static void put_num(buf *b, char type, long long v) {
    char tmp[24], *end = tmp + sizeof tmp, *s = end;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    *--s = '\n';
    *--s = '\r';
    do *--s = (char)('0' + u % 10); while (u /= 10);
    if (v < 0) *--s = '-';
    *--s = type;
    buf_put(b, s, (size_t)(end - s));
}

static void put_bulk(buf *b, const void *p, size_t len) {
    put_num(b, '$', (long long)len);
    buf_put(b, p, len);
    buf_put(b, "\r\n", 2);
}

static void put_status(buf *b, const char *s) {
    buf_put(b, "+", 1);
    buf_put(b, s, strlen(s));
    buf_put(b, "\r\n", 2);
}

/* An error line; control characters (CR, LF from a client's bytes) become
 * spaces so that the reply stays one line. fmt starts with the error code
 * ("ERR ...", "OOM ..."). */
static void put_verror(buf *b, const char *fmt, va_list ap) {
    char msg[512];
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    if (len < 0) len = 0;
    if ((size_t)len >= sizeof msg) len = sizeof msg - 1;
    for (int i = 0; i < len; i++)
        if ((unsigned char)msg[i] < 0x20) msg[i] = ' ';
    buf_put(b, "-", 1);
    buf_put(b, msg, (size_t)len);
    buf_put(b, "\r\n", 2);
}

/* A failed operation's error. An overload (a node over its --max-inflight,
 * or live replicas too slow) is the UDP protocol's OVERLOAD, which tells
 * the client to come back after a wait; in cluster mode it is answered
 * -TRYAGAIN, which Redis Cluster clients (redis-py, ioredis) retry by
 * themselves after a pause, as during a slot's migration in Redis Cluster:
 * every command here may be sent again (a write turned away at admission
 * was not started; one whose replicas were too slow may be partly applied,
 * and SET, MSET and DEL sent again write the same). Elsewhere an ERR. */
static void put_wire_error(buf *b, uint32_t err, bool cluster) {
    const char *msg;
    switch (err) {
    case WIRE_ENOSPACE:
        msg = "-OOM command not allowed: out of space (--max-memory or disk full)\r\n";
        break;
    case WIRE_EOVERLOAD:
        msg = cluster ? "-TRYAGAIN busy: too many operations in flight\r\n"
                      : "-ERR busy: too many operations in flight, try again\r\n";
        break;
    case WIRE_EINTERNAL: msg = "-ERR quorum not reached: replicas failed or did not answer in time\r\n"; break;
    default: msg = "-ERR internal error\r\n"; break;
    }
    buf_put(b, msg, strlen(msg));
}

/* ---- the reply queue --------------------------------------------------- */

static slot *slot_at(conn *c, uint64_t seq) { return &c->slots[seq & (c->slots_cap - 1)]; }

/* Appends count empty slots to the queue; the first one's number in
 * *first. 0, or -1 on no memory (the queue is unchanged). */
static int slots_add(conn *c, size_t count, uint64_t *first) {
    size_t used = (size_t)(c->tail - c->head), cap = c->slots_cap ? c->slots_cap : 16;
    while (cap - used < count) cap *= 2;
    if (cap != c->slots_cap) {
        slot *s = calloc(cap, sizeof *s);
        if (!s) return -1;
        for (uint64_t q = c->head; q < c->tail; q++) s[q & (cap - 1)] = *slot_at(c, q);
        free(c->slots);
        c->slots = s;
        c->slots_cap = cap;
    }
    *first = c->tail;
    for (size_t i = 0; i < count; i++) memset(slot_at(c, c->tail++), 0, sizeof(slot));
    return 0;
}

static void conn_dirty(conn *c) {
    if (c->dirty || c->state == CONN_CLOSED) return;
    resp_server *s = c->srv;
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = s->dirty;
    if (s->dirty) s->dirty->dirty_prev = c;
    s->dirty = c;
}

static void conn_clean(conn *c) {
    if (!c->dirty) return;
    if (c->dirty_prev) c->dirty_prev->dirty_next = c->dirty_next;
    else c->srv->dirty = c->dirty_next;
    if (c->dirty_next) c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty = false;
}

/* Where slot seq's reply is written: straight to the output when every
 * slot ahead of it is out already. */
static buf *reply_begin(conn *c, uint64_t seq) {
    return seq == c->head ? &c->out : &slot_at(c, seq)->reply;
}

/* Marks slot seq answered and moves the answered prefix of the queue to
 * the output. */
static void reply_end(conn *c, uint64_t seq) {
    slot *done = slot_at(c, seq);
    done->ready = true;
    c->slot_bytes += done->reply.len;   /* 0 when it went to the output */
    if (c->state == CONN_CLOSED) return;
    while (c->head < c->tail) {
        slot *s = slot_at(c, c->head);
        if (!s->ready) break;
        if (s->reply.oom) c->out.oom = true;
        buf_put(&c->out, s->reply.p, s->reply.len);
        c->slot_bytes -= s->reply.len;
        buf_free(&s->reply);
        c->head++;
    }
    conn_dirty(c);
    conn_account(c);
}

static void reply_status(conn *c, uint64_t seq, const char *s) {
    put_status(reply_begin(c, seq), s);
    reply_end(c, seq);
}

static void reply_int(conn *c, uint64_t seq, long long v) {
    put_num(reply_begin(c, seq), ':', v);
    reply_end(c, seq);
}

static void reply_bulk(conn *c, uint64_t seq, const void *p, size_t len) {
    put_bulk(reply_begin(c, seq), p, len);
    reply_end(c, seq);
}

static void reply_raw(conn *c, uint64_t seq, const char *resp) {
    buf_put(reply_begin(c, seq), resp, strlen(resp));
    reply_end(c, seq);
}

__attribute__((format(printf, 3, 4)))
static void reply_error(conn *c, uint64_t seq, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    put_verror(reply_begin(c, seq), fmt, ap);
    va_end(ap);
    reply_end(c, seq);
}

/* ---- operations through repl ------------------------------------------- */

static void conn_unref(conn *c) {
    if (--c->refs) return;
    for (uint64_t q = c->head; q < c->tail; q++) buf_free(&slot_at(c, q)->reply);
    free(c->slots);
    buf_free(&c->in);
    buf_free(&c->out);
    resp_parser_free(&c->parser);
    free(c->name);
    free(c->keys);
    free(c);
}

/* Answers slot seq once its last operation is done. */
static void slot_settle(conn *c, uint64_t seq) {
    slot *s = slot_at(c, seq);
    if (--s->pending) return;
    if (s->kind == SLOT_ARRAY && s->err) { /* the values answered go */
        for (uint64_t q = seq + 1; q <= seq + (uint64_t)s->count; q++) {
            slot *v = slot_at(c, q);
            c->slot_bytes -= v->reply.len;
            buf_free(&v->reply);
        }
    }
    buf *b = reply_begin(c, seq);
    if (s->err) put_wire_error(b, s->err, c->srv->n->cfg.resp_cluster);
    else if (s->kind == SLOT_COUNT) put_num(b, ':', s->count);
    else if (s->kind == SLOT_ARRAY) put_num(b, '*', s->count);
    else put_status(b, "OK");
    reply_end(c, seq);
}

/* The outcome of one of slot seq's operations. */
static void slot_result(conn *c, uint64_t seq, uint32_t err, const uint8_t *val, size_t vlen) {
    slot *s = slot_at(c, seq);
    if (s->kind == SLOT_VALUE) {
        uint64_t array = seq - s->up;
        bool failed = err != WIRE_OK && err != WIRE_ENOKEY;
        if (!(s->up && failed)) { /* a failure in an array is the array's answer */
            buf *b = reply_begin(c, seq);
            if (err == WIRE_OK) put_bulk(b, val, vlen);
            else if (err == WIRE_ENOKEY) buf_put(b, "$-1\r\n", 5);
            else put_wire_error(b, err, c->srv->n->cfg.resp_cluster);
        }
        reply_end(c, seq);
        if (!s->up) return;
        slot *a = slot_at(c, array);
        if (failed && !a->err) a->err = err;
        slot_settle(c, array);
        return;
    }
    if (err == WIRE_OK) s->count++;
    else if (err != WIRE_ENOKEY && !s->err) s->err = err;
    slot_settle(c, seq);
}

static void op_done(node *n, const repl_origin *o, const repl_result *res) {
    (void)n;
    conn *c = o->ctx;
    uint64_t seq;
    memcpy(&seq, o->id, sizeof seq);
    if (c->state != CONN_CLOSED) slot_result(c, seq, res->err, res->val, res->vlen);
    if (c->keys) conn_dirty(c); /* room for more of its keys (keys_resume) */
    conn_unref(c);
}

/* Starts one operation of slot seq; one refused for overload counts as
 * failed with WIRE_EOVERLOAD. admitted: one of a multi-key command's, which
 * was admitted whole (keys_start). */
static void slot_op(conn *c, uint64_t seq, uint32_t cmd, const arg *key, const arg *val,
                    bool admitted) {
    node *n = c->srv->n;
    repl_origin o;
    memset(&o, 0, sizeof o);
    o.done = op_done;
    o.ctx = c;
    memcpy(o.id, &seq, sizeof seq);     /* the slot rides in the message ID */
    o.idlen = sizeof seq;
    o.start_ms = node_now(n);
    o.start_us = node_now_us(n);
    o.any_replica = c->readonly;
    o.admitted = admitted;
    n->stats.requests[cmd]++;
    if (!admitted && node_lagging(n)) { /* the loop runs late: no new work (node.h) */
        slot_result(c, seq, WIRE_EOVERLOAD, NULL, 0);
        return;
    }
    c->refs++;
    if (repl_client_op(n, &o, cmd, (const uint8_t *)key->p, key->len,
                       val ? (const uint8_t *)val->p : NULL, val ? val->len : 0, 0) == 0)
        return;
    c->refs--;
    slot_result(c, seq, WIRE_EOVERLOAD, NULL, 0);
}

static size_t keys_window(const conn *c) {
    unsigned most = c->srv->n->cfg.max_inflight;
    return most < KEYS_WINDOW ? most : KEYS_WINDOW;
}

/* Starts the next keys of the command of slot seq, key i at argv[(i -
 * from) * step] (followed by its value when step is 2), *next the first not
 * started of n, while the connection has fewer than keys_window operations
 * in flight. */
/* Counts key i of the command of slot seq as pending; the slot its answer
 * goes to: seq, or for an ARRAY (MGET) a VALUE slot of its own after it. */
static uint64_t key_slot(conn *c, uint64_t seq, size_t i) {
    slot *s = slot_at(c, seq);
    s->pending++;
    if (s->kind != SLOT_ARRAY) return seq;
    slot *v = slot_at(c, seq + 1 + i);
    v->kind = SLOT_VALUE;
    v->up = (uint32_t)(1 + i);
    return seq + 1 + i;
}

static void keys_start(conn *c, uint64_t seq, uint32_t cmd, const arg *argv, size_t from,
                       size_t step, size_t *next, size_t n) {
    while (*next < n && c->refs - 1 < keys_window(c) && c->state != CONN_CLOSED) {
        size_t i = (*next)++;
        const arg *a = &argv[(i - from) * step];
        slot_op(c, key_slot(c, seq, i), cmd, a, step == 2 ? a + 1 : NULL, true);
    }
}

/* Goes on with the keys queued (c->keys), and ends the queue once all
 * started: the connection then runs its next commands. */
static void keys_resume(conn *c) {
    key_queue *q = c->keys;
    if (!q || c->state == CONN_CLOSED) return;
    keys_start(c, q->seq, q->cmd, q->argv, q->from, q->step, &q->next, q->n);
    if (q->next < q->n || c->state == CONN_CLOSED) return;
    c->keys = NULL;
    slot_settle(c, q->seq); /* its +1 while starting */
    free(q);
}

/* Runs cmd on every key of argv[1..argc) (each followed by its value when
 * step is 2) and answers slot seq, as kind, once all are done: MGET (ARRAY)
 * with the values of the slots after seq, which it adds. The command is
 * admitted whole or refused whole (overload): refused key by key, part of
 * it was done and the client told it failed. */
static void slot_ops(conn *c, uint64_t seq, enum slot_kind kind, uint32_t cmd, size_t argc,
                     const arg *argv, size_t step) {
    size_t n = (argc - 1) / step, window = keys_window(c);
    node *nd = c->srv->n;
    if (node_lagging(nd) || !repl_admits(nd, n < window ? n : window)) {
        nd->stats.requests[cmd] += n;
        slot_at(c, seq)->kind = kind;
        buf *b = reply_begin(c, seq);
        put_wire_error(b, WIRE_EOVERLOAD, nd->cfg.resp_cluster);
        reply_end(c, seq);
        return;
    }
    if (kind == SLOT_ARRAY) {
        uint64_t first;
        if (slots_add(c, n, &first) != 0) {
            reply_error(c, seq, "ERR out of memory");
            return;
        }
    }
    slot *s = slot_at(c, seq);
    s->kind = kind;
    s->pending = 1;
    if (kind == SLOT_ARRAY) s->count = (long long)n;
    size_t next = 0;
    keys_start(c, seq, cmd, argv + 1, 0, step, &next, n);
    if (c->state == CONN_CLOSED) return;    /* over the buffer bound */
    if (next == n) {
        slot_settle(c, seq);
        return;
    }
    /* the rest waits, copied: the input moves on */
    size_t bytes = 0, nargs = (n - next) * step;
    for (size_t i = 0; i < nargs; i++) bytes += argv[1 + next * step + i].len;
    key_queue *q = malloc(sizeof *q + nargs * sizeof(arg) + bytes);
    if (!q) { /* what started answers; the rest fails */
        for (; next < n; next++) slot_result(c, key_slot(c, seq, next), WIRE_EOVERLOAD, NULL, 0);
        slot_settle(c, seq);
        return;
    }
    *q = (key_queue){.seq = seq, .cmd = cmd, .step = step, .from = next, .next = next, .n = n,
                     .bytes = sizeof *q + nargs * sizeof(arg) + bytes};
    q->argv = (arg *)q->data;
    char *d = q->data + nargs * sizeof(arg);
    for (size_t i = 0; i < nargs; i++) {
        const arg *a = &argv[1 + next * step + i];
        memcpy(d, a->p, a->len);
        q->argv[i] = (arg){.p = d, .len = a->len};
        d += a->len;
    }
    c->keys = q;
}

/* ---- commands ----------------------------------------------------------- */

/* Checks the keys argv[1], argv[1 + step], ... (each followed by a value
 * when step is 2). Answers slot seq with the error and returns false if
 * one is out of the store's bounds. */
static bool keys_ok(conn *c, uint64_t seq, size_t argc, const arg *argv, size_t step) {
    for (size_t i = 1; i < argc; i += step) {
        if (argv[i].len == 0) {
            reply_error(c, seq, "ERR invalid key: keys cannot be empty");
            return false;
        }
        if (argv[i].len > WIRE_MAX_KEY) {
            reply_error(c, seq, "ERR invalid key: %zu bytes, keys are at most %d bytes",
                        argv[i].len, WIRE_MAX_KEY);
            return false;
        }
        if (step == 2 && argv[i + 1].len > WIRE_MAX_VALUE) {
            reply_error(c, seq, "ERR invalid value: %zu bytes, values are at most %d bytes",
                        argv[i + 1].len, WIRE_MAX_VALUE);
            return false;
        }
    }
    return true;
}

static bool arg_is(const arg *a, const char *s) {
    return a->len == strlen(s) && strncasecmp(a->p, s, a->len) == 0;
}

static void reply_arity(conn *c, uint64_t seq, const char *name) {
    reply_error(c, seq, "ERR wrong number of arguments for '%s' command", name);
}

/* The arity error of subcommand sub of command top ("cluster|slots"), in
 * lower case as Redis names it. */
static void reply_sub_arity(conn *c, uint64_t seq, const char *top, const arg *sub) {
    char name[40];
    size_t len = strlen(top), i = 0;
    memcpy(name, top, len);
    name[len++] = '|';
    for (; i < sub->len && len < sizeof name - 1; i++)
        name[len++] = (char)tolower((unsigned char)sub->p[i]);
    name[len] = 0;
    reply_arity(c, seq, name);
}

/* Subcommand sub of command top, not run: the arity error of one of known
 * (space-separated), else Redis's unknown subcommand error. */
static void reply_bad_sub(conn *c, uint64_t seq, const char *top, const char *known,
                          const arg *sub) {
    for (const char *w = known; *w;) {
        size_t len = strcspn(w, " ");
        if (len == sub->len && strncasecmp(w, sub->p, len) == 0) {
            reply_sub_arity(c, seq, top, sub);
            return;
        }
        w += len;
        w += *w == ' ';
    }
    char upper[16];
    size_t i = 0;
    for (; top[i] && i < sizeof upper - 1; i++) upper[i] = (char)toupper((unsigned char)top[i]);
    upper[i] = 0;
    reply_error(c, seq, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                (int)(sub->len < 64 ? sub->len : 64), sub->p, upper);
}

/* A HELP subcommand's answer: its lines as statuses. */
static void reply_help(conn *c, uint64_t seq, const char *const *lines, size_t n) {
    buf *b = reply_begin(c, seq);
    put_num(b, '*', (long long)n);
    for (size_t i = 0; i < n; i++) put_status(b, lines[i]);
    reply_end(c, seq);
}

static bool keys_here(conn *c, uint64_t seq, size_t argc, const arg *argv, size_t step, bool read);

static void cmd_get(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (!keys_ok(c, seq, argc, argv, 1) || !keys_here(c, seq, argc, argv, 1, true)) return;
    slot_at(c, seq)->kind = SLOT_VALUE;
    slot_op(c, seq, WIRE_GET, &argv[1], NULL, false);
}

static void cmd_mset(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (argc % 2 == 0) {
        reply_arity(c, seq, "mset");
        return;
    }
    if (keys_ok(c, seq, argc, argv, 2) && keys_here(c, seq, argc, argv, 2, false))
        slot_ops(c, seq, SLOT_OK, WIRE_PUT, argc, argv, 2);
}

/* SET key value; the options (EX, PX, NX, XX, KEEPTTL, GET) are not
 * supported: keys do not expire and writes are not conditional. */
static void cmd_set(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (argc > 3) reply_error(c, seq, "ERR syntax error: SET options (EX, PX, NX, XX, ...) are not supported");
    else cmd_mset(c, seq, argc, argv);
}

static void cmd_del(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (keys_ok(c, seq, argc, argv, 1) && keys_here(c, seq, argc, argv, 1, false))
        slot_ops(c, seq, SLOT_COUNT, WIRE_REMOVE, argc, argv, 1);
}

static void cmd_exists(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (keys_ok(c, seq, argc, argv, 1) && keys_here(c, seq, argc, argv, 1, true))
        slot_ops(c, seq, SLOT_COUNT, WIRE_GET, argc, argv, 1);
}

/* The array header in slot seq, then one GET slot per key. */
static void cmd_mget(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (keys_ok(c, seq, argc, argv, 1) && keys_here(c, seq, argc, argv, 1, true))
        slot_ops(c, seq, SLOT_ARRAY, WIRE_GET, argc, argv, 1);
}

static void cmd_ping(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (argc > 2) reply_arity(c, seq, "ping");
    else if (argc == 2) reply_bulk(c, seq, argv[1].p, argv[1].len);
    else reply_status(c, seq, "PONG");
}

static void cmd_echo(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc;
    reply_bulk(c, seq, argv[1].p, argv[1].len);
}

/* Live keys in this node's store: with N replicas on M nodes the cluster
 * holds about DBSIZE * M / N keys. */
static void cmd_dbsize(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc, (void)argv;
    reply_int(c, seq, (long long)store_count(c->srv->n->store));
}

/* Wipes this node's store, as the UDP WIPEOUT does; [ASYNC|SYNC] ignored. */
static void cmd_flushall(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (argc > 2 || (argc == 2 && !arg_is(&argv[1], "async") && !arg_is(&argv[1], "sync")))
        reply_error(c, seq, "ERR syntax error");
    else if (node_wipe(c->srv->n) != 0)
        reply_error(c, seq, "ERR the store failed to wipe");
    else
        reply_status(c, seq, "OK");
}

/* Whether INFO's arguments argv[1..argc) ask for the section named
 * name[0..len) ("Cluster"): any case; none, default, all or everything
 * ask for every one. */
static bool info_wants(size_t argc, const arg *argv, const char *name, size_t len) {
    if (argc < 2) return true;
    for (size_t i = 1; i < argc; i++)
        if (arg_is(&argv[i], "default") || arg_is(&argv[i], "all") ||
            arg_is(&argv[i], "everything") ||
            (argv[i].len == len && strncasecmp(argv[i].p, name, len) == 0))
            return true;
    return false;
}

/* Every section, or those asked for (INFO cluster, INFO server clients), as
 * Redis 7.0 answers: the sections asked, a blank line between two, nothing
 * for a section unknown. Every section was answered whatever was asked. */
static void cmd_info(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    node *n = c->srv->n;
    unsigned long long up = (node_wall_ms(n) - n->started_ms) / 1000;
    size_t keys = store_count(n->store);
    const resp_stats *st = &c->srv->stats;
    char text[4096];
    int len = snprintf(text, sizeof text,
        "# Server\r\n"
        "redis_version:7.0.0-dht\r\n"
        "redis_mode:%s\r\n"
        "process_id:%d\r\n"
        "tcp_port:%u\r\n"
        "uptime_in_seconds:%llu\r\n"
        "uptime_in_days:%llu\r\n"
        "\r\n# Clients\r\n"
        "connected_clients:%zu\r\n"
        "maxclients:%zu\r\n"
        "dht_clients_held_bytes:%zu\r\n"
        "dht_clients_max_held_bytes:%zu\r\n"
        "\r\n# Stats\r\n"
        "total_connections_received:%llu\r\n"
        "rejected_connections:%llu\r\n"
        "dht_denied_connections:%llu\r\n"
        "dht_timed_out_connections:%llu\r\n"
        "dht_evicted_connections:%llu\r\n"
        "dht_auth_failures:%llu\r\n"
        "\r\n# Cluster\r\n"
        "cluster_enabled:%d\r\n"
        "\r\n# Keyspace\r\n"
        "db0:keys=%zu,expires=0,avg_ttl=0\r\n"
        "\r\n# DHT\r\n"
        "dht_udp_port:%u\r\n"
        "dht_members_live:%zu\r\n"
        "dht_members_known:%zu\r\n"
        "dht_members_misplaced:%zu\r\n"
        "dht_keys:%zu\r\n"
        "dht_store_engine:%s\r\n"
        "dht_store_bytes:%zu\r\n"
        "dht_max_bytes:%zu\r\n"
        "dht_store_full:%s\r\n"
        "dht_store_refused_writes:%llu\r\n"
        "dht_replicas:%u\r\n"
        "dht_read_quorum:%u\r\n"
        "dht_write_quorum:%u\r\n"
        "dht_ops_in_flight:%zu\r\n"
        "dht_resends:%llu\r\n"
        "dht_restamps:%llu\r\n"
        "dht_overloads:%llu\r\n"
        "dht_uptime_seconds:%llu\r\n",
        n->cfg.resp_cluster ? "cluster" : "standalone", (int)n->pid, n->cfg.resp_port, up, up / 86400, c->srv->clients, c->srv->maxclients,
        c->srv->held, c->srv->max_held, st->accepted, st->rejected, st->denied, st->timed_out,
        st->evicted, st->auth_failed, n->cfg.resp_cluster ? 1 : 0, keys,
        n->cfg.port, members_live(n->members), members_total(n->members),
        members_misplaced(n->members), keys,
        store_engine(n->store), store_bytes(n->store), store_max_bytes(n->store),
        store_full(n->store) ? store_full_name(store_full(n->store)) : "no",
        (unsigned long long)store_refused(n->store), n->cfg.replicas, n->cfg.read_quorum,
        n->cfg.write_quorum, repl_inflight(n->repl),
        (unsigned long long)n->stats.resent, (unsigned long long)n->stats.restamped,
        (unsigned long long)(n->stats.overload[0] + n->stats.overload[1] + n->stats.overload[2] +
                              n->stats.overload[3]), up);
    size_t all = len > 0 && (size_t)len < sizeof text ? (size_t)len : 0, out = 0;
    /* text's sections in place: "# Name\r\n" lines..., then "\r\n" before the next */
    for (size_t at = 0, end; at < all; at = end + 2) {
        const char *next = strstr(text + at, "\r\n\r\n# ");
        end = next ? (size_t)(next - text) + 2 : all; /* past the section's last line */
        const char *name = text + at + 2;
        if (!info_wants(argc, argv, name, strcspn(name, "\r"))) continue;
        if (out) memcpy(text + out, "\r\n", 2), out += 2;
        memmove(text + out, text + at, end - at);
        out += end - at;
    }
    reply_bulk(c, seq, text, out);
}

/* The state is set before the reply: a reply may close the connection (its
 * bytes take the clients past --resp-max-buffer and this one holds the
 * most), and a closed one must stay CLOSED. */
static void cmd_quit(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc, (void)argv;
    c->state = CONN_QUITTING;
    reply_status(c, seq, "OK");
}

/* AUTH password, or AUTH default password (Redis 6's form: "default" is
 * the only user). Without --requirepass the default user takes any
 * password, as Redis's nopass user. A failure leaves a client that had
 * authenticated authenticated, as in Redis. */
static void cmd_auth(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    resp_server *s = c->srv;
    if (argc > 3) {
        reply_error(c, seq, "ERR syntax error");
        return;
    }
    bool user_ok = argc == 2 || (argv[1].len == 7 && memcmp(argv[1].p, "default", 7) == 0);
    if (!s->password) {
        if (argc == 2)
            reply_error(c, seq, "ERR AUTH <password> called without any password configured "
                                "for the default user. Are you sure your configuration is correct?");
        else if (user_ok) reply_status(c, seq, "OK");
        else reply_raw(c, seq, err_wrongpass);
        return;
    }
    const arg *pass = &argv[argc - 1];
    if (resp_password_ok(s->password, s->password_len, pass->p, pass->len) && user_ok) {
        c->authed = true;
        reply_status(c, seq, "OK");
    } else {
        s->stats.auth_failed++;
        reply_raw(c, seq, err_wrongpass);
    }
}

static void cmd_command(conn *c, uint64_t seq, size_t argc, const arg *argv);

/* a as an integer, as Redis's string2ll reads one: an optional '-', then
 * 0 alone or digits not starting with 0, within a long long; else false. */
static bool arg_ll(const arg *a, long long *v) {
    const char *d = a->p, *end = a->p + a->len;
    bool neg = d < end && *d == '-';
    d += neg;
    if (d == end || (*d == '0' && (end - d > 1 || neg))) return false;
    unsigned long long u = 0, most = neg ? (1ull << 63) : (1ull << 63) - 1;
    for (; d < end; d++) {
        if (*d < '0' || *d > '9' || u > (most - (unsigned)(*d - '0')) / 10) return false;
        u = u * 10 + (unsigned)(*d - '0');
    }
    *v = neg ? (long long)(0 - u) : (long long)u;
    return true;
}

/* One database, 0, as a Redis run with databases 1; with Redis 7.0's
 * errors, in its order: not an integer, not an int, not 0 in cluster mode
 * (every other index was "out of range", whatever the argument). */
static void cmd_select(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc;
    long long id;
    if (!arg_ll(&argv[1], &id))
        reply_error(c, seq, "ERR value is not an integer or out of range");
    else if (id < -2147483648LL || id > 2147483647LL)
        reply_error(c, seq, "ERR value is out of range, value must between -2147483648 and 2147483647");
    else if (id == 0)
        reply_status(c, seq, "OK");
    else if (c->srv->n->cfg.resp_cluster)
        reply_error(c, seq, "ERR SELECT is not allowed in cluster mode");
    else
        reply_error(c, seq, "ERR DB index is out of range");
}

/* "ip:port" of a TCP handle's peer or own end into out ("?" unknown). */
static void tcp_addr(const uv_tcp_t *t, bool own, char *out, size_t len) {
    struct sockaddr_storage a;
    int alen = sizeof a;
    char ip[INET6_ADDRSTRLEN];
    int rc = own ? uv_tcp_getsockname(t, (struct sockaddr *)&a, &alen)
                 : uv_tcp_getpeername(t, (struct sockaddr *)&a, &alen);
    if (rc != 0) {
        snprintf(out, len, "?");
        return;
    }
    if (a.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a;
        uv_ip6_name(a6, ip, sizeof ip);
        snprintf(out, len, "[%s]:%u", ip, ntohs(a6->sin6_port));
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&a;
        uv_ip4_name(a4, ip, sizeof ip);
        snprintf(out, len, "%s:%u", ip, ntohs(a4->sin_port));
    }
}

/* A connection's line of CLIENT LIST and CLIENT INFO: the fields of
 * Redis 7.0's that mean something here, in its order and format. */
static void put_client_line(buf *b, const conn *c, uint64_t now) {
    char peer[64], own[64], head[512]; /* the longest second part: about 300 bytes */
    uv_os_fd_t fd = -1;
    uv_fileno((const uv_handle_t *)&c->tcp, &fd);
    tcp_addr(&c->tcp, false, peer, sizeof peer);
    tcp_addr(&c->tcp, true, own, sizeof own);
    int len = snprintf(head, sizeof head, "id=%llu addr=%s laddr=%s fd=%d name=",
                       (unsigned long long)c->id, peer, own, (int)fd);
    buf_put(b, head, len > 0 ? (size_t)len : 0);
    buf_put(b, c->name, c->name_len);
    bool own_in = c->in.p != c->srv->rbuf;
    size_t qbuf = own_in ? c->in.len : 0, qcap = own_in ? c->in.cap : 0;
    len = snprintf(head, sizeof head,
                   " age=%llu idle=%llu flags=%s db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=%zu "
                   "qbuf-free=%zu argv-mem=0 multi-mem=0 rbs=%zu rbp=%zu obl=0 oll=0 omem=%zu "
                   "tot-mem=%zu events=r%s cmd=%s user=default redir=-1 resp=2\n",
                   (unsigned long long)((now - c->born) / 1000),
                   (unsigned long long)((now - c->last_io) / 1000), c->readonly ? "r" : "N", qbuf,
                   qcap - qbuf, qcap, qbuf, c->out.len + c->writing, sizeof *c + conn_bytes(c),
                   c->writing ? "w" : "", c->last_cmd ? c->last_cmd : "NULL");
    buf_put(b, head, len <= 0 ? 0 : (size_t)len < sizeof head ? (size_t)len : sizeof head - 1);
}

/* CLIENT ID | GETNAME | SETNAME name | SETINFO attr value | INFO | LIST |
 * NO-EVICT on|off | NO-TOUCH on|off | REPLY ON | HELP, as Redis 7 answers
 * them. The rest (REPLY OFF and SKIP, KILL, PAUSE, TRACKING, ...) is refused:
 * every subcommand was once answered OK, and a client that had turned its
 * replies off took the next one for its next command's. */
static void cmd_client(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    const arg *sub = &argv[1];
    bool onoff = argc == 3 && (arg_is(&argv[2], "on") || arg_is(&argv[2], "off"));
    if (arg_is(sub, "id") && argc == 2) {
        reply_int(c, seq, (long long)c->id);
    } else if (arg_is(sub, "getname") && argc == 2) {
        if (c->name) reply_bulk(c, seq, c->name, c->name_len);
        else reply_raw(c, seq, "$-1\r\n");
    } else if (arg_is(sub, "setname") && argc == 3) {
        for (size_t i = 0; i < argv[2].len; i++)
            if (argv[2].p[i] < '!' || argv[2].p[i] > '~') {
                reply_error(c, seq, "ERR Client names cannot contain spaces, newlines or special "
                                    "characters.");
                return;
            }
        char *name = argv[2].len ? malloc(argv[2].len) : NULL;
        if (argv[2].len && !name) {
            reply_error(c, seq, "ERR out of memory");
            return;
        }
        if (name) memcpy(name, argv[2].p, argv[2].len);
        free(c->name);
        c->name = name;
        c->name_len = argv[2].len;
        reply_status(c, seq, "OK");
    } else if (arg_is(sub, "setinfo") && argc == 4) {
        if (arg_is(&argv[2], "lib-name") || arg_is(&argv[2], "lib-ver"))
            reply_status(c, seq, "OK");
        else
            reply_error(c, seq, "ERR Unrecognized option '%.*s'",
                        (int)(argv[2].len < 64 ? argv[2].len : 64), argv[2].p);
    } else if (arg_is(sub, "list") && argc > 2) {
        reply_error(c, seq, "ERR syntax error"); /* no TYPE or ID filters here */
    } else if ((arg_is(sub, "info") && argc == 2) || arg_is(sub, "list")) {
        uint64_t now = uv_now(c->tcp.loop);
        buf line = {0};
        if (arg_is(sub, "info")) put_client_line(&line, c, now);
        else
            for (const conn *o = c->srv->all; o; o = o->all_next) put_client_line(&line, o, now);
        if (line.oom) reply_error(c, seq, "ERR out of memory");
        else reply_bulk(c, seq, line.p, line.len);
        buf_free(&line);
    } else if ((arg_is(sub, "no-evict") || arg_is(sub, "no-touch")) && argc == 3) {
        if (onoff) reply_status(c, seq, "OK");
        else reply_error(c, seq, "ERR syntax error");
    } else if (arg_is(sub, "reply") && argc == 3) {
        if (arg_is(&argv[2], "on")) reply_status(c, seq, "OK");
        else reply_error(c, seq, "ERR CLIENT REPLY OFF and SKIP are not supported here");
    } else if (arg_is(sub, "help") && argc == 2) {
        static const char *help[] = {
            "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
            "ID", "    Return the ID of the current connection.",
            "GETNAME", "    Return the name of the current connection.",
            "SETNAME <name>", "    Assign the name <name> to the current connection.",
            "SETINFO <LIB-NAME|LIB-VER> <value>", "    Accepted and not kept.",
            "INFO", "    Return information about the current client connection.",
            "LIST", "    Return information about client connections.",
            "NO-EVICT|NO-TOUCH (ON|OFF)", "    Accepted; meaningless here.",
            "REPLY ON", "    Replies are always on (OFF and SKIP are not supported).",
        };
        reply_help(c, seq, help, sizeof help / sizeof help[0]);
    } else {
        reply_bad_sub(c, seq, "client",
                      "id getname setname setinfo info no-evict no-touch reply help", sub);
    }
}

/* CONFIG GET: redis-benchmark asks for save and appendonly (no
 * persistence of that kind here); anything else matches nothing. */
static void cmd_config(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    if (!arg_is(&argv[1], "get")) {
        reply_error(c, seq, "ERR unknown subcommand '%.*s'. Try CONFIG GET.",
                    (int)(argv[1].len < 64 ? argv[1].len : 64), argv[1].p);
        return;
    }
    if (argc != 3) reply_arity(c, seq, "config|get");
    else if (arg_is(&argv[2], "save")) reply_raw(c, seq, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    else if (arg_is(&argv[2], "appendonly")) reply_raw(c, seq, "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    else reply_raw(c, seq, "*0\r\n");
}

/* ---- Redis Cluster (issue 12) ------------------------------------------- */

void resp_node_id(uint32_t ip, uint16_t port, char out[RESP_NODE_ID_LEN + 1]) {
    char addr[32];
    uint8_t h[RESP_NODE_ID_LEN / 2];
    node_addr_str(ip, port, addr);
    crypto_generichash(h, sizeof h, (const uint8_t *)addr, strlen(addr), NULL, 0);
    sodium_bin2hex(out, RESP_NODE_ID_LEN + 1, h, sizeof h);
}

static bool cluster_mode(const conn *c) { return c->srv->n->cfg.resp_cluster; }

/* Member i as Redis clients reach it: its address and Redis port. */
static void member_ip(const node *n, uint32_t i, char ip[INET_ADDRSTRLEN]) {
    struct in_addr a = {.s_addr = members_at(n->members, i)->ip};
    inet_ntop(AF_INET, &a, ip, INET_ADDRSTRLEN);
}

/* In cluster mode, a command on keys argv[1], argv[1 + step], ... runs here
 * only when they share a hash slot and repl_slot_redirect says this node
 * serves it (a read on a READONLY connection: at any replica). Otherwise
 * answers slot seq with -CROSSSLOT or -MOVED slot ip:port (Redis's texts)
 * and returns false. Out of cluster mode: true. */
static bool keys_here(conn *c, uint64_t seq, size_t argc, const arg *argv, size_t step, bool read) {
    node *n = c->srv->n;
    if (!cluster_mode(c) || argc < 2) return true;
    unsigned hs = ring_key_slot(argv[1].p, argv[1].len);
    for (size_t i = 1 + step; i < argc; i += step)
        if (ring_key_slot(argv[i].p, argv[i].len) != hs) {
            reply_raw(c, seq, "-CROSSSLOT Keys in request don't hash to the same slot\r\n");
            return false;
        }
    long to = repl_slot_redirect(n, hs, read && c->readonly);
    if (to < 0) return true;
    uint16_t port = members_resp_port(n->members, (size_t)to); /* not 0: repl_slot_redirect */
    char ip[INET_ADDRSTRLEN];
    member_ip(n, (uint32_t)to, ip);
    reply_error(c, seq, "MOVED %u %s:%u", hs, ip, port);
    return false;
}

/* A run of slots with the same replicas, first the one served first. */
typedef struct slot_run {
    unsigned start, end;
    size_t k;                   /* at least 1 (redis_replicas) */
    uint32_t rep[REPL_MAX_N];
} slot_run;

/* The replicas of slot s as Redis clients are told of them
 * (repl_slot_redis_replicas: the first is where -MOVED sends the slot's
 * clients); when none has a Redis port, this node alone, which then serves
 * the slot's keys itself. Returns how many (at least 1). */
static size_t redis_replicas(node *n, unsigned s, uint32_t out[REPL_MAX_N]) {
    size_t k = repl_slot_redis_replicas(n, s, out);
    if (!k) out[k++] = 0;
    return k;
}

/* Every slot, in runs of the same replicas (redis_replicas), in slot
 * order: an array the caller frees, *count long (at least 1 slot a run;
 * with 64 points a node about 300 runs at 6 nodes, 2,300 at 40). NULL on
 * no memory. */
static slot_run *slot_runs(node *n, size_t *count) {
    size_t len = 0, cap = 1024;
    slot_run *v = malloc(cap * sizeof *v);
    if (!v) return NULL;
    for (unsigned s = 0; s < RING_SLOTS; s++) {
        uint32_t rep[REPL_MAX_N];
        size_t k = redis_replicas(n, s, rep);
        slot_run *last = len ? &v[len - 1] : NULL;
        if (last && last->k == k && memcmp(last->rep, rep, k * sizeof *rep) == 0) {
            last->end = s;
            continue;
        }
        if (len == cap) {
            slot_run *nv = realloc(v, 2 * cap * sizeof *nv);
            if (!nv) {
                free(v);
                return NULL;
            }
            v = nv;
            cap *= 2;
        }
        v[len] = (slot_run){.start = s, .end = s, .k = k};
        memcpy(v[len].rep, rep, k * sizeof *rep);
        len++;
    }
    *count = len;
    return v;
}

/* A node in CLUSTER SLOTS: ip, Redis port, node ID. */
static void put_slots_node(buf *b, node *n, uint32_t i) {
    const member *m = members_at(n->members, i);
    char ip[INET_ADDRSTRLEN], id[RESP_NODE_ID_LEN + 1];
    member_ip(n, i, ip);
    resp_node_id(m->ip, m->port, id);
    put_num(b, '*', 3);
    put_bulk(b, ip, strlen(ip));
    put_num(b, ':', members_resp_port(n->members, i));
    put_bulk(b, id, RESP_NODE_ID_LEN);
}

/* runs in the order CLUSTER SLOTS lists them: an array the caller frees,
 * of count runs, or NULL on no memory.
 *
 * A node here is the first of some slots and a replica of others, while a
 * Redis Cluster node is one or the other, and redis-py's RedisCluster
 * takes a node for what the reply first lists it as (the others only read
 * a slot's replicas from its run): in slot order, most nodes first show as
 * replicas, so it knew one primary of six, sent FLUSHALL, DBSIZE and KEYS
 * to that one alone and failed choosing a default primary once it died
 * (IndexError). So the reply starts with a run of each node that is first
 * of one, whose replicas were listed before it; where no run is such (the
 * first one or two), one of the node's runs lists its replicas listed
 * before and not the others (clients then read those slots' other copies
 * nowhere but through the node first, which serves any read); then every
 * other run, in slot order. CLUSTER NODES already calls every node a
 * master. */
static slot_run *slots_listed(node *n, const slot_run *runs, size_t count) {
    size_t nm = members_total(n->members), nref = 0, out = 0, nready = 0;
    for (size_t r = 0; r < count; r++) nref += runs[r].k - 1;
    slot_run *v = malloc((count + 1) * sizeof *v);
    bool *listed = calloc(nm + 1, sizeof *listed), *done = calloc(count + 1, sizeof *done);
    uint8_t *miss = malloc(count + 1);          /* run r's replicas not listed yet */
    size_t *at = calloc(nm + 2, sizeof *at);    /* the runs member m is a replica of: */
    uint32_t *ref = malloc((nref + 1) * sizeof *ref), /* ref[at[m] .. at[m + 1]) */
        *ready = malloc((count + 1) * sizeof *ready); /* runs whose replicas are all listed */
    slot_run *ok = NULL;
    if (!v || !listed || !done || !miss || !at || !ref || !ready) goto end;
    for (size_t r = 0; r < count; r++)
        for (size_t i = 1; i < runs[r].k; i++) at[runs[r].rep[i] + 2]++;
    for (size_t m = 0; m < nm; m++) at[m + 2] += at[m + 1];
    for (size_t r = 0; r < count; r++) {
        miss[r] = (uint8_t)(runs[r].k - 1);
        for (size_t i = 1; i < runs[r].k; i++) ref[at[runs[r].rep[i] + 1]++] = (uint32_t)r;
        if (!miss[r]) ready[nready++] = (uint32_t)r;
    }
    for (;;) { /* a run of a node not listed yet whose replicas all are */
        size_t best = count;
        while (nready && best == count) {
            size_t r = ready[--nready];
            if (!listed[runs[r].rep[0]]) best = r;
        }
        if (best == count) /* none ready: one missing the fewest (at first) */
            for (size_t r = 0, fewest = REPL_MAX_N; r < count; r++)
                if (!listed[runs[r].rep[0]] && miss[r] < fewest)
                    best = r, fewest = miss[r];
        if (best == count) break;
        slot_run *w = &v[out++];
        *w = runs[best];
        w->k = 0;
        for (size_t i = 0; i < runs[best].k; i++)
            if (i == 0 || listed[runs[best].rep[i]]) w->rep[w->k++] = runs[best].rep[i];
        done[best] = true;
        uint32_t m = runs[best].rep[0];
        listed[m] = true;
        for (size_t j = at[m]; j < at[m + 1]; j++)
            if (--miss[ref[j]] == 0) ready[nready++] = ref[j];
    }
    for (size_t r = 0; r < count; r++)
        if (!done[r]) v[out++] = runs[r];
    ok = v, v = NULL;
end:
    free(v), free(listed), free(done), free(miss), free(at), free(ref), free(ready);
    return ok;
}

static void cluster_slots(conn *c, uint64_t seq) {
    node *n = c->srv->n;
    size_t count;
    slot_run *runs = slot_runs(n, &count), *listed = runs ? slots_listed(n, runs, count) : NULL;
    free(runs);
    if (!listed) {
        reply_error(c, seq, "ERR out of memory");
        return;
    }
    buf *b = reply_begin(c, seq);
    put_num(b, '*', (long long)count);
    for (size_t r = 0; r < count; r++) {
        put_num(b, '*', 2 + (long long)listed[r].k);
        put_num(b, ':', listed[r].start);
        put_num(b, ':', listed[r].end);
        for (size_t i = 0; i < listed[r].k; i++) put_slots_node(b, n, listed[r].rep[i]);
    }
    reply_end(c, seq);
    free(listed);
}

static bool same_replicas(const slot_run *x, const slot_run *y) {
    return x->k == y->k && memcmp(x->rep, y->rep, x->k * sizeof *x->rep) == 0;
}

static int run_cmp(const void *a, const void *b) {
    const slot_run *x = a, *y = b;
    if (x->k != y->k) return x->k < y->k ? -1 : 1;
    int d = memcmp(x->rep, y->rep, x->k * sizeof *x->rep);
    if (d) return d;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* A node in CLUSTER SHARDS: a map (a flat array in RESP2) of Redis 7's
 * fields. */
static void put_shard_node(buf *b, node *n, uint32_t i, bool master) {
    const member *m = members_at(n->members, i);
    char ip[INET_ADDRSTRLEN], id[RESP_NODE_ID_LEN + 1];
    member_ip(n, i, ip);
    resp_node_id(m->ip, m->port, id);
    const char *health = m->state == MEMBER_ALIVE ? "online" : "failed";
    put_num(b, '*', 14);
    put_bulk(b, "id", 2);
    put_bulk(b, id, RESP_NODE_ID_LEN);
    put_bulk(b, "port", 4);
    put_num(b, ':', members_resp_port(n->members, i));
    put_bulk(b, "ip", 2);
    put_bulk(b, ip, strlen(ip));
    put_bulk(b, "endpoint", 8);
    put_bulk(b, ip, strlen(ip));
    put_bulk(b, "role", 4);
    put_bulk(b, master ? "master" : "replica", master ? 6 : 7);
    put_bulk(b, "replication-offset", 18);
    put_num(b, ':', 0);
    put_bulk(b, "health", 6);
    put_bulk(b, health, strlen(health));
}

/* A shard is a set of replicas, first the one served first: the slots
 * they serve and the nodes. */
static void cluster_shards(conn *c, uint64_t seq) {
    node *n = c->srv->n;
    size_t count;
    slot_run *runs = slot_runs(n, &count);
    if (!runs) {
        reply_error(c, seq, "ERR out of memory");
        return;
    }
    qsort(runs, count, sizeof *runs, run_cmp); /* a shard's runs together, in slot order */
    size_t shards = 0;
    for (size_t r = 0; r < count; r++) shards += r == 0 || !same_replicas(&runs[r - 1], &runs[r]);
    buf *b = reply_begin(c, seq);
    put_num(b, '*', (long long)shards);
    for (size_t r = 0, end; r < count; r = end) {
        for (end = r + 1; end < count && same_replicas(&runs[r], &runs[end]); end++) {}
        put_num(b, '*', 4);
        put_bulk(b, "slots", 5);
        put_num(b, '*', 2 * (long long)(end - r));
        for (size_t q = r; q < end; q++) {
            put_num(b, ':', runs[q].start);
            put_num(b, ':', runs[q].end);
        }
        put_bulk(b, "nodes", 5);
        put_num(b, '*', (long long)runs[r].k);
        for (size_t i = 0; i < runs[r].k; i++) put_shard_node(b, n, runs[r].rep[i], i == 0);
    }
    reply_end(c, seq);
    free(runs);
}

/* One line a known member: ID, ip:redis-port@udp-port, flags (noaddr, as
 * Redis says it, for a member without a Redis port: port 0), no master
 * (every node serves slots first), times and epochs 0, link state, and
 * the slots it is served first for, as ranges. */
static void cluster_nodes(conn *c, uint64_t seq) {
    node *n = c->srv->n;
    size_t count;
    slot_run *runs = slot_runs(n, &count);
    buf text = {0};
    if (!runs) {
        reply_error(c, seq, "ERR out of memory");
        return;
    }
    for (size_t i = 0; i < members_total(n->members); i++) {
        const member *m = members_at(n->members, i);
        if (!m->port || m->state == MEMBER_GONE) continue;
        char ip[INET_ADDRSTRLEN], id[RESP_NODE_ID_LEN + 1], line[160];
        member_ip(n, (uint32_t)i, ip);
        resp_node_id(m->ip, m->port, id);
        const char *state = m->state == MEMBER_ALIVE ? "" : m->state == MEMBER_SUSPECT ? ",fail?" : ",fail";
        uint16_t port = members_resp_port(n->members, i);
        int len = snprintf(line, sizeof line, "%s %s:%u@%u %smaster%s%s - 0 0 0 %s", id, ip,
                           port, m->port, i == 0 ? "myself," : "", state, port ? "" : ",noaddr",
                           m->state == MEMBER_DEAD ? "disconnected" : "connected");
        buf_put(&text, line, (size_t)len);
        for (size_t r = 0; r < count;) {
            if (runs[r].rep[0] != i) {
                r++;
                continue;
            }
            size_t e = r;   /* runs of this node's, back to back */
            while (e + 1 < count && runs[e + 1].rep[0] == i) e++;
            len = runs[r].start == runs[e].end
                      ? snprintf(line, sizeof line, " %u", runs[r].start)
                      : snprintf(line, sizeof line, " %u-%u", runs[r].start, runs[e].end);
            buf_put(&text, line, (size_t)len);
            r = e + 1;
        }
        buf_put(&text, "\n", 1);
    }
    free(runs);
    if (text.oom) reply_error(c, seq, "ERR out of memory");
    else reply_bulk(c, seq, text.p, text.len);
    buf_free(&text);
}

static void cluster_info(conn *c, uint64_t seq) {
    node *n = c->srv->n;
    size_t ok = 0, pfail = 0, size = 0;
    for (size_t i = 0; i < members_total(n->members); i++) size += members_slots(n->members, i) > 0;
    for (unsigned s = 0; s < RING_SLOTS; s++) {
        uint32_t rep[REPL_MAX_N];
        size_t k = repl_slot_replicas(n, s, rep);
        if (k && members_at(n->members, rep[0])->state == MEMBER_ALIVE) ok++;
        else pfail++;
    }
    char text[1024];
    int len = snprintf(text, sizeof text,
        "cluster_state:ok\r\n"
        "cluster_slots_assigned:%d\r\n"
        "cluster_slots_ok:%zu\r\n"
        "cluster_slots_pfail:%zu\r\n"
        "cluster_slots_fail:0\r\n"
        "cluster_known_nodes:%zu\r\n"
        "cluster_size:%zu\r\n"
        "cluster_current_epoch:0\r\n"
        "cluster_my_epoch:0\r\n"
        "cluster_stats_messages_sent:0\r\n"
        "cluster_stats_messages_received:0\r\n"
        "total_cluster_links_buffer_limit_exceeded:0\r\n"
        "dht_resp_cluster:%d\r\n"
        "dht_members_live:%zu\r\n"
        "dht_members_misplaced:%zu\r\n"
        "dht_replicas:%u\r\n"
        "dht_slots_settling:%zu\r\n"
        "dht_settle_ms:%llu\r\n",
        RING_SLOTS, ok, pfail, members_known(n->members), size, n->cfg.resp_cluster ? 1 : 0,
        members_live(n->members), members_misplaced(n->members), n->cfg.replicas,
        members_slots_settling(n->members), (unsigned long long)members_settle_ms(n->members));
    reply_bulk(c, seq, text, len > 0 && (size_t)len < sizeof text ? (size_t)len : 0);
}

/* CLUSTER SLOTS | SHARDS | NODES | INFO | KEYSLOT key | MYID | HELP: the
 * hash slots and who serves them first, as this node sees the ring now
 * (a membership change shows at once). Answered in and out of cluster
 * mode. */
static void cmd_cluster(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    node *n = c->srv->n;
    const arg *sub = &argv[1];
    if (arg_is(sub, "slots") && argc == 2) {
        cluster_slots(c, seq);
    } else if (arg_is(sub, "shards") && argc == 2) {
        cluster_shards(c, seq);
    } else if (arg_is(sub, "nodes") && argc == 2) {
        cluster_nodes(c, seq);
    } else if (arg_is(sub, "info") && argc == 2) {
        cluster_info(c, seq);
    } else if (arg_is(sub, "keyslot") && argc == 3) {
        reply_int(c, seq, ring_key_slot(argv[2].p, argv[2].len));
    } else if (arg_is(sub, "myid") && argc == 2) {
        char id[RESP_NODE_ID_LEN + 1];
        resp_node_id(n->self.sin_addr.s_addr, n->cfg.port, id);
        reply_bulk(c, seq, id, RESP_NODE_ID_LEN);
    } else if (arg_is(sub, "help") && argc == 2) {
        static const char *help[] = {
            "CLUSTER <subcommand> [<arg> ...]. Subcommands are:",
            "SLOTS", "    Slot ranges and the nodes serving them, the first served first.",
            "SHARDS", "    Sets of replicas with their slots.",
            "NODES", "    The members, each with the slots it is served first for.",
            "INFO", "    Slots served and members known.",
            "KEYSLOT <key>", "    The hash slot of <key>.",
            "MYID", "    This node's ID.",
        };
        reply_help(c, seq, help, sizeof help / sizeof help[0]);
    } else {
        reply_bad_sub(c, seq, "cluster", "slots shards nodes info keyslot myid help", sub);
    }
}

/* READONLY: on this connection reads of a slot may be served by any of its
 * replicas, not only the first (cluster mode); READWRITE: not any more.
 * ASKING: there are no slot migrations to ask through; OK. */
static void cmd_readonly(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc, (void)argv;
    c->readonly = true;
    reply_status(c, seq, "OK");
}

static void cmd_readwrite(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc, (void)argv;
    c->readonly = false;
    reply_status(c, seq, "OK");
}

static void cmd_asking(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    (void)argc, (void)argv;
    reply_status(c, seq, "OK");
}

#define INFO(f, a, t) .flags = f, .acl = a, .tips = t
#define KEYS(f, l, s, kf) .first = f, .last = l, .step = s, .key_flags = kf
#define SUBS(a) .subs = a, .nsubs = sizeof a / sizeof a[0]

/* The subcommands each answers as Redis does (CLIENT answers OK to the
 * others, CONFIG GET one parameter at a time). */
static const command cluster_subs[] = {
    {"cluster|slots", 2, NULL, INFO("stale", "@slow", "nondeterministic_output")},
    {"cluster|shards", 2, NULL, INFO("stale", "@slow", "nondeterministic_output")},
    {"cluster|nodes", 2, NULL, INFO("stale", "@slow", "nondeterministic_output")},
    {"cluster|info", 2, NULL, INFO("stale", "@slow", "nondeterministic_output")},
    {"cluster|keyslot", 3, NULL, INFO("stale", "@slow", "")},
    {"cluster|myid", 2, NULL, INFO("stale", "@slow", "")},
    {"cluster|help", 2, NULL, INFO("loading stale", "@slow", "")},
};
static const command command_subs[] = {
    {"command|count", 2, NULL, INFO("loading stale", "@slow @connection", "")},
    {"command|list", -2, NULL, INFO("loading stale", "@slow @connection", "nondeterministic_output_order")},
    {"command|info", -2, NULL, INFO("loading stale", "@slow @connection", "nondeterministic_output_order")},
    {"command|docs", -2, NULL, INFO("loading stale", "@slow @connection", "nondeterministic_output_order")},
    {"command|getkeys", -4, NULL, INFO("loading stale", "@slow @connection", "")},
    {"command|getkeysandflags", -4, NULL, INFO("loading stale", "@slow @connection", "")},
    {"command|help", 2, NULL, INFO("loading stale", "@slow @connection", "")},
};
static const command client_subs[] = {
    {"client|getname", 2, NULL, INFO("noscript loading stale", "@slow @connection", "")},
    {"client|help", 2, NULL, INFO("loading stale", "@slow @connection", "")},
    {"client|id", 2, NULL, INFO("noscript loading stale", "@slow @connection", "")},
    {"client|info", 2, NULL, INFO("noscript loading stale", "@slow @connection", "nondeterministic_output")},
    {"client|list", -2, NULL, INFO("admin noscript loading stale", "@admin @slow @dangerous @connection",
     "nondeterministic_output")},
    {"client|no-evict", 3, NULL, INFO("admin noscript loading stale", "@admin @slow @dangerous @connection", "")},
    {"client|reply", 3, NULL, INFO("noscript loading stale", "@slow @connection", "")},
    {"client|setname", 3, NULL, INFO("noscript loading stale", "@slow @connection", "")},
};
static const command config_subs[] = {
    {"config|get", 3, NULL, INFO("admin noscript loading stale", "@admin @slow @dangerous", "")},
};

/* Flags, categories, tips and keys as Redis 7.0 lists them, but SET's keys
 * and DBSIZE's tips: Redis's SET reads too (its GET option), this one only
 * writes; Redis's DBSIZE is summed over the shards, this one counts the
 * replicas a node holds (a sum would count each key N times). */
static const command commands[] = {
    {"get", 2, cmd_get, INFO("readonly fast", "@read @string @fast", ""), KEYS(1, 1, 1, "RO access")},
    {"set", -3, cmd_set, INFO("write denyoom", "@write @string @slow", ""), KEYS(1, 1, 1, "OW update")},
    {"del", -2, cmd_del, INFO("write", "@keyspace @write @slow",
     "request_policy:multi_shard response_policy:agg_sum"), KEYS(1, -1, 1, "RM delete")},
    {"exists", -2, cmd_exists, INFO("readonly fast", "@keyspace @read @fast",
     "request_policy:multi_shard response_policy:agg_sum"), KEYS(1, -1, 1, "RO")},
    {"mget", -2, cmd_mget, INFO("readonly fast", "@read @string @fast", "request_policy:multi_shard"),
     KEYS(1, -1, 1, "RO access")},
    {"mset", -3, cmd_mset, INFO("write denyoom", "@write @string @slow",
     "request_policy:multi_shard response_policy:all_succeeded"), KEYS(1, -1, 2, "OW update")},
    {"ping", -1, cmd_ping, INFO("fast", "@fast @connection",
     "request_policy:all_shards response_policy:all_succeeded")},
    {"echo", 2, cmd_echo, INFO("loading stale fast", "@fast @connection", "")},
    {"dbsize", 1, cmd_dbsize, INFO("readonly fast", "@keyspace @read @fast", "")},
    {"flushall", -1, cmd_flushall, INFO("write", "@keyspace @write @slow @dangerous",
     "request_policy:all_shards response_policy:all_succeeded")},
    {"info", -1, cmd_info, INFO("loading stale", "@slow @dangerous",
     "nondeterministic_output request_policy:all_shards response_policy:special")},
    {"quit", -1, cmd_quit, INFO("noscript loading stale fast no_auth allow_busy", "@fast @connection", "")},
    {"command", -1, cmd_command, INFO("loading stale", "@slow @connection", "nondeterministic_output_order"),
     SUBS(command_subs)},
    {"select", 2, cmd_select, INFO("loading stale fast", "@fast @connection", "")},
    {"client", -2, cmd_client, INFO("", "@slow", ""), SUBS(client_subs)},
    {"config", -2, cmd_config, INFO("", "@slow", ""), SUBS(config_subs)},
    {"auth", -2, cmd_auth, INFO("noscript loading stale fast no_auth allow_busy", "@fast @connection", "")},
    {"cluster", -2, cmd_cluster, INFO("", "@slow", ""), SUBS(cluster_subs)},
    {"readonly", 1, cmd_readonly, INFO("loading stale fast", "@fast @connection", "")},
    {"readwrite", 1, cmd_readwrite, INFO("loading stale fast", "@fast @connection", "")},
    {"asking", 1, cmd_asking, INFO("fast", "@fast @connection", "")},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ---- COMMAND ------------------------------------------------------------ */

/* The words of list (space-separated) as an array of statuses, or of bulk
 * strings. */
static void put_words(buf *b, const char *list, bool status) {
    size_t n = 0;
    for (const char *p = list; *p; p++)
        if (*p != ' ' && (p == list || p[-1] == ' ')) n++;
    put_num(b, '*', (long long)n);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, " ");
        if (len && status) buf_put(b, "+", 1), buf_put(b, p, len), buf_put(b, "\r\n", 2);
        else if (len) put_bulk(b, p, len);
        p += len;
        p += *p == ' ';
    }
}

static void put_cstr(buf *b, const char *s) { put_bulk(b, s, strlen(s)); }

/* A command's key specification (Redis 7), from its key positions: the
 * keys begin at index first and run to lastkey (relative to it; negative:
 * from the end) every keystep. */
static void put_key_specs(buf *b, const command *cmd) {
    if (!cmd->step) {
        put_num(b, '*', 0);
        return;
    }
    put_num(b, '*', 1);
    put_num(b, '*', 6);
    put_cstr(b, "flags");
    put_words(b, cmd->key_flags, true);
    put_cstr(b, "begin_search");
    put_num(b, '*', 4);
    put_cstr(b, "type"), put_cstr(b, "index");
    put_cstr(b, "spec");
    put_num(b, '*', 2);
    put_cstr(b, "index"), put_num(b, ':', cmd->first);
    put_cstr(b, "find_keys");
    put_num(b, '*', 4);
    put_cstr(b, "type"), put_cstr(b, "range");
    put_cstr(b, "spec");
    put_num(b, '*', 6);
    put_cstr(b, "lastkey"), put_num(b, ':', cmd->last < 0 ? cmd->last : cmd->last - cmd->first);
    put_cstr(b, "keystep"), put_num(b, ':', cmd->step);
    put_cstr(b, "limit"), put_num(b, ':', 0);
}

/* One command as COMMAND INFO gives it: name, arity, flags, first key,
 * last key, step, ACL categories, tips, key specifications, subcommands. */
static void put_command_info(buf *b, const command *cmd) {
    put_num(b, '*', 10);
    put_cstr(b, cmd->name);
    put_num(b, ':', cmd->arity);
    put_words(b, cmd->flags, true);
    put_num(b, ':', cmd->first);
    put_num(b, ':', cmd->last);
    put_num(b, ':', cmd->step);
    put_words(b, cmd->acl, true);
    put_words(b, cmd->tips, false);
    put_key_specs(b, cmd);
    put_num(b, '*', (long long)cmd->nsubs);
    for (size_t i = 0; i < cmd->nsubs; i++) put_command_info(b, &cmd->subs[i]);
}

/* The command named p[0..len) (any case), or NULL. */
static const command *command_find(const char *p, size_t len) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strlen(commands[i].name) == len && strncasecmp(commands[i].name, p, len) == 0)
            return &commands[i];
    return NULL;
}

/* top's subcommand named p[0..len) ("slots" of "cluster|slots"), or NULL. */
static const command *subcommand_find(const command *top, const char *p, size_t len) {
    size_t skip = strlen(top->name) + 1;
    for (size_t j = 0; j < top->nsubs; j++)
        if (strlen(top->subs[j].name + skip) == len &&
            strncasecmp(top->subs[j].name + skip, p, len) == 0)
            return &top->subs[j];
    return NULL;
}

/* The command named a ("get"), or a subcommand ("cluster|slots"); NULL for
 * none. */
static const command *command_named(const arg *a) {
    const char *bar = memchr(a->p, '|', a->len);
    if (!bar) return command_find(a->p, a->len);
    const command *top = command_find(a->p, (size_t)(bar - a->p));
    return top ? subcommand_find(top, bar + 1, a->len - (size_t)(bar + 1 - a->p)) : NULL;
}

static bool arity_ok(const command *cmd, size_t argc) {
    return cmd->arity > 0 ? argc == (size_t)cmd->arity : argc >= (size_t)-cmd->arity;
}

/* COMMAND GETKEYS | GETKEYSANDFLAGS <command> <arg>...: the keys of the
 * command argv[0..argc) (a container's by its subcommand, argv[1]), each
 * with its key flags when flags; errors as Redis's, in its order. */
static void command_getkeys(conn *c, uint64_t seq, size_t argc, const arg *argv, bool flags) {
    const command *cmd = command_find(argv[0].p, argv[0].len);
    if (cmd && cmd->nsubs) cmd = subcommand_find(cmd, argv[1].p, argv[1].len);
    if (!cmd) {
        reply_error(c, seq, "ERR Invalid command specified");
        return;
    }
    if (!cmd->step) {
        reply_error(c, seq, "ERR The command has no key arguments");
        return;
    }
    if (!arity_ok(cmd, argc)) {
        reply_error(c, seq, "ERR Invalid number of arguments specified for command");
        return;
    }
    size_t last = cmd->last < 0 ? argc - (size_t)-cmd->last : (size_t)cmd->last, n = 0;
    for (size_t i = (size_t)cmd->first; i <= last && i < argc; i += (size_t)cmd->step) n++;
    buf *b = reply_begin(c, seq);
    put_num(b, '*', (long long)n);
    for (size_t i = (size_t)cmd->first; i <= last && i < argc; i += (size_t)cmd->step) {
        if (flags) put_num(b, '*', 2);
        put_bulk(b, argv[i].p, argv[i].len);
        if (flags) put_words(b, cmd->key_flags, true);
    }
    reply_end(c, seq);
}

/* COMMAND [COUNT | LIST | INFO [name...] | DOCS | GETKEYS | GETKEYSANDFLAGS
 * | HELP]. DOCS answers an empty array: redis-cli asks for it on start and
 * does without. */
static void cmd_command(conn *c, uint64_t seq, size_t argc, const arg *argv) {
    const arg *sub = argc > 1 ? &argv[1] : NULL;
    const command *subcmd = sub ? subcommand_find(command_find(argv[0].p, argv[0].len), sub->p, sub->len)
                                : NULL;
    if (sub && !subcmd) {
        reply_error(c, seq, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.",
                    (int)(sub->len < 64 ? sub->len : 64), sub->p);
        return;
    }
    if (subcmd && !arity_ok(subcmd, argc)) {
        reply_arity(c, seq, subcmd->name);
        return;
    }
    buf *b;
    if (!sub || (arg_is(sub, "info") && argc == 2)) {
        b = reply_begin(c, seq);
        put_num(b, '*', (long long)NCOMMANDS);
        for (size_t i = 0; i < NCOMMANDS; i++) put_command_info(b, &commands[i]);
        reply_end(c, seq);
    } else if (arg_is(sub, "info")) {
        b = reply_begin(c, seq);
        put_num(b, '*', (long long)(argc - 2));
        for (size_t i = 2; i < argc; i++) {
            const command *cmd = command_named(&argv[i]);
            if (cmd) put_command_info(b, cmd);
            else put_num(b, '*', -1);
        }
        reply_end(c, seq);
    } else if (arg_is(sub, "count")) {
        reply_int(c, seq, (long long)NCOMMANDS);
    } else if (arg_is(sub, "list")) {
        if (argc > 2) {
            reply_error(c, seq, "ERR syntax error: COMMAND LIST takes no filter here");
            return;
        }
        b = reply_begin(c, seq);
        put_num(b, '*', (long long)NCOMMANDS);
        for (size_t i = 0; i < NCOMMANDS; i++) put_cstr(b, commands[i].name);
        reply_end(c, seq);
    } else if (arg_is(sub, "docs")) {
        reply_raw(c, seq, "*0\r\n");
    } else if (arg_is(sub, "getkeys") || arg_is(sub, "getkeysandflags")) {
        command_getkeys(c, seq, argc - 2, argv + 2, arg_is(sub, "getkeysandflags"));
    } else {
        static const char *help[] = {
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)", "    Return details about all commands.",
            "COUNT", "    Return the total number of commands.",
            "LIST", "    Return a list of all commands.",
            "INFO [<command-name> ...]", "    Return details about the named commands (all of them without a name).",
            "DOCS [<command-name> ...]", "    An empty array: no documentation here.",
            "GETKEYS <full-command>", "    Return the keys from a full command.",
            "GETKEYSANDFLAGS <full-command>", "    Return the keys and their flags from a full command.",
        };
        reply_help(c, seq, help, sizeof help / sizeof help[0]);
    }
}

/* Answers one command (argv[0] its name) in a new slot. */
static void run_command(conn *c, size_t argc, const arg *argv) {
    uint64_t seq;
    if (slots_add(c, 1, &seq) != 0) {
        conn_close(c);
        return;
    }
    const command *cmd = command_find(argv[0].p, argv[0].len);
    if (!cmd) {
        char args[160];
        size_t len = 0;
        args[0] = 0;
        for (size_t i = 1; i < argc && len < 128; i++) {
            size_t room = 128 - len;
            len += (size_t)snprintf(args + len, sizeof args - len, "'%.*s' ",
                                    (int)(argv[i].len < room ? argv[i].len : room), argv[i].p);
        }
        reply_error(c, seq, "ERR unknown command '%.*s', with args beginning with: %s",
                    (int)(argv[0].len < 128 ? argv[0].len : 128), argv[0].p, args);
    } else if (!arity_ok(cmd, argc)) {
        reply_arity(c, seq, cmd->name);
    } else if (c->srv->password && !c->authed && cmd->fn != cmd_auth && cmd->fn != cmd_quit) {
        reply_raw(c, seq, err_noauth);   /* after the name and arity checks, as Redis */
    } else {
        const command *sub =
            cmd->nsubs && argc > 1 ? subcommand_find(cmd, argv[1].p, argv[1].len) : NULL;
        c->last_cmd = sub ? sub->name : cmd->name;
        cmd->fn(c, seq, argc, argv);
    }
}

/* ---- parsing (see resp.h) ---------------------------------------------- */

enum parse_state { PARSE_START, PARSE_BULK_LEN, PARSE_BULK_BODY };

void resp_parser_init(resp_parser *p) { memset(p, 0, sizeof *p); }

void resp_parser_free(resp_parser *p) {
    free(p->spans);
    free(p->argv);
    free(p->inl);
    resp_parser_init(p);
}

void resp_parser_shrink(resp_parser *p, size_t max) {
    if (p->state != PARSE_START) return;
    free(p->inl);   /* unquoted arguments: an inline command's, now run */
    p->inl = NULL;
    p->inl_len = p->inl_cap = 0;
    if (p->cap <= max) return;
    free(p->spans);
    free(p->argv);
    p->spans = NULL;
    p->argv = NULL;
    p->cap = 0;
}

/* Records why and returns RESP_EPROTO. */
__attribute__((format(printf, 2, 3)))
static int parse_error(resp_parser *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return RESP_EPROTO;
}

static int span_add(resp_parser *p, size_t off, size_t len, bool unquoted) {
    if (p->argc == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        void *s = realloc(p->spans, cap * sizeof *p->spans);
        if (!s) return RESP_ENOMEM;
        p->spans = s;
        resp_arg *a = realloc(p->argv, cap * sizeof *a);
        if (!a) return RESP_ENOMEM;
        p->argv = a;
        p->cap = cap;
    }
    p->spans[p->argc].off = off;
    p->spans[p->argc].len = len;
    p->spans[p->argc].unquoted = unquoted;
    p->argc++;
    return 0;
}

/* Appends byte ch to the unquoted arguments of an inline command. */
static int inl_put(resp_parser *p, char ch) {
    if (p->inl_len == p->inl_cap) {
        size_t cap = p->inl_cap ? p->inl_cap * 2 : 64;
        char *q = realloc(p->inl, cap);
        if (!q) return RESP_ENOMEM;
        p->inl = q;
        p->inl_cap = cap;
    }
    p->inl[p->inl_len++] = ch;
    return 0;
}

/* isspace's blanks, which sdssplitargs skips between arguments. */
static bool inline_blank(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\v' || ch == '\f' || ch == '\r';
}

static bool hex_digit(char ch) { return isxdigit((unsigned char)ch); }

static int hex_value(char ch) {
    return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
}

/* The argument of an inline line that starts at *q, quotes and escapes in
 * it, before e: unquoted into p->inl and added, *q past it; as Redis's
 * sdssplitargs does (a "double-quoted" part takes \n \r \t \b \a, \xHH and
 * \ before any other byte as that byte; a 'single-quoted' one \' alone;
 * a closing quote must end the argument). RESP_EPROTO for an unbalanced
 * quote, Redis's error. */
static int inline_quoted(resp_parser *p, const char **q, const char *e) {
    const char *s = *q;
    size_t start = p->inl_len;
    char quote = 0;
    int rc = 0;
    if (!p->inl && (p->inl = malloc(p->inl_cap = 64)) == NULL) { /* "" points somewhere too */
        p->inl_cap = 0;
        return RESP_ENOMEM;
    }
    while (rc == 0) {
        if (s == e) {
            if (quote) return parse_error(p, "unbalanced quotes in request");
            break;
        }
        char ch = *s;
        if (!quote) {
            if (ch == ' ' || ch == '\t' || ch == '\r') break;
            if (ch == '"' || ch == '\'') quote = ch;
            else rc = inl_put(p, ch);
            s++;
        } else if (ch == quote) {
            if (s + 1 < e && !inline_blank(s[1])) return parse_error(p, "unbalanced quotes in request");
            s++;
            break;
        } else if (quote == '\'' && ch == '\\' && s + 1 < e && s[1] == '\'') {
            rc = inl_put(p, '\'');
            s += 2;
        } else if (quote == '"' && ch == '\\' && e - s >= 4 && s[1] == 'x' && hex_digit(s[2]) &&
                   hex_digit(s[3])) {
            rc = inl_put(p, (char)(hex_value(s[2]) * 16 + hex_value(s[3])));
            s += 4;
        } else if (quote == '"' && ch == '\\' && s + 1 < e) {
            char c2 = s[1];
            rc = inl_put(p, c2 == 'n' ? '\n' : c2 == 'r' ? '\r' : c2 == 't' ? '\t'
                           : c2 == 'b' ? '\b' : c2 == 'a' ? '\a' : c2);
            s += 2;
        } else {
            rc = inl_put(p, ch);
            s++;
        }
    }
    if (rc != 0) return rc;
    *q = s;
    return span_add(p, start, p->inl_len - start, true);
}

/* Reads the "<type><integer>\r\n" line at in + p->pos. 1 with *v (and
 * p->pos past the line), 0 when the line is not all here, -1 when the
 * integer is malformed. */
static int parse_len(resp_parser *p, const char *in, size_t len, long long *v) {
    const char *s = in + p->pos + 1, *end = in + len;
    const char *cr = memchr(s, '\r', (size_t)(end - s));
    if (!cr || cr + 1 >= end) return 0;
    bool neg = s < cr && *s == '-';
    const char *d = s + neg;
    if (d == cr || cr - d > 18) return -1;
    long long x = 0;
    for (; d < cr; d++) {
        if (*d < '0' || *d > '9') return -1;
        x = x * 10 + (*d - '0');
    }
    *v = neg ? -x : x;
    p->pos = (size_t)(cr + 2 - in);   /* like Redis, the LF is not checked */
    return 1;
}

/* An inline command: a line of words split as Redis splits it
 * (sdssplitargs): quotes were bytes of the words here, so that over telnet
 * SET k "a b" was a SET of four arguments and SET k "x" stored the quotes.
 * A word without quotes stays in the input; one with them is unquoted
 * into p->inl. */
static int parse_inline(resp_parser *p, const char *in, size_t len) {
    const char *nl = memchr(in, '\n', len);
    if (!nl) return len > RESP_MAX_LINE ? parse_error(p, "too big inline request") : 0;
    const char *e = nl > in && nl[-1] == '\r' ? nl - 1 : nl;
    p->argc = 0;
    p->inl_len = 0;
    for (const char *q = in; q < e;) {
        while (q < e && inline_blank(*q)) q++;
        if (q == e) break;
        const char *w = q;
        while (q < e && *q != ' ' && *q != '\t' && *q != '\r' && *q != '"' && *q != '\'') q++;
        int rc;
        if (q < e && (*q == '"' || *q == '\'')) {
            q = w;
            rc = inline_quoted(p, &q, e);
        } else {
            rc = span_add(p, (size_t)(w - in), (size_t)(q - w), false);
        }
        if (rc != 0) return rc;
    }
    p->pos = (size_t)(nl + 1 - in);
    return 1;
}

/* The parsing proper; resp_parse adds what a whole command returns. */
static int parse_command(resp_parser *p, const char *in, size_t len) {
    long long v;
    int rc;
    for (;;) {
        size_t avail = len - p->pos;
        if (!avail) return 0;
        const char *s = in + p->pos;
        switch (p->state) {
        case PARSE_START:
            if (*s != '*') return parse_inline(p, in, len);
            if ((rc = parse_len(p, in, len, &v)) == 0)
                return avail > RESP_MAX_LINE ? parse_error(p, "too big mbulk count string") : 0;
            if (rc < 0 || v > RESP_MAX_ARGS) return parse_error(p, "invalid multibulk length");
            if (p->noauth && v > RESP_NOAUTH_MAX_ARGS)
                return parse_error(p, "unauthenticated multibulk length");
            p->argc = 0;
            if (v <= 0) return 1;   /* Redis skips empty multibulks too */
            p->nargs = v;
            p->state = PARSE_BULK_LEN;
            break;
        case PARSE_BULK_LEN:
            if (*s != '$') return parse_error(p, "expected '$', got '%c'", *s);
            if ((rc = parse_len(p, in, len, &v)) == 0)
                return avail > RESP_MAX_LINE ? parse_error(p, "too big bulk count string") : 0;
            if (rc < 0 || v < 0 || v > RESP_MAX_BULK) return parse_error(p, "invalid bulk length");
            if (p->noauth && v > RESP_NOAUTH_MAX_BULK)
                return parse_error(p, "unauthenticated bulk length");
            if (p->pos + (size_t)v + 2 > RESP_MAX_QUERY)
                return parse_error(p, "command too big (over %u bytes)", RESP_MAX_QUERY);
            p->bulk = v;
            p->state = PARSE_BULK_BODY;
            break;
        case PARSE_BULK_BODY:
            if (avail < (size_t)p->bulk + 2) return 0;
            if (span_add(p, p->pos, (size_t)p->bulk, false) != 0) return RESP_ENOMEM;
            p->pos += (size_t)p->bulk + 2;
            if ((long long)p->argc < p->nargs) {
                p->state = PARSE_BULK_LEN;
                break;
            }
            p->state = PARSE_START;
            return 1;
        }
    }
}

int resp_parse(resp_parser *p, const char *in, size_t len, size_t *used) {
    int rc = parse_command(p, in, len);
    if (rc != 1) return rc;
    for (size_t i = 0; i < p->argc; i++)
        p->argv[i] = (resp_arg){(p->spans[i].unquoted ? p->inl : in) + p->spans[i].off,
                                p->spans[i].len};
    *used = p->pos;
    p->pos = 0;
    return 1;
}

/* ---- access (see resp.h) ------------------------------------------------ */

bool resp_password_ok(const char *want, size_t wlen, const char *got, size_t glen) {
    /* every byte position up to the bound is read from both (0 past their
     * ends) and folded in, whatever differs first */
    unsigned diff = (wlen != glen) | (wlen > RESP_MAX_PASSWORD) | (glen > RESP_MAX_PASSWORD);
    for (size_t i = 0; i < RESP_MAX_PASSWORD; i++) {
        unsigned char w = i < wlen ? (unsigned char)want[i] : 0;
        unsigned char g = i < glen ? (unsigned char)got[i] : 0;
        diff |= (unsigned)(w ^ g);
    }
    return diff == 0;
}

bool resp_addr_is_loopback(const struct sockaddr *addr) {
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

bool resp_peer_allowed(const struct sockaddr *peer, bool has_password, bool protected_mode) {
    return !protected_mode || has_password || resp_addr_is_loopback(peer);
}

char *resp_password_from_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "dht-server: cannot read the password file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "dht-server: warning: users other than its owner may read the password "
                        "file %s (chmod 600 it)\n", path);
    char line[RESP_MAX_PASSWORD + 3];   /* a longer line is cut past the bound: refused */
    size_t len = 0;
    if (fgets(line, sizeof line, f)) len = strcspn(line, "\r\n");
    if (ferror(f)) { /* (a directory opens, then reads as an empty file) */
        fprintf(stderr, "dht-server: cannot read the password file %s: %s\n", path, strerror(errno));
        fclose(f);
        explicit_bzero(line, sizeof line);
        return NULL;
    }
    fclose(f);
    if (!len || len > RESP_MAX_PASSWORD) {
        fprintf(stderr, "dht-server: the password file %s must hold a password of 1 to %d bytes "
                        "on its first line\n", path, RESP_MAX_PASSWORD);
        explicit_bzero(line, sizeof line);
        return NULL;
    }
    char *pw = strndup(line, len);
    explicit_bzero(line, sizeof line);
    if (!pw) fprintf(stderr, "dht-server: out of memory\n");
    return pw;
}

/* ---- connections -------------------------------------------------------- */

/* Logs a refusal of kind (an index into srv->noted), at most once every
 * NOTE_EVERY_MS per kind: a flood of them must not flood the log. */
__attribute__((format(printf, 3, 4)))
static void srv_note(resp_server *s, int kind, const char *fmt, ...) {
    uint64_t now = uv_now(s->listener.loop);
    if (s->noted[kind] && now - s->noted[kind] < NOTE_EVERY_MS) return;
    s->noted[kind] = now ? now : 1;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    node_log(s->n, "resp: %s", line);
}

enum { NOTE_ACCEPT, NOTE_MAXCLIENTS, NOTE_DENIED, NOTE_TIMEOUT, NOTE_EVICT, NOTE_HTTP };

/* A command named POST or Host: is a browser's HTTP request, which a web
 * page can send to any port it names (cross-protocol scripting): its body,
 * lines of commands, would run as a client's. Redis closes such a
 * connection at that line, and so do we. */
static bool http_request_line(const arg *name) {
    return (name->len == 4 && strncasecmp(name->p, "post", 4) == 0) ||
           (name->len == 5 && strncasecmp(name->p, "host:", 5) == 0);
}

static bool has_room(const conn *c) {
    return c->tail - c->head < MAX_PENDING && c->out.len + c->writing < MAX_OUTPUT && !c->keys;
}

/* Bytes held for c: its input (not what sits in srv->rbuf while being
 * parsed), its parser's arrays, its reply slots and the replies waiting in
 * them, in the output and in writes. */
static size_t conn_bytes(const conn *c) {
    size_t in = c->in.p == c->srv->rbuf ? 0 : c->in.len;
    return in + c->parser.cap * (sizeof *c->parser.spans + sizeof *c->parser.argv) +
           c->slots_cap * sizeof(slot) + c->slot_bytes + c->out.len + c->writing + c->name_len +
           (c->keys ? c->keys->bytes : 0);
}

/* Closes the clients holding the most until all of them hold no more than
 * the bound. */
static void srv_evict(resp_server *s) {
    while (s->held > s->max_held) {
        conn *big = NULL;
        for (conn *c = s->all; c; c = c->all_next)
            if (!big || c->held > big->held) big = c;
        if (!big || !big->held) return;
        s->stats.evicted++;
        srv_note(s, NOTE_EVICT, "closed a client holding %zu bytes: clients held %zu bytes, over "
                 "--resp-max-buffer %zu (%llu closed so far)", big->held, s->held, s->max_held,
                 s->stats.evicted);
        conn_close(big);
    }
}

/* Brings c's share of srv->held up to date, and enforces the bound (which
 * may close c, or another connection). */
static void conn_account(conn *c) {
    if (c->state == CONN_CLOSED) return;
    resp_server *s = c->srv;
    size_t now = conn_bytes(c);
    s->held = s->held - c->held + now;
    c->held = now;
    if (s->held > s->max_held) srv_evict(s);
}

/* Answers the parser's protocol error in a new slot and stops taking
 * commands (QUITTING before the reply, which may close c: cmd_quit). */
static void protocol_error(conn *c) {
    uint64_t seq;
    if (slots_add(c, 1, &seq) != 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_QUITTING;
    reply_error(c, seq, "ERR Protocol error: %s", c->parser.err);
}

/* Runs the commands buffered in c->in while the connection has room for
 * their replies. True when no whole command is left in the input. Starts
 * the query clock when the input ends in part of a command, and stops it
 * when a command is whole. */
#define CLOCK_COMMANDS 32 /* commands run on one reading of the clocks */
static bool conn_parse(conn *c) {
    bool starved = false, ran = false;
    node *n = c->srv->n;
    bool clocked = node_clock_begin(n);
    unsigned run_n = 0;
    while (c->state == CONN_READING || c->state == CONN_FINISHING) {
        if (++run_n % CLOCK_COMMANDS == 0) { /* a long pipeline: read them again */
            node_clock_end(n, clocked);
            clocked = node_clock_begin(n);
        }
        if (!has_room(c)) break;
        size_t used = 0;
        c->parser.noauth = c->srv->password && !c->authed;
        int rc = c->start < c->in.len
                     ? resp_parse(&c->parser, c->in.p + c->start, c->in.len - c->start, &used)
                     : 0;
        if (rc == 0) {
            starved = true;
            break;
        }
        if (rc < 0) {
            if (rc == RESP_EPROTO) protocol_error(c);
            else conn_close(c);
            break;
        }
        ran = true;
        if (c->parser.argc && http_request_line(&c->parser.argv[0])) {
            srv_note(c->srv, NOTE_HTTP, "closed a client that sent '%.*s': an HTTP request, as a "
                     "web page may send to attack a Redis port (cross-protocol scripting)",
                     (int)c->parser.argv[0].len, c->parser.argv[0].p);
            conn_close(c);
            break;
        }
        if (c->parser.argc) run_command(c, c->parser.argc, c->parser.argv);
        c->start += used;
    }
    node_clock_end(n, clocked);
    if (c->state == CONN_CLOSED) return true;
    /* drop what ran; keep the command being received at the front */
    if (c->start) {
        memmove(c->in.p, c->in.p + c->start, c->in.len - c->start);
        c->in.len -= c->start;
        c->start = 0;
    }
    if (ran || !c->in.len) c->query_since = 0;
    if (starved && c->in.len && !c->query_since) c->query_since = uv_now(c->tcp.loop);
    if (!c->in.len && c->in.p != c->srv->rbuf) buf_free(&c->in);
    return starved || c->state == CONN_QUITTING;
}

/* A connection holding no input reads into the server's buffer (on_read
 * moves what is left of it to the connection's own), so that an idle
 * client holds no input buffer. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    conn *c = h->data;
    (void)suggested;
    if (!c->in.len) {
        *b = uv_buf_init(c->srv->rbuf, sizeof c->srv->rbuf);
        return;
    }
    if (c->in.cap - c->in.len < READ_CHUNK / 4) buf_reserve(&c->in, READ_CHUNK);
    *b = uv_buf_init(c->in.p + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* Reads while the connection takes commands and has room for replies. */
static void conn_pace(conn *c) {
    bool want = c->state == CONN_READING && has_room(c);
    if (c->state == CONN_CLOSED || want == c->reading) return;
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    if ((want ? uv_read_start(s, on_alloc, on_read) : uv_read_stop(s)) != 0) conn_close(c);
    else c->reading = want;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    conn *c = s->data;
    node_woke(c->srv->n, uv_hrtime());
    if (nread == UV_EOF) {
        c->state = CONN_FINISHING;
    } else if (nread < 0) {
        conn_close(c);
        return;
    } else if (nread > 0) {
        c->last_io = uv_now(s->loop);
        if (b->base == c->srv->rbuf) {
            /* parse in place, then keep what is left: part of a command,
             * or commands there was no room for yet */
            c->in = (buf){.p = b->base, .len = (size_t)nread, .cap = sizeof c->srv->rbuf};
            conn_parse(c);
            buf rest = c->in;
            memset(&c->in, 0, sizeof c->in);
            if (c->state != CONN_CLOSED && rest.len > c->start) {
                buf_put(&c->in, rest.p + c->start, rest.len - c->start);
                if (c->in.oom) conn_close(c);
            }
            c->start = 0;
        } else {
            c->in.len += (size_t)nread;
            conn_parse(c);
        }
        conn_account(c);
    }
    conn_pace(c);
    conn_dirty(c);
}

static void on_written(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    conn *c = w->c;
    c->writing -= w->len;
    free(w->data);
    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->last_io = uv_now(c->tcp.loop);
    conn_account(c);
    conn_dirty(c);
}

/* Writes the output: at once if the socket takes it, else queued (the
 * buffer goes with the write request). */
static void conn_write(conn *c) {
    if (!c->out.len) return;
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    size_t done = 0;
    if (!c->writing) {
        uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
        int n = uv_try_write(s, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n > 0) {
            done = (size_t)n;
            c->last_io = uv_now(c->tcp.loop);
        }
        if (done == c->out.len) {
            c->out.len = 0;
            if (c->out.cap > OUTPUT_KEEP) buf_free(&c->out);
            return;
        }
    }
    write_req *w = malloc(sizeof *w);
    if (!w) {
        conn_close(c);
        return;
    }
    w->c = c;
    w->data = c->out.p;
    w->len = c->out.len - done;
    uv_buf_t b = uv_buf_init(c->out.p + done, (unsigned)w->len);
    memset(&c->out, 0, sizeof c->out);
    if (uv_write(&w->req, s, &b, 1, on_written) != 0) {
        free(w->data);
        free(w);
        conn_close(c);
        return;
    }
    c->writing += w->len;
}

/* Once per loop iteration for a connection that changed: runs the
 * commands it now has room for, writes the replies, paces reading and
 * closes it when it has nothing more to do. */
static void conn_service(conn *c) {
    bool starved;
    keys_resume(c);
    if (c->state == CONN_CLOSED) return;
    do {
        starved = conn_parse(c);
        if (c->state == CONN_CLOSED) return;
        if (c->out.oom) {
            conn_close(c);
            return;
        }
        conn_write(c);
        if (c->state == CONN_CLOSED) return;
    } while (!starved && has_room(c));   /* the socket took it all: run more */
    bool idle = c->head == c->tail && !c->out.len && !c->writing;
    if (idle && starved && (c->state == CONN_FINISHING || c->state == CONN_QUITTING)) {
        conn_close(c);
        return;
    }
    /* give back what a long pipeline or a huge command grew */
    if (c->head == c->tail && c->slots_cap > SLOTS_KEEP) {
        free(c->slots);
        c->slots = NULL;
        c->slots_cap = 0;
    }
    resp_parser_shrink(&c->parser, SLOTS_KEEP);
    conn_account(c);
    conn_pace(c);
}

static void on_closed(uv_handle_t *h) { conn_unref(h->data); }

static void conn_close(conn *c) {
    if (c->state == CONN_CLOSED) return;
    resp_server *s = c->srv;
    c->state = CONN_CLOSED;
    conn_clean(c);
    if (c->all_prev) c->all_prev->all_next = c->all_next;
    else s->all = c->all_next;
    if (c->all_next) c->all_next->all_prev = c->all_prev;
    s->held -= c->held;
    c->held = 0;
    s->clients--;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_flush(uv_check_t *h) {
    resp_server *s = h->data;
    conn *c;
    while ((c = s->dirty)) {
        conn_service(c);
        conn_clean(c);
    }
}

/* Closes the clients past a timeout: a command begun and not whole within
 * query_ms (while reading: not while paused for its replies), or nothing
 * sent or received for idle_ms with no operation in flight. */
static void on_sweep(uv_timer_t *t) {
    resp_server *s = t->data;
    uint64_t now = uv_now(t->loop);
    for (conn *c = s->all, *next; c; c = next) {
        next = c->all_next;
        bool slow = c->reading && c->query_since && now - c->query_since >= s->query_ms;
        bool idle = s->idle_ms && c->refs == 1 && now - c->last_io >= s->idle_ms;
        if (!slow && !idle) continue;
        s->stats.timed_out++;
        srv_note(s, NOTE_TIMEOUT, "closed a client %s (%llu closed so far)",
                 slow ? "that sent part of a command and not the rest in --resp-query-timeout"
                      : "idle for --resp-timeout", s->stats.timed_out);
        conn_close(c);
    }
}

/* A refused client is told why at once, as far as its socket takes it,
 * and closed. */
static void conn_refuse(conn *c, const char *why) {
    uv_buf_t b = uv_buf_init((char *)why, (unsigned)strlen(why));
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    conn_close(c);
}

static void on_connection(uv_stream_t *l, int status) {
    resp_server *s = l->data;
    if (status < 0) {
        srv_note(s, NOTE_ACCEPT, "accept failed: %s", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        node_log(s->n, "resp: out of memory for a connection: closed");
        conn_shed(&s->spare);
        return;
    }
    c->srv = s;
    c->refs = 1;
    c->state = CONN_READING;
    c->last_io = c->born = uv_now(l->loop);
    c->id = ++s->last_id;
    resp_parser_init(&c->parser);
    c->all_next = s->all;
    if (s->all) s->all->all_prev = c;
    s->all = c;
    s->clients++;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (s->clients > s->maxclients) {
        s->stats.rejected++;
        srv_note(s, NOTE_MAXCLIENTS, "refused a client: --maxclients %zu reached (%llu refused so "
                 "far)", s->maxclients, s->stats.rejected);
        conn_refuse(c, err_maxclients);
        return;
    }
    struct sockaddr_storage peer;
    int plen = sizeof peer;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &plen) != 0) {
        conn_close(c);   /* gone already */
        return;
    }
    if (!resp_peer_allowed((struct sockaddr *)&peer, s->password != NULL, s->protected_mode)) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (peer.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&peer, ip, sizeof ip);
        else uv_ip4_name((struct sockaddr_in *)&peer, ip, sizeof ip);
        s->stats.denied++;
        srv_note(s, NOTE_DENIED, "refused %s: protected mode, no password and not a loopback "
                 "address (%llu refused so far)", ip, s->stats.denied);
        conn_refuse(c, err_denied);
        return;
    }
    s->stats.accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    conn_pace(c);
}

static void free_server(uv_handle_t *h) { free(h->data); }

/* How many clients the open file limit allows, at most want: raises the
 * soft limit towards want + RESP_RESERVED_FDS (as far as the hard limit
 * lets), and says so when it falls short. */
static size_t fit_file_limit(node *n, size_t want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return want;
    rlim_t need = (rlim_t)want + RESP_RESERVED_FDS;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return want;
    size_t fit = rl.rlim_cur > RESP_RESERVED_FDS + 1 ? (size_t)rl.rlim_cur - RESP_RESERVED_FDS : 1;
    node_log(n, "resp: the open file limit (%llu, ulimit -n) allows %zu clients, not "
             "--maxclients %zu", (unsigned long long)rl.rlim_cur, fit, want);
    return fit;
}

int resp_start(uv_loop_t *loop, node *n) {
    const node_config *cfg = &n->cfg;
    const char *ip = cfg->resp_bind ? cfg->resp_bind : cfg->bind_ip;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(ip, cfg->resp_port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(ip, cfg->resp_port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        fprintf(stderr, "dht-server: bad --resp-bind address %s\n", ip);
        return rc;
    }
    if (cfg->requirepass && (!*cfg->requirepass || strlen(cfg->requirepass) > RESP_MAX_PASSWORD)) {
        fprintf(stderr, "dht-server: the password must have 1 to %d bytes\n", RESP_MAX_PASSWORD);
        return UV_EINVAL;
    }
    resp_server *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "dht-server: out of memory\n");
        return UV_ENOMEM;
    }
    s->n = n;
    s->password = cfg->requirepass;
    s->password_len = s->password ? strlen(s->password) : 0;
    s->protected_mode = !cfg->resp_unprotected;
    s->query_ms = 1000ull * (cfg->resp_query_timeout_s ? cfg->resp_query_timeout_s
                                                       : RESP_DEFAULT_QUERY_TIMEOUT);
    s->idle_ms = 1000ull * cfg->resp_timeout_s;
    s->max_held = cfg->resp_max_buffer ? cfg->resp_max_buffer : RESP_DEFAULT_MAX_BUFFER;
    s->maxclients = fit_file_limit(n, cfg->maxclients ? cfg->maxclients : RESP_DEFAULT_MAXCLIENTS);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    conn_spare_init(&s->spare, (uv_stream_t *)&s->listener, on_connection);
    if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, BACKLOG, on_connection)) != 0) {
        fprintf(stderr, "dht-server: cannot listen on TCP %s:%u (--resp-port): %s\n",
                ip, cfg->resp_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, free_server);
        return rc;
    }
    uv_check_init(loop, &s->flush);
    s->flush.data = s;
    uv_check_start(&s->flush, on_flush);
    uv_unref((uv_handle_t *)&s->flush);
    /* a timeout is enforced within a quarter of it (at most a second late) */
    uint64_t shortest = s->idle_ms && s->idle_ms < s->query_ms ? s->idle_ms : s->query_ms;
    uint64_t period = shortest / 4 < 50 ? 50 : shortest / 4 > 1000 ? 1000 : shortest / 4;
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uv_timer_start(&s->sweep, on_sweep, period, period);
    uv_unref((uv_handle_t *)&s->sweep);
    bool loopback = resp_addr_is_loopback((const struct sockaddr *)&addr);
    if (!loopback && !s->password && s->protected_mode)
        node_log(n, "resp: WARNING protected mode: %s has no password (--requirepass-file), so "
                 "only clients on loopback addresses are served; others get -DENIED", ip);
    else if (!loopback && !s->password)
        node_log(n, "resp: WARNING no password and protected mode off: anyone who reaches %s:%u "
                 "may read, write and wipe the data", ip, cfg->resp_port);
    if (!cfg->quiet)
        node_log(n, "serving Redis clients (RESP2) on TCP %s:%u (at most %zu, %s)", ip,
                 cfg->resp_port, s->maxclients, s->password ? "AUTH required" : "no password");
    return 0;
}
