// A captioner installed with `p2pz models install` and used by `p2pz caption`: the generated tiny BLIP
// captioner (daemon/onnx/tiny/blip-captioner.ts) installed from a folder and from the local hub
// (test/daemon/models/hub-server.ts), listed, verified, captioning an image exactly as the captioner
// loaded directly does, named by `p2pz doctor`, removed; a broken folder refused with its code and hint;
// and the "no captioner" hints naming the install command.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../daemon/cli/command.js';
import { decodeImage } from '../../daemon/image/decode.js';
import { writeTinyCaptioner } from '../../daemon/onnx/tiny/blip-captioner.js';
import { captionImage, loadCaptioner } from '../../daemon/pipeline/captioner/blip.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { rgbaPng } from '../daemon/pipeline/tiny-pipeline.js';
import { startHubServer, type HubServer } from '../daemon/models/hub-server.js';
import { runCli } from '../daemon/server/spawn.js';
import { loadMain, type Main } from '../fixtures/cli-main.js';

let work: string;
let src: string;
let inputPath: string;
let hub: HubServer;
let main: Main;
let expected: string;

interface Run {
  code: number;
  out: string;
  err: string;
}

async function p2pz(home: string, ...args: string[]): Promise<Run> {
  const r = { code: 0, out: '', err: '' };
  const io: CliIo = { out: (t) => (r.out += t), err: (t) => (r.err += t), env: { P2PZ_HOME: home, P2PZ_HUB_URL: hub.url } };
  r.code = await main(args, io);
  return r;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-cli-models-captioner-'));
  src = join(work, 'tiny-blip');
  await writeTinyCaptioner(src);
  await writeFile(join(src, 'README.md'), '# tiny\n');
  inputPath = join(work, 'in.png');
  await writeFile(inputPath, (await rgbaPng(60, 44)).png);
  hub = await startHubServer({ repo: 'test-org/tiny-blip-onnx', revision: 'main', commit: 'cd'.repeat(20), root: src });
  main = await loadMain();
  // The caption of the captioner loaded straight from its source folder (no install involved).
  const sessions = new SessionCache({ modelsDir: work, executionProviders: ['cpu'] });
  const decoded = await decodeImage(await readFile(inputPath));
  expected = (await captionImage(sessions, await loadCaptioner(sessions, 'tiny-blip', 'tiny-blip'), decoded.rgb, decoded.width, decoded.height)).caption;
  await sessions.releaseAll();
});

afterAll(async () => {
  await hub.close();
  await rm(work, { recursive: true, force: true });
});

describe('p2pz models install for a captioner, then p2pz caption', () => {
  it('--from DIR → list → verify → caption → doctor → remove, and the hints without one', async () => {
    const home = await mkdtemp(join(work, 'home-'));
    const none = await p2pz(home, 'caption', inputPath, '--device', 'cpu');
    expect(none.code).not.toBe(0);
    expect(none.err).toContain('No captioner is installed');
    expect(none.err).toContain('p2pz models install --from DIR');
    expect(none.err).toContain('p2pz models install OWNER/NAME --captioner');

    const install = await p2pz(home, 'models', 'install', '--from', src, '--name', 'blip-image-captioning-base');
    expect(install.code).toBe(0);
    expect(install.err).toMatch(/^Fetching 7 files, /);
    expect(install.out).toMatch(/^Installed captioner\/blip-image-captioning-base from a local folder: 7 files, [\d.]+ kB, verified\.\n/);
    expect(install.out).toContain('`p2pz caption IMAGE`, and edits without a caption, now caption with an installed captioner');

    const list = await p2pz(home, 'models', 'list');
    expect(list.out).toMatch(/^captioner\/blip-image-captioning-base {2}captioner {2}.* copied from a folder\n$/);
    const json = JSON.parse((await p2pz(home, 'models', 'list', '--json')).out) as Array<{ name: string; kind: string }>;
    expect(json.map((m) => [m.name, m.kind])).toEqual([['captioner/blip-image-captioning-base', 'captioner']]);

    const verify = await p2pz(home, 'models', 'verify');
    expect(verify.code).toBe(0);
    expect(verify.out).toMatch(/^ok {6}captioner\/blip-image-captioning-base: 7 files, /);

    const caption = await p2pz(home, 'caption', inputPath, '--device', 'cpu');
    expect(caption.code).toBe(0);
    expect(caption.out).toBe(`${expected}\n`);
    expect(expected.length).toBeGreaterThan(0);

    const doctor = await runCli(['doctor', '--port', '1'], { P2PZ_HOME: home, P2PZ_DEVICE: 'cpu' });
    expect(doctor.stdout.split('\n').find((l) => l.includes('models'))).toMatch(/0 diffusion models, 0 quick previews, captioner blip-image-captioning-base/);

    const removed = await p2pz(home, 'models', 'remove', 'captioner/blip-image-captioning-base');
    expect(removed.code).toBe(0);
    expect((await p2pz(home, 'models', 'list')).out).toMatch(/^No models installed/);
    expect((await p2pz(home, 'caption', inputPath, '--device', 'cpu')).code).not.toBe(0);
    const doctorNone = await runCli(['doctor', '--port', '1'], { P2PZ_HOME: home, P2PZ_DEVICE: 'cpu' });
    expect(doctorNone.stdout).toContain('no captioner (captions are the template "a photo of a …"; install one with p2pz models install --from DIR');
  });

  it('ID --captioner from the hub, then caption; a broken folder is refused with its code and hint', async () => {
    const home = await mkdtemp(join(work, 'home-'));
    const install = await p2pz(home, 'models', 'install', 'test-org/tiny-blip-onnx', '--captioner');
    expect(install.code).toBe(0);
    expect(install.out).toMatch(/^Installed captioner\/tiny-blip-onnx from test-org\/tiny-blip-onnx@main, commit cdcdcdcdcd: 7 files, /);
    expect((await p2pz(home, 'models', 'verify', 'captioner/tiny-blip-onnx')).code).toBe(0);
    const caption = await p2pz(home, 'caption', inputPath, '--device', 'cpu');
    expect(caption.out).toBe(`${expected}\n`);

    const again = await p2pz(home, 'models', 'install', 'test-org/tiny-blip-onnx');
    expect(again.out).toBe('captioner/tiny-blip-onnx is installed and up to date (use --force to install it again).\n');

    const broken = join(work, 'broken');
    await cp(src, broken, { recursive: true });
    await rm(join(broken, 'onnx', 'encoder_model.onnx'));
    const refused = await p2pz(home, 'models', 'install', '--from', broken);
    expect(refused.code).not.toBe(0);
    expect(refused.err).toContain('it lacks onnx/encoder_model.onnx (the vision encoder)');
    expect(refused.err).toContain('Add onnx/encoder_model.onnx (the vision encoder). A captioner folder holds config.json');
    expect((await p2pz(home, 'models', 'list')).out).not.toContain('broken');

    const noId = await p2pz(home, 'models', 'install', '--captioner');
    expect(noId.code).not.toBe(0);
    expect(noId.err).toContain('Name the hub repository of a captioner export.');
  });
});
