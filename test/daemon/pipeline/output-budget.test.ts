// docs/SECURITY.md §R9, the output budget, through the whole pix2pix-zero edit on the tiny model: the
// 8000×8000 JPEG of a few hundred bytes (a header and an empty scan: libjpeg fills it with mid-grey)
// is decoded straight to 4096×4096 and every result comes back at that size, with the job's details
// saying so. Before, the decode, the mask, the blend and both PNGs were 8000×8000 (7 s and 660 MiB in
// the probe; `npm run bench large-input` measures both ways). Blend still keeps the (scaled)
// original's bytes wherever the mask is 0.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EditParams } from '../../../shared/protocol/index.js';
import { DECODE_DEFAULTS } from '../../../daemon/image/decode.js';
import { InversionCache } from '../../../daemon/pipeline/inversion-cache.js';
import { runPix2PixZero } from '../../../daemon/pipeline/pix2pix-zero.js';
import { headerOnlyJpeg } from '../image/fixtures.js';
import { MODEL_NAME, pixels, tinyModels, type TinyModels } from './tiny-pipeline.js';

let tiny: TinyModels;
beforeAll(async () => {
  tiny = await tinyModels('opset17');
});
afterAll(async () => {
  await tiny?.dispose();
});

it('an 8000×8000 JPEG of a few hundred bytes is edited from a 4096×4096 decode and returned at 4096×4096, and the details say so', { timeout: 180_000 }, async () => {
  const jpeg = await headerOnlyJpeg(8000, 8000);
  expect(jpeg.byteLength).toBeLessThan(400);
  expect(DECODE_DEFAULTS.maxOutputPixels).toBe(4096 * 4096);
  const edit = EditParams.parse({ source: 'cat', target: 'dog', steps: 2, regSteps: 1, size: 128, seed: 3, mask: true, blend: true, caption: 'a photo of a cat' });
  const out = await runPix2PixZero(
    { image: jpeg, edit, model: MODEL_NAME, bankCount: 4 },
    { models: tiny.counting, signal: new AbortController().signal, progress: () => {}, inversionCache: new InversionCache() },
  );
  expect(out.details.decodePath).toEqual({ kind: 'streamed' });
  expect(out.details.workingSize).toEqual({ width: 128, height: 128 });
  expect(out.outputs.map((o) => [o.role, o.width, o.height])).toEqual([['image', 4096, 4096], ['mask', 4096, 4096]]);
  expect(out.report?.scaledFrom).toEqual({ width: 8000, height: 8000 });
  expect(out.report?.notes?.[0]).toBe('The image is 8000×8000 px, more than the 16 MP a result may have, so the result is 4096×4096 px, the same proportions; the plugin scales it to the layer.');

  // The PNGs really are that size, and the blend kept the scaled original (mid-grey) where the mask is 0.
  const image = await pixels(out.outputs[0]!.png);
  const mask = await pixels(out.outputs[1]!.png);
  expect([image.width, image.height, mask.width, mask.height]).toEqual([4096, 4096, 4096, 4096]);
  let kept = 0;
  for (let p = 0; p < 4096 * 4096; p += 97) {
    if (mask.data[p * mask.channels] !== 0) continue;
    kept += 1;
    for (let c = 0; c < 3; c++) expect(Math.abs(image.data[p * image.channels + c]! - 128)).toBeLessThanOrEqual(1);
  }
  expect(kept).toBeGreaterThan(0);
});
