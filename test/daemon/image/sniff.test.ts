// sniffImage against real headers written by sharp (libpng, mozjpeg, libwebp), hand-made hostile
// headers, truncations and byte flips; the pixel budget; MIME types.
import { crc32 as zlibCrc32 } from 'node:zlib';
import fc from 'fast-check';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { P2pzError, type ErrorCode } from '../../../shared/protocol/index.js';
import {
  IMAGE_LIMITS,
  IMAGE_MIME,
  checkPixelBudget,
  crc32,
  formatForMime,
  orientedSize,
  sniffImage,
  type ImageHeader,
} from '../../../daemon/image/sniff.js';
import { decodeImage } from '../../../daemon/image/decode.js';
import { headerOnlyPng, noise, rawImage } from './fixtures.js';

const W = 37;
const H = 23;
const rgb = noise(W * H * 3);
const rgba = noise(W * H * 4, 2);

function codeOf(run: () => unknown): ErrorCode | 'none' | 'other' {
  try {
    run();
    return 'none';
  } catch (error) {
    return error instanceof P2pzError ? error.code : 'other';
  }
}

function errorOf(run: () => unknown): P2pzError {
  try {
    run();
  } catch (error) {
    if (error instanceof P2pzError) return error;
    throw error;
  }
  throw new Error('expected a P2pzError');
}

describe('sniffImage: real files', () => {
  const cases: [string, () => Promise<Buffer>, ImageHeader['format']][] = [
    ['PNG RGB', () => rawImage(rgb, W, H).png().toBuffer(), 'png'],
    ['PNG RGBA', () => rawImage(rgba, W, H, 4).png().toBuffer(), 'png'],
    ['PNG interlaced', () => rawImage(rgb, W, H).png({ progressive: true }).toBuffer(), 'png'],
    ['PNG palette', () => rawImage(rgb, W, H).png({ palette: true, colours: 16 }).toBuffer(), 'png'],
    ['PNG 16-bit', () => rawImage(rgb, W, H).toColourspace('rgb16').png().toBuffer(), 'png'],
    ['PNG gray', () => rawImage(rgb, W, H).toColourspace('b-w').png().toBuffer(), 'png'],
    ['JPEG baseline', () => rawImage(rgb, W, H).jpeg().toBuffer(), 'jpeg'],
    ['JPEG progressive', () => rawImage(rgb, W, H).jpeg({ progressive: true }).toBuffer(), 'jpeg'],
    ['JPEG with EXIF and ICC', () => rawImage(rgb, W, H).withMetadata({ orientation: 3 }).withIccProfile('p3').jpeg().toBuffer(), 'jpeg'],
    ['JPEG CMYK', () => rawImage(rgb, W, H).toColourspace('cmyk').jpeg().toBuffer(), 'jpeg'],
    ['WebP lossy (VP8)', () => rawImage(rgb, W, H).webp().toBuffer(), 'webp'],
    ['WebP lossless (VP8L)', () => rawImage(rgb, W, H).webp({ lossless: true }).toBuffer(), 'webp'],
    ['WebP lossy with alpha (VP8X)', () => rawImage(rgba, W, H, 4).webp().toBuffer(), 'webp'],
    ['WebP with EXIF (VP8X)', () => rawImage(rgb, W, H).withMetadata({ orientation: 2 }).webp({ lossless: true }).toBuffer(), 'webp'],
  ];
  it.each(cases)('%s → format and stored size', async (_name, make, format) => {
    const bytes = await make();
    const header = sniffImage(bytes);
    expect(header).toMatchObject({ format, width: W, height: H });
    const meta = await sharp(bytes).metadata();
    expect([meta.width, meta.height, meta.orientation ?? 1]).toEqual([header.width, header.height, header.orientation]);
  });

  it('reads EXIF orientation 1..8 in every format as libvips does', async () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      for (let orientation = 1; orientation <= 8; orientation++) {
        const bytes = await rawImage(rgb, W, H).withMetadata({ orientation }).toFormat(format).toBuffer();
        const header = sniffImage(bytes);
        expect({ format, orientation: header.orientation }).toEqual({ format, orientation });
        expect((await sharp(bytes).metadata()).orientation).toBe(orientation);
        const displayed = await sharp(bytes, { autoOrient: true }).raw().toBuffer({ resolveWithObject: true });
        expect(orientedSize(header)).toEqual({ width: displayed.info.width, height: displayed.info.height });
      }
    }
  });

  it('has no orientation (1) without EXIF', async () => {
    expect(sniffImage(await rawImage(rgb, W, H).jpeg().toBuffer()).orientation).toBe(1);
    expect(orientedSize({ format: 'png', width: 3, height: 2, orientation: 1 })).toEqual({ width: 3, height: 2 });
    expect(orientedSize({ format: 'png', width: 3, height: 2, orientation: 6 })).toEqual({ width: 2, height: 3 });
  });
});

describe('sniffImage: not an accepted image', () => {
  it('names GIF, TIFF, BMP, SVG, PDF and HEIC/AVIF uploads', async () => {
    const gif = await rawImage(rgb, W, H).gif().toBuffer();
    const tiff = await rawImage(rgb, W, H).tiff().toBuffer();
    const bmp = Uint8Array.from([0x42, 0x4d, 0x36, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 0x28, 0]);
    const svg = new TextEncoder().encode('\uFEFF  <?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="60000" height="60000"/>');
    const pdf = new TextEncoder().encode('%PDF-1.7\n');
    const avif = Uint8Array.from([0, 0, 0, 0x1c, 0x66, 0x74, 0x79, 0x70, 0x61, 0x76, 0x69, 0x66]);
    const named: [Uint8Array, string][] = [[gif, 'GIF'], [tiff, 'TIFF'], [bmp, 'BMP'], [svg, 'SVG'], [pdf, 'PDF'], [avif, 'HEIC or AVIF']];
    for (const [bytes, name] of named) {
      const error = errorOf(() => sniffImage(bytes));
      expect(error.code).toBe('E_IMAGE_FORMAT');
      expect(error.message).toContain(name);
      expect(error.status).toBe(415);
    }
  });

  it('rejects empty input and garbage with E_IMAGE_FORMAT', () => {
    expect(codeOf(() => sniffImage(new Uint8Array(0)))).toBe('E_IMAGE_FORMAT');
    expect(codeOf(() => sniffImage(new TextEncoder().encode('hello, this is not an image')))).toBe('E_IMAGE_FORMAT');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(codeOf(() => sniffImage(bytes))).toBe('E_IMAGE_FORMAT');
      }),
      { seed: 1, numRuns: 500 },
    );
  });

  it('rejects every truncation inside the header with E_IMAGE_FORMAT and accepts it once the header is whole', async () => {
    const files = {
      png: await rawImage(rgb, W, H).withMetadata({ orientation: 6 }).png().toBuffer(),
      jpeg: await rawImage(rgb, W, H).withMetadata({ orientation: 6 }).jpeg().toBuffer(),
      webp: await rawImage(rgb, W, H).webp().toBuffer(),
    };
    for (const [format, bytes] of Object.entries(files)) {
      const whole = sniffImage(bytes);
      let firstAccepted = -1;
      for (let n = 0; n <= bytes.length; n++) {
        const code = codeOf(() => sniffImage(bytes.subarray(0, n)));
        if (code === 'none') {
          if (firstAccepted < 0) firstAccepted = n;
          expect(sniffImage(bytes.subarray(0, n)).width).toBe(whole.width);
        } else {
          expect({ format, n, code }).toEqual({ format, n, code: 'E_IMAGE_FORMAT' });
        }
      }
      // PNG: the 33-byte IHDR suffices; JPEG: everything up to the end of the SOF0 segment; WebP: the
      // whole RIFF (its size field says how long the file is).
      const sof = bytes.indexOf(Buffer.from([0xff, 0xc0]));
      const expected = { png: 33, jpeg: sof + 2 + bytes.readUInt16BE(sof + 2), webp: bytes.length };
      expect(bytes.length).toBeLessThan(4000);
      expect({ format, firstAccepted }).toEqual({ format, firstAccepted: expected[format as keyof typeof expected] });
    }
  });

  it('never throws anything but P2pzError on flipped header bytes', async () => {
    const files = [
      await rawImage(rgb, W, H).withMetadata({ orientation: 5 }).png().toBuffer(),
      await rawImage(rgb, W, H).withMetadata({ orientation: 5 }).jpeg().toBuffer(),
      await rawImage(rgba, W, H, 4).withMetadata({ orientation: 5 }).webp().toBuffer(),
      await rawImage(rgb, W, H).webp({ lossless: true }).toBuffer(),
    ];
    fc.assert(
      fc.property(
        fc.constantFrom(...files),
        fc.array(fc.tuple(fc.nat({ max: 400 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
        (file, flips) => {
          const bytes = Uint8Array.from(file);
          for (const [at, value] of flips) if (at < bytes.length) bytes[at] = value;
          expect(['none', 'E_IMAGE_FORMAT', 'E_IMAGE_TOO_LARGE']).toContain(codeOf(() => sniffImage(bytes)));
        },
      ),
      { seed: 7, numRuns: 2000 },
    );
  });

  it('rejects a PNG whose IHDR fails its CRC or holds impossible values', () => {
    const good = headerOnlyPng(640, 480);
    expect(sniffImage(good)).toEqual({ format: 'png', width: 640, height: 480, orientation: 1 });
    const badCrc = Uint8Array.from(good);
    badCrc[32] = (badCrc[32] ?? 0) ^ 1;
    expect(codeOf(() => sniffImage(badCrc))).toBe('E_IMAGE_FORMAT');
    expect(codeOf(() => sniffImage(headerOnlyPng(0, 480)))).toBe('E_IMAGE_FORMAT');
    expect(codeOf(() => sniffImage(headerOnlyPng(2 ** 31, 1)))).toBe('E_IMAGE_FORMAT');
  });

  it('rejects a JPEG without a frame header, or one whose height comes later (DNL)', async () => {
    const sosFirst = Uint8Array.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0x00]);
    expect(errorOf(() => sniffImage(sosFirst)).message).toContain('no frame header');
    const jpeg = Buffer.from(await rawImage(rgb, W, H).jpeg().toBuffer());
    const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0])); // FF C0 len(2) precision(1) height(2)
    expect(jpeg.readUInt16BE(sof + 5)).toBe(H);
    jpeg.writeUInt16BE(0, sof + 5);
    expect(codeOf(() => sniffImage(jpeg))).toBe('E_IMAGE_FORMAT');
  });
});

describe('pixel budget', () => {
  it('rejects a header-only 60000×60000 PNG (no IDAT) as too large, naming the limit', () => {
    const error = errorOf(() => sniffImage(headerOnlyPng(60000, 60000)));
    expect(error.code).toBe('E_IMAGE_TOO_LARGE');
    expect(error.status).toBe(413);
    expect(error.message).toContain('60000×60000');
    expect(error.message).toContain('16384');
  });

  it('allows exactly 64 MP and a side of exactly 16384, and nothing over', () => {
    expect(IMAGE_LIMITS).toEqual({ maxPixels: 67_108_864, maxSide: 16384 });
    expect(sniffImage(headerOnlyPng(8192, 8192)).width).toBe(8192);
    expect(sniffImage(headerOnlyPng(16384, 4096)).width).toBe(16384);
    expect(codeOf(() => sniffImage(headerOnlyPng(8192, 8193)))).toBe('E_IMAGE_TOO_LARGE');
    expect(codeOf(() => sniffImage(headerOnlyPng(16385, 1)))).toBe('E_IMAGE_TOO_LARGE');
    expect(codeOf(() => sniffImage(headerOnlyPng(1, 16385)))).toBe('E_IMAGE_TOO_LARGE');
    expect(errorOf(() => checkPixelBudget({ width: 9000, height: 9000 })).message).toContain('81.0 MP');
    expect(codeOf(() => checkPixelBudget({ width: 100, height: 100 }, { maxPixels: 9999, maxSide: 100 }))).toBe('E_IMAGE_TOO_LARGE');
    expect(codeOf(() => checkPixelBudget({ width: 100, height: 99 }, { maxPixels: 9999, maxSide: 100 }))).toBe('none');
  });

  it('budgets WebP VP8X canvases (24-bit sizes) the same way', async () => {
    const webp = Uint8Array.from(await rawImage(rgba, W, H, 4).webp().toBuffer());
    expect(String.fromCharCode(...webp.subarray(12, 16))).toBe('VP8X');
    webp.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 24); // canvas 16777216 × 16777216
    expect(errorOf(() => sniffImage(webp)).message).toContain('16777216×16777216');
  });

  describe('a real 12000×12000 PNG bomb (solid colour, made by sharp)', () => {
    let bomb: Uint8Array;
    beforeAll(async () => {
      const row = new Uint8Array(12000 * 3).map((_, i) => [200, 30, 60][i % 3] ?? 0);
      bomb = await sharp(row, { raw: { width: 12000, height: 1, channels: 3 } })
        .resize(12000, 12000, { kernel: 'nearest', fit: 'fill' })
        .png()
        .toBuffer();
    });

    it('is small on disk but 432 MB decoded, and is refused from its header without allocating pixels', async () => {
      expect(bomb.length).toBeLessThan(4_000_000);
      expect(await sharp(bomb).metadata()).toMatchObject({ width: 12000, height: 12000, channels: 3 });
      const before = process.memoryUsage().rss;
      const error = errorOf(() => sniffImage(bomb));
      const grown = process.memoryUsage().rss - before;
      expect(error.code).toBe('E_IMAGE_TOO_LARGE');
      expect(error.message).toContain('144.0 MP');
      expect(grown).toBeLessThan(100 * 1024 * 1024);
    });

    it('is refused by decodeImage too, before libvips allocates anything', async () => {
      const before = process.memoryUsage().rss;
      await expect(decodeImage(bomb)).rejects.toMatchObject({ code: 'E_IMAGE_TOO_LARGE' });
      expect(process.memoryUsage().rss - before).toBeLessThan(100 * 1024 * 1024);
    });
  });
});

describe('MIME types', () => {
  it('maps exactly image/png, image/jpeg and image/webp', () => {
    expect(IMAGE_MIME).toEqual({ png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' });
    expect(formatForMime('image/png')).toBe('png');
    expect(formatForMime('image/jpeg')).toBe('jpeg');
    expect(formatForMime('image/webp')).toBe('webp');
    expect(formatForMime(' Image/PNG ')).toBe('png');
    for (const other of ['image/jpg', 'image/gif', 'image/svg+xml', 'text/plain', 'application/octet-stream',
      'multipart/form-data', 'image/png; charset=utf-8', 'image/png,image/png', '', undefined, null]) {
      expect(formatForMime(other)).toBeNull();
    }
  });
});

describe('crc32', () => {
  it('agrees with zlib on PNG chunk bytes and random data', () => {
    expect(crc32(new TextEncoder().encode('IHDR'))).toBe(zlibCrc32('IHDR'));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => crc32(bytes) === zlibCrc32(bytes)), { seed: 3 });
  });
});
