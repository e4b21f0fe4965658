// A small levelled logger writing one line per event to stdout/stderr. Errors print their
// message and stack at debug level only; nothing here ever prints secrets (callers pass
// messages, not request objects with credentials).
import type { LogLevel } from './config/schema.ts';

export interface Logger {
  error(msg: string, err?: unknown): void;
  warn(msg: string, err?: unknown): void;
  info(msg: string, err?: unknown): void;
  debug(msg: string, err?: unknown): void;
}

const RANK: Record<LogLevel, number> = { fatal: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 };

export function createLogger(level: LogLevel, out: (line: string) => void = (l) => process.stdout.write(l + '\n')): Logger {
  const max = RANK[level];
  const emit = (lvl: LogLevel, msg: string, err?: unknown): void => {
    if (RANK[lvl] > max) return;
    let line = `${new Date().toISOString()} ${lvl.padEnd(5)} ${msg}`;
    if (err !== undefined) {
      const e = err as { message?: unknown; stack?: unknown; code?: unknown };
      line += `: ${typeof e.message === 'string' ? e.message : String(err)}`;
      if (typeof e.code === 'string') line += ` [${e.code}]`;
      if (max >= RANK.debug && typeof e.stack === 'string') line += `\n${e.stack}`;
    }
    out(line);
  };
  return {
    error: (m, e) => emit('error', m, e),
    warn: (m, e) => emit('warn', m, e),
    info: (m, e) => emit('info', m, e),
    debug: (m, e) => emit('debug', m, e),
  };
}
