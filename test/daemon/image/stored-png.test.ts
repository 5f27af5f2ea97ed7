// The uncompressed PNG writer of previews: libvips/libpng (through sharp, which checks every chunk's
// CRC) and our own decoder read back exactly the pixels written, in all three colour types; the
// zlib stream inflates (node:zlib, an independent implementation) to the rows behind filter byte 0;
// and encodePng uses it for the preview settings.
import sharp from 'sharp';
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../../daemon/image/decode.js';
import { ENCODE_DEFAULTS, encodePng } from '../../../daemon/image/encode.js';
import { sniffImage } from '../../../daemon/image/sniff.js';
import { encodeStoredPng } from '../../../daemon/image/stored-png.js';
import { noise, photoLike } from './fixtures.js';

/** The chunks of a PNG: type and data, in order. */
function chunks(png: Uint8Array): { type: string; data: Uint8Array }[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out: { type: string; data: Uint8Array }[] = [];
  for (let at = 8; at < png.length; ) {
    const length = view.getUint32(at);
    out.push({ type: String.fromCharCode(...png.subarray(at + 4, at + 8)), data: png.subarray(at + 8, at + 8 + length) });
    at += 12 + length;
  }
  return out;
}

describe('encodeStoredPng', () => {
  it('writes RGB that sharp and decodeImage read back exactly', async () => {
    const rgb = noise(37 * 23 * 3, 3);
    const png = encodeStoredPng(37, 23, 3, rgb);
    expect(sniffImage(png)).toEqual({ format: 'png', width: 37, height: 23, orientation: 1 });
    expect(png[25]).toBe(2);
    const back = await decodeImage(png);
    expect(back.rgb).toEqual(rgb);
    expect(back.alpha).toBeNull();
  });

  it('writes RGBA (colour type 6) and gray (colour type 0) exactly', async () => {
    const rgba = noise(19 * 11 * 4, 4);
    const png = encodeStoredPng(19, 11, 4, rgba);
    expect(png[25]).toBe(6);
    const raw = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(raw.info.channels).toBe(4);
    expect(new Uint8Array(raw.data)).toEqual(rgba);

    const gray = noise(19 * 11, 5);
    const grayPng = encodeStoredPng(19, 11, 1, gray);
    expect(grayPng[25]).toBe(0);
    const g = await sharp(grayPng).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect(new Uint8Array(g.data)).toEqual(gray);
  });

  it('holds IHDR, one IDAT of stored deflate blocks over filter-0 rows, and IEND', () => {
    const rgb = photoLike(40, 30);
    const list = chunks(encodeStoredPng(40, 30, 3, rgb));
    expect(list.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const idat = list[1]?.data ?? new Uint8Array(0);
    // RFC 1950 header, then RFC 1951 block header: BTYPE = 00 (stored).
    expect(((idat[2] ?? 0) >> 1) & 3).toBe(0);
    const rows = inflateSync(idat);
    expect(rows.length).toBe(30 * (40 * 3 + 1));
    for (let y = 0; y < 30; y++) {
      expect(rows[y * 121]).toBe(0);
      expect(new Uint8Array(rows.subarray(y * 121 + 1, (y + 1) * 121))).toEqual(rgb.subarray(y * 120, (y + 1) * 120));
    }
  });

  it('spans several stored blocks (a block holds at most 65 535 bytes) and still decodes', async () => {
    const rgb = noise(256 * 200 * 3, 9);
    const png = encodeStoredPng(256, 200, 3, rgb);
    expect(png.length).toBeGreaterThan(200 * (256 * 3 + 1));
    expect((await decodeImage(png)).rgb).toEqual(rgb);
  });

  it('refuses a wrong length or size', () => {
    expect(() => encodeStoredPng(4, 4, 3, new Uint8Array(47))).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
    expect(() => encodeStoredPng(0, 4, 3, new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'E_INTERNAL' }));
  });
});

describe('the preview settings', () => {
  it('make encodePng write the stored form, alpha included', async () => {
    const rgb = noise(33 * 21 * 3, 6);
    const alpha = noise(33 * 21, 7);
    const png = await encodePng({ width: 33, height: 21, rgb, alpha }, ENCODE_DEFAULTS.preview);
    const idat = chunks(png).find((c) => c.type === 'IDAT')?.data ?? new Uint8Array(0);
    expect(((idat[2] ?? 0) >> 1) & 3).toBe(0);
    const back = await decodeImage(png);
    expect(back.rgb).toEqual(rgb);
    expect(back.alpha).toEqual(alpha);
  });
});
