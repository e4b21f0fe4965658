// Bencode, the encoding of RTPEngine's ng control protocol (BitTorrent BEP 3):
//
//   string  <length>:<bytes>         4:spam
//   integer i<decimal>e              i42e
//   list    l<items>e                l4:spami42ee
//   dict    d<key><value>...e        d3:cow3:mooe   (keys are strings, sorted)
//
// Strings are decoded as UTF-8 text (the ng protocol carries SDP and ASCII words); a
// malformed or truncated input throws BencodeError.

export type BValue = string | number | BValue[] | { [key: string]: BValue };

export class BencodeError extends Error {
  override name = 'BencodeError';
}

export function encode(value: BValue): Buffer {
  const parts: Buffer[] = [];
  write(value, parts);
  return Buffer.concat(parts);
}

function write(v: BValue, out: Buffer[]): void {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    out.push(Buffer.from(`${b.length}:`), b);
  } else if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new BencodeError(`bencode has no fractions: ${v}`);
    out.push(Buffer.from(`i${v}e`));
  } else if (Array.isArray(v)) {
    out.push(Buffer.from('l'));
    for (const item of v) write(item, out);
    out.push(Buffer.from('e'));
  } else {
    out.push(Buffer.from('d'));
    // BEP 3: keys appear in sorted order (raw byte order).
    for (const key of Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
      const item = v[key];
      if (item === undefined) continue;
      write(key, out);
      write(item, out);
    }
    out.push(Buffer.from('e'));
  }
}

const MAX_DEPTH = 32;

export function decode(buf: Buffer): BValue {
  const state = { pos: 0 };
  const value = read(buf, state, 0);
  if (state.pos !== buf.length) throw new BencodeError(`trailing bytes after the value at offset ${state.pos}`);
  return value;
}

function read(buf: Buffer, s: { pos: number }, depth: number): BValue {
  if (depth > MAX_DEPTH) throw new BencodeError('nested too deeply');
  const c = buf[s.pos];
  if (c === undefined) throw new BencodeError('unexpected end of input');
  if (c === 0x69 /* i */) {
    const end = buf.indexOf(0x65 /* e */, s.pos + 1);
    if (end < 0) throw new BencodeError('unterminated integer');
    const text = buf.toString('latin1', s.pos + 1, end);
    if (!/^(?:0|-?[1-9]\d{0,15})$/.test(text)) throw new BencodeError(`bad integer ${JSON.stringify(text)}`);
    s.pos = end + 1;
    return Number(text);
  }
  if (c === 0x6c /* l */) {
    s.pos++;
    const list: BValue[] = [];
    while (buf[s.pos] !== 0x65) {
      if (s.pos >= buf.length) throw new BencodeError('unterminated list');
      list.push(read(buf, s, depth + 1));
    }
    s.pos++;
    return list;
  }
  if (c === 0x64 /* d */) {
    s.pos++;
    const dict: { [key: string]: BValue } = Object.create(null) as { [key: string]: BValue };
    while (buf[s.pos] !== 0x65) {
      if (s.pos >= buf.length) throw new BencodeError('unterminated dictionary');
      const key = read(buf, s, depth + 1);
      if (typeof key !== 'string') throw new BencodeError('dictionary key is not a string');
      dict[key] = read(buf, s, depth + 1);
    }
    s.pos++;
    return dict;
  }
  if (c >= 0x30 && c <= 0x39) {
    const colon = buf.indexOf(0x3a /* : */, s.pos);
    if (colon < 0 || colon - s.pos > 10) throw new BencodeError('bad string length');
    const len = Number(buf.toString('latin1', s.pos, colon));
    const start = colon + 1;
    if (!Number.isSafeInteger(len) || start + len > buf.length) throw new BencodeError('string runs past the end of input');
    s.pos = start + len;
    return buf.toString('utf8', start, start + len);
  }
  throw new BencodeError(`unexpected byte 0x${c.toString(16)} at offset ${s.pos}`);
}
