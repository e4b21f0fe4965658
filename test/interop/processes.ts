// Stopping a process a test started, by its PID: SIGTERM, then SIGKILL if it has not exited
// within the grace period. Idempotent: every call returns the same promise of the exit code.

/**
 * `exited` resolves with the exit code (null when killed by a signal); `exitCode()` is that
 * code once known (undefined while the process runs).
 */
export function stopper(pid: number, exited: Promise<number | null>, exitCode: () => number | null | undefined, graceMs = 5000): () => Promise<number | null> {
  let stopping: Promise<number | null> | undefined;
  return () => {
    if (stopping !== undefined) return stopping;
    const code = exitCode();
    if (code !== undefined) return Promise.resolve(code);
    stopping = (async () => {
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
      const c = await exited;
      clearTimeout(t);
      return c;
    })();
    return stopping;
  };
}
