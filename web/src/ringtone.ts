// Call tones synthesised with WebAudio (no audio files): the incoming-call ringtone, the
// ringback heard while the far end rings, and the local feedback for DTMF keys.
//
// Browsers only let an AudioContext make sound after a user gesture, so `unlock()` is called
// from the first click or key press; before that a ringtone is silent (the screen still rings).

type Pattern = readonly { at: number; freqs: readonly number[]; duration: number }[];

/** Two short chimes, repeated; every 2.4 s. */
const RINGTONE: Pattern = [
  { at: 0, freqs: [880], duration: 0.16 },
  { at: 0.2, freqs: [660], duration: 0.16 },
  { at: 0.5, freqs: [880], duration: 0.16 },
  { at: 0.7, freqs: [660], duration: 0.22 },
];
const RINGTONE_PERIOD_S = 2.4;

/** ETSI ES 201 970 ringing tone: 425 Hz, 1 s on, 4 s off. */
const RINGBACK: Pattern = [{ at: 0, freqs: [425], duration: 1 }];
const RINGBACK_PERIOD_S = 5;

/** ITU-T Q.23 DTMF frequency pairs (row, column). */
const DTMF_FREQS: Readonly<Record<string, readonly [number, number]>> = {
  '1': [697, 1209], '2': [697, 1336], '3': [697, 1477],
  '4': [770, 1209], '5': [770, 1336], '6': [770, 1477],
  '7': [852, 1209], '8': [852, 1336], '9': [852, 1477],
  '*': [941, 1209], '0': [941, 1336], '#': [941, 1477],
};

interface Loop {
  timer: ReturnType<typeof setInterval>;
  output: GainNode;
}

export class Tones {
  #ctx: AudioContext | null = null;
  #loop: Loop | null = null;

  /** Creates or resumes the AudioContext; call from a user gesture. */
  unlock(): void {
    const ctx = this.#context();
    if (ctx && ctx.state === 'suspended') void ctx.resume().catch(() => undefined);
  }

  startRingtone(): void {
    this.#start(RINGTONE, RINGTONE_PERIOD_S, 0.18);
  }

  startRingback(): void {
    this.#start(RINGBACK, RINGBACK_PERIOD_S, 0.1);
  }

  stop(): void {
    const loop = this.#loop;
    this.#loop = null;
    if (!loop) return;
    clearInterval(loop.timer);
    const ctx = this.#ctx;
    if (ctx) {
      // Fade out over 30 ms rather than clicking.
      loop.output.gain.setTargetAtTime(0, ctx.currentTime, 0.01);
      setTimeout(() => loop.output.disconnect(), 100);
    } else {
      loop.output.disconnect();
    }
  }

  dtmf(digit: string): void {
    const freqs = DTMF_FREQS[digit];
    const ctx = this.#context();
    if (!freqs || !ctx) return;
    const output = ctx.createGain();
    output.gain.value = 0.08;
    output.connect(ctx.destination);
    this.#tone(ctx, output, ctx.currentTime + 0.01, freqs, 0.12);
    setTimeout(() => output.disconnect(), 400);
  }

  get playing(): boolean {
    return this.#loop !== null;
  }

  #start(pattern: Pattern, period: number, volume: number): void {
    this.stop();
    const ctx = this.#context();
    if (!ctx) return;
    if (ctx.state === 'suspended') void ctx.resume().catch(() => undefined);
    const output = ctx.createGain();
    output.gain.value = volume;
    output.connect(ctx.destination);
    let next = ctx.currentTime + 0.05;
    const scheduleAhead = (): void => {
      // Keep one period scheduled ahead of the clock so timer jitter never leaves a gap.
      while (next < ctx.currentTime + period * 1.5) {
        for (const step of pattern) this.#tone(ctx, output, next + step.at, step.freqs, step.duration);
        next += period;
      }
    };
    scheduleAhead();
    this.#loop = { timer: setInterval(scheduleAhead, 500), output };
  }

  #tone(ctx: AudioContext, output: AudioNode, at: number, freqs: readonly number[], duration: number): void {
    const envelope = ctx.createGain();
    envelope.gain.setValueAtTime(0, at);
    envelope.gain.linearRampToValueAtTime(1 / freqs.length, at + 0.01);
    envelope.gain.setValueAtTime(1 / freqs.length, at + duration - 0.02);
    envelope.gain.linearRampToValueAtTime(0, at + duration);
    envelope.connect(output);
    for (const freq of freqs) {
      const osc = ctx.createOscillator();
      osc.type = 'sine';
      osc.frequency.value = freq;
      osc.connect(envelope);
      osc.start(at);
      osc.stop(at + duration + 0.01);
      osc.addEventListener('ended', () => envelope.disconnect(), { once: true });
    }
  }

  #context(): AudioContext | null {
    if (this.#ctx) return this.#ctx;
    if (typeof AudioContext === 'undefined') return null;
    try {
      this.#ctx = new AudioContext({ latencyHint: 'interactive' });
    } catch {
      return null;
    }
    return this.#ctx;
  }
}
