// Registration of a trained generator: onnxruntime checks it against the runtime's contract and
// PyTorch's check pair before anything is installed; the installed folder is what the preview
// registry finds for the direction; a generator already installed for it is replaced in place.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { P2pzError } from '../../shared/protocol/index.js';
import { generatorFolderName, registerGenerator } from '../../daemon/distill/register.js';
import { GraphBuilder, attr } from '../../daemon/onnx/graph/builder.js';
import { writeTinyImg2Img } from '../../daemon/onnx/tiny/img2img.js';
import { encodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { lookupGanGenerator } from '../../daemon/pipeline/preview-registry.js';
import { SessionCache } from '../../daemon/worker/sessions.js';

let tmp = '';
let runDir = '';
let modelsDir = '';

async function writeRun(meta: unknown, generator: (path: string) => Promise<void> = (p) => writeTinyImg2Img(p, { seed: 4, channels: 4 })): Promise<void> {
  await rm(runDir, { recursive: true, force: true });
  await mkdir(runDir, { recursive: true });
  await generator(join(runDir, 'generator.onnx'));
  await writeFile(join(runDir, 'meta.json'), JSON.stringify(meta));
}

/** The check pair as train.py writes it, with the output computed here by onnxruntime (+ `offset`). */
async function writeCheck(offset = 0): Promise<void> {
  const [h, w] = [7, 13];
  const x = Float32Array.from({ length: 3 * h * w }, (_, i) => Math.cos(i));
  const session = await ort.InferenceSession.create(join(runDir, 'generator.onnx'));
  const y = (await session.run({ image: new ort.Tensor('float32', x, [1, 3, h, w]) }))['output_image']?.data as Float32Array;
  await session.release();
  await mkdir(join(runDir, 'export-check'), { recursive: true });
  await writeFile(join(runDir, 'export-check/input.npy'), encodeNpy(x, [1, 3, h, w]));
  await writeFile(join(runDir, 'export-check/output.npy'), encodeNpy(y.map((v) => v + offset), [1, 3, h, w]));
}

async function rejection(): Promise<P2pzError> {
  const err = await registerGenerator(runDir, modelsDir).catch((e: unknown) => e);
  if (!(err instanceof P2pzError)) throw new Error(`expected a P2pzError, got ${String(err)}`);
  return err;
}

const registry = () => new SessionCache({ modelsDir, executionProviders: ['cpu'] });
const META = { v: 1, source: 'cat', target: 'dog', size: 256 };

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'p2pz-distill-register-'));
  runDir = join(tmp, 'run');
});
beforeEach(async () => {
  modelsDir = join(tmp, `models-${Math.random().toString(36).slice(2)}`);
  await mkdir(modelsDir);
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('registerGenerator', () => {
  it('installs a generator that fits as gan/<source>-<target>, found by the preview registry', async () => {
    await writeRun(META);
    await writeCheck();
    const r = await registerGenerator(runDir, modelsDir);
    expect(r).toMatchObject({ name: 'cat-dog', replaced: false, checked: { width: 256, height: 192 } });
    expect(r.maxAbsDiff).toBeLessThanOrEqual(1e-6);
    const found = await lookupGanGenerator(registry(), 'Cat', 'dog');
    expect(found?.name).toBe('cat-dog');
    expect(found?.meta).toEqual(META);
    expect(await readFile(join(modelsDir, 'gan/cat-dog/generator.onnx'))).toEqual(await readFile(join(runDir, 'generator.onnx')));
    // Nothing staged is left behind.
    expect((await readdir(modelsDir)).sort()).toEqual(['gan']);
  });

  it('refuses a generator that differs from PyTorch on the check pair, installing nothing', async () => {
    await writeRun(META);
    await writeCheck(0.01);
    const err = await rejection();
    expect(err.code).toBe('E_MODEL_INVALID');
    expect(err.message).toMatch(/differs from PyTorch by 1\.0\de-2/);
    expect(await readdir(join(modelsDir, 'gan'))).toEqual([]);
    expect(await readdir(modelsDir)).toEqual(['gan']);
  });

  it('refuses a generator whose output is not the input\'s size', async () => {
    await writeRun(META, async (path) => {
      const b = new GraphBuilder({ seed: 0, graphName: 'halves' });
      const x = b.input('image', 'float32', [1, 3, 'height', 'width']);
      const y = b.op('AveragePool', [x], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) });
      b.output(y, 'output_image', 'float32', [1, 3, 'h2', 'w2']);
      await b.write(path, { weights: 'inline' });
    });
    const err = await rejection();
    expect(err.code).toBe('E_MODEL_INVALID');
    expect(err.message).toContain('at 256×192 it returned [1,3,96,128], not [1,3,192,256]');
    expect(await lookupGanGenerator(registry(), 'cat', 'dog')).toBeNull();
  });

  it('refuses an invalid meta.json and a run folder without a generator', async () => {
    await writeRun({ ...META, size: 4 });
    const bad = await rejection();
    expect(bad.code).toBe('E_MODEL_INVALID');
    expect(bad.message).toContain('meta.json size');
    await rm(join(runDir, 'generator.onnx'));
    await writeFile(join(runDir, 'meta.json'), JSON.stringify(META));
    const missing = await rejection();
    expect(missing.code).toBe('E_BAD_REQUEST');
    expect(missing.message).toContain('no generator.onnx');
  });

  it('replaces the generator installed for the direction, under any folder name', async () => {
    await mkdir(join(modelsDir, 'gan/my-old-one'), { recursive: true });
    await writeTinyImg2Img(join(modelsDir, 'gan/my-old-one/generator.onnx'), { seed: 9, channels: 2 });
    await writeFile(join(modelsDir, 'gan/my-old-one/meta.json'), JSON.stringify({ ...META, target: 'DOG' }));
    await writeRun(META);
    const r = await registerGenerator(runDir, modelsDir);
    expect(r).toMatchObject({ name: 'cat-dog', replaced: true });
    expect(await readdir(join(modelsDir, 'gan'))).toEqual(['cat-dog']);
    expect(await readFile(join(modelsDir, 'gan/cat-dog/generator.onnx'))).toEqual(await readFile(join(runDir, 'generator.onnx')));
  });

  it('gives a replacement a new file path, so that a running worker\'s session cache loads it', async () => {
    await writeRun(META);
    await registerGenerator(runDir, modelsDir);
    const sessions = registry();
    const before = await lookupGanGenerator(sessions, 'cat', 'dog');
    const oldSession = await sessions.get(before!.modelPath);
    await writeRun(META, (p) => writeTinyImg2Img(p, { seed: 5, channels: 3 }));
    const r = await registerGenerator(runDir, modelsDir);
    expect(r).toMatchObject({ name: 'cat-dog.2', replaced: true });
    const after = await lookupGanGenerator(sessions, 'cat', 'dog');
    expect(after?.modelPath).not.toBe(before?.modelPath);
    // The cache, asked for the generator the registry now names, loads the new file.
    expect(await sessions.get(after!.modelPath)).not.toBe(oldSession);
    const third = await registerGenerator(runDir, modelsDir);
    expect(third.name).toBe('cat-dog');
    expect(await readdir(join(modelsDir, 'gan'))).toEqual(['cat-dog']);
    await sessions.releaseAll();
  });

  it('names folders after the normalized concepts', () => {
    expect(generatorFolderName('Golden  Retriever', "jack-o'-lantern")).toBe('golden_retriever-jack_o_lantern');
  });
});
