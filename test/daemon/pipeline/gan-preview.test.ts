// The GAN quick preview in-process, on generated generators: sizes read from the session metadata
// (fixed dims win over meta.size), the result and the preview frame pinned by an independent
// computation, the decoded input reused for the same bytes, cancel at stage boundaries, and coded
// errors for generators that do not fit.
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../../daemon/image/decode.js';
import { encodePng } from '../../../daemon/image/encode.js';
import { GraphBuilder } from '../../../daemon/onnx/graph/builder.js';
import type { Dim, ElemType } from '../../../daemon/onnx/graph/builder.js';
import { generatorWorkingSize, runGanPreview } from '../../../daemon/pipeline/gan-preview.js';
import type { PipelineContext } from '../../../daemon/pipeline/context.js';
import { PreviewInputCache } from '../../../daemon/pipeline/preview-input-cache.js';
import { findGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';
import type { PreviewPixels, Stage } from '../../../shared/protocol/index.js';

let root: string;
let cache: SessionCache;
const W = 90;
const H = 60;
let rgb: Uint8Array;
let png: Uint8Array;

/** y = −x (colours inverted in [-1,1]), with the given input/output element type and dims. */
async function negateGenerator(name: string, meta: object, dims: readonly Dim[], type: ElemType = 'float32'): Promise<void> {
  const dir = join(root, 'gan', name);
  await mkdir(dir, { recursive: true });
  const b = new GraphBuilder({ seed: 0, graphName: 'negate' });
  const x = b.input('pixels', type, dims);
  b.output(b.op('Neg', [x]), 'translated', type, dims);
  await b.write(join(dir, 'generator.onnx'));
  await writeFile(join(dir, 'meta.json'), JSON.stringify({ v: 1, ...meta }));
}

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-gan-preview-')));
  // Fixed 48×32 input: the generator's own size wins over meta.size.
  await negateGenerator('day-night', { source: 'day', target: 'night', size: 512 }, [1, 3, 32, 48]);
  // Dynamic input with a size that is not a multiple of 64: the aspect is kept exactly.
  await negateGenerator('photo-negative', { source: 'photo', target: 'negative', size: 45 }, [1, 3, 'h', 'w']);
  await negateGenerator('int-int', { source: 'int', target: 'int', size: 64 }, [1, 3, 'h', 'w'], 'int32');
  await negateGenerator('gray-gray', { source: 'gray', target: 'gray', size: 64 }, [1, 1, 'h', 'w']);
  cache = new SessionCache({ modelsDir: root, executionProviders: ['cpu'] });
  rgb = new Uint8Array(W * H * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 256;
  png = await encodePng({ width: W, height: H, rgb });
});

afterAll(async () => {
  await cache.releaseAll();
  await rm(root, { recursive: true, force: true });
});

function context(onStage?: (stage: Stage) => void, controller = new AbortController()): PipelineContext & { stages: Stage[]; frames: PreviewPixels[] } {
  const stages: Stage[] = [];
  const frames: PreviewPixels[] = [];
  return {
    models: cache,
    signal: controller.signal,
    progress: (stage, _step, _total, frame) => {
      stages.push(stage);
      if (frame !== undefined) frames.push(frame);
      onStage?.(stage);
    },
    stages,
    frames,
  };
}

/** The input at the working size, as the pipeline resizes it (sharp's Lanczos-3). */
function workingRgb(workW: number, workH: number): Promise<Buffer> {
  return sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).resize(workW, workH, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
}

/** Independent expectation for y = −x: in 8 bits, (−(v/127.5 − 1) + 1)·127.5 = 255 − v, so the result
 *  is the inverted image at the working size, resized back with sharp's Lanczos-3. */
async function expectedInverted(workW: number, workH: number): Promise<Buffer> {
  const small = await workingRgb(workW, workH);
  const inverted = Buffer.from(small.map((v) => 255 - v));
  return sharp(inverted, { raw: { width: workW, height: workH, channels: 3 } }).resize(W, H, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer();
}

describe('runGanPreview', () => {
  it('uses the fixed input size of the generator and returns the input size', async () => {
    const ctx = context();
    const result = await runGanPreview(png, await findGanGenerator(cache, 'day', 'night'), ctx);
    expect(result.engine).toBe('gan');
    expect(ctx.stages).toEqual(['decode', 'load', 'generate', 'generate', 'encode']);
    expect(Object.keys(result.timings).sort()).toEqual(['decode', 'encode', 'frame', 'generate', 'load', 'tensor']);
    // The preview frame, before the PNG: the generator's output at its own 48×32, opaque, i.e. the
    // inverted working-size input (255 − v), computed independently.
    expect(ctx.frames.map((f) => [f.role, f.width, f.height])).toEqual([['result', 48, 32]]);
    const small = await workingRgb(48, 32);
    const expectedFrame = Buffer.alloc(48 * 32 * 4);
    for (let p = 0; p < 48 * 32; p++) expectedFrame.set([255 - (small[p * 3] ?? 0), 255 - (small[p * 3 + 1] ?? 0), 255 - (small[p * 3 + 2] ?? 0), 255], p * 4);
    expect(Buffer.from(ctx.frames[0]?.rgba ?? [])).toEqual(expectedFrame);
    const [out] = result.outputs;
    expect(out).toMatchObject({ role: 'image', width: W, height: H });
    const decoded = await decodeImage(out?.png ?? new Uint8Array());
    expect(decoded.alpha).toBeNull();
    expect(Buffer.from(decoded.rgb)).toEqual(await expectedInverted(48, 32));
  });

  it('keeps the aspect exactly for a size that is not a multiple of 64', async () => {
    expect(generatorWorkingSize(W, H, 45)).toEqual({ width: 45, height: 30 });
    expect(generatorWorkingSize(H, W, 45)).toEqual({ width: 30, height: 45 });
    expect(generatorWorkingSize(W, H, 128)).toEqual({ width: 128, height: 64 }); // 85.3 → 64
    const result = await runGanPreview(png, await findGanGenerator(cache, 'photo', 'negative'), context());
    const decoded = await decodeImage(result.outputs[0]?.png ?? new Uint8Array());
    expect(Buffer.from(decoded.rgb)).toEqual(await expectedInverted(45, 30));
  });

  it('decodes an image once: the next preview of the same bytes reuses its pixels and tensor', async () => {
    const inputs = new PreviewInputCache();
    const generator = await findGanGenerator(cache, 'day', 'night');
    const first = await runGanPreview(png, generator, context(), inputs);
    expect([inputs.hits, inputs.misses]).toEqual([0, 1]);
    const again = context();
    const second = await runGanPreview(Buffer.from(png), generator, again, inputs);
    expect([inputs.hits, inputs.misses]).toEqual([1, 1]);
    expect(second.outputs[0]?.png).toEqual(first.outputs[0]?.png);
    expect(again.frames).toHaveLength(1);
    // Other bytes (the same pixels at another compression) are another entry; another working size
    // adds its tensor to the same entry.
    await runGanPreview(await encodePng({ width: W, height: H, rgb }, { compressionLevel: 9 }), generator, context(), inputs);
    expect([inputs.hits, inputs.misses]).toEqual([1, 2]);
    const resized = await runGanPreview(png, await findGanGenerator(cache, 'photo', 'negative'), context(), inputs);
    expect([inputs.hits, inputs.misses]).toEqual([2, 2]);
    expect(Buffer.from((await decodeImage(resized.outputs[0]?.png ?? new Uint8Array())).rgb)).toEqual(await expectedInverted(45, 30));
  });

  it('stops at the next stage boundary once cancelled, before generating', async () => {
    const controller = new AbortController();
    const ctx = context((stage) => {
      if (stage === 'load') controller.abort();
    }, controller);
    await expect(runGanPreview(png, await findGanGenerator(cache, 'day', 'night'), ctx)).rejects.toThrow();
    expect(ctx.stages).toEqual(['decode', 'load']);
  });

  it('refuses generators that do not take a float32 RGB image', async () => {
    await expect(runGanPreview(png, await findGanGenerator(cache, 'int', 'int'), context())).rejects.toMatchObject({
      code: 'E_MODEL_INVALID',
      message: expect.stringContaining('must be float32, not int32/int32'),
    });
    await expect(runGanPreview(png, await findGanGenerator(cache, 'gray', 'gray'), context())).rejects.toMatchObject({
      code: 'E_MODEL_INVALID',
      message: expect.stringContaining('input must be an image [1,3,H,W]'),
    });
  });
});
