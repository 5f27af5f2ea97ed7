// Installing from a hub: the project's tiny Stable Diffusion folder served by a local hub on
// 127.0.0.1 (hub-server.ts) in both listing styles, then the failure paths the issue names: a
// connection dropped mid-file (resumed with Range, in the same run and in the next one), corrupted
// bytes (re-fetched; twice → refused), a stalled server (clear E_TIMEOUT), and listings that try to
// write elsewhere. A failed install never leaves a model where the daemon looks.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { writeTinyImg2Img } from '../../../daemon/onnx/tiny/img2img.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { lookupGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { resolveModelPath } from '../../../daemon/models/model-path.js';
import { MODELS_DEFAULTS } from '../../../daemon/models/defaults.js';
import { HubClient } from '../../../daemon/models/hub-client.js';
import { installFromFolder, installFromHub, selectModelFiles, type HubInstallOptions } from '../../../daemon/models/install.js';
import { readInstallManifest } from '../../../daemon/models/install-manifest.js';
import { listModels } from '../../../daemon/models/registry.js';
import { verifyModel } from '../../../daemon/models/verify.js';
import { listInstalledModels } from '../../../daemon/server/installed-models.js';
import { startHubServer, type HubServer, type HubServerOptions } from './hub-server.js';

const REPO = 'test-org/tiny-sd';
const COMMIT = '0123456789abcdef0123456789abcdef01234567';
const FAST = { attempts: 3, retryBaseMs: 5, retryMaxMs: 20, stallTimeoutMs: 5_000 };

let repoDir: string;
let work: string;
let hub: HubServer | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-install-'));
  repoDir = join(work, 'repo');
  await writeTinyStableDiffusion(repoDir);
  // What a real export holds besides the pipeline's files: skipped by the installer.
  await mkdir(join(repoDir, 'safety_checker'), { recursive: true });
  await writeFile(join(repoDir, 'safety_checker', 'model.onnx'), Buffer.alloc(10_000, 7));
  await writeFile(join(repoDir, 'README.md'), '# tiny\n');
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

async function serve(extra: Partial<HubServerOptions> = {}): Promise<HubServer> {
  hub = await startHubServer({ repo: REPO, revision: 'onnx', commit: COMMIT, root: repoDir, ...extra });
  return hub;
}

async function modelsDir(): Promise<string> {
  return mkdtemp(join(work, 'models-'));
}

function options(server: HubServer, dir: string, more: Partial<HubInstallOptions> = {}): HubInstallOptions {
  return { modelsDir: dir, client: new HubClient({ baseUrl: server.url }), repo: REPO, revision: 'onnx', prepareSize: 0, download: FAST, ...more };
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function expectCode(p: Promise<unknown>, code: string): Promise<P2pzError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(P2pzError);
  expect((err as P2pzError).code).toBe(code);
  return err as P2pzError;
}

describe('installFromHub', () => {
  it('installs the tiny model: pipeline files only, byte-identical, recorded, prepared, listed and verified', async () => {
    const server = await serve();
    const dir = await modelsDir();
    const phases: string[] = [];
    let total = 0;
    let counted = 0;
    const r = await installFromHub(
      options(server, dir, { name: 'tiny-sd', prepareSize: 64, events: { phase: (p) => phases.push(p), start: (_f, t) => (total = t), bytes: (d) => (counted += d) } }),
    );
    expect(r.upToDate).toBe(false);
    expect(phases).toEqual(['download', 'prepare', 'commit']);

    const wanted = selectModelFiles([...server.files.values()]);
    expect(wanted.map((f) => f.path)).not.toContain('safety_checker/model.onnx');
    expect(wanted.map((f) => f.path)).not.toContain('README.md');
    expect(wanted.length).toBe(11);
    expect(total).toBe(wanted.reduce((s, f) => s + f.bytes.length, 0));
    expect(counted).toBe(total);
    for (const f of wanted) expect(await sha256(join(dir, 'tiny-sd', f.path)), f.path).toBe(f.sha256);
    await expect(stat(join(dir, 'tiny-sd', 'safety_checker'))).rejects.toThrow();
    // The derived graphs for 64×64 pixels (latent 8×8) sit next to the UNet: cross-attention and
    // gradient graphs for batch 2 (the CFG pair), the cross-attention graph alone for batch 1 (the
    // reference pass), and the roles model that serves all three with one copy of the weights.
    expect((await readdir(join(dir, 'tiny-sd', 'unet'))).sort()).toEqual([
      'model.grad.8x8.onnx', 'model.onnx', 'model.prepared.8x8.b1.json', 'model.prepared.8x8.json',
      'model.roles.8x8.json', 'model.roles.8x8.onnx', 'model.xattn.8x8.b1.onnx', 'model.xattn.8x8.onnx', 'weights.pb',
    ]);

    const manifest = await readInstallManifest(dir, 'tiny-sd');
    expect(manifest?.source).toEqual({ kind: 'hub', hubUrl: server.url, repo: REPO, revision: 'onnx', commit: COMMIT });
    expect(manifest?.demo).toBe(false);
    // LFS files are recorded with their SHA-256, plain files with their git blob id.
    const unet = manifest?.files.find((f) => f.path === 'unet/weights.pb');
    expect(unet?.sha256).toBe(server.files.get('unet/weights.pb')?.sha256);
    const index = manifest?.files.find((f) => f.path === 'model_index.json');
    expect(index).toEqual({ path: 'model_index.json', size: server.files.get('model_index.json')?.bytes.length, gitOid: server.files.get('model_index.json')?.gitOid });

    expect((await listModels(dir)).map((m) => [m.name, m.kind, m.demo, m.prepared])).toEqual([['tiny-sd', 'diffusion', false, ['8x8']]]);
    expect(await listInstalledModels(dir)).toEqual([{ name: 'tiny-sd', kind: 'diffusion', demo: false }]);
    expect((await verifyModel(dir, 'tiny-sd')).ok).toBe(true);
    // Nothing is left in the staging folder.
    expect(await readdir(join(dir, MODELS_DEFAULTS.stagingFolder))).toEqual([]);
    // Large files went through the storage redirect, on another origin.
    expect(server.requests.some((q) => q.host.startsWith('localhost:') && q.url.startsWith('/cdn/'))).toBe(true);
  });

  it('a second install of the same commit is a no-op; --force installs again', async () => {
    const server = await serve();
    const dir = await modelsDir();
    await installFromHub(options(server, dir));
    const before = server.requests.length;
    const again = await installFromHub(options(server, dir));
    expect(again.upToDate).toBe(true);
    expect(server.requests.slice(before).map((q) => q.url)).toEqual([`/api/models/${REPO}/revision/onnx?blobs=true`]);
    const forced = await installFromHub(options(server, dir, { force: true }));
    expect(forced.upToDate).toBe(false);
    expect((await verifyModel(dir, 'tiny-sd')).ok).toBe(true);
  });

  it('uses the paginated tree listing when the revision lists no hashes, and sends the token only to the hub', async () => {
    const server = await serve({ bareSiblings: true, pageSize: 4, token: 'hf_secret' });
    const dir = await modelsDir();
    const denied = await expectCode(installFromHub(options(server, dir)), 'E_DOWNLOAD_FAILED');
    expect(denied.hint).toMatch(/HF_TOKEN/);

    await installFromHub(options(server, dir, { client: new HubClient({ baseUrl: server.url, token: 'hf_secret' }) }));
    expect((await verifyModel(dir, 'tiny-sd')).ok).toBe(true);
    const treePages = server.requests.filter((q) => q.url.includes('/tree/'));
    expect(treePages.length).toBeGreaterThan(3);
    expect(treePages[0]?.url).toBe(`/api/models/${REPO}/tree/${COMMIT}?recursive=true`);
    const storage = server.requests.filter((q) => q.url.startsWith('/cdn/'));
    expect(storage.length).toBeGreaterThan(0);
    expect(storage.every((q) => q.authorization === undefined)).toBe(true);
    const hubSide = server.requests.filter((q) => q.host.startsWith('127.0.0.1:') && q.authorization !== undefined);
    expect(hubSide.every((q) => q.authorization === 'Bearer hf_secret')).toBe(true);
  });

  it('resumes a file after the connection drops mid-file, with a Range request', async () => {
    const server = await serve();
    server.faults.push({ path: 'unet/weights.pb', kind: 'drop', after: 1_000_000 });
    const dir = await modelsDir();
    const notices: string[] = [];
    await installFromHub(options(server, dir, { events: { notice: (t) => notices.push(t) } }));
    const weights = server.files.get('unet/weights.pb');
    expect(await sha256(join(dir, 'tiny-sd', 'unet', 'weights.pb'))).toBe(weights?.sha256);
    const ranges = server.requests.filter((q) => q.url.startsWith(`/cdn/${weights?.sha256}`)).map((q) => q.range);
    expect(ranges.length).toBe(2);
    expect(ranges[0]).toBeUndefined();
    // The drop happened after at least part of the first megabyte arrived; the retry asks for the rest.
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(/=(\d+)-/.exec(ranges[1] ?? '')?.[1])).toBeGreaterThan(0);
    expect(notices.some((n) => n.startsWith('unet/weights.pb: connection') || n.startsWith('unet/weights.pb: connection dropped'))).toBe(true);
    expect(notices.some((n) => /unet\/weights\.pb: resuming at \d+ bytes/.test(n))).toBe(true);
  });

  it('a failed run leaves no model in place; the next run resumes the partial file', async () => {
    const server = await serve();
    server.faults.push({ path: 'unet/weights.pb', kind: 'drop', after: 2_000_000 });
    const dir = await modelsDir();
    await expectCode(installFromHub(options(server, dir, { download: { ...FAST, attempts: 1 } })), 'E_DOWNLOAD_FAILED');
    expect(await listModels(dir)).toEqual([]);
    expect(await listInstalledModels(dir)).toEqual([]);
    await expect(stat(join(dir, 'tiny-sd'))).rejects.toThrow();
    const staging = join(dir, MODELS_DEFAULTS.stagingFolder, `tiny-sd@${COMMIT.slice(0, 12)}`, 'unet', 'weights.pb.part');
    const kept = (await stat(staging)).size;
    expect(kept).toBeGreaterThan(0);

    const resumed: number[] = [];
    await installFromHub(options(server, dir, { events: { resumed: (b) => resumed.push(b) } }));
    expect(resumed).toContain(kept);
    const weights = server.files.get('unet/weights.pb');
    const last = server.requests.filter((q) => q.url.startsWith(`/cdn/${weights?.sha256}`)).at(-1);
    expect(last?.range).toBe(`bytes=${kept}-`);
    expect((await verifyModel(dir, 'tiny-sd')).ok).toBe(true);
  });

  it('starts a file over when the storage host ignores Range', async () => {
    const server = await serve();
    server.faults.push({ path: 'unet/weights.pb', kind: 'drop', after: 500_000 }, { path: 'unet/weights.pb', kind: 'ignore-range' });
    const dir = await modelsDir();
    let counted = 0;
    await installFromHub(options(server, dir, { events: { bytes: (d) => (counted += d) } }));
    expect(await sha256(join(dir, 'tiny-sd', 'unet', 'weights.pb'))).toBe(server.files.get('unet/weights.pb')?.sha256);
    const total = selectModelFiles([...server.files.values()]).reduce((s, f) => s + f.bytes.length, 0);
    expect(counted).toBe(total);
  });

  it('detects a corrupted file by its hash and fetches it again', async () => {
    const server = await serve();
    server.faults.push({ path: 'text_encoder/model.onnx', kind: 'corrupt' });
    const dir = await modelsDir();
    const notices: string[] = [];
    await installFromHub(options(server, dir, { events: { notice: (t) => notices.push(t) } }));
    const file = server.files.get('text_encoder/model.onnx');
    expect(await sha256(join(dir, 'tiny-sd', 'text_encoder', 'model.onnx'))).toBe(file?.sha256);
    const gets = server.requests.filter((q) => q.url.startsWith(`/cdn/${file?.sha256}`));
    expect(gets.map((q) => q.range)).toEqual([undefined, undefined]);
    expect(notices).toContain('text_encoder/model.onnx: checksum mismatch: downloading the file again');
  });

  it('detects a corrupted plain (git) file by its blob id', async () => {
    const server = await serve();
    server.faults.push({ path: 'tokenizer/vocab.json', kind: 'corrupt' });
    const dir = await modelsDir();
    await installFromHub(options(server, dir));
    expect(await sha256(join(dir, 'tiny-sd', 'tokenizer', 'vocab.json'))).toBe(server.files.get('tokenizer/vocab.json')?.sha256);
    expect(server.requests.filter((q) => q.url.endsWith('/tokenizer/vocab.json')).length).toBe(2);
  });

  it('refuses a file that is corrupted every time, and installs nothing', async () => {
    const server = await serve();
    server.faults.push({ path: 'vae_decoder/model.onnx', kind: 'corrupt', times: 5 });
    const dir = await modelsDir();
    const err = await expectCode(installFromHub(options(server, dir)), 'E_MODEL_INVALID');
    expect(err.message).toContain('vae_decoder/model.onnx does not match the hub');
    expect(await listModels(dir)).toEqual([]);
  });

  it('a stalled server times out with a clear error', async () => {
    const server = await serve();
    server.faults.push({ path: 'unet/weights.pb', kind: 'stall', after: 0, times: 2 });
    const dir = await modelsDir();
    const err = await expectCode(installFromHub(options(server, dir, { download: { ...FAST, attempts: 2, stallTimeoutMs: 300 } })), 'E_TIMEOUT');
    expect(err.message).toContain('The download of unet/weights.pb stalled: no data for 0.3 s, 2 times.');
    expect(err.hint).toMatch(/resumes where it stopped/);
    expect(await listModels(dir)).toEqual([]);
  });

  it('attempts that make progress do not count towards giving up', async () => {
    const server = await serve();
    // Three drops in a row, each after some bytes: more failures than attempts (2), yet it completes.
    server.faults.push({ path: 'unet/weights.pb', kind: 'drop', after: 300_000, times: 3 });
    const dir = await modelsDir();
    await installFromHub(options(server, dir, { download: { ...FAST, attempts: 2 } }));
    expect(await sha256(join(dir, 'tiny-sd', 'unet', 'weights.pb'))).toBe(server.files.get('unet/weights.pb')?.sha256);
    const ranges = server.requests.filter((q) => q.url.startsWith(`/cdn/${server.files.get('unet/weights.pb')?.sha256}`)).map((q) => q.range);
    expect(ranges.length).toBe(4);
  });

  it('a stall once is retried and resumed', async () => {
    const server = await serve();
    server.faults.push({ path: 'unet/weights.pb', kind: 'stall', after: 300_000 });
    const dir = await modelsDir();
    await installFromHub(options(server, dir, { download: { ...FAST, stallTimeoutMs: 300 } }));
    expect((await verifyModel(dir, 'tiny-sd')).ok).toBe(true);
  });

  it('refuses listings whose paths would write outside the model folder', async () => {
    for (const path of ['../escape.onnx', 'unet/../../escape.onnx', 'unet//x', '/abs/file']) {
      const server = await serve({ extraListing: [{ path, size: 3 }] });
      const dir = await modelsDir();
      const err = await expectCode(installFromHub(options(server, dir)), 'E_DOWNLOAD_FAILED');
      expect(err.message).toContain('unsafe path');
      await expect(stat(join(dir, '..', 'escape.onnx'))).rejects.toThrow();
      await server.close();
      hub = undefined;
    }
  });

  it('a missing repository or revision is E_MODEL_MISSING; a listing without the pipeline files is refused', async () => {
    const server = await serve();
    const dir = await modelsDir();
    await expectCode(installFromHub(options(server, dir, { revision: 'main' })), 'E_MODEL_MISSING');
    await expectCode(installFromHub(options(server, dir, { repo: 'test-org/other' })), 'E_MODEL_MISSING');
    await server.close();
    const partial = join(work, 'partial-repo');
    await writeTinyStableDiffusion(partial, { components: ['unet', 'tokenizer', 'scheduler'] });
    hub = await startHubServer({ repo: REPO, revision: 'onnx', commit: COMMIT, root: partial });
    const err = await expectCode(installFromHub(options(hub, dir)), 'E_MODEL_INVALID');
    expect(err.message).toContain('lacks text_encoder/model.onnx');
  });
});

describe('the default model', () => {
  it('is SD v1.4 from its onnx branch, installed as stable-diffusion-v1-4', async () => {
    hub = await startHubServer({ repo: 'CompVis/stable-diffusion-v1-4', revision: 'onnx', commit: COMMIT, root: repoDir });
    const dir = await modelsDir();
    const r = await installFromHub({ modelsDir: dir, client: new HubClient({ baseUrl: hub.url }), prepareSize: 0, download: FAST });
    expect(r.name).toBe('stable-diffusion-v1-4');
    expect(r.manifest.source).toMatchObject({ repo: 'CompVis/stable-diffusion-v1-4', revision: 'onnx' });
    expect(hub.requests[0]?.url).toBe('/api/models/CompVis/stable-diffusion-v1-4/revision/onnx?blobs=true');
    // Naming the default repository without a revision still means its ONNX branch.
    const again = await installFromHub({ modelsDir: dir, client: new HubClient({ baseUrl: hub.url }), repo: 'CompVis/stable-diffusion-v1-4', prepareSize: 0 });
    expect(again.upToDate).toBe(true);
  });
});

describe('install guards', () => {
  it('refuses a download that does not fit on the disk, before fetching anything', async () => {
    const server = await serve();
    const dir = await modelsDir();
    const err = await expectCode(installFromHub(options(server, dir, { freeDiskBytes: async () => 1_000_000 })), 'E_DOWNLOAD_FAILED');
    expect(err.message).toMatch(/Not enough disk space: the model needs 73\.2 MB more, 1\.00 MB is free\./);
    expect(server.requests.filter((q) => q.url.includes('/resolve/') || q.url.startsWith('/cdn/'))).toEqual([]);
  });

  it('one installer per model: a live lock refuses, a stale one is taken over', async () => {
    const server = await serve();
    const dir = await modelsDir();
    const lock = join(dir, MODELS_DEFAULTS.stagingFolder, `tiny-sd@${COMMIT.slice(0, 12)}.lock`);
    await mkdir(join(dir, MODELS_DEFAULTS.stagingFolder), { recursive: true });
    await writeFile(lock, `${process.ppid}\n`);
    const err = await expectCode(installFromHub(options(server, dir)), 'E_BAD_REQUEST');
    expect(err.message).toContain('Another `p2pz models install` is downloading this model');
    // A process id that cannot be running.
    await writeFile(lock, '2147483646\n');
    await installFromHub(options(server, dir));
    await expect(stat(lock)).rejects.toThrow();
    expect((await verifyModel(dir, 'tiny-sd')).ok).toBe(true);
  });
});

describe('installFromFolder', () => {
  it('copies a local export, records hashes, and verify notices a later change', async () => {
    const dir = await modelsDir();
    const r = await installFromFolder({ modelsDir: dir, folder: repoDir, name: 'local-sd', prepareSize: 0 });
    expect(r.manifest.source).toEqual({ kind: 'folder' });
    expect(r.manifest.files.map((f) => f.path)).not.toContain('README.md');
    expect(await sha256(join(dir, 'local-sd', 'unet', 'weights.pb'))).toBe(await sha256(join(repoDir, 'unet', 'weights.pb')));
    expect((await verifyModel(dir, 'local-sd')).ok).toBe(true);
    const path = join(dir, 'local-sd', 'scheduler', 'scheduler_config.json');
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('"', "'"));
    const report = await verifyModel(dir, 'local-sd');
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual(['scheduler/scheduler_config.json: content differs from the installed file (hash mismatch)']);
  });

  it('installs a distilled preview generator under gan/, found by the preview registry', async () => {
    const dir = await modelsDir();
    const src = join(work, 'generator');
    await mkdir(src, { recursive: true });
    await writeTinyImg2Img(join(src, 'generator.onnx'));
    await writeFile(join(src, 'meta.json'), JSON.stringify({ v: 1, source: 'Cat', target: 'Golden  Retriever', size: 256 }));
    await writeFile(join(src, 'notes.txt'), 'not part of the generator');
    const r = await installFromFolder({ modelsDir: dir, folder: src });
    expect(r.name).toBe('gan/cat-golden-retriever');
    expect(r.manifest.kind).toBe('gan');
    expect(r.manifest.files.map((f) => f.path).sort()).toEqual(['generator.onnx', 'meta.json']);
    const files = { modelsDir: dir, resolve: (p: string) => resolveModelPath(dir, p) };
    expect((await lookupGanGenerator(files, 'cat', 'golden retriever'))?.name).toBe('cat-golden-retriever');
    expect((await verifyModel(dir, 'gan/cat-golden-retriever')).ok).toBe(true);
    expect((await listModels(dir)).map((m) => [m.name, m.kind, m.demo])).toEqual([['gan/cat-golden-retriever', 'gan', false]]);

    await writeFile(join(src, 'meta.json'), JSON.stringify({ v: 1, source: 'cat' }));
    await expectCode(installFromFolder({ modelsDir: dir, folder: src, name: 'broken' }), 'E_MODEL_INVALID');
  });
});
