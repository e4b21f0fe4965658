// The coded errors of the embedded media engine. The proxy (src/router/call-media.ts) logs
// them and, for a bridge that could not be set up, leaves the branch out (503 / 488 when no
// branch is left); `code` is stable, the message says what was wrong with which call.
//
//   MEDIA_BAD_SDP      the SDP has no usable audio stream (no m=audio, no payload types,
//                      a browser's SDP without ICE credentials or a DTLS fingerprint)
//   MEDIA_NO_CODEC     the two sides share no codec that can be passed through unchanged
//                      (G.711 PCMU/PCMA or Opus toward a browser; no transcoding)
//   MEDIA_NO_PORTS     no free UDP port (pair) left in the configured RTP port range
//   MEDIA_UNKNOWN_CALL an answer for a call, branch or dialog tag the engine does not hold
//   MEDIA_CLOSED       the engine was closed (server shutdown)

export type EmbeddedMediaErrorCode = 'MEDIA_BAD_SDP' | 'MEDIA_NO_CODEC' | 'MEDIA_NO_PORTS' | 'MEDIA_UNKNOWN_CALL' | 'MEDIA_CLOSED';

export class EmbeddedMediaError extends Error {
  override name = 'EmbeddedMediaError';
  readonly code: EmbeddedMediaErrorCode;
  constructor(code: EmbeddedMediaErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
