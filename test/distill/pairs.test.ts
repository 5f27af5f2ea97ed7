// `p2pz distill pairs` over the generated tiny Stable Diffusion model: a folder of source images (one
// of them broken) becomes a manifest with settings and hashes; an interrupted run continues where it
// stopped (and redoes files written after the last manifest update); a changed filter re-judges the
// pairs without editing again; other settings are refused; the trainer's reader accepts the result.
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EditParams, P2pzError } from '../../shared/protocol/index.js';
import { generatePairs, type PairsReport, type PairsRequest } from '../../daemon/distill/pairs.js';
import { PairsManifest, readPairsManifest, type PairEntry } from '../../daemon/distill/manifest.js';
import { InversionCache } from '../../daemon/pipeline/inversion-cache.js';
import { MODEL_NAME, tinyModels, type TinyModels } from '../daemon/pipeline/tiny-pipeline.js';
import { DISTILL_DIR, PYTHON, runProcess } from './helpers.js';

let tiny: TinyModels;
let tmp = '';
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function request(extra: Partial<EditParams> = {}, filter: PairsRequest['filter'] = {}): PairsRequest {
  return {
    images: join(tmp, 'images'),
    out: join(tmp, 'dataset'),
    edit: EditParams.parse({ source: 'cat', target: 'dog', steps: 2, regSteps: 0, size: 64, seed: 5, ...extra }),
    model: MODEL_NAME,
    bankCount: 2,
    // The tiny model's edits are small: keep the thresholds low enough that they are kept.
    filter: { minChange: 0.001, ...filter },
  };
}

async function run(req: PairsRequest, stopAfter?: number): Promise<{ report: PairsReport; seen: Array<[string, boolean]>; unetRuns: number }> {
  const controller = new AbortController();
  const seen: Array<[string, boolean]> = [];
  tiny.counting.reset();
  const report = await generatePairs(req, {
    models: tiny.counting,
    signal: controller.signal,
    inversionCache: new InversionCache(),
    onPair: (entry, reused) => {
      seen.push([entry.name, reused]);
      if (seen.length === stopAfter) controller.abort();
    },
  });
  return { report, seen, unetRuns: tiny.counting.count('unet/') };
}

async function manifest(): Promise<PairsManifest> {
  const m = await readPairsManifest(join(tmp, 'dataset/manifest.json'));
  if (!m) throw new Error('no manifest');
  return m;
}

beforeAll(async () => {
  tiny = await tinyModels('opset17');
  tmp = await mkdtemp(join(tmpdir(), 'p2pz-distill-pairs-'));
  await mkdir(join(tmp, 'images'));
  const image = (w: number, h: number, k: number) => {
    const raw = Buffer.alloc(w * h * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * (7 + k) + ((i / (3 * w)) | 0) * 13) % 256;
    return sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  };
  await writeFile(join(tmp, 'images/a.png'), await image(96, 48, 0).png().toBuffer());
  await writeFile(join(tmp, 'images/b.jpg'), await image(40, 70, 1).jpeg().toBuffer());
  await writeFile(join(tmp, 'images/c.png'), Buffer.from('not an image at all'));
  await writeFile(join(tmp, 'images/d.webp'), await image(64, 64, 2).webp({ lossless: true }).toBuffer());
  await writeFile(join(tmp, 'images/notes.txt'), 'ignored');
});

afterAll(async () => {
  await tiny?.dispose();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('generatePairs', () => {
  let firstRuns = 0;
  it('stops when interrupted, with every finished pair in the manifest', async () => {
    const { report, seen, unetRuns } = await run(request(), 1);
    expect(report).toMatchObject({ total: 4, made: 1, reused: 0, interrupted: true });
    expect(seen).toEqual([['a.png', false]]);
    const m = await manifest();
    expect(m.pairs.map((p) => p.name)).toEqual(['a.png']);
    expect(m).toMatchObject({ v: 1, source: 'cat', target: 'dog', model: MODEL_NAME });
    expect(m.settings).toEqual({ steps: 2, cfg: 5, xa: 0.1, regSteps: 0, size: 64, editScale: 1, seed: 5, vaeLatent: 'mean', bankCount: 2 });
    expect(m.modelHash).toMatch(/^[0-9a-f]{64}$/);
    firstRuns = unetRuns;
    expect(firstRuns).toBeGreaterThan(0);
  });

  it('continues where it stopped: done pairs are reused, files written after the last manifest update are redone', async () => {
    // A crash after b.jpg's files were written but before the manifest named them: a stale file.
    const bId = sha256(Buffer.from('b.jpg')).slice(0, 16);
    await writeFile(join(tmp, `dataset/pairs/${bId}.output.png`), 'stale');
    const { report, seen, unetRuns } = await run(request());
    expect(report).toMatchObject({ total: 4, made: 3, reused: 1, interrupted: false, failed: 1 });
    expect(seen).toEqual([['a.png', true], ['b.jpg', false], ['c.png', false], ['d.webp', false]]);
    // Two images edited now, one before: the UNet ran exactly twice as often as for the first.
    expect(unetRuns).toBe(2 * firstRuns);
    const m = await manifest();
    expect(m.pairs.map((p) => [p.name, p.status])).toEqual([['a.png', 'kept'], ['b.jpg', 'kept'], ['c.png', 'failed'], ['d.webp', 'kept']]);
    const broken = m.pairs.find((p) => p.name === 'c.png');
    expect(broken?.status === 'failed' ? broken.error.code : null).toBe('E_IMAGE_FORMAT');
  });

  it('records each pair at the working size with hashes of every file, and the filter\'s measurements', async () => {
    const m = await manifest();
    const sizes: Record<string, [number, number]> = { 'a.png': [64, 64], 'b.jpg': [64, 64], 'd.webp': [64, 64] };
    for (const p of m.pairs.filter((e): e is Extract<PairEntry, { status: 'kept' }> => e.status === 'kept')) {
      expect(p.sourceHash).toBe(sha256(await readFile(join(tmp, 'images', p.name))));
      const files = await Promise.all([p.input, p.output, p.mask].map((f) => readFile(join(tmp, 'dataset', f))));
      expect(files.map(sha256)).toEqual([p.inputHash, p.outputHash, p.maskHash]);
      const [x, y, mask] = await Promise.all(files.map((f) => sharp(f).raw().toBuffer({ resolveWithObject: true })));
      expect([p.width, p.height]).toEqual(sizes[p.name]);
      for (const img of [x!, y!, mask!]) expect([img.info.width, img.info.height]).toEqual([p.width, p.height]);
      expect([x!.info.channels, y!.info.channels]).toEqual([3, 3]);
      // The measurements, recomputed here from the stored files.
      let diff = 0;
      for (let i = 0; i < x!.data.length; i++) diff += Math.abs(x!.data[i]! - y!.data[i]!);
      expect(p.metrics.change).toBeCloseTo(diff / (255 * x!.data.length), 12);
      const stride = mask!.info.channels;
      const gray = mask!.data.filter((_, i) => i % stride === 0);
      expect(p.metrics.maskCoverage).toBeCloseTo(gray.filter((v) => v >= 128).length / gray.length, 12);
      expect(p.metrics.change).toBeGreaterThan(0);
    }
  });

  it('re-judges done pairs when the filter changes, without editing again, and retries failures', async () => {
    const { report, unetRuns } = await run(request({}, { minChange: 0.99, maxChange: 1 }));
    expect(report).toMatchObject({ made: 1, reused: 3, kept: 0, dropped: 3, failed: 1 });
    expect(unetRuns).toBe(0); // only the broken image was tried again, and it fails at decoding
    const m = await manifest();
    expect(m.filter.minChange).toBe(0.99);
    for (const p of m.pairs) if (p.status === 'dropped') expect(p.reason).toBe('negligible-change');
    const back = await run(request());
    expect(back.report).toMatchObject({ made: 1, reused: 3, kept: 3, dropped: 0, failed: 1 });
  });

  it('refuses to continue a dataset made with other settings', async () => {
    const err = await generatePairs(request({ steps: 3 }), { models: tiny.counting, signal: new AbortController().signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_BAD_REQUEST');
    expect((err as P2pzError).message).toContain('its steps is 2, not 3');
    const other = await generatePairs({ ...request(), edit: EditParams.parse({ ...request().edit, target: 'fox' }) }, { models: tiny.counting, signal: new AbortController().signal }).catch((e: unknown) => e);
    expect((other as P2pzError).message).toContain('it is for cat → dog');
  });

  it('is read by the trainer: the kept pairs, verified against their hashes', async () => {
    const m = await manifest();
    const kept = m.pairs.filter((p): p is Extract<PairEntry, { status: 'kept' }> => p.status === 'kept');
    const h = createHash('sha256');
    for (const p of kept) h.update(`${p.inputHash}:${p.outputHash}\n`);
    const script = [
      'import sys; sys.path.insert(0, sys.argv[1])',
      'from p2pz_distill.dataset import read_manifest, PairsDataset',
      'm = read_manifest(sys.argv[2]); d = PairsDataset(m, crop=32)',
      'x, y = d[0]',
      'print(len(m.pairs), m.size, m.source, m.target, m.data_hash, tuple(x.shape), float(x.min()) >= -1, float(x.max()) <= 1)',
    ].join('\n');
    const r = await runProcess(PYTHON, ['-c', script, DISTILL_DIR, join(tmp, 'dataset')]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`${kept.length} 64 cat dog ${h.digest('hex')} (3, 32, 32) True True`);
  });
});
