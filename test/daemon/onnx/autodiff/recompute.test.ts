// Recomputed attention probabilities in the guidance gradient graph (autodiff/recompute.ts), on the
// tiny UNet with every Softmax recomputed (ratio 1; its own attention is too small for the default):
// the gradient equals the graph that keeps them (the same ops on the same values), no backward node
// reads a recomputed forward tensor, each recomputation waits for the gradient that reaches its
// site, and the SD-1.x sizes pick exactly the self-attention sites by default.
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { guidanceGradientModel } from '../../../../daemon/onnx/attention/guidance-graph.js';
import { decodeModel, encodeModel, writeDerivedModel } from '../../../../daemon/onnx/graph/model-io.js';
import { findRecomputeGroups, RECOMPUTE_DEFAULTS } from '../../../../daemon/onnx/autodiff/recompute.js';
import { makeGraph } from '../../../../daemon/onnx/graph/nodes.js';
import type { NodeProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { tinyUNetFolder, unetFeeds } from '../attention/tiny-unet.js';
import { uniform } from './op-harness.js';

const SIZE = { batch: 2, latentHeight: 8, latentWidth: 8 };

type GradientGraph = ReturnType<typeof guidanceGradientModel>;

/** ∂L/∂sample of a gradient graph written next to the tiny UNet in `dir` (it references its weights
 *  file) as `name`, with seeded feeds and reference maps. */
async function gradSample(dir: string, graph: GradientGraph, name: string, seed: number, refSeed: number): Promise<Float32Array> {
  const path = join(dir, 'unet', name);
  await writeDerivedModel(graph.model, join(dir, 'unet/model.onnx'), path);
  const s = await ort.InferenceSession.create(path);
  const feeds: Record<string, ort.Tensor> = unetFeeds('opset17', 2, 8, 8, seed);
  for (const site of graph.sites) {
    const n = site.heads * site.queries * site.tokens;
    feeds[`attn_ref_${String(site.index).padStart(2, '0')}`] = new ort.Tensor('float32', Float32Array.from(uniform(site.index + refSeed, n, 0, 0.05)), [site.heads, site.queries, site.tokens]);
  }
  const out = await s.run(feeds);
  await s.release();
  return out.grad_sample?.data as Float32Array;
}

/** Expects `b` to equal `a` within 1e-5 of a's largest magnitude, which must not be 0. */
function expectSameGradient(a: Float32Array, b: Float32Array): void {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  expect(scale).toBeGreaterThan(0);
  expect(diff).toBeLessThanOrEqual(1e-5 * scale);
}

describe('recomputed attention probabilities', () => {
  it('give the same ∂L/∂sample as kept ones, and no backward node reads a recomputed forward tensor', async () => {
    const { dir } = await tinyUNetFolder('opset17', 5);
    const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
    const kept = guidanceGradientModel(unet, SIZE, { recompute: false });
    const redone = guidanceGradientModel(unet, SIZE, { recompute: { minRatio: 1 } });
    const softmaxOutputs = new Set(kept.model.graph.node.filter((n) => n.opType === 'Softmax' && !n.name.startsWith('grad/')).map((n) => n.output[0]));
    const backward = (nodes: readonly NodeProto[]): NodeProto[] => nodes.filter((n) => n.output.some((o) => o.startsWith('grad/')));
    // Kept: the backward reads the forward probabilities. Recomputed: it never does.
    expect(backward(kept.model.graph.node).some((n) => n.input.some((i) => softmaxOutputs.has(i)))).toBe(true);
    expect(backward(redone.model.graph.node).some((n) => n.input.some((i) => softmaxOutputs.has(i)))).toBe(false);
    const recomputedSoftmax = backward(redone.model.graph.node).filter((n) => n.opType === 'Softmax');
    expect(recomputedSoftmax.length).toBe(softmaxOutputs.size);
    // Every recomputation depends on a gradient: its chain reads a gated copy of a kept input.
    expect(backward(redone.model.graph.node).filter((n) => n.opType === 'ReduceMax').length).toBe(softmaxOutputs.size);

    // Same values: write both next to the UNet (they reference its weights file) and run them.
    expectSameGradient(await gradSample(dir, kept, 'model.grad-kept.onnx', 7, 0), await gradSample(dir, redone, 'model.grad-recomputed.onnx', 7, 0));
    expect(encodeModel(redone.model).length).toBeGreaterThan(encodeModel(kept.model).length);
  });

  it('recomputes elementwise tensors, reshapes, normalisations and expanding projections from kept ones: same ∂L/∂sample, fewer forward tensors kept', async () => {
    const { dir } = await tinyUNetFolder('opset17', 6);
    const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
    const kept = guidanceGradientModel(unet, SIZE, { recompute: { minRatio: 8, elementwise: false } });
    // The tiny UNet's tensors are below the default size limit; every size counts here.
    const redone = guidanceGradientModel(unet, SIZE, { recompute: { minRatio: 8, elementwise: true, minElements: 1 } });
    const readByBackward = (m: typeof kept.model): Map<string, string> => {
      const producer = new Map(m.graph.node.filter((n) => !n.name.startsWith('grad/')).flatMap((n) => n.output.map((o) => [o, n.opType] as const)));
      const read = new Map<string, string>();
      for (const n of m.graph.node) if (n.name.startsWith('grad/')) for (const i of n.input) if (producer.has(i)) read.set(i, producer.get(i) as string);
      return read;
    };
    const before = readByBackward(kept.model);
    const after = readByBackward(redone.model);
    // SiLU's σ(x), GELU's erf chain and the normalised activations are no longer kept.
    for (const op of ['Sigmoid', 'Div']) {
      expect([...before.values()].filter((o) => o === op).length, op).toBeGreaterThan(0);
      expect([...after.values()].filter((o) => o === op).length, op).toBeLessThan([...before.values()].filter((o) => o === op).length);
    }
    // GEGLU's halves are made again from the projection's small input (the expanding MatMul), and
    // GroupNorm's output from its kept input (InstanceNormalization, the reshapes, the affine).
    expect([...before.values()].filter((o) => o === 'Split').length).toBeGreaterThan(0);
    expect([...after.values()].filter((o) => o === 'Split').length).toBe(0);
    // Self-attention's Q, K and V (heads split by Reshape and Transpose) come back from LayerNorm's
    // x − μ, which its backward keeps, through the affine and the square projections.
    // (Cross-attention's K and V come from the text alone: no gradient reaches them, they stay.)
    const selfTransposed = (read: Map<string, string>): string[] => [...read].filter(([t, o]) => o === 'Transpose' && t.includes('/attn1/')).map(([t]) => t);
    expect(selfTransposed(before).length).toBeGreaterThan(0);
    expect(selfTransposed(after)).toEqual([]);
    const recomputedOps = new Set(redone.model.graph.node.filter((n) => n.name.startsWith('grad/recompute_')).map((n) => n.opType));
    for (const op of ['MatMul', 'Split', 'InstanceNormalization', 'Reshape', 'Transpose']) expect(recomputedOps.has(op), op).toBe(true);
    expect(after.size).toBeLessThan(before.size);
    expectSameGradient(await gradSample(dir, kept, 'model.grad-ew-kept.onnx', 8, 9), await gradSample(dir, redone, 'model.grad-ew-recomputed.onnx', 8, 9));
  });

  it('makes the blocks of queries of a chunked site again, from what the projections are made from', async () => {
    // The blocks' queries are tensors the chunking creates (chunk-attention.ts). The derivation that
    // finds what the backward reads and the final one name them alike, so they are found kept and
    // made again: no backward node reads a forward tensor of the chunking.
    const { dir } = await tinyUNetFolder('opset17', 10);
    const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
    const kept = guidanceGradientModel(unet, SIZE, { recompute: false });
    const options = { minRatio: 1.5, maxScoreBytes: 4096, minElements: 1 };
    const blocksKept = guidanceGradientModel(unet, SIZE, { recompute: { ...options, elementwise: false } });
    const blocksRedone = guidanceGradientModel(unet, SIZE, { recompute: { ...options, elementwise: true } });
    // Tensors of the chunking the backward reads, but for the scalar gates 0·max(O_i).
    const chunkReads = (g: GradientGraph): string[] => {
      const forward = new Set(g.model.graph.node.filter((n) => n.name.startsWith('chunk/')).flatMap((n) => n.output));
      const read = g.model.graph.node.filter((n) => n.name.startsWith('grad/')).flatMap((n) => n.input.filter((i) => forward.has(i)));
      return [...new Set(read)].filter((t) => (g.shapes.get(t)?.dims ?? []).reduce((a, b) => a * b, 1) > 1);
    };
    expect(chunkReads(blocksKept).length).toBeGreaterThan(0);
    expect(chunkReads(blocksRedone)).toEqual([]);
    expect(blocksRedone.model.graph.node.some((n) => n.name.startsWith('grad/recompute_') && n.opType === 'Split')).toBe(true);
    expectSameGradient(await gradSample(dir, kept, 'model.grad-blocks-kept.onnx', 5, 6), await gradSample(dir, blocksRedone, 'model.grad-blocks-redone.onnx', 5, 6));
  });

  it('lets no backward node run before the gradient reaches its rule', async () => {
    // onnxruntime orders nodes by data alone (depth-first from the outputs), so a backward node that
    // reads only forward tensors and constants may run, and hold its output, long before the backward
    // pass gets there. With gating, every backward node that reads a tensor depends on the loss's seed.
    const { dir } = await tinyUNetFolder('opset17', 7);
    const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
    const ungated = guidanceGradientModel(unet, SIZE, { recompute: false });
    const gated = guidanceGradientModel(unet, SIZE, { recompute: { minRatio: 8, minElements: 1 } });
    const gradientFree = (m: typeof gated.model): NodeProto[] => {
      const forwardInitializers = new Set(unet.graph.initializer.map((t) => t.name));
      // The seed ∂L/∂L = 1: the backward's scalar constant 1 (shared with other scalar ones, which only
      // makes this count smaller).
      const seeds = m.graph.initializer.filter((t) => !forwardInitializers.has(t.name) && t.dims.length === 0 && (t.floatData?.[0] === 1 || (t.rawData?.length === 4 && new DataView(t.rawData.buffer, t.rawData.byteOffset, 4).getFloat32(0, true) === 1)));
      expect(seeds.length).toBeGreaterThan(0);
      const dependent = new Set<string>(seeds.map((t) => t.name));
      const initializers = new Set(m.graph.initializer.map((t) => t.name));
      const free: NodeProto[] = [];
      for (const n of m.graph.node) {
        if (!n.name.startsWith('grad/')) continue;
        if (n.input.some((i) => dependent.has(i))) for (const o of n.output) dependent.add(o);
        else if (n.input.some((i) => i && !initializers.has(i))) free.push(n);
      }
      return free;
    };
    expect(gradientFree(ungated.model).length).toBeGreaterThan(0);
    expect(gradientFree(gated.model).map((n) => n.name)).toEqual([]);
    expectSameGradient(await gradSample(dir, ungated, 'model.grad-ungated.onnx', 3, 4), await gradSample(dir, gated, 'model.grad-gated.onnx', 3, 4));
  });

  it('picks self-attention and leaves cross-attention at SD 1.x sizes (default ratio)', () => {
    // One SD 1.x attention block at latent 64×64, batch 2, 8 heads, d = 40: Q [16,4096,40],
    // Kᵀ [16,40,4096] (self) or [16,40,77] (cross), S = Q·Kᵀ·s, P = softmax(S).
    const sizes: Record<string, number> = { q: 16 * 4096 * 40, kt: 16 * 40 * 4096, ktx: 16 * 40 * 77, s0: 16 * 4096 * 4096, s: 16 * 4096 * 4096, p: 16 * 4096 * 4096, s0x: 16 * 4096 * 77, sx: 16 * 4096 * 77, px: 16 * 4096 * 77, scale: 1 };
    const node = (opType: string, input: string[], output: string): NodeProto => ({ opType, input, output: [output], name: output, domain: '', attribute: [] }) as unknown as NodeProto;
    const graph = makeGraph({
      node: [
        node('MatMul', ['q', 'kt'], 's0'), node('Mul', ['s0', 'scale'], 's'), node('Softmax', ['s'], 'p'),
        node('MatMul', ['q', 'ktx'], 's0x'), node('Mul', ['s0x', 'scale'], 'sx'), node('Softmax', ['sx'], 'px'),
      ],
      initializer: [{ name: 'scale' }],
    });
    const groups = findRecomputeGroups(graph as never, (n) => sizes[n] ?? 1, RECOMPUTE_DEFAULTS.minRatio);
    expect(groups).toHaveLength(1);
    expect(groups[0]?.nodes.map((n) => n.output[0])).toEqual(['s0', 's', 'p']);
    expect([...(groups[0]?.leaves ?? [])].sort()).toEqual(['kt', 'q', 'scale']);
  });
});
