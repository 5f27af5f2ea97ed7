// Tensor layout and range (golden values), exact round trips, clamping and rounding, working sizes,
// and resampling properties that hold for any correct kernel.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { TENSOR_DEFAULTS, WORKING_FRAME_LIMITS, cropToContent, resizeAlpha, resizeRgb, rgbInFrame, rgbToTensor, tensorToRgb, workingFrame, workingSize } from '../../../daemon/image/tensor.js';
import { noise } from './fixtures.js';

function codeOf(run: () => unknown): string {
  try {
    run();
    return 'none';
  } catch (error) {
    return error instanceof P2pzError ? error.code : 'other';
  }
}

describe('rgbToTensor / tensorToRgb', () => {
  it('lays HWC bytes out as NCHW [1,3,H,W] with x = p/127.5 − 1', () => {
    // 2×2 image, pixels (r,g,b): (0,255,51) (102,153,204) (1,2,3) (254,128,127)
    const rgb = Uint8Array.of(0, 255, 51, 102, 153, 204, 1, 2, 3, 254, 128, 127);
    const tensor = rgbToTensor(rgb, 2, 2);
    const golden = [0, 102, 1, 254, 255, 153, 2, 128, 51, 204, 3, 127].map((p) => Math.fround(p / 127.5 - 1));
    expect(Array.from(tensor)).toEqual(golden);
    expect(tensor[0]).toBe(-1);
    expect(tensor[4]).toBe(1);
    expect(tensor[8]).toBeCloseTo(-0.6, 7);
  });

  it('round-trips every byte value exactly', () => {
    const rgb = Uint8Array.from({ length: 256 * 3 }, (_, i) => (i * 7 + (i % 3) * 85) % 256);
    expect(new Set(rgb).size).toBe(256);
    expect(tensorToRgb(rgbToTensor(rgb, 16, 16), 16, 16)).toEqual(rgb);
    const random = noise(37 * 23 * 3, 4);
    expect(tensorToRgb(rgbToTensor(random, 37, 23), 37, 23)).toEqual(random);
  });

  it('clamps, rounds to nearest and maps NaN to 0', () => {
    // Planes of a 1×6 image: R carries the cases, G and B are 0.
    const cases = [-3, 3, Number.NaN, 10.49 / 127.5 - 1, 10.51 / 127.5 - 1, 254.6 / 127.5 - 1];
    const tensor = new Float32Array(18);
    tensor.set(cases, 0);
    tensor.fill(-1, 6);
    const rgb = tensorToRgb(tensor, 6, 1);
    expect(Array.from({ length: 6 }, (_, p) => rgb[p * 3])).toEqual([0, 255, 0, 10, 11, 255]);
    expect(Array.from({ length: 6 }, (_, p) => rgb[p * 3 + 1])).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('rounds exactly as Math.round(clamp((x + 1)·127.5, 0, 255)) on every kind of float32', () => {
    // Halfway points (x + 1)·127.5 = k + ½ exactly where float32 holds them, their neighbours, the
    // clamp edges, infinities, NaN and a sweep of bit patterns: against the formula itself.
    const values: number[] = [Number.NaN, Infinity, -Infinity, -0, 0, -1, 1, 1.0000001, -1.0000001];
    for (let k = 0; k < 256; k++) {
      const x = Math.fround((k + 0.5) / 127.5 - 1);
      values.push(x, Math.fround(x + 1e-7), Math.fround(x - 1e-7));
    }
    const bits = new Uint32Array(1);
    const f = new Float32Array(bits.buffer);
    for (let i = 0; i < 200_000; i++) {
      bits[0] = Math.imul(i, 2654435761) >>> 0;
      values.push(f[0] as number);
    }
    const tensor = new Float32Array(values.length * 3).fill(-1);
    tensor.set(values, 0);
    const rgb = tensorToRgb(tensor, values.length, 1);
    const expected = values.map((x) => {
      const v = (Math.fround(x) + 1) * 127.5;
      return v > 0 ? (v < 255 ? Math.round(v) : 255) : 0;
    });
    expect(Array.from({ length: values.length }, (_, p) => rgb[p * 3])).toEqual(expected);
  });

  it('refuses buffers that do not match the size', () => {
    expect(codeOf(() => rgbToTensor(new Uint8Array(11), 2, 2))).toBe('E_INTERNAL');
    expect(codeOf(() => tensorToRgb(new Float32Array(13), 2, 2))).toBe('E_INTERNAL');
    expect(codeOf(() => rgbToTensor(new Uint8Array(0), 0, 0))).toBe('E_INTERNAL');
  });
});

describe('workingSize', () => {
  it.each([
    [512, 512, 512, 512, 512],
    [1920, 1080, 512, 512, 320], // 288 → 4.5 multiples of 64 → 5
    [1080, 1920, 512, 320, 512],
    [640, 480, 512, 512, 384],
    [4000, 3000, 512, 512, 384],
    [3000, 2000, 512, 512, 320], // 341.3 → 320
    [100, 10000, 512, 64, 512], // 5.1 → at least 64
    [1, 1, 512, 512, 512],
    [1024, 768, 768, 768, 576],
    [1000, 700, 1024, 1024, 704], // 716.8 → 704
  ])('%i×%i at %i → %i×%i', (w, h, long, ew, eh) => {
    expect(workingSize(w, h, long)).toEqual({ width: ew, height: eh });
  });

  it('defaults to a 512 long side', () => {
    expect(TENSOR_DEFAULTS.longSide).toBe(512);
    expect(workingSize(800, 600)).toEqual({ width: 512, height: 384 });
  });

  it('keeps the aspect as closely as multiples of 64 allow', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16384 }), fc.integer({ min: 1, max: 16384 }), fc.integer({ min: 1, max: 16 }), (w, h, k) => {
        const longSide = 64 * k;
        const size = workingSize(w, h, longSide);
        expect(size.width % 64).toBe(0);
        expect(size.height % 64).toBe(0);
        expect(Math.max(size.width, size.height)).toBe(longSide);
        if (size.width !== size.height) expect(size.width > size.height).toBe(w > h);
        const ideal = (longSide * Math.min(w, h)) / Math.max(w, h);
        expect(Math.abs(Math.min(size.width, size.height) - Math.max(64, ideal))).toBeLessThanOrEqual(32);
      }),
      { seed: 11, numRuns: 500 },
    );
  });

  it('refuses a long side that is not a positive multiple of 64, and sizes that are not sizes', () => {
    expect(codeOf(() => workingSize(100, 100, 500))).toBe('E_INTERNAL');
    expect(codeOf(() => workingSize(100, 100, 0))).toBe('E_INTERNAL');
    expect(codeOf(() => workingSize(0, 100))).toBe('E_INTERNAL');
    expect(codeOf(() => workingSize(10.5, 100))).toBe('E_INTERNAL');
  });
});

describe('resizeRgb / resizeAlpha', () => {
  it('resizes RGB to the asked size; a constant colour stays exactly constant (weights sum to 1)', async () => {
    const flat = new Uint8Array(37 * 23 * 3).map((_, i) => [200, 10, 90][i % 3] ?? 0);
    for (const [w, h] of [[512, 320], [8, 5], [37, 23]] as const) {
      const out = await resizeRgb(flat, 37, 23, w, h);
      expect(out.length).toBe(w * h * 3);
      expect(out.every((v, i) => v === [200, 10, 90][i % 3])).toBe(true);
    }
  });

  it('is a copy at the same size', async () => {
    const rgb = noise(10 * 6 * 3, 12);
    const out = await resizeRgb(rgb, 10, 6, 10, 6);
    expect(out).toEqual(rgb);
    expect(out).not.toBe(rgb);
  });

  it('resamples RGB with Lanczos 3 by default (sharper than linear on an edge)', async () => {
    // A vertical step edge 0 | 255, upsampled 4×: Lanczos overshoots, linear never does.
    const step = new Uint8Array(8 * 2 * 3).map((_, i) => (Math.floor(i / 3) % 8 < 4 ? 0 : 255));
    const lanczos = await resizeRgb(step, 8, 2, 32, 8);
    const linear = await resizeRgb(step, 8, 2, 32, 8, 'linear');
    const steepness = (row: Uint8Array): number => Math.max(...Array.from({ length: 31 }, (_, x) => (row[(x + 1) * 3] ?? 0) - (row[x * 3] ?? 0)));
    expect(steepness(lanczos.subarray(0, 32 * 3))).toBeGreaterThan(steepness(linear.subarray(0, 32 * 3)));
  });

  it('resizes one alpha channel to one channel, without overshoot: hard regions stay exactly 0 and 255', async () => {
    // 16×4 mask: left half transparent, right half opaque; upsample 4× and downsample 2×.
    const mask = Uint8Array.from({ length: 16 * 4 }, (_, i) => (i % 16 < 8 ? 0 : 255));
    const up = await resizeAlpha(mask, 16, 4, 64, 16);
    expect(up.length).toBe(64 * 16);
    for (let y = 0; y < 16; y++) {
      const row = Array.from(up.subarray(y * 64, y * 64 + 64));
      expect(row.slice(0, 24).every((v) => v === 0)).toBe(true);
      expect(row.slice(40).every((v) => v === 255)).toBe(true);
      for (let x = 1; x < 64; x++) expect(row[x]).toBeGreaterThanOrEqual(row[x - 1] ?? 0);
    }
    const down = await resizeAlpha(mask, 16, 4, 8, 2);
    expect(Array.from(down.subarray(0, 8))).toEqual(expect.arrayContaining([0, 255]));
    expect(down.length).toBe(16);
  });

  it('refuses wrong buffer lengths and sizes', async () => {
    await expect(resizeRgb(new Uint8Array(5), 2, 1, 4, 4)).rejects.toMatchObject({ code: 'E_INTERNAL' });
    await expect(resizeAlpha(new Uint8Array(2), 2, 1, 0, 4)).rejects.toMatchObject({ code: 'E_INTERNAL' });
  });
});

describe('workingFrame (extreme aspect ratios)', () => {
  function refusal(w: number, h: number): { code: string; message: string; hint: string } | null {
    try {
      workingFrame(w, h);
      return null;
    } catch (error) {
      if (!(error instanceof P2pzError)) throw error;
      return { code: error.code, message: error.message, hint: error.hint };
    }
  }

  it('refuses 1×1, 6000×300 and 300×2000 with a code and a hint, and accepts up to 4:1', () => {
    expect(refusal(1, 1)).toMatchObject({ code: 'E_BAD_REQUEST', message: expect.stringContaining('1×1 pixels'), hint: expect.stringContaining('larger layer') });
    expect(refusal(6000, 300)).toMatchObject({ code: 'E_BAD_REQUEST', message: expect.stringContaining('about 20:1'), hint: expect.stringContaining('at most 4:1') });
    expect(refusal(300, 2000)).toMatchObject({ code: 'E_BAD_REQUEST', message: expect.stringContaining('about 7:1') });
    expect(refusal(31, 500)?.message).toContain('at least 32 pixels');
    expect(refusal(2000, 500)).toBeNull();
    expect(refusal(32, 32)).toBeNull();
  });

  it('up to 2:1 the frame is workingSize, filled; from 2:1 to 4:1 a 2:1 frame with the input centred', () => {
    expect(workingFrame(1000, 1000)).toEqual({ width: 512, height: 512, content: { left: 0, top: 0, width: 512, height: 512 } });
    expect(workingFrame(1000, 500)).toEqual({ width: 512, height: 256, content: { left: 0, top: 0, width: 512, height: 256 } });
    // 1500×500 (3:1): 512 × 170.7 → 171 rows in a 256-row frame, (256 − 171) / 2 = 42 rows above.
    expect(workingFrame(1500, 500)).toEqual({ width: 512, height: 256, content: { left: 0, top: 42, width: 512, height: 171 } });
    expect(workingFrame(500, 2000)).toEqual({ width: 256, height: 512, content: { left: 64, top: 0, width: 128, height: 512 } });
    expect(workingFrame(1500, 500, 128)).toEqual({ width: 128, height: 64, content: { left: 0, top: 10, width: 128, height: 43 } });
  });

  it('every accepted frame keeps its short side at half the long side or more (256 at 512), in multiples of 64', () => {
    fc.assert(fc.property(fc.integer({ min: 32, max: 8000 }), fc.integer({ min: 32, max: 8000 }), (w, h) => {
      const aspect = Math.max(w, h) / Math.min(w, h);
      if (aspect > WORKING_FRAME_LIMITS.maxAspect) return;
      const f = workingFrame(w, h);
      expect(Math.min(f.width, f.height)).toBeGreaterThanOrEqual(256);
      expect(f.width % 64 + f.height % 64).toBe(0);
      const c = f.content;
      expect(c.left + c.width).toBeLessThanOrEqual(f.width);
      expect(c.top + c.height).toBeLessThanOrEqual(f.height);
      // A padded input keeps its own aspect ratio (a filled frame rounds to multiples of 64, as before).
      if (c.width !== f.width || c.height !== f.height) expect(Math.abs(c.width / c.height - w / h) / (w / h)).toBeLessThan(0.01);
    }), { numRuns: 300 });
  });

  it('rgbInFrame mirrors the input around its rectangle, and cropToContent takes exactly that rectangle back', async () => {
    // A 160×40 (4:1) input into a long side of 128: content 128×32, frame 128×64, 16 rows mirrored above and below.
    const w = 160;
    const h = 40;
    const rgb = noise(w * h * 3, 5);
    const frame = workingFrame(w, h, 128);
    expect(frame).toEqual({ width: 128, height: 64, content: { left: 0, top: 16, width: 128, height: 32 } });
    const inner = await resizeRgb(rgb, w, h, 128, 32);
    const framed = await rgbInFrame(rgb, w, h, frame);
    expect(framed.length).toBe(128 * 64 * 3);
    expect(cropToContent(framed, frame, 3)).toEqual(inner);
    // Mirror: the row just above the content repeats the content's rows in reverse order.
    const row = (px: Uint8Array, y: number) => Array.from(px.subarray(y * 128 * 3, (y + 1) * 128 * 3));
    const above = row(framed, 15);
    expect([row(inner, 0), row(inner, 1)]).toContainEqual(above);
    const gray = Uint8Array.from({ length: 128 * 64 }, (_, i) => i % 251);
    expect(cropToContent(gray, frame, 1)).toEqual(gray.slice(16 * 128, 48 * 128));
  });
});
