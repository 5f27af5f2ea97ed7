// Query-chunked attention sites in the guidance gradient graph (autodiff/chunk-attention.ts), on the
// tiny UNet with the level-0 self-attention recomputed (ratio 1.5; its S is 2× its Q and Kᵀ) and chunked (a score limit far
// below its sizes): ∂L/∂sample and the maps equal the graph that keeps every probability whole
// (softmax is row-wise, so the blocks compute the same values) and a central finite difference of
// its own loss, no node of the chunked graph makes a
// tensor with all the query rows of a score, and each block waits for the one before it.
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { crossAttentionModel, guidanceGradientModel } from '../../../../daemon/onnx/attention/guidance-graph.js';
import { chunkForwardAttention } from '../../../../daemon/onnx/autodiff/chunk-attention.js';
import { defaultOpset } from '../../../../daemon/onnx/graph/nodes.js';
import { decodeModel, writeDerivedModel } from '../../../../daemon/onnx/graph/model-io.js';
import type { ModelProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { tinyUNetFolder, unetFeeds } from '../attention/tiny-unet.js';
import { uniform } from './op-harness.js';

const SIZE = { batch: 2, latentHeight: 8, latentWidth: 8 };

function maxRelDiff(a: Float32Array, b: Float32Array): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  return { diff, scale };
}

describe('query-chunked attention in the gradient graph', () => {
  it('gives the same ∂L/∂sample and maps as whole probabilities, one block at a time', async () => {
    const { dir } = await tinyUNetFolder('opset17', 9);
    const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
    const kept = guidanceGradientModel(unet, SIZE, { recompute: false });
    const whole = guidanceGradientModel(unet, SIZE, { recompute: { minRatio: 1.5, maxScoreBytes: Infinity } });
    // Level-0 self-attention of the tiny UNet at latent 8×8: S is [2·heads, 64, 64]; a limit of
    // 1/3 of it gives three blocks of 22, 22 and 20 queries (uneven on purpose).
    const selfScores = whole.model.graph.node.filter((n) => n.opType === 'Softmax' && !n.name.startsWith('grad/'))
      .map((n) => whole.shapes.get(n.output[0] as string)?.dims ?? [])
      .filter((d) => d[d.length - 1] === d[d.length - 2]);
    expect(selfScores.length).toBeGreaterThan(0);
    const biggest = Math.max(...selfScores.map((d) => d.reduce((a, b) => a * b, 1) * 4));
    const chunked = guidanceGradientModel(unet, SIZE, { recompute: { minRatio: 1.5, maxScoreBytes: Math.ceil(biggest / 3) } });
    const g = chunked.model.graph;
    const fullRows = new Set(selfScores.filter((d) => d.reduce((a, b) => a * b, 1) * 4 === biggest).map((d) => d.join('x')));
    // No tensor of the chunked graph has a biggest site's full score shape; the whole graph has them.
    const shapesOf = (m: ModelProto, s: typeof whole.shapes): string[] => m.graph.node.flatMap((n) => n.output).map((o) => (s.get(o)?.dims ?? []).join('x'));
    expect(shapesOf(whole.model, whole.shapes).some((d) => fullRows.has(d))).toBe(true);
    expect(shapesOf(chunked.model, chunked.shapes).some((d) => fullRows.has(d))).toBe(false);
    const blockSoftmax = g.node.filter((n) => n.opType === 'Softmax' && n.output[0]?.startsWith('chunk/'));
    const rows = blockSoftmax.map((n) => chunked.shapes.get(n.output[0] as string)?.dims.at(-2));
    expect(rows.filter((r) => r === 22).length).toBe(2 * (rows.filter((r) => r === 20).length));
    // The scale of the scores moved to the queries: each block's Softmax reads its MatMul directly.
    const producer = new Map(g.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
    expect(blockSoftmax.every((n) => producer.get(n.input[0] as string)?.opType === 'MatMul')).toBe(true);
    // Forward blocks after the first read gated queries (Add of a 0·max), and backward blocks too.
    expect(g.node.filter((n) => n.opType === 'ReduceMax' && n.name.startsWith('chunk/')).length).toBe(2 * rows.filter((r) => r === 20).length);
    expect(g.node.filter((n) => n.opType === 'ReduceMax' && n.name.startsWith('grad/')).length).toBeGreaterThan(blockSoftmax.length);

    const open = async (model: ModelProto, name: string): Promise<ort.InferenceSession> => {
      const path = join(dir, 'unet', name);
      await writeDerivedModel(model, join(dir, 'unet/model.onnx'), path);
      return ort.InferenceSession.create(path);
    };
    const feeds: Record<string, ort.Tensor> = unetFeeds('opset17', 2, 8, 8, 3);
    for (const site of kept.sites) {
      const n = site.heads * site.queries * site.tokens;
      feeds[`attn_ref_${String(site.index).padStart(2, '0')}`] = new ort.Tensor('float32', Float32Array.from(uniform(site.index + 40, n, 0, 0.05)), [site.heads, site.queries, site.tokens]);
    }
    const values = async (s: ort.InferenceSession, f: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> =>
      Object.fromEntries(Object.entries(await s.run(f)).map(([k, v]) => [k, v.data as Float32Array]));
    const keptSession = await open(kept.model, 'model.grad-kept.onnx');
    const chunkedSession = await open(chunked.model, 'model.grad-chunked.onnx');
    const a = await values(keptSession, feeds);
    const b = await values(chunkedSession, feeds);
    await keptSession.release();
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const key of Object.keys(a)) {
      const { diff, scale } = maxRelDiff(a[key]!, b[key]!);
      expect(scale, key).toBeGreaterThan(0);
      expect(diff, key).toBeLessThanOrEqual(1e-5 * scale);
    }

    // And the chunked graph's own loss: a central difference along a random direction v matches
    // ⟨∂L/∂sample, v⟩ (float32 rounding ∝ 1/h; the step and bound as in guidance-graph.test.ts).
    const sample = feeds.sample?.data as Float32Array;
    const v = Float32Array.from(uniform(77, sample.length, -1, 1));
    const h = 3e-2;
    const lossAt = async (t: number): Promise<number> => {
      const moved = sample.map((x, i) => x + t * v[i]!);
      const out = await values(chunkedSession, { ...feeds, sample: new ort.Tensor('float32', moved, feeds.sample!.dims) });
      return out.loss![0]!;
    };
    const numeric = ((await lossAt(h)) - (await lossAt(-h))) / (2 * h);
    const analytic = b.grad_sample!.reduce((s, g, i) => s + g * v[i]!, 0);
    await chunkedSession.release();
    expect(Math.abs(analytic)).toBeGreaterThan(0);
    expect(Math.abs(numeric - analytic)).toBeLessThan(5e-3 * Math.abs(analytic));
  });

  it('the forward cross-attention graph in blocks gives the same ε and maps', async () => {
    const { dir } = await tinyUNetFolder('opset17', 4);
    const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
    const whole = crossAttentionModel(unet, SIZE, { chunk: false });
    const blocks = crossAttentionModel(unet, SIZE, { chunk: false });
    // Default sizes leave the tiny UNet whole; a small limit and ratio split its level-0 self-attention.
    expect(crossAttentionModel(unet, SIZE).model.graph.node.length).toBe(whole.model.graph.node.length);
    expect(chunkForwardAttention(blocks.model.graph, blocks.shapes, defaultOpset(blocks.model), 4 * 64 * 64 * 4 / 3, 1.5)).toBeGreaterThan(0);
    expect(blocks.model.graph.node.some((n) => n.opType === 'Softmax' && n.output[0]?.startsWith('chunk/'))).toBe(true);
    const run = async (model: ModelProto, name: string): Promise<Record<string, Float32Array>> => {
      const path = join(dir, 'unet', name);
      await writeDerivedModel(model, join(dir, 'unet/model.onnx'), path);
      const s = await ort.InferenceSession.create(path);
      const out = await s.run(unetFeeds('opset17', 2, 8, 8, 5));
      await s.release();
      return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
    };
    const a = await run(whole.model, 'model.xattn-whole.onnx');
    const b = await run(blocks.model, 'model.xattn-blocks.onnx');
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const key of Object.keys(a)) {
      const { diff, scale } = maxRelDiff(a[key]!, b[key]!);
      expect(scale, key).toBeGreaterThan(0);
      expect(diff, key).toBeLessThanOrEqual(1e-5 * scale);
    }
  });
});
