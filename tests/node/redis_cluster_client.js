#!/usr/bin/env node
// A Redis Cluster client (ioredis's Cluster) against dht nodes run with
// --resp-cluster: SET, GET and MGET with hash tags across the nodes, going on
// while the test kills a node. Driven by tests/blackbox/test_cluster_redis_cluster.py.
//
//   node redis_cluster_client.js PORT[,PORT...]
//
// Writes 300 keys in 30 hash-tag groups ("{g7}:3") with MSET and reads them
// back with MGET, checks SET/GET of keys across slots, then prints "READY" and
// goes on rewriting and reading the keys until a line arrives on stdin (the
// test kills a node meanwhile). An operation that fails is tried again (100 ms
// apart, 50 times at most). Then every key is read back: its value must be
// the last one acknowledged, or one written after it whose acknowledgement
// was lost. Prints one JSON line: {ops, retried, gave_up, wrong, final_bad,
// nodes_seen} and exits 0 if gave_up, wrong and final_bad are all 0.
'use strict';
const Redis = require('ioredis');

const ports = (process.argv[2] || '').split(',').filter(Boolean).map(Number);
if (!ports.length) {
  console.error('usage: redis_cluster_client.js PORT[,PORT...]');
  process.exit(64);
}

const cluster = new Redis.Cluster(ports.map((port) => ({ host: '127.0.0.1', port })), {
  scaleReads: 'master',
  maxRedirections: 16,
  retryDelayOnFailover: 100,
  retryDelayOnClusterDown: 100,
  retryDelayOnTryAgain: 100,
  slotsRefreshTimeout: 2000,
  clusterRetryStrategy: (times) => Math.min(100 * times, 1000),
  redisOptions: { connectTimeout: 1000, maxRetriesPerRequest: 2 },
});
cluster.on('error', () => {}); // connection errors while a node is down: retried below

const GROUPS = 30, PER_GROUP = 10;
const stats = { ops: 0, retried: 0, gave_up: 0, wrong: 0, final_bad: 0, nodes_seen: 0 };
const acked = new Map();   // key -> last value acknowledged
const pending = new Map(); // key -> values written since, not acknowledged
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const key = (g, i) => `{g${g}}:${i}`;

async function attempt(what, fn) {
  for (let t = 0; t < 50; t++) {
    try {
      const r = await fn();
      stats.ops++;
      return r;
    } catch (e) {
      stats.retried++;
      if (t === 0 && process.env.VERBOSE) console.error(`${what}: ${e.message}`);
      await sleep(100);
    }
  }
  stats.gave_up++;
  console.error(`${what}: gave up after 50 tries`);
  return undefined;
}

async function writeGroup(g, round) {
  const args = [];
  for (let i = 0; i < PER_GROUP; i++) {
    const v = `r${round}-${key(g, i)}`;
    args.push(key(g, i), v);
    if (!pending.has(key(g, i))) pending.set(key(g, i), []);
    pending.get(key(g, i)).push(v);
  }
  const r = await attempt(`MSET group ${g}`, () => cluster.mset(...args));
  if (r === 'OK')
    for (let i = 0; i < PER_GROUP; i++) {
      acked.set(key(g, i), args[2 * i + 1]);
      pending.set(key(g, i), []);
    }
}

// A value read is fine if it is the last acknowledged or one written since.
function fine(k, v) {
  return v === acked.get(k) || (pending.get(k) || []).includes(v);
}

async function readGroup(g) {
  const keys = [];
  for (let i = 0; i < PER_GROUP; i++) keys.push(key(g, i));
  const vals = await attempt(`MGET group ${g}`, () => cluster.mget(...keys));
  if (!vals) return;
  keys.forEach((k, i) => {
    if (!fine(k, vals[i])) {
      stats.wrong++;
      console.error(`MGET ${k}: ${vals[i]}, expected ${acked.get(k)}`);
    }
  });
}

async function main() {
  let stop = false;
  process.stdin.on('data', () => { stop = true; });
  process.stdin.on('end', () => { stop = true; });

  for (let g = 0; g < GROUPS; g++) await writeGroup(g, 0);
  for (let g = 0; g < GROUPS; g++) await readGroup(g);
  for (let i = 0; i < 100; i++) { // keys without tags, across slots
    const k = `plain:${i}`;
    await attempt(`SET ${k}`, () => cluster.set(k, `v${i}`));
    const v = await attempt(`GET ${k}`, () => cluster.get(k));
    if (v !== `v${i}`) { stats.wrong++; console.error(`GET ${k}: ${v}`); }
  }
  stats.nodes_seen = cluster.nodes('master').length;
  console.log('READY');

  for (let round = 1; !stop; round++) {
    for (let g = 0; g < GROUPS && !stop; g++) {
      await writeGroup(g, round);
      await readGroup(g);
    }
  }

  for (let g = 0; g < GROUPS; g++)
    for (let i = 0; i < PER_GROUP; i++) {
      const k = key(g, i);
      const v = await attempt(`GET ${k}`, () => cluster.get(k));
      if (!fine(k, v)) {
        stats.final_bad++;
        console.error(`final GET ${k}: ${v}, expected ${acked.get(k)}`);
      }
    }
  console.log(JSON.stringify(stats));
  cluster.disconnect();
  process.exit(stats.gave_up || stats.wrong || stats.final_bad ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
