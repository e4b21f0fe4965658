// A client for RTPEngine's "ng" control protocol: `<cookie> <bencoded dictionary>` over UDP,
// the answer carrying the same cookie. Built like mediasoup's Channel: every request has an
// id (the cookie) and a pending entry with its own timeout; `close()` rejects everything
// pending. RTPEngine caches answers by cookie, so a retransmission after a lost datagram is
// answered with the same result instead of being executed twice.
//
// Several RTPEngine instances: a new call goes to the first instance not marked down; every
// later request of that call goes to the same instance (its media state lives there). An
// instance that does not answer is marked down for `downForMs` and new calls fail over.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { type BValue, decode, encode } from './bencode.ts';

export interface NgInstance {
  readonly host: string;
  readonly port: number;
}

export interface NgClientOptions {
  readonly instances: readonly NgInstance[];
  /** Retransmit a request after this long without an answer (ms, default 500). */
  readonly retransmitMs?: number;
  /** Give up on an instance after this long (ms, default 2000). */
  readonly timeoutMs?: number;
  /** How long an instance that timed out is skipped for new calls (ms, default 10,000). */
  readonly downForMs?: number;
  readonly now?: () => number;
}

export type NgErrorCode = 'NG_TIMEOUT' | 'NG_ERROR' | 'NG_CLOSED' | 'NG_NO_INSTANCE' | 'NG_BAD_ANSWER';

export class NgError extends Error {
  override name = 'NgError';
  readonly code: NgErrorCode;
  constructor(code: NgErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export type NgDict = { [key: string]: BValue };

interface Pending {
  readonly resolve: (v: NgDict) => void;
  readonly reject: (e: Error) => void;
  readonly retransmit: NodeJS.Timeout;
  readonly timeout: NodeJS.Timeout;
}

export class NgClient {
  readonly #o: NgClientOptions;
  readonly #now: () => number;
  readonly #socket4: dgram.Socket;
  readonly #socket6: dgram.Socket;
  readonly #pending = new Map<string, Pending>();
  /** call-id -> index of the instance holding the call */
  readonly #callInstance = new Map<string, number>();
  readonly #downUntil: number[];
  readonly #prefix = randomBytes(4).toString('hex');
  #counter = 0;
  #closed = false;

  constructor(opts: NgClientOptions) {
    if (opts.instances.length === 0) throw new RangeError('at least one RTPEngine instance is required');
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#downUntil = opts.instances.map(() => 0);
    const onMessage = (msg: Buffer): void => this.#onAnswer(msg);
    this.#socket4 = dgram.createSocket('udp4').on('message', onMessage).on('error', () => { /* reported through timeouts */ });
    this.#socket6 = dgram.createSocket('udp6').on('message', onMessage).on('error', () => { /* reported through timeouts */ });
    this.#socket4.unref();
    this.#socket6.unref();
  }

  get pending(): number {
    return this.#pending.size;
  }


  /**
   * Sends one command. With `callId`, the call's instance is used (or chosen, for its first
   * command); an instance that times out is marked down and, for a call's first command, the
   * next instance is tried.
   */
  async request(command: string, params: NgDict = {}, callId?: string): Promise<NgDict> {
    if (this.#closed) throw new NgError('NG_CLOSED', 'the RTPEngine client is closed');
    const pinned = callId !== undefined ? this.#callInstance.get(callId) : undefined;
    if (pinned !== undefined) return this.#send(pinned, command, params);
    const tried = new Set<number>();
    let last: Error | undefined;
    for (;;) {
      const i = this.#pick(tried);
      if (i === undefined) throw last ?? new NgError('NG_NO_INSTANCE', 'every RTPEngine instance is down');
      tried.add(i);
      try {
        const answer = await this.#send(i, command, params);
        if (callId !== undefined) this.#callInstance.set(callId, i);
        return answer;
      } catch (e) {
        if (!(e instanceof NgError) || e.code !== 'NG_TIMEOUT') throw e;
        this.#downUntil[i] = this.#now() + (this.#o.downForMs ?? 10_000);
        last = e;
      }
    }
  }

  /** The call ended: its instance pin is dropped. */
  forget(callId: string): void {
    this.#callInstance.delete(callId);
  }

  /** `ping` to every instance; true for those answering `pong`. */
  async ping(): Promise<boolean[]> {
    return Promise.all(this.#o.instances.map((_, i) => this.#send(i, 'ping', {}).then((a) => a['result'] === 'pong', () => false)));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [cookie, p] of this.#pending) {
      clearTimeout(p.retransmit);
      clearTimeout(p.timeout);
      p.reject(new NgError('NG_CLOSED', 'the RTPEngine client was closed'));
      this.#pending.delete(cookie);
    }
    this.#socket4.close();
    this.#socket6.close();
  }

  #pick(tried: Set<number>): number | undefined {
    const now = this.#now();
    for (let i = 0; i < this.#o.instances.length; i++) if (!tried.has(i) && this.#downUntil[i]! <= now) return i;
    // Everything is marked down: try the ones not tried yet anyway rather than failing at once.
    for (let i = 0; i < this.#o.instances.length; i++) if (!tried.has(i)) return i;
    return undefined;
  }

  #send(index: number, command: string, params: NgDict): Promise<NgDict> {
    const inst = this.#o.instances[index]!;
    const cookie = `${this.#prefix}_${++this.#counter}`;
    const packet = Buffer.concat([Buffer.from(`${cookie} `), encode({ ...params, command })]);
    const socket = isIPv6(inst.host) ? this.#socket6 : this.#socket4;
    const transmit = (): void => socket.send(packet, inst.port, inst.host);
    return new Promise<NgDict>((resolve, reject) => {
      const retransmit = setInterval(transmit, this.#o.retransmitMs ?? 500);
      const timeout = setTimeout(() => {
        this.#settle(cookie);
        reject(new NgError('NG_TIMEOUT', `RTPEngine ${inst.host}:${inst.port} did not answer ${command} within ${this.#o.timeoutMs ?? 2000} ms`));
      }, this.#o.timeoutMs ?? 2000);
      this.#pending.set(cookie, { resolve, reject, retransmit, timeout });
      transmit();
    });
  }

  #settle(cookie: string): Pending | undefined {
    const p = this.#pending.get(cookie);
    if (p === undefined) return undefined;
    clearInterval(p.retransmit);
    clearTimeout(p.timeout);
    this.#pending.delete(cookie);
    return p;
  }

  #onAnswer(msg: Buffer): void {
    const space = msg.indexOf(0x20);
    if (space <= 0) return;
    const p = this.#settle(msg.toString('latin1', 0, space));
    if (p === undefined) return; // a late answer to a retransmission, or not ours
    let answer: BValue;
    try {
      answer = decode(msg.subarray(space + 1));
    } catch (e) {
      p.reject(new NgError('NG_BAD_ANSWER', `RTPEngine sent an undecodable answer: ${(e as Error).message}`));
      return;
    }
    if (answer === null || typeof answer !== 'object' || Array.isArray(answer)) {
      p.reject(new NgError('NG_BAD_ANSWER', 'RTPEngine answered with something other than a dictionary'));
      return;
    }
    if (answer['result'] === 'error') {
      p.reject(new NgError('NG_ERROR', `RTPEngine: ${String(answer['error-reason'] ?? 'error')}`));
      return;
    }
    p.resolve(answer);
  }
}
