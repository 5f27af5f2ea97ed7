// docs/SECURITY.md §R19: models load only from inside the models directory: `..`, symbolic links of files or folders
// leading out, and files with a second hard link are refused; links that stay inside are fine.
import { link, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveModelPath } from '../../../daemon/models/model-path.js';

let root: string;
let models: string;

beforeAll(async () => {
  root = await realpath(await mkdtemp(join(tmpdir(), 'p2pz-model-path-')));
  models = join(root, 'models');
  await mkdir(join(models, 'sd', 'unet'), { recursive: true });
  await mkdir(join(root, 'outside'), { recursive: true });
  await writeFile(join(models, 'sd', 'unet', 'model.onnx'), 'inside');
  await writeFile(join(root, 'outside', 'model.onnx'), 'outside');
  await writeFile(join(root, 'outside', 'linked.onnx'), 'outside, hard-linked in');
  // Links that lead out of the models directory.
  await symlink(join(root, 'outside', 'model.onnx'), join(models, 'escape.onnx'));
  await symlink(join(root, 'outside'), join(models, 'escape-dir'));
  await link(join(root, 'outside', 'linked.onnx'), join(models, 'hardlink.onnx'));
  // A link that stays inside.
  await symlink(join(models, 'sd', 'unet', 'model.onnx'), join(models, 'alias.onnx'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const code = (p: Promise<unknown>) => p.then(() => 'resolved', (e: { code?: string }) => e.code);

describe('resolveModelPath', () => {
  it('resolves relative and absolute paths inside the models directory to the real file', async () => {
    const real = join(models, 'sd', 'unet', 'model.onnx');
    expect(await resolveModelPath(models, 'sd/unet/model.onnx')).toBe(real);
    expect(await resolveModelPath(models, real)).toBe(real);
    expect(await resolveModelPath(models, 'alias.onnx')).toBe(real);
  });

  it('refuses paths that leave the directory', async () => {
    expect(await code(resolveModelPath(models, '../outside/model.onnx'))).toBe('E_MODEL_INVALID');
    expect(await code(resolveModelPath(models, join(root, 'outside', 'model.onnx')))).toBe('E_MODEL_INVALID');
    expect(await code(resolveModelPath(models, 'sd/../../outside/model.onnx'))).toBe('E_MODEL_INVALID');
    expect(await code(resolveModelPath(models, '.'))).toBe('E_MODEL_INVALID');
  });

  it('refuses symbolic links of files and folders that lead out', async () => {
    await expect(resolveModelPath(models, 'escape.onnx')).rejects.toMatchObject({
      code: 'E_MODEL_INVALID',
      message: 'The installed model is damaged or incomplete. A model file lies outside the models directory.',
    });
    expect(await code(resolveModelPath(models, 'escape-dir/model.onnx'))).toBe('E_MODEL_INVALID');
  });

  it('refuses a file with a second hard link unless told otherwise', async () => {
    expect(await code(resolveModelPath(models, 'hardlink.onnx'))).toBe('E_MODEL_INVALID');
    expect(await resolveModelPath(models, 'hardlink.onnx', false)).toBe(join(models, 'hardlink.onnx'));
  });

  it('a missing file is E_MODEL_MISSING, a folder E_MODEL_INVALID', async () => {
    expect(await code(resolveModelPath(models, 'sd/vae_decoder/model.onnx'))).toBe('E_MODEL_MISSING');
    expect(await code(resolveModelPath(models, 'sd/unet'))).toBe('E_MODEL_INVALID');
  });
});
