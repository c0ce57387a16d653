#!/usr/bin/env node
// A Redis Cluster client (node-redis's createCluster, Debian's node-redis
// package) against dht nodes run with --resp-cluster: SET, GET and MGET with
// hash tags across the nodes, going on while the test kills a node. Driven by
// tests/blackbox/test_cluster_redis_cluster.py.
//
//   NODE_PATH=/usr/share/nodejs node redis_cluster_client.js PORT[,PORT...]
//
// Writes 300 keys in 30 hash-tag groups ("{g7}:3") with MSET and reads them
// back with MGET, checks SET/GET of keys across slots, then prints "READY" and
// goes on rewriting and reading the keys until a line arrives on stdin (the
// test kills a node meanwhile). An operation that fails is tried again (100 ms
// apart, 50 times at most). node-redis 4 asks for the slot map again only on
// -MOVED or -ASK, never when a node stops answering, so after 3 failures in a
// row the client is made again from the ports given (what an application using
// it has to do). Then every key is read back: its value must be the last one
// acknowledged, or one written after it whose acknowledgement was lost.
// Prints one JSON line: {ops, retried, reconnects, gave_up, wrong, final_bad,
// nodes_seen, redirect_loops (commands given up after 16 -MOVED)} and exits 0 if gave_up, wrong and final_bad are all 0.
'use strict';
const { createCluster } = require('redis');

const ports = (process.argv[2] || '').split(',').filter(Boolean).map(Number);
if (!ports.length) {
  console.error('usage: redis_cluster_client.js PORT[,PORT...]');
  process.exit(64);
}

const GROUPS = 30, PER_GROUP = 10;
const stats = {
  ops: 0, retried: 0, reconnects: 0, gave_up: 0, wrong: 0, final_bad: 0, nodes_seen: 0, redirect_loops: 0,
};
const acked = new Map();   // key -> last value acknowledged
const pending = new Map(); // key -> values written since, not acknowledged
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const key = (g, i) => `{g${g}}:${i}`;
let cluster = null;

// node-redis 4's connect() gives up when its first root node refuses the
// connection (the next ones are tried only when the first answers CLUSTER
// NODES with an error), so each port is tried first in turn.
async function connect() {
  let last;
  for (let first = 0; first < ports.length; first++) {
    try {
      return await connectFrom(ports.slice(first).concat(ports.slice(0, first)));
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

async function connectFrom(order) {
  const c = createCluster({
    rootNodes: order.map((port) => ({ socket: { host: '127.0.0.1', port } })),
    defaults: {
      disableOfflineQueue: true, // a command to a node that is down fails now
      socket: {
        connectTimeout: 1000,
        reconnectStrategy: (retries) => (retries >= 3 ? new Error('node down') : 100),
      },
    },
    maxCommandRedirections: 16,
  });
  c.on('error', () => {}); // connection errors while a node is down: retried below
  try {
    await c.connect();
  } catch (e) {
    await c.disconnect().catch(() => {});
    throw e;
  }
  return c;
}

async function reconnect() {
  stats.reconnects++;
  const old = cluster;
  cluster = null;
  if (old) await old.disconnect().catch(() => {});
  try {
    cluster = await connect();
  } catch (e) {
    if (process.env.VERBOSE) console.error(`connect: ${e.message}`);
  }
}

async function attempt(what, fn) {
  for (let t = 0; t < 50; t++) {
    try {
      if (!cluster) throw new Error('not connected');
      const r = await fn();
      stats.ops++;
      return r;
    } catch (e) {
      stats.retried++;
      // past maxCommandRedirections, node-redis throws the last -MOVED
      if (e.message && e.message.startsWith('MOVED')) stats.redirect_loops++;
      if (t === 0 && process.env.VERBOSE) console.error(`${what}: ${e.message}`);
      await sleep(100);
      if (t % 3 === 2) await reconnect();
    }
  }
  stats.gave_up++;
  console.error(`${what}: gave up after 50 tries`);
  return undefined;
}

async function writeGroup(g, round) {
  const pairs = [];
  for (let i = 0; i < PER_GROUP; i++) {
    const v = `r${round}-${key(g, i)}`;
    pairs.push([key(g, i), v]);
    if (!pending.has(key(g, i))) pending.set(key(g, i), []);
    pending.get(key(g, i)).push(v);
  }
  const r = await attempt(`MSET group ${g}`, () => cluster.mSet(pairs));
  if (r === 'OK')
    for (const [k, v] of pairs) {
      acked.set(k, v);
      pending.set(k, []);
    }
}

// A value read is fine if it is the last acknowledged or one written since.
function fine(k, v) {
  return v === acked.get(k) || (pending.get(k) || []).includes(v);
}

async function readGroup(g) {
  const keys = [];
  for (let i = 0; i < PER_GROUP; i++) keys.push(key(g, i));
  const vals = await attempt(`MGET group ${g}`, () => cluster.mGet(keys));
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

  cluster = await connect();
  stats.nodes_seen = cluster.getMasters().length;
  for (let g = 0; g < GROUPS; g++) await writeGroup(g, 0);
  for (let g = 0; g < GROUPS; g++) await readGroup(g);
  for (let i = 0; i < 100; i++) { // keys without tags, across slots
    const k = `plain:${i}`;
    await attempt(`SET ${k}`, () => cluster.set(k, `v${i}`));
    const v = await attempt(`GET ${k}`, () => cluster.get(k));
    if (v !== `v${i}`) { stats.wrong++; console.error(`GET ${k}: ${v}`); }
  }
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
  if (cluster) await cluster.disconnect().catch(() => {});
  process.exit(stats.gave_up || stats.wrong || stats.final_bad ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
