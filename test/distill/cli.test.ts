// `p2pz distill pairs|register` as a command: flags checked before any work, a pairs run over the
// tiny model with its summary line, and registration of a run folder into a models directory.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { P2pzError } from '../../shared/protocol/index.js';
import { distillCommand } from '../../daemon/cli/distill.js';
import type { CliIo } from '../../daemon/cli/command.js';
import { readPairsManifest } from '../../daemon/distill/manifest.js';
import { writeTinyImg2Img } from '../../daemon/onnx/tiny/img2img.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';

let tmp = '';

function io(): CliIo & { out: (t: string) => void; text: () => string; errors: () => string } {
  let out = '';
  let err = '';
  return {
    out: (t) => { out += t; },
    err: (t) => { err += t; },
    env: { P2PZ_HOME: join(tmp, 'home') },
    text: () => out,
    errors: () => err,
  };
}

async function failure(args: string[]): Promise<P2pzError> {
  const err = await distillCommand.run(args, io()).catch((e: unknown) => e);
  if (!(err instanceof P2pzError)) throw new Error(`expected a P2pzError, got ${String(err)}`);
  return err;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'p2pz-distill-cli-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('p2pz distill', () => {
  it('checks its flags before doing any work', async () => {
    expect((await failure([])).message).toContain('Name a distill step: pairs or register.');
    expect((await failure(['train'])).message).toContain('Unknown distill step "train".');
    expect((await failure(['pairs', '--to', 'dog', '--images', tmp, '--out', tmp])).message).toContain('Both --from and --to are required.');
    expect((await failure(['pairs', '--from', 'cat', '--to', 'dog', '--out', tmp])).message).toContain('Both --images and --out are required.');
    const bad = await failure(['pairs', '--from', 'cat', '--to', 'dog', '--images', tmp, '--out', tmp, '--min-change', '2']);
    expect(bad.code).toBe('E_BAD_REQUEST');
    expect(bad.message).toContain('--min-change must be between 0 and 1.');
    expect((await failure(['pairs', '--from', 'cat', '--to', 'dog', '--images', tmp, '--out', tmp, '--size', '100'])).message).toContain('size');
    expect((await failure(['register'])).message).toContain('Give exactly one run folder.');
  });

  it('pairs: edits a folder with the tiny model and prints the summary', async () => {
    const models = join(tmp, 'models');
    await writeTinyStableDiffusion(join(models, 'tiny-sd'), { flavour: 'opset17' });
    await mkdir(join(tmp, 'images'));
    const raw = Buffer.from(Uint8Array.from({ length: 48 * 32 * 3 }, (_, i) => (i * 29) & 255));
    await writeFile(join(tmp, 'images/one.png'), await sharp(raw, { raw: { width: 48, height: 32, channels: 3 } }).png().toBuffer());
    const cli = io();
    const code = await distillCommand.run(
      ['pairs', '--from', 'cat', '--to', 'dog', '--images', join(tmp, 'images'), '--out', join(tmp, 'dataset'), '--model', join(models, 'tiny-sd'),
        '--steps', '1', '--reg-steps', '0', '--size', '64', '--device', 'cpu', '--min-change', '0', '--min-mask', '0'],
      cli,
    );
    expect(code).toBe(0);
    expect(cli.text()).toMatch(/manifest\.json: 1 kept, 0 dropped, 0 failed of 1 \(1 made now, 0 done before\)\n$/);
    expect(cli.errors()).toMatch(/^\[1\/1\] one\.png: kept mask \d\.\d{3}, change \d\.\d{3}, \d+\.\d s\n$/);
    const manifest = await readPairsManifest(join(tmp, 'dataset/manifest.json'));
    expect(manifest?.settings).toMatchObject({ steps: 1, regSteps: 0, size: 64 });
    expect(manifest?.filter).toMatchObject({ minChange: 0, minMaskCoverage: 0, maxChange: 0.5 });
  });

  it('register: installs a run folder into the models directory given, or $P2PZ_HOME/models', async () => {
    const run = join(tmp, 'run');
    await mkdir(run);
    await writeTinyImg2Img(join(run, 'generator.onnx'), { channels: 2 });
    await writeFile(join(run, 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'dog', size: 64 }));
    const cli = io();
    expect(await distillCommand.run(['register', run], cli)).toBe(0);
    expect(cli.text()).toBe('installed gan/cat-dog: cat → dog, working size 64 (no PyTorch check pair; 64×64 checked)\n');
    const again = io();
    expect(await distillCommand.run(['register', run, '--models', join(tmp, 'home/models')], again)).toBe(0);
    expect(again.text()).toMatch(/^replaced gan\/cat-dog/);
  });
});
