// Live-heap check of a running server through the inspector (node --inspect=HOST:PORT).
//   node bench/heapcheck.mjs INSPECT_PORT GO_FILE
// Starts the sampling heap profiler at once, waits until GO_FILE exists, then forces two full
// GCs and prints process.memoryUsage() of the server, the V8 heap usage, and the allocation
// sites holding the most live memory (sampling heap profiler: sampled objects still alive).
// Plain JS (not .ts) so that `tsc -p .` does not type-check it.
import { existsSync } from 'node:fs';
import { allocationSites, connectInspector, mib, printTop } from './inspector.mjs';

const [port, goFile] = process.argv.slice(2);
const { call, close } = await connectInspector(port);
const mem = async () => (await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })).result.value;

await call('HeapProfiler.enable');
await call('HeapProfiler.startSampling', { samplingInterval: 16384 });
console.log(`sampling started; memoryUsage ${await mem()}`);
while (!existsSync(goFile)) await new Promise((r) => setTimeout(r, 500));

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
const { total, bySite, byProject } = allocationSites(profile);
console.log(`\nlive sampled allocations since sampling started: ${mib(total)} MiB`);
console.log('top allocation sites (self, live):');
printTop(bySite, total, 15);
console.log('by innermost project frame <- site:');
printTop(byProject, total, 15);
close();
process.exit(0);
