// prepareModel and `p2pz models prepare`: derived graphs written next to the UNet, sharing its
// external weights file (never copied or modified), reused while the manifest matches the source,
// rebuilt when the UNet changes or on --force. preparePipelineGraphs adds the VAE encoder's
// parameters graph when the encoder outputs latent_sample.
import { beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { modelsPrepare } from '../../../daemon/cli/models-prepare.js';
import { isExternal } from '../../../daemon/onnx/graph/onnx-proto.js';
import { decodeModel } from '../../../daemon/onnx/graph/model-io.js';
import { PREPARE_FORMAT_VERSION, PreparedManifest, prepareModel, preparePipelineGraphs } from '../../../daemon/onnx/prepare.js';
import { TINY_SD, writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { writeUNet } from '../../../daemon/onnx/tiny/unet.js';
import { P2pzError } from '../../../shared/protocol/errors.js';

const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

async function modelFolder(seed: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'p2pz-prepare-'));
  await mkdir(join(dir, 'unet'));
  await writeUNet(join(dir, 'unet/model.onnx'), TINY_SD.unet, { seed, flavour: 'opset17' });
  return dir;
}

describe('prepareModel', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await modelFolder(1);
  });

  it('writes both graphs referencing the original weights file, then reuses them', async () => {
    const weights = join(dir, 'unet/model.onnx_data');
    const weightsHash = await sha(weights);
    const originalHash = await sha(join(dir, 'unet/model.onnx'));
    const r = await prepareModel(dir, { height: 64, width: 64 });
    expect(r.reused).toBe(false);
    expect(r.xattnPath).toBe(join(dir, 'unet/model.xattn.8x8.onnx'));
    expect(r.gradPath).toBe(join(dir, 'unet/model.grad.8x8.onnx'));
    const manifest = PreparedManifest.parse(JSON.parse(await readFile(r.manifestPath, 'utf8')));
    expect(manifest).toEqual(r.manifest);
    expect(manifest.sites).toHaveLength(7);
    expect(manifest.source.sha256).toBe(originalHash);
    // Weights are shared, not copied: every large tensor stays an external reference.
    const weightsSize = (await stat(weights)).size;
    for (const p of [r.xattnPath, r.gradPath]) {
      const m = decodeModel(await readFile(p));
      const external = m.graph.initializer.filter(isExternal);
      expect(external.length).toBeGreaterThan(10);
      for (const t of external) expect(t.externalData?.find((e) => e.key === 'location')?.value).toBe('model.onnx_data');
      expect((await stat(p)).size).toBeLessThan(weightsSize / 4);
    }
    expect(await sha(weights)).toBe(weightsHash);
    expect(await sha(join(dir, 'unet/model.onnx'))).toBe(originalHash);
    const s = await ort.InferenceSession.create(r.gradPath);
    expect(s.outputNames).toEqual(expect.arrayContaining(['out_sample', 'attn_map_00', 'attn_map_06', 'loss', 'grad_sample']));
    expect(s.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states', ...manifest.sites.map((_, i) => `attn_ref_0${i}`)]);
    await s.release();

    const before = (await stat(r.gradPath)).mtimeMs;
    const again = await prepareModel(dir, { height: 64, width: 64 });
    expect(again.reused).toBe(true);
    expect(again.manifest).toEqual(manifest);
    expect((await stat(r.gradPath)).mtimeMs).toBe(before);
    expect((await prepareModel(dir, { height: 64, width: 64, force: true })).reused).toBe(false);
  });

  it('shares one build between concurrent calls for the same graphs', async () => {
    const d = await modelFolder(5);
    const [a, b] = await Promise.all([prepareModel(d, { height: 32, width: 32 }), prepareModel(d, { height: 32, width: 32 })]);
    expect(a).toBe(b);
    expect(a.reused).toBe(false);
  });

  it('names other batches apart and rebuilds when the UNet changes', async () => {
    const d = await modelFolder(2);
    const b1 = await prepareModel(d, { height: 64, width: 32, batch: 1 });
    expect(b1.gradPath).toBe(join(d, 'unet/model.grad.8x4.b1.onnx'));
    expect(b1.manifest.sites[0]?.queries).toBe(32);
    await writeUNet(join(d, 'unet/model.onnx'), TINY_SD.unet, { seed: 3, flavour: 'opset17' });
    const r = await prepareModel(d, { height: 64, width: 32, batch: 1 });
    expect(r.reused).toBe(false);
  });

  it("graphs: 'xattn' writes the cross-attention graph alone; a later request for both adds the gradient graph", async () => {
    const d = await modelFolder(6);
    const only = await prepareModel(d, { height: 32, width: 32, batch: 1, graphs: 'xattn' });
    expect(only.reused).toBe(false);
    expect('gradPath' in only).toBe(false);
    expect(only.manifest.files).toEqual({ xattn: 'model.xattn.4x4.b1.onnx' });
    expect(only.manifest.format).toBe(PREPARE_FORMAT_VERSION);
    await expect(stat(join(d, 'unet/model.grad.4x4.b1.onnx'))).rejects.toMatchObject({ code: 'ENOENT' });
    const s = await ort.InferenceSession.create(only.xattnPath);
    expect(s.outputNames).toEqual(expect.arrayContaining(['out_sample', 'attn_map_00']));
    expect(s.outputNames).not.toContain('grad_sample');
    await s.release();
    expect((await prepareModel(d, { height: 32, width: 32, batch: 1, graphs: 'xattn' })).reused).toBe(true);

    const xattnWritten = (await stat(only.xattnPath)).mtimeMs;
    const both = await prepareModel(d, { height: 32, width: 32, batch: 1 });
    expect(both.reused).toBe(false);
    expect(both.gradPath).toBe(join(d, 'unet/model.grad.4x4.b1.onnx'));
    expect(both.manifest.files).toEqual({ xattn: 'model.xattn.4x4.b1.onnx', grad: 'model.grad.4x4.b1.onnx' });
    expect(both.manifest.sites).toEqual(only.manifest.sites);
    expect((await stat(only.xattnPath)).mtimeMs).toBe(xattnWritten); // kept, not derived again
    expect(PreparedManifest.parse(JSON.parse(await readFile(both.manifestPath, 'utf8')))).toEqual(both.manifest);
    // Both present: either request is a no-op.
    expect((await prepareModel(d, { height: 32, width: 32, batch: 1, graphs: 'xattn' })).reused).toBe(true);
    expect((await prepareModel(d, { height: 32, width: 32, batch: 1 })).reused).toBe(true);
    // Graphs of formats 1 and 2 (whole attention scores, no query blocks) are derived again, and so
    // are unknown formats.
    for (const format of [1, 2]) {
      await writeFile(both.manifestPath, JSON.stringify({ ...both.manifest, format }));
      const again = await prepareModel(d, { height: 32, width: 32, batch: 1 });
      expect(again.reused).toBe(false);
      expect(again.manifest.format).toBe(PREPARE_FORMAT_VERSION);
    }
    expect((await prepareModel(d, { height: 32, width: 32, batch: 1 })).reused).toBe(true);
    await writeFile(both.manifestPath, JSON.stringify({ ...both.manifest, format: 99 }));
    const rebuilt = await prepareModel(d, { height: 32, width: 32, batch: 1 });
    expect(rebuilt.reused).toBe(false);
    expect(rebuilt.manifest.format).toBe(PREPARE_FORMAT_VERSION);
  });

  it('remembers the source per UNet path only while its stat is unchanged', async () => {
    const d = await modelFolder(7);
    const first = await prepareModel(d, { height: 32, width: 32 });
    expect((await prepareModel(d, { height: 32, width: 32 })).reused).toBe(true);
    const unet = join(d, 'unet/model.onnx');
    const bytes = await readFile(unet);
    // A rewrite (new ctime) is hashed again: the same bytes stay current, other bytes rebuild.
    await writeFile(unet, bytes);
    const again = await prepareModel(d, { height: 32, width: 32 });
    expect(again.manifest.source.sha256).toBe(first.manifest.source.sha256);
    expect(again.reused).toBe(true);
    await writeUNet(unet, TINY_SD.unet, { seed: 8, flavour: 'opset17' });
    const rebuilt = await prepareModel(d, { height: 32, width: 32 });
    expect(rebuilt.reused).toBe(false);
    expect(rebuilt.manifest.source.sha256).toBe(await sha(unet));
  });

  it('refuses sizes that are not multiples of 8 and folders without a UNet', async () => {
    await expect(prepareModel(dir, { height: 60, width: 64 })).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    // Latent 9×8: the tiny UNet's ×2 down- and upsampling cannot restore 9 rows for the skip connection.
    await expect(prepareModel(dir, { height: 72, width: 64 })).rejects.toMatchObject({
      code: 'E_BAD_REQUEST', message: expect.stringContaining('cannot run at 64×72 pixels'), hint: expect.stringContaining('multiples of 64'),
    });
    const empty = await mkdtemp(join(tmpdir(), 'p2pz-empty-'));
    const err = await prepareModel(empty, { height: 64, width: 64 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_MODEL_MISSING');
  });
});

describe('p2pz models prepare', () => {
  it('prepares, then reports up to date; errors print message and hint with exit code 1', async () => {
    const dir = await modelFolder(4);
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t), env: {} };
    expect(await modelsPrepare([dir, '--size', '64', '--batch', '2'], io)).toBe(0);
    expect(await modelsPrepare([dir, '--height', '64', '--width', '64', '--batch', '2'], io)).toBe(0);
    expect(out[0]).toMatch(/^prepared: model\.xattn\.8x8\.onnx, model\.grad\.8x8\.onnx \(7 cross-attention layers/);
    expect(out[1]).toMatch(/^up to date:/);
    expect(await modelsPrepare([join(dir, 'nope'), '--size', '64'], io)).toBe(1);
    expect(err[0]).toContain('The model this edit needs is not installed.');
    expect(await modelsPrepare([dir, '--size', 'big'], io)).toBe(1);
    expect(err[1]).toContain('--size must be a whole number');
  });
});

describe('p2pz models prepare without --batch', () => {
  it('derives every graph the pipeline runs: both UNet batches and the VAE parameters of a sampling encoder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'p2pz-prepare-cli-'));
    await writeTinyStableDiffusion(dir, { components: ['unet', 'vae_encoder'], vaeEncoderOutput: 'latent_sample' });
    const out: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => out.push(t), env: {} };
    expect(await modelsPrepare([dir, '--size', '64'], io)).toBe(0);
    expect(out).toEqual([
      expect.stringMatching(/^prepared: model\.xattn\.8x8\.onnx, model\.grad\.8x8\.onnx \(\d+ cross-attention layers, latent 8×8, batch 2\)$/),
      'prepared: model.xattn.8x8.b1.onnx (reference pass, batch 1)',
      'prepared: model.roles.8x8.onnx (the three graphs in one model, one copy of the weights)',
      'prepared: vae_encoder/model.params.onnx (the encoder\'s posterior parameters)',
      'precision: fp32 (CPU provider)',
    ]);
    expect(await readdir(join(dir, 'unet'))).not.toContain('model.grad.8x8.b1.onnx');
    expect(await modelsPrepare([dir, '--size', '64'], io)).toBe(0);
    expect(out.slice(5, 9).every((line) => line.startsWith('up to date: '))).toBe(true);
    expect(out[9]).toBe('precision: fp32 (CPU provider)');
    await rm(dir, { recursive: true, force: true });
  });
});

describe('preparePipelineGraphs', () => {
  it('adds the VAE parameters graph for an encoder that outputs latent_sample, and nothing for latent_parameters', async () => {
    for (const output of ['latent_sample', 'latent_parameters'] as const) {
      const dir = await mkdtemp(join(tmpdir(), 'p2pz-prepare-pipeline-'));
      await writeTinyStableDiffusion(dir, { components: ['unet', 'vae_encoder'], vaeEncoderOutput: output });
      const first = await preparePipelineGraphs(dir, { height: 64, width: 64 });
      expect(first.single.xattnPath).toBe(join(dir, 'unet/model.xattn.8x8.b1.onnx'));
      expect(first.pair.gradPath).toBe(join(dir, 'unet/model.grad.8x8.onnx'));
      if (output === 'latent_parameters') {
        expect(first.vae).toBeNull();
        continue;
      }
      expect(first.vae?.path).toBe(join(dir, 'vae_encoder/model.params.onnx'));
      expect(first.vae?.reused).toBe(false);
      const s = await ort.InferenceSession.create(first.vae!.path);
      expect(s.outputNames).toEqual(['latent_parameters']);
      await s.release();
      const again = await preparePipelineGraphs(dir, { height: 64, width: 64 });
      expect([again.single.reused, again.pair.reused, again.vae?.reused]).toEqual([true, true, true]);
    }
  });
});
