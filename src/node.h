/*
 * node: one dht node as a deterministic state machine, the core that the
 * libuv program (server.c) and the simulator (sim.c) both drive.
 *
 * The core does no I/O of its own and reads no clock: a driver hands it
 * datagrams with node_receive() and calls node_tick() when the deadline it
 * returned has come, and the core reaches the world only through the
 * node_env it was given (monotonic time, wall clock, send, random numbers,
 * log, stop). Nothing in the core is process-wide: two nodes in one process
 * share nothing but the code, so a simulator can run thousands of them over
 * a simulated network and clock and replay a run from its seed.
 *
 * Structure, top-down: driver -> node (dispatch of datagrams, client
 * commands, stamps) -> members (gossip, failure detection, the ring) and
 * repl (quorums, repair) -> ring, store, cache, wire. members tells repl of
 * membership changes through a callback that node wires up; nothing below
 * calls up into a driver.
 *
 * Ownership: the node owns its cache, members, repl, outbox and arena; the
 * store is the driver's (it may outlive the node: a restarted node reopens
 * what a crashed one left, as LMDB does on disk).
 */
#ifndef DHT_NODE_H
#define DHT_NODE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "cache.h"
#include "ring.h"
#include "store.h"

typedef struct members members;
typedef struct repl repl;
typedef struct outbox outbox;
typedef struct wire_arena wire_arena;

typedef struct node_config {
    uint16_t port;
    const char *peers_file;
    const char *bind_ip;        /* "0.0.0.0" */
    const char *advertise_ip;   /* NULL: found from the route to the peers */
    const char *data_dir;       /* NULL: in memory */
    size_t max_memory;          /* cap on key + value bytes */
    unsigned replicas;          /* N */
    unsigned write_quorum;      /* W */
    unsigned read_quorum;       /* R */
    unsigned vnodes;
    unsigned gossip_ms;         /* probe and gossip period */
    unsigned fanout;            /* probe helpers, and peers per gossip round */
    unsigned suspicion_ms;      /* a suspicion unrefuted this long (longer past
                                   100 members) is a death */
    uint64_t forget_ms;         /* a member dead this long is forgotten */
    unsigned request_timeout_ms;/* a coordinator's wait for replicas */
    unsigned max_inflight;      /* client operations coordinated at once and not
                                   answered yet; past it clients are told
                                   SYSTEM_OVERLOAD */
    unsigned max_lag_ms;        /* loop lag past which new client operations
                                   are turned away (0: never) */
    uint64_t majority_ms;       /* with W + R > N, writes are refused while this
                                   node sees fewer live members than members
                                   dead for less than this (0, the default:
                                   never; both sides of a partition take writes) */
    unsigned sync_ms;           /* anti-entropy period */
    uint64_t cache_ms;          /* reply cache TTL */
    size_t cache_bytes;
    uint64_t tombstone_ms;      /* tombstone lifetime before GC */
    uint64_t last_incarnation;  /* of this node's previous life, kept by the driver
                                   (0: unknown); the new one is above it */
    uint64_t last_alive_ms;     /* wall ms its previous life was last known alive,
                                   kept by the driver with a data dir (0: unknown) */
    uint64_t last_gc_floor;     /* the stamp its previous life collected below */
    const auth_keys *keys;      /* cluster key(s); NULL: none (auth.h) */
    const auth_net *admin_nets; /* who may send SHUTDOWN and WIPEOUT, besides */
    size_t admin_nets_n;        /* members' hosts; none given: 127.0.0.0/8 */
    const auth_net *client_nets; /* who may send UDP client requests (none: anyone) */
    size_t client_nets_n;
    uint16_t resp_port;         /* 0: off */
    bool resp_cluster;          /* the Redis port speaks Redis Cluster: MOVED and
                                   CROSSSLOT for keys served elsewhere (resp.h) */
    uint16_t http_port;         /* 0: off */
    bool quiet;
    /* the Redis and HTTP front ends (resp.h, http.h); 0 or NULL: the default */
    const char *resp_bind;      /* NULL: bind_ip */
    const char *http_bind;      /* NULL: "127.0.0.1" */
    const char *requirepass;    /* NULL: none, no AUTH needed */
    bool resp_unprotected;      /* --protected-mode no */
    unsigned maxclients;        /* RESP_DEFAULT_MAXCLIENTS */
    unsigned resp_timeout_s;    /* idle clients closed after; 0: never */
    unsigned resp_query_timeout_s; /* RESP_DEFAULT_QUERY_TIMEOUT */
    size_t resp_max_buffer;     /* RESP_DEFAULT_MAX_BUFFER */
} node_config;

/* Fills cfg with the defaults. */
void node_defaults(node_config *cfg);

/* The world as a node sees it. Every call gets ctx. All are required. */
typedef struct node_env {
    void *ctx;
    uint64_t (*now)(void *ctx);      /* monotonic ms; never goes back */
    uint64_t (*now_us)(void *ctx);   /* optional: the same clock in us, for latencies */
    uint64_t (*wall)(void *ctx);     /* wall-clock ms since the epoch; may jump */
    /* Sends one datagram; the buffer may be reused once it returns. 0, or
     * a negative error (the datagram is lost, as UDP may lose it anyway). */
    int (*send)(void *ctx, const struct sockaddr_in *to, const uint8_t *buf, size_t len);
    uint64_t (*random)(void *ctx);   /* 64 random bits */
    void (*log)(void *ctx, const char *line);  /* one line, no newline */
    void (*stop)(void *ctx);         /* SHUTDOWN: stop this node now */
    /* Optional (NULL: none): told of every verdict on a member. */
    void (*member_state)(void *ctx, uint32_t ip, uint16_t port, int state);
    /* Optional: told of the node's incarnation at start and whenever it
     * rises (a refuted suspicion), for a driver with a data dir to keep it
     * and pass it back as cfg.last_incarnation in the next life. */
    void (*incarnation)(void *ctx, uint64_t incarnation);
    /* Optional: told every few seconds (and at start) that the node is
     * alive at wall ms `alive_ms`, and the stamp below which it has
     * collected tombstones, for a driver with a data dir to keep and pass
     * back as cfg.last_alive_ms and cfg.last_gc_floor in the next life. */
    void (*alive)(void *ctx, uint64_t alive_ms, uint64_t gc_floor);
} node_env;

/* Counters shown by /metrics and INFO. */
typedef struct node_stats {
    uint64_t requests[256];     /* by client command */
    uint64_t errors[8];         /* replies by error code */
    uint64_t dropped_checksum;
    uint64_t dropped_malformed;
    uint64_t dropped_stale;     /* client requests that waited through a stall */
    uint64_t dropped_unsealed;  /* node-to-node datagrams without a valid seal */
    uint64_t dropped_clock;     /* sealed, but sent too far from our clock */
    uint64_t dropped_outsider;  /* no key: node-to-node from a public address */
    uint64_t dropped_from_node; /* a client request from a node's address */
    uint64_t dropped_client;    /* a client request from outside --clients-from */
    uint64_t dropped_replay;    /* a forwarded request seen before, or too old to tell */
    uint64_t refused_admin;     /* SHUTDOWN/WIPEOUT from outside --admin-from */
    uint64_t refused_minority;  /* writes refused: no majority in sight */
    uint64_t overload[4];       /* SYSTEM_OVERLOAD answers, by NODE_OVERLOAD_* */
    uint64_t cache_hits;
    uint64_t forwarded;
    uint64_t peer_msgs;
    uint64_t repushed;          /* records pushed by re-replication sweeps */
    uint64_t pushed_back;       /* records sent back for older ones pushed here (repl.c on_sync) */
    uint64_t synced;            /* records pushed by anti-entropy (digest exchanges) */
    uint64_t outlived;          /* records dropped: the cluster outlived them (node.h) */
    uint64_t resent;            /* replica requests sent again (no answer in time) */
    uint64_t restamped;         /* writes stamped again (a replica held a newer stamp) */
    uint64_t handed_off;        /* hinted records sent to their replicas (sends, not records) */
    uint64_t lat_us[32];        /* coordinated latency, log2 buckets of us */
    uint64_t lat_sum_us;        /* total of the latencies counted in lat_us */
    uint64_t busy_us[32];       /* the event loop's work an iteration (server.c), the same */
    uint64_t busy_sum_us;
    uint64_t busy_max_us;       /* the longest iteration */
} node_stats;

/* A loop callback begins: the first of the iteration marks when its work
 * began (ns: uv_hrtime(), read only then). */
#define node_woke(n, ns) ((void)((n)->woke_ns || ((n)->woke_ns = (ns))))

/* Counts us in h, log2 buckets: h[i] holds 2^i .. 2^(i+1)-1 us (h[0]: 0
 * and 1 us; h[31]: everything above). */
static inline void node_hist_add(uint64_t h[32], uint64_t us) {
    unsigned b = 0;
    while (us > 1 && b < 31) us >>= 1, b++;
    h[b]++;
}

/* Why a client was answered SYSTEM_OVERLOAD. */
enum { NODE_OVERLOAD_INFLIGHT, NODE_OVERLOAD_LAG, NODE_OVERLOAD_SLOW, NODE_OVERLOAD_LIST };

typedef struct node {
    node_config cfg;
    node_env env;
    struct sockaddr_in self;    /* advertised address */
    int32_t pid;                /* answered to GET_PID */
    uint64_t incarnation;       /* wall ms at start, raised by a refute (members.c) */
    uint64_t hlc;               /* last stamp issued or seen */
    uint64_t list_tat;          /* member lists answered: when the rate allows the next (node.c) */
    uint64_t *fwd_sent;         /* by member index: forwards sent to it (node.c) */
    size_t fwd_sent_n;
    struct fwd_seen **fwd_seen; /* by member index: the forwards taken from it (node.c) */
    uint64_t rx_sent_ms;        /* the seal's time of the datagram read now (0: none) */
    size_t fwd_seen_n;
    int64_t lead;               /* the wall clock of the member furthest
                                 * ahead, less node_now, when last heard
                                 * (members.c; INT64_MIN: none heard) */
    store *store;               /* the driver's */
    cache *cache;
    members *members;
    repl *repl;
    outbox *outbox;             /* batches node-to-node messages */
    wire_arena *arena;          /* decoded datagrams, reset per datagram */
    /* uv_hrtime() at the first callback of the loop iteration under way
     * (node_woke: server.c, resp.c), 0 between iterations: the start of
     * the work busy_us counts */
    uint64_t woke_ns;
    node_stats stats;
    uint64_t started_ms;        /* wall ms at start */
    uint64_t cache_at;          /* next expiry of the reply cache */
    uint64_t last_tick;         /* monotonic ms of the last node_tick */
    uint64_t woke_at;           /* when node_tick found the node had stalled */
    uint64_t now_cache, wall_cache; /* the clocks read once for one datagram, tick or flush
                                     * (0: read them at each call) */
    uint64_t tick_due;          /* when the last node_tick asked to be called */
    uint32_t lag_ewma16;        /* how late ticks come, ms x 16 (smoothed) */
    uint64_t admin_logged;      /* monotonic ms of the last refusal logged */
    uint64_t clock_logged;      /* ... of the last clock-bound drop logged */
    int store_full;             /* store_full() as last logged */
    uint64_t refused_at;        /* store_refused() before the store became full */
    uint64_t room_since;        /* 0, or since when a full store has taken writes */
    /* A store outlived by its cluster (node_floor_seen): records stamped up
     * to stale_below, from before the last life's end, are held back (not
     * read, not pushed) until a peer's tombstone floor says whether they
     * may have outlived their tombstones (then they are dropped) or not
     * (then they count again, stale_until after the first peer heard).
     * Condemned, they stay held back until a drop of them all succeeds (a
     * full disk may refuse it: tried again every STALE_RETRY_MS). */
    uint64_t stale_below;       /* 0: nothing held back */
    uint64_t last_life;         /* stamp of when the last life was last known alive */
    uint64_t stale_until;       /* 0: no peer heard yet */
    bool stale_doomed;          /* a floor condemned them: they go, never count again */
    bool stale_drop_failed;     /* a drop of them failed (logged once) */
    uint64_t stale_retry_at;    /* when the drop is tried again */
    uint64_t stale_dropped;     /* of them dropped so far (also by drops that failed) */
    uint64_t gc_floor;          /* tombstones stamped below it may be collected here */
    uint64_t alive_at;          /* next report to env.alive */
} node;

/* Creates a node serving at `self` on store st (not owned), from cfg (the
 * strings in it must outlive the node). The incarnation is env's wall clock
 * now, or cfg->last_incarnation + 1 when that is more (but at most 30 s
 * ahead of the clock: others refuse incarnations a minute ahead of theirs).
 * Add the seeds with node_add_seeds, then call node_tick. NULL when out of
 * memory. */
node *node_new(const node_config *cfg, const node_env *env, const struct sockaddr_in *self,
               store *st, int32_t pid);

/* Frees the node; the store stays open. Queued messages are dropped. */
void node_free(node *n);

/* Adds the members of the peers file (the node's own address is skipped).
 * 0, or -1 when out of memory. */
int node_add_seeds(node *n, const ring_node *seeds, size_t k);

/* Wipes this node's store (WIPEOUT, FLUSHALL). Its "not found" is then not
 * believed alone for a while (repl_store_wiped). 0, or the store's error. */
int node_wipe(node *n);

/* Handles one datagram from `from`. */
void node_receive(node *n, const struct sockaddr_in *from, const uint8_t *buf, size_t len);

/* Runs the work that is due (gossip, failure detection, resends, repair,
 * expiry) and sends what is queued. A node that finds it was not ticked for
 * NODE_STALL_MS (no CPU, a long pause) drops the client requests and
 * forwarded requests it is handed in the next NODE_WAKE_WINDOW_MS: they
 * waited in its socket buffer, their clients may have given up and written
 * since, and run now they could overwrite the newer writes; a client still
 * waiting retries. Returns the monotonic ms at which it
 * wants to be called next; a driver may call it earlier (after every batch
 * of datagrams, say), never needs to later. */
uint64_t node_tick(node *n);

#define NODE_STALL_MS 1000
#define NODE_WAKE_WINDOW_MS 5

/* Sends the node-to-node messages queued since the last flush (outbox.h),
 * but those that may wait (node_send_peer_lazy) and are not due yet: the
 * next node_tick asks to run when they are. node_tick flushes too; a driver calls it once it has handed over a batch
 * of datagrams or TCP requests. */
void node_flush(node *n);

/* A periodic round in node_tick: true when the round at *at is due at now,
 * and then the next one is set `period` from now; *next is lowered to the
 * time of the next round either way. */
static inline bool node_due(uint64_t *at, uint64_t now, uint64_t period, uint64_t *next) {
    bool due = now >= *at;
    if (due) *at = now + period;
    if (*at < *next) *next = *at;
    return due;
}

/* The overloadWaitTime for a client turned away now (ms). */
uint32_t node_overload_wait_ms(const node *n);

/* True (and counted) when the node's loop runs so late that new client
 * operations are turned away (cfg.max_lag_ms). */
bool node_lagging(node *n);

/* Monotonic ms, from the environment. */
uint64_t node_now(const node *n);
/* The same clock in microseconds (env.now_us; without it, ms * 1000), read
 * now: for latency figures. */
uint64_t node_now_us(const node *n);

/* node_now as node-to-node messages say it (Peer.mono): never 0, which
 * says nothing (an earlier version). */
uint64_t node_mono(const node *n);

/* Wall-clock ms since the epoch, from the environment. */
uint64_t node_wall_ms(const node *n);

/* A fresh stamp, greater than any issued or seen by this node. */
uint64_t node_stamp(node *n);

/* Tells the clock of a stamp seen from elsewhere. */
void node_stamp_seen(node *n, uint64_t stamp);

/* The clock as this node's stamps read it now, without issuing one: its
 * wall clock, or that of the member furthest ahead as last heard and
 * run on since by node_now (lead; within the clock bound), or the latest
 * stamp it issued or saw, whichever is ahead. Gossip carries it, so every
 * member's follows the fastest clock in the cluster (within the clock
 * bound), as a hybrid logical clock does.
 * A stamp seen stands still until the wall clock passes it; a lead runs on
 * with the wall clock, as the clock ahead does, while its member is known
 * (a write acknowledged by a node ahead just before it was cut off, then
 * the client's next write through a node that had heard that clock a
 * moment before: stamped below it and lost, dht-sim seeds 460 and 8061;
 * 1129, when that node was held dead by then, as the far side of a
 * partition is). Only a member's own reading of its wall clock makes a
 * lead, never one passed on, so a lead ends with its clock: once the
 * member restarts or is forgotten (the stamp it had reached is kept then)
 * or its clock is set back. */
uint64_t node_clock(const node *n);

/* node_clock in ms: anti-entropy reads its horizons off it, so that
 * members whose wall clocks are seconds apart still compare one epoch. */
static inline uint64_t node_cluster_ms(const node *n) { return node_clock(n) >> 16; }

/* Whether a record of this stamp is held back: it predates this node's
 * restart after an absence, and the cluster may have collected the
 * tombstones that would have beaten it (see node.stale_below). */
static inline bool node_stale(const node *n, uint64_t stamp) {
    return n->stale_below && stamp <= n->stale_below;
}

/* Tombstones stamped below floor have just been collected here (repl.c). */
void node_gc_ran(node *n, uint64_t floor);

/* A peer's gossip said it collects tombstones stamped below floor (0:
 * none): if that is past this node's last life, the records of that life
 * still held back may have lost their tombstones, and are dropped. */
void node_floor_seen(node *n, uint64_t floor);

/* 64 random bits from the environment. */
uint64_t node_random(node *n);

/* Reads the clocks once for what follows (node_now and node_wall_ms answer
 * that reading) until node_clock_end; a nested begin keeps the outer
 * reading. Returns whether this call began it, for node_clock_end. */
bool node_clock_begin(node *n);
void node_clock_end(node *n, bool began);

/* Sends one datagram to `to`. 0, or a negative error (the datagram is lost). */
int node_send(node *n, const struct sockaddr_in *to, const uint8_t *buf, size_t len);

/* Sends one node-to-node datagram (a Msg of kind 1 or 2, at most
 * NODE_MAX_PEER_DATAGRAM bytes), sealed when the node has a cluster key. */
int node_send_sealed(node *n, const struct sockaddr_in *to, const uint8_t *buf, size_t len);

/* Room left in a datagram for the seal. */
#define NODE_MAX_PEER_DATAGRAM (WIRE_MAX_DATAGRAM - AUTH_SEAL_LEN)

/* Builds and sends a Peer message with a given message ID; messages to
 * members are batched (outbox.h). 0, or a negative error. */
int node_send_peer(node *n, const struct sockaddr_in *to, const uint8_t *id,
                   size_t idlen, void *peer_msg);

/* As node_send_peer, for a message nobody waits for: it may stay in the
 * outbox up to NODE_LAZY_MS, to leave with others to the same peer. */
#define NODE_LAZY_MS 1

/* A replica's acks of lazy writes (PEER_FLAG_LAZY) wait up to this long,
 * or an eighth of the request timeout if less (repl.c), to leave together
 * in one PEER_WRITE_ACKS per coordinator: the coordinator waits on them
 * only to know every copy landed (and to resend, at a quarter of the
 * request timeout at the soonest). The copies themselves do not wait that
 * long: a copy late at a replica can lose to a later write stamped lower
 * by a node whose ring differs (simulator, W=1 R=1 seed 6, with copies 5
 * ms late). */
#define NODE_LAZY_ACK_MS 8
int node_send_peer_lazy(node *n, const struct sockaddr_in *to, const uint8_t *id,
                        size_t idlen, void *peer_msg);

/* Formats ip:port into buf (at least 22 bytes); returns buf. */
char *node_addr_str(uint32_t ip, uint16_t port, char *buf);

void node_log(const node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
