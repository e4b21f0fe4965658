// Run by test/interop/install.test.ts inside the private network namespace where the
// installed server runs (nsenter -n): asks it what a phone and a browser would, on loopback,
// and prints one JSON line. Every wait is bounded (RawSipClient: 5 s per transaction).
//
//   node test/interop/install-probe.ts SIP_PORT HTTP_PORT DOMAIN [SIP_USERNAME PASSWORD]
//
// {"options":{"status":200,"allow":"..."},"web":{"status":200,"type":"text/html...","html":true},
//  "register":[401,200]}   (register only with credentials)
import { RawSipClient } from './sip-raw.ts';

const [sipArg, httpArg, domain = '127.0.0.1', username, password] = process.argv.slice(2);
const sipPort = Number(sipArg);
const httpPort = Number(httpArg);
if (!Number.isInteger(sipPort) || !Number.isInteger(httpPort)) {
  console.error('usage: install-probe.ts SIP_PORT HTTP_PORT DOMAIN [SIP_USERNAME PASSWORD]');
  process.exit(2);
}

const out: Record<string, unknown> = {};
const udp = await RawSipClient.open('udp', sipPort);
try {
  const [options] = await udp.request({ method: 'OPTIONS', uri: `sip:${domain}`, domain, fromUser: 'install-probe' });
  out.options = { status: options?.status ?? 0, allow: options?.headers('allow').join(',') ?? '' };
  if (username !== undefined && password !== undefined) {
    const replies = await udp.request({
      method: 'REGISTER', uri: `sip:${domain}`, toUri: `sip:${username}@${domain}`, fromUser: username, domain, extra: ['Expires: 60'],
    }, { username, password });
    out.register = replies.map((r) => r.status);
  }
} finally {
  udp.close();
}

const res = await fetch(`http://127.0.0.1:${httpPort}/`, { signal: AbortSignal.timeout(5000) });
const body = await res.text();
out.web = { status: res.status, type: res.headers.get('content-type') ?? '', html: /<html/i.test(body) };

console.log(JSON.stringify(out));
