// SIP over WebSocket (RFC 7118) on the HTTP listener, checked on the wire: the handshake
// (path /sip, sub-protocol `sip`), REGISTER with digest over WS, presence by device kind in
// the admin API and the web phone's event stream, bindings dropped when the WebSocket closes,
// and calls that cross transports (WS <-> UDP, with SIPp as the phone on the UDP side):
// double Record-Route (RFC 5658) and in-dialog requests routed both ways.
// The browser itself (JsSIP in Chromium) is exercised in webphone.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { startServer, type CareflowUser, type ServerHandle } from './harness.ts';
import { type RawMessage, RawSipClient } from './sip-raw.ts';
import { authInjection, requests, requireSipp, runSipp, settleCall, startDevice } from './sipp.ts';

requireSipp();

const server: ServerHandle = await startServer();
const SDP = 'v=0\r\no=ws 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n';

async function wsClient(): Promise<RawSipClient> {
  return RawSipClient.open('ws', server.httpPort);
}

async function register(c: RawSipClient, u: CareflowUser, expires = 300): Promise<RawMessage[]> {
  return c.request({ method: 'REGISTER', uri: `sip:${server.domain}`, toUri: `sip:${u.sipUsername}@${server.domain}`, domain: server.domain, extra: [`Expires: ${expires}`] }, { username: u.sipUsername, password: u.password });
}

async function userView(u: CareflowUser): Promise<{ online: boolean; deviceKinds: { web: number; sip: number } }> {
  const r = await server.api(`/api/users/${u.id}`);
  assert.equal(r.status, 200);
  return (await r.json()) as { online: boolean; deviceKinds: { web: number; sip: number } };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function handshake(protocols: string[], path = '/sip'): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}${path}`, protocols);
    const t = setTimeout(() => { ws.terminate(); resolve('timeout'); }, 5000);
    ws.on('open', () => { clearTimeout(t); resolve(`open ${ws.protocol}`); ws.close(); });
    ws.on('unexpected-response', (_req, res) => { clearTimeout(t); resolve(`http ${res.statusCode}`); ws.terminate(); });
    ws.on('error', () => { /* after unexpected-response */ });
  });
}

test('the WebSocket handshake needs path /sip and the sub-protocol sip (RFC 7118 §4.1)', async () => {
  assert.equal(await handshake(['sip']), 'open sip');
  assert.equal(await handshake(['chat', 'sip']), 'open sip');
  assert.equal(await handshake(['chat']), 'http 400');
  assert.equal(await handshake([]), 'http 400');
  assert.equal(await handshake(['sip'], '/ws'), 'http 404');
});

test('REGISTER over WebSocket: 401 round, 200; the user shows online on a web device; closing the socket takes it offline', async () => {
  const u = await server.addUser('Ws Register');
  const c = await wsClient();
  try {
    const rs = await register(c, u);
    assert.deepEqual(rs.map((r) => r.status), [401, 200], rs.map((r) => r.text).join('\n---\n'));
    const ok = rs[1]!;
    assert.match(ok.header('contact') ?? '', /\.invalid;transport=ws/i, ok.text);
    assert.match(ok.header('via') ?? '', /^SIP\/2\.0\/WS [0-9a-f]+\.invalid;.*received=127\.0\.0\.1/i, ok.text);
    assert.deepEqual((await userView(u)).deviceKinds, { web: 1, sip: 0 });
    const devices = (await (await server.api(`/api/users/${u.id}/devices`)).json()) as { devices: Array<{ transport: string }> };
    assert.deepEqual(devices.devices.map((d) => d.transport), ['ws']);
  } finally {
    c.close();
  }
  // RFC 7118 §5: the browser is reachable only over its WebSocket: when it closes, so does the binding.
  await until('the binding to go with its WebSocket', async () => ((await userView(u)).online ? undefined : true));
});

test('the web phone event stream reports presence changes live (SSE)', async () => {
  const watcher = await server.addUser('Ws Watcher');
  const target = await server.addUser('Ws Target');
  const login = await fetch(`http://127.0.0.1:${server.httpPort}/api/phone/session`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: watcher.number, password: watcher.password }),
  });
  assert.equal(login.status, 200);
  const { token } = (await login.json()) as { token: string };
  const ac = new AbortController();
  const stream = await fetch(`http://127.0.0.1:${server.httpPort}/api/phone/events`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
  assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const reader = stream.body!.getReader();
  let text = '';
  const next = async (pattern: RegExp): Promise<string> => {
    const end = Date.now() + 5000;
    while (!pattern.test(text)) {
      if (Date.now() > end) throw new Error(`no event matching ${pattern}; stream so far:\n${text}`);
      const chunk = await Promise.race([reader.read(), new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
      if (chunk?.value !== undefined) text += Buffer.from(chunk.value).toString();
    }
    return text;
  };
  const c = await wsClient();
  try {
    await next(/careflow presence/);
    assert.equal((await register(c, target))[1]?.status, 200);
    await next(new RegExp(`"userId":${target.id},"online":true,"devices":\\{"web":1,"sip":0\\}`));
  } finally {
    c.close();
  }
  await next(new RegExp(`"userId":${target.id},"online":false`));
  ac.abort();
  const bad = await fetch(`http://127.0.0.1:${server.httpPort}/api/phone/events`, { headers: { authorization: 'Bearer 1.99999999999999.AAAAAAAAAAAAAAAAAAAAAA' } });
  assert.equal(bad.status, 401);
});

/** Route set and remote target of a dialog from a 2xx to our INVITE (RFC 3261 §12.1.2). */
function uacDialog(ok: RawMessage): { target: string; routes: string[] } {
  const rr = ok.headers('record-route').flatMap((h) => h.split(/,\s*(?=<)/)).reverse();
  const contact = /<([^>]+)>/.exec(ok.header('contact') ?? '')?.[1] ?? '';
  return { target: contact, routes: rr };
}

test('a call from a WebSocket client to a UDP phone: double Record-Route, ACK and BYE routed to the phone', async () => {
  const caller = await server.addUser('Ws Caller');
  const phone = await server.addUser('Udp Phone');
  const device = await startDevice({ server, login: phone, scenario: 'uas_answer.xml' });
  const c = await wsClient();
  try {
    assert.equal((await register(c, caller))[1]?.status, 200);
    const rs = await c.request({ method: 'INVITE', uri: `sip:${phone.number}@${server.domain}`, domain: server.domain, body: SDP, contentType: 'application/sdp' },
      { username: caller.sipUsername, password: caller.password }, 10_000);
    assert.deepEqual(rs.map((r) => r.status), [407, 200], rs.map((r) => r.text).join('\n---\n'));
    const ok = rs[1]!;
    const { target, routes } = uacDialog(ok);
    // RFC 5658 §4: two Record-Route values, the WS-facing one on our side of the list.
    assert.equal(routes.length, 2, ok.text);
    assert.match(routes[0]!, /transport=ws/i, ok.text);
    assert.doesNotMatch(routes[1]!, /transport=ws/i, ok.text);
    const callId = ok.header('call-id')!;
    const from = ok.header('from')!;
    const to = ok.header('to')!;
    const inDialog = (method: string, cseq: number, branch: string): string => [
      `${method} ${target} SIP/2.0`, `Via: SIP/2.0/WS caller.invalid;branch=${branch};rport`, 'Max-Forwards: 70',
      ...routes.map((r) => `Route: ${r}`), `From: ${from}`, `To: ${to}`, `Call-ID: ${callId}`, `CSeq: ${cseq} ${method}`, 'Content-Length: 0', '', '',
    ].join('\r\n');
    await c.sendRaw(inDialog('ACK', 2, 'z9hG4bKwsack1'));
    const bye = await c.transaction(inDialog('BYE', 3, 'z9hG4bKwsbye1'), 'z9hG4bKwsbye1', 10_000);
    assert.equal(bye.status, 200, bye.text);
    const [dev] = await settleCall({ passed: true, describe: () => 'ws caller' } as never, [device], () => server.logs());
    assert.ok(dev !== undefined);
    assert.equal(requests(dev, 'ACK').length, 1, dev.describe());
    assert.equal(requests(dev, 'BYE').length, 1, dev.describe());
  } finally {
    c.close();
  }
  const calls = (await (await server.api(`/api/calls?userId=${caller.id}`)).json()) as { calls: Array<{ disposition: string; endedBy: string }> };
  assert.equal(calls.calls[0]?.disposition, 'answered');
  assert.equal(calls.calls[0]?.endedBy, 'caller');
});

test('a call from a UDP phone (SIPp) to a WebSocket client: the INVITE arrives over the WebSocket, the BYE too', async () => {
  const callee = await server.addUser('Ws Callee');
  const phone = await server.addUser('Udp Caller');
  const c = await wsClient();
  try {
    assert.equal((await register(c, callee))[1]?.status, 200);
    // A tiny UAS on the WebSocket: 200 to the INVITE (copying the Record-Route), 200 to the BYE.
    const answer = (req: RawMessage, extra: string[], body = ''): string => [
      'SIP/2.0 200 OK', ...req.headers('via').map((v) => `Via: ${v}`), ...extra, `From: ${req.header('from')}`,
      `To: ${req.header('to')}${/;tag=/.test(req.header('to') ?? '') ? '' : ';tag=wscallee'}`, `Call-ID: ${req.header('call-id')}`,
      `CSeq: ${req.header('cseq')}`, ...(body !== '' ? ['Content-Type: application/sdp'] : []), `Content-Length: ${Buffer.byteLength(body)}`, '', body,
    ].join('\r\n');
    const uas = (async () => {
      const invite = await c.waitUntil('an INVITE over the WebSocket', () => c.received.find((m) => m.firstLine.startsWith('INVITE ')), 15_000);
      const rr = invite.headers('record-route').map((v) => `Record-Route: ${v}`);
      await c.sendRaw(answer(invite, [...rr, '<sip:callee@wscallee.invalid;transport=ws>'.replace(/^/, 'Contact: ')], SDP));
      const bye = await c.waitUntil('the BYE over the WebSocket', () => c.received.find((m) => m.firstLine.startsWith('BYE ')), 15_000);
      await c.sendRaw(answer(bye, []));
      return { invite, bye };
    })();
    const uac = await runSipp({
      scenario: 'call_uac.xml', target: `127.0.0.1:${server.sipPort}`, timeoutMs: 20_000, injection: authInjection([phone]),
      args: ['-s', callee.number, '-key', 'domain', server.domain],
    });
    assert.ok(uac.passed, `${uac.describe()}\n${server.logs().slice(-4000)}`);
    const { invite, bye } = await uas;
    assert.match(invite.firstLine, /^INVITE sip:callee@wscallee\.invalid;transport=ws SIP\/2\.0$|^INVITE sip:[^ ]+\.invalid/i, invite.text);
    assert.equal(invite.headers('record-route').flatMap((h) => h.split(/,\s*(?=<)/)).length, 2, invite.text);
    assert.match(invite.header('via') ?? '', /^SIP\/2\.0\/WS /i, invite.text);
    assert.match(bye.firstLine, /^BYE sip:callee@wscallee\.invalid;transport=ws SIP\/2\.0$/i, bye.text);
  } finally {
    c.close();
  }
});
