// The trainer's PNG reader (models/distill/p2pz_distill/png.py, used when Pillow is absent): PNGs
// built here by hand with every scanline filter (row y uses filter y mod 5), and PNGs from sharp
// (libpng's adaptive filters), decode to exactly the pixels they were made from.
import { createHash } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DISTILL_DIR, PYTHON, runProcess } from './helpers.js';
import { crc32 } from '../../daemon/image/sniff.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/** PNG 1.2 filtering, written from the spec: Filt(x) = Orig(x) − predictor(a, b, c) mod 256. */
function filterRow(type: number, row: Uint8Array, prev: Uint8Array, bpp: number): Uint8Array {
  const out = new Uint8Array(row.length);
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp]! : 0;
    const b = prev[i]!;
    const c = i >= bpp ? prev[i - bpp]! : 0;
    let pred = 0;
    if (type === 1) pred = a;
    else if (type === 2) pred = b;
    else if (type === 3) pred = (a + b) >> 1;
    else if (type === 4) {
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    out[i] = (row[i]! - pred) & 0xff;
  }
  return out;
}

function handMadePng(pixels: Uint8Array, width: number, height: number, channels: 1 | 3 | 4): Buffer {
  const colour = { 1: 0, 3: 2, 4: 6 }[channels];
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, colour, 0, 0, 0], 8);
  const stride = width * channels;
  const rows: Uint8Array[] = [];
  let prev: Uint8Array = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    rows.push(Uint8Array.of(y % 5), filterRow(y % 5, row, prev, channels));
    prev = row;
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.concat(rows))), chunk('IEND', new Uint8Array())]);
}

/** The RGB pixels (HWC) the reader should return: gray repeated, alpha dropped. */
function expectedRgb(pixels: Uint8Array, channels: number): Uint8Array {
  const n = pixels.length / channels;
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = pixels[p * channels + (channels === 1 ? 0 : c)]!;
  return out;
}

/** Decodes each PNG (hex) with png.py; prints "height width sha256" of the array's bytes per line. */
async function decodeInPython(pngs: readonly Buffer[]): Promise<string[]> {
  const script = [
    'import sys, hashlib, binascii',
    'sys.path.insert(0, sys.argv[1])',
    'from p2pz_distill.png import decode_png_rgb, PngError',
    'for arg in sys.argv[2:]:',
    '    try:',
    '        a = decode_png_rgb(binascii.unhexlify(arg))',
    '        print(a.shape[0], a.shape[1], a.shape[2], str(a.dtype), hashlib.sha256(a.tobytes()).hexdigest())',
    '    except PngError as e:',
    '        print("error:", e)',
  ].join('\n');
  const r = await runProcess(PYTHON, ['-c', script, DISTILL_DIR, ...pngs.map((p) => p.toString('hex'))]);
  expect(r.stderr).toBe('');
  return r.stdout.trim().split('\n');
}

describe('png.py', () => {
  it('decodes every filter type, gray, RGB and RGBA, and libpng\'s adaptive filtering, to the exact pixels', async () => {
    const cases: Array<{ png: Buffer; width: number; height: number; rgb: Uint8Array }> = [];
    for (const channels of [1, 3, 4] as const) {
      const [width, height] = [23, 11];
      const pixels = Uint8Array.from({ length: width * height * channels }, (_, i) => (i * 37 + ((i / 7) | 0) * 11 + (i % 5) * 53) & 255);
      cases.push({ png: handMadePng(pixels, width, height, channels), width, height, rgb: expectedRgb(pixels, channels) });
    }
    const [width, height] = [64, 40];
    const raw = Buffer.from(Uint8Array.from({ length: width * height * 3 }, (_, i) => Math.round(127 + 120 * Math.sin(i / 50) + ((i * 7919) % 9))));
    const png = await sharp(raw, { raw: { width, height, channels: 3 } }).png({ adaptiveFiltering: true, compressionLevel: 9 }).toBuffer();
    cases.push({ png, width, height, rgb: raw });

    const lines = await decodeInPython(cases.map((c) => c.png));
    expect(lines).toEqual(cases.map((c) => `${c.height} ${c.width} 3 uint8 ${sha256(c.rgb)}`));
  });

  it('names what it cannot read', async () => {
    const palette = await sharp(Buffer.alloc(8 * 8 * 3, 90), { raw: { width: 8, height: 8, channels: 3 } }).png({ palette: true }).toBuffer();
    const lines = await decodeInPython([palette, Buffer.from('not a png')]);
    expect(lines[0]).toMatch(/^error: unsupported PNG \(bit depth \d, colour type 3, interlace 0\); install Pillow to read it$/);
    expect(lines[1]).toBe('error: not a PNG file');
  });
});
