// Same-origin JSON client for the /api/phone/* endpoints.
//
// Every request except sign-in carries `Authorization: Bearer <token>`. A 401 on any of them
// means the session ended (user disabled, password rotated, token expired): the client calls
// `onUnauthorized` once and throws, and the app drops its stored credentials.

export interface PhoneUser {
  id: number;
  name: string;
  number: string;
  sipUsername: string;
}

export interface SipAccount {
  domain: string;
  realm: string;
  uri: string;
  authorizationUser: string;
  ha1: string;
  wsPath: string;
}

export interface PhoneSession {
  token: string;
  expiresAt: number;
  user: PhoneUser;
  sip: SipAccount;
  iceServers: RTCIceServer[];
  iceTransportPolicy: RTCIceTransportPolicy;
}

export interface DeviceCounts {
  web: number;
  sip: number;
}

export interface DirectoryUser extends PhoneUser {
  online: boolean;
  devices: DeviceCounts;
}

export type Disposition =
  | 'answered'
  | 'busy'
  | 'no_answer'
  | 'cancelled'
  | 'failed'
  | 'unavailable'
  | 'declined';

export interface CallRecord {
  id: string | number;
  direction: 'out' | 'in';
  peer: { name: string; number: string };
  startedAt: number;
  answeredAt: number | null;
  endedAt: number;
  disposition: Disposition;
  durationSeconds: number;
}

export interface PresenceEvent {
  type: 'presence';
  userId: number;
  online: boolean;
  devices: DeviceCounts;
}

export type ApiErrorCode = 'UNAUTHORIZED' | 'RATE_LIMITED' | 'NETWORK' | 'BAD_RESPONSE' | string;

export class ApiError extends Error {
  readonly status: number;
  readonly code: ApiErrorCode;

  constructor(status: number, code: ApiErrorCode, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Validates a session body (from the server or from localStorage); throws on a bad shape. */
export function parseSession(value: unknown): PhoneSession {
  const v = value as Partial<PhoneSession> | null;
  const sip = v?.sip;
  const user = v?.user;
  if (
    typeof v?.token !== 'string' ||
    typeof v.expiresAt !== 'number' ||
    typeof user?.name !== 'string' ||
    typeof user.number !== 'string' ||
    typeof user.id !== 'number' ||
    typeof sip?.uri !== 'string' ||
    typeof sip.domain !== 'string' ||
    typeof sip.ha1 !== 'string' ||
    typeof sip.wsPath !== 'string'
  ) {
    throw new ApiError(0, 'BAD_RESPONSE', 'The server sent an unexpected session.');
  }
  return {
    ...(v as PhoneSession),
    iceServers: Array.isArray(v.iceServers) ? v.iceServers : [],
    iceTransportPolicy: v.iceTransportPolicy === 'relay' ? 'relay' : 'all',
  };
}

export class Api {
  readonly #getToken: () => string | null;
  readonly #onUnauthorized: () => void;

  constructor(getToken: () => string | null, onUnauthorized: () => void) {
    this.#getToken = getToken;
    this.#onUnauthorized = onUnauthorized;
  }

  async signIn(login: string, password: string): Promise<PhoneSession> {
    const body = await this.#request('POST', '/api/phone/session', { login, password }, false);
    return parseSession(body);
  }

  async refreshSession(): Promise<PhoneSession> {
    return parseSession(await this.#request('GET', '/api/phone/session'));
  }

  async directory(query = ''): Promise<DirectoryUser[]> {
    const q = query.trim();
    const path = q ? `/api/phone/directory?query=${encodeURIComponent(q)}` : '/api/phone/directory';
    const body = (await this.#request('GET', path)) as { users?: DirectoryUser[] };
    return Array.isArray(body.users) ? body.users : [];
  }

  async calls(limit = 50): Promise<CallRecord[]> {
    const body = (await this.#request('GET', `/api/phone/calls?limit=${limit}`)) as {
      calls?: CallRecord[];
    };
    return Array.isArray(body.calls) ? body.calls : [];
  }

  /** Opens the presence event stream; the caller reads `response.body`. */
  async openEvents(signal: AbortSignal): Promise<Response> {
    const response = await this.#fetch('GET', '/api/phone/events', undefined, true, signal, 'text/event-stream');
    if (!response.ok || !response.body) throw await this.#error(response, true);
    return response;
  }

  async #request(method: string, path: string, body?: unknown, authorized = true): Promise<unknown> {
    const response = await this.#fetch(method, path, body, authorized);
    if (!response.ok) throw await this.#error(response, authorized);
    try {
      return (await response.json()) as unknown;
    } catch {
      throw new ApiError(response.status, 'BAD_RESPONSE', 'The server sent an unreadable answer.');
    }
  }

  async #fetch(
    method: string,
    path: string,
    body: unknown,
    authorized: boolean,
    signal?: AbortSignal,
    accept = 'application/json',
  ): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (authorized) {
      const token = this.#getToken();
      if (!token) {
        this.#onUnauthorized();
        throw new ApiError(401, 'UNAUTHORIZED', 'Not signed in.');
      }
      headers.Authorization = `Bearer ${token}`;
    }
    const init: RequestInit = { method, headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (signal) init.signal = signal;
    try {
      return await fetch(path, init);
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ApiError(0, 'NETWORK', 'Cannot reach the server. Check your connection.');
    }
  }

  async #error(response: Response, authorized: boolean): Promise<ApiError> {
    let code: string = response.status === 401 ? 'UNAUTHORIZED' : `HTTP_${response.status}`;
    let message = response.statusText || `HTTP ${response.status}`;
    try {
      const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
      if (typeof body.error?.code === 'string') code = body.error.code;
      if (typeof body.error?.message === 'string') message = body.error.message;
    } catch {
      // Not JSON (a proxy error page, say): keep the status line.
    }
    if (response.status === 401 && authorized) this.#onUnauthorized();
    return new ApiError(response.status, code, message);
  }
}
