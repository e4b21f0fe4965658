// Live-heap check of a running server through the inspector (node --inspect=HOST:PORT).
//   node bench/heapcheck.mjs INSPECT_PORT GO_FILE
// Starts the sampling heap profiler at once, waits until GO_FILE exists, then forces two full
// GCs and prints process.memoryUsage() of the server, the V8 heap usage, and the allocation
// sites holding the most live memory (sampling heap profiler: sampled objects still alive).
// Plain JS (not .ts) so that `tsc -p .` does not type-check it.
import { existsSync } from 'node:fs';

const [port, goFile] = process.argv.slice(2);
const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const ws = new WebSocket(list[0].webSocketDebuggerUrl);
await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
let id = 0;
const pending = new Map();
ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  if (m.id !== undefined && pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); }
};
const call = (method, params = {}) => new Promise((res, rej) => {
  const i = ++id;
  pending.set(i, (m) => (m.error ? rej(new Error(`${method}: ${JSON.stringify(m.error)}`)) : res(m.result)));
  ws.send(JSON.stringify({ id: i, method, params }));
});
const mem = async () => (await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })).result.value;

await call('HeapProfiler.enable');
await call('HeapProfiler.startSampling', { samplingInterval: 16384 });
console.log(`sampling started; memoryUsage ${await mem()}`);
while (!existsSync(goFile)) await new Promise((r) => setTimeout(r, 500));

const mib = (x) => (x / 1048576).toFixed(1);
const before = JSON.parse(await mem());
// Committed vs used per V8 space: where RSS above the live heap sits (new space, old-space slack).
const spacesExpr = "JSON.stringify(process.getBuiltinModule('node:v8').getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size, s.space_used_size]))";
const spaces = async () => JSON.parse((await call('Runtime.evaluate', { expression: spacesExpr, returnByValue: true })).result.value);
for (const [n, size, used] of await spaces()) if (size > 1048576) console.log(`before GC: ${n} committed ${mib(size)} MiB, used ${mib(used)} MiB`);
await call('HeapProfiler.collectGarbage');
await call('HeapProfiler.collectGarbage');
const after = JSON.parse(await mem());
const hu = await call('Runtime.getHeapUsage');
console.log(`before GC: rss ${mib(before.rss)} MiB, heapTotal ${mib(before.heapTotal)}, heapUsed ${mib(before.heapUsed)}, external ${mib(before.external)}, arrayBuffers ${mib(before.arrayBuffers)}`);
console.log(`after 2 full GCs: rss ${mib(after.rss)} MiB, heapTotal ${mib(after.heapTotal)}, heapUsed ${mib(after.heapUsed)}, external ${mib(after.external)}, arrayBuffers ${mib(after.arrayBuffers)}`);
console.log(`Runtime.getHeapUsage: used ${mib(hu.usedSize)} MiB of ${mib(hu.totalSize)} MiB`);

const { profile } = await call('HeapProfiler.getSamplingProfile');
await call('HeapProfiler.stopSampling');
// self size per allocation site, and per nearest project (src/) frame on the stack
const bySite = new Map();
const bySrc = new Map();
let total = 0;
const root = process.cwd();
const where = (cf) => `${cf.functionName || '(anonymous)'} ${cf.url.replace(`file://${root}/`, '')}:${cf.lineNumber + 1}`;
const walk = (node, stack) => {
  const s = [...stack, node.callFrame];
  if (node.selfSize > 0) {
    total += node.selfSize;
    const k = where(node.callFrame);
    bySite.set(k, (bySite.get(k) ?? 0) + node.selfSize);
    const src = [...s].reverse().find((cf) => cf.url.includes('/src/'));
    const k2 = src ? where(src) : '(no src frame)';
    bySrc.set(k2, (bySrc.get(k2) ?? 0) + node.selfSize);
  }
  for (const c of node.children) walk(c, s);
};
walk(profile.head, []);
console.log(`\nlive sampled allocations since sampling started: ${mib(total)} MiB`);
console.log('top allocation sites (self, live):');
for (const [k, v] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${mib(v).padStart(7)} MiB  ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`);
console.log('by innermost project frame (src/):');
for (const [k, v] of [...bySrc].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${mib(v).padStart(7)} MiB  ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`);
ws.close();
process.exit(0);
