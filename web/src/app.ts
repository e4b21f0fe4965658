// The web phone's controller: signs in, keeps the session fresh, starts the SIP phone and the
// presence stream, and connects phone events to the views. It owns every part and is the one
// that tears them down (sign-out, or a 401 from any API call).

import { Api, ApiError, type PhoneSession } from './api.ts';
import { EventStream } from './event-stream.ts';
import type { CallEnd, CallInfo } from './call-info.ts';
import { Phone, type RegistrationState } from './phone.ts';
import { Tones } from './ringtone.ts';
import { SessionRefresher, clearStoredSession, loadStoredSession, storeSession } from './session-store.ts';
import { byId } from './dom.ts';
import { CallView } from './ui-call.ts';
import { DirectoryView } from './ui-directory.ts';
import { HistoryView } from './ui-history.ts';
import { CONNECTION_LOST_TEXT, Notice, SESSION_ENDED_TEXT, endNotice } from './ui-notice.ts';
import { Shell, SignInView } from './ui-shell.ts';

/** The call log is written as the call ends; look again shortly after in case we were first. */
const HISTORY_RELOAD_DELAYS_MS = [250, 2_500] as const;
/** Characters allowed in the user part of a SIP URI (RFC 3261 §25.1, `user`). */
const SIP_USER = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$/;

type Tone = 'ringtone' | 'ringback' | null;

export class App {
  readonly phone = new Phone();
  readonly #api: Api;
  readonly #tones = new Tones();
  readonly #notice = new Notice();
  readonly #shell: Shell;
  readonly #signin: SignInView;
  readonly #directory: DirectoryView;
  readonly #history: HistoryView;
  readonly #calls: CallView;
  readonly #events: EventStream;
  readonly #refresher: SessionRefresher;
  readonly #audio = byId('remote-audio', HTMLAudioElement);
  #session: PhoneSession | null = null;
  #tone: Tone = null;
  #directoryReload: ReturnType<typeof setTimeout> | null = null;

  constructor() {
    this.#api = new Api(
      () => this.#session?.token ?? null,
      () => this.#sessionEnded(),
    );
    this.#shell = new Shell(() => this.signOut());
    this.#signin = new SignInView((login, password) => this.#signIn(login, password));
    this.#directory = new DirectoryView({
      onCall: (user) => this.#placeCall(user.number, user.name),
      search: (query) => this.#api.directory(query),
    });
    this.#history = new HistoryView((number, name) => this.#placeCall(number, name));
    this.#calls = new CallView({
      onDial: (text) => this.#dial(text),
      onAnswer: () => this.phone.answer(),
      onDecline: () => this.phone.decline(),
      onHangup: () => this.phone.hangup(),
      onMute: () => this.phone.toggleMute(),
      onHold: () => this.phone.toggleHold(),
      onDigit: (digit) => {
        this.#tones.dtmf(digit);
        this.phone.sendDtmf(digit);
      },
    });
    this.#events = new EventStream(this.#api, {
      onOpen: () => this.#reloadDirectory(),
      onPresence: (event) => {
        if (!this.#directory.applyPresence(event)) this.#reloadDirectorySoon();
      },
      onDrop: () => {
        if (!this.#directory.loaded) this.#reloadDirectory();
      },
    });
    this.#refresher = new SessionRefresher(this.#api, (session) => this.#sessionRefreshed(session));
    this.#wirePhone();
    // Browsers only let WebAudio play after a gesture: any click or key press unlocks it.
    for (const type of ['pointerdown', 'keydown'] as const) {
      document.addEventListener(type, () => this.#tones.unlock(), { capture: true, passive: true });
    }
    window.addEventListener('beforeunload', (e) => {
      if (this.phone.callState !== 'idle') e.preventDefault();
    });
    window.addEventListener('pagehide', (e) => {
      if (!e.persisted) this.phone.stop();
    });
  }

  /** Resumes a stored session (refreshing it first) or shows the sign-in form. */
  start(): void {
    const stored = loadStoredSession();
    if (stored) void this.#enter(stored, true);
    else this.#showSignIn();
  }

  signOut(): void {
    this.#teardown();
    clearStoredSession();
    this.#notice.hide();
    this.#showSignIn();
  }

  async #signIn(login: string, password: string): Promise<void> {
    let session: PhoneSession;
    try {
      session = await this.#api.signIn(login, password);
    } catch (err) {
      throw new Error(signInErrorText(err));
    }
    storeSession(session);
    this.#notice.hide('session-ended');
    await this.#enter(session, false);
  }

  async #enter(session: PhoneSession, refreshFirst: boolean): Promise<void> {
    this.#session = session;
    this.#shell.showMain(session.user);
    this.#shell.setStatus('connecting');
    this.#directory.setMe(session.user.id);
    if (refreshFirst) {
      try {
        session = await this.#api.refreshSession();
        storeSession(session);
        this.#session = session;
        this.#shell.showMain(session.user);
      } catch (err) {
        // A 401 has ended the session already; offline, carry on with the stored one.
        if (err instanceof ApiError && err.status === 401) return;
      }
    }
    if (this.#session !== session) return;
    this.#refresher.schedule(session);
    this.phone.start(session);
    this.#events.start();
    this.#reloadHistory();
  }

  #sessionRefreshed(session: PhoneSession): void {
    const previous = this.#session;
    if (!previous) return;
    this.#session = session;
    this.#shell.showMain(session.user);
    this.phone.updateIce(session.iceServers, session.iceTransportPolicy);
    const credentialsChanged = previous.sip.ha1 !== session.sip.ha1 || previous.sip.uri !== session.sip.uri;
    if (credentialsChanged && this.phone.callState === 'idle') this.phone.start(session);
  }

  #sessionEnded(): void {
    if (!this.#session) return;
    this.#teardown();
    clearStoredSession();
    this.#showSignIn();
    this.#notice.show('session-ended', SESSION_ENDED_TEXT, true);
  }

  #teardown(): void {
    this.#session = null;
    this.phone.stop();
    this.#events.stop();
    this.#refresher.stop();
    this.#setTone(null);
    if (this.#directoryReload !== null) clearTimeout(this.#directoryReload);
    this.#directoryReload = null;
    this.#calls.hideIncoming();
    this.#calls.hideCall();
    this.#setCallsDisabled(false);
    this.#shell.setRinging(null);
    this.#directory.reset();
    this.#history.reset();
  }

  #showSignIn(): void {
    this.#shell.showSignIn();
    this.#signin.focus();
  }

  #wirePhone(): void {
    const phone = this.phone;
    phone.on('registration', ({ state, cause }) => this.#onRegistration(state, cause));
    phone.on('incoming', (call) => {
      const { name, number } = this.#peer(call);
      this.#calls.showIncoming(name, number);
      this.#shell.setRinging(name);
      this.#setCallsDisabled(true);
      this.#setTone('ringtone');
    });
    phone.on('call', (call) => {
      if (call.state === 'incoming') return;
      this.#calls.hideIncoming();
      this.#shell.setRinging(null);
      this.#calls.showCall(this.#peer(call).name, call);
      this.#setCallsDisabled(true);
      const ringback = call.direction === 'outgoing' && call.state === 'ringing' && !call.earlyMedia;
      this.#setTone(ringback ? 'ringback' : null);
    });
    phone.on('ended', (end) => this.#onEnded(end));
    phone.on('remoteStream', (stream) => {
      this.#audio.srcObject = stream;
      if (stream) void this.#audio.play().catch(() => undefined);
    });
  }

  #onRegistration(state: RegistrationState, cause: string): void {
    this.#shell.setStatus(state, cause);
    if (state === 'disconnected') {
      if (this.#notice.kind !== 'connection-lost') this.#notice.show('connection-lost', CONNECTION_LOST_TEXT, true);
    } else if (state === 'registered') {
      this.#notice.hide('connection-lost');
      this.#notice.hide('failed');
    } else if (state === 'failed') {
      this.#notice.show('failed', `The phone could not register (${cause.toLowerCase()}). Retrying…`);
      // Rejected credentials may mean the password was rotated: ask the API, which answers
      // 401 (session ended) or a session with the new HA1 (#sessionRefreshed restarts).
      if (cause === 'Authentication Error' && this.#session) {
        this.#api.refreshSession().then(
          (session) => {
            storeSession(session);
            this.#sessionRefreshed(session);
          },
          () => undefined,
        );
      }
    }
  }

  #onEnded(end: CallEnd): void {
    this.#setTone(null);
    this.#calls.hideIncoming();
    this.#calls.hideCall();
    this.#shell.setRinging(null);
    this.#setCallsDisabled(false);
    const { kind, text } = endNotice(end, this.#peer(end.call).name);
    this.#notice.show(kind, text);
    for (const delay of HISTORY_RELOAD_DELAYS_MS) setTimeout(() => this.#reloadHistory(), delay);
  }

  #dial(text: string): void {
    const user = this.#directory.findByUser(text) ?? this.#directory.findByName(text);
    if (user) return this.#placeCall(user.number, user.name);
    const target = text.replace(/\s+/g, '');
    if (!SIP_USER.test(target)) {
      this.#notice.show('failed', `“${text}” is not a number or a colleague's name.`);
      return;
    }
    this.#placeCall(target, target);
  }

  #placeCall(number: string, name: string): void {
    const session = this.#session;
    if (!session || this.phone.callState !== 'idle') return;
    this.#tones.unlock();
    this.#notice.hide();
    try {
      this.phone.call(number, session.sip.domain, name);
    } catch (err) {
      this.#notice.show('failed', err instanceof Error ? err.message : String(err));
    }
  }

  /** The name and number to show for the other party. */
  #peer(call: CallInfo): { name: string; number: string } {
    const user = this.#directory.findByUser(call.peerUser);
    if (user) return { name: user.name, number: user.number };
    return { name: call.peerDisplayName || call.peerUser, number: call.peerUser };
  }

  #setTone(tone: Tone): void {
    if (tone === this.#tone) return;
    this.#tone = tone;
    if (tone === 'ringtone') this.#tones.startRingtone();
    else if (tone === 'ringback') this.#tones.startRingback();
    else this.#tones.stop();
  }

  #setCallsDisabled(disabled: boolean): void {
    this.#directory.setCallsDisabled(disabled);
    this.#history.setCallsDisabled(disabled);
    this.#calls.setDialDisabled(disabled);
  }

  #reloadDirectory(): void {
    if (!this.#session) return;
    this.#api.directory().then(
      (users) => this.#session && this.#directory.setUsers(users),
      () => undefined, // Kept as is; the stream's next reconnect tries again.
    );
  }

  /** A presence event for someone not in the list: a new colleague, so reload (debounced). */
  #reloadDirectorySoon(): void {
    if (this.#directoryReload !== null) return;
    this.#directoryReload = setTimeout(() => {
      this.#directoryReload = null;
      this.#reloadDirectory();
    }, 1_000);
  }

  #reloadHistory(): void {
    if (!this.#session) return;
    this.#api.calls(50).then(
      (calls) => this.#session && this.#history.render(calls),
      () => undefined,
    );
  }
}

function signInErrorText(err: unknown): string {
  if (!(err instanceof ApiError)) return 'Sign-in failed. Please try again.';
  switch (err.code) {
    case 'UNAUTHORIZED':
      return 'That number or username and password do not match.';
    case 'RATE_LIMITED':
      return 'Too many failed attempts. Please wait a few minutes and try again.';
    case 'NETWORK':
      return err.message;
    default:
      return `Sign-in failed: ${err.message}`;
  }
}
