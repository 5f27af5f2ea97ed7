// PNG encoding: exact round trips through decodeImage (with and without alpha, every level), the PNG
// colour types written, grayscale masks, and the size bound of step previews.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../../daemon/image/decode.js';
import { ENCODE_DEFAULTS, encodeGrayPng, encodePng } from '../../../daemon/image/encode.js';
import { sniffImage } from '../../../daemon/image/sniff.js';
import { noise, photoLike } from './fixtures.js';

const W = 45;
const H = 29;

/** IHDR bytes 24 and 25: bit depth and colour type (0 gray, 2 RGB, 4 gray+alpha, 6 RGBA). */
function ihdr(png: Uint8Array): { depth: number | undefined; colourType: number | undefined } {
  return { depth: png[24], colourType: png[25] };
}

/** The chunk types of a PNG, in order. */
function chunkTypes(png: Uint8Array): string[] {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const types: string[] = [];
  for (let at = 8; at + 8 <= png.length; at += 12 + view.getUint32(at)) types.push(String.fromCharCode(...png.subarray(at + 4, at + 8)));
  return types;
}

describe('encodePng', () => {
  it('writes no pHYs chunk: Photopea places images by physical size, and sharp would say 25.4 dpi', async () => {
    const rgb = noise(W * H * 3, 22);
    const alpha = noise(W * H, 23);
    for (const png of [
      await encodePng({ width: W, height: H, rgb }),
      await encodePng({ width: W, height: H, rgb, alpha }),
      await encodeGrayPng(W, H, alpha),
    ]) {
      expect(chunkTypes(png)).not.toContain('pHYs');
      expect(chunkTypes(png)[0]).toBe('IHDR');
      expect(chunkTypes(png).at(-1)).toBe('IEND');
      // Still a PNG sharp reads, every chunk's CRC intact.
      await expect(sharp(png, { failOn: 'warning' }).raw().toBuffer()).resolves.toBeInstanceOf(Buffer);
    }
    const back = await decodeImage(await encodePng({ width: W, height: H, rgb, alpha }));
    expect(back.rgb).toEqual(rgb);
    expect(back.alpha).toEqual(alpha);
  });

  it('round-trips RGB exactly as an 8-bit RGB PNG', async () => {
    const rgb = noise(W * H * 3, 20);
    const png = await encodePng({ width: W, height: H, rgb });
    expect(sniffImage(png)).toEqual({ format: 'png', width: W, height: H, orientation: 1 });
    expect(ihdr(png)).toEqual({ depth: 8, colourType: 2 });
    const back = await decodeImage(png);
    expect(back.rgb).toEqual(rgb);
    expect(back.alpha).toBeNull();
  });

  it('re-attaches alpha (RGBA PNG) and round-trips colour and alpha exactly, transparent pixels included', async () => {
    const rgb = noise(W * H * 3, 21);
    const alpha = noise(W * H, 22);
    alpha.fill(0, 0, 50);
    const png = await encodePng({ width: W, height: H, rgb, alpha });
    expect(ihdr(png)).toEqual({ depth: 8, colourType: 6 });
    const back = await decodeImage(png);
    expect(back.rgb).toEqual(rgb);
    expect(back.alpha).toEqual(alpha);
  });

  it('gives the same pixels at every compression level, and smaller files at 2 than at 0', async () => {
    const rgb = photoLike(96, 64);
    const sizes: number[] = [];
    for (let level = 0; level <= 9; level++) {
      const png = await encodePng({ width: 96, height: 64, rgb }, { compressionLevel: level });
      sizes.push(png.length);
      expect((await decodeImage(png)).rgb).toEqual(rgb);
    }
    expect(sizes[2]).toBeLessThan((sizes[0] ?? 0) * 0.8);
    expect(ENCODE_DEFAULTS).toMatchObject({ compressionLevel: 2, adaptiveFiltering: true });
  });

  it('returns owned memory', async () => {
    const png = await encodePng({ width: 2, height: 2, rgb: new Uint8Array(12) });
    expect(png.byteOffset).toBe(0);
    expect(png.buffer.byteLength).toBe(png.length);
  });

  it('refuses wrong lengths and levels', async () => {
    await expect(encodePng({ width: W, height: H, rgb: new Uint8Array(10) })).rejects.toMatchObject({ code: 'E_INTERNAL' });
    await expect(encodePng({ width: W, height: H, rgb: noise(W * H * 3), alpha: new Uint8Array(3) })).rejects.toMatchObject({ code: 'E_INTERNAL' });
    await expect(encodePng({ width: 1, height: 1, rgb: new Uint8Array(3) }, { compressionLevel: 10 })).rejects.toMatchObject({ code: 'E_INTERNAL' });
  });
});

describe('encodeGrayPng', () => {
  it('writes an 8-bit grayscale PNG (colour type 0) that decodes to the same values', async () => {
    const gray = noise(W * H, 23);
    const png = await encodeGrayPng(W, H, gray);
    expect(ihdr(png)).toEqual({ depth: 8, colourType: 0 });
    const raw = await sharp(png).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect(raw.info.channels).toBe(1);
    expect(new Uint8Array(raw.data)).toEqual(gray);
  });
});
