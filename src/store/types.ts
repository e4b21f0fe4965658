/**
 * The Store: everything CareFlow keeps on disk, behind one async interface so that the
 * embedded engine (SqliteStore, node:sqlite) and a PostgreSQL engine serve the same
 * callers and pass the same tests. Callers never see SQL or engine types.
 *
 * Credentials: a user can log in (SIP digest `username`) with either the SIP username
 * `careflow_<id>` or the number. The digest HA1 includes the login name, so each user row
 * holds two HA1 pairs: `ha1_md5`/`ha1_sha256` for the SIP username and
 * `ha1_md5_number`/`ha1_sha256_number` for the number. Both are keyed with the realm
 * (the configured domain): changing the domain invalidates every stored HA1 until
 * `careflow user passwd` re-keys the user.
 */
import type { Disposition } from '../calls/types.ts';

export interface NumberPlan {
  /** Prefix of generated numbers, e.g. `care4w-`. */
  readonly prefix: string;
  /** The first number handed out, e.g. 1000001. */
  readonly start: number;
}

/** A user as everyone but the registrar sees it: no digests. */
export interface User {
  readonly id: number;
  readonly name: string;
  readonly number: string;
  readonly sipUsername: string;
  readonly enabled: boolean;
  /** The realm (domain) the stored HA1s were computed with; differs from the domain after a domain change. */
  readonly realm: string;
  /** ms since the epoch */
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** HA1 digests, lower-case hex, for both login names. */
export interface UserDigests {
  readonly realm: string;
  readonly ha1Md5: string;
  readonly ha1Sha256: string;
  readonly ha1Md5Number: string;
  readonly ha1Sha256Number: string;
}

export interface NewUser {
  readonly name: string;
  /** Omitted: the next free number of the plan. */
  readonly number?: string | undefined;
  readonly enabled?: boolean | undefined;
  /**
   * Called inside the insert transaction once the id (hence the SIP username) and the number
   * are known; returns the HA1s to store. Keeps plain passwords out of the store.
   */
  readonly digests: (login: { readonly id: number; readonly sipUsername: string; readonly number: string }) => UserDigests;
}

export interface UserUpdate {
  readonly name?: string | undefined;
  readonly enabled?: boolean | undefined;
  /** New password digests (rotation). */
  readonly digests?: UserDigests | undefined;
}

/** What the registrar needs per REGISTER/INVITE for one exact login name. */
export interface Credentials {
  readonly userId: number;
  readonly sipUsername: string;
  readonly number: string;
  readonly enabled: boolean;
  /** Realm the HA1s were computed with: a stale realm cannot match, treat as a wrong password. */
  readonly realm: string;
  /** HA1 for this login name: MD5 and SHA-256 (RFC 7616 / RFC 8760). */
  readonly ha1Md5: string;
  readonly ha1Sha256: string;
}

export interface ListUsersQuery {
  readonly limit?: number | undefined;
  readonly offset?: number | undefined;
  /** Substring of name, number or SIP username (case-insensitive for ASCII). */
  readonly query?: string | undefined;
}

/** A registrar contact binding as persisted (RFC 3261 §10.3, RFC 5626 instance/reg-id). */
export interface BindingRow {
  readonly userId: number;
  /** Unique per AOR: the registrar's key (e.g. instance+reg-id, else the contact URI). */
  readonly bindingKey: string;
  readonly contactUri: string;
  /** Contact header parameters as received (e.g. `;+sip.instance=...;reg-id=1`), null when none. */
  readonly contactParams: string | null;
  readonly expiresAtMs: number;
  readonly q: number | null;
  readonly instance: string | null;
  readonly regId: number | null;
  readonly callId: string;
  readonly cseq: number;
  /** Path header values (RFC 3327), joined with ", "; null when none. */
  readonly path: string | null;
  readonly received: string | null;
  readonly sourceTransport: string;
  readonly sourceAddress: string;
  readonly sourcePort: number;
  readonly userAgent: string | null;
  readonly updatedAt: number;
}

export interface BindingKey {
  readonly userId: number;
  readonly bindingKey: string;
}

/** One finished call, as handed to the store (see CallLog for validation). */
export interface NewCallRow {
  readonly callId: string;
  readonly callerUserId: number | null;
  readonly callerUri: string;
  readonly calleeUserId: number | null;
  readonly calleeUri: string;
  readonly startedAt: number;
  readonly answeredAt: number | null;
  readonly endedAt: number;
  readonly disposition: Disposition;
  readonly finalStatus: number;
  readonly answeredDevice: string | null;
  /** p2p | direct | relay | bridge for answered calls; null otherwise. */
  readonly mediaMode: 'p2p' | 'direct' | 'relay' | 'bridge' | null;
  readonly endedBy: string | null;
}

export interface CallRow extends NewCallRow {
  readonly id: number;
}

export interface ListCallsQuery {
  readonly limit?: number | undefined;
  /** Only calls that started strictly before this time (ms epoch): the page cursor. */
  readonly before?: number | undefined;
  /** Only calls where this user is caller or callee. */
  readonly userId?: number | undefined;
}

export interface Store {
  /** Cheap liveness probe (health check). */
  check(): Promise<void>;

  createUser(user: NewUser, plan: NumberPlan): Promise<User>;
  /** All or nothing, one transaction. */
  createUsersBulk(users: readonly NewUser[], plan: NumberPlan): Promise<User[]>;
  getUserById(id: number): Promise<User | undefined>;
  /** `careflow_<id>` or a number. */
  findUserBySipUsernameOrNumber(login: string): Promise<User | undefined>;
  listUsers(query: ListUsersQuery): Promise<User[]>;
  countUsers(query?: string): Promise<number>;
  /** Returns the updated user, or undefined when there is no such user. */
  updateUser(id: number, update: UserUpdate): Promise<User | undefined>;
  /** Returns false when there was no such user. Bindings go with the user. */
  deleteUser(id: number): Promise<boolean>;
  /** The number the next user gets: highest `<prefix><n>` + 1, at least `<prefix><start>`. */
  nextNumber(plan: NumberPlan): Promise<string>;
  /** Hot path: one indexed lookup per REGISTER/INVITE. */
  findCredentials(login: string): Promise<Credentials | undefined>;

  /** One transaction; called by the registrar's write-behind flusher, not per REGISTER. */
  saveBindings(upserts: readonly BindingRow[], deletes: readonly BindingKey[]): Promise<void>;
  /** Bindings not yet expired at `nowMs` (expired rows are deleted on the way). */
  loadBindings(nowMs: number): Promise<BindingRow[]>;

  /**
   * Writes finished calls in one transaction, all or none; durable when the promise resolves
   * (survives kill -9 of the process). Rows come back in order with their ids.
   */
  insertCalls(calls: readonly NewCallRow[]): Promise<CallRow[]>;
  /** Newest first. */
  listCalls(query: ListCallsQuery): Promise<CallRow[]>;

  getSetting(key: string): Promise<string | undefined>;
  setSetting(key: string, value: string): Promise<void>;

  close(): Promise<void>;
}
