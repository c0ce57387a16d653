/*
 * node: the state of one dht-server process, shared by its modules.
 *
 * One libuv loop runs everything; no module takes a lock. The node owns its
 * store, ring, member list and reply cache; modules reach them through the
 * node. server.c owns the UDP socket and the dispatch of datagrams,
 * members.c the member list and gossip, repl.c the coordination of client
 * operations over the replicas and the repair of replicas.
 */
#ifndef DHT_NODE_H
#define DHT_NODE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cache.h"
#include "store.h"

typedef struct members members;
typedef struct repl repl;
typedef struct resp_server resp_server;
typedef struct http_server http_server;
typedef struct outbox outbox;

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
    unsigned gossip_ms;         /* gossip period */
    unsigned fanout;            /* peers per gossip round */
    unsigned suspect_ms;        /* silence before a member is suspect */
    unsigned dead_ms;           /* silence before it is dead */
    unsigned request_timeout_ms;/* a coordinator's wait for replicas */
    unsigned sync_ms;           /* anti-entropy period */
    uint64_t cache_ms;          /* reply cache TTL */
    size_t cache_bytes;
    uint64_t tombstone_ms;      /* tombstone lifetime before GC */
    uint16_t resp_port;         /* 0: off */
    uint16_t http_port;         /* 0: off */
    bool quiet;
} node_config;

/* Counters shown by /metrics and INFO. */
typedef struct node_stats {
    uint64_t requests[256];     /* by client command */
    uint64_t errors[8];         /* replies by error code */
    uint64_t dropped_checksum;
    uint64_t dropped_malformed;
    uint64_t cache_hits;
    uint64_t forwarded;
    uint64_t peer_msgs;
    uint64_t lat_us[32];        /* coordinated latency, log2 buckets of us */
    uint64_t lat_sum_us;        /* total of the latencies counted in lat_us */
} node_stats;

typedef struct node {
    node_config cfg;
    uv_loop_t *loop;
    uv_udp_t udp;
    uv_timer_t tick;            /* 50 ms housekeeping */
    uv_signal_t sigint, sigterm;
    struct sockaddr_in self;    /* advertised address */
    uint64_t incarnation;       /* ms at start */
    uint64_t hlc;               /* last stamp issued or seen */
    uint16_t node_tag;          /* low bits of stamps: who issued them */
    store *store;
    cache *cache;
    members *members;
    repl *repl;
    resp_server *resp;
    http_server *http;
    outbox *outbox;             /* batches node-to-node messages */
    node_stats stats;
    uint64_t started_ms;
} node;

/* Milliseconds of the loop's monotonic clock (cached per loop iteration). */
uint64_t node_now(const node *n);

/* Wall-clock milliseconds since the epoch. */
uint64_t node_wall_ms(void);

/* A fresh stamp, greater than any issued or seen by this node. */
uint64_t node_stamp(node *n);

/* Tells the clock of a stamp seen from elsewhere. */
void node_stamp_seen(node *n, uint64_t stamp);

/* Sends one datagram to `to`. Never blocks; the buffer may be reused once
 * it returns. 0, or a negative libuv error (the datagram is lost). */
int node_send(node *n, const struct sockaddr_in *to, const uint8_t *buf, size_t len);

/* Builds and sends a Peer message with a given message ID. */
int node_send_peer(node *n, const struct sockaddr_in *to, const uint8_t *id,
                   size_t idlen, void *peer_msg);

/* Formats ip:port into buf (at least 22 bytes); returns buf. */
char *node_addr_str(uint32_t ip, uint16_t port, char *buf);

void node_log(const node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
