// The PyTorch replay (models/reference/replay_dump.py) of a real `p2pz edit --dump` run (captioned by the tiny
// BLIP captioner installed beside the model) on the generated
// tiny model: every check passes; a perturbed latent or roll offset makes it fail, naming the step.
// The input is 192×128 (latent 24×16), so the autocorrelation pyramid has two levels (16 → 8 rows) and
// the width roll differs from the height roll; `--vae-latent sample` exercises the seeded noise too.
// Debian's python3-torch lives under /usr/bin/python3; P2PZ_PYTHON overrides the interpreter.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyCaptioner } from '../../daemon/onnx/tiny/blip-captioner.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { decodeNpy, encodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { REPO, run, type Run } from '../fixtures/run-command.js';

const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
const REPLAY = join(REPO, 'models/reference/replay_dump.py');
const STEPS = 3;

let dir: string;
let modelDir: string;
let dump: string;

const replay = (folder: string): Promise<Run> => run(PYTHON, [REPLAY, folder, '--model', modelDir]);

/** A copy of the dump with one change made by `edit`. */
async function perturbed(name: string, edit: (folder: string) => Promise<void>): Promise<string> {
  const folder = join(dir, name);
  await cp(dump, folder, { recursive: true });
  await edit(folder);
  return folder;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-replay-'));
  modelDir = join(dir, 'model');
  dump = join(dir, 'dump');
  await writeTinyStableDiffusion(modelDir, { flavour: 'opset17' });
  // A captioner beside the model: the edit (no --caption) captions the input, as pix2pix-zero does.
  await writeTinyCaptioner(join(dir, 'captioner', 'tiny-blip'));
  const [width, height] = [192, 128];
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[3 * i] = (i * 7) & 255;
    rgb[3 * i + 1] = Math.round((i % width) * 1.3);
    rgb[3 * i + 2] = Math.floor(i / width) * 2;
  }
  const input = join(dir, 'in.png');
  await writeFile(input, await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer());
  const edit = await run(process.execPath, [
    'bin/p2pz.js', 'edit', input, '--model', modelDir, '--from', 'cat', '--to', 'dog', '--steps', String(STEPS), '--reg-steps', '2',
    '--size', '192', '--seed', '7', '--bank-count', '4', '--vae-latent', 'sample', '--device', 'cpu', '--out', join(dir, 'out.png'), '--dump', dump,
  ], { P2PZ_HOME: join(dir, 'home') });
  expect(edit.stderr + edit.stdout).toMatch(/out\.png: cat → dog \(diffusion, cpu,/);
  expect(edit.code).toBe(0);
  const caption = /^caption: "(.*)" \(captioner tiny-blip\)$/m.exec(edit.stderr)?.[1];
  expect(caption).toBeTruthy();
  expect(JSON.parse(await readFile(join(dump, 'meta.json'), 'utf8')).caption).toBe(caption);
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('models/reference/replay_dump.py', () => {
  it('replays the whole dump: every check passes', async () => {
    const r = await replay(dump);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d+ passed, 0 failed$/m);
    expect(r.stdout).not.toMatch(/^FAIL /m);
    // The checks that carry the algorithm ran, at every step.
    for (let k = 0; k < STEPS; k++) {
      const n = String(k).padStart(3, '0');
      expect(r.stdout).toMatch(new RegExp(`^PASS inversion/${n}_eps_reg = official regularization \\(autograd\\)`, 'm'));
      expect(r.stdout).toMatch(new RegExp(`^PASS inversion/${n}_z = DDIM inversion step`, 'm'));
    }
    expect(r.stdout).toMatch(/^PASS inversion\/000_rolls\.json \[2\]\[5\]\[4\]\[2\]/m);
    expect(r.stdout).toMatch(/^PASS roll offsets = random\.Random\(seed\)/m);
    expect(r.stdout).toMatch(/^PASS z0_noise = random\.gauss/m);
    expect(r.stdout).toMatch(/^PASS reference\/001_z = DDIM step/m);
    expect(r.stdout).toMatch(/^PASS reference\/002_z = DDIM step at t=\d+ of reference\/001_z with reference\/001_eps/m);
    expect(r.stdout).toMatch(/^PASS edit\/001_z = DDIM step/m);
    expect(r.stdout).toMatch(/^PASS z_final = DDIM step/m);
  });

  it('fails, naming the step, when one edit latent is perturbed', async () => {
    const folder = await perturbed('bad-latent', async (f) => {
      const file = join(f, 'edit/001_z.npy');
      const z = decodeNpy(await readFile(file));
      const data = Float32Array.from(z.data as Float32Array);
      data[5] = data[5]! + 1e-3;
      await writeFile(file, encodeNpy(data, z.shape));
    });
    const r = await replay(folder);
    expect(r.code).toBe(1);
    // edit/001_z is both the result of step 0 and the input of step 1.
    expect(r.stdout).toMatch(/^FAIL edit\/001_z = DDIM step at t=667 of edit\/000_z/m);
    expect(r.stdout).toMatch(/^FAIL edit\/002_z = DDIM step at t=334 of edit\/001_z/m);
    expect(r.stdout).toMatch(/^\d+ passed, 2 failed$/m);
  });

  it('fails, naming the step, when one roll offset differs from the one used', async () => {
    const folder = await perturbed('bad-roll', async (f) => {
      const file = join(f, 'inversion/001_rolls.json');
      const rolls = JSON.parse(await readFile(file, 'utf8')) as number[][][][];
      const level0 = rolls[1]![2]![3]!;
      // Level 0 has 16 rows: δ ∈ 1..7; δ ± 1 is still valid and, never being 16 − δ, changes L_ac.
      level0[0] = level0[0]! < 7 ? level0[0]! + 1 : level0[0]! - 1;
      await writeFile(file, JSON.stringify(rolls));
    });
    const r = await replay(folder);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL inversion\/001_eps_reg = official regularization/m);
    expect(r.stdout).toMatch(/^FAIL roll offsets = random\.Random\(seed\)/m);
    expect(r.stdout).toMatch(/^PASS inversion\/000_eps_reg = official regularization/m);
    expect(r.stdout).toMatch(/^\d+ passed, 2 failed$/m);
  });
});
