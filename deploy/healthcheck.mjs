// Container health check: GET /api/health on the server's HTTP listener; exit 0 when it
// answers 200 {"status":"ok"}, 1 otherwise. Used by deploy/Dockerfile's HEALTHCHECK and the
// compose files. Plain JavaScript with no dependencies, so it runs on the image's node alone.
//
// The address comes from CAREFLOW_HTTP_LISTEN, as for the server (default 0.0.0.0:8080); a
// wildcard listen address is checked on loopback. If you set httpListen in a careflow.json
// config file instead, set CAREFLOW_HTTP_LISTEN to the same value for this check.
const listen = process.env.CAREFLOW_HTTP_LISTEN?.trim() || '0.0.0.0:8080';
const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
if (m === null) {
  console.error(`healthcheck: CAREFLOW_HTTP_LISTEN=${JSON.stringify(listen)} is not host:port`);
  process.exit(1);
}
const host = m[1] ?? m[2];
const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
const url = `http://${target}:${m[3]}/api/health`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(4000) });
  const body = await res.json().catch(() => undefined);
  if (res.status === 200 && body?.status === 'ok') process.exit(0);
  console.error(`healthcheck: ${url} answered ${res.status} ${JSON.stringify(body)}`);
} catch (e) {
  console.error(`healthcheck: ${url}: ${e instanceof Error ? (e.cause?.message ?? e.message) : String(e)}`);
}
process.exit(1);
