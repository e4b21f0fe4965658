// Mid-dialog requests through the proxy (RFC 3261 §16.12, §12.2): after the call is set up,
// INFO, a re-INVITE with a new offer (and its ACK) and UPDATE travel along the route the
// proxy recorded, in both directions of the dialog, between SIPp instances.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { freeUdpPort, startServer, type CareflowUser, type ServerHandle } from './harness.ts';
import { authInjection, requests, requireSipp, runSipp, startSippUas } from './sipp.ts';

let server: ServerHandle;
let alice: CareflowUser;
let bob: CareflowUser;

before(async () => {
  requireSipp();
  server = await startServer();
  alice = await server.addUser('Dialog Alice');
  bob = await server.addUser('Dialog Bob');
});

test('INFO, re-INVITE and UPDATE follow the recorded route; both parties see every request', async () => {
  const port = await freeUdpPort();
  const reg = await runSipp({
    scenario: 'register_device.xml', target: `127.0.0.1:${server.sipPort}`, localPort: port,
    injection: authInjection([bob]), args: ['-key', 'domain', server.domain], timeoutMs: 15_000,
  });
  assert.ok(reg.passed, `device registration failed:\n${reg.describe()}`);
  const uas = await startSippUas({ scenario: 'uas_dialog.xml', localPort: port, timeoutMs: 30_000 });
  await new Promise((r) => setTimeout(r, 300));
  const uac = await runSipp({
    scenario: 'call_uac_dialog.xml', target: `127.0.0.1:${server.sipPort}`, timeoutMs: 30_000,
    injection: authInjection([alice]), args: ['-s', bob.number, '-key', 'domain', server.domain, '-d', '300'],
  });
  const dev = await Promise.race([uas.result, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000))]) ?? await uas.stop();
  const report = `${uac.describe()}\n--- device\n${dev.describe()}\n--- server log\n${server.logs().slice(-4000)}`;
  assert.ok(uac.passed, `caller failed:\n${report}`);
  assert.ok(dev.passed, `callee failed:\n${report}`);
  const seen = dev.messages.filter((m) => m.direction === 'received' && !m.firstLine.startsWith('SIP/')).map((m) => m.firstLine.split(' ')[0]);
  assert.deepEqual(seen, ['INVITE', 'ACK', 'INFO', 'INVITE', 'ACK', 'UPDATE', 'BYE'], `the callee must receive every request of the dialog:\n${report}`);
  // The re-INVITE reached the callee with the route popped: no Route header pointing at us.
  const reinvite = requests(dev, 'INVITE')[1]!;
  assert.equal(reinvite.header('Route'), undefined, `the proxy must remove its own Route value:\n${reinvite.text}`);
  assert.match(reinvite.text, /a=rtpmap:8 PCMA\/8000/, 'the new offer is passed unchanged');
});
