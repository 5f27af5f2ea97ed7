// Installing a captioner like the diffusion model (daemon/models/install.ts, captioner-files.ts): the
// generated tiny BLIP captioner (daemon/onnx/tiny/blip-captioner.ts) copied from a folder and fetched
// from the local hub (hub-server.ts: LFS redirects to another origin, Range resumption after a dropped
// connection, hashes), installed under captioner/NAME where the loader finds it, listed, verified and
// removed; a folder or listing that lacks a file of the layout is refused with E_MODEL_INVALID naming it.
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { writeTinyCaptioner } from '../../../daemon/onnx/tiny/blip-captioner.js';
import { HubClient } from '../../../daemon/models/hub-client.js';
import { installFromFolder, installFromHub } from '../../../daemon/models/install.js';
import { readInstallManifest } from '../../../daemon/models/install-manifest.js';
import { resolveModelPath } from '../../../daemon/models/model-path.js';
import { listModels, removeModel } from '../../../daemon/models/registry.js';
import { verifyModel } from '../../../daemon/models/verify.js';
import { findCaptioner } from '../../../daemon/pipeline/captioner/installed.js';
import { listInstalledModels } from '../../../daemon/server/installed-models.js';
import { startHubServer, type HubServer } from './hub-server.js';

const REPO = 'test-org/tiny-blip-onnx';
const COMMIT = 'fedcba9876543210fedcba9876543210fedcba98';
const FAST = { attempts: 3, retryBaseMs: 5, retryMaxMs: 20, stallTimeoutMs: 5_000 };
/** What the tiny captioner's folder holds, all installed. */
const TINY_FILES = [
  'config.json', 'generation_config.json', 'onnx/decoder_model_merged.onnx', 'onnx/encoder_model.onnx', 'preprocessor_config.json', 'tokenizer_config.json', 'vocab.txt',
];

let work: string;
let src: string;
let hub: HubServer | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-install-captioner-'));
  src = join(work, 'tiny-blip');
  await writeTinyCaptioner(src);
  // What a transformers.js repository holds besides the graphs the loader picks: skipped.
  await writeFile(join(src, 'onnx', 'encoder_model_quantized.onnx'), Buffer.alloc(5_000, 3));
  await writeFile(join(src, 'onnx', 'decoder_model_merged_fp16.onnx'), Buffer.alloc(5_000, 4));
  await writeFile(join(src, 'README.md'), '# tiny\n');
});

afterAll(() => rm(work, { recursive: true, force: true }));

afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

const modelsDir = (): Promise<string> => mkdtemp(join(work, 'models-'));
const sha256 = async (path: string): Promise<string> => createHash('sha256').update(await readFile(path)).digest('hex');
const resolver = (dir: string): { modelsDir: string; resolve: (p: string) => Promise<string> } => ({ modelsDir: dir, resolve: (p) => resolveModelPath(dir, p) });

async function refusal(p: Promise<unknown>): Promise<P2pzError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(P2pzError);
  return err as P2pzError;
}

describe('installFromFolder with a captioner', () => {
  it('installs under captioner/NAME: the layout only, byte-identical, recorded, found by the loader, listed and verified', async () => {
    const dir = await modelsDir();
    const phases: string[] = [];
    const r = await installFromFolder({ modelsDir: dir, folder: src, events: { phase: (p) => phases.push(p) } });
    expect(r.name).toBe('captioner/tiny-blip');
    expect(r.dir).toBe(join(dir, 'captioner', 'tiny-blip'));
    expect(phases).toEqual(['download', 'commit']);
    expect(r.manifest.kind).toBe('captioner');
    expect(r.manifest.source).toEqual({ kind: 'folder' });
    expect(r.manifest.files.map((f) => f.path).sort()).toEqual(TINY_FILES);
    for (const f of r.manifest.files) {
      expect(f.sha256, f.path).toBe(await sha256(join(src, f.path)));
      expect(await sha256(join(r.dir, f.path)), f.path).toBe(f.sha256);
    }
    await expect(stat(join(r.dir, 'onnx', 'encoder_model_quantized.onnx'))).rejects.toThrow();
    expect((await readInstallManifest(dir, 'captioner/tiny-blip'))?.kind).toBe('captioner');
    expect(await findCaptioner(resolver(dir))).toBe('tiny-blip');
    expect((await listModels(dir)).map((m) => [m.name, m.kind, m.demo, m.problems])).toEqual([['captioner/tiny-blip', 'captioner', false, []]]);
    expect(await listInstalledModels(dir)).toEqual([{ name: 'tiny-blip', kind: 'captioner', demo: false }]);
    const report = await verifyModel(dir, 'captioner/tiny-blip');
    expect(report).toMatchObject({ ok: true, checkedFiles: TINY_FILES.length, unrecorded: [] });
    // Nothing stays in the staging folder.
    expect(await readdir(join(dir, '.downloads'))).toEqual([]);

    // verify notices a changed graph and a deleted vocabulary.
    const decoder = join(r.dir, 'onnx', 'decoder_model_merged.onnx');
    const bytes = await readFile(decoder);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(decoder, bytes);
    await rm(join(r.dir, 'vocab.txt'));
    const damaged = await verifyModel(dir, 'captioner/tiny-blip');
    expect(damaged.ok).toBe(false);
    expect(damaged.problems).toEqual([
      'onnx/decoder_model_merged.onnx: content differs from the installed file (hash mismatch)',
      'vocab.txt: missing',
      'vocab.txt or tokenizer.json: missing',
    ]);

    await removeModel(dir, 'captioner/tiny-blip');
    await expect(stat(r.dir)).rejects.toThrow();
    expect(await listModels(dir)).toEqual([]);
    expect(await findCaptioner(resolver(dir))).toBeNull();
  });

  it('--name names the folder; a second install of the same name replaces the first', async () => {
    const dir = await modelsDir();
    await installFromFolder({ modelsDir: dir, folder: src, name: 'blip-image-captioning-base' });
    const again = await installFromFolder({ modelsDir: dir, folder: src, name: 'blip-image-captioning-base' });
    expect(again.name).toBe('captioner/blip-image-captioning-base');
    expect((await listModels(dir)).map((m) => m.name)).toEqual(['captioner/blip-image-captioning-base']);
    expect((await verifyModel(dir, again.name)).ok).toBe(true);
  });

  it('refuses a folder that lacks a file of the layout with E_MODEL_INVALID naming it, and installs nothing', async () => {
    const cases: Array<[string, RegExp]> = [
      ['vocab.txt', /vocab\.txt or tokenizer\.json/],
      ['onnx/encoder_model.onnx', /onnx\/encoder_model\.onnx \(the vision encoder\)/],
      ['onnx/decoder_model_merged.onnx', /onnx\/decoder_model_merged\.onnx or onnx\/decoder_model\.onnx \(the text decoder\)/],
      ['preprocessor_config.json', /preprocessor_config\.json/],
    ];
    for (const [missing, named] of cases) {
      const broken = join(work, `broken-${missing.replace(/\W/g, '_')}`);
      await cp(src, broken, { recursive: true });
      await rm(join(broken, missing));
      const dir = await modelsDir();
      const err = await refusal(installFromFolder({ modelsDir: dir, folder: broken }));
      expect(err.code, missing).toBe('E_MODEL_INVALID');
      expect(err.message, missing).toMatch(/The folder is not a captioner export: it lacks /);
      expect(err.message, missing).toMatch(named);
      expect(err.hint, missing).toMatch(new RegExp(`^Add ${named.source}`));
      expect(err.hint, missing).toContain('docs/CAPTIONER.md');
      await expect(stat(join(dir, 'captioner')), missing).rejects.toThrow();
    }
  });

  it('a folder with only the uncached decoder (decoder_model.onnx) is a captioner too', async () => {
    const plain = join(work, 'uncached');
    await cp(src, plain, { recursive: true });
    await rm(join(plain, 'onnx', 'decoder_model_merged.onnx'));
    await writeFile(join(plain, 'onnx', 'decoder_model.onnx'), Buffer.alloc(100, 1));
    const dir = await modelsDir();
    const r = await installFromFolder({ modelsDir: dir, folder: plain });
    expect(r.manifest.files.map((f) => f.path)).toContain('onnx/decoder_model.onnx');
    expect(r.manifest.files.map((f) => f.path)).not.toContain('onnx/decoder_model_merged_fp16.onnx');
  });
});

describe('installFromHub with a captioner', () => {
  it('detects the captioner from the listing, follows the LFS redirects, resumes a dropped file, checks every hash', async () => {
    hub = await startHubServer({ repo: REPO, revision: 'main', commit: COMMIT, root: src });
    const decoderSize = hub.files.get('onnx/decoder_model_merged.onnx')?.bytes.length ?? 0;
    expect(decoderSize).toBeGreaterThan(8_000);
    hub.faults.push({ path: 'onnx/decoder_model_merged.onnx', kind: 'drop', after: 4_000 });
    const dir = await modelsDir();
    const notices: string[] = [];
    const r = await installFromHub({
      modelsDir: dir, client: new HubClient({ baseUrl: hub.url }), repo: REPO, prepareSize: 0, download: FAST, events: { notice: (t) => notices.push(t) },
    });
    expect(r.name).toBe('captioner/tiny-blip-onnx');
    expect(r.manifest.kind).toBe('captioner');
    expect(r.manifest.source).toEqual({ kind: 'hub', hubUrl: hub.url, repo: REPO, revision: 'main', commit: COMMIT });
    expect(r.manifest.files.map((f) => f.path).sort()).toEqual(TINY_FILES);
    for (const f of r.manifest.files) expect(await sha256(join(r.dir, f.path)), f.path).toBe(hub.files.get(f.path)?.sha256);
    // The graphs are LFS files: recorded by their SHA-256, fetched from the storage origin; the dropped
    // one was asked again from where it stopped.
    const decoder = hub.files.get('onnx/decoder_model_merged.onnx');
    expect(r.manifest.files.find((f) => f.path === 'onnx/decoder_model_merged.onnx')?.sha256).toBe(decoder?.sha256);
    const ranges = hub.requests.filter((q) => q.url.startsWith(`/cdn/${decoder?.sha256}`)).map((q) => q.range);
    expect(ranges.length).toBe(2);
    expect(ranges[0]).toBeUndefined();
    expect(Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? '')?.[1])).toBeGreaterThan(0);
    expect(notices.some((n) => /onnx\/decoder_model_merged\.onnx: resuming at \d+ bytes/.test(n))).toBe(true);
    // The variants the loader does not use were never fetched.
    expect(hub.requests.some((q) => q.url.includes('quantized') || q.url.includes('fp16') || q.url.includes('README'))).toBe(false);
    expect(await findCaptioner(resolver(dir))).toBe('tiny-blip-onnx');
    expect((await verifyModel(dir, r.name)).ok).toBe(true);

    // The same commit again is a no-op.
    const again = await installFromHub({ modelsDir: dir, client: new HubClient({ baseUrl: hub.url }), repo: REPO, prepareSize: 0, download: FAST });
    expect(again.upToDate).toBe(true);
    expect(await readdir(join(dir, '.downloads'))).toEqual([]);
  });

  it('refuses a captioner listing without a decoder (with --captioner, or detected) before fetching anything', async () => {
    const partial = join(work, 'no-decoder');
    await cp(src, partial, { recursive: true });
    await rm(join(partial, 'onnx', 'decoder_model_merged.onnx'));
    await rm(join(partial, 'onnx', 'decoder_model_merged_fp16.onnx'));
    hub = await startHubServer({ repo: REPO, revision: 'main', commit: COMMIT, root: partial });
    for (const captioner of [true, false]) {
      const dir = await modelsDir();
      const err = await refusal(installFromHub({ modelsDir: dir, client: new HubClient({ baseUrl: hub.url }), repo: REPO, prepareSize: 0, download: FAST, captioner }));
      expect(err.code).toBe('E_MODEL_INVALID');
      expect(err.message).toContain(`${REPO} at “main” is not a captioner export: it lacks onnx/decoder_model_merged.onnx or onnx/decoder_model.onnx (the text decoder).`);
      expect(await readdir(dir)).toEqual([]);
    }
    expect(hub.requests.some((q) => q.url.includes('/resolve/'))).toBe(false);
  });

  it('removing a captioner also drops its unfinished download', async () => {
    hub = await startHubServer({ repo: REPO, revision: 'main', commit: COMMIT, root: src });
    // The encoder comes after the decoder in the listing and is corrupted every time: the decoder stays staged.
    hub.faults.push({ path: 'onnx/encoder_model.onnx', kind: 'corrupt', times: 10 });
    const dir = await modelsDir();
    await refusal(installFromHub({ modelsDir: dir, client: new HubClient({ baseUrl: hub.url }), repo: REPO, name: 'tb', prepareSize: 0, download: FAST }));
    expect(await readdir(join(dir, '.downloads'))).toEqual([`captioner_tb@${COMMIT.slice(0, 12)}`]);
    expect(await readdir(join(dir, '.downloads', `captioner_tb@${COMMIT.slice(0, 12)}`, 'onnx'))).toContain('decoder_model_merged.onnx');
    await mkdir(join(dir, 'captioner', 'tb'), { recursive: true });
    await removeModel(dir, 'captioner/tb');
    expect(await readdir(join(dir, '.downloads'))).toEqual([]);
  });
});
