// `p2pz edit` and `p2pz directions` through the CLI's main() in this process, and `p2pz edit` once
// as `node bin/p2pz.js`: a non-square RGBA input on a generated tiny model gives a PNG of exactly
// its size with its alpha, the same bytes for the same seed (in-process, from the inversion cache,
// and in another process), the mask, and a complete dump.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoPack } from '../../daemon/models/demo-pack.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { DumpMeta } from '../../daemon/pipeline/dump/dump-writer.js';
import { decodeNpy } from '../../daemon/pipeline/dump/npy.js';
import { pixels, rgbaPng } from '../daemon/pipeline/tiny-pipeline.js';
import { captureIo, loadMain, type CapturedIo, type Main } from '../fixtures/cli-main.js';

let dir: string;
let home: string;
let modelDir: string;
let inputPath: string;
let input: Awaited<ReturnType<typeof rgbaPng>>;
let main: Main;

function io(): CapturedIo {
  return captureIo({ P2PZ_HOME: home });
}

function editArgs(out: string, extra: string[] = []): string[] {
  return ['edit', inputPath, '--model', modelDir, '--from', 'cat', '--to', 'dog', '--steps', '2', '--reg-steps', '1', '--size', '64',
    '--seed', '11', '--bank-count', '4', '--device', 'cpu', '--out', out, ...extra];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-cli-edit-'));
  home = join(dir, 'home');
  modelDir = join(dir, 'models', 'tiny');
  await writeTinyStableDiffusion(modelDir, { flavour: 'opset17' });
  input = await rgbaPng(53, 71);
  inputPath = join(dir, 'in.png');
  await writeFile(inputPath, input.png);
  main = await loadMain();
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('p2pz edit', () => {
  it('writes the edit at the input size with alpha, the mask and a complete dump; the same bytes again', async () => {
    const out1 = join(dir, 'out1.png');
    const mask = join(dir, 'mask.png');
    const dump = join(dir, 'dump');
    const first = io();
    expect(await main(editArgs(out1, ['--mask', mask, '--dump', dump]), first)).toBe(0);
    expect(first.text.out).toMatch(/out1\.png: cat → dog \(diffusion, cpu,/);
    // Not a terminal: plain progress lines with step counts, no redraws or escapes.
    expect(first.text.err).toMatch(/^inversion 2\/2(, ETA \S+)?$/m);
    expect(first.text.err).toMatch(/^edit 2\/2(, ETA \S+)?$/m);
    expect(first.text.err).not.toMatch(/[\r\x1b]/);
    const px = await pixels(await readFile(out1));
    expect([px.width, px.height, px.channels]).toEqual([53, 71, 4]);
    for (let p = 0; p < 53 * 71; p++) expect(px.data[4 * p + 3]).toBe(input.raw[4 * p + 3]);
    const m = await pixels(await readFile(mask));
    expect([m.width, m.height, m.channels]).toEqual([53, 71, 1]);

    const meta = DumpMeta.parse(JSON.parse(await readFile(join(dump, 'meta.json'), 'utf8')));
    expect(meta).toMatchObject({ steps: 2, size: [64, 64], seed: 11, caption: 'a photo of a cat', source: 'cat', target: 'dog' });
    const files = (await readdir(dump, { recursive: true })).filter((f) => f.includes('.')).sort();
    expect(files).toEqual([
      'caption_ids.npy', 'direction.npy', 'e_caption.npy',
      'edit/000_eps.npy', 'edit/000_grad.npy', 'edit/000_loss.npy', 'edit/000_z.npy',
      'edit/001_eps.npy', 'edit/001_grad.npy', 'edit/001_loss.npy', 'edit/001_z.npy',
      'image_in.npy', 'image_out.npy',
      'inversion/000_eps.npy', 'inversion/000_eps_reg.npy', 'inversion/000_rolls.json', 'inversion/000_z.npy',
      'inversion/001_eps.npy', 'inversion/001_eps_reg.npy', 'inversion/001_rolls.json', 'inversion/001_z.npy',
      'meta.json', 'reference/000_eps.npy', 'reference/000_z.npy', 'reference/001_eps.npy', 'reference/001_z.npy',
      'sentences_source.txt', 'sentences_target.txt', 'z0.npy', 'zT.npy', 'z_final.npy',
    ]);
    expect(decodeNpy(await readFile(join(dump, 'image_out.npy'))).shape).toEqual([1, 3, 64, 64]);
    expect(decodeNpy(await readFile(join(dump, 'edit/001_grad.npy'))).shape).toEqual([2, 4, 8, 8]);

    // Again without a dump: the inversion comes from the data directory's cache; same bytes.
    expect((await readdir(join(home, 'cache', 'inversions'))).filter((f) => f.endsWith('.npy'))).toHaveLength(1);
    const out2 = join(dir, 'out2.png');
    expect(await main(editArgs(out2), io())).toBe(0);
    expect((await readFile(out2)).equals(await readFile(out1))).toBe(true);
  });

  it('as `node bin/p2pz.js edit` in its own process: the same bytes', async () => {
    const out3 = join(dir, 'out3.png');
    const { stdout } = await promisify(execFile)(process.execPath, ['bin/p2pz.js', ...editArgs(out3)], {
      env: { ...process.env, P2PZ_HOME: join(dir, 'home-subprocess') },
    });
    expect(stdout).toMatch(/out3\.png: cat → dog/);
    expect((await readFile(out3)).equals(await readFile(join(dir, 'out1.png')))).toBe(true);
  });

  it('--mode preview without a GAN runs the reduced diffusion preview', async () => {
    const out = join(dir, 'preview.png');
    const c = io();
    expect(await main([...editArgs(out), '--mode', 'preview', '--steps', '3'], c)).toBe(0);
    expect(c.text.out).toMatch(/preview\.png: cat → dog \(diffusion-preview, cpu,/);
    const px = await pixels(await readFile(out));
    expect([px.width, px.height, px.channels]).toEqual([53, 71, 4]);
  });

  it('--mode preview with neither a GAN nor the model names the direction and the model (E_MODEL_MISSING), exit 1', async () => {
    const c = io();
    const missing = join(dir, 'models', 'not-installed');
    expect(await main(['edit', inputPath, '--model', missing, '--from', 'cat', '--to', 'dog', '--mode', 'preview', '--device', 'cpu'], c)).toBe(1);
    expect(c.text.err).toBe(
      // The terminal prints the detail alone (cli.ts cliMessage).
      'No quick-preview generator is installed for “cat → dog”, '
        + 'and the diffusion model “not-installed” for a slower preview is not installed either.\n'
        + 'Install a Stable Diffusion 1.x ONNX model with `node bin/p2pz.js models install`, then try again.\n',
    );
  });

  it('refuses a missing --to, a bad --mode and a missing input with a message and exit 1', async () => {
    for (const args of [
      ['edit', inputPath, '--from', 'cat'],
      ['edit', inputPath, '--from', 'cat', '--to', 'dog', '--mode', 'fast'],
    ]) {
      const c = io();
      expect(await main(args, c)).toBe(1);
      expect(c.text.err).toMatch(/--to|--mode/);
    }
  });
});

describe('p2pz edit --model NAME', () => {
  it('takes a model by the name `p2pz models list` shows (the demo pack), as the README does', async () => {
    const env = { P2PZ_HOME: join(dir, 'home-named') };
    // What `npm start -- --demo` writes.
    await writeDemoPack(join(env.P2PZ_HOME, 'models'));
    const list = await promisify(execFile)(process.execPath, ['bin/p2pz.js', 'models', 'list'], { env: { ...process.env, ...env } });
    const name = /^(\S+) +diffusion/m.exec(list.stdout)?.[1];
    expect(name).toBe('p2pz-demo');
    const c = { text: { out: '', err: '' } };
    const cio = { out: (t: string) => (c.text.out += t), err: (t: string) => (c.text.err += t), env };
    const out = join(dir, 'named.png');
    expect(await main(['edit', inputPath, '--model', `${name}`, '--from', 'cat', '--to', 'dog', '--steps', '1', '--reg-steps', '0', '--size', '64', '--bank-count', '2', '--device', 'cpu', '--out', out], cio)).toBe(0);
    expect(c.text.out).toMatch(/named\.png: cat → dog/);
    const missing = { out: () => undefined, err: (t: string) => (c.text.err += t), env };
    expect(await main(['edit', inputPath, '--model', 'not-a-model', '--from', 'cat', '--to', 'dog', '--device', 'cpu', '--out', out], missing)).toBe(1);
    expect(c.text.err).toMatch(/not-a-model/);
  });
});

describe('p2pz edit: messages in the right context', () => {
  const run = async (args: string[]) => {
    const c = io();
    const code = await main(args, c);
    return { code, err: c.text.err };
  };

  it('a missing input file: its path and "not found" (not "The request is not valid")', async () => {
    const missing = join(dir, 'no such folder', 'nope.png');
    const r = await run(['edit', missing, '--model', modelDir, '--from', 'cat', '--to', 'dog']);
    expect(r.code).toBe(1);
    expect(r.err).toBe(`Input image ${missing}: not found.\nCheck the file name; a relative path starts in the current folder.\n`);
    const folder = await run(['edit', dir, '--model', modelDir, '--from', 'cat', '--to', 'dog']);
    expect(folder.err).toContain(`Input image ${dir}: is a folder.`);
  });

  it('an unwritable --out or --mask is refused before the edit starts', async () => {
    for (const [flag, path, problem] of [
      ['--out', join(dir, 'missing-folder', 'out.png'), 'not found'],
      ['--out', dir, 'is a folder'],
      ['--mask', join(dir, 'missing-folder', 'mask.png'), 'not found'],
    ] as const) {
      const extra = flag === '--mask' ? ['--mask', path] : [];
      const r = await run(editArgs(flag === '--out' ? path : join(dir, 'unused.png'), extra));
      expect(r.code).toBe(1);
      expect(r.err).toContain(`${flag} ${path}: cannot be written (${problem}).`);
      // No stage of the edit ran (each stage prints a line that starts with its name).
      expect(r.err).not.toMatch(/^(load|decode|inversion|edit)\b/m);
    }
    // The check leaves nothing behind.
    await expect(stat(join(dir, 'unused.png'))).rejects.toThrow();
  });

  it('--size 99999 says multiples of 64 and suggests one', async () => {
    const r = await run(editArgs(join(dir, 'x.png'), ['--size', '99999']));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^--size must be a multiple of 64 from 64 to 1024 .*such as 1024\.\n/);
    expect((await run(editArgs(join(dir, 'x.png'), ['--size', '100']))).err).toContain('such as 128.');
  });

  it('an unknown flag: named once, quotes balanced, the command\'s --help named', async () => {
    const r = await run(['edit', inputPath, '--bogus']);
    expect(r.code).toBe(1);
    const [message, hint] = r.err.split('\n');
    expect(message).toBe('Unknown option --bogus.');
    expect(hint).toContain('Run `p2pz edit --help`');
    for (const q of ['"', "'", '`']) expect(r.err.split(q).length % 2).toBe(1);
    expect((await run(['serve', '--port'])).err).toMatch(/^--port needs a value \(--port <value>\)\.\n/);
  });
});

describe('p2pz directions', () => {
  it('list names the built-in concepts; make writes Δ [1,77,D] and then reads it from the cache', async () => {
    const list = io();
    expect(await main(['directions', 'list'], list)).toBe(0);
    for (const word of ['cat', 'dog', 'horse', 'zebra']) expect(list.text.out).toContain(word);
    const npy = join(dir, 'delta.npy');
    const args = ['directions', 'make', '--from', 'cat', '--to', 'zebra', '--model', modelDir, '--count', '3', '--out', npy, '--device', 'cpu'];
    const first = io();
    expect(await main(args, first)).toBe(0);
    expect(first.text.out).toMatch(/cat → zebra: 3 \+ 3 sentences, ‖Δ‖ = /);
    expect(first.text.out).not.toContain('(cached)');
    const delta = decodeNpy(await readFile(npy));
    expect(delta.shape).toEqual([1, 77, 32]);
    const second = io();
    expect(await main(args, second)).toBe(0);
    expect(second.text.out).toContain('(cached)');
    expect((await stat(join(home, 'cache', 'directions'))).isDirectory()).toBe(true);
  });
});
