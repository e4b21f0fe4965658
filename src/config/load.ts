/**
 * loadConfig: merges defaults < JSON config file < environment < flags, validates once,
 * and names the source of any bad value (`CAREFLOW_SIP_LISTEN: ...`, `--sip-listen: ...`,
 * `/etc/careflow.json: sipListen: ...`). The only module that reads the environment.
 */
import { existsSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { CareflowError } from './errors.ts';
import { CONFIG_FIELDS, DEFAULTS, validateConfig } from './schema.ts';
import type { Config, ConfigKey } from './schema.ts';

export type Env = Readonly<Record<string, string | undefined>>;
type Interfaces = ReturnType<typeof networkInterfaces>;

export interface LoadConfigOptions {
  /** Config flags only (see `splitConfigArgs`); anything else is an error naming the flag. */
  readonly argv: readonly string[];
  readonly env: Env;
  /** Config file path used when neither `--config` nor CAREFLOW_CONFIG is given. */
  readonly file?: string;
  /** For tests: the interfaces the default domain is chosen from. */
  readonly interfaces?: Interfaces;
}

export const CONFIG_FILE_FLAG = '--config';
export const CONFIG_FILE_ENV = 'CAREFLOW_CONFIG';
const FLAG_TO_KEY = new Map<string, ConfigKey>(CONFIG_FIELDS.map((f) => [f.flag, f.key]));
const KEY_FIELD = new Map(CONFIG_FIELDS.map((f) => [f.key as string, f]));

/** Reads the process environment; call sites outside src/config/ use this, never process.env. */
export function processEnv(): Env {
  return process.env;
}

/**
 * Splits a command line into config flags (with their values) and the rest, so a command
 * parser only sees its own flags. Accepts `--flag value` and `--flag=value`.
 */
export function splitConfigArgs(argv: readonly string[]): { config: string[]; rest: string[] } {
  const config: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const name = arg.includes('=') ? arg.slice(0, arg.indexOf('=')) : arg;
    if (name === CONFIG_FILE_FLAG || FLAG_TO_KEY.has(name)) {
      config.push(arg);
      if (!arg.includes('=') && i + 1 < argv.length) config.push(argv[++i] ?? '');
    } else {
      rest.push(arg);
    }
  }
  return { config, rest };
}

interface Provided {
  value: unknown;
  source: string;
}

export function loadConfig(options: LoadConfigOptions): Config {
  const { env } = options;
  const values = new Map<string, Provided>();
  for (const [key, value] of Object.entries(DEFAULTS)) values.set(key, { value, source: `default ${key}` });

  const flags = parseConfigFlags(options.argv);

  const fromEnv = new Map<string, Provided>();
  for (const f of CONFIG_FIELDS) {
    const value = env[f.env];
    if (value !== undefined && value !== '') fromEnv.set(f.key, { value, source: f.env });
  }

  // The config file: explicit (flag > env > option) or <dataDir>/careflow.json if present.
  const explicit = flags.file ?? nonEmpty(env[CONFIG_FILE_ENV]) ?? options.file;
  let configFile: string | undefined;
  if (explicit !== undefined) {
    configFile = resolve(explicit);
    if (!existsSync(configFile)) {
      const via = flags.file !== undefined ? CONFIG_FILE_FLAG : nonEmpty(env[CONFIG_FILE_ENV]) !== undefined ? CONFIG_FILE_ENV : 'config file';
      throw new CareflowError('CONFIG_FILE_INVALID', `${via}: file ${JSON.stringify(configFile)} does not exist; give the path of a JSON config file`, via);
    }
  } else {
    const dataDir = flags.values.get('dataDir')?.value ?? fromEnv.get('dataDir')?.value ?? DEFAULTS.dataDir;
    const implicit = join(resolve(String(dataDir)), 'careflow.json');
    if (existsSync(implicit)) configFile = implicit;
  }
  if (configFile !== undefined) {
    for (const [key, provided] of readConfigFile(configFile, explicit === undefined)) values.set(key, provided);
  }
  for (const [key, provided] of fromEnv) values.set(key, provided);
  for (const [key, provided] of flags.values) values.set(key, provided);

  if (!values.has('domain')) values.set('domain', { value: defaultDomain(options.interfaces ?? networkInterfaces()), source: 'default domain' });

  const raw: Record<string, unknown> = {};
  for (const [key, provided] of values) raw[key] = provided.value;
  const result = validateConfig(raw, configFile);
  if (result.ok) return result.config;

  const messages: string[] = [];
  let firstField: string | undefined;
  for (const issue of result.issues) {
    const key = String(issue.path[0] ?? '');
    const label = values.get(key)?.source ?? KEY_FIELD.get(key)?.env ?? key;
    firstField ??= label;
    messages.push(`${label}: ${issue.message}`);
  }
  throw new CareflowError('CONFIG_INVALID', messages.join('\n'), firstField);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function parseConfigFlags(argv: readonly string[]): { file: string | undefined; values: Map<string, Provided> } {
  const values = new Map<string, Provided>();
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const key = FLAG_TO_KEY.get(name);
    if (key === undefined && name !== CONFIG_FILE_FLAG) {
      const hint = arg.startsWith('-') ? `unknown flag ${name}` : `unexpected argument ${JSON.stringify(arg)}`;
      throw new CareflowError('USAGE', `${hint}; config flags are ${CONFIG_FILE_FLAG}, ${[...FLAG_TO_KEY.keys()].join(', ')}`, name);
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !(argv[i + 1] ?? '').startsWith('--')) value = argv[++i];
    if (value === undefined) throw new CareflowError('USAGE', `${name}: missing value (use ${name} VALUE or ${name}=VALUE)`, name);
    if (key === undefined) file = value;
    else values.set(key, { value, source: name });
  }
  return { file, values };
}

function readConfigFile(path: string, implicit: boolean): Map<string, Provided> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CareflowError('CONFIG_FILE_INVALID', `${path}: cannot read (${(error as Error).message})`, path, { cause: error });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new CareflowError('CONFIG_FILE_INVALID', `${path}: not valid JSON (${(error as Error).message}); fix the file or remove it`, path, { cause: error });
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new CareflowError('CONFIG_FILE_INVALID', `${path}: expected a JSON object like {"domain": "sip.example.org"}`, path);
  }
  const out = new Map<string, Provided>();
  for (const [key, value] of Object.entries(data)) {
    if (!KEY_FIELD.has(key)) {
      throw new CareflowError('CONFIG_INVALID', `${path}: unknown key ${JSON.stringify(key)}; known keys are ${[...KEY_FIELD.keys()].join(', ')}`, key);
    }
    if (implicit && key === 'dataDir') {
      throw new CareflowError('CONFIG_INVALID', `${path}: dataDir cannot be set in the data directory's own careflow.json; use --data-dir or CAREFLOW_DATA_DIR`, key);
    }
    if (value !== null) out.set(key, { value, source: `${path}: ${key}` });
  }
  return out;
}

/** The first non-internal IPv4 address, else 127.0.0.1. */
export function defaultDomain(interfaces: Interfaces): string {
  for (const addresses of Object.values(interfaces)) {
    for (const a of addresses ?? []) {
      if (a.family === 'IPv4' && !a.internal) return a.address;
    }
  }
  return '127.0.0.1';
}
