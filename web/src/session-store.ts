// Keeps the phone session (token + session body) in localStorage and refreshes it.
//
// The plain password is never stored: the SIP stack authenticates with the HA1 digest the
// server hands out, and the API with the bearer token. Both go away on sign-out or on any 401.

import { ApiError, parseSession, type Api, type PhoneSession } from './api.ts';

const STORAGE_KEY = 'careflow.session';
/** The contract: refresh on page load and every 30 minutes (fresh TURN credentials and token). */
const REFRESH_INTERVAL_MS = 30 * 60 * 1000;
/** Refresh at least this long before the token expires. */
const EXPIRY_MARGIN_MS = 2 * 60 * 1000;
const RETRY_AFTER_NETWORK_ERROR_MS = 60 * 1000;

export function loadStoredSession(): PhoneSession | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const session = parseSession(JSON.parse(raw) as unknown);
    if (session.expiresAt <= Date.now()) {
      clearStoredSession();
      return null;
    }
    return session;
  } catch {
    clearStoredSession();
    return null;
  }
}

export function storeSession(session: PhoneSession): void {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  } catch {
    // Private mode or a full quota: the session still works until the page is closed.
  }
}

export function clearStoredSession(): void {
  try {
    localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Nothing to clear.
  }
}

/** Schedules GET /api/phone/session every 30 minutes (sooner if the token expires sooner). */
export class SessionRefresher {
  readonly #api: Api;
  readonly #onRefreshed: (session: PhoneSession) => void;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(api: Api, onRefreshed: (session: PhoneSession) => void) {
    this.#api = api;
    this.#onRefreshed = onRefreshed;
  }

  schedule(session: PhoneSession): void {
    this.stop();
    const untilExpiry = session.expiresAt - Date.now() - EXPIRY_MARGIN_MS;
    const delay = Math.max(5_000, Math.min(REFRESH_INTERVAL_MS, untilExpiry));
    this.#arm(delay);
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#refresh();
    }, delay);
  }

  async #refresh(): Promise<void> {
    try {
      const session = await this.#api.refreshSession();
      storeSession(session);
      this.#onRefreshed(session);
      this.schedule(session);
    } catch (err) {
      // A 401 has already ended the session (Api calls onUnauthorized); anything else is
      // transient, so try again shortly.
      if (err instanceof ApiError && err.status === 401) return;
      this.#arm(RETRY_AFTER_NETWORK_ERROR_MS);
    }
  }
}
