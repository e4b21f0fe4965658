/**
 * The data directory: created 0700 on first start, holding the database and
 * `secrets.json` (0600) with the digest nonce secret and the admin API token.
 * Secrets are generated once, never logged (inspecting the object shows them redacted).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { CareflowError } from './errors.ts';
import type { Config } from './schema.ts';

export interface Secrets {
  /** 32 random bytes, hex: keys the digest nonces. */
  readonly nonceSecret: string;
  /** 32 random bytes, base64url: `Authorization: Bearer <adminToken>` for the HTTP API. */
  readonly adminToken: string;
}

export const SECRETS_FILE = 'secrets.json';
export const DATABASE_FILE = 'careflow.sqlite';

export function secretsPath(config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, SECRETS_FILE);
}

export function databasePath(config: Pick<Config, 'dataDir'>): string {
  return join(config.dataDir, DATABASE_FILE);
}

/** Creates the data directory and the secrets on first start; returns the secrets. */
export function ensureDataDir(config: Pick<Config, 'dataDir'>): Secrets {
  const dir = config.dataDir;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
  } catch (error) {
    throw new CareflowError('DATA_DIR_ERROR', `CAREFLOW_DATA_DIR: cannot create data directory ${JSON.stringify(dir)} (${(error as Error).message}); choose a writable path with --data-dir`, 'CAREFLOW_DATA_DIR', { cause: error });
  }
  const path = secretsPath(config);
  const existing = readSecrets(path);
  if (existing !== undefined) return existing;

  const fresh: Secrets = {
    nonceSecret: randomBytes(32).toString('hex'),
    adminToken: randomBytes(32).toString('base64url'),
  };
  // Write aside, then link into place: two processes starting at once agree on one file.
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    try {
      linkSync(temp, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  } catch (error) {
    throw new CareflowError('DATA_DIR_ERROR', `cannot write ${path} (${(error as Error).message}); check the data directory's owner and permissions`, 'CAREFLOW_DATA_DIR', { cause: error });
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // already gone
    }
  }
  const stored = readSecrets(path);
  if (stored === undefined) throw new CareflowError('DATA_DIR_ERROR', `${path} vanished while being created`, 'CAREFLOW_DATA_DIR');
  return stored;
}

/** Reads secrets.json if it exists; tightens its mode to 0600 if it was looser. */
export function readSecrets(path: string): Secrets | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CareflowError('DATA_DIR_ERROR', `cannot read ${path} (${(error as Error).message}); run careflow as the user that owns the data directory`, 'CAREFLOW_DATA_DIR', { cause: error });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    data = undefined;
  }
  const record = data !== null && typeof data === 'object' ? (data as Record<string, unknown>) : {};
  const { nonceSecret, adminToken } = record;
  if (typeof nonceSecret !== 'string' || !/^[0-9a-f]{64}$/.test(nonceSecret) || typeof adminToken !== 'string' || adminToken.length < 32) {
    throw new CareflowError('DATA_DIR_ERROR', `${path} is damaged (expected {"nonceSecret": 64 hex chars, "adminToken": base64url}); restore it from a backup or delete it to generate new secrets (the admin token changes)`, 'CAREFLOW_DATA_DIR');
  }
  try {
    if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  } catch {
    // not ours to fix (read-only mount): still usable
  }
  return redacted({ nonceSecret, adminToken });
}

function redacted(secrets: Secrets): Secrets {
  Object.defineProperty(secrets, inspect.custom, { value: () => 'Secrets { [redacted] }', enumerable: false });
  return Object.freeze(secrets);
}
