// The model of the one call the phone holds: its state as the UI shows it, and how JsSIP's
// failure causes map to the reasons the user reads.

import JsSIP from 'jssip';
import type { EndEvent } from 'jssip/lib/RTCSession';

export type CallState = 'idle' | 'incoming' | 'calling' | 'ringing' | 'confirmed' | 'held';
export type EndKind =
  | 'declined'
  | 'busy'
  | 'unavailable'
  | 'no-answer'
  | 'cancelled'
  | 'mic-blocked'
  | 'failed'
  | 'ended'
  | 'answered-elsewhere';

export interface CallInfo {
  direction: 'incoming' | 'outgoing';
  /** The peer's SIP URI user part: a CareFlow number or SIP username. */
  peerUser: string;
  /** The display name from the From/To header, may be empty. */
  peerDisplayName: string;
  state: CallState;
  /** Ringing with early media (183 with SDP): the far end plays its own ringback. */
  earlyMedia: boolean;
  confirmedAt: number | null;
  muted: boolean;
  heldLocally: boolean;
  heldByPeer: boolean;
}

export interface CallEnd {
  call: CallInfo;
  kind: EndKind;
  /** JsSIP's cause string, e.g. "Busy" or "Terminated". */
  cause: string;
  originator: 'local' | 'remote' | 'system';
  durationSeconds: number;
}

const causes = JsSIP.C.causes;

/** Maps a JsSIP `failed` cause to the notice the user sees. */
export function failureKind(cause: string): EndKind {
  switch (cause) {
    case causes.REJECTED:
      return 'declined';
    case causes.BUSY:
      return 'busy';
    case causes.UNAVAILABLE:
    case causes.NOT_FOUND:
    case causes.ADDRESS_INCOMPLETE:
      return 'unavailable';
    case causes.NO_ANSWER:
    case causes.EXPIRES:
      return 'no-answer';
    case causes.CANCELED:
      return 'cancelled';
    case causes.USER_DENIED_MEDIA_ACCESS:
      return 'mic-blocked';
    default:
      return 'failed';
  }
}

/** A forking proxy cancels the other branches with "Reason: SIP;cause=200" (RFC 3326). */
export function completedElsewhere(e: EndEvent): boolean {
  const message = e.message as { getHeader?: (name: string) => string | undefined } | null;
  const reason = message?.getHeader?.('Reason') ?? '';
  return /cause=200\b/i.test(reason);
}
