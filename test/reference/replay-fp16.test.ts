// float16 models, end to end on the generated tiny model (models/reference/README.md, "float16"):
//   A  the float32 export;
//   B  the same folder after `p2pz models prepare --precision fp16` (UNet weights rounded to float16,
//      computed in float32 on the CPU provider);
//   C  the same weights as `optimum-cli export onnx --fp16` writes them (every component float16).
// The same `p2pz edit --dump` on each: B and C edit, say which precision ran, replay in
// models/reference/replay_dump.py with 0 failed at its default tolerance (the replay recomputes the
// scheduler and regularization arithmetic from the dumped network outputs, float32/float64 whatever
// the weights), and differ from A by no more than the stated float16 tolerance, yet do differ.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { decodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { REPO, run, type Run } from '../fixtures/run-command.js';

const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
const REPLAY = join(REPO, 'models/reference/replay_dump.py');
const STEPS = 3;
/** float16's unit roundoff 2⁻¹¹ and the README's bound: relative L2 ≤ 10·u·√K for latents and ε after
 *  K UNet evaluations along the path (inversion, then edit), twice that for ∂L/∂x. */
const U = 2 ** -11;
const bound = (k: number, factor = 1): number => factor * 10 * U * Math.sqrt(k);

let dir: string;
const edits: Record<'A' | 'B' | 'C', Run> = {} as Record<'A' | 'B' | 'C', Run>;

const relL2 = async (run1: string, run2: string, file: string): Promise<number> => {
  const a = decodeNpy(await readFile(join(dir, `dump-${run1}`, file))).data as Float32Array;
  const b = decodeNpy(await readFile(join(dir, `dump-${run2}`, file))).data as Float32Array;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += ((b[i] as number) - (a[i] as number)) ** 2;
    den += (a[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-fp16-'));
  await writeTinyStableDiffusion(join(dir, 'A'), { flavour: 'opset17' });
  await writeTinyStableDiffusion(join(dir, 'B'), { flavour: 'opset17' });
  await writeTinyStableDiffusion(join(dir, 'C'), { flavour: 'opset17', precision: 'fp16' });
  const prep = await run(process.execPath, ['bin/p2pz.js', 'models', 'prepare', join(dir, 'B'), '--size', '128', '--precision', 'fp16']);
  expect(prep.code).toBe(0);
  expect(prep.stdout).toMatch(/^precision: fp16 weights computed in fp32 \(CPU provider\)$/m);
  const [width, height] = [128, 128];
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) & 255;
  const input = join(dir, 'in.png');
  await writeFile(input, await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer());
  for (const m of ['A', 'B', 'C'] as const) {
    edits[m] = await run(process.execPath, [
      'bin/p2pz.js', 'edit', input, '--model', join(dir, m), '--from', 'cat', '--to', 'dog', '--caption', 'a photo of a cat',
      '--steps', String(STEPS), '--reg-steps', '2', '--size', '128', '--seed', '3', '--bank-count', '4', '--device', 'cpu',
      '--out', join(dir, `out-${m}.png`), '--dump', join(dir, `dump-${m}`),
    ], { P2PZ_HOME: join(dir, 'home') });
  }
}, 240_000);

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('float16 models: edit, replay, and the float16 tolerance', () => {
  it('edits all three, saying which precision the UNet ran in', () => {
    for (const m of ['A', 'B', 'C'] as const) {
      expect(edits[m].stderr + edits[m].stdout).toMatch(/out-[ABC]\.png: cat → dog \(diffusion, cpu,/);
      expect(edits[m].code).toBe(0);
    }
    expect(edits.A.stderr).not.toMatch(/The UNet ran in/);
    expect(edits.B.stderr).toMatch(/The UNet ran in fp16 weights computed in fp32 \(prepared model\.xattn\.16x16\.fp16-fp32\.onnx\)/);
    expect(edits.C.stderr).toMatch(/The UNet ran in fp16 weights computed in fp32/);
  });

  it('replays both float16 runs with 0 failed at the replay\'s default tolerance', async () => {
    for (const m of ['B', 'C']) {
      const r = await run(PYTHON, [REPLAY, join(dir, `dump-${m}`), '--model', join(dir, m)]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^\d+ passed, 0 failed$/m);
      expect(r.stdout).toMatch(/^PASS z_final = DDIM step/m);
      expect(r.code).toBe(0);
    }
  });

  it('stays within the float16 tolerance of the float32 run, and is not the float32 run', async () => {
    for (const m of ['B', 'C']) {
      for (let k = 0; k < STEPS; k++) {
        const n = String(k).padStart(3, '0');
        // K: the inversion's STEPS evaluations, then k + 1 edit steps.
        const K = STEPS + k + 1;
        expect(await relL2('A', m, `inversion/${n}_eps.npy`), `${m} inversion ${n}`).toBeLessThan(bound(k + 1));
        expect(await relL2('A', m, `edit/${n}_eps.npy`), `${m} eps ${n}`).toBeLessThan(bound(K));
        expect(await relL2('A', m, `edit/${n}_grad.npy`), `${m} grad ${n}`).toBeLessThan(bound(K, 2));
        expect(await relL2('A', m, `edit/${n}_z.npy`), `${m} z ${n}`).toBeLessThan(bound(K));
      }
      const final = await relL2('A', m, 'z_final.npy');
      expect(final).toBeLessThan(bound(2 * STEPS));
      expect(final).toBeGreaterThan(1e-5);
      expect(await relL2('A', m, 'image_out.npy')).toBeLessThan(bound(2 * STEPS));
    }
    // B changes the UNet only: the text side is the float32 one, bit for bit.
    expect(await relL2('A', 'B', 'e_caption.npy')).toBe(0);
    // C's text encoder is float16 too.
    expect(await relL2('A', 'C', 'e_caption.npy')).toBeGreaterThan(0);
    expect(await relL2('A', 'C', 'e_caption.npy')).toBeLessThan(10 * U);
  });
});
