// `p2pz directions import`: a concept's embeddings as .npy ([N,77,D] averaged here, or a [77,D] /
// [1,77,D] mean such as the paper's released SD 1.4 files after the documented one-liner), stored per
// text encoder; an edit whose two concepts are imported takes Δ = μ_target − μ_source (dumped), and a
// wrong shape or type is refused with a hint. The one-liner runs with Debian's python3-torch on a
// tensor saved the way the paper's assets/embeddings_sd_1.4/*.pt are ([1,77,D] float32, torch.save).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { decodeNpy, encodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { rgbaPng } from '../daemon/pipeline/tiny-pipeline.js';
import { captureIo, loadMain, type CapturedIo, type Main } from '../fixtures/cli-main.js';

const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
const ONE_LINER = "import sys,torch,numpy; numpy.save(sys.argv[2], torch.load(sys.argv[1], map_location='cpu').float().numpy())";
let dir: string;
let modelDir: string;
let main: Main;
const T = 77;
let D: number;

function io(): CapturedIo {
  return captureIo({ P2PZ_HOME: join(dir, 'home') });
}

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n * T * D }, (_, i) => Math.sin(seed * 1000 + i * 0.37) * (1 + (i % 7)));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-import-'));
  modelDir = join(dir, 'models', 'tiny');
  await writeTinyStableDiffusion(modelDir, { flavour: 'opset17' });
  D = TINY_SD.textEncoder.hiddenSize;
  main = await loadMain();
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('p2pz directions import', () => {
  it('averages [N,77,D], takes a converted [1,77,D] torch tensor as is, and an edit uses Δ = μ_target − μ_source', async () => {
    // cat: three sentence embeddings; dog: one mean saved by torch, converted by the documented one-liner.
    const cat = values(3, 1);
    await writeFile(join(dir, 'cat.npy'), encodeNpy(cat, [3, T, D]));
    const dog = values(1, 2);
    await writeFile(join(dir, 'dog.raw'), Buffer.from(dog.buffer));
    const save = `import numpy,torch; torch.save(torch.from_numpy(numpy.fromfile('${join(dir, 'dog.raw')}', dtype='<f4').reshape(1, ${T}, ${D})), '${join(dir, 'dog.pt')}')`;
    await promisify(execFile)(PYTHON, ['-c', save]);
    await promisify(execFile)(PYTHON, ['-c', ONE_LINER, join(dir, 'dog.pt'), join(dir, 'dog.npy')]);
    expect(decodeNpy(await readFile(join(dir, 'dog.npy'))).shape).toEqual([1, T, D]);

    const a = io();
    expect(await main(['directions', 'import', '--concept', 'cat', '--embeddings', join(dir, 'cat.npy'), '--model', modelDir, '--device', 'cpu'], a)).toBe(0);
    expect(a.text.out).toBe(`cat: 3 embeddings of [${T},${D}] imported for tiny's text encoder\n`);
    const b = io();
    expect(await main(['directions', 'import', '--concept', 'dog', '--embeddings', join(dir, 'dog.npy'), '--model', modelDir, '--device', 'cpu'], b)).toBe(0);
    expect(b.text.out).toBe(`dog: 1 embedding of [${T},${D}] imported for tiny's text encoder\n`);

    const input = join(dir, 'in.png');
    await writeFile(input, (await rgbaPng(48, 40)).png);
    const dump = join(dir, 'dump');
    const e = io();
    expect(await main(['edit', input, '--model', modelDir, '--from', 'cat', '--to', 'dog', '--steps', '1', '--reg-steps', '0', '--size', '64',
      '--device', 'cpu', '--out', join(dir, 'out.png'), '--dump', dump], e)).toBe(0);
    expect(e.text.err).toContain('note: The edit direction comes from the imported embeddings of "cat" and "dog".');
    const delta = decodeNpy(await readFile(join(dump, 'direction.npy')));
    expect(delta.shape).toEqual([1, T, D]);
    const data = delta.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < T * D; i++) {
      const mu = (cat[i]! + cat[T * D + i]! + cat[2 * T * D + i]!) / 3;
      worst = Math.max(worst, Math.abs(data[i]! - (dog[i]! - mu)));
    }
    expect(worst).toBeLessThan(1e-5);
    expect(await readFile(join(dump, 'sentences_source.txt'), 'utf8')).toBe('');
    // The edit prepares the UNet graphs and python3 imports torch: slow on a shared CPU.
  }, 180_000);

  it('refuses a wrong shape, integers, and a missing file, with a hint and without the path', async () => {
    await writeFile(join(dir, 'wide.npy'), encodeNpy(new Float32Array(T * (D + 1)), [T, D + 1]));
    const wide = io();
    expect(await main(['directions', 'import', '--concept', 'horse', '--embeddings', join(dir, 'wide.npy'), '--model', modelDir, '--device', 'cpu'], wide)).not.toBe(0);
    expect(wide.text.err).toContain(`has shape [${T},${D + 1}]; this model's text encoder gives [${T},${D}] per sentence`);
    expect(wide.text.err).toMatch(/float32 \.npy of shape \[N,77,D\]/);
    await writeFile(join(dir, 'ints.npy'), encodeNpy(new BigInt64Array(T * D), [T, D]));
    const ints = io();
    expect(await main(['directions', 'import', '--concept', 'horse', '--embeddings', join(dir, 'ints.npy'), '--model', modelDir, '--device', 'cpu'], ints)).not.toBe(0);
    expect(ints.text.err).toContain('holds integers');
    const missing = io();
    expect(await main(['directions', 'import', '--concept', 'horse', '--embeddings', join(dir, 'nope.npy'), '--model', modelDir, '--device', 'cpu'], missing)).not.toBe(0);
    expect(missing.text.err).toContain('could not be read');
    expect(missing.text.err).not.toContain(dir);
  });
});
