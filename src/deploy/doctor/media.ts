/**
 * Doctor checks of media: the RTP port range, RTPEngine's ng control port, and the TURN
 * servers web phones are given (answering, and accepting credentials made with the secret).
 */
import type { Config } from '../../config/schema.ts';
import { turnRestCredentials } from '../../web/ice-servers.ts';
import { parseIceUrl } from '../stun.ts';
import { errorText, fail, hostText, pass, skip, warn, type CheckResult, type DoctorProbes } from './checks.ts';

/** Fewer RTP ports than this is a warning: each call takes 2 to 4 (RTP and RTCP on each side). */
export const RTP_WARN_PORTS = 100;

export async function checkRtpRange(config: Config, probes: DoctorProbes): Promise<CheckResult[]> {
  const { min, max } = config.media.rtpPorts;
  const size = max - min + 1;
  const calls = Math.floor(size / 4);
  const range = `${min}-${max}`;
  const out: CheckResult[] = [size < RTP_WARN_PORTS
    ? warn('rtp-range', 'media', `the RTP range ${range} has only ${size} ports: room for about ${calls} relayed calls at once (each takes 2 to 4)`,
      'widen it, e.g. CAREFLOW_RTP_PORTS=10000-20000 (and RTPEngine\'s --port-min/--port-max), then open it with careflow firewall')
    : pass('rtp-range', 'media', `RTP range ${range}: ${size} ports, room for about ${calls} relayed calls at once`)];
  // RTP is UDP: of the listeners only SIP's UDP port can collide with it.
  const sip = config.sip.listen.port;
  if (sip >= min && sip <= max) {
    out.push(fail('rtp-range.overlap', 'media', `the RTP range ${range} contains the SIP port ${sip}/udp`,
      'move one of them: CAREFLOW_RTP_PORTS (e.g. 10000-20000) or CAREFLOW_SIP_LISTEN (e.g. 0.0.0.0:5060)'));
  }
  const ephemeral = await probes.ephemeralPorts().catch(() => undefined);
  if (ephemeral !== undefined && min <= ephemeral.max && max >= ephemeral.min) {
    out.push(warn('rtp-range.ephemeral', 'media', `the RTP range ${range} overlaps the kernel's ephemeral ports ${ephemeral.min}-${ephemeral.max}: outgoing connections can take RTP ports`,
      `choose a range outside ${ephemeral.min}-${ephemeral.max} (like 10000-20000), or narrow net.ipv4.ip_local_port_range with sysctl`));
  }
  return out;
}

export async function checkRtpEngine(config: Config, probes: DoctorProbes, timeoutMs: number): Promise<CheckResult[]> {
  const instances = config.media.rtpengine;
  if (instances.length === 0) {
    return [skip('rtpengine', 'media', 'no RTPEngine configured',
      'calls between the web phone and SIP phones need a media engine: run RTPEngine and set CAREFLOW_RTPENGINE=127.0.0.1:2223 (README, "Calls between the web phone and SIP phones")')];
  }
  const answers = await probes.ngPing(instances, timeoutMs).catch(() => instances.map(() => false));
  return instances.map((inst, i) => {
    const at = `${hostText(inst.host)}:${inst.port}`;
    return answers[i] === true
      ? pass(`rtpengine.${at}`, 'media', `RTPEngine ${at} answers ping`)
      : fail(`rtpengine.${at}`, 'media', `RTPEngine ${at} did not answer ping within ${timeoutMs} ms`,
        `start it (\`systemctl start rtpengine-daemon\`) and check that its --listen-ng is ${at}, as CAREFLOW_RTPENGINE says`);
  });
}

/** Each TURN URL: a STUN binding is answered, and an allocation with credentials made from the secret succeeds. */
export async function checkTurn(config: Config, probes: DoctorProbes, timeoutMs: number): Promise<CheckResult[]> {
  const { turnUrls, turnSecret } = config.webrtc;
  if (turnUrls.length === 0) {
    return [skip('turn', 'turn', 'no TURN server configured',
      'browsers behind strict NATs (mobile networks, offices) cannot call each other without one: run coturn and set CAREFLOW_TURN_URLS and CAREFLOW_TURN_SECRET (README, "Use the web phone")')];
  }
  if (turnSecret === undefined) {
    return [fail('turn', 'turn', 'TURN servers are configured but no secret', 'set CAREFLOW_TURN_SECRET to the static-auth-secret in coturn\'s turnserver.conf')];
  }
  return Promise.all(turnUrls.map(async (url): Promise<CheckResult> => {
    const id = `turn.${url}`;
    const server = parseIceUrl(url);
    if (server === undefined) return fail(id, 'turn', `cannot read the TURN URL ${url}`, 'write it like turn:turn.example.org:3478?transport=udp');
    const open = `${server.port}/${server.transport === 'udp' ? 'udp' : 'tcp'}`;
    try {
      await probes.stunBinding(server, timeoutMs);
    } catch (error) {
      return fail(id, 'turn', `the TURN server ${url} did not answer a STUN binding request (${errorText(error)})`,
        `start coturn (\`systemctl start coturn\`), check the host and port in CAREFLOW_TURN_URLS, and open ${open} in the TURN host's firewall`);
    }
    const { username, credential } = turnRestCredentials(turnSecret, 'careflow-doctor', 300, probes.now());
    try {
      const r = await probes.turnAllocate(server, username, credential, timeoutMs);
      if (r.kind === 'allocated') {
        const relay = r.relayed !== undefined ? `, relay address ${hostText(r.relayed.address)}:${r.relayed.port}` : '';
        return pass(id, 'turn', `the TURN server ${url} answers and accepts credentials made with CAREFLOW_TURN_SECRET${relay}`);
      }
      if (r.kind === 'rejected') {
        return fail(id, 'turn', `the TURN server ${url} refused credentials made with CAREFLOW_TURN_SECRET (${r.code} ${r.reason})`.replace(/ \)$/, ')'),
          'set CAREFLOW_TURN_SECRET to the static-auth-secret in coturn\'s turnserver.conf (with use-auth-secret on), and check both clocks: the credentials carry their expiry time');
      }
      return fail(id, 'turn', `the TURN server ${url} answers, but refused an allocation (${r.code} ${r.reason})`.replace(/ \)$/, ')'),
        'read coturn\'s log: it may be out of relay ports, or refuse this client (denied-peer-ip, user quotas)');
    } catch (error) {
      return fail(id, 'turn', `the TURN server ${url} answers STUN but not an allocation (${errorText(error)})`,
        'read coturn\'s log; check that this is a TURN server (coturn) and not a STUN-only server');
    }
  }));
}
