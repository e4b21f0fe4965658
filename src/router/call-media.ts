// Media for calls through the proxy: decides per branch whether the audio goes peer to peer,
// directly, through a relay or through a bridge (src/media/engine.ts), and has the media
// engine rewrite the SDP of the INVITE (offer, per branch), of the answering responses, and
// of in-dialog re-INVITEs and UPDATEs. Every end of a call (BYE, CANCEL, failure, timeout,
// shutdown) releases the engine's session through `end`. Kamailio's rtpengine_offer /
// rtpengine_answer / rtpengine_delete, in one place.
import type { ProxyTarget } from '../proxy/proxy.ts';
import { parseNameAddr } from '../sip/headers.ts';
import type { DialogInfo, DialogParty } from './dialog-end.ts';
import type { Binding } from '../registrar/location.ts';
import { type Endpoint, endpointOf, type MediaEngine, type MediaMode, mediaMode } from '../media/engine.ts';
import type { SipRequest, SipResponse } from '../sip/message.ts';
import type { Destination, Flow } from '../sip/transport.ts';

interface Leg {
  readonly key: string;
  readonly endpoint: Endpoint;
  readonly mode: MediaMode;
  /** The engine rewrote this branch's SDP. */
  readonly engaged: boolean;
  /** Where the device's packets really come from (NAT), for a plain RTP device. */
  readonly source: string | undefined;
}

interface CallState {
  readonly callerTag: string;
  readonly caller: Endpoint;
  readonly callerSource: string | undefined;
  readonly legs: Map<ProxyTarget, Leg>;
  answered: Leg | undefined;
  /** The two parties, for ending the call from the middle (media timeout). */
  readonly callerParty: DialogParty | undefined;
  calleeParty: DialogParty | undefined;
  /** Handed to onIdle once; being ended. */
  ending: boolean;
}

export interface MediaWatch {
  /** How often the engine is asked (ms). */
  readonly intervalMs: number;
  /** A call whose engine saw no packet for this long is over (ms). */
  readonly timeoutMs: number;
  /** Ends the call (BYE both ways) and logs it; the media is released by `end` afterwards. */
  readonly onIdle: (callId: string, dialog: DialogInfo | undefined) => void;
}

export interface PlannedTarget {
  readonly target: ProxyTarget;
  readonly binding: Binding;
}

export class CallMedia {
  readonly #engine: MediaEngine | undefined;
  readonly #log: (level: 'warn' | 'error', msg: string, err?: unknown) => void;
  readonly #calls = new Map<string, CallState>();
  #warnedNoEngine = false;
  #watch: NodeJS.Timeout | undefined;

  constructor(engine: MediaEngine | undefined, log: (level: 'warn' | 'error', msg: string, err?: unknown) => void) {
    this.#engine = engine;
    this.#log = log;
  }

  get active(): number {
    return this.#calls.size;
  }

  /**
   * The targets of an initial INVITE, each with the SDP its device must get. A branch that
   * needs a bridge the engine could not set up is left out (the caller gets the best answer
   * of the others, or 503 when none is left).
   */
  async planInvite(req: SipRequest, flow: Flow, planned: readonly PlannedTarget[]): Promise<ProxyTarget[]> {
    const sdp = isSdp(req) ? req.body.toString('utf8') : undefined;
    if (sdp === undefined) return planned.map((p) => p.target); // no offer (late offer): nothing to rewrite
    // The offer itself says what the caller speaks (a SIP client on a WebSocket may well offer
    // plain RTP); for the callee, whose answer is not known yet, its transport tells.
    const caller: Endpoint = endpointOf(sdp);
    const callerNat = caller === 'rtp' && connectionAddress(sdp) !== flow.remoteAddress;
    const callerSource = caller === 'rtp' ? flow.remoteAddress : undefined;
    const state: CallState = {
      callerTag: req.fromTag ?? '', caller, callerSource, legs: new Map(), answered: undefined,
      callerParty: party(req.get('contact'), req.get('from'), flowDestination(flow), req.cseq.seq), calleeParty: undefined,
      ending: false,
    };
    const out = await Promise.all(planned.map(async ({ target, binding }, i): Promise<ProxyTarget | undefined> => {
      const endpoint: Endpoint = binding.flow.transport === 'ws' || binding.flow.transport === 'wss' ? 'webrtc' : 'rtp';
      const calleeNat = endpoint === 'rtp' && contactHost(binding.contact) !== binding.flow.remoteAddress;
      const mode = mediaMode(caller, endpoint, callerNat || calleeNat);
      const key = `b${i}`;
      const source = endpoint === 'rtp' ? binding.flow.remoteAddress : undefined;
      if (mode === 'p2p' || mode === 'direct' || this.#engine === undefined) {
        if (mode === 'bridge' && !this.#warnedNoEngine) {
          this.#warnedNoEngine = true;
          this.#log('warn', 'a browser calls a SIP phone (or back) but no media engine is configured: set CAREFLOW_RTPENGINE; the SDP is passed unchanged');
        }
        state.legs.set(target, { key, endpoint, mode: mode === 'relay' || mode === 'bridge' ? 'direct' : mode, engaged: false, source });
        return target;
      }
      try {
        const body = await this.#engine.offer({
          callId: req.callId, fromTag: state.callerTag, branch: key, sdp, from: caller, to: endpoint,
          ...(callerSource !== undefined ? { sourceAddress: callerSource } : {}),
        });
        const leg: Leg = { key, endpoint, mode, engaged: true, source };
        const rewritten: ProxyTarget = { ...target, body };
        state.legs.set(rewritten, leg);
        return rewritten;
      } catch (e) {
        this.#log('error', `media engine offer for ${req.callId} (${mode}) failed`, e);
        if (mode === 'bridge') return undefined; // browser and phone cannot hear each other without it
        state.legs.set(target, { key, endpoint, mode: 'direct', engaged: false, source });
        return target;
      }
    }));
    this.#calls.set(req.callId, state);
    return out.filter((t): t is ProxyTarget => t !== undefined);
  }

  /** The rewrite for the responses of an initial INVITE's branches (answer SDP). */
  readonly rewriteResponse = async (res: SipResponse, target: ProxyTarget): Promise<void> => {
    const state = this.#calls.get(res.callId);
    const leg = state?.legs.get(target);
    if (state === undefined || leg === undefined || !leg.engaged || this.#engine === undefined || !isSdp(res)) return;
    const toTag = res.toTag ?? '';
    res.body = Buffer.from(await this.#engine.answer({
      callId: res.callId, fromTag: state.callerTag, toTag, branch: leg.key, sdp: res.body.toString('utf8'), from: leg.endpoint, to: state.caller,
      ...(leg.source !== undefined ? { sourceAddress: leg.source } : {}),
    }), 'utf8');
  };

  /** A branch answered: the call's media mode (for the call log). */
  answered(callId: string, target: ProxyTarget, res: SipResponse): MediaMode | undefined {
    const state = this.#calls.get(callId);
    const leg = state?.legs.get(target);
    if (state === undefined || leg === undefined) return undefined;
    state.answered = leg;
    state.calleeParty = party(res.get('contact'), res.get('to'), target.destination, 0);
    // The other forked branches will not carry media: release their engine state now rather
    // than at the end of the call.
    const engine = this.#engine;
    if (engine !== undefined) {
      for (const other of state.legs.values()) {
        if (other === leg || !other.engaged) continue;
        engine.delete(callId, state.callerTag, other.key).catch((e: unknown) => this.#log('warn', `media engine: releasing branch ${other.key} of ${callId} failed`, e));
      }
    }
    return leg.mode;
  }

  /**
   * Watches the calls the engine carries: one whose media stopped for `timeoutMs` (or that
   * the engine no longer knows) is handed to `onIdle`.
   */
  watch(w: MediaWatch): void {
    if (this.#engine === undefined || this.#watch !== undefined) return;
    const engine = this.#engine;
    let running = false;
    this.#watch = setInterval(() => {
      if (running) return; // a slow engine: skip a round rather than pile up queries
      running = true;
      const calls = [...this.#calls].filter(([, s]) => s.answered?.engaged === true && !s.ending);
      void Promise.all(calls.map(async ([callId, s]) => {
        try {
          const stats = await engine.stats(callId);
          if (stats !== undefined && (stats.idleMs ?? 0) < w.timeoutMs) return;
        } catch (e) {
          this.#log('warn', `media engine query for ${callId} failed`, e);
          return; // the engine is unreachable: not the call's fault
        }
        if (!this.#calls.has(callId) || s.ending) return;
        s.ending = true;
        w.onIdle(callId, s.callerParty !== undefined && s.calleeParty !== undefined ? { callId, caller: s.callerParty, callee: s.calleeParty } : undefined);
      })).finally(() => { running = false; });
    }, w.intervalMs);
    this.#watch.unref();
  }

  /**
   * An in-dialog request with an SDP offer (re-INVITE for hold, UPDATE): rewritten for the
   * side it goes to; returns the rewrite for its answer, or undefined when the engine is not
   * in this call.
   */
  async inDialog(req: SipRequest): Promise<((res: SipResponse) => Promise<void>) | undefined> {
    const state = this.#calls.get(req.callId);
    const leg = state?.answered;
    const engine = this.#engine;
    if (state === undefined || leg === undefined || !leg.engaged || engine === undefined || !isSdp(req)) return undefined;
    const fromCaller = req.fromTag === state.callerTag;
    const sending = fromCaller ? state.callerParty : state.calleeParty;
    if (sending !== undefined) sending.cseq = Math.max(sending.cseq, req.cseq.seq);
    const sender = fromCaller ? state.caller : leg.endpoint;
    const receiver = fromCaller ? leg.endpoint : state.caller;
    const senderSource = fromCaller ? state.callerSource : leg.source;
    const receiverSource = fromCaller ? leg.source : state.callerSource;
    const fromTag = req.fromTag ?? '';
    const toTag = req.toTag ?? '';
    req.body = Buffer.from(await engine.offer({
      callId: req.callId, fromTag, toTag, sdp: req.body.toString('utf8'), from: sender, to: receiver,
      ...(senderSource !== undefined ? { sourceAddress: senderSource } : {}),
    }), 'utf8');
    return async (res) => {
      if (res.status < 200 || res.status >= 300 || !isSdp(res)) return;
      res.body = Buffer.from(await engine.answer({
        callId: res.callId, fromTag, toTag, sdp: res.body.toString('utf8'), from: receiver, to: sender,
        ...(receiverSource !== undefined ? { sourceAddress: receiverSource } : {}),
      }), 'utf8');
    };
  }

  /** The call is over (BYE, CANCEL, failure, timeout): release its media. Never throws. */
  async end(callId: string): Promise<void> {
    const state = this.#calls.get(callId);
    if (state === undefined) return;
    this.#calls.delete(callId);
    const engaged = [...state.legs.values()].some((l) => l.engaged);
    if (!engaged || this.#engine === undefined) return;
    try {
      await this.#engine.delete(callId);
    } catch (e) {
      this.#log('error', `media engine delete for ${callId} failed`, e);
    }
  }

  /** Server shutdown: every call's media is released. */
  async close(): Promise<void> {
    if (this.#watch !== undefined) clearInterval(this.#watch);
    await Promise.all([...this.#calls.keys()].map((id) => this.end(id)));
    await this.#engine?.close();
  }
}

function party(contact: string | undefined, self: string | undefined, destination: Destination, cseq: number): DialogParty | undefined {
  if (contact === undefined || self === undefined) return undefined;
  try {
    return { target: parseNameAddr(contact).uriText, destination, self, cseq };
  } catch {
    return undefined;
  }
}

function flowDestination(flow: Flow): Destination {
  const d: Destination = { transport: flow.transport, address: flow.remoteAddress, port: flow.remotePort };
  return flow.connectionId !== undefined ? { ...d, connectionId: flow.connectionId } : d;
}

function isSdp(m: SipRequest | SipResponse): boolean {
  return m.body.length > 0 && /^application\/sdp\b/i.test(m.get('content-type') ?? '');
}

/** The session- or first media-level c= address of an SDP. */
function connectionAddress(sdp: string): string | undefined {
  return /^c=IN IP[46] ([^\s/]+)/m.exec(sdp)?.[1];
}

function contactHost(contact: string): string | undefined {
  return /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;>]+)/i.exec(contact)?.[1]?.replace(/^\[|\]$/g, '');
}
