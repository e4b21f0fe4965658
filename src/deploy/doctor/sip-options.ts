/**
 * The doctor's one SIP request: an OPTIONS (RFC 3261 §11) to careflow's own address over UDP,
 * TCP or TLS, answered by the server itself. Raw sockets, so the probe does not depend on
 * the transport layer it checks. Resolves with the first final response.
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect as tcpConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { SipTransport } from './checks.ts';

const hostText = (host: string): string => (isIP(host) === 6 ? `[${host}]` : host);

function optionsRequest(transport: SipTransport, host: string, port: number, local: string, localPort: number, callId: string): string {
  const id = randomBytes(8).toString('hex');
  return [
    `OPTIONS sip:${hostText(host)}:${port} SIP/2.0`,
    `Via: SIP/2.0/${transport.toUpperCase()} ${hostText(local)}:${localPort};branch=z9hG4bK-doctor-${id};rport`,
    'Max-Forwards: 70',
    `From: <sip:careflow-doctor@${hostText(local)}>;tag=${id}`,
    `To: <sip:${hostText(host)}:${port}>`,
    `Call-ID: ${callId}`,
    'CSeq: 1 OPTIONS',
    'Accept: application/sdp',
    'User-Agent: careflow-doctor',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** The status of a final response to our Call-ID in `text`, if there is one. */
function finalResponse(text: string, callId: string): { status: number; reason: string } | undefined {
  for (const message of text.split(/\r\n\r\n/)) {
    const m = /^SIP\/2\.0 (\d{3}) ?([^\r\n]*)/.exec(message.replace(/^(?:\r\n)+/, ''));
    if (m === null || Number(m[1]) < 200) continue;
    if (!new RegExp(`^(?:Call-ID|i)[ \\t]*:[ \\t]*${callId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[ \\t]*$`, 'im').test(message)) continue;
    return { status: Number(m[1]), reason: m[2] ?? '' };
  }
  return undefined;
}

export function sipOptions(transport: SipTransport, host: string, port: number, timeoutMs: number): Promise<{ status: number; reason: string }> {
  const callId = `${randomBytes(12).toString('hex')}@careflow-doctor`;
  return new Promise((resolve, reject) => {
    let finish = (_error: Error | undefined, _answer?: { status: number; reason: string }): void => undefined;
    const timer = setTimeout(() => finish(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);

    if (transport === 'udp') {
      const socket = createSocket(isIP(host) === 6 ? 'udp6' : 'udp4');
      let retransmit: NodeJS.Timeout | undefined;
      finish = (error, answer) => {
        clearTimeout(timer);
        clearTimeout(retransmit);
        finish = () => undefined;
        socket.close();
        if (answer !== undefined) resolve(answer);
        else reject(error ?? new Error('no answer'));
      };
      socket.on('error', (e) => finish(e));
      socket.on('message', (msg) => {
        const answer = finalResponse(msg.toString('latin1'), callId);
        if (answer !== undefined) finish(undefined, answer);
      });
      socket.connect(port, host, () => {
        const local = socket.address();
        const bytes = Buffer.from(optionsRequest('udp', host, port, local.address, local.port, callId), 'latin1');
        // §17.1.2.2 Timer E: retransmit after T1 (500 ms), doubling up to T2 (4 s).
        let interval = 500;
        const send = (): void => {
          socket.send(bytes, (e) => { if (e) finish(e); });
          retransmit = setTimeout(send, interval);
          interval = Math.min(interval * 2, 4000);
        };
        send();
      });
      return;
    }

    const socket: Socket = transport === 'tls'
      ? tlsConnect({ host, port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) })
      : tcpConnect({ host, port });
    let received = '';
    finish = (error, answer) => {
      clearTimeout(timer);
      finish = () => undefined;
      socket.destroy();
      if (answer !== undefined) resolve(answer);
      else reject(error ?? new Error('no answer'));
    };
    socket.setEncoding('latin1');
    socket.on('error', (e) => finish(e));
    socket.on('close', () => finish(new Error('the connection closed without an answer')));
    socket.on('data', (chunk: string) => {
      received += chunk;
      const answer = finalResponse(received, callId);
      if (answer !== undefined) finish(undefined, answer);
    });
    socket.once(transport === 'tls' ? 'secureConnect' : 'connect', () => {
      socket.write(optionsRequest(transport, host, port, socket.localAddress ?? '127.0.0.1', socket.localPort ?? 0, callId));
    });
  });
}
