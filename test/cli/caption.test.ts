// `p2pz caption` and the captioner in `p2pz edit`, through the CLI's main() in this process, with the
// generated tiny SD model and the tiny BLIP captioner beside it (models/captioner/tiny-blip): without a
// captioner the caption command says what to install and edit falls back to the template and says
// so; with one, caption prints what the captioner writes and edit uses it, prints it and dumps it.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeImage } from '../../daemon/image/decode.js';
import { writeTinyCaptioner } from '../../daemon/onnx/tiny/blip-captioner.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { captionImage, loadCaptioner } from '../../daemon/pipeline/captioner/blip.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { rgbaPng } from '../daemon/pipeline/tiny-pipeline.js';
import { captureIo, loadMain, type CapturedIo, type Main } from '../fixtures/cli-main.js';

let dir: string;
let models: string;
let inputPath: string;
let main: Main;

function io(): CapturedIo {
  return captureIo({ P2PZ_HOME: join(dir, 'home') });
}

function editArgs(out: string, extra: string[] = []): string[] {
  return ['edit', inputPath, '--model', join(models, 'tiny'), '--from', 'cat', '--to', 'dog', '--steps', '2', '--reg-steps', '1', '--size', '64',
    '--seed', '5', '--bank-count', '4', '--device', 'cpu', '--out', out, ...extra];
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-cli-caption-'));
  models = join(dir, 'models');
  await writeTinyStableDiffusion(join(models, 'tiny'), { flavour: 'opset17' });
  inputPath = join(dir, 'in.png');
  await writeFile(inputPath, (await rgbaPng(60, 44)).png);
  main = await loadMain();
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('without a captioner', () => {
  it('p2pz caption says none is installed and where to put one', async () => {
    const r = io();
    expect(await main(['caption', inputPath, '--models', models, '--device', 'cpu'], r)).not.toBe(0);
    expect(r.text.err).toMatch(/No captioner is installed/);
    expect(r.text.err).toContain(join(models, 'captioner'));
  });

  it('p2pz edit uses the template and says why', async () => {
    const r = io();
    const dump = join(dir, 'dump-template');
    expect(await main(editArgs(join(dir, 'template.png'), ['--dump', dump]), r)).toBe(0);
    expect(r.text.err).toContain('caption: "a photo of a cat" (template)');
    expect(r.text.err).toMatch(/note: No captioner is installed, so the caption is the template "a photo of a cat"/);
    expect(JSON.parse(await readFile(join(dump, 'meta.json'), 'utf8')).caption).toBe('a photo of a cat');
  });
});

describe('with the tiny captioner installed', () => {
  let expected: string;
  beforeAll(async () => {
    await writeTinyCaptioner(join(models, 'captioner', 'tiny-blip'));
    const sessions = new SessionCache({ modelsDir: models, executionProviders: ['cpu'] });
    const decoded = await decodeImage(await readFile(inputPath));
    expected = (await captionImage(sessions, await loadCaptioner(sessions, 'tiny-blip'), decoded.rgb, decoded.width, decoded.height)).caption;
    await sessions.releaseAll();
  });

  it('p2pz caption prints the caption (from --models, and from --captioner DIR)', async () => {
    const a = io();
    expect(await main(['caption', inputPath, '--models', models, '--device', 'cpu'], a)).toBe(0);
    expect(a.text.out).toBe(`${expected}\n`);
    const b = io();
    expect(await main(['caption', inputPath, '--captioner', join(models, 'captioner', 'tiny-blip'), '--device', 'cpu'], b)).toBe(0);
    expect(b.text.out).toBe(`${expected}\n`);
  });

  it('p2pz edit without --caption captions the image, prints it and dumps it; --caption still wins', async () => {
    const r = io();
    const dump = join(dir, 'dump-captioner');
    expect(await main(editArgs(join(dir, 'captioned.png'), ['--dump', dump, '--mask', join(dir, 'mask.png')]), r)).toBe(0);
    expect(r.text.err).toContain(`caption: "${expected}" (captioner tiny-blip)`);
    const meta = JSON.parse(await readFile(join(dump, 'meta.json'), 'utf8'));
    expect(meta.caption).toBe(expected);
    // The tiny captioner's random weights write no "cat" for this image, so the job says the mask is unavailable.
    expect(expected).not.toMatch(/\bcats?\b/);
    expect(r.text.err).toMatch(/note: The caption ".*" does not name "cat"/);
    const own = io();
    expect(await main(editArgs(join(dir, 'own.png'), ['--caption', 'a cat on a sofa']), own)).toBe(0);
    expect(own.text.err).toContain('caption: "a cat on a sofa" (user)');
    expect(own.text.err).not.toContain('note:');
  });
});
