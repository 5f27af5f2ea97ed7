// docs/SECURITY.md §R19 for installed models: listing, verifying, sizing and removing models never read anything
// outside the models directory. The traps are links to a FIFO outside it: opening one for reading
// would block forever, so a test that finishes proves the file was never opened. A model folder that
// is itself a link is not listed, and removing it removes the link only.
import { execFileSync } from 'node:child_process';
import { link, lstat, mkdir, mkdtemp, readdir, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { installFromFolder } from '../../../daemon/models/install.js';
import { modelFootprint } from '../../../daemon/models/memory-estimate.js';
import { listModels, removeModel } from '../../../daemon/models/registry.js';
import { verifyModel } from '../../../daemon/models/verify.js';
import { listInstalledModels } from '../../../daemon/server/installed-models.js';

let work: string;
let models: string;
let outside: string;
let fifo: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-contain-'));
  models = join(work, 'models');
  outside = join(work, 'outside');
  await mkdir(models);
  await mkdir(outside);
  const source = join(work, 'source');
  await writeTinyStableDiffusion(source, { components: ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder', 'tokenizer', 'scheduler'] });
  fifo = join(outside, 'trap.fifo');
  execFileSync('mkfifo', [fifo]);
  // A fake install record outside: if it were read, the model would show as a demo.
  await writeFile(join(outside, 'record.json'), JSON.stringify({ format: 1, name: 'x', kind: 'diffusion', demo: true, source: { kind: 'folder' }, installedAt: 'now', files: [] }));

  for (const name of ['good', 'linked-file', 'linked-record', 'hardlinked']) {
    await installFromFolder({ modelsDir: models, folder: source, name, prepareSize: 0 });
  }
  await unlink(join(models, 'linked-file', 'unet', 'weights.pb'));
  await symlink(fifo, join(models, 'linked-file', 'unet', 'weights.pb'));
  await unlink(join(models, 'linked-record', 'p2pz-install.json'));
  await symlink(join(outside, 'record.json'), join(models, 'linked-record', 'p2pz-install.json'));
  await writeFile(join(outside, 'vocab.json'), '{}');
  await unlink(join(models, 'hardlinked', 'tokenizer', 'vocab.json'));
  await link(join(outside, 'vocab.json'), join(models, 'hardlinked', 'tokenizer', 'vocab.json'));
  // A whole model folder that is a link to a folder outside.
  await installFromFolder({ modelsDir: outside, folder: source, name: 'elsewhere', prepareSize: 0 });
  await symlink(join(outside, 'elsewhere'), join(models, 'linked-folder'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('containment of installed models (R19)', () => {
  it('lists models with the links found inside, without following them', { timeout: 10_000 }, async () => {
    const list = await listModels(models);
    expect(list.map((m) => m.name)).toEqual(['good', 'hardlinked', 'linked-file', 'linked-record']);
    const byName = new Map(list.map((m) => [m.name, m]));
    expect(byName.get('good')?.problems).toEqual([]);
    expect(byName.get('linked-file')?.problems).toEqual(['unet/weights.pb: a symbolic link (not followed)']);
    expect(byName.get('hardlinked')?.problems).toEqual(['tokenizer/vocab.json: has another hard link, possibly outside the models directory']);
    // The linked record was not read: no source, not a demo.
    expect(byName.get('linked-record')?.source).toBeUndefined();
    expect(byName.get('linked-record')?.demo).toBe(false);
    expect((await listInstalledModels(models)).find((m) => m.name === 'linked-record')?.demo).toBe(false);
    expect((await listInstalledModels(models)).map((m) => m.name)).not.toContain('linked-folder');
  });

  it('verify reports links and hard links as problems and reads none of them', { timeout: 10_000 }, async () => {
    expect((await verifyModel(models, 'good')).ok).toBe(true);
    const linked = await verifyModel(models, 'linked-file');
    expect(linked.ok).toBe(false);
    expect(linked.problems).toEqual(['unet/weights.pb: a symbolic link (not followed)']);
    const hard = await verifyModel(models, 'hardlinked');
    expect(hard.problems).toEqual(['tokenizer/vocab.json: has another hard link, possibly outside the models directory']);
    const record = await verifyModel(models, 'linked-record');
    expect(record.problems).toContain('p2pz-install.json: a symbolic link (not followed)');
    const err = await verifyModel(models, 'linked-folder').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_MODEL_INVALID');
  });

  it('sizes a model for the memory estimate with lstat only', { timeout: 10_000 }, async () => {
    const good = await modelFootprint(models, 'good');
    const linked = await modelFootprint(models, 'linked-file');
    const weights = (await stat(join(models, 'good', 'unet', 'weights.pb'))).size;
    // The link is not counted (and not opened).
    expect(good.unetBytes - linked.unetBytes).toBe(weights);
    await expect(modelFootprint(models, 'linked-folder')).rejects.toMatchObject({ code: 'E_MODEL_INVALID' });
  });

  it('removing a linked folder removes the link, not what it points at', async () => {
    await removeModel(models, 'linked-folder');
    await expect(lstat(join(models, 'linked-folder'))).rejects.toThrow();
    expect((await readdir(join(outside, 'elsewhere'))).length).toBeGreaterThan(3);
  });

  it('refuses names that are paths', async () => {
    for (const name of ['../outside', 'gan/../good', '.downloads', 'a/b', '', 'gan']) {
      await expect(removeModel(models, name), name).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    }
    await expect(removeModel(models, 'absent')).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
    expect((await stat(join(models, 'good'))).isDirectory()).toBe(true);
  });

  it('an install from a folder of links (a hub cache snapshot) stores regular files', async () => {
    const snapshot = join(work, 'snapshot');
    const good = join(models, 'good');
    for (const f of ['model_index.json', 'text_encoder/model.onnx', 'unet/model.onnx', 'unet/weights.pb', 'vae_encoder/model.onnx', 'vae_decoder/model.onnx', 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'scheduler/scheduler_config.json']) {
      await mkdir(join(snapshot, f, '..'), { recursive: true });
      await symlink(join(good, f), join(snapshot, f));
    }
    await installFromFolder({ modelsDir: models, folder: snapshot, name: 'from-links', prepareSize: 0 });
    const info = await lstat(join(models, 'from-links', 'unet', 'weights.pb'));
    expect(info.isFile() && !info.isSymbolicLink()).toBe(true);
    expect((await verifyModel(models, 'from-links')).ok).toBe(true);
  });
});
