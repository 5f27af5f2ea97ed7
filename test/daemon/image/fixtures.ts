// Test images made in the test itself (nothing downloaded): seeded synthetic pixels and the sharp
// calls that turn them into real PNG, JPEG and WebP files.
import sharp, { type Sharp } from 'sharp';
import { crc32 } from '../../../daemon/image/sniff.js';
import { mulberry32 } from '../../../daemon/onnx/graph/prng.js';

/** Mulberry32 (the model builder's PRNG), uniform in [0, 1). */
export function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/** Uniformly random bytes (incompressible). */
export function noise(length: number, seed = 1): Uint8Array {
  const next = rng(seed);
  return Uint8Array.from({ length }, () => Math.floor(next() * 256));
}

/** A photo-like HWC RGB image: smooth low-frequency colour fields, hard-edged shapes and fine
 *  sensor-like noise (±4), the statistics of a VAE-decoded 512² output rather than of flat UI art. */
export function photoLike(width: number, height: number, seed = 7): Uint8Array {
  const next = rng(seed);
  const waves = Array.from({ length: 9 }, () => ({ fx: next() * 6, fy: next() * 6, phase: next() * 6.28, amp: 20 + next() * 30 }));
  const discs = Array.from({ length: 12 }, () => ({ x: next() * width, y: next() * height, r: 10 + next() * width * 0.15, c: [next() * 255, next() * 255, next() * 255] }));
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        let v = 128;
        for (let k = c; k < waves.length; k += 3) {
          const w = waves[k]!;
          v += w.amp * Math.sin((w.fx * x) / width * 6.28 + (w.fy * y) / height * 6.28 + w.phase);
        }
        for (const d of discs) if ((x - d.x) ** 2 + (y - d.y) ** 2 < d.r ** 2) v = 0.3 * v + 0.7 * d.c[c]!;
        v += (next() - 0.5) * 8;
        rgb[p + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return rgb;
}

/** A PNG header with a valid IHDR CRC (node:zlib's, independent of the sniffer's) and nothing after it (no IDAT): claims any size. */
export function headerOnlyPng(width: number, height: number): Uint8Array {
  const bytes = new Uint8Array(33);
  const view = new DataView(bytes.buffer);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 0);
  view.setUint32(8, 13);
  bytes.set([0x49, 0x48, 0x44, 0x52], 12); // IHDR
  view.setUint32(16, width);
  view.setUint32(20, height);
  bytes.set([8, 2, 0, 0, 0], 24); // 8-bit RGB, deflate, adaptive filters, no interlace
  view.setUint32(29, crc32(bytes.subarray(12, 29)));
  return bytes;
}

export function rawImage(rgb: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4 = 3): Sharp {
  return sharp(rgb, { raw: { width, height, channels } });
}

/** A JPEG of a few hundred bytes that claims `width`×`height`: a real 16×16 flat JPEG at quality 1
 *  (tables, SOF0, SOS header) with its SOF0 size patched and its scan cut off before EOI. libjpeg
 *  decodes the missing scan as mid-grey with a warning ("premature end"), which `failOn: 'error'`
 *  lets through: the 305-byte 8000×8000 file of the hardening probe. */
export async function headerOnlyJpeg(width: number, height: number): Promise<Buffer> {
  const jpeg = await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 120, b: 40 } } }).jpeg({ quality: 1 }).toBuffer();
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]));
  const out = Buffer.concat([jpeg.subarray(0, sos + 2 + jpeg.readUInt16BE(sos + 2)), Buffer.from([0xff, 0xd9])]);
  out.writeUInt16BE(height, sof + 5);
  out.writeUInt16BE(width, sof + 7);
  return out;
}
