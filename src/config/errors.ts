/**
 * CareflowError: the one error type that crosses module boundaries above the SIP core.
 *
 * Every error has a stable `code` (part of the API contract: HTTP bodies carry it as
 * `{error: {code, message, field?}}`, the CLI maps it to an exit code) and, where one
 * input is to blame, the `field` that names it (a flag, an env var, a JSON key, a CSV
 * column). Messages say what is wrong and how to fix it.
 *
 * | code                   | meaning                                              | HTTP | CLI exit |
 * |------------------------|------------------------------------------------------|------|----------|
 * | CONFIG_INVALID         | a config value failed validation                     |  -   | 2        |
 * | CONFIG_FILE_INVALID    | the JSON config file is missing, unreadable or bad   |  -   | 2        |
 * | USAGE                  | unknown flag, missing argument, bad command line     |  -   | 2        |
 * | INVALID_INPUT          | a request or command argument failed validation      | 400  | 2        |
 * | INVALID_JSON           | a request body is not valid JSON                     | 400  | -        |
 * | CSV_INVALID            | a CSV import file is malformed (names line, column)  | 400  | 2        |
 * | NOT_FOUND              | no such user / route                                 | 404  | 1        |
 * | NUMBER_TAKEN           | the number is already assigned to another user       | 409  | 1        |
 * | UNAUTHORIZED           | missing or wrong admin token / web phone session     | 401  | -        |
 * | RATE_LIMITED           | too many failed web phone sign-ins from one address  | 429  | -        |
 * | METHOD_NOT_ALLOWED     | the route exists, the method does not                | 405  | -        |
 * | BODY_TOO_LARGE         | request body above 64 KiB                            | 413  | -        |
 * | UNSUPPORTED_MEDIA_TYPE | request body is not application/json                 | 415  | -        |
 * | DATA_DIR_ERROR         | the data directory or secrets file cannot be used    | 500  | 1        |
 * | STORE_ERROR            | the database failed                                  | 500  | 1        |
 * | FIREWALL_ERROR         | nft/ufw is missing or refused the rules              |  -   | 1        |
 * | INTERNAL               | a bug                                                | 500  | 1        |
 */

export type CareflowErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_FILE_INVALID'
  | 'USAGE'
  | 'INVALID_INPUT'
  | 'INVALID_JSON'
  | 'CSV_INVALID'
  | 'NOT_FOUND'
  | 'NUMBER_TAKEN'
  | 'UNAUTHORIZED'
  | 'RATE_LIMITED'
  | 'METHOD_NOT_ALLOWED'
  | 'BODY_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'DATA_DIR_ERROR'
  | 'STORE_ERROR'
  | 'FIREWALL_ERROR'
  | 'INTERNAL';

export class CareflowError extends Error {
  readonly code: CareflowErrorCode;
  readonly field: string | undefined;

  constructor(code: CareflowErrorCode, message: string, field?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CareflowError';
    this.code = code;
    this.field = field;
  }

  /** The JSON shape used on the wire: `{code, message, field?}`. */
  toJSON(): { code: CareflowErrorCode; message: string; field?: string } {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field };
  }
}

const USAGE_CODES: ReadonlySet<CareflowErrorCode> = new Set([
  'CONFIG_INVALID',
  'CONFIG_FILE_INVALID',
  'USAGE',
  'INVALID_INPUT',
  'CSV_INVALID',
]);

/** True for errors caused by what the operator typed (CLI exit code 2). */
export function isUsageError(error: unknown): error is CareflowError {
  return error instanceof CareflowError && USAGE_CODES.has(error.code);
}
