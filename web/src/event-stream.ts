// Reads GET /api/phone/events, a never-ending text/event-stream.
//
// EventSource cannot send an Authorization header, so this reads the stream with fetch and a
// body reader and parses the SSE framing itself (HTML Living Standard, "Server-sent events",
// §9.2.6): lines end in LF, CR or CRLF; a blank line dispatches the event; `data:` lines are
// joined with LF; lines starting with ':' are comments (the server's heartbeats).
// On a disconnect it reconnects with backoff, 1 s doubling to 30 s.

import { ApiError, type Api, type PresenceEvent } from './api.ts';

const MIN_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;

export interface EventStreamHandlers {
  /** Called each time the stream (re)connects: re-fetch whatever may have been missed. */
  onOpen: () => void;
  onPresence: (event: PresenceEvent) => void;
  /** Called when a connection attempt fails or an open stream drops. */
  onDrop: () => void;
}

/** Incremental SSE parser: feed it text chunks, it calls back with each event's data. */
export class SseParser {
  readonly #onData: (data: string) => void;
  #buffer = '';
  #data: string[] = [];

  constructor(onData: (data: string) => void) {
    this.#onData = onData;
  }

  push(chunk: string): void {
    this.#buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      if (!match) return;
      // A lone CR at the end of a chunk may be the first half of a CRLF: wait for more.
      if (match[0] === '\r' && match.index === this.#buffer.length - 1) return;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      this.#line(line);
    }
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#data.length > 0) this.#onData(this.#data.join('\n'));
      this.#data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    // `event`, `id` and `retry` are not used by this server.
  }
}

export class EventStream {
  readonly #api: Api;
  readonly #handlers: EventStreamHandlers;
  #abort: AbortController | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #backoff = MIN_BACKOFF_MS;
  #running = false;

  constructor(api: Api, handlers: EventStreamHandlers) {
    this.#api = api;
    this.#handlers = handlers;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#backoff = MIN_BACKOFF_MS;
    void this.#connect();
  }

  stop(): void {
    this.#running = false;
    this.#abort?.abort();
    this.#abort = null;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  async #connect(): Promise<void> {
    const abort = new AbortController();
    this.#abort = abort;
    try {
      const response = await this.#api.openEvents(abort.signal);
      this.#backoff = MIN_BACKOFF_MS;
      this.#handlers.onOpen();
      await this.#read(response, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      // A 401 ended the session; the app stops this stream through its session-ended path.
      if (err instanceof ApiError && err.status === 401) return;
    }
    if (!this.#running || abort.signal.aborted) return;
    this.#handlers.onDrop();
    this.#scheduleReconnect();
  }

  async #read(response: Response, signal: AbortSignal): Promise<void> {
    const body = response.body;
    if (!body) return;
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser((data) => this.#dispatch(data));
    const onAbort = (): void => void reader.cancel().catch(() => undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        parser.push(value);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  #dispatch(data: string): void {
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    const e = event as Partial<PresenceEvent> | null;
    if (e?.type === 'presence' && typeof e.userId === 'number' && typeof e.online === 'boolean') {
      this.#handlers.onPresence({
        type: 'presence',
        userId: e.userId,
        online: e.online,
        devices: { web: e.devices?.web ?? 0, sip: e.devices?.sip ?? 0 },
      });
    }
  }

  #scheduleReconnect(): void {
    const delay = this.#backoff;
    this.#backoff = Math.min(MAX_BACKOFF_MS, this.#backoff * 2);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#running) void this.#connect();
    }, delay);
  }
}
