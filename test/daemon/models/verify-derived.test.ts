// `p2pz models verify` knows the files `prepare` derives next to the originals: for an encoder that
// samples inside its graph (latent_sample), the derived VAE parameters graph, as well as the UNet's
// derived graphs, are neither problems nor unrecorded files.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { installFromFolder } from '../../../daemon/models/install.js';
import { verifyModel } from '../../../daemon/models/verify.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

it('a prepared latent_sample model verifies with no unrecorded files', async () => {
  const root = await mkdtemp(join(tmpdir(), 'p2pz-verify-'));
  dirs.push(root);
  const source = join(root, 'export');
  const models = join(root, 'models');
  await writeTinyStableDiffusion(source, { vaeEncoderOutput: 'latent_sample' });
  await installFromFolder({ modelsDir: models, folder: source, name: 'sampling-vae', prepareSize: 64 });
  // The install derived the VAE parameters graph and the UNet graphs.
  expect(await readdir(join(models, 'sampling-vae', 'vae_encoder'))).toEqual(expect.arrayContaining(['model.params.onnx', 'model.params.json']));
  const report = await verifyModel(models, 'sampling-vae');
  expect(report.problems).toEqual([]);
  expect(report.ok).toBe(true);
  expect(report.unrecorded).toEqual([]);
});
