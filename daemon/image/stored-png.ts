// A PNG written without compression, for previews that a designer looks at once: the quick preview's
// result and the step previews (docs/DESIGN.md §3 stage 8). Every row is filter type 0 (None) and the zlib
// stream holds stored (uncompressed) deflate blocks, so writing it is a copy plus two checksums.
// Measured on a 512×512 RGB photo-like image on the 2-core machine (docs/BENCHMARKS.md "daemon"):
// sharp's libpng at level 2 with adaptive filters costs 25–40 ms, this writer about 1 ms, for 1.9×
// the bytes (769 KiB against ≈416 KiB), which is nothing on the loopback connection to the plugin.
// Any PNG decoder reads it (PNG spec §10: deflate with any block types; §9: filter type 0).
import { crc32 as zlibCrc32 } from 'node:zlib';
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
  // The scanlines (a filter byte 0 = None before each row) go straight into stored deflate blocks of
  // at most 65 535 bytes, each behind its 5-byte header (RFC 1951 §3.2.4), inside a zlib stream
  // (RFC 1950: 2-byte header, Adler-32 of the scanlines at the end): one allocation, one copy.
  const rawLength = (stride + 1) * height;
  const blocks = Math.max(1, Math.ceil(rawLength / MAX_STORED));
  const zlibLength = 2 + blocks * 5 + rawLength + 4;
  const ihdrAt = SIGNATURE.length;
  const idatAt = ihdrAt + 12 + 13;
  const iendAt = idatAt + 12 + zlibLength;
  const out = new Uint8Array(iendAt + 12);
  const view = new DataView(out.buffer);
  out.set(SIGNATURE, 0);

  view.setUint32(ihdrAt, 13);
  writeType(out, ihdrAt + 4, 'IHDR');
  view.setUint32(ihdrAt + 8, width);
  view.setUint32(ihdrAt + 12, height);
  out[ihdrAt + 16] = 8; // bit depth
  out[ihdrAt + 17] = channels === 1 ? 0 : channels === 3 ? 2 : 6; // colour type
  // compression 0 (deflate), filter method 0, interlace 0 (none): already zero.
  view.setUint32(ihdrAt + 21, crc32(out.subarray(ihdrAt + 4, ihdrAt + 21)));

  view.setUint32(idatAt, zlibLength);
  writeType(out, idatAt + 4, 'IDAT');
  let at = idatAt + 8;
  out[at++] = 0x78; // CMF: deflate, 32 KiB window
  out[at++] = 0x01; // FLG: no dictionary, level "fastest"; (0x78·256 + 0x01) % 31 = 0
  let left = 0; // bytes still to write in the current block
  let done = 0; // scanline bytes written
  const openBlock = (): void => {
    const size = Math.min(MAX_STORED, rawLength - done);
    out[at] = done + size === rawLength ? 1 : 0; // BFINAL, BTYPE = 00
    view.setUint16(at + 1, size, true);
    view.setUint16(at + 3, ~size & 0xffff, true);
    at += 5;
    left = size;
  };
  const put = (src: Uint8Array): void => {
    let from = 0;
    while (from < src.length) {
      if (left === 0) openBlock();
      const n = Math.min(left, src.length - from);
      out.set(src.subarray(from, from + n), at);
      at += n;
      from += n;
      left -= n;
      done += n;
    }
  };
  const filterByte = new Uint8Array(1);
  let a = 1;
  let b = 0;
  for (let y = 0; y < height; y++) {
    put(filterByte);
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    put(row);
    // Adler-32 of [0, row…]: the filter byte adds 0 to a and the running a to b.
    b = (b + a) % ADLER_MOD;
    for (let i = 0; i < row.length; i += ADLER_RUN) {
      const end = Math.min(row.length, i + ADLER_RUN);
      for (let j = i; j < end; j++) {
        a += row[j]!;
        b += a;
      }
      a %= ADLER_MOD;
      b %= ADLER_MOD;
    }
  }
  view.setUint32(at, ((b << 16) | a) >>> 0);
  at += 4;
  view.setUint32(at, crc32(out.subarray(idatAt + 4, at)));

  view.setUint32(iendAt, 0);
  writeType(out, iendAt + 4, 'IEND');
  view.setUint32(iendAt + 8, crc32(out.subarray(iendAt + 4, iendAt + 8)));
  return out;
}

/** The largest stored deflate block. */
const MAX_STORED = 65535;
const ADLER_MOD = 65521;
/** Bytes summed before reducing: 5552 keeps b below 2^53 in doubles by a wide margin (zlib's NMAX). */
const ADLER_RUN = 5552;

function writeType(out: Uint8Array, at: number, type: string): void {
  for (let i = 0; i < 4; i++) out[at + i] = type.charCodeAt(i);
}

