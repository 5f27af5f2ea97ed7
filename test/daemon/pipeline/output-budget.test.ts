// docs/SECURITY.md §R9, the output budget, through the whole pix2pix-zero edit on the tiny model: the
// 8000×8000 JPEG of a few hundred bytes (a header and an empty scan: libjpeg fills it with mid-grey)
// is edited from a copy shrunk at decode to the working size, and every result comes back at
// 4096×4096 (the 16 MP output budget), with the job's details saying so; the 4096×4096 original is
// decoded only for the blend. Before, the decode, the mask, the blend and both PNGs were 8000×8000 (7 s and 660 MiB in
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

const context = () => ({ models: tiny.counting, signal: new AbortController().signal, progress: () => {}, inversionCache: new InversionCache() });
const settings = (blend: boolean) => EditParams.parse({ source: 'cat', target: 'dog', steps: 2, regSteps: 1, size: 128, seed: 3, mask: true, blend, caption: 'a photo of a cat' });
const NOTE = 'The image is 8000×8000 px, more than the 16 MP a result may have, so the result is 4096×4096 px, the same proportions; the plugin scales it to the layer.';

it('an 8000×8000 JPEG of a few hundred bytes: the models get a copy shrunk by 8 at decode, the results are 4096×4096, and the details say so', { timeout: 180_000 }, async () => {
  const jpeg = await headerOnlyJpeg(8000, 8000);
  expect(jpeg.byteLength).toBeLessThan(400);
  expect(DECODE_DEFAULTS.maxOutputPixels).toBe(4096 * 4096);
  const out = await runPix2PixZero({ image: jpeg, edit: settings(false), model: MODEL_NAME, bankCount: 4 }, context());
  // 8000 → 128 (the working size's pixels): libjpeg decodes at 1/8 in the DCT; no stage needed the
  // 4096×4096 original (no blend, no alpha), so it was never decoded.
  expect(out.details.decode).toEqual({ working: { kind: 'shrink-on-load', factor: 8 }, output: null });
  expect(out.details.workingSize).toEqual({ width: 128, height: 128 });
  expect(out.outputs.map((o) => [o.role, o.width, o.height])).toEqual([['image', 4096, 4096], ['mask', 4096, 4096]]);
  expect(out.report?.scaledFrom).toEqual({ width: 8000, height: 8000 });
  expect(out.report?.notes?.[0]).toBe(NOTE);
  const image = await pixels(out.outputs[0]!.png);
  expect([image.width, image.height]).toEqual([4096, 4096]);
});

it('with the blend on, the 4096×4096 original is decoded (streamed) and kept wherever the mask is 0', { timeout: 180_000 }, async () => {
  const out = await runPix2PixZero({ image: await headerOnlyJpeg(8000, 8000), edit: settings(true), model: MODEL_NAME, bankCount: 4 }, context());
  expect(out.details.decode).toEqual({ working: { kind: 'shrink-on-load', factor: 8 }, output: { kind: 'streamed' } });
  expect(out.outputs.map((o) => [o.role, o.width, o.height])).toEqual([['image', 4096, 4096], ['mask', 4096, 4096]]);
  expect(out.report?.notes?.[0]).toBe(NOTE);
  const image = await pixels(out.outputs[0]!.png);
  const mask = await pixels(out.outputs[1]!.png);
  let kept = 0;
  for (let p = 0; p < 4096 * 4096; p += 97) {
    if (mask.data[p * mask.channels] !== 0) continue;
    kept += 1;
    // The empty scan decodes to mid-grey.
    for (let c = 0; c < 3; c++) expect(Math.abs(image.data[p * image.channels + c]! - 128)).toBeLessThanOrEqual(1);
  }
  expect(kept).toBeGreaterThan(0);
});

it('within the budget nothing changes: one decode at the file\'s size serves the models and the results', async () => {
  const out = await runPix2PixZero({ image: await headerOnlyJpeg(300, 200), edit: settings(true), model: MODEL_NAME, bankCount: 4 }, context());
  expect(out.details.decode).toEqual({ working: { kind: 'full' }, output: { kind: 'full' } });
  expect(out.outputs.map((o) => [o.width, o.height])).toEqual([[300, 200], [300, 200]]);
  expect(out.report?.scaledFrom).toBeUndefined();
});
