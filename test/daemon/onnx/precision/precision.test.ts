// The precision conversion of prepare (daemon/onnx/precision/): which nodes stay float32, the weights
// halved on disk, float32 at every graph boundary, a float16 export as optimum writes it, and the
// gradient graph in each precision against the float32 one, run in onnxruntime's CPU provider.
// Tolerances: float16 keeps 11 significant bits (unit roundoff u = 2⁻¹¹ ≈ 4.9e-4, spacing 2⁻¹⁰ ≈
// 9.8e-4 at 1). Rounding the weights alone moves the tiny UNet's ε by a relative L2 of ~u·√depth;
// measured values and the bounds are in models/reference/README.md ("float16").
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelsPrepare } from '../../../../daemon/cli/models-prepare.js';
import { modelFootprint } from '../../../../daemon/models/memory-estimate.js';
import { float16Bits, float16Value, fromFloat16Array, toFloat16Array } from '../../../../daemon/onnx/graph/float16.js';
import { decodeModel } from '../../../../daemon/onnx/graph/model-io.js';
import { makeNode } from '../../../../daemon/onnx/graph/nodes.js';
import { DataType, type ModelProto, type NodeProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { elementTypes } from '../../../../daemon/onnx/precision/element-types.js';
import { retypeFloats } from '../../../../daemon/onnx/precision/retype.js';
import { prepareModel, type PreparedUNet } from '../../../../daemon/onnx/prepare.js';
import { writeTinyStableDiffusion } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { P2pzError } from '../../../../shared/protocol/errors.js';

const SIZE = { height: 64, width: 64 };
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-precision-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (b[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
};

/** Types of every node's float inputs in a graph, by node name. */
function inputTypes(model: ModelProto): Map<NodeProto, number[]> {
  const types = elementTypes(model.graph);
  return new Map(model.graph.node.map((n) => [n, n.input.filter(Boolean).map((i) => types.get(i) ?? 0).filter((t) => t === DataType.FLOAT || t === DataType.FLOAT16)]));
}

describe('float16 bits', () => {
  it('rounds to nearest, ties to even, with overflow and subnormals as numpy does', () => {
    expect(float16Bits(1)).toBe(0x3c00);
    expect(float16Bits(-2)).toBe(0xc000);
    expect(float16Bits(65504)).toBe(0x7bff);
    expect(float16Bits(65520)).toBe(0x7c00); // rounds up past the largest finite: ∞
    expect(float16Bits(0.1)).toBe(0x2e66);
    expect(float16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float16Bits(2 ** -26)).toBe(0x0000);
    expect(float16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(float16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(float16Value(0x3555)).toBeCloseTo(0.33325195, 8);
    const xs = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10 ** ((i % 9) - 4));
    const back = fromFloat16Array(toFloat16Array(xs));
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i] as number;
      if (Math.abs(x) >= 2 ** -14) expect(Math.abs((back[i] as number) - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
    }
  });
});

describe.each(['opset14', 'opset17'] as const)('prepare --precision fp16 of a float32 export (%s)', (flavour) => {
  let model: string;
  let fp32: PreparedUNet;
  let fp16: PreparedUNet;
  let cpu: PreparedUNet;
  beforeAll(async () => {
    model = join(dir, `fp32-${flavour}`);
    await writeTinyStableDiffusion(model, { flavour, components: ['unet'] });
    fp32 = await prepareModel(model, SIZE);
    fp16 = await prepareModel(model, { ...SIZE, precision: { weights: 'fp16', compute: 'fp16' } });
    cpu = await prepareModel(model, { ...SIZE, precision: { weights: 'fp16', compute: 'fp32' } });
  });

  it('halves the weights on disk and keeps normalizations, Softmax and the timestep embedding in float32', async () => {
    const weights32 = (await stat(join(model, 'unet', flavour === 'opset14' ? 'weights.pb' : 'model.onnx_data'))).size;
    const weights16 = (await stat(join(model, 'unet/model.fp16.onnx_data'))).size;
    expect(weights16 / weights32).toBeGreaterThan(0.49);
    expect(weights16 / weights32).toBeLessThan(0.51);
    const converted = decodeModel(await readFile(join(model, 'unet/model.fp16.onnx')));
    const types = inputTypes(converted);
    const by = (op: string): number[][] => converted.graph.node.filter((n) => n.opType === op).map((n) => types.get(n) ?? []);
    for (const op of ['Softmax', 'InstanceNormalization', 'Sin', 'Cos', flavour === 'opset17' ? 'LayerNormalization' : 'ReduceMean']) {
      expect(by(op).length, op).toBeGreaterThan(0);
      for (const t of by(op)) expect(new Set(t), op).toEqual(new Set([DataType.FLOAT]));
    }
    for (const op of ['Conv', 'MatMul']) {
      expect(by(op).length, op).toBeGreaterThan(0);
      for (const t of by(op)) expect(new Set(t), op).toEqual(new Set([DataType.FLOAT16]));
    }
    if (flavour === 'opset14') {
      // The decomposed LayerNorm: its Sub, Pow, Sqrt and Div run in float32 too; the GELU's Erf does not.
      for (const op of ['Pow', 'Sqrt']) for (const t of by(op)) expect(new Set(t), op).toEqual(new Set([DataType.FLOAT]));
      for (const t of by('Erf')) expect(t).toEqual([DataType.FLOAT16]);
    }
    // The boundary stays float32: the pipeline feeds and reads float32 whatever the precision.
    for (const v of [...converted.graph.input, ...converted.graph.output]) {
      const t = v.type?.tensorType?.elemType;
      if (v.name !== 'timestep') expect(t, v.name).toBe(DataType.FLOAT);
    }
    // The weights of the float32 nodes stay float32 (norm scales), the rest are float16.
    const inits = new Map(converted.graph.initializer.map((t) => [t.name, t.dataType]));
    expect(inits.get('conv_in.weight')).toBe(DataType.FLOAT16);
    expect(inits.get('conv_norm_out.weight') ?? inits.get('conv_norm_out.weight/float32')).toBeDefined();
    expect(fp16.manifest.precision).toEqual({ weights: 'fp16', compute: 'fp16' });
    expect(cpu.manifest.precision).toEqual({ weights: 'fp16', compute: 'fp32' });
    expect(fp32.manifest.precision).toBeUndefined();
    expect(fp16.gradPath).toMatch(/model\.grad\.8x8\.fp16\.onnx$/);
    expect(cpu.gradPath).toMatch(/model\.grad\.8x8\.fp16-fp32\.onnx$/);
    // The CPU graph computes in float32 throughout: no float16 value in it.
    const upcast = decodeModel(await readFile(join(model, 'unet/model.fp16-fp32.onnx')));
    expect([...elementTypes(upcast.graph).values()]).not.toContain(DataType.FLOAT16);
  });

  it('the gradient graph runs in both precisions and agrees with the float32 one', async () => {
    const outs = async (path: string): Promise<Record<string, Float32Array>> => {
      const s = await ort.InferenceSession.create(path, { executionProviders: ['cpu'] });
      const feeds: Record<string, ort.Tensor> = {};
      for (const m of s.inputMetadata) {
        if (!m.isTensor) continue;
        const dims = m.shape as number[];
        const n = dims.reduce((a, b) => a * b, 1);
        if (m.name === 'timestep') feeds[m.name] = m.type === 'int64' ? new ort.Tensor('int64', new BigInt64Array(n).fill(500n), dims) : new ort.Tensor('float32', new Float32Array(n).fill(500), dims);
        else feeds[m.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, (_, i) => (m.name.startsWith('attn_ref') ? 1 / 77 : Math.sin(i * 0.37 + m.name.length))), dims);
      }
      const r = await s.run(feeds);
      await s.release();
      const out: Record<string, Float32Array> = {};
      for (const k of ['out_sample', 'grad_sample', 'loss', 'attn_map_00']) {
        const t = r[k] as ort.Tensor;
        expect(t.type, `${path} ${k}`).toBe('float32');
        out[k] = t.data as Float32Array;
      }
      return out;
    };
    const ref = await outs(fp32.gradPath);
    const half = await outs(fp16.gradPath);
    const upcast = await outs(cpu.gradPath);
    const errs = {
      eps16: relL2(half.out_sample as Float32Array, ref.out_sample as Float32Array),
      grad16: relL2(half.grad_sample as Float32Array, ref.grad_sample as Float32Array),
      eps16w: relL2(upcast.out_sample as Float32Array, ref.out_sample as Float32Array),
      grad16w: relL2(upcast.grad_sample as Float32Array, ref.grad_sample as Float32Array),
      loss16: Math.abs((half.loss?.[0] as number) / (ref.loss?.[0] as number) - 1),
    };
    // Not the same numbers (the weights were rounded) …
    expect(errs.eps16w).toBeGreaterThan(1e-6);
    // … but within float16's reach.
    // Measured (both flavours): ε 1.2e-3 and ∂L/∂x 2.8e-3 from the rounded weights alone; 1.6–1.8e-3
    // and 3.3–3.8e-3 with float16 compute (here the CPU provider's inserted Casts: every op's result
    // rounded to float16); the loss 3e-4. Bounds ~3× those.
    expect(errs.eps16w).toBeLessThan(5e-3);
    expect(errs.grad16w).toBeLessThan(1e-2);
    expect(errs.eps16).toBeLessThan(5e-3);
    expect(errs.grad16).toBeLessThan(1.2e-2);
    expect(errs.loss16).toBeLessThan(2e-3);
  });
});

describe('a float16 export (optimum --fp16)', () => {
  let model: string;
  beforeAll(async () => {
    model = join(dir, 'fp16-export');
    await writeTinyStableDiffusion(model, { flavour: 'opset17', precision: 'fp16' });
  });

  it('has float16 weights and float16 float inputs and outputs; integer inputs stay integer', async () => {
    const check = async (component: string, inputs: Record<string, number>, outputs: Record<string, number>): Promise<void> => {
      const s = await ort.InferenceSession.create(join(model, component, 'model.onnx'), { executionProviders: ['cpu'] });
      for (const m of s.inputMetadata) if (m.isTensor) expect(m.type, `${component} ${m.name}`).toBe(inputs[m.name]);
      for (const m of s.outputMetadata) if (m.isTensor && outputs[m.name]) expect(m.type, `${component} ${m.name}`).toBe(outputs[m.name]);
      await s.release();
    };
    const t = (x: string): number => x as unknown as number;
    await check('unet', { sample: t('float16'), timestep: t('float16'), encoder_hidden_states: t('float16') }, { out_sample: t('float16') });
    await check('text_encoder', { input_ids: t('int64') }, { last_hidden_state: t('float16') });
    await check('vae_encoder', { sample: t('float16') }, {});
    await check('vae_decoder', { latent_sample: t('float16') }, { sample: t('float16') });
    const unet = decodeModel(await readFile(join(model, 'unet/model.onnx')));
    const floats = unet.graph.initializer.filter((i) => i.dataType === DataType.FLOAT || i.dataType === DataType.FLOAT16);
    expect(floats.filter((i) => i.dataType === DataType.FLOAT16).length).toBeGreaterThan(50);
    // Only the timestep embedding's frequencies stay float32 (diffusers computes it in float32).
    expect(floats.filter((i) => i.dataType === DataType.FLOAT).length).toBeLessThanOrEqual(2);
  });

  it('prepares for the CPU (float16 weights computed in float32) and for GPUs (float16) with a float32 boundary', async () => {
    const code = await modelsPrepare([model, '--size', '64'], { out: () => undefined, err: () => undefined, env: {} });
    expect(code).toBe(0);
    const cpu = await prepareModel(model, SIZE);
    expect(cpu.reused).toBe(true);
    expect(cpu.manifest.precision).toEqual({ weights: 'fp16', compute: 'fp32' });
    // A float32 request on a float16 export gets float16 weights: there are no others.
    const asked32 = await prepareModel(model, { ...SIZE, precision: { weights: 'fp32', compute: 'fp32' } });
    expect(asked32.manifest.precision).toEqual({ weights: 'fp16', compute: 'fp32' });
    const gpu = await prepareModel(model, { ...SIZE, precision: { weights: 'fp16', compute: 'fp16' } });
    for (const p of [cpu.gradPath, gpu.gradPath]) {
      const s = await ort.InferenceSession.create(p, { executionProviders: ['cpu'] });
      for (const m of s.inputMetadata) if (m.isTensor && m.name !== 'timestep') expect(m.type).toBe('float32');
      for (const m of s.outputMetadata) if (m.isTensor) expect(m.type).toBe('float32');
      await s.release();
    }
  });
});

describe('the memory estimate of a float16 export', () => {
  it('counts its parameters from its float16 bytes and its weights at the precision the prepared graphs compute in', async () => {
    const fp32 = join(dir, 'estimate-fp32');
    const fp16 = join(dir, 'estimate-fp16');
    await writeTinyStableDiffusion(fp32, { flavour: 'opset17' });
    await writeTinyStableDiffusion(fp16, { flavour: 'opset17', precision: 'fp16' });
    await prepareModel(fp32, SIZE);
    const cpu = await prepareModel(fp16, SIZE);
    expect(cpu.manifest.exported).toBe('fp16');
    expect((await prepareModel(fp32, SIZE)).manifest.exported).toBeUndefined();
    const a = await modelFootprint(dir, 'estimate-fp32');
    // On the CPU the float16 weights run in float32: about the bytes in memory and the width C of the
    // float32 export of the same model (before, half of them). The tiny graphs' structure, a larger
    // share of their bytes than in SD, and the export's casts keep the ratio a little above 1.
    const b = await modelFootprint(dir, 'estimate-fp16');
    expect(b.unetBytes / a.unetBytes).toBeGreaterThan(0.9);
    expect(b.unetBytes / a.unetBytes).toBeLessThan(1.15);
    expect(b.channels / a.channels).toBeCloseTo(1, 1);
    expect(b.otherBytes / a.otherBytes).toBeGreaterThan(0.9);
    // A GPU's float16 graphs alone: half the bytes, the same width.
    const gpuOnly = join(dir, 'estimate-fp16-gpu');
    await writeTinyStableDiffusion(gpuOnly, { flavour: 'opset17', precision: 'fp16' });
    await prepareModel(gpuOnly, { ...SIZE, precision: { weights: 'fp16', compute: 'fp16' } });
    const c = await modelFootprint(dir, 'estimate-fp16-gpu');
    expect(c.unetBytes / a.unetBytes).toBeGreaterThan(0.45);
    expect(c.unetBytes / a.unetBytes).toBeLessThan(0.6);
    expect(c.channels / a.channels).toBeCloseTo(1, 1);
  });
});

describe('refusals', () => {
  it('refuses a fused com.microsoft op with E_UNSUPPORTED_OP and a hint', () => {
    const graph = { name: 'g', node: [makeNode('GroupNorm', ['x'], ['y'], 'gn')], initializer: [], input: [], output: [], valueInfo: [] };
    graph.node[0]!.domain = 'com.microsoft';
    const model = { graph, opsetImport: [{ version: 17 }], metadataProps: [] } as unknown as ModelProto;
    let err: unknown;
    try {
      retypeFloats(model, { compute: () => DataType.FLOAT16, boundary: DataType.FLOAT });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_UNSUPPORTED_OP');
    expect((err as P2pzError).message).toMatch(/com\.microsoft\.GroupNorm/);
    expect((err as P2pzError).hint).toMatch(/without com\.microsoft/);
  });

  it('refuses an unknown --precision with E_BAD_REQUEST and the usage', async () => {
    const err: string[] = [];
    const code = await modelsPrepare([join(dir, 'nowhere'), '--precision', 'fp8'], { out: () => undefined, err: (t) => err.push(t), env: {} });
    expect(code).toBe(1);
    expect(err.join('\n')).toMatch(/--precision must be fp16 or fp32, not "fp8"/);
    expect(err.join('\n')).toMatch(/p2pz models prepare DIR/);
  });
});
