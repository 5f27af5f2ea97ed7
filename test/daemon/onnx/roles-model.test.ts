// The roles model (one session, one copy of the UNet weights for every UNet call of an edit): each
// role's outputs equal its own graph's, run in its own session with the same feeds; the roles not
// run return empty tensors; the weights are one set of external initializers of the outer graph;
// the manifest is reused while the three graphs are unchanged; and unetRoles() hides the naming.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { decodeModel } from '../../../daemon/onnx/graph/model-io.js';
import { isExternal, type GraphProto } from '../../../daemon/onnx/graph/onnx-proto.js';
import { preparePipelineGraphs, prepareRoles, ROLES_FORMAT_VERSION, UNET_ROLES } from '../../../daemon/onnx/prepare.js';
import { RUNTIME_SHAPES } from '../../../daemon/onnx/graph/runtime-shapes.js';
import { ROLES_IO, roleValue } from '../../../daemon/onnx/roles-model.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { unetRoles } from '../../../daemon/pipeline/unet-roles.js';
import { uniform } from './autodiff/op-harness.js';

type Prepared = Awaited<ReturnType<typeof preparePipelineGraphs>>;

function feedsFor(inputs: readonly { name: string; dtype: number; dims: readonly number[] }[], seed: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  inputs.forEach((i, k) => {
    const dims = i.dims.map((d) => (d > 0 ? d : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    feeds[i.name] = i.name === 'timestep' && i.dtype === 7
      ? new ort.Tensor('int64', new BigInt64Array(n).fill(601n), dims)
      : new ort.Tensor('float32', Float32Array.from(uniform(seed + k, n, i.name === 'timestep' ? 400 : -1, i.name === 'timestep' ? 700 : 1)), dims);
  });
  return feeds;
}

describe('the UNet roles model', () => {
  let dir: string;
  let prepared: Prepared;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-roles-'));
    await writeTinyStableDiffusion(dir, { seed: 3, flavour: 'opset17', components: ['unet', 'vae_encoder'] });
    prepared = await preparePipelineGraphs(dir, { height: 64, width: 64 });
  });

  it('holds each weight once, as an external initializer of the outer graph', async () => {
    const model = decodeModel(await readFile(prepared.roles.path));
    const outer = model.graph.initializer.filter(isExternal);
    const grad = decodeModel(await readFile(prepared.pair.gradPath)).graph.initializer.filter(isExternal);
    expect(outer.length).toBeGreaterThan(10);
    expect(new Set(outer.map((t) => t.name)).size).toBe(outer.length);
    // Every external weight any of the three graphs reads is among them.
    for (const t of grad) expect(outer.some((o) => o.name === t.name)).toBe(true);
    expect(model.graph.node.filter((n) => n.opType === 'If')).toHaveLength(3);
    expect(model.graph.input[0]?.name).toBe(ROLES_IO.selector);
    expect(prepared.roles.manifest.roles.map((r) => r.name)).toEqual([...UNET_ROLES]);
  });

  it('computes every branch’s shape operands at run time, so onnxruntime plans no buffer reuse', async () => {
    const model = decodeModel(await readFile(prepared.roles.path));
    for (const n of model.graph.node.filter((x) => x.opType === 'If')) {
      const branch = n.attribute.find((a) => a.name === 'then_branch')!.g as unknown as GraphProto;
      const constants = new Set(branch.initializer.map((t) => t.name));
      for (const c of branch.node) if (c.opType === 'Constant') constants.add(c.output[0]!);
      const shaped = branch.node.filter((c) => c.opType === 'Reshape' || c.opType === 'Expand');
      expect(shaped.length, n.name).toBeGreaterThan(0);
      for (const c of shaped) expect(constants.has(c.input[1]!), `${n.name}: ${c.name}`).toBe(false);
      expect(branch.node.some((c) => c.output.some((o) => o.endsWith(`${ROLES_IO.branchSeparator}${RUNTIME_SHAPES.prefix}_empty`)))).toBe(true);
    }
    expect(prepared.roles.manifest.format).toBe(ROLES_FORMAT_VERSION);
  });

  it('gives each role exactly the outputs of its own graph, and empty tensors for the others', async () => {
    const files = { single: prepared.single.xattnPath, pair: prepared.pair.xattnPath, grad: prepared.pair.gradPath };
    const roles = await ort.InferenceSession.create(prepared.roles.path);
    try {
      for (const [index, signature] of prepared.roles.manifest.roles.entries()) {
        const own = await ort.InferenceSession.create(files[signature.name as keyof typeof files]);
        const feeds = feedsFor(signature.inputs, 10 + index);
        const expected = await own.run(feeds);
        await own.release();
        const all: Record<string, ort.Tensor> = { [ROLES_IO.selector]: new ort.Tensor('int64', BigInt64Array.of(BigInt(index)), []) };
        for (const r of prepared.roles.manifest.roles) {
          for (const i of r.inputs) {
            all[roleValue(r.name, i.name)] = r.name === signature.name
              ? (feeds[i.name] as ort.Tensor)
              : i.dtype === 7
                ? new ort.Tensor('int64', new BigInt64Array(i.dims.length === 0 ? 1 : 0), i.dims.map(() => 0))
                : new ort.Tensor('float32', new Float32Array(i.dims.length === 0 ? 1 : 0), i.dims.map(() => 0));
          }
        }
        const out = await roles.run(all);
        for (const o of signature.outputs) {
          const got = out[roleValue(signature.name, o.name)] as ort.Tensor;
          const want = expected[o.name] as ort.Tensor;
          expect(got.dims).toEqual(want.dims);
          const g = got.data as Float32Array;
          const w = want.data as Float32Array;
          // The same kernels on the same values; onnxruntime may fuse a branch's nodes differently from
          // a top-level graph's, which changes float32 summation order only.
          let diff = 0;
          let scale = 0;
          for (let k = 0; k < w.length; k++) {
            diff = Math.max(diff, Math.abs(g[k]! - w[k]!));
            scale = Math.max(scale, Math.abs(w[k]!));
          }
          expect(diff, `${signature.name}/${o.name}`).toBeLessThanOrEqual(1e-5 * scale);
        }
        for (const r of prepared.roles.manifest.roles) {
          if (r.name === signature.name) continue;
          for (const o of r.outputs) {
            const t = out[roleValue(r.name, o.name)] as ort.Tensor;
            // Empty, or a scalar zero (a scalar cannot be empty).
            if (o.dims.length === 0) expect(Array.from(t.data as Float32Array)).toEqual([0]);
            else expect(t.size).toBe(0);
          }
        }
      }
    } finally {
      await roles.release();
    }
  });

  it('runs through unetRoles() with the graphs’ own names', async () => {
    const sessions = new Map<string, Promise<ort.InferenceSession>>();
    const paths: string[] = [];
    const models = {
      run: async (path: string, feeds: ort.InferenceSession.FeedsType) => {
        paths.push(path);
        if (!sessions.has(path)) sessions.set(path, ort.InferenceSession.create(path));
        return (await sessions.get(path)!).run(feeds);
      },
    };
    const unet = unetRoles(models, prepared.roles);
    const single = prepared.roles.manifest.roles.find((r) => r.name === 'single')!;
    const out = await unet.single(feedsFor(single.inputs, 40));
    expect(Object.keys(out).sort()).toEqual(single.outputs.map((o) => o.name).sort());
    const grad = prepared.roles.manifest.roles.find((r) => r.name === 'grad')!;
    const g = await unet.grad(feedsFor(grad.inputs, 41));
    expect(g.grad_sample?.dims).toEqual([2, 4, 8, 8]);
    expect(new Set(paths)).toEqual(new Set([prepared.roles.path]));
    await expect(unet.pair({})).rejects.toMatchObject({ code: 'E_INTERNAL' });
    for (const s of sessions.values()) await (await s).release();
  });

  it('is reused while its graphs are unchanged, and rebuilt when one of them changes', async () => {
    const again = await prepareRoles(prepared.single, prepared.pair);
    expect(again.reused).toBe(true);
    const before = (await stat(prepared.roles.path)).mtimeMs;
    // A rebuilt gradient graph of another size changes the manifest's record of it.
    const forced = await preparePipelineGraphs(dir, { height: 64, width: 64 }, { force: true });
    expect(forced.roles.reused).toBe(false);
    await utimes(prepared.roles.path, new Date(0), new Date(0));
    expect((await stat(prepared.roles.path)).mtimeMs).not.toBe(before);
    expect((await prepareRoles(forced.single, forced.pair)).reused).toBe(true);
  });
});
