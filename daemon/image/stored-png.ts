// A PNG written without compression, for previews that a designer looks at once: the quick preview's
// result and the step previews (DESIGN.md §3 stage 8). Every row is filter type 0 (None) and the zlib
// stream holds stored (uncompressed) deflate blocks, so writing it is a copy plus two checksums.
// Measured on a 512×512 RGB photo-like image on the 2-core machine (docs/BENCHMARKS.md "daemon"):
// sharp's libpng at level 2 with adaptive filters costs 25–40 ms, this writer about 1 ms, for 1.9×
// the bytes (769 KiB against ≈416 KiB), which is nothing on the loopback connection to the plugin.
// Any PNG decoder reads it (PNG spec §10: deflate with any block types; §9: filter type 0).
import { crc32 as zlibCrc32, deflateSync } from 'node:zlib';
import { P2pzError } from '../../shared/protocol/index.js';
import { crc32 as jsCrc32 } from './sniff.js';

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

/** node:zlib's native CRC-32 from Node 20.15 on; the sniffer's table-driven one before. */
const crc32: (bytes: Uint8Array) => number = typeof zlibCrc32 === 'function' ? (b) => zlibCrc32(b) : jsCrc32;

/**
 * An 8-bit PNG of HWC `pixels` with `channels` samples per pixel: 1 gray (colour type 0), 3 RGB (2),
 * 4 RGBA (6, not premultiplied). Pixels round-trip exactly.
 */
export function encodeStoredPng(width: number, height: number, channels: 1 | 3 | 4, pixels: Uint8Array): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new P2pzError('E_INTERNAL', `PNG: ${width}×${height} is not a size.`);
  }
  const stride = width * channels;
  if (pixels.length !== stride * height) {
    throw new P2pzError('E_INTERNAL', `PNG: ${pixels.length} values are not ${width}×${height}×${channels}.`);
  }
  // Scanlines: one filter byte (0 = None) before each row.
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const idat = deflateSync(raw, { level: 0 });

  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 1 ? 0 : channels === 3 ? 2 : 6; // colour type
  // compression 0 (deflate), filter method 0, interlace 0 (none): already zero.

  const chunks = [chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(SIGNATURE.length + chunks.reduce((n, c) => n + c.length, 0));
  out.set(SIGNATURE, 0);
  let offset = SIGNATURE.length;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** length (4, big-endian) ‖ type (4) ‖ data ‖ CRC-32 of type ‖ data (PNG spec §5.3). */
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}
