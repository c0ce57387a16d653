/*
 * resp: a Redis protocol (RESP2) front end on TCP, on with --resp-port.
 *
 * Redis clients (redis-cli, redis-benchmark, client libraries) talk to any
 * node (or, with --resp-cluster, to the node serving a key's hash slot
 * first: Redis Cluster, below). GET, SET, DEL, EXISTS, MGET and MSET run through repl_client_op
 * like UDP requests, so any node serves any key with the cluster's N/R/W
 * (the node coordinates even when it is not one of the key's replicas).
 * PING, ECHO, INFO, QUIT, SELECT 0 and what clients send on connecting
 * (COMMAND, CLIENT, CONFIG GET) are answered here; DBSIZE and FLUSHALL
 * count and wipe this node's store only. Multi-key commands are not atomic:
 * each key is its own operation, and the reply waits for all of them.
 *
 * A connection is a state machine:
 *
 *   STATE      READS  RUNS COMMANDS  LEAVES WHEN
 *   READING    yes    yes            EOF -> FINISHING; QUIT or a protocol
 *                                    error -> QUITTING; I/O error -> CLOSED
 *   FINISHING  no     those buffered every reply written -> CLOSED
 *   QUITTING   no     no             every reply written -> CLOSED
 *   CLOSED     no     no             the handle is closed and the last
 *                                    operation in flight completed: freed
 *
 * so a completion arriving after the client left finds its connection
 * still allocated, and drops its result.
 *
 * Replies go out in request order whatever order operations complete in:
 * every command takes a slot in its connection's queue (MGET one per key,
 * after the array header); completions fill slots, the filled prefix of the
 * queue moves to the output buffer, and the output is written once per loop
 * iteration.
 *
 * Bounds, per connection: a command of at most 4 MiB, a bulk string of at
 * most 1 MiB, an inline command or length line of at most 64 KiB, at most
 * 1M arguments; beyond them, or on malformed input, the client gets
 * "-ERR Protocol error: ..." and is disconnected, as Redis does (see the
 * parser below). Keys of 1..WIRE_MAX_KEY bytes and values of at most
 * WIRE_MAX_VALUE bytes are the store's limits; others get an -ERR reply.
 * Reading pauses while 1024 replies are outstanding or 4 MiB of replies
 * wait to be written.
 *
 * Against clients that do not behave (bounds per process, dht-server's
 * options, the defaults in parentheses):
 *
 * - clients: --maxclients (RESP_DEFAULT_MAXCLIENTS), and no more than the
 *   open file limit less RESP_RESERVED_FDS; one past it gets "-ERR max
 *   number of clients reached" and is closed, as in Redis.
 * - time: a command that has begun to arrive must be whole within
 *   --resp-query-timeout seconds (RESP_DEFAULT_QUERY_TIMEOUT), else the
 *   client is closed (a slowloris holds no connection for long; the time
 *   reading is paused for replies does not count); a client that sends and
 *   receives nothing for --resp-timeout seconds, with no operation in
 *   flight, is closed (0, the default: never, as Redis's timeout). A
 *   timeout is enforced within a quarter of it (at most a second late).
 * - memory: the bytes held for clients (commands being received, argument
 *   and reply-slot arrays, replies not yet written), all clients together,
 *   stay under --resp-max-buffer (RESP_DEFAULT_MAX_BUFFER): past it the
 *   client holding the most is closed, then the next, until under it. An
 *   idle client holds no input buffer and small arrays only.
 *
 * Access (Redis 6's rules and texts): with --requirepass, every command but
 * AUTH and QUIT gets "-NOAUTH Authentication required." until the client
 * has sent "AUTH password" or "AUTH default password" (compared in constant
 * time; a wrong one gets "-WRONGPASS ..."), and until then a command may
 * have at most RESP_NOAUTH_MAX_ARGS arguments of at most
 * RESP_NOAUTH_MAX_BULK bytes. Protected mode (on unless --protected-mode
 * no): without a password, a client whose address is not a loopback one
 * gets "-DENIED ..." and is closed as soon as it connects. The port listens
 * on --resp-bind, by default the node's --bind address.
 */
#ifndef DHT_RESP_H
#define DHT_RESP_H

#include <uv.h>

#include "node.h"

#define RESP_MAX_QUERY (4u << 20)    /* bytes of one multibulk command */
#define RESP_MAX_BULK (1u << 20)     /* bytes of one bulk string */
#define RESP_MAX_LINE (64u << 10)    /* an inline command or length line, until its end */
#define RESP_MAX_ARGS (1024 * 1024)  /* arguments of one command */

#define RESP_DEFAULT_MAXCLIENTS 10000
#define RESP_RESERVED_FDS 128        /* kept from --maxclients for the rest: stdio, UDP,
                                        listeners, LMDB, libuv, HTTP_MAX_CONNS clients */
#define RESP_DEFAULT_QUERY_TIMEOUT 30          /* seconds */
#define RESP_DEFAULT_MAX_BUFFER (256u << 20)   /* bytes */
#define RESP_MAX_PASSWORD 512        /* bytes of --requirepass */
#define RESP_NOAUTH_MAX_ARGS 10      /* arguments of a command before AUTH */
#define RESP_NOAUTH_MAX_BULK 16384   /* bytes of a bulk string before AUTH */

#define RESP_EPROTO (-1)             /* resp_parse: malformed or over a bound */
#define RESP_ENOMEM (-2)             /* resp_parse: no memory for the arguments */

/* ---- the request parser, without sockets --------------------------------
 *
 * Commands arrive as multibulks ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") or,
 * when the first byte is not '*', as inline commands (a line of words ended
 * by LF or CRLF, split as Redis's sdssplitargs splits it: blanks between
 * words, "double quotes" with C escapes and \xHH, 'single quotes' with \'
 * alone; an unbalanced quote is a protocol error). Like Redis, the parser
 * does not check the LF after a length or a bulk string, skips empty
 * commands ("*0\r\n", "*-1\r\n", a blank line) as commands of no
 * arguments, and limits what a client may send with the RESP_MAX_* bounds
 * (an inline line is only bounded while its LF has not come).
 *
 * A parser holds the progress of one command through a multibulk, so input
 * can come a piece at a time without being parsed again; arguments are kept
 * as offsets from the command's first byte, so the caller may move its
 * buffer between calls. The parser owns its argument arrays. Its caller
 * sets noauth for a client that has yet to authenticate: multibulks of at
 * most RESP_NOAUTH_MAX_ARGS arguments and RESP_NOAUTH_MAX_BULK-byte bulks
 * ("unauthenticated multibulk length", "unauthenticated bulk length", as
 * Redis); it may change it between commands. */

typedef struct resp_arg {
    const char *p;
    size_t len;
} resp_arg;

typedef struct resp_parser {
    /* results of the last call that returned 1, or RESP_EPROTO */
    size_t argc;                /* 0 for an empty command */
    resp_arg *argv;             /* argc arguments, argv[0] the name */
    char err[128];              /* RESP_EPROTO: why, without "ERR Protocol error: " */
    bool noauth;                /* set by the caller: the bounds before AUTH */
    /* private */
    int state;                  /* START, BULK_LEN, BULK_BODY */
    size_t pos;                 /* bytes of the command parsed */
    long long nargs, bulk;      /* arguments announced; length of the bulk being read */
    struct { size_t off, len; bool unquoted; } *spans;  /* the arguments received, by
                                 * offset (unquoted: in the parser's inl, not the input) */
    size_t cap;                 /* of spans and argv */
    char *inl;                  /* an inline command's arguments as unquoted, when they
                                 * differ from their bytes in the input */
    size_t inl_len, inl_cap;
} resp_parser;

/* A parser at the start of a command, owning nothing; a zeroed resp_parser
 * is one too. */
void resp_parser_init(resp_parser *p);

/* Gives back what p owns; p is then as after resp_parser_init. */
void resp_parser_free(resp_parser *p);

/* Between commands, gives back argument arrays grown past max entries
 * (a huge command grew them), and the arguments of an inline command that
 * were unquoted; else does nothing. */
void resp_parser_shrink(resp_parser *p, size_t max);

/* Parses one command from in[0..len), in being its first byte: the bytes
 * given to the calls since the last command (which returned 0), possibly
 * moved, and possibly more. Returns
 *   1            a whole command of *used bytes (0 < *used <= len): p->argc
 *                arguments in p->argv, pointing into in (the array is valid
 *                until the next call on p, the bytes while in is), or for
 *                an inline argument that quotes or escapes made different
 *                from its bytes, into p (valid until the next call on p or
 *                resp_parser_shrink); the next command starts at in + *used;
 *   0            more input is needed (*used untouched);
 *   RESP_EPROTO  a protocol error, described in p->err; the caller answers
 *                it and stops parsing (p may only be freed or re-initialised);
 *   RESP_ENOMEM  no memory (likewise).
 * A command stays within RESP_MAX_QUERY bytes unless it is inline. */
int resp_parse(resp_parser *p, const char *in, size_t len, size_t *used);

/* ---- access, without sockets ------------------------------------------ */

/* True if got[0..glen) is the password want[0..wlen) (wlen at most
 * RESP_MAX_PASSWORD). The time taken depends on neither password: both
 * are compared over RESP_MAX_PASSWORD bytes, whatever their lengths. */
bool resp_password_ok(const char *want, size_t wlen, const char *got, size_t glen);

/* True if addr is a loopback address: 127.0.0.0/8, ::1, or
 * ::ffff:127.0.0.0/104 (IPv4 on an IPv6 socket). */
bool resp_addr_is_loopback(const struct sockaddr *addr);

/* Protected mode: true if a client connecting from peer may be served,
 * that is unless protected mode is on, no password is set and the peer is
 * not a loopback address. */
bool resp_peer_allowed(const struct sockaddr *peer, bool has_password, bool protected_mode);

/* The password in the first line of the file at path (its line end not
 * included), for --requirepass-file: a string the caller owns (free), or
 * NULL after printing why to stderr (no such file, empty line, over
 * RESP_MAX_PASSWORD bytes). Warns when others than its owner may read the
 * file. */
char *resp_password_from_file(const char *path);

/* ---- Redis Cluster ------------------------------------------------------
 *
 * Keys sit in Redis Cluster's 16,384 hash slots (ring_key_slot: CRC16 of
 * the key or of its {hash tag}), and the nodes answer the cluster commands
 * a cluster client needs, computed from the ring as the node sees it now
 * (a membership change shows at once, so within a gossip period of it
 * everywhere):
 *
 *   CLUSTER SLOTS    runs of slots with the same replicas: start, end, then
 *                    the replicas (ip, Redis port, node ID), the one served
 *                    first first (repl_slot_replicas: the first replica not
 *                    suspect), the others as Redis replicas
 *   CLUSTER SHARDS   the same grouped by set of replicas (Redis 7's form)
 *   CLUSTER NODES    a line a known member; every live member is a master
 *                    of the slots it is served first for; suspects are
 *                    "fail?", the dead "fail" (no slots)
 *   CLUSTER INFO, CLUSTER KEYSLOT key, CLUSTER MYID, CLUSTER HELP
 *   READONLY, READWRITE, ASKING
 *
 * A node's address is the one it gossips (--advertise, or found from the
 * route to its peers) with the Redis port gossip carries
 * (members_resp_port); its ID is resp_node_id of its UDP address, so every
 * node names it alike.
 *
 * With --resp-cluster (cfg.resp_cluster), the port behaves as a Redis
 * Cluster node does: a command on keys of different slots is answered
 * "-CROSSSLOT Keys in request don't hash to the same slot", and one on a
 * slot whose first replica is another node "-MOVED slot ip:port" (that
 * node's Redis port), unless it is a read (GET, MGET, EXISTS) on a
 * READONLY connection and this node is one of the slot's replicas, or the
 * slot is not settled here (a membership change touched it within
 * members_settle_ms, or a member places slots otherwise: resp.c,
 * keys_here), when it serves the key itself. A
 * cluster client then sends every key to a node that holds it, saving a
 * hop; commands without keys run anywhere. Without --resp-cluster (the
 * default) any node serves any key, as ever: plain clients need no
 * change, and cluster clients still route by CLUSTER SLOTS. INFO says
 * cluster_enabled:1 and redis_mode:cluster in cluster mode. */

#define RESP_NODE_ID_LEN 40

/* The Redis Cluster node ID of the node at UDP ip:port (ip in network
 * byte order): 40 hex digits of BLAKE2b-160 of "a.b.c.d:port", written to
 * out with a NUL. */
void resp_node_id(uint32_t ip, uint16_t port, char out[RESP_NODE_ID_LEN + 1]);

/* Listens on cfg.resp_bind (or cfg.bind_ip):cfg.resp_port (TCP) and serves
 * Redis clients of node n on loop for the life of the process, with the
 * bounds and access rules above (cfg fields at 0 take the defaults).
 * Raises the soft open file limit towards what --maxclients needs, and
 * lowers the number of clients to what the limit allows (saying so).
 * Returns 0, or a negative libuv error after printing why (nothing is left
 * listening). */
int resp_start(uv_loop_t *loop, node *n);

#endif
