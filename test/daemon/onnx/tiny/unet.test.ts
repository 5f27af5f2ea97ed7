import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topologicalOrder } from '../../../../daemon/onnx/graph/graph-index.js';
import { addOutputs, bindDimParams } from '../graph/graph-edits.js';
import { graphOf, readModel, writeDerivedModel } from '../../../../daemon/onnx/graph/model-io.js';
import { int64ToNumber } from '../../../../daemon/onnx/graph/onnx-proto.js';
import type { ModelProto } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { SD15_SHAPED, TINY_SD } from '../../../../daemon/onnx/tiny/stable-diffusion.js';
import { crossAttentionSoftmaxNames, writeUNet } from '../../../../daemon/onnx/tiny/unet.js';
import { data, f32, ids, wave } from './fixtures.js';

let dir: string;
let sd15: ModelProto;
const tinyPath = (): string => join(dir, 'tiny', 'model.onnx');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-unet-'));
  // The SD-1.5-shaped graph with a sparse all-zero weights file: exact structure, no 3.4 GB written.
  await writeUNet(join(dir, 'sd15', 'model.onnx'), SD15_SHAPED.unet, { seed: 0, flavour: 'opset14', fill: 'sparse-zeros' });
  sd15 = await readModel(join(dir, 'sd15', 'model.onnx'));
  await writeUNet(tinyPath(), TINY_SD.unet, { seed: 3, flavour: 'opset14' });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SD-1.5-shaped UNet graph', () => {
  it('has the 16 cross-attention Softmax nodes, named as the export names them, in execution order', () => {
    const order = topologicalOrder(graphOf(sd15)).filter((n) => n.opType === 'Softmax' && n.name?.endsWith('/attn2/Softmax'));
    expect(order).toHaveLength(16);
    expect(order.map((n) => n.name)).toEqual(crossAttentionSoftmaxNames(SD15_SHAPED.unet));
    expect(order[0]?.name).toBe('/down_blocks.0/attentions.0/transformer_blocks.0/attn2/Softmax');
    expect(order[6]?.name).toBe('/mid_block/attentions.0/transformer_blocks.0/attn2/Softmax');
    expect(order[15]?.name).toBe('/up_blocks.3/attentions.2/transformer_blocks.0/attn2/Softmax');
    // Self-attention too: 16 attn1 Softmax nodes.
    expect((graphOf(sd15).node ?? []).filter((n) => n.name?.endsWith('/attn1/Softmax'))).toHaveLength(16);
  });

  it("has exactly SD 1.5's 859,520,964 UNet parameters (diffusers' UNet2DConditionModel count)", async () => {
    let params = 0;
    for (const t of graphOf(sd15).initializer ?? []) {
      // Exporter-style anonymous constants (time frequencies, InstanceNorm unit scales) are not parameters.
      if (t.name?.startsWith('onnx::')) continue;
      params += (t.dims ?? []).reduce<number>((a, d) => a * int64ToNumber(d), 1);
    }
    expect(params).toBe(859_520_964);
    expect((await stat(join(dir, 'sd15', 'weights.pb'))).size).toBeGreaterThanOrEqual(params * 4);
  });

  it('declares the opset14 I/O: sample [batch,4,height,width], int64 timestep [batch], encoder_hidden_states [batch,sequence,768]', () => {
    const io = (graphOf(sd15).input ?? []).map((v) => [
      v.name, v.type?.tensorType?.elemType, (v.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam || int64ToNumber(d.dimValue)),
    ]);
    expect(io).toEqual([
      ['sample', 1, ['batch', 4, 'height', 'width']],
      ['timestep', 7, ['batch']],
      ['encoder_hidden_states', 1, ['batch', 'sequence', 768]],
    ]);
    expect(graphOf(sd15).output?.map((o) => o.name)).toEqual(['out_sample']);
  });
});

describe('tiny UNet', () => {
  it('exposes cross-attention probabilities [B·heads, h·w, 77] through a derived graph, out_sample unchanged', async () => {
    const model = await readModel(tinyPath());
    const names = crossAttentionSoftmaxNames(TINY_SD.unet);
    const outputs = names.map((n) => `${n}_output_0`);
    addOutputs(graphOf(model), outputs.map((name) => ({ name })));
    const derivedPath = join(dir, 'tiny', 'model.xattn.onnx');
    await writeDerivedModel(model, tinyPath(), derivedPath);
    const feeds = {
      sample: f32(wave(2 * 4 * 8 * 8, 0), [2, 4, 8, 8]),
      timestep: ids('int64', [901, 901], [2]),
      encoder_hidden_states: f32(wave(2 * 77 * 32, 1), [2, 77, 32]),
    };
    const [base, derived] = [await ort.InferenceSession.create(tinyPath()), await ort.InferenceSession.create(derivedPath)];
    const [a, b] = [await base.run(feeds), await derived.run(feeds)];
    expect(Array.from(data(b.out_sample))).toEqual(Array.from(data(a.out_sample)));
    const heads = TINY_SD.unet.heads;
    // Levels: 8×8 at level 0 (down 0, up 1), 4×4 at level 1 (down 1, mid, up 0).
    const hw = [64, 16, 16, 16, 16, 64, 64];
    outputs.forEach((o, k) => {
      const p = b[o];
      expect(p?.dims).toEqual([2 * heads, hw[k], 77]);
      const v = data(p);
      for (let row = 0; row < v.length / 77; row += 13) {
        const sum = v.subarray(row * 77, row * 77 + 77).reduce((s, x) => s + x, 0);
        expect(sum).toBeCloseTo(1, 5);
      }
    });
    await Promise.all([base.release(), derived.release()]);
  });

  it('folds every shape subgraph once its inputs have static shapes (onnxruntime basic optimization)', async () => {
    const model = await readModel(tinyPath());
    expect(bindDimParams(graphOf(model), { batch: 2, height: 8, width: 8, sequence: 77 })).toBe(9);
    const staticPath = join(dir, 'tiny', 'model.static.onnx');
    await writeDerivedModel(model, tinyPath(), staticPath);
    const optimizedPath = join(dir, 'tiny', 'model.static.opt.onnx');
    const s = await ort.InferenceSession.create(staticPath, {
      graphOptimizationLevel: 'basic',
      optimizedModelFilePath: optimizedPath,
      extra: { session: { optimized_model_external_initializers_file_name: 'model.static.opt.onnx_data' } },
    });
    await s.release();
    const before = graphOf(model).node ?? [];
    const after = graphOf(await readModel(optimizedPath)).node ?? [];
    expect(before.filter((n) => n.opType === 'Shape').length).toBeGreaterThan(20);
    expect(after.filter((n) => n.opType === 'Shape')).toHaveLength(0);
    expect(after.length).toBeLessThan(before.length / 2);
    expect(after.filter((n) => n.name?.endsWith('/attn2/Softmax')).map((n) => n.name)).toEqual(crossAttentionSoftmaxNames(TINY_SD.unet));
  });
});
