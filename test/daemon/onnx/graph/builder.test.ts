import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILDER_DEFAULTS, GraphBuilder, attr } from '../../../../daemon/onnx/graph/builder.js';
import { externalDataRefs, graphOf, readModel } from '../../../../daemon/onnx/graph/model-io.js';
import { NormalStream, tensorSeed } from '../../../../daemon/onnx/graph/prng.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-builder-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** y = x·W + b with W [n, 3] (n·3 floats) and a tiny bias; W is larger than one streaming chunk when
 *  n·3 > chunkElements. */
function linearModel(n: number, seed = 9): GraphBuilder {
  const b = new GraphBuilder({ seed });
  const x = b.input('x', 'float32', ['batch', n]);
  const y = b.scope('proj', () => {
    const w = b.param('weight', [n, 3], { kind: 'normal', std: 1 / Math.sqrt(n) });
    const bias = b.param('bias', [3], { kind: 'constant', value: 0.5 });
    return b.op('Add', [b.op('MatMul', [x, w]), bias]);
  });
  b.output(y, 'y', 'float32', ['batch', 3]);
  return b;
}

describe('GraphBuilder', () => {
  it('names nodes, outputs and parameters like the PyTorch exporter', async () => {
    const b = new GraphBuilder({ seed: 1 });
    const x = b.input('x', 'float32', [1, 4]);
    const out = b.scope('down_blocks.0', () => b.scope('attn2', () => {
      const s1 = b.op('Softmax', [x], { axis: attr.i(-1) });
      return b.op('Softmax', [s1], { axis: attr.i(-1) });
    }));
    expect(out).toBe('/down_blocks.0/attn2/Softmax_1_output_0');
    expect(b.scope('a', () => b.param('weight', [2], { kind: 'constant', value: 1 }))).toBe('a.weight');
    expect(() => b.scope('a', () => b.param('weight', [2], { kind: 'constant', value: 1 }))).toThrow(/duplicate/);
    b.output(out, 'y', 'float32');
    await b.write(join(dir, 'names.onnx'), { weights: 'inline' });
    const g = graphOf(await readModel(join(dir, 'names.onnx')));
    expect(g.node?.map((n) => n.name)).toEqual(['/down_blocks.0/attn2/Softmax', '/down_blocks.0/attn2/Softmax_1', '/Identity']);
  });

  it('keeps small tensors inline and streams large ones, aligned, into one weights file', async () => {
    const n = 100_000; // 1.2 MB weight: past the 1 MiB large-tensor alignment
    await linearModel(n).write(join(dir, 'ext', 'model.onnx'));
    const model = await readModel(join(dir, 'ext', 'model.onnx'));
    const refs = externalDataRefs(model);
    expect(refs).toEqual([{ tensor: 'proj.weight', location: BUILDER_DEFAULTS.weightsLocation, offset: 0, length: n * 3 * 4 }]);
    const bias = graphOf(model).initializer?.find((t) => t.name === 'proj.bias');
    expect(Array.from(new Float32Array(new Uint8Array(bias!.rawData!).buffer))).toEqual([0.5, 0.5, 0.5]);
    expect((await stat(join(dir, 'ext', BUILDER_DEFAULTS.weightsLocation))).size).toBe(n * 3 * 4);

    // Two large tensors: the second starts at the next 64 KiB boundary.
    const b = new GraphBuilder({ seed: 2 });
    const x = b.input('x', 'float32', [1, 300_000]);
    const w1 = b.tensor('w1', [300_000, 1], { kind: 'normal', std: 1 });
    const w2 = b.tensor('w2', [300_000, 1], { kind: 'normal', std: 1 });
    b.output(b.op('Add', [b.op('MatMul', [x, w1]), b.op('MatMul', [x, w2])]), 'y', 'float32');
    await b.write(join(dir, 'two', 'model.onnx'));
    const offsets = externalDataRefs(await readModel(join(dir, 'two', 'model.onnx'))).map((r) => r.offset);
    expect(offsets).toEqual([0, Math.ceil(1_200_000 / 65536) * 65536]);
  });

  it('streams exactly the values of one whole seeded normal draw, across chunk boundaries', async () => {
    const n = Math.ceil((BUILDER_DEFAULTS.chunkElements * 2.5) / 3); // W spans three chunks
    await linearModel(n, 4).write(join(dir, 'chunks', 'model.onnx'));
    const bytes = await readFile(join(dir, 'chunks', BUILDER_DEFAULTS.weightsLocation));
    const streamed = new Float32Array(bytes.buffer, bytes.byteOffset, n * 3);
    const whole = new NormalStream(tensorSeed(4, 'proj.weight')).fill(new Float32Array(n * 3), 0, 1 / Math.sqrt(n));
    expect(Buffer.from(streamed.buffer, streamed.byteOffset, streamed.byteLength).equals(Buffer.from(whole.buffer))).toBe(true);
  });

  it('inline and external copies of a model compute the same thing; sparse-zeros writes zero weights', async () => {
    const n = 512;
    await linearModel(n).write(join(dir, 'inline.onnx'), { weights: 'inline' });
    await linearModel(n).write(join(dir, 'external', 'model.onnx'));
    await linearModel(n).write(join(dir, 'sparse', 'model.onnx'), { fill: 'sparse-zeros' });
    const x = new ort.Tensor('float32', Float32Array.from({ length: 2 * n }, (_, i) => Math.sin(i)), [2, n]);
    const run = async (p: string): Promise<Float32Array> => {
      const s = await ort.InferenceSession.create(p);
      const y = (await s.run({ x })).y!.data as Float32Array;
      await s.release();
      return y;
    };
    const a = await run(join(dir, 'inline.onnx'));
    expect(Array.from(await run(join(dir, 'external', 'model.onnx')))).toEqual(Array.from(a));
    expect(a.some((v) => Math.abs(v - 0.5) > 0.05)).toBe(true);
    // All-zero W: y = bias. (The small bias stays inline and keeps its value.)
    expect(Array.from(await run(join(dir, 'sparse', 'model.onnx')))).toEqual([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
  });

  it('rejects values that do not match the dims', () => {
    const b = new GraphBuilder({ seed: 0 });
    expect(() => b.tensor('t', [2, 2], { kind: 'values', data: new Float32Array(3) })).toThrow(/3 values/);
  });
});
