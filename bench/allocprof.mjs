// Where a running server allocates (diagnostic): attaches to node --inspect=127.0.0.1:PORT,
// samples every allocation (also objects the scavenger or mark-compact already freed) for
// SECONDS, and prints the allocation sites and the project (src/) frames that allocate most.
//   node bench/allocprof.mjs INSPECT_PORT SECONDS [TOP]
// Allocation volume drives scavenge frequency, which drives CPU per message (bench/RESULTS.md).
const [port, secs, topArg] = process.argv.slice(2);
const top = Number(topArg ?? 30);
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
await call('HeapProfiler.enable');
await call('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
await new Promise((r) => setTimeout(r, Number(secs) * 1000));
const { profile } = await call('HeapProfiler.getSamplingProfile');
await call('HeapProfiler.stopSampling');
const bySite = new Map();
const bySrc = new Map();
let total = 0;
const root = process.cwd();
const where = (cf) => `${cf.functionName || '(anonymous)'} ${cf.url.replace(`file://${root}/`, '')}:${cf.lineNumber + 1}`;
const walk = (node, stack) => {
  const s = [...stack, node.callFrame];
  if (node.selfSize > 0) {
    total += node.selfSize;
    const site = where(node.callFrame);
    bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    const src = [...s].reverse().find((cf) => cf.url.includes('/dist/') || cf.url.includes('/src/'));
    const key = src === undefined ? '(no project frame)' : `${where(src)} <- ${site}`;
    bySrc.set(key, (bySrc.get(key) ?? 0) + node.selfSize);
  }
  for (const c of node.children) walk(c, s);
};
walk(profile.head, []);
const mb = (x) => (x / 1048576).toFixed(1);
console.log(`allocated in ${secs} s: ${mb(total)} MiB (${mb(total / Number(secs))} MiB/s)`);
const show = (m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).forEach(([k, v]) => console.log(`  ${mb(v).padStart(7)} MiB ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`));
console.log('by allocation site:'); show(bySite);
console.log('by innermost project frame <- site:'); show(bySrc);
ws.close();
