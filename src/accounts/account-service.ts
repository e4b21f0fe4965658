/**
 * AccountService: users, numbers and SIP credentials. Passwords are generated (or checked
 * when given), returned exactly once in a `NewAccount`, and stored only as HA1 digests
 * for both login names (see credentials.ts). Users are referred to by id, number or SIP
 * username (`careflow_<id>`).
 */
import { CareflowError } from '../config/errors.ts';
import type { NumberPlan, Store, User } from '../store/types.ts';
import { checkPassword, generatePassword, userDigests } from './credentials.ts';
import { parseUserCsv } from './csv.ts';

/** What `user add --json` prints and POST /api/users returns: the password appears only here. */
export interface NewAccount {
  readonly id: number;
  readonly number: string;
  readonly sipUsername: string;
  readonly password: string;
  readonly domain: string;
}

export interface AddUserInput {
  readonly name: string;
  readonly number?: string | undefined;
  readonly password?: string | undefined;
}

export interface AccountServiceOptions {
  readonly store: Store;
  /** The SIP domain, used as the digest realm. */
  readonly domain: string;
  readonly numbers: NumberPlan;
}

const MAX_NAME = 100;
const NUMBER = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$/;

export function checkName(raw: unknown, field: string = 'name'): string {
  const name = typeof raw === 'string' ? raw.trim() : '';
  if (name === '') throw new CareflowError('INVALID_INPUT', `${field}: required, e.g. "Alice Smith"`, field);
  if (name.length > MAX_NAME) throw new CareflowError('INVALID_INPUT', `${field}: at most ${MAX_NAME} characters, got ${name.length}`, field);
  if (/[\p{Cc}\p{Cf}]/u.test(name)) throw new CareflowError('INVALID_INPUT', `${field}: contains control characters`, field);
  return name;
}

export function checkNumber(raw: string, field: string = 'number'): string {
  const number = raw.trim();
  if (!NUMBER.test(number) || number.toLowerCase().startsWith('careflow_')) {
    throw new CareflowError('INVALID_INPUT', `${field}: expected 1-32 letters, digits, '.', '_', '+' or '-' (not starting with careflow_), like care4w-1000042, got ${JSON.stringify(raw)}`, field);
  }
  return number;
}

export class AccountService {
  readonly #store: Store;
  readonly #domain: string;
  readonly #plan: NumberPlan;

  constructor(options: AccountServiceOptions) {
    this.#store = options.store;
    this.#domain = options.domain;
    this.#plan = options.numbers;
  }

  get domain(): string {
    return this.#domain;
  }

  async add(input: AddUserInput): Promise<NewAccount> {
    const name = checkName(input.name);
    const number = input.number === undefined ? undefined : checkNumber(input.number);
    const password = input.password === undefined ? generatePassword() : checkPassword(input.password);
    if (number !== undefined && (await this.#store.findUserBySipUsernameOrNumber(number)) !== undefined) {
      throw new CareflowError('NUMBER_TAKEN', `number: ${number} already belongs to another user; choose another or leave it out to get the next free one`, 'number');
    }
    const user = await this.#store.createUser(
      { name, number, digests: (login) => userDigests(login, this.#domain, password) },
      this.#plan,
    );
    return this.#account(user, password);
  }

  /**
   * Imports users from CSV (header `name,number,password`; only name required). All or
   * nothing: every row is checked first, errors name the line and column, then one
   * transaction inserts them. Returns the new accounts, passwords included.
   */
  async importCsv(text: string): Promise<NewAccount[]> {
    const { rows, columns } = parseUserCsv(text);
    const where = (line: number, column: string): string => `line ${line}, column ${columns.get(column) ?? '?'} (${column})`;
    const seen = new Map<string, number>();
    const prepared: Array<{ name: string; number: string | undefined; password: string }> = [];
    for (const row of rows) {
      const at = (column: string): string => where(row.line, column);
      const name = rethrowAsCsv(() => checkName(row.name, at('name')));
      const number = row.number === undefined ? undefined : rethrowAsCsv(() => checkNumber(row.number ?? '', at('number')));
      const password = row.password === undefined ? generatePassword() : rethrowAsCsv(() => checkPassword(row.password ?? '', at('password')));
      if (number !== undefined) {
        const first = seen.get(number);
        if (first !== undefined) throw new CareflowError('CSV_INVALID', `${at('number')}: number ${number} is also on line ${first}`, `line ${row.line}`);
        seen.set(number, row.line);
        if ((await this.#store.findUserBySipUsernameOrNumber(number)) !== undefined) {
          throw new CareflowError('NUMBER_TAKEN', `${at('number')}: number ${number} already belongs to another user`, `line ${row.line}`);
        }
      }
      prepared.push({ name, number, password });
    }
    const users = await this.#store.createUsersBulk(
      prepared.map((p) => ({ name: p.name, number: p.number, digests: (login) => userDigests(login, this.#domain, p.password) })),
      this.#plan,
    );
    return users.map((user, i) => this.#account(user, prepared[i]?.password ?? ''));
  }

  list(query: { query?: string | undefined; limit?: number | undefined; offset?: number | undefined } = {}): Promise<User[]> {
    return this.#store.listUsers(query);
  }

  count(query?: string): Promise<number> {
    return this.#store.countUsers(query);
  }

  /** The user with this id (a number), or named by id, number or SIP username (a string). */
  async find(ref: string | number): Promise<User | undefined> {
    if (typeof ref === 'number') return this.#store.getUserById(ref);
    const text = String(ref).trim();
    if (/^\d{1,15}$/.test(text)) {
      const byId = await this.#store.getUserById(Number(text));
      const byNumber = await this.#store.findUserBySipUsernameOrNumber(text);
      if (byId !== undefined && byNumber !== undefined && byId.id !== byNumber.id) {
        throw new CareflowError('INVALID_INPUT', `${text} is user ${byId.id}'s id and user ${byNumber.id}'s number; say ${byId.sipUsername} or ${byNumber.sipUsername}`, 'user');
      }
      return byId ?? byNumber;
    }
    return text === '' ? undefined : this.#store.findUserBySipUsernameOrNumber(text);
  }

  /** Like find, but a missing user is a NOT_FOUND error. */
  async show(ref: string | number): Promise<User> {
    const user = await this.find(ref);
    if (user === undefined) throw new CareflowError('NOT_FOUND', `no user ${JSON.stringify(String(ref))}; give an id, a number or a SIP username (see careflow user list)`, 'user');
    return user;
  }

  /** Rotates the password (generated unless given) and re-keys the HA1s with the current domain. */
  async passwd(ref: string | number, password?: string): Promise<NewAccount> {
    const user = await this.show(ref);
    const secret = password === undefined ? generatePassword() : checkPassword(password);
    const updated = await this.#store.updateUser(user.id, { digests: userDigests(user, this.#domain, secret) });
    return this.#account(updated ?? user, secret);
  }

  async update(ref: string | number, change: { name?: unknown; enabled?: unknown }): Promise<User> {
    const user = await this.show(ref);
    const name = change.name === undefined ? undefined : checkName(change.name);
    if (change.enabled !== undefined && typeof change.enabled !== 'boolean') {
      throw new CareflowError('INVALID_INPUT', `enabled: expected true or false, got ${JSON.stringify(change.enabled)}`, 'enabled');
    }
    const updated = await this.#store.updateUser(user.id, { name, enabled: change.enabled });
    if (updated === undefined) throw new CareflowError('NOT_FOUND', `user ${user.id} was removed meanwhile`, 'user');
    return updated;
  }

  setEnabled(ref: string | number, enabled: boolean): Promise<User> {
    return this.update(ref, { enabled });
  }

  /** Removes the user and their registrations; call records keep the id. Returns the removed user. */
  async remove(ref: string | number): Promise<User> {
    const user = await this.show(ref);
    await this.#store.deleteUser(user.id);
    return user;
  }

  /** True when the user's HA1s were keyed with another domain: they must `passwd` to log in. */
  needsRekey(user: User): boolean {
    return user.realm !== this.#domain;
  }

  #account(user: User, password: string): NewAccount {
    return { id: user.id, number: user.number, sipUsername: user.sipUsername, password, domain: this.#domain };
  }
}

function rethrowAsCsv<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof CareflowError && error.code === 'INVALID_INPUT') {
      throw new CareflowError('CSV_INVALID', error.message, error.field, { cause: error });
    }
    throw error;
  }
}
