// The SIP phone: a JsSIP user agent registered over WebSocket, holding at most one call.
// No DOM here: the UI listens to the events below and calls the methods.

import JsSIP from 'jssip';
import type { RTCSessionEvent, UA } from 'jssip/lib/UA';
import type {
  EndEvent,
  IceCandidateEvent,
  IncomingEvent,
  OutgoingEvent,
  RTCSession,
} from 'jssip/lib/RTCSession';
import type { PhoneSession } from './api.ts';
import { completedElsewhere, failureKind, type CallEnd, type CallInfo, type CallState, type EndKind } from './call-info.ts';

JsSIP.debug.disable('JsSIP:*');

export type RegistrationState = 'connecting' | 'registered' | 'disconnected' | 'failed';

export interface PhoneEventMap {
  registration: { state: RegistrationState; cause: string };
  incoming: CallInfo;
  call: CallInfo;
  ended: CallEnd;
  remoteStream: MediaStream | null;
}

type Listener<T> = (value: T) => void;

/** Give up waiting for more ICE candidates (a slow TURN server) after this long. */
const ICE_GATHERING_TIMEOUT_MS = 1_500;
const REGISTER_RETRY_MS = [10_000, 20_000, 40_000, 60_000] as const;

/** Audio processing on, unless a test switched it off (fake devices compare raw audio). */
export function audioConstraints(): MediaTrackConstraints {
  const on = localStorage.getItem('careflow.audioProcessing') !== 'off';
  return { echoCancellation: on, noiseSuppression: on, autoGainControl: on };
}

export function webSocketUrl(wsPath: string): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}${wsPath}`;
}

export class Phone {
  readonly #listeners = new Map<keyof PhoneEventMap, Set<Listener<never>>>();
  #ua: UA | null = null;
  #session: RTCSession | null = null;
  #call: CallInfo | null = null;
  #registration: RegistrationState = 'connecting';
  #iceServers: RTCIceServer[] = [];
  #iceTransportPolicy: RTCIceTransportPolicy = 'all';
  #registerRetry: ReturnType<typeof setTimeout> | null = null;
  #registerFailures = 0;

  on<K extends keyof PhoneEventMap>(type: K, listener: Listener<PhoneEventMap[K]>): void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener as Listener<never>);
  }

  get ua(): UA | null {
    return this.#ua;
  }

  get session(): RTCSession | null {
    return this.#session;
  }

  get registered(): boolean {
    return this.#registration === 'registered';
  }

  get callState(): CallState {
    return this.#call?.state ?? 'idle';
  }

  start(session: PhoneSession): void {
    this.stop();
    this.updateIce(session.iceServers, session.iceTransportPolicy);
    const ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface(webSocketUrl(session.sip.wsPath))],
      uri: session.sip.uri,
      authorization_user: session.sip.authorizationUser,
      ha1: session.sip.ha1,
      realm: session.sip.realm,
      display_name: session.user.name,
      register: true,
      register_expires: 300,
      session_timers: false,
      user_agent: 'CareFlow-WebPhone/0.1',
      connection_recovery_min_interval: 2,
      connection_recovery_max_interval: 30,
    });
    this.#ua = ua;
    // Events from a user agent that has since been replaced are ignored.
    const mine = (): boolean => this.#ua === ua;
    ua.on('connecting', () => {
      if (mine() && this.#registration !== 'disconnected') this.#setRegistration('connecting', '');
    });
    ua.on('connected', () => mine() && this.#setRegistration('connecting', ''));
    ua.on('disconnected', (e) => mine() && this.#setRegistration('disconnected', e.reason ?? ''));
    ua.on('registered', () => {
      if (!mine()) return;
      this.#registerFailures = 0;
      this.#setRegistration('registered', '');
    });
    ua.on('unregistered', () => mine() && this.#setRegistration('connecting', ''));
    ua.on('registrationFailed', (e) => {
      if (!mine()) return;
      this.#setRegistration('failed', e.cause ?? 'Registration failed');
      this.#scheduleRegisterRetry();
    });
    ua.on('newRTCSession', (e: RTCSessionEvent) => {
      if (mine() && e.originator === 'remote') this.#incoming(e.session);
    });
    this.#setRegistration('connecting', '');
    ua.start();
  }

  /** Unregisters and closes the connection; any call is hung up. */
  stop(): void {
    if (this.#registerRetry !== null) clearTimeout(this.#registerRetry);
    this.#registerRetry = null;
    const ua = this.#ua;
    this.#ua = null;
    if (ua) {
      try {
        ua.stop();
      } catch {
        // Already stopped.
      }
    }
    if (this.#session || this.#call) {
      this.#session = null;
      this.#call = null;
      this.#emit('remoteStream', null);
    }
  }

  /** Fresh TURN credentials apply from the next call on. */
  updateIce(iceServers: RTCIceServer[], policy: RTCIceTransportPolicy): void {
    this.#iceServers = iceServers;
    this.#iceTransportPolicy = policy;
  }

  /** Places a call to a CareFlow number or SIP username. Throws if already in a call. */
  call(target: string, domain: string, displayName: string): void {
    const ua = this.#ua;
    if (!ua) throw new Error('The phone is not started.');
    if (this.#session) throw new Error('You are already in a call.');
    const info = this.#newCall('outgoing', target, displayName, 'calling');
    let session: RTCSession;
    try {
      session = ua.call(`sip:${target}@${domain}`, {
        mediaConstraints: { audio: audioConstraints(), video: false },
        pcConfig: this.#pcConfig(),
        rtcOfferConstraints: { offerToReceiveAudio: true },
      });
    } catch (err) {
      this.#call = null;
      const cause = err instanceof Error ? err.message : String(err);
      this.#emit('ended', { call: info, kind: 'failed', cause, originator: 'local', durationSeconds: 0 });
      return;
    }
    this.#session = session;
    this.#wire(session, info);
    this.#attachPeerConnection(session.connection);
    this.#emit('call', info);
  }

  answer(): void {
    const session = this.#session;
    if (!session || this.#call?.state !== 'incoming') return;
    this.#call.state = 'calling';
    this.#emit('call', this.#call);
    session.answer({
      mediaConstraints: { audio: audioConstraints(), video: false },
      pcConfig: this.#pcConfig(),
    });
  }

  decline(): void {
    if (this.#call?.state !== 'incoming') return;
    this.#session?.terminate({ status_code: 603, reason_phrase: 'Decline' });
  }

  /** Cancels an outgoing call, or sends BYE on an established one. */
  hangup(): void {
    const session = this.#session;
    if (!session || session.isEnded()) return;
    if (this.#call?.state === 'incoming') return this.decline();
    session.terminate();
  }

  toggleMute(): void {
    const session = this.#session;
    if (!session || !session.isEstablished()) return;
    if (session.isMuted().audio) session.unmute({ audio: true });
    else session.mute({ audio: true });
  }

  toggleHold(): void {
    const session = this.#session;
    if (!session || !session.isEstablished()) return;
    if (session.isOnHold().local) session.unhold();
    else session.hold();
  }

  sendDtmf(digit: string): void {
    const session = this.#session;
    if (!session || !session.isEstablished() || !/^[0-9*#]$/.test(digit)) return;
    try {
      session.sendDTMF(digit);
    } catch {
      // A DTMF while the previous tone is still queued; dropping it is harmless.
    }
  }

  #incoming(session: RTCSession): void {
    if (this.#session) {
      // One call at a time: a second caller hears busy.
      session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    const identity = session.remote_identity;
    const info = this.#newCall('incoming', identity.uri.user, identity.display_name ?? '', 'incoming');
    this.#session = session;
    this.#wire(session, info);
    session.on('peerconnection', (e) => this.#attachPeerConnection(e.peerconnection));
    this.#emit('incoming', info);
  }

  #newCall(direction: CallInfo['direction'], peerUser: string, name: string, state: CallState): CallInfo {
    const info: CallInfo = {
      direction,
      peerUser,
      peerDisplayName: name,
      state,
      earlyMedia: false,
      confirmedAt: null,
      muted: false,
      heldLocally: false,
      heldByPeer: false,
    };
    this.#call = info;
    return info;
  }

  #wire(session: RTCSession, info: CallInfo): void {
    const current = (): boolean => this.#session === session;
    const update = (): void => {
      if (!current()) return;
      if (info.state !== 'incoming' && info.confirmedAt !== null) {
        info.state = info.heldLocally || info.heldByPeer ? 'held' : 'confirmed';
      }
      this.#emit('call', info);
    };
    session.on('progress', (e: IncomingEvent | OutgoingEvent) => {
      if (!current() || info.direction !== 'outgoing') return;
      const response = 'response' in e ? e.response : null;
      info.state = 'ringing';
      info.earlyMedia = Boolean(response && response.status_code === 183 && response.body);
      this.#emit('call', info);
    });
    session.on('confirmed', () => {
      info.confirmedAt ??= Date.now();
      update();
    });
    session.on('hold', (e) => {
      if (e.originator === 'local') info.heldLocally = true;
      else info.heldByPeer = true;
      update();
    });
    session.on('unhold', (e) => {
      if (e.originator === 'local') info.heldLocally = false;
      else info.heldByPeer = false;
      update();
    });
    session.on('muted', () => {
      info.muted = true;
      update();
    });
    session.on('unmuted', () => {
      info.muted = false;
      update();
    });
    let iceTimer: ReturnType<typeof setTimeout> | null = null;
    let latestReady: (() => void) | null = null;
    session.on('icecandidate', (e: IceCandidateEvent) => {
      latestReady = e.ready;
      iceTimer ??= setTimeout(() => {
        iceTimer = null;
        latestReady?.();
      }, ICE_GATHERING_TIMEOUT_MS);
    });
    const finish = (e: EndEvent, failed: boolean): void => {
      if (iceTimer !== null) clearTimeout(iceTimer);
      if (!current()) return;
      this.#session = null;
      this.#call = null;
      const durationSeconds = info.confirmedAt === null ? 0 : Math.round((Date.now() - info.confirmedAt) / 1000);
      let kind: EndKind = failed ? failureKind(e.cause) : 'ended';
      if (kind === 'cancelled' && info.direction === 'incoming' && completedElsewhere(e)) {
        kind = 'answered-elsewhere';
      }
      this.#emit('remoteStream', null);
      this.#emit('ended', { call: info, kind, cause: e.cause, originator: e.originator, durationSeconds });
    };
    session.on('ended', (e) => finish(e, false));
    session.on('failed', (e) => finish(e, true));
  }

  #attachPeerConnection(pc: RTCPeerConnection | undefined): void {
    if (!pc) return;
    pc.addEventListener('track', (e) => {
      if (e.track.kind !== 'audio') return;
      this.#emit('remoteStream', e.streams[0] ?? new MediaStream([e.track]));
    });
  }

  #pcConfig(): RTCConfiguration {
    return { iceServers: this.#iceServers, iceTransportPolicy: this.#iceTransportPolicy };
  }

  #setRegistration(state: RegistrationState, cause: string): void {
    this.#registration = state;
    this.#emit('registration', { state, cause });
  }

  #scheduleRegisterRetry(): void {
    if (this.#registerRetry !== null) return;
    const delay = REGISTER_RETRY_MS[Math.min(this.#registerFailures, REGISTER_RETRY_MS.length - 1)] ?? 60_000;
    this.#registerFailures += 1;
    this.#registerRetry = setTimeout(() => {
      this.#registerRetry = null;
      if (this.#ua?.isConnected()) this.#ua.register();
    }, delay);
  }

  #emit<K extends keyof PhoneEventMap>(type: K, value: PhoneEventMap[K]): void {
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        (listener as Listener<PhoneEventMap[K]>)(value);
      } catch (err) {
        console.error(`phone: a "${type}" listener threw`, err);
      }
    }
  }
}
