// Presence: is a user online, and on which kinds of device. Derived from the location
// service (a user is online while they have a live binding); a WebSocket binding (RFC 7118)
// is a web phone, anything else a SIP phone or app. Subscribers (the web phone's event
// stream) hear only real changes: a re-REGISTER that changes nothing is not an event.
import type { Binding, ChangeReason, LocationService } from '../registrar/location.ts';

export interface DeviceCounts {
  readonly web: number;
  readonly sip: number;
}

export interface PresenceState {
  readonly userId: number;
  readonly online: boolean;
  readonly devices: DeviceCounts;
}

export type PresenceListener = (state: PresenceState) => void;

const NONE: DeviceCounts = { web: 0, sip: 0 };

export function deviceKind(b: Pick<Binding, 'flow'>): keyof DeviceCounts {
  return b.flow.transport === 'ws' || b.flow.transport === 'wss' ? 'web' : 'sip';
}

export class PresenceHub {
  readonly #location: LocationService;
  readonly #listeners = new Set<PresenceListener>();
  /** Last state told to listeners, per user; absent means offline. */
  readonly #last = new Map<number, DeviceCounts>();
  readonly #log: (msg: string, err: unknown) => void;
  readonly #onChange = (aor: string, _b: Binding | undefined, reason: ChangeReason): void => {
    if (reason === 'refresh') return; // the same device, still there
    const userId = Number(aor);
    if (!Number.isSafeInteger(userId)) return;
    this.#update(userId);
  };

  constructor(location: LocationService, log: (msg: string, err: unknown) => void = () => {}) {
    this.#location = location;
    this.#log = log;
    location.on('change', this.#onChange);
    // Bindings restored before the hub existed (after a restart) count from the start.
    for (const b of location.all()) this.#last.set(Number(b.aor), this.#count(Number(b.aor)));
  }

  /** Devices of a user right now (live bindings only). */
  devices(userId: number): DeviceCounts {
    return this.#count(userId);
  }

  state(userId: number): PresenceState {
    const devices = this.#count(userId);
    return { userId, online: devices.web + devices.sip > 0, devices };
  }

  subscribe(listener: PresenceListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get subscribers(): number {
    return this.#listeners.size;
  }

  close(): void {
    this.#location.off('change', this.#onChange);
    this.#listeners.clear();
  }

  #count(userId: number): DeviceCounts {
    let web = 0;
    let sip = 0;
    for (const b of this.#location.lookup(String(userId))) {
      if (deviceKind(b) === 'web') web++;
      else sip++;
    }
    return web === 0 && sip === 0 ? NONE : { web, sip };
  }

  #update(userId: number): void {
    const now = this.#count(userId);
    const before = this.#last.get(userId) ?? NONE;
    if (now.web === before.web && now.sip === before.sip) return;
    if (now === NONE) this.#last.delete(userId);
    else this.#last.set(userId, now);
    const state: PresenceState = { userId, online: now.web + now.sip > 0, devices: now };
    for (const listener of this.#listeners) {
      try {
        listener(state);
      } catch (e) {
        this.#log('presence listener failed', e);
      }
    }
  }
}
