/**
 * A small RFC 4180 CSV reader for user imports: quoted fields may hold commas, quotes
 * (doubled) and line breaks; CRLF or LF line ends; a UTF-8 BOM is ignored. Errors name
 * the line (1-based, counting the header) and the column.
 */
import { CareflowError } from '../config/errors.ts';

export interface CsvRecord {
  /** Line where the record starts (the header is line 1). */
  readonly line: number;
  readonly fields: readonly string[];
}

/** Splits CSV text into records; blank lines are skipped. */
export function parseCsv(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  const input = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let quoted = false;
  let wasQuoted = false;
  let i = 0;
  const endRecord = (): void => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === '' && !wasQuoted)) records.push({ line: recordLine, fields });
    fields = [];
    field = '';
    wasQuoted = false;
  };
  while (i < input.length) {
    const c = input[i] ?? '';
    if (quoted) {
      if (c === '"') {
        if (input[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i += 1;
        const after = input[i];
        if (after !== undefined && after !== ',' && after !== '\n' && after !== '\r') {
          throw new CareflowError('CSV_INVALID', `line ${line}, column ${fields.length + 1}: unexpected ${JSON.stringify(after)} after a closing quote; quotes inside a quoted field are written twice ("")`, `line ${line}`);
        }
        continue;
      }
      if (c === '\n') line += 1;
      field += c;
      i += 1;
      continue;
    }
    if (c === '"') {
      if (field !== '') {
        throw new CareflowError('CSV_INVALID', `line ${line}, column ${fields.length + 1}: a quote inside an unquoted field; quote the whole field and double the quote ("")`, `line ${line}`);
      }
      quoted = true;
      wasQuoted = true;
      i += 1;
    } else if (c === ',') {
      fields.push(field);
      field = '';
      i += 1;
    } else if (c === '\r' || c === '\n') {
      endRecord();
      i += c === '\r' && input[i + 1] === '\n' ? 2 : 1;
      line += 1;
      recordLine = line;
    } else {
      field += c;
      i += 1;
    }
  }
  if (quoted) throw new CareflowError('CSV_INVALID', `line ${recordLine}, column ${fields.length + 1}: quoted field is never closed`, `line ${recordLine}`);
  if (field !== '' || fields.length > 0 || wasQuoted) endRecord();
  return records;
}

export interface ImportRow {
  readonly line: number;
  readonly name: string;
  readonly number: string | undefined;
  readonly password: string | undefined;
}

const COLUMNS = ['name', 'number', 'password'] as const;

/** Reads the user import format: header row with `name` (required), `number`, `password`. */
export function parseUserCsv(text: string): { rows: ImportRow[]; columns: ReadonlyMap<string, number> } {
  const [header, ...records] = parseCsv(text);
  if (header === undefined) throw new CareflowError('CSV_INVALID', 'the file is empty; the first line must be a header like name,number,password', 'line 1');
  const index = new Map<string, number>();
  header.fields.forEach((raw, i) => {
    const name = raw.trim().toLowerCase();
    if (!(COLUMNS as readonly string[]).includes(name)) {
      throw new CareflowError('CSV_INVALID', `line 1, column ${i + 1}: unknown column ${JSON.stringify(raw)}; the columns are name (required), number, password`, 'line 1');
    }
    if (index.has(name)) throw new CareflowError('CSV_INVALID', `line 1, column ${i + 1}: column ${name} appears twice`, 'line 1');
    index.set(name, i);
  });
  const nameAt = index.get('name');
  if (nameAt === undefined) throw new CareflowError('CSV_INVALID', 'line 1: the header has no name column; the columns are name (required), number, password', 'line 1');
  const rows = records.map((record) => {
    if (record.fields.length !== header.fields.length) {
      throw new CareflowError('CSV_INVALID', `line ${record.line}: ${record.fields.length} fields, the header has ${header.fields.length}; quote fields that contain commas`, `line ${record.line}`);
    }
    const get = (column: string): string | undefined => {
      const at = index.get(column);
      const value = at === undefined ? undefined : record.fields[at]?.trim();
      return value === '' ? undefined : value;
    };
    return { line: record.line, name: get('name') ?? '', number: get('number'), password: get('password') };
  });
  /** 1-based column of each header name. */
  const columns = new Map([...index].map(([name, at]) => [name, at + 1]));
  return { rows, columns };
}
