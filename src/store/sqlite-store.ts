/**
 * SqliteStore: the embedded Store on node:sqlite. One connection, WAL journal,
 * synchronous=NORMAL (a commit survives kill -9 of the process; only an OS crash or power
 * loss can drop the last commits), busy_timeout 5000 ms so the CLI and the server can
 * write the same file. Every statement is prepared once. node:sqlite is synchronous; the
 * async interface is for the PostgreSQL engine that follows.
 */
import { closeSync, openSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { CareflowError } from '../config/errors.ts';
import { detach } from '../sip/headers.ts';
import { Checkpointer } from './checkpointer.ts';
import { migrate } from './migrations.ts';
import type {
  BindingKey, BindingRow, CallRow, Credentials, ListCallsQuery, ListUsersQuery, NewCallRow,
  NewUser, NumberPlan, Store, User, UserUpdate,
} from './types.ts';

type Row = Record<string, SQLInputValue>;

const USER_COLUMNS = 'id, name, number, sip_username, enabled, ha1_realm, created_at, updated_at';
const SIP_USERNAME = /^careflow_(\d{1,15})$/;
export const MAX_PAGE = 1000;

export function sipUsernameOf(id: number): string {
  return `careflow_${id}`;
}

/** Logins kept in the credentials cache before it starts over (about 400 bytes each). */
const CREDENTIALS_CACHE_MAX = 20_000;

export class SqliteStore implements Store {
  readonly #creds = new Map<string, Credentials | undefined>();
  #credsVersion = -1;
  #credsCheckedAt = -Infinity;
  #checkpointer: Checkpointer | undefined;
  readonly #db: DatabaseSync;
  readonly #s: Record<string, StatementSync>;

  /** Opens (creating if needed) and migrates the database at `path` (`:memory:` for tests). */
  /**
   * @param options.backgroundCheckpoints the long-running server's connection: WAL checkpoints
   *   run in a worker thread (src/store/checkpointer.ts), never inside a commit on the event loop.
   */
  constructor(path: string, options: { backgroundCheckpoints?: boolean } = {}) {
    try {
      // Create the file 0600 first: it holds the HA1s (SQLite gives -wal/-shm the same mode).
      if (path !== ':memory:' && !path.startsWith('file:')) closeSync(openSync(path, 'a', 0o600));
      this.#db = new DatabaseSync(path, { timeout: 5000, enableForeignKeyConstraints: true });
      this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;');
    } catch (error) {
      throw new CareflowError('STORE_ERROR', `cannot open database ${path} (${(error as Error).message}); check CAREFLOW_DATA_DIR and its permissions`, undefined, { cause: error });
    }
    migrate(this.#db);
    if (options.backgroundCheckpoints === true && path !== ':memory:') {
      // journal_size_limit: the WAL is cut back to 16 MiB when it restarts after a checkpoint.
      this.#db.exec('PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 16777216;');
      this.#checkpointer = new Checkpointer(path, 1000, (m) => console.error(`careflow: WAL checkpoint failed: ${m}`));
    }
    const p = (sql: string): StatementSync => this.#db.prepare(sql);
    this.#s = {
      check: p('SELECT 1 AS ok'),
      maxId: p('SELECT COALESCE(MAX(id), 0) AS id FROM users'),
      insertUser: p(`INSERT INTO users (id, name, number, sip_username, ha1_md5, ha1_sha256, ha1_md5_number, ha1_sha256_number, ha1_realm, enabled, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      userById: p(`SELECT ${USER_COLUMNS} FROM users WHERE id = ?`),
      userBySip: p(`SELECT ${USER_COLUMNS} FROM users WHERE sip_username = ?`),
      userByNumber: p(`SELECT ${USER_COLUMNS} FROM users WHERE number = ?`),
      credsBySip: p('SELECT id, sip_username, number, enabled, ha1_realm, ha1_md5, ha1_sha256 FROM users WHERE sip_username = ?'),
      credsByNumber: p('SELECT id, sip_username, number, enabled, ha1_realm, ha1_md5_number AS ha1_md5, ha1_sha256_number AS ha1_sha256 FROM users WHERE number = ?'),
      listUsers: p(`SELECT ${USER_COLUMNS} FROM users
        WHERE (? IS NULL OR lower(name) LIKE ? ESCAPE '\\' OR lower(number) LIKE ? ESCAPE '\\' OR sip_username LIKE ? ESCAPE '\\')
        ORDER BY id LIMIT ? OFFSET ?`),
      countUsers: p(`SELECT COUNT(*) AS n FROM users
        WHERE (? IS NULL OR lower(name) LIKE ? ESCAPE '\\' OR lower(number) LIKE ? ESCAPE '\\' OR sip_username LIKE ? ESCAPE '\\')`),
      numbersWithPrefix: p('SELECT number FROM users WHERE substr(number, 1, ?) = ?'),
      updateUser: p(`UPDATE users SET name = COALESCE(?, name), enabled = COALESCE(?, enabled),
        ha1_md5 = COALESCE(?, ha1_md5), ha1_sha256 = COALESCE(?, ha1_sha256),
        ha1_md5_number = COALESCE(?, ha1_md5_number), ha1_sha256_number = COALESCE(?, ha1_sha256_number),
        ha1_realm = COALESCE(?, ha1_realm),
        updated_at = ? WHERE id = ?`),
      deleteUser: p('DELETE FROM users WHERE id = ?'),
      dataVersion: p('PRAGMA data_version'),
      upsertBinding: p(`INSERT INTO bindings (user_id, binding_key, contact_uri, contact_params, expires_at_ms, q, instance, reg_id, call_id, cseq,
          path, received, source_transport, source_address, source_port, user_agent, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (user_id, binding_key) DO UPDATE SET contact_uri = excluded.contact_uri, contact_params = excluded.contact_params, expires_at_ms = excluded.expires_at_ms,
          q = excluded.q, instance = excluded.instance, reg_id = excluded.reg_id, call_id = excluded.call_id, cseq = excluded.cseq,
          path = excluded.path, received = excluded.received, source_transport = excluded.source_transport,
          source_address = excluded.source_address, source_port = excluded.source_port, user_agent = excluded.user_agent,
          updated_at = excluded.updated_at`),
      deleteBinding: p('DELETE FROM bindings WHERE user_id = ? AND binding_key = ?'),
      deleteExpiredBindings: p('DELETE FROM bindings WHERE expires_at_ms <= ?'),
      loadBindings: p('SELECT * FROM bindings WHERE expires_at_ms > ? ORDER BY user_id, binding_key'),
      insertCall: p(`INSERT INTO calls (call_id, caller_user_id, caller_uri, callee_user_id, callee_uri, started_at, answered_at, ended_at,
          disposition, final_status, answered_device, ended_by, media_mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
      listCalls: p(`SELECT * FROM calls WHERE started_at < ? AND (? IS NULL OR caller_user_id = ? OR callee_user_id = ?)
        ORDER BY started_at DESC, id DESC LIMIT ?`),
      getSetting: p('SELECT value FROM kv WHERE key = ?'),
      setSetting: p('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    };
  }

  #st(name: string): StatementSync {
    const statement = this.#s[name];
    if (statement === undefined) throw new CareflowError('INTERNAL', `no prepared statement ${name}`);
    return statement;
  }

  /** Runs `fn` in one write transaction (BEGIN IMMEDIATE: the write lock up front). */
  #transaction<T>(fn: () => T): T {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw storeError(error);
    }
  }

  async check(): Promise<void> {
    this.#st('check').get();
  }

  async createUser(user: NewUser, plan: NumberPlan): Promise<User> {
    const [created] = await this.createUsersBulk([user], plan);
    if (created === undefined) throw new CareflowError('INTERNAL', 'user insert returned nothing');
    return created;
  }

  async createUsersBulk(users: readonly NewUser[], plan: NumberPlan): Promise<User[]> {
    this.#usersChanged();
    return this.#transaction(() => {
      // Ids come from a counter that only grows: a deleted user's SIP username is never reused.
      const counter = Number(this.#st('getSetting').get('seq.users')?.['value'] ?? 0);
      let id = Math.max(counter, Number(this.#st('maxId').get()?.['id'] ?? 0));
      // Generated numbers go above every existing number and every number given in this batch.
      let next = this.#nextNumberValue(plan);
      for (const u of users) {
        const n = u.number === undefined ? undefined : suffixOf(u.number, plan.prefix);
        if (n !== undefined && n >= next) next = n + 1;
      }
      const now = Date.now();
      const insert = this.#st('insertUser');
      const created: User[] = [];
      for (const u of users) {
        id += 1;
        const sipUsername = sipUsernameOf(id);
        const number = u.number ?? `${plan.prefix}${next++}`;
        const d = u.digests({ id, sipUsername, number });
        const enabled = u.enabled ?? true;
        insert.run(id, u.name, number, sipUsername, d.ha1Md5, d.ha1Sha256, d.ha1Md5Number, d.ha1Sha256Number, d.realm, enabled ? 1 : 0, now, now);
        created.push({ id, name: u.name, number, sipUsername, enabled, realm: d.realm, createdAt: now, updatedAt: now });
      }
      this.#st('setSetting').run('seq.users', String(id));
      return created;
    });
  }

  async getUserById(id: number): Promise<User | undefined> {
    return toUser(this.#st('userById').get(id));
  }

  async findUserBySipUsernameOrNumber(login: string): Promise<User | undefined> {
    return toUser(this.#st(SIP_USERNAME.test(login) ? 'userBySip' : 'userByNumber').get(login));
  }

  async listUsers(query: ListUsersQuery): Promise<User[]> {
    const limit = clamp(query.limit ?? 100, 1, MAX_PAGE);
    const offset = Math.max(0, Math.trunc(query.offset ?? 0));
    const like = likePattern(query.query);
    return this.#st('listUsers').all(like, like, like, like, limit, offset).map((r) => toUser(r) as User);
  }

  async countUsers(query?: string): Promise<number> {
    const like = likePattern(query);
    return Number(this.#st('countUsers').get(like, like, like, like)?.['n'] ?? 0);
  }

  async updateUser(id: number, update: UserUpdate): Promise<User | undefined> {
    this.#usersChanged();
    const d = update.digests;
    const enabled = update.enabled === undefined ? null : update.enabled ? 1 : 0;
    const result = this.#st('updateUser').run(
      update.name ?? null, enabled, d?.ha1Md5 ?? null, d?.ha1Sha256 ?? null, d?.ha1Md5Number ?? null, d?.ha1Sha256Number ?? null, d?.realm ?? null,
      Date.now(), id,
    );
    return result.changes === 0 ? undefined : this.getUserById(id);
  }

  async deleteUser(id: number): Promise<boolean> {
    this.#usersChanged();
    return this.#transaction(() => this.#st('deleteUser').run(id).changes > 0);
  }

  async nextNumber(plan: NumberPlan): Promise<string> {
    return `${plan.prefix}${this.#nextNumberValue(plan)}`;
  }

  #nextNumberValue(plan: NumberPlan): number {
    let max = plan.start - 1;
    for (const row of this.#st('numbersWithPrefix').iterate(plan.prefix.length, plan.prefix)) {
      const n = suffixOf(String(row['number']), plan.prefix);
      if (n !== undefined && n > max) max = n;
    }
    return max + 1;
  }

  /**
   * Hot path (every REGISTER and new call). Answers come from a cache that is exact: it is
   * dropped when `PRAGMA data_version` shows that another connection (the `careflow` CLI)
   * committed (checked at most every 10 ms), and on every user write through this connection
   * (#usersChanged), so a user added or changed anywhere takes effect within 10 ms.
   */
  async findCredentials(login: string): Promise<Credentials | undefined> {
    // Checked at most every 10 ms: a commit by the CLI is seen within 10 ms.
    const now = performance.now();
    if (now - this.#credsCheckedAt > 10) {
      this.#credsCheckedAt = now;
      const version = Number(this.#st('dataVersion').get()!['data_version']);
      if (version !== this.#credsVersion) {
        this.#creds.clear();
        this.#credsVersion = version;
      }
    }
    const hit = this.#creds.get(login);
    if (hit !== undefined || this.#creds.has(login)) return hit;
    const found = this.#loadCredentials(login);
    if (this.#creds.size >= CREDENTIALS_CACHE_MAX) this.#creds.clear();
    // The login was cut out of a request's Authorization header: cache a copy of it, not a
    // slice that keeps the whole request's text alive.
    this.#creds.set(detach(login), found);
    return found;
  }

  #usersChanged(): void {
    this.#creds.clear();
  }

  #loadCredentials(login: string): Credentials | undefined {
    const row = this.#st(SIP_USERNAME.test(login) ? 'credsBySip' : 'credsByNumber').get(login);
    if (row === undefined) return undefined;
    return {
      userId: Number(row['id']),
      sipUsername: String(row['sip_username']),
      number: String(row['number']),
      enabled: row['enabled'] === 1,
      realm: String(row['ha1_realm']),
      ha1Md5: String(row['ha1_md5']),
      ha1Sha256: String(row['ha1_sha256']),
    };
  }

  async saveBindings(upserts: readonly BindingRow[], deletes: readonly BindingKey[]): Promise<void> {
    if (upserts.length === 0 && deletes.length === 0) return;
    this.#transaction(() => {
      const upsert = this.#st('upsertBinding');
      const remove = this.#st('deleteBinding');
      for (const k of deletes) remove.run(k.userId, k.bindingKey);
      for (const b of upserts) {
        upsert.run(b.userId, b.bindingKey, b.contactUri, b.contactParams, b.expiresAtMs, b.q, b.instance, b.regId, b.callId, b.cseq,
          b.path, b.received, b.sourceTransport, b.sourceAddress, b.sourcePort, b.userAgent, b.updatedAt);
      }
    });
  }

  async loadBindings(nowMs: number): Promise<BindingRow[]> {
    this.#transaction(() => this.#st('deleteExpiredBindings').run(nowMs));
    return this.#st('loadBindings').all(nowMs).map(toBinding);
  }

  async insertCalls(calls: readonly NewCallRow[]): Promise<CallRow[]> {
    // One transaction for the calls that ended in one event-loop turn: a commit is a WAL
    // write of its own, four times the cost of the insert (bench/RESULTS.md). Committed to
    // the WAL before this returns.
    const insert = this.#st('insertCall');
    return this.#transaction(() => calls.map((call) => {
      const row = insert.get(call.callId, call.callerUserId, call.callerUri, call.calleeUserId, call.calleeUri,
        call.startedAt, call.answeredAt, call.endedAt, call.disposition, call.finalStatus, call.answeredDevice, call.endedBy, call.mediaMode);
      return { id: Number(row?.['id']), ...call };
    }));
  }

  async listCalls(query: ListCallsQuery): Promise<CallRow[]> {
    const limit = clamp(query.limit ?? 50, 1, MAX_PAGE);
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const user = query.userId ?? null;
    return this.#st('listCalls').all(before, user, user, user, limit).map(toCall);
  }

  async getSetting(key: string): Promise<string | undefined> {
    const row = this.#st('getSetting').get(key);
    return row === undefined ? undefined : String(row['value']);
  }

  async setSetting(key: string, value: string): Promise<void> {
    this.#st('setSetting').run(key, value);
  }

  async close(): Promise<void> {
    await this.#checkpointer?.stop();
    if (this.#db.isOpen) this.#db.close();
  }
}

/** The numeric part of `<prefix><digits>`, else undefined. */
function suffixOf(number: string, prefix: string): number | undefined {
  if (!number.startsWith(prefix)) return undefined;
  const rest = number.slice(prefix.length);
  return /^\d{1,15}$/.test(rest) ? Number(rest) : undefined;
}

function clamp(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(max, Math.max(min, Math.trunc(value))) : min;
}

function likePattern(query: string | undefined): string | null {
  if (query === undefined || query.trim() === '') return null;
  return `%${query.trim().toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function storeError(error: unknown): Error {
  if (error instanceof CareflowError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/UNIQUE constraint failed: users\.number/.test(message)) {
    return new CareflowError('NUMBER_TAKEN', 'that number already belongs to another user; choose another or leave it out to get the next free one', 'number', { cause: error });
  }
  return new CareflowError('STORE_ERROR', `database error: ${message}`, undefined, { cause: error });
}

function toUser(row: Row | undefined): User | undefined {
  if (row === undefined) return undefined;
  return {
    id: Number(row['id']),
    name: String(row['name']),
    number: String(row['number']),
    sipUsername: String(row['sip_username']),
    enabled: row['enabled'] === 1,
    realm: String(row['ha1_realm']),
    createdAt: Number(row['created_at']),
    updatedAt: Number(row['updated_at']),
  };
}

const str = (v: SQLInputValue | undefined): string | null => (v === null || v === undefined ? null : String(v));
const num = (v: SQLInputValue | undefined): number | null => (v === null || v === undefined ? null : Number(v));

function toBinding(row: Row): BindingRow {
  return {
    userId: Number(row['user_id']),
    bindingKey: String(row['binding_key']),
    contactUri: String(row['contact_uri']),
    contactParams: str(row['contact_params']),
    expiresAtMs: Number(row['expires_at_ms']),
    q: num(row['q']),
    instance: str(row['instance']),
    regId: num(row['reg_id']),
    callId: String(row['call_id']),
    cseq: Number(row['cseq']),
    path: str(row['path']),
    received: str(row['received']),
    sourceTransport: String(row['source_transport']),
    sourceAddress: String(row['source_address']),
    sourcePort: Number(row['source_port']),
    userAgent: str(row['user_agent']),
    updatedAt: Number(row['updated_at']),
  };
}

function toCall(row: Row): CallRow {
  return {
    id: Number(row['id']),
    callId: String(row['call_id']),
    callerUserId: num(row['caller_user_id']),
    callerUri: String(row['caller_uri']),
    calleeUserId: num(row['callee_user_id']),
    calleeUri: String(row['callee_uri']),
    startedAt: Number(row['started_at']),
    answeredAt: num(row['answered_at']),
    endedAt: Number(row['ended_at']),
    disposition: String(row['disposition']) as CallRow['disposition'],
    finalStatus: Number(row['final_status']),
    answeredDevice: str(row['answered_device']),
    mediaMode: str(row['media_mode']) as NewCallRow['mediaMode'],
    endedBy: str(row['ended_by']),
  };
}
