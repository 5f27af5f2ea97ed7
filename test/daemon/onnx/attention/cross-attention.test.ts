// Cross-attention maps: found by ancestry (keys from encoder_hidden_states, queries from sample),
// not by name; exposed as attn_map_NN [B, heads, hw, T] in both exporter layouts; the UNet's own
// output stays bit-identical.
import { beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { CROSS_ATTENTION_IO } from '../../../../daemon/onnx/attention/cross-attention.js';
import { crossAttentionModel, guidanceGradientModel, unetInputDims } from '../../../../daemon/onnx/attention/guidance-graph.js';
import { DataType, type NodeProto, type TensorProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeGraph, makeModel, makeNode, makeTensor, valueInfo } from '../../../../daemon/onnx/graph/nodes.js';
import { decodeModel, encodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { foldStaticShapes } from '../../../../daemon/onnx/graph/fold.js';
import { uniform } from '../autodiff/op-harness.js';
import { guidanceLoss, tinyUNetFolder, unetFeeds, type Flavour } from './tiny-unet.js';

/** A two-head attention block in the [B, heads, hw, T] layout: a cross-attention whose node name
 *  says nothing, and a self-attention misleadingly named attn2. */
function splitHeadsAttention(B: number, hw: number, T: number): ReturnType<typeof makeModel> {
  const C = 4;
  const H = 2;
  const d = 3;
  const D = 5;
  const inits: TensorProto[] = [];
  const w = (name: string, dims: number[], seed: number): string => {
    inits.push(makeTensor(name, DataType.FLOAT, dims, uniform(seed, dims.reduce((a, b) => a * b, 1))));
    return name;
  };
  const ints = (name: string, v: number[]): string => {
    inits.push(makeTensor(name, DataType.INT64, [v.length], v));
    return name;
  };
  const n: NodeProto[] = [];
  const node = (op: string, ins: string[], out: string, attrs: Record<string, number[] | number> = {}, name = out): string => {
    n.push(makeNode(op, ins, [out], name, attrs));
    return out;
  };
  const x = node('Transpose', [node('Reshape', ['sample', ints('s0', [B, C, hw])], 'xs')], 'x', { perm: [0, 2, 1] });
  const heads = (t: string, len: number, tag: string, perm: number[]): string =>
    node('Transpose', [node('Reshape', [t, ints(`${tag}_s`, [B, len, H, d])], `${tag}_r`)], `${tag}_t`, { perm });
  const q = heads(node('MatMul', [x, w('Wq', [C, H * d], 1)], 'q0'), hw, 'q', [0, 2, 1, 3]);
  const k = heads(node('MatMul', ['encoder_hidden_states', w('Wk', [D, H * d], 2)], 'k0'), T, 'k', [0, 2, 3, 1]);
  const v = heads(node('MatMul', ['encoder_hidden_states', w('Wv', [D, H * d], 3)], 'v0'), T, 'v', [0, 2, 1, 3]);
  const scale = w('scale', [], 4);
  const pc = node('Softmax', [node('Mul', [node('MatMul', [q, k], 'qk'), scale], 'qks')], 'pc', { axis: -1 }, '/blk/attn_a/Softmax');
  const ks = heads(node('MatMul', [x, w('Wk2', [C, H * d], 5)], 'ks0'), hw, 'ks', [0, 2, 3, 1]);
  const vs = heads(node('MatMul', [x, w('Wv2', [C, H * d], 6)], 'vs0'), hw, 'vs', [0, 2, 1, 3]);
  const ps = node('Softmax', [node('Mul', [node('MatMul', [q, ks], 'qks2'), scale], 'qks2s')], 'ps', { axis: -1 }, '/blk/attn2/Softmax');
  node('Add', [node('MatMul', [pc, v], 'oc'), node('MatMul', [ps, vs], 'os')], 'out_sample');
  return makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: makeGraph({
      name: 'attention', node: n, initializer: inits,
      input: [valueInfo('sample', DataType.FLOAT, ['batch', C, 'h', 'w']), valueInfo('timestep', DataType.FLOAT, []), valueInfo('encoder_hidden_states', DataType.FLOAT, ['batch', 'seq', D])],
      output: [valueInfo('out_sample', DataType.FLOAT, ['batch', H, 'hw', d])],
    }),
  });
}

describe('cross-attention in the [B, heads, hw, T] layout', () => {
  const B = 2;
  const model = splitHeadsAttention(B, 4, 77);
  const size = { batch: B, latentHeight: 2, latentWidth: 2 };
  const feeds = (): Record<string, ort.Tensor> => ({
    sample: new ort.Tensor('float32', Float32Array.from(uniform(10, B * 4 * 4)), [B, 4, 2, 2]),
    timestep: new ort.Tensor('float32', Float32Array.from([1]), []),
    encoder_hidden_states: new ort.Tensor('float32', Float32Array.from(uniform(11, B * 77 * 5)), [B, 77, 5]),
  });

  it('finds the cross-attention by ancestry, not by name, and exposes it as [B, heads, hw, T]', async () => {
    const x = crossAttentionModel(model, size);
    expect(x.sites.map((s) => [s.node, s.layout, s.heads, s.queries, s.tokens])).toEqual([['/blk/attn_a/Softmax', 'batch_heads', 2, 4, 77]]);
    const meta = JSON.parse(x.model.metadataProps.find((p) => p.key === CROSS_ATTENTION_IO.metadataKey)?.value ?? '[]') as { output: string; node: string }[];
    expect(meta).toEqual([expect.objectContaining({ output: 'attn_map_00', node: '/blk/attn_a/Softmax' })]);
    const withProbs = makeModel({ ...model, graph: makeGraph({ ...model.graph, output: [...model.graph.output, valueInfo('pc', DataType.FLOAT, [B, 2, 4, 77])] }) });
    const r = await (await ort.InferenceSession.create(encodeModel(x.model))).run(feeds());
    const ref = await (await ort.InferenceSession.create(encodeModel(withProbs))).run(feeds());
    expect((r.attn_map_00 as ort.Tensor).dims).toEqual([B, 2, 4, 77]);
    expect((r.attn_map_00 as ort.Tensor).data).toEqual((ref.pc as ort.Tensor).data);
    expect((r.out_sample as ort.Tensor).data).toEqual((ref.out_sample as ort.Tensor).data);
  });

  it('differentiates the loss through the split-heads layout (finite differences, float32)', async () => {
    const g = guidanceGradientModel(model, size);
    const session = await ort.InferenceSession.create(encodeModel(g.model));
    const xs = await ort.InferenceSession.create(encodeModel(crossAttentionModel(model, size).model));
    const ref = Float32Array.from(uniform(12, 2 * 4 * 77, 0, 2 / 77));
    const f = feeds();
    const out = await session.run({ ...f, attn_ref_00: new ort.Tensor('float32', ref, [2, 4, 77]) });
    const grad = (out.grad_sample as ort.Tensor).data as Float32Array;
    const sample = f.sample?.data as Float32Array;
    const h = 3e-2;
    let err = 0;
    let scale = 0;
    for (let j = 0; j < sample.length; j++) {
      const at = async (delta: number): Promise<number> => {
        const s = Float32Array.from(sample);
        s[j] = (s[j] ?? 0) + delta;
        const r = await xs.run({ ...f, sample: new ort.Tensor('float32', s, [B, 4, 2, 2]) });
        return guidanceLoss([r.attn_map_00 as ort.Tensor], [ref]);
      };
      const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
      err = Math.max(err, Math.abs(numeric - (grad[j] ?? 0)));
      scale = Math.max(scale, Math.abs(numeric));
    }
    expect(scale).toBeGreaterThan(0);
    expect(err / scale).toBeLessThan(5e-3);
  });
});

/** Single-head attention written with Einsum, as early diffusers exports did. */
function einsumAttention(B: number, hw: number, T: number): ReturnType<typeof makeModel> {
  const C = 4;
  const D = 5;
  const d = 3;
  const inits = [
    makeTensor('s0', DataType.INT64, [3], [B, C, hw]),
    ...[['Wq', [C, d]], ['Wk', [D, d]], ['Wv', [D, d]], ['Wk2', [C, d]]].map(([name, dims], i) =>
      makeTensor(name as string, DataType.FLOAT, dims as number[], uniform(40 + i, (dims as number[]).reduce((a, b) => a * b, 1)))),
    makeTensor('scale', DataType.FLOAT, [], [0.6]),
  ];
  const nodes = [
    makeNode('Reshape', ['sample', 's0'], ['xs'], 'r'),
    makeNode('Transpose', ['xs'], ['x'], 't', { perm: [0, 2, 1] }),
    makeNode('MatMul', ['x', 'Wq'], ['q'], 'mq'),
    makeNode('MatMul', ['encoder_hidden_states', 'Wk'], ['k'], 'mk'),
    makeNode('MatMul', ['encoder_hidden_states', 'Wv'], ['v'], 'mv'),
    makeNode('MatMul', ['x', 'Wk2'], ['k2'], 'mk2'),
    makeNode('Einsum', ['q', 'k'], ['qk'], 'e1', { equation: 'b i d, b j d -> b i j' }),
    makeNode('Mul', ['qk', 'scale'], ['qks'], 'sc'),
    makeNode('Softmax', ['qks'], ['p'], '/attn_x/Softmax', { axis: -1 }),
    makeNode('Einsum', ['q', 'k2'], ['qk2'], 'e2', { equation: 'b i d, b j d -> b i j' }),
    makeNode('Softmax', ['qk2'], ['p2'], '/attn_self/Softmax', { axis: -1 }),
    makeNode('Einsum', ['p', 'v'], ['o'], 'e3', { equation: 'b i j, b j d -> b i d' }),
    makeNode('Einsum', ['p2', 'x'], ['o2'], 'e4', { equation: 'b i j, b j d -> b i d' }),
    makeNode('Concat', ['o', 'o2'], ['out_sample'], 'cat', { axis: -1 }),
  ];
  return makeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 14 }],
    graph: makeGraph({
      name: 'einsum-attention', node: nodes, initializer: inits,
      input: [valueInfo('sample', DataType.FLOAT, ['batch', C, 'h', 'w']), valueInfo('timestep', DataType.INT64, ['batch']), valueInfo('encoder_hidden_states', DataType.FLOAT, ['batch', T, D])],
      output: [valueInfo('out_sample', DataType.FLOAT, ['batch', hw, d + C])],
    }),
  });
}

describe('cross-attention written with Einsum', () => {
  it('is found and differentiated (finite differences, float32)', async () => {
    const B = 2;
    const model = einsumAttention(B, 4, 77);
    const size = { batch: B, latentHeight: 2, latentWidth: 2 };
    const g = guidanceGradientModel(model, size);
    expect(g.sites.map((s) => [s.node, s.layout, s.heads])).toEqual([['/attn_x/Softmax', 'batch_by_heads', 1]]);
    const session = await ort.InferenceSession.create(encodeModel(g.model));
    const xs = await ort.InferenceSession.create(encodeModel(crossAttentionModel(model, size).model));
    const f: Record<string, ort.Tensor> = {
      sample: new ort.Tensor('float32', Float32Array.from(uniform(50, B * 16)), [B, 4, 2, 2]),
      timestep: new ort.Tensor('int64', BigInt64Array.from([1n, 1n]), [B]),
      encoder_hidden_states: new ort.Tensor('float32', Float32Array.from(uniform(51, B * 77 * 5)), [B, 77, 5]),
    };
    const ref = Float32Array.from(uniform(52, 4 * 77, 0, 2 / 77));
    const grad = (await session.run({ ...f, attn_ref_00: new ort.Tensor('float32', ref, [1, 4, 77]) })).grad_sample as ort.Tensor;
    const sample = f.sample?.data as Float32Array;
    let err = 0;
    let scale = 0;
    for (let j = 0; j < sample.length; j++) {
      const at = async (delta: number): Promise<number> => {
        const s = Float32Array.from(sample);
        s[j] = (s[j] ?? 0) + delta;
        return guidanceLoss([(await xs.run({ ...f, sample: new ort.Tensor('float32', s, [B, 4, 2, 2]) })).attn_map_00 as ort.Tensor], [ref]);
      };
      const numeric = ((await at(3e-2)) - (await at(-3e-2))) / 6e-2;
      err = Math.max(err, Math.abs(numeric - ((grad.data as Float32Array)[j] ?? 0)));
      scale = Math.max(scale, Math.abs(numeric));
    }
    expect(scale).toBeGreaterThan(0);
    expect(err / scale).toBeLessThan(5e-3);
  });
});

for (const flavour of ['opset14', 'opset17'] as Flavour[]) {
  describe(`cross-attention maps of the tiny UNet (${flavour})`, () => {
    let dir: string;
    let names: readonly string[];
    beforeAll(async () => {
      const t = await tinyUNetFolder(flavour, 1);
      dir = t.dir;
      names = t.info.crossAttentionSoftmaxNames;
    });

    it('exposes every attn2 Softmax in graph order and keeps out_sample bit-identical', async () => {
      const original = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
      const size = { batch: 2, latentHeight: 8, latentWidth: 8 };
      const x = crossAttentionModel(original, size);
      expect(x.sites.map((s) => s.node)).toEqual(names);
      expect(x.model.graph.node.some((nd) => nd.opType === 'Shape')).toBe(false);
      // Derived graphs live next to the original so that the weights reference resolves.
      const path = join(dir, 'unet/xattn-test.onnx');
      const foldedPath = join(dir, 'unet/folded-test.onnx');
      await writeFile(path, encodeModel(x.model));
      await writeFile(foldedPath, encodeModel(foldStaticShapes(original, unetInputDims(original, size)).model));
      const feeds = unetFeeds(flavour, 2, 8, 8, 4);
      const run = async (p: string, level: 'disabled' | 'extended' | 'all'): Promise<ort.InferenceSession.OnnxValueMapType> =>
        (await ort.InferenceSession.create(p, { graphOptimizationLevel: level })).run(feeds);
      const bytes = (r: ort.InferenceSession.OnnxValueMapType): Buffer => Buffer.from(((r.out_sample as ort.Tensor).data as Float32Array).buffer);
      // Up to onnxruntime's 'extended' level the static graph runs the original's kernels: identical bits.
      for (const level of ['disabled', 'extended'] as const) {
        expect(bytes(await run(path, level)).equals(bytes(await run(join(dir, 'unet/model.onnx'), level))), level).toBe(true);
      }
      // At 'all' the CPU provider picks blocked (NCHWc) convolutions once shapes are static, so the
      // reference is the same static graph without the map outputs: exposing the maps changes nothing.
      const b = await run(path, 'all');
      expect(bytes(b).equals(bytes(await run(foldedPath, 'all')))).toBe(true);
      for (const s of x.sites) {
        const m = b[`attn_map_${String(s.index).padStart(2, '0')}`] as ort.Tensor;
        expect(m.dims).toEqual([2, s.heads, s.queries, 77]);
        const data = m.data as Float32Array;
        // Each row is a distribution over the 77 tokens.
        for (let r = 0; r < data.length / 77; r += 37) {
          let sum = 0;
          for (let t = 0; t < 77; t++) sum += data[r * 77 + t] ?? 0;
          expect(sum).toBeCloseTo(1, 5);
        }
      }
    });
  });
}
