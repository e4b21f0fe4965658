// WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside whichever
// commit crosses the threshold: it copies WAL pages into the database and fsyncs it, which
// stalls a single-threaded server for milliseconds (the p99 of every SIP exchange). The
// server's own connection therefore sets `wal_autocheckpoint = 0`, and this worker thread,
// with its own connection to the same file, runs a PASSIVE checkpoint every interval: it
// never blocks the writer, and commits stay durable against a crash of the process the
// moment they return (WAL, synchronous=NORMAL).
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(workerData.path, { timeout: 5000 });
db.exec('PRAGMA busy_timeout = 5000');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
const timer = setInterval(() => {
  try { checkpoint.get(); } catch (e) { parentPort.postMessage({ error: String(e && e.message || e) }); }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  try { db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get(); } catch {}
  db.close();
  parentPort.postMessage({ stopped: true });
});
`;

export class Checkpointer {
  readonly #worker: Worker;
  #stopped: Promise<void> | undefined;

  constructor(path: string, intervalMs = 1000, onError: (message: string) => void = () => undefined) {
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, intervalMs }, resourceLimits: { maxOldGenerationSizeMb: 16 } });
    this.#worker.on('message', (m: { error?: string }) => {
      if (m.error !== undefined) onError(m.error);
    });
    this.#worker.on('error', (e) => onError(e.message));
    this.#worker.unref();
  }

  /** Final checkpoint (the WAL is folded into the database) and the worker ends. */
  stop(): Promise<void> {
    this.#stopped ??= new Promise<void>((resolve) => {
      const done = (): void => {
        void this.#worker.terminate().then(() => resolve(), () => resolve());
      };
      const timer = setTimeout(done, 5000);
      this.#worker.once('message', (m: { stopped?: boolean }) => {
        if (m.stopped === true) {
          clearTimeout(timer);
          done();
        }
      });
      this.#worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.#worker.postMessage('stop');
    });
    return this.#stopped;
  }
}
