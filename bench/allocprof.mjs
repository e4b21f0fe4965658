// Where a running server allocates (diagnostic): attaches to node --inspect=127.0.0.1:PORT,
// samples every allocation (also objects the scavenger or mark-compact already freed) for
// SECONDS, and prints the allocation sites and the project frames that allocate most.
//   node bench/allocprof.mjs INSPECT_PORT SECONDS [TOP]
// Allocation volume drives scavenge frequency, which drives CPU per message (bench/RESULTS.md).
import { allocationSites, connectInspector, mib, printTop } from './inspector.mjs';

const [port, secs, topArg] = process.argv.slice(2);
const top = Number(topArg ?? 30);
const { call, close } = await connectInspector(port);
await call('HeapProfiler.enable');
await call('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
await new Promise((r) => setTimeout(r, Number(secs) * 1000));
const { profile } = await call('HeapProfiler.getSamplingProfile');
await call('HeapProfiler.stopSampling');
const { total, bySite, byProject } = allocationSites(profile);
console.log(`allocated in ${secs} s: ${mib(total)} MiB (${mib(total / Number(secs))} MiB/s)`);
console.log('by allocation site:');
printTop(bySite, total, top);
console.log('by innermost project frame <- site:');
printTop(byProject, total, top);
close();
