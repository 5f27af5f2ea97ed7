// An onnxruntime-optimized tiny UNet (daemon/onnx/tiny/ort-fusions.ts: GroupNorm NHWC with and
// without SiLU, NhwcConv, MultiHeadAttention with packed QKV and KV and with q/k/v apart, Attention,
// SkipLayerNormalization, BiasSplitGelu, BiasAdd) against the plain export of the same weights:
// prepare derives its graphs from the unfused twin, and they give the same ε, cross-attention maps,
// loss and ∂L/∂x as the plain model's; `p2pz models prepare` and `p2pz edit` run on it; a fused op
// p2pz does not know is refused with its code and a hint.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guidanceGradientModel, unetInputDims } from '../../../../daemon/onnx/attention/guidance-graph.js';
import { decodeModel, encodeModel, writeDerivedModel } from '../../../../daemon/onnx/graph/model-io.js';
import { prepareModel } from '../../../../daemon/onnx/prepare.js';
import { writeTinyStableDiffusion, type TinyStableDiffusionInfo } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { UNFUSED_METADATA_KEY, unfuseContribOps } from '../../../../daemon/onnx/unfuse/unfuse.js';
import { P2pzError } from '../../../../shared/protocol/errors.js';
import { uniform } from '../autodiff/op-harness.js';
import { unetFeeds } from '../attention/tiny-unet.js';
import { captureIo, loadMain, type CapturedIo } from '../../../fixtures/cli-main.js';
import { editWithBoth } from './edit-both.js';

let dir: string;
let fusedDir: string;
let plainDir: string;
let info: TinyStableDiffusionInfo;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-optimized-'));
  fusedDir = join(dir, 'models', 'fused');
  plainDir = join(dir, 'models', 'plain');
  // Mid block: self-attention as Attention, cross-attention with q/k/v apart; elsewhere packed.
  info = await writeTinyStableDiffusion(fusedDir, { flavour: 'opset17', seed: 4, ortOptimized: { attentionOp: true } });
  await writeTinyStableDiffusion(plainDir, { flavour: 'opset17', seed: 4 });
});

afterAll(() => rm(dir, { recursive: true, force: true }));

function maxAbsDiff(a: ort.Tensor | undefined, b: ort.Tensor | undefined): number {
  const x = a?.data as Float32Array;
  const y = b?.data as Float32Array;
  expect(x.length).toBe(y.length);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs((x[i] ?? 0) - (y[i] ?? 0)));
  return m;
}

async function runGraph(path: string, feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.ReturnType> {
  const s = await ort.InferenceSession.create(path, { executionProviders: ['cpu'] });
  const out = await s.run(feeds);
  await s.release();
  return out;
}

describe('an onnxruntime-optimized UNet', () => {
  it('holds the fused ops the optimizer writes for SD, and the CPU provider cannot run it as it is', async () => {
    expect(info.fusedOps).toEqual({ GroupNorm: 24, NhwcConv: 39, MultiHeadAttention: 13, Attention: 1, SkipLayerNormalization: 14, BiasSplitGelu: 7, BiasAdd: 7 });
    const groupNorms = decodeModel(await readFile(join(fusedDir, 'unet/model.onnx'))).graph.node.filter((n) => n.opType === 'GroupNorm');
    const activations = groupNorms.map((n) => Number(n.attribute.find((a) => a.name === 'activation')?.i));
    expect(activations.filter((a) => a === 1).length).toBeGreaterThan(0);
    expect(activations.filter((a) => a === 0).length).toBeGreaterThan(0);
    await expect(ort.InferenceSession.create(join(fusedDir, 'unet/model.onnx'), { executionProviders: ['cpu'] })).rejects.toThrow(/GroupNorm|NhwcConv/);
  });

  it('prepares graphs that give the plain model\'s ε, maps, loss and ∂L/∂x', async () => {
    const fused = await prepareModel(fusedDir, { height: 64, width: 64 });
    const plain = await prepareModel(plainDir, { height: 64, width: 64 });
    expect(fused.manifest.sites.map((s) => [s.layout, s.heads, s.queries, s.tokens])).toEqual(plain.manifest.sites.map((s) => [s.layout, s.heads, s.queries, s.tokens]));
    const xattn = decodeModel(await readFile(fused.xattnPath));
    expect(xattn.graph.node.every((n) => !n.domain)).toBe(true);
    expect(JSON.parse(xattn.metadataProps.find((p) => p.key === UNFUSED_METADATA_KEY)?.value ?? '{}')).toEqual(info.fusedOps);

    const feeds = unetFeeds('opset17', 2, 8, 8, 21);
    const [fx, px] = [await runGraph(fused.xattnPath, feeds), await runGraph(plain.xattnPath, feeds)];
    expect(maxAbsDiff(fx.out_sample, px.out_sample)).toBeLessThan(1e-5);
    for (let l = 0; l < plain.manifest.sites.length; l++) {
      const name = `attn_map_${String(l).padStart(2, '0')}`;
      expect(maxAbsDiff(fx[name], px[name])).toBeLessThan(1e-5);
    }

    const refs: Record<string, ort.Tensor> = {};
    plain.manifest.sites.forEach((s, l) => {
      const n = s.heads * s.queries * s.tokens;
      refs[`attn_ref_${String(l).padStart(2, '0')}`] = new ort.Tensor('float32', Float32Array.from(uniform(300 + l, n, 0, 2 / s.tokens)), [s.heads, s.queries, s.tokens]);
    });
    const [fg, pg] = [await runGraph(fused.gradPath, { ...feeds, ...refs }), await runGraph(plain.gradPath, { ...feeds, ...refs })];
    const first = (t: ort.Tensor | undefined): number => (t ? ((t.data as Float32Array)[0] ?? 0) : Number.NaN);
    const loss = first(fg.loss);
    expect(Math.abs(loss - first(pg.loss))).toBeLessThan(1e-5 * Math.abs(loss));
    const grad = pg.grad_sample?.data as Float32Array;
    const scale = Math.max(...Array.from(grad, Math.abs));
    expect(scale).toBeGreaterThan(0);
    expect(maxAbsDiff(fg.grad_sample, pg.grad_sample) / scale).toBeLessThan(1e-4);
  });

  it('has its self-attention recomputed and chunked into blocks of queries as the plain model, with the same ∂L/∂x', async () => {
    const size = { batch: 2, latentHeight: 8, latentWidth: 8 };
    // Self-attention scores at this size: [2·2, 64, 64] float32 = 64 KiB; blocks of at most 16 KiB.
    const recompute = { minRatio: 1.5, maxScoreBytes: 16 * 1024 };
    const grads: Record<string, ort.InferenceSession.ReturnType> = {};
    const chunkNodes: Record<string, number> = {};
    for (const [k, folder] of [['fused', fusedDir], ['plain', plainDir]] as const) {
      const unetPath = join(folder, 'unet/model.onnx');
      const source = decodeModel(await readFile(unetPath));
      const model = guidanceGradientModel(unfuseContribOps(source, unetInputDims(source, size)), size, { recompute }).model;
      chunkNodes[k] = model.graph.node.filter((n) => n.name.startsWith('chunk/') && n.opType === 'Softmax').length;
      const path = join(folder, 'unet/model.chunked-test.onnx');
      await writeDerivedModel(model, unetPath, path);
      const feeds = unetFeeds('opset17', 2, 8, 8, 23);
      const refs: Record<string, ort.Tensor> = {};
      model.graph.input.filter((i) => i.name.startsWith('attn_ref_')).forEach((i, l) => {
        const dims = (i.type?.tensorType?.shape?.dim ?? []).map((d) => Number(d.dimValue));
        refs[i.name] = new ort.Tensor('float32', Float32Array.from(uniform(500 + l, dims.reduce((a, b) => a * b, 1), 0, 2 / 77)), dims);
      });
      grads[k] = await runGraph(path, { ...feeds, ...refs });
    }
    expect(chunkNodes.fused).toBeGreaterThan(0);
    expect(chunkNodes.fused).toBe(chunkNodes.plain);
    const grad = grads.plain?.grad_sample?.data as Float32Array;
    const scale = Math.max(...Array.from(grad, Math.abs));
    expect(maxAbsDiff(grads.fused?.grad_sample, grads.plain?.grad_sample) / scale).toBeLessThan(1e-4);
  });

  it('runs `p2pz models prepare` and `p2pz edit` like the plain model', async () => {
    const main = await loadMain();
    const home = join(dir, 'home');
    const prep: CapturedIo = captureIo({ P2PZ_HOME: home });
    expect(await main(['models', 'prepare', fusedDir, '--size', '64'], prep)).toBe(0);
    expect(prep.text.out).toContain('7 cross-attention layers');
    const { fused: pa, plain: pb } = await editWithBoth(main, dir, home, fusedDir, plainDir);
    expect(pa.width).toBe(40);
    let worst = 0;
    for (let i = 0; i < pa.data.length; i++) worst = Math.max(worst, Math.abs((pa.data[i] ?? 0) - (pb.data[i] ?? 0)));
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('refuses a fused op p2pz does not rewrite, naming it, with a hint', async () => {
    const odd = join(dir, 'models', 'odd');
    await writeTinyStableDiffusion(odd, { flavour: 'opset17', seed: 4, components: ['unet'], ortOptimized: {} });
    const path = join(odd, 'unet/model.onnx');
    const model = decodeModel(await readFile(path));
    const node = model.graph.node.find((n) => n.opType === 'BiasSplitGelu');
    if (!node) throw new Error('no BiasSplitGelu');
    node.opType = 'BiasSplitSwiGlu';
    await writeFile(path, encodeModel(model));
    const err = await prepareModel(odd, { height: 64, width: 64 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_UNSUPPORTED_OP');
    expect((err as P2pzError).message).toMatch(/op com\.microsoft\.BiasSplitSwiGlu at node BiasSplitGelu_\d+ \(p2pz rewrites only MultiHeadAttention, .*BiasSplitGelu/);
    expect((err as P2pzError).hint).toMatch(/without onnxruntime graph optimization/);
  });
});
