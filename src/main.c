/* dht-server: command line. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth.h"
#include "repl.h"
#include "resp.h"
#include "server.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: dht-server PORT PEERS_FILE [options]\n"
        "       dht-server PEERS_FILE PORT [options]\n"
        "\n"
        "Serves the dht UDP protocol on PORT. PEERS_FILE lists the other nodes, one\n"
        "ip:port a line ('#' comments allowed; the node's own address is skipped;\n"
        "an empty file makes a single node).\n"
        "\n"
        "options:\n"
        "  --bind IP              address to listen on (0.0.0.0)\n"
        "  --advertise IP         address the other nodes know this one by\n"
        "                         (default: found from the route to the peers)\n"
        "  --max-memory SIZE      cap on stored key+value bytes, K/M/G suffixes (64M)\n"
        "  --data-dir DIR         keep data in LMDB under DIR (default: memory only)\n"
        "  --replicas N           copies of each key (3, at most %d)\n"
        "  --write-quorum W       acks a write waits for (2)\n"
        "  --read-quorum R        replies a read waits for (2)\n"
        "  --vnodes N             ring points per node (64)\n"
        "  --gossip-ms MS         probe and gossip period (200)\n"
        "  --fanout K             probe helpers, and peers gossiped to (3)\n"
        "  --suspicion-ms MS      an unrefuted suspicion is a death after this\n"
        "                         (1000; longer past 100 members: x1.5 at 1,000)\n"
        "  --forget-ms MS         a member dead this long is forgotten (3600000)\n"
        "  --suspect-ms A --dead-ms B   older flags: suspicion of B - A ms\n"
        "  --request-timeout MS   coordinator's wait for replicas (400); live but slow\n"
        "                         replicas are waited for up to 5 times as long\n"
        "  --max-inflight N       client operations coordinated at once, not yet\n"
        "                         answered; past it clients get SYSTEM_OVERLOAD (2048)\n"
        "  --max-lag-ms MS        loop lag past which new client operations get\n"
        "                         SYSTEM_OVERLOAD (250; 0: never)\n"
        "  --majority-ms MS       refuse writes while fewer members\n"
        "                         are alive than died within MS (a minority side of a\n"
        "                         partition): consistency over availability (0: off,\n"
        "                         both sides take writes; 60000 is a choice)\n"
        "  --sync-ms MS           anti-entropy period (2000)\n"
        "  --tombstone-ms MS      a REMOVE's tombstone is kept at least this long\n"
        "                         (3600000; then collected once every member is\n"
        "                         alive or forgotten and membership is still)\n"
        "  --cache-ms MS          reply cache lifetime, at-most-once window (5000)\n"
        "  --resp-port PORT       also speak Redis RESP2 on this TCP port\n"
        "  --resp-bind IP         address of the Redis port (default: --bind's)\n"
        "  --resp-cluster         the Redis port speaks Redis Cluster: a command on a\n"
        "                         key whose hash slot another node serves first is\n"
        "                         answered -MOVED slot ip:port (that node's Redis\n"
        "                         port; served here instead for a few seconds after\n"
        "                         a membership change touches the slot), keys of\n"
        "                         one command in different slots -CROSSSLOT; for\n"
        "                         cluster clients (redis-cli -c, redis-benchmark\n"
        "                         --cluster, ioredis Cluster). Without\n"
        "                         it any node serves any key; CLUSTER SLOTS, NODES,\n"
        "                         SHARDS, INFO, KEYSLOT and MYID answer either way\n"
        "  --requirepass-file F   Redis clients must AUTH with the password on F's\n"
        "                         first line (--requirepass PASSWORD: the same,\n"
        "                         given on the command line)\n"
        "  --protected-mode no    serve Redis clients off loopback without a\n"
        "                         password (default yes: they get -DENIED)\n"
        "  --maxclients N         Redis clients at once (%d; fewer if the open\n"
        "                         file limit is lower)\n"
        "  --resp-timeout S       close a Redis client idle S seconds (0: never)\n"
        "  --resp-query-timeout S close a Redis client whose command is not whole\n"
        "                         S seconds after it began (%d)\n"
        "  --resp-max-buffer SIZE cap on the bytes of commands and replies held for\n"
        "                         all Redis clients; past it, the client holding\n"
        "                         the most is closed (256M)\n"
        "  --http-bind IP         address of the --http-port (127.0.0.1)\n"
        "  --http-port PORT       serve /metrics, /status and / on this TCP port\n"
        "  --cluster-key-file F   the cluster's secret (dht-cli keygen F): node-to-node\n"
        "                         messages are sealed with it and others dropped;\n"
        "                         without it they are taken only from loopback and\n"
        "                         private addresses\n"
        "  --admin-from CIDR      who may send SHUTDOWN and WIPEOUT (repeatable;\n"
        "                         default: 127.0.0.0/8 and the members' hosts)\n"
        "  --clients-from CIDR    who may send UDP client requests (repeatable;\n"
        "                         default: anyone); others get no answer\n"
        "  --quiet                log only errors\n"
        "  -h, --help             this text\n", REPL_MAX_N, RESP_DEFAULT_MAXCLIENTS,
        RESP_DEFAULT_QUERY_TIMEOUT);
}

/* Parses "64M"-style sizes. */
static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    while (isspace((unsigned char)*s)) s++;
    if (*s == '-') return -1; /* strtoull takes "-1" as the largest size */
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return -1;
    unsigned long long mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K': mul = 1ull << 10; end++; break;
    case 'M': mul = 1ull << 20; end++; break;
    case 'G': mul = 1ull << 30; end++; break;
    case 0: break;
    default: return -1;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v > (~0ull) / mul) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int is_number(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* The Redis and HTTP front ends' options (resp.h, http.h); those from
 * OPT_RESP_BIND to OPT_MAX_BUFFER apply to the Redis port alone. */
enum {
    OPT_HTTP_BIND = 1024, OPT_RESP_BIND, OPT_REQUIREPASS, OPT_REQUIREPASS_FILE, OPT_PROTECTED,
    OPT_MAXCLIENTS, OPT_RESP_TIMEOUT, OPT_QUERY_TIMEOUT, OPT_MAX_BUFFER, OPT_RESP_CLUSTER
};

enum {
    OPT_BIND = 256, OPT_ADVERTISE, OPT_MAXMEM, OPT_DATADIR, OPT_REPLICAS, OPT_W, OPT_R, OPT_VNODES,
    OPT_GOSSIP, OPT_FANOUT, OPT_SUSPICION, OPT_FORGET, OPT_SUSPECT, OPT_DEAD, OPT_TIMEOUT, OPT_SYNC, OPT_TOMB, OPT_CACHE, OPT_RESP, OPT_HTTP, OPT_QUIET,
    OPT_KEYFILE, OPT_ADMIN, OPT_CLIENTS, OPT_INFLIGHT, OPT_LAG, OPT_MAJORITY
};

#define MAX_ADMIN_NETS 16

int main(int argc, char **argv) {
    node_config cfg;
    node_defaults(&cfg);
    static const struct option opts[] = {
        {"bind", required_argument, 0, OPT_BIND},
        {"advertise", required_argument, 0, OPT_ADVERTISE},
        {"max-memory", required_argument, 0, OPT_MAXMEM},
        {"data-dir", required_argument, 0, OPT_DATADIR},
        {"replicas", required_argument, 0, OPT_REPLICAS},
        {"write-quorum", required_argument, 0, OPT_W},
        {"read-quorum", required_argument, 0, OPT_R},
        {"vnodes", required_argument, 0, OPT_VNODES},
        {"gossip-ms", required_argument, 0, OPT_GOSSIP},
        {"fanout", required_argument, 0, OPT_FANOUT},
        {"suspicion-ms", required_argument, 0, OPT_SUSPICION},
        {"forget-ms", required_argument, 0, OPT_FORGET},
        {"suspect-ms", required_argument, 0, OPT_SUSPECT},
        {"dead-ms", required_argument, 0, OPT_DEAD},
        {"request-timeout", required_argument, 0, OPT_TIMEOUT},
        {"sync-ms", required_argument, 0, OPT_SYNC},
        {"tombstone-ms", required_argument, 0, OPT_TOMB},
        {"cache-ms", required_argument, 0, OPT_CACHE},
        {"resp-port", required_argument, 0, OPT_RESP},
        {"http-port", required_argument, 0, OPT_HTTP},
        {"http-bind", required_argument, 0, OPT_HTTP_BIND},
        {"resp-bind", required_argument, 0, OPT_RESP_BIND},
        {"resp-cluster", no_argument, 0, OPT_RESP_CLUSTER},
        {"requirepass", required_argument, 0, OPT_REQUIREPASS},
        {"requirepass-file", required_argument, 0, OPT_REQUIREPASS_FILE},
        {"protected-mode", required_argument, 0, OPT_PROTECTED},
        {"maxclients", required_argument, 0, OPT_MAXCLIENTS},
        {"resp-timeout", required_argument, 0, OPT_RESP_TIMEOUT},
        {"resp-query-timeout", required_argument, 0, OPT_QUERY_TIMEOUT},
        {"resp-max-buffer", required_argument, 0, OPT_MAX_BUFFER},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"cluster-key-file", required_argument, 0, OPT_KEYFILE},
        {"admin-from", required_argument, 0, OPT_ADMIN},
        {"clients-from", required_argument, 0, OPT_CLIENTS},
        {"max-inflight", required_argument, 0, OPT_INFLIGHT},
        {"max-lag-ms", required_argument, 0, OPT_LAG},
        {"majority-ms", required_argument, 0, OPT_MAJORITY},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    unsigned long v, suspect_ms = 0, dead_ms = 0;
    bool w_set = false, r_set = false; /* --write-quorum, --read-quorum given */
    static auth_keys keys;
    static auth_net admin[MAX_ADMIN_NETS], clients[MAX_ADMIN_NETS];
    const char *keyfile = NULL;
    const char *resp_only = NULL, *http_only = NULL; /* a front end's option, given */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *bad = NULL;
        unsigned long lo_hi[2] = {0, 0}; /* a number flag's range, for its error */
        switch (c) {
        case OPT_BIND: cfg.bind_ip = optarg; break;
        case OPT_ADVERTISE: cfg.advertise_ip = optarg; break;
        case OPT_MAXMEM:
            if (parse_size(optarg, &cfg.max_memory) || !cfg.max_memory)
                bad = "--max-memory (a size above 0: 512M, 4G)";
            break;
        case OPT_DATADIR: cfg.data_dir = optarg; break;
#define UINT_OPT(code, name, field, lo, hi) \
        case code: \
            if (parse_uint(optarg, hi, &v) || v + 1 < (unsigned long)(lo) + 1) \
                bad = name, lo_hi[0] = (unsigned long)(lo), lo_hi[1] = (unsigned long)(hi); \
            else cfg.field = v; \
            break;
        UINT_OPT(OPT_REPLICAS, "--replicas", replicas, 1, REPL_MAX_N)
        UINT_OPT(OPT_W, "--write-quorum", write_quorum, 1, REPL_MAX_N)
        UINT_OPT(OPT_R, "--read-quorum", read_quorum, 1, REPL_MAX_N)
        UINT_OPT(OPT_VNODES, "--vnodes", vnodes, 1, 4096)
        UINT_OPT(OPT_GOSSIP, "--gossip-ms", gossip_ms, 10, 60000)
        UINT_OPT(OPT_FANOUT, "--fanout", fanout, 1, 64)
        UINT_OPT(OPT_SUSPICION, "--suspicion-ms", suspicion_ms, 10, 600000)
        UINT_OPT(OPT_FORGET, "--forget-ms", forget_ms, 1000, 30ul * 86400 * 1000)
        case OPT_SUSPECT:
            if (parse_uint(optarg, 600000, &v)) bad = "--suspect-ms"; else suspect_ms = v;
            break;
        case OPT_DEAD:
            if (parse_uint(optarg, 600000, &v)) bad = "--dead-ms"; else dead_ms = v;
            break;
        UINT_OPT(OPT_TIMEOUT, "--request-timeout", request_timeout_ms, 8, 60000)
        UINT_OPT(OPT_SYNC, "--sync-ms", sync_ms, 10, 3600000)
        UINT_OPT(OPT_TOMB, "--tombstone-ms", tombstone_ms, 1000, 30ul * 86400 * 1000)
        UINT_OPT(OPT_INFLIGHT, "--max-inflight", max_inflight, 1, 60000)
        UINT_OPT(OPT_LAG, "--max-lag-ms", max_lag_ms, 0, 600000)
        UINT_OPT(OPT_MAJORITY, "--majority-ms", majority_ms, 0, 86400000)
        UINT_OPT(OPT_CACHE, "--cache-ms", cache_ms, 0, 3600000)
        UINT_OPT(OPT_RESP, "--resp-port", resp_port, 1, 65535)
        UINT_OPT(OPT_HTTP, "--http-port", http_port, 1, 65535)
        case OPT_HTTP_BIND: cfg.http_bind = optarg; break;
        case OPT_RESP_BIND: cfg.resp_bind = optarg; break;
        case OPT_RESP_CLUSTER: cfg.resp_cluster = true; break;
        case OPT_REQUIREPASS:   /* kept, and wiped from what ps shows (never printed) */
            if (!*optarg || strlen(optarg) > RESP_MAX_PASSWORD || !(cfg.requirepass = strdup(optarg))) {
                fprintf(stderr, "dht-server: --requirepass: 1 to %d bytes\n", RESP_MAX_PASSWORD);
                return 64;
            }
            memset(optarg, 0, strlen(optarg));
            break;
        case OPT_REQUIREPASS_FILE:
            if (!(cfg.requirepass = resp_password_from_file(optarg))) return 64;
            break;
        case OPT_PROTECTED:
            if (strcmp(optarg, "yes") && strcmp(optarg, "no")) bad = "--protected-mode";
            else cfg.resp_unprotected = strcmp(optarg, "no") == 0;
            break;
        UINT_OPT(OPT_MAXCLIENTS, "--maxclients", maxclients, 1, 1000000)
        UINT_OPT(OPT_RESP_TIMEOUT, "--resp-timeout", resp_timeout_s, 0, 365ul * 86400)
        UINT_OPT(OPT_QUERY_TIMEOUT, "--resp-query-timeout", resp_query_timeout_s, 1, 86400)
        case OPT_MAX_BUFFER:
            if (parse_size(optarg, &cfg.resp_max_buffer) || cfg.resp_max_buffer < (1u << 20))
                bad = "--resp-max-buffer";
            break;
#undef UINT_OPT
        case OPT_QUIET: cfg.quiet = true; break;
        case OPT_KEYFILE: keyfile = optarg; break;
        case OPT_ADMIN:
            if (cfg.admin_nets_n == MAX_ADMIN_NETS || auth_parse_cidr(optarg, &admin[cfg.admin_nets_n]))
                bad = "--admin-from (an IPv4 address or network a.b.c.d/n, at most 16)";
            else
                cfg.admin_nets = admin, cfg.admin_nets_n++;
            break;
        case OPT_CLIENTS:
            if (cfg.client_nets_n == MAX_ADMIN_NETS ||
                auth_parse_cidr(optarg, &clients[cfg.client_nets_n]))
                bad = "--clients-from (an IPv4 address or network a.b.c.d/n, at most 16)";
            else
                cfg.client_nets = clients, cfg.client_nets_n++;
            break;
        case 'h': usage(stdout); return 0;
        default: /* getopt said what was wrong */
            fprintf(stderr, "Try 'dht-server --help'.\n");
            return 64;
        }
        if (c == OPT_HTTP_BIND || (c >= OPT_RESP_BIND && c <= OPT_MAX_BUFFER))
            for (const struct option *o = opts; o->name; o++)
                if (o->val == c) *(c == OPT_HTTP_BIND ? &http_only : &resp_only) = o->name;
        w_set |= c == OPT_W;
        r_set |= c == OPT_R;
        if (bad) {
            if (lo_hi[1])
                fprintf(stderr, "dht-server: bad value for %s: %s (expected %lu to %lu)\n", bad,
                        optarg, lo_hi[0], lo_hi[1]);
            else
                fprintf(stderr, "dht-server: bad value for %s: %s\n", bad, optarg);
            return 64;
        }
    }
    if (argc - optind != 2) {
        if (argc - optind < 2)
            fprintf(stderr, "dht-server: expected a port number and a peers file, got %s\n",
                    argc == optind ? "neither" : "one of them");
        else
            fprintf(stderr, "dht-server: unexpected argument '%s'\n", argv[optind + 2]);
        fprintf(stderr, "Try 'dht-server --help'.\n");
        return 64;
    }
    const char *a = argv[optind], *b = argv[optind + 1];
    const char *port = is_number(a) ? a : b;
    cfg.peers_file = is_number(a) ? b : a;
    if (!is_number(port) || parse_uint(port, 65535, &v) || v == 0) {
        fprintf(stderr, "dht-server: expected a port number (1-65535) and a peers file\n");
        return 64;
    }
    cfg.port = (uint16_t)v;
    if (cfg.resp_cluster && !cfg.resp_port) {
        fprintf(stderr, "dht-server: --resp-cluster needs --resp-port\n");
        return 64;
    }
    /* without its port such an option was taken and did nothing, unsaid */
    if ((resp_only && !cfg.resp_port) || (http_only && !cfg.http_port)) {
        fprintf(stderr, "dht-server: --%s needs %s (the port it applies to)\n",
                resp_only && !cfg.resp_port ? resp_only : http_only,
                resp_only && !cfg.resp_port ? "--resp-port" : "--http-port");
        return 64;
    }
    /* a quorum past N is never made: every operation failed (and W=2 with
     * --replicas 1, from the defaults, was no answer at all). Given, it is
     * refused; from the defaults, it comes down to N. */
    if ((w_set && cfg.write_quorum > cfg.replicas) || (r_set && cfg.read_quorum > cfg.replicas)) {
        fprintf(stderr, "dht-server: --write-quorum and --read-quorum cannot exceed --replicas "
                        "(%u): a quorum of more nodes than hold a key is never made\n", cfg.replicas);
        return 64;
    }
    if (cfg.write_quorum > cfg.replicas) cfg.write_quorum = cfg.replicas;
    if (cfg.read_quorum > cfg.replicas) cfg.read_quorum = cfg.replicas;
    if (suspect_ms || dead_ms) { /* the older flags: silence to suspect, to dead */
        const char *dead_dflt = dead_ms ? "" : " (its default)";
        const char *suspect_dflt = suspect_ms ? "" : " (its default)";
        if (!dead_ms) dead_ms = 2000;
        if (!suspect_ms) suspect_ms = 1000;
        /* a suspicion under 10 ms (--suspicion-ms's least) was made 10 ms:
         * a member died before it could refute the suspicion */
        if (dead_ms < suspect_ms + 10) {
            fprintf(stderr, "dht-server: --dead-ms %lu%s must be at least 10 past --suspect-ms "
                            "%lu%s: the suspicion lasts the difference\n",
                    dead_ms, dead_dflt, suspect_ms, suspect_dflt);
            return 64;
        }
        cfg.suspicion_ms = (unsigned)(dead_ms - suspect_ms);
    }
    if (keyfile) {
        char err[256];
        struct stat st;
        if (auth_load(keyfile, &keys, err, sizeof err) != 0) {
            fprintf(stderr, "dht-server: --cluster-key-file: %s\n", err);
            return 64;
        }
        if (stat(keyfile, &st) == 0 && (st.st_mode & 077))
            fprintf(stderr, "dht-server: warning: %s can be read by others (chmod 600 it)\n", keyfile);
        cfg.keys = &keys;
    } else {
        fprintf(stderr, "dht-server: warning: no --cluster-key-file: node-to-node messages are "
                        "not authenticated, and are taken only from loopback and private "
                        "addresses (README: Security of the cluster)\n");
    }
    return server_run(&cfg) == 0 ? 0 : 1;
}
