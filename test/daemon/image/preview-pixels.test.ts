// The pixels of preview frames (daemon/image/preview-pixels.ts): the quick preview's frame holds the
// generator output with exactly tensorToRgb's colours (round((t+1)·127.5), clamped, NaN → 0) and the
// given alpha (255 without one); a step frame is an opaque thumbnail of at most 128 px a side, never
// enlarged, aspect kept.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { stepPreviewPixels, tensorToRgba } from '../../../daemon/image/preview-pixels.js';
import { tensorToRgb } from '../../../daemon/image/tensor.js';
import { PreviewPixels } from '../../../shared/protocol/index.js';
import { noise, photoLike } from './fixtures.js';

describe('tensorToRgba', () => {
  it('has tensorToRgb’s colours, including the clamps, NaN and the .5 boundaries, and the alpha given', () => {
    const w = 7;
    const h = 5;
    const plane = w * h;
    const t = Float32Array.from({ length: 3 * plane }, (_, i) => Math.sin(i * 1.7) * 1.3);
    t.set([Number.NaN, -1, 1, 2, -2, 0, 1 / 255, -1 / 255, 0.5 / 127.5 - 1], 0);
    const rgb = tensorToRgb(t, w, h);
    const alpha = noise(plane, 3);
    for (const [a, expectedAlpha] of [[alpha, alpha], [null, new Uint8Array(plane).fill(255)]] as const) {
      const rgba = tensorToRgba(t, w, h, a);
      expect(rgba.filter((_, i) => i % 4 !== 3)).toEqual(rgb);
      expect(rgba.filter((_, i) => i % 4 === 3)).toEqual(expectedAlpha);
    }
    expect(Array.from(tensorToRgba(t, w, h, null).subarray(0, 4))).toEqual([0, rgb[1], rgb[2], 255]);
    expect(rgb[0]).toBe(0); // NaN
  });

  it('refuses data that is not [1,3,H,W] or an alpha of another size', () => {
    expect(() => tensorToRgba(new Float32Array(10), 2, 2, null)).toThrow(/not \[1,3,2,2\]/);
    expect(() => tensorToRgba(new Float32Array(12), 2, 2, new Uint8Array(3))).toThrow(/alpha holds 3 values/);
  });
});

describe('stepPreviewPixels', () => {
  it('downscales to a 128 px long side, keeping the aspect, opaque RGBA the frame schema accepts', async () => {
    for (const [w, h, ew, eh] of [[512, 320, 128, 80], [320, 512, 80, 128]] as const) {
      const rgb = photoLike(w, h);
      const frame = await stepPreviewPixels(rgb, w, h);
      expect([frame.role, frame.width, frame.height]).toEqual(['step', ew, eh]);
      expect(PreviewPixels.safeParse(frame).success).toBe(true);
      expect(frame.rgba.filter((_, i) => i % 4 === 3).every((a) => a === 255)).toBe(true);
      // The colours are sharp's downscale of the input.
      const expected = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).resize(128, 128, { fit: 'inside' }).raw().toBuffer();
      expect(frame.rgba.filter((_, i) => i % 4 !== 3)).toEqual(new Uint8Array(expected));
      // Its own buffer: structured clone (worker IPC) copies no neighbours.
      expect(frame.rgba.byteLength).toBe(frame.rgba.buffer.byteLength);
    }
  });

  it('never enlarges a small image: a latent-sized preview keeps one pixel per cell', async () => {
    const rgb = noise(8 * 6 * 3, 24);
    const frame = await stepPreviewPixels(rgb, 8, 6);
    expect([frame.width, frame.height]).toEqual([8, 6]);
    expect(frame.rgba.filter((_, i) => i % 4 !== 3)).toEqual(rgb);
  });
});
