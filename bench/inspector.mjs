// What bench/heapcheck.mjs and bench/allocprof.mjs share: a Chrome DevTools Protocol session with
// a server started with `node --inspect=127.0.0.1:PORT`, and the reading of a sampling heap
// profile by allocation site. Plain JS (not .ts) so that `tsc -p .` does not type-check it.

/** Connects to the inspector on 127.0.0.1:port; `call(method, params)` resolves with the result. */
export async function connectInspector(port) {
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
  return { call, close: () => ws.close() };
}

/**
 * Bytes of a sampling heap profile per allocation site, and per innermost project frame
 * (dist/ or src/) with the site under it.
 */
export function allocationSites(profile, root = process.cwd()) {
  const bySite = new Map();
  const byProject = new Map();
  let total = 0;
  const where = (cf) => `${cf.functionName || '(anonymous)'} ${cf.url.replace(`file://${root}/`, '')}:${cf.lineNumber + 1}`;
  const walk = (node, stack) => {
    const s = [...stack, node.callFrame];
    if (node.selfSize > 0) {
      total += node.selfSize;
      const site = where(node.callFrame);
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
      const own = [...s].reverse().find((cf) => cf.url.includes('/dist/') || cf.url.includes('/src/'));
      const key = own === undefined ? '(no project frame)' : `${where(own)} <- ${site}`;
      byProject.set(key, (byProject.get(key) ?? 0) + node.selfSize);
    }
    for (const c of node.children) walk(c, s);
  };
  walk(profile.head, []);
  return { total, bySite, byProject };
}

export const mib = (x) => (x / 1048576).toFixed(1);

/** Prints the `top` largest entries of a site map as MiB and share of `total`. */
export function printTop(map, total, top) {
  for (const [k, v] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${mib(v).padStart(7)} MiB ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`);
  }
}
