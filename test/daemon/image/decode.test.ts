// decodeImage on files written by sharp: exact pixels for lossless formats, EXIF orientation,
// alpha kept aside, colour management to sRGB 8-bit, and the closed error set for hostile input.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { DECODE_DEFAULTS, decodeError, decodeImage, decodePath, outputSize } from '../../../daemon/image/decode.js';
import { headerOnlyJpeg, headerOnlyPng, noise, rawImage } from './fixtures.js';

const W = 37;
const H = 23;
const rgb = noise(W * H * 3);

async function rejection(promise: Promise<unknown>): Promise<P2pzError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof P2pzError) return error;
    throw error;
  }
  throw new Error('expected a P2pzError');
}

/** Where stored pixel (x, y) of a w×h image lands when EXIF orientation `o` is applied (the eight
 *  cases of the TIFF/EXIF spec: mirrors, rotations, transpose, transverse). */
function orientedIndex(o: number, x: number, y: number, w: number, h: number): [number, number] {
  switch (o) {
    case 2: return [w - 1 - x, y];
    case 3: return [w - 1 - x, h - 1 - y];
    case 4: return [x, h - 1 - y];
    case 5: return [y, x];
    case 6: return [h - 1 - y, x];
    case 7: return [h - 1 - y, w - 1 - x];
    case 8: return [y, w - 1 - x];
    default: return [x, y];
  }
}

describe('decodeImage: pixels', () => {
  it('returns a PNG\'s RGB exactly, with no alpha, in owned memory', async () => {
    const image = await decodeImage(await rawImage(rgb, W, H).png().toBuffer());
    expect(image).toMatchObject({ width: W, height: H, alpha: null, format: 'png', orientation: 1 });
    expect(image.rgb).toEqual(rgb);
    expect(image.rgb.byteOffset).toBe(0);
    expect(image.rgb.buffer.byteLength).toBe(W * H * 3);
  });

  it('keeps an RGBA PNG\'s alpha exactly, and the colour under transparent pixels too', async () => {
    const rgba = noise(W * H * 4, 5);
    for (let p = 0; p < 40; p++) rgba[p * 4 + 3] = 0;
    const image = await decodeImage(await rawImage(rgba, W, H, 4).png().toBuffer());
    expect(image.alpha).not.toBeNull();
    for (let p = 0; p < W * H; p++) {
      expect(image.alpha?.[p]).toBe(rgba[p * 4 + 3]);
      expect([image.rgb[p * 3], image.rgb[p * 3 + 1], image.rgb[p * 3 + 2]]).toEqual([rgba[p * 4], rgba[p * 4 + 1], rgba[p * 4 + 2]]);
    }
  });

  it('keeps a lossless WebP\'s RGB and alpha exactly', async () => {
    const rgba = noise(W * H * 4, 6);
    for (let p = 0; p < W * H; p++) rgba[p * 4 + 3] = p % 2 ? 255 : 128;
    const image = await decodeImage(await rawImage(rgba, W, H, 4).webp({ lossless: true, exact: true }).toBuffer());
    expect(image.format).toBe('webp');
    const back = new Uint8Array(W * H * 4);
    for (let p = 0; p < W * H; p++) back.set([image.rgb[p * 3] ?? -1, image.rgb[p * 3 + 1] ?? -1, image.rgb[p * 3 + 2] ?? -1, image.alpha?.[p] ?? -1], p * 4);
    expect(back).toEqual(rgba);
  });

  it('expands grayscale to three equal channels and keeps gray+alpha\'s alpha', async () => {
    const gray = noise(W * H, 8);
    const image = await decodeImage(await rawImage(gray, W, H, 1).toColourspace('b-w').png().toBuffer());
    for (let p = 0; p < W * H; p++) expect([image.rgb[p * 3], image.rgb[p * 3 + 1], image.rgb[p * 3 + 2]]).toEqual([gray[p], gray[p], gray[p]]);
    expect(image.alpha).toBeNull();

    const grayAlpha = await sharp(gray, { raw: { width: W, height: H, channels: 1 } })
      .toColourspace('b-w')
      .joinChannel(Buffer.from(noise(W * H, 9)), { raw: { width: W, height: H, channels: 1 } })
      .png()
      .toBuffer();
    expect(grayAlpha[25]).toBe(4); // PNG colour type 4: gray + alpha
    const withAlpha = await decodeImage(grayAlpha);
    expect(withAlpha.alpha).toEqual(noise(W * H, 9));
    expect(withAlpha.rgb[3 * 5]).toBe(gray[5]);
  });

  it('converts a 16-bit PNG (RGBA) to 8 bits exactly (v·257 → v)', async () => {
    const rgba = noise(W * H * 4, 10);
    const png16 = await rawImage(rgba, W, H, 4).toColourspace('rgb16').png().toBuffer();
    expect(png16[24]).toBe(16); // IHDR bit depth
    const image = await decodeImage(png16);
    expect(image.alpha).toEqual(Uint8Array.from({ length: W * H }, (_, p) => rgba[p * 4 + 3] ?? 0));
    expect(image.rgb).toEqual(Uint8Array.from({ length: W * H * 3 }, (_, i) => rgba[Math.floor(i / 3) * 4 + (i % 3)] ?? 0));
  });

  it('converts an image tagged Display P3 to sRGB', async () => {
    const red = new Uint8Array(W * H * 3).map((_, i) => (i % 3 === 0 ? 255 : 0));
    const p3 = await rawImage(red, W, H).withIccProfile('p3').png().toBuffer();
    // Stored in P3 coordinates, sRGB red is about (234, 51, 34): without conversion the test would fail.
    const stored = await sharp(p3).keepIccProfile().raw().toBuffer();
    expect(stored[0]).toBeLessThan(240);
    expect(stored[1]).toBeGreaterThan(40);
    const image = await decodeImage(p3);
    for (let p = 0; p < W * H; p += 97) {
      expect(image.rgb[p * 3]).toBeGreaterThanOrEqual(253);
      expect(image.rgb[p * 3 + 1]).toBeLessThanOrEqual(2);
      expect(image.rgb[p * 3 + 2]).toBeLessThanOrEqual(2);
    }
  });

  it('converts a CMYK JPEG to 3-channel sRGB', async () => {
    const red = new Uint8Array(W * H * 3).map((_, i) => (i % 3 === 0 ? 230 : 20));
    const cmyk = await rawImage(red, W, H).toColourspace('cmyk').jpeg({ quality: 100 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const image = await decodeImage(cmyk);
    expect(image.rgb.length).toBe(W * H * 3);
    expect(image.alpha).toBeNull();
    const [r, g, b] = [image.rgb[300], image.rgb[301], image.rgb[302]];
    expect(r).toBeGreaterThan(190);
    expect(g).toBeLessThan(70);
    expect(b).toBeLessThan(70);
  });
});

describe('decodeImage: EXIF orientation', () => {
  it('applies all eight orientations of a PNG exactly', async () => {
    for (let o = 1; o <= 8; o++) {
      const image = await decodeImage(await rawImage(rgb, W, H).withMetadata({ orientation: o }).png().toBuffer());
      const [dw, dh] = o >= 5 ? [H, W] : [W, H];
      expect({ o, width: image.width, height: image.height, orientation: image.orientation }).toEqual({ o, width: dw, height: dh, orientation: o });
      const expected = new Uint8Array(W * H * 3);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const [dx, dy] = orientedIndex(o, x, y, W, H);
          expected.set(rgb.subarray((y * W + x) * 3, (y * W + x) * 3 + 3), (dy * dw + dx) * 3);
        }
      }
      expect(image.rgb).toEqual(expected);
    }
  });

  it('rotates a JPEG with orientation 6: 40×24 stored → 24×40 displayed, red corner top-left → top-right', async () => {
    const [w, h] = [40, 24];
    const pixels = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) pixels.set(x < 16 && y < 8 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
    }
    const jpeg = await rawImage(pixels, w, h).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toBuffer();
    const image = await decodeImage(jpeg);
    expect(image).toMatchObject({ width: 24, height: 40, format: 'jpeg', orientation: 6 });
    const at = (x: number, y: number): number[] => Array.from(image.rgb.subarray((y * 24 + x) * 3, (y * 24 + x) * 3 + 3));
    // Stored (x, y) → displayed (h − 1 − y, x): the 16×8 red block is now 8 wide, 16 tall, at the top right.
    for (const [x, y] of [[20, 4], [23, 0], [17, 14]] as const) expect(at(x, y)[0]).toBeGreaterThan(200);
    for (const [x, y] of [[3, 4], [0, 0], [20, 30], [3, 36]] as const) expect(at(x, y)[2]).toBeGreaterThan(200);
  });
});

describe('decodeImage: errors', () => {
  it('rejects formats it does not accept before libvips sees them', async () => {
    expect((await rejection(decodeImage(await rawImage(rgb, W, H).gif().toBuffer()))).code).toBe('E_IMAGE_FORMAT');
    expect((await rejection(decodeImage(new TextEncoder().encode('<svg/>')))).code).toBe('E_IMAGE_FORMAT');
  });

  it('rejects over-budget images from the header, and honours tighter limits', async () => {
    expect((await rejection(decodeImage(headerOnlyPng(60000, 60000)))).code).toBe('E_IMAGE_TOO_LARGE');
    const png = await rawImage(rgb, W, H).png().toBuffer();
    expect((await rejection(decodeImage(png, { maxPixels: W * H - 1 }))).code).toBe('E_IMAGE_TOO_LARGE');
    expect((await rejection(decodeImage(png, { maxSide: W - 1 }))).code).toBe('E_IMAGE_TOO_LARGE');
    expect((await decodeImage(png, { maxPixels: W * H, maxSide: W })).width).toBe(W);
  });

  it('maps damaged data to E_IMAGE_DECODE: truncated PNG and JPEG, corrupted PNG data, header-only PNG', async () => {
    const png = await rawImage(rgb, W, H).png().toBuffer();
    const jpeg = await rawImage(rgb, W, H).jpeg().toBuffer();
    const corrupt = Buffer.from(png);
    const idat = corrupt.indexOf('IDAT');
    for (let i = idat + 10; i < idat + 60; i++) corrupt[i] = 0x55;
    for (const bytes of [png.subarray(0, png.length - 40), jpeg.subarray(0, jpeg.length >> 1), corrupt, headerOnlyPng(64, 64)]) {
      const error = await rejection(decodeImage(bytes));
      expect(error.code).toBe('E_IMAGE_DECODE');
      expect(error.message).not.toMatch(/vips|png|jpeg/i);
      expect(error.cause).toBeInstanceOf(Error);
    }
  });

  it('accepts a JPEG with stray bytes before its markers (a benign libjpeg warning, common in camera files)', async () => {
    const flat = new Uint8Array(W * H * 3).fill(90);
    const jpeg = await rawImage(flat, W, H).jpeg().toBuffer();
    // Markers as sharp writes them: SOI DQT DQT SOF0 DHT… SOS. Stray bytes go before SOF0 (the sniffer
    // walks past them) and before SOS.
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
    const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]));
    const stray = Buffer.concat([jpeg.subarray(0, sof), Buffer.of(1, 2, 3), jpeg.subarray(sof, sos), Buffer.of(4, 5), jpeg.subarray(sos)]);
    const image = await decodeImage(stray);
    expect(image).toMatchObject({ width: W, height: H, format: 'jpeg' });
    expect(Math.abs((image.rgb[0] ?? 0) - 90)).toBeLessThanOrEqual(2);
    // libvips' strictest level would refuse it: decodeImage deliberately stops at errors, not warnings.
    await expect(sharp(stray, { failOn: 'warning' }).raw().toBuffer()).rejects.toThrow(/extraneous bytes/);
  });

  it('maps libvips messages to the closed error set', () => {
    // The exact text sharp 0.35 produces: vips_error("timeout", "%d%% complete", …) in src/common.cc.
    expect(decodeError(new Error('timeout: 37% complete\n')).code).toBe('E_TIMEOUT');
    expect(decodeError(new Error('Input image exceeds pixel limit')).code).toBe('E_IMAGE_TOO_LARGE');
    expect(decodeError(new Error('Input buffer contains unsupported image format')).code).toBe('E_IMAGE_FORMAT');
    expect(decodeError(new Error('VipsJpeg: premature end of JPEG image')).code).toBe('E_IMAGE_DECODE');
    expect(decodeError('not even an Error').code).toBe('E_IMAGE_DECODE');
    const own = new P2pzError('E_TIMEOUT');
    expect(decodeError(own)).toBe(own);
  });

  it('has budget and timeout defaults', () => {
    expect(DECODE_DEFAULTS).toEqual({ maxPixels: 8192 * 8192, maxSide: 16384, timeoutSeconds: 20, maxOutputPixels: 4096 * 4096 });
    expect(Object.isFrozen(DECODE_DEFAULTS)).toBe(true);
  });
});

// docs/SECURITY.md §R9, the output budget: a small, highly compressible file of a large size is decoded
// straight to a size within 16 MP in one libvips pipeline, never at its own size. Before, all three
// came back 8000×8000 (192 MiB of RGB held, and as much again on the way out).
// Encoding the 8000×8000 WebP and PNG in the test takes most of the time (20 s on a loaded 2-core machine).
describe('decodeImage: the output budget', { timeout: 180_000 }, () => {
  const flat = (format: 'webp' | 'png'): Promise<Buffer> => {
    const image = sharp({ create: { width: 8000, height: 8000, channels: 3, background: { r: 200, g: 120, b: 40 } } });
    return format === 'webp' ? image.webp({ quality: 1 }).toBuffer() : image.png({ compressionLevel: 9 }).toBuffer();
  };

  it('outputSize: within the budget the size itself; beyond it scaled down, the aspect kept, the product within', () => {
    const budget = DECODE_DEFAULTS.maxOutputPixels;
    expect(outputSize(4096, 4096)).toEqual({ width: 4096, height: 4096 });
    expect(outputSize(5000, 3000)).toEqual({ width: 5000, height: 3000 });
    expect(outputSize(8000, 8000)).toEqual({ width: 4096, height: 4096 });
    expect(outputSize(16000, 4000)).toEqual({ width: 8192, height: 2048 });
    for (const [w, h] of [[8191, 8191], [7000, 5000], [12000, 3001], [4097, 4097]] as const) {
      const o = outputSize(w, h);
      expect(o.width * o.height).toBeLessThanOrEqual(budget);
      // Rounded down from the exact scale: within a pixel of the aspect, and as large as the budget allows.
      expect(Math.abs(o.width / o.height - w / h) * o.height).toBeLessThan(1);
      expect((o.width + 1) * (o.height + 1)).toBeGreaterThan(budget);
    }
  });

  it('decodePath follows sharp 0.35\'s shrink-on-load rule (src/pipeline.cc)', () => {
    const to = { width: 1000, height: 1000 };
    const from = (s: number) => ({ width: Math.round(1000 * s), height: Math.round(1000 * s) });
    expect(decodePath('jpeg', to, to)).toEqual({ kind: 'full' });
    expect(decodePath('jpeg', from(1.953), to)).toEqual({ kind: 'streamed' });
    // ⌊s⌋ equal to the factor: one step less (libjpeg's rounding).
    expect(decodePath('jpeg', from(2), to)).toEqual({ kind: 'streamed' });
    expect(decodePath('jpeg', from(3), to)).toEqual({ kind: 'shrink-on-load', factor: 2 });
    expect(decodePath('jpeg', from(4), to)).toEqual({ kind: 'shrink-on-load', factor: 2 });
    expect(decodePath('jpeg', from(5), to)).toEqual({ kind: 'shrink-on-load', factor: 4 });
    expect(decodePath('jpeg', from(15.6), to)).toEqual({ kind: 'shrink-on-load', factor: 8 });
    expect(decodePath('webp', from(1.5), to)).toEqual({ kind: 'shrink-on-load', factor: 1.5 });
    expect(decodePath('png', from(8), to)).toEqual({ kind: 'streamed' });
  });

  it('a JPEG of a few hundred bytes claiming 8000×8000 decodes to 4096×4096, streamed', async () => {
    const jpeg = await headerOnlyJpeg(8000, 8000);
    expect(jpeg.byteLength).toBeLessThan(400);
    const image = await decodeImage(jpeg);
    expect(image).toMatchObject({ width: 4096, height: 4096, source: { width: 8000, height: 8000 }, path: { kind: 'streamed' }, format: 'jpeg' });
    expect(image.rgb).toHaveLength(4096 * 4096 * 3);
    // Within its own budget nothing changes: the same file decoded at its size.
    const small = await decodeImage(await headerOnlyJpeg(300, 200));
    expect(small).toMatchObject({ width: 300, height: 200, source: { width: 300, height: 200 }, path: { kind: 'full' } });
  });

  it('the same at 8000×8000 as WebP: it shrinks at decode', async () => {
    const webp = await flat('webp');
    expect(webp.byteLength).toBeLessThan(200_000);
    const w = await decodeImage(webp);
    expect(w).toMatchObject({ width: 4096, height: 4096, source: { width: 8000, height: 8000 }, path: { kind: 'shrink-on-load', factor: 8000 / 4096 } });
    expect(Math.abs((w.rgb[0] ?? 0) - 200)).toBeLessThanOrEqual(20); // lossy at quality 1
  });

  it('as PNG: streamed through the resize (PNG has no shrink-on-load)', async () => {
    const png = await flat('png');
    expect(png.byteLength).toBeLessThan(300_000);
    const p = await decodeImage(png);
    expect(p).toMatchObject({ width: 4096, height: 4096, source: { width: 8000, height: 8000 }, path: { kind: 'streamed' } });
    expect([p.rgb[0], p.rgb[1], p.rgb[2]]).toEqual([200, 120, 40]);
  });

  it('keeps alpha and EXIF orientation when it scales: a 6000×2000 RGBA stored on its side comes back 2000×6000 scaled', async () => {
    const stored = await sharp({ create: { width: 6000, height: 2000, channels: 4, background: { r: 10, g: 20, b: 30, alpha: 0.5 } } })
      .png().toBuffer();
    const rotated = await sharp(stored).jpeg({ quality: 50 }).withMetadata({ orientation: 6 }).toBuffer();
    const r = await decodeImage(rotated, { maxOutputPixels: 1000 * 3000 });
    expect(r).toMatchObject({ width: 1000, height: 3000, source: { width: 2000, height: 6000 }, path: { kind: 'streamed' } });
    const a = await decodeImage(stored, { maxOutputPixels: 3000 * 1000 });
    expect(a).toMatchObject({ width: 3000, height: 1000, path: { kind: 'streamed' } });
    expect(a.alpha?.[0]).toBe(128);
  });
});
