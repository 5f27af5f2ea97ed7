import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../../daemon/onnx/graph/builder.js';
import { producers } from '../../../../daemon/onnx/graph/graph-index.js';
import { addOutputs } from './graph-edits.js';
import {
  checkExternalData, decodeModel, externalDataRefs, graphOf, readModel, readTensorData, writeDerivedModel,
} from '../../../../daemon/onnx/graph/model-io.js';
import { NormalStream, tensorSeed } from '../../../../daemon/onnx/graph/prng.js';
import { P2pzError } from '../../../../shared/protocol/errors.js';

let dir: string;
let modelPath: string;
let weightsPath: string;

/** x [B,16] → MatMul W1 [16,64] → Softmax → MatMul W2 [64,8] → y. Both weights go external. */
async function writeModel(path: string): Promise<void> {
  const b = new GraphBuilder({ seed: 11 });
  const x = b.input('x', 'float32', ['batch', 16]);
  const h = b.scope('attn', () => {
    const w1 = b.param('w1', [16, 64], { kind: 'normal', std: 0.5 });
    return b.op('Softmax', [b.op('MatMul', [x, w1])], { axis: { i: -1 } });
  });
  const w2 = b.param('w2', [64, 8], { kind: 'normal', std: 1 });
  b.output(b.op('MatMul', [h, w2]), 'y', 'float32', ['batch', 8]);
  await b.write(path);
}

function input(): Record<string, ort.Tensor> {
  const x = new Float32Array(2 * 16).map((_, i) => Math.cos(i));
  return { x: new ort.Tensor('float32', x, [2, 16]) };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-model-io-'));
  modelPath = join(dir, 'model.onnx');
  weightsPath = join(dir, 'model.onnx_data');
  await writeModel(modelPath);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readModel', () => {
  it('decodes the graph without the weights file (it is never opened)', async () => {
    const aside = `${weightsPath}.aside`;
    await rename(weightsPath, aside);
    try {
      const model = await readModel(modelPath);
      const refs = externalDataRefs(model);
      expect(refs.map((r) => r.tensor)).toEqual(['attn.w1', 'w2']);
      expect(refs[0]).toMatchObject({ location: 'model.onnx_data', offset: 0, length: 16 * 64 * 4 });
      expect(refs[1]).toMatchObject({ location: 'model.onnx_data', offset: 16 * 64 * 4, length: 64 * 8 * 4 });
      for (const t of graphOf(model).initializer ?? []) expect(t.rawData?.length ?? 0).toBe(0);
      await expect(checkExternalData(model, modelPath)).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
    } finally {
      await rename(aside, weightsPath);
    }
  });

  it('reports a missing file and garbage with model error codes', async () => {
    await expect(readModel(join(dir, 'nope.onnx'))).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
    const bad = join(dir, 'bad.onnx');
    await writeFile(bad, Buffer.from([0xff, 0xff, 0xff, 0x07, 0x01]));
    const err = await readModel(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_MODEL_INVALID');
  });

  it('checkExternalData accepts a complete model and rejects a truncated or escaping one', async () => {
    const model = await readModel(modelPath);
    await expect(checkExternalData(model, modelPath)).resolves.toBeUndefined();
    const short = decodeModel(await readFile(modelPath));
    const t = graphOf(short).initializer?.[1];
    t!.externalData = t!.externalData!.map((e) => (e.key === 'offset' ? { key: 'offset', value: '999999' } : e));
    await expect(checkExternalData(short, modelPath)).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
    t!.externalData = t!.externalData!.map((e) => (e.key === 'location' ? { key: 'location', value: '../x.bin' } : e));
    await expect(checkExternalData(short, modelPath)).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
  });
});

describe('readTensorData', () => {
  it("reads one external tensor's byte range: the seeded values of that tensor", async () => {
    const model = await readModel(modelPath);
    const w2 = graphOf(model).initializer!.find((t) => t.name === 'w2')!;
    const bytes = await readTensorData(modelPath, w2);
    const expected = new NormalStream(tensorSeed(11, 'w2')).fill(new Float32Array(64 * 8));
    expect(Buffer.from(bytes).equals(Buffer.from(expected.buffer))).toBe(true);
    const truncated = { ...w2, externalData: w2.externalData!.map((e) => (e.key === 'offset' ? { key: 'offset', value: '1000000' } : e)) };
    await expect(readTensorData(modelPath, truncated)).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
  });
});

describe('writeDerivedModel', () => {
  it('adds an intermediate output, shares the weights untouched, and keeps y bit-identical', async () => {
    const weightsBefore = await readFile(weightsPath);
    const statBefore = await stat(weightsPath);
    const originalBefore = await readFile(modelPath);

    const base = await ort.InferenceSession.create(modelPath);
    const y0 = (await base.run(input())).y!.data as Float32Array;
    await base.release();

    const model = await readModel(modelPath);
    const softmax = [...producers(graphOf(model)).entries()].find(([, n]) => n.opType === 'Softmax')![0];
    expect(addOutputs(graphOf(model), [{ name: softmax }])).toEqual([softmax]);
    const derivedPath = join(dir, 'model.with-softmax.onnx');
    await writeDerivedModel(model, modelPath, derivedPath);

    const derived = await ort.InferenceSession.create(derivedPath);
    expect(derived.outputNames).toEqual(['y', softmax]);
    const out = await derived.run(input());
    await derived.release();
    expect(Buffer.from((out.y!.data as Float32Array).buffer).equals(Buffer.from(y0.buffer))).toBe(true);
    const p = out[softmax]!.data as Float32Array;
    expect(out[softmax]!.dims).toEqual([2, 64]);
    expect(p.slice(0, 64).reduce((a, v) => a + v, 0)).toBeCloseTo(1, 5);

    // One weights file, same bytes, not rewritten; the original graph file untouched.
    expect(externalDataRefs(await readModel(derivedPath))).toEqual(externalDataRefs(await readModel(modelPath)));
    expect((await readFile(weightsPath)).equals(weightsBefore)).toBe(true);
    expect((await stat(weightsPath)).mtimeMs).toBe(statBefore.mtimeMs);
    expect((await readFile(modelPath)).equals(originalBefore)).toBe(true);
  });

  it('rewrites locations for a derived model in a parent folder, and refuses one that cannot reach the weights', async () => {
    const subPath = join(dir, 'unet', 'model.onnx');
    await writeModel(subPath);
    const model = await readModel(subPath);
    const upPath = join(dir, 'unet.derived.onnx');
    await writeDerivedModel(model, subPath, upPath);
    expect(externalDataRefs(await readModel(upPath)).map((r) => r.location)).toEqual(['unet/model.onnx_data', 'unet/model.onnx_data']);
    const [a, b] = [await ort.InferenceSession.create(subPath), await ort.InferenceSession.create(upPath)];
    const [ya, yb] = [(await a.run(input())).y!.data as Float32Array, (await b.run(input())).y!.data as Float32Array];
    expect(Buffer.from(yb.buffer).equals(Buffer.from(ya.buffer))).toBe(true);
    await Promise.all([a.release(), b.release()]);

    await expect(writeDerivedModel(model, subPath, join(dir, 'vae', 'model.onnx'))).rejects.toThrow(/outside its folder/);
    await expect(writeDerivedModel(model, subPath, subPath)).rejects.toThrow(/overwrite/);
  });
});
