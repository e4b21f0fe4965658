// PNG app icons for the web phone, drawn without any image library: the logo is a handful of
// signed-distance shapes (a rounded square, an arc and two capsules, the same geometry as
// web/static/icon.svg), rasterised with one pixel of anti-aliasing and written by a minimal
// PNG encoder (RFC 2083 / PNG spec §5: signature, IHDR, IDAT, IEND; CRC-32 per chunk).

import { deflateSync } from 'node:zlib';

/** Design space of the logo: 512 × 512, as in icon.svg's viewBox. */
const SIZE = 512;
const CORNER = 112;
const GRADIENT_FROM = [0x14, 0xa3, 0x96] as const; // top left, #14a396
const GRADIENT_TO = [0x0b, 0x6b, 0x63] as const; // bottom right, #0b6b63

/** The handset: an arc (the handle) ending in two capsules (earpiece and mouthpiece). */
export const HANDSET = {
  center: [296, 214],
  radius: 150,
  fromDeg: 95,
  toDeg: 175,
  width: 56,
  earpiece: [[160.5, 225.9], [154.9, 162.1]],
  mouthpiece: [[284.1, 349.5], [347.9, 355.1]],
  capRadius: 42,
} as const;

/** Two sound waves to the top right of the handset: arcs around one centre, round caps. */
export const WAVES = {
  center: [212, 300],
  radii: [112, 180],
  fromDeg: 280,
  toDeg: 350,
  width: 30,
} as const;

type Point = readonly [number, number];

function segmentDistance(p: Point, a: Point, b: Point): number {
  const [px, py] = [p[0] - a[0], p[1] - a[1]];
  const [bx, by] = [b[0] - a[0], b[1] - a[1]];
  const t = Math.max(0, Math.min(1, (px * bx + py * by) / (bx * bx + by * by)));
  return Math.hypot(px - bx * t, py - by * t);
}

/** Distance to an arc's centre line (angles in degrees, y down, clockwise). */
function arcDistance(p: Point, center: Point, radius: number, fromDeg: number, toDeg: number): number {
  const dx = p[0] - center[0];
  const dy = p[1] - center[1];
  let angle = (Math.atan2(dy, dx) * 180) / Math.PI;
  if (angle < 0) angle += 360;
  if (angle >= fromDeg && angle <= toDeg) return Math.abs(Math.hypot(dx, dy) - radius);
  const end = (deg: number): Point => [
    center[0] + radius * Math.cos((deg * Math.PI) / 180),
    center[1] + radius * Math.sin((deg * Math.PI) / 180),
  ];
  const [ax, ay] = end(fromDeg);
  const [bx, by] = end(toDeg);
  return Math.min(Math.hypot(p[0] - ax, p[1] - ay), Math.hypot(p[0] - bx, p[1] - by));
}

/** Signed distance to the handset: negative inside. */
function handsetDistance(p: Point): number {
  const { center, radius, fromDeg, toDeg } = HANDSET;
  const handle = arcDistance(p, center, radius, fromDeg, toDeg) - HANDSET.width / 2;
  const [e0, e1] = HANDSET.earpiece;
  const [m0, m1] = HANDSET.mouthpiece;
  const ear = segmentDistance(p, e0, e1) - HANDSET.capRadius;
  const mouth = segmentDistance(p, m0, m1) - HANDSET.capRadius;
  let waves = Infinity;
  for (const r of WAVES.radii) {
    const d = arcDistance(p, WAVES.center, r, WAVES.fromDeg, WAVES.toDeg) - WAVES.width / 2;
    waves = Math.min(waves, d);
  }
  return Math.min(handle, ear, mouth, waves);
}

/** Signed distance to the rounded square background. */
function roundedSquareDistance(p: Point, corner: number): number {
  const half = SIZE / 2;
  const qx = Math.abs(p[0] - half) - (half - corner);
  const qy = Math.abs(p[1] - half) - (half - corner);
  return Math.hypot(Math.max(qx, 0), Math.max(qy, 0)) + Math.min(Math.max(qx, qy), 0) - corner;
}

/** Coverage of a shape at signed distance `d`, anti-aliased over one pixel of width `pixel`. */
function coverage(d: number, pixel: number): number {
  return Math.max(0, Math.min(1, 0.5 - d / pixel));
}

/**
 * Renders the icon as RGBA. A maskable icon fills the whole square (the launcher applies its
 * own mask) and shrinks the handset into the central safe zone, a circle of 40% radius.
 */
export function renderIcon(size: number, maskable: boolean): Uint8Array {
  const rgba = new Uint8Array(size * size * 4);
  const pixel = SIZE / size;
  const logoScale = maskable ? 0.9 : 1;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const p: Point = [(x + 0.5) * pixel, (y + 0.5) * pixel];
      const background = maskable ? 1 : coverage(roundedSquareDistance(p, CORNER), pixel);
      const t = Math.max(0, Math.min(1, (p[0] + p[1]) / (2 * SIZE)));
      const logoPoint: Point = [
        (p[0] - SIZE / 2) / logoScale + SIZE / 2,
        (p[1] - SIZE / 2) / logoScale + SIZE / 2,
      ];
      const logo = coverage(handsetDistance(logoPoint) * logoScale, pixel);
      const i = (y * size + x) * 4;
      for (let c = 0; c < 3; c++) {
        const bg = (GRADIENT_FROM[c] ?? 0) + ((GRADIENT_TO[c] ?? 0) - (GRADIENT_FROM[c] ?? 0)) * t;
        rgba[i + c] = Math.round(bg + (255 - bg) * logo);
      }
      rgba[i + 3] = Math.round(background * 255);
    }
  }
  return rgba;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = (CRC_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** Encodes 8-bit RGBA pixels as a PNG (colour type 6, filter 0 "None" on every row). */
export function encodePng(width: number, height: number, rgba: Uint8Array): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // colour type: truecolour with alpha
  header[10] = 0; // compression: deflate
  header[11] = 0; // filter method 0
  header[12] = 0; // no interlace
  const stride = width * 4;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0;
    raw.set(rgba.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

export interface IconFile {
  name: string;
  contents: Buffer;
}

/** The PNG icons the manifest lists: 192 and 512 ("any"), and a maskable 512. */
export function renderIcons(): IconFile[] {
  return [
    { name: 'icon-192.png', contents: encodePng(192, 192, renderIcon(192, false)) },
    { name: 'icon-512.png', contents: encodePng(512, 512, renderIcon(512, false)) },
    { name: 'icon-maskable-512.png', contents: encodePng(512, 512, renderIcon(512, true)) },
  ];
}
