/** Call record types shared by the call log, the store and the API. */
import type { CallRow } from '../store/types.ts';

/** How a call ended, from the caller's point of view. */
export type Disposition = 'answered' | 'busy' | 'no_answer' | 'cancelled' | 'failed' | 'unavailable' | 'declined';

export const DISPOSITIONS: readonly Disposition[] = ['answered', 'busy', 'no_answer', 'cancelled', 'failed', 'unavailable', 'declined'];

/** Who hung up, when known. */
/** `media_timeout`: the server ended the call because its audio stopped. */
export type EndedBy = 'caller' | 'callee' | 'server' | 'media_timeout';

/** A finished call as reported by the proxy / b2bua (times in ms since the epoch). */
export interface CallRecord {
  /** SIP Call-ID of the caller's leg. */
  readonly callId: string;
  readonly callerUserId?: number | undefined;
  readonly callerUri: string;
  readonly calleeUserId?: number | undefined;
  readonly calleeUri: string;
  readonly startedAt: number;
  readonly answeredAt?: number | undefined;
  readonly endedAt: number;
  readonly disposition: Disposition;
  /** Final SIP status of the call setup (200 when answered). */
  readonly finalStatus: number;
  /** Contact of the device that answered, when forked. */
  readonly answeredDevice?: string | undefined;
  /** How the audio went, for answered calls. */
  readonly mediaMode?: 'p2p' | 'direct' | 'relay' | 'bridge' | undefined;
  readonly endedBy?: EndedBy | undefined;
}

/** A stored call record: absent values are null. */
export type StoredCall = CallRow;
