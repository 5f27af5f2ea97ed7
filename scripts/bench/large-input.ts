// `npm run bench large-input`: what a small, highly compressible file of a large size costs a job
// (docs/SECURITY.md §R9): an 8000×8000 flat colour as JPEG (quality 1), WebP and PNG, each edited by
// the tiny model with the mask on: with the budget at the 64 MP upload limit and the blend on (what
// every job did before: the full 8000×8000 decoded and returned), and with the default 16 MP budget
// with the blend on (the 4096×4096 original decoded for it) and off (only the working copy decoded,
// shrunk at decode where sharp can). Each run is its own process, so its peak RSS (getrusage maxrss) is its own:
// the table gives the process's peak minus its RSS after a warm-up edit of a small image (models and
// graphs loaded), and the wall time of the large edit alone. The files are made by this parent
// process; the working size is 128 (the tiny model), so the working copy is 128² pixels.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { EditParams } from '../../shared/protocol/index.js';
import { IMAGE_LIMITS } from '../../daemon/image/sniff.js';
import { DECODE_DEFAULTS } from '../../daemon/image/decode.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { runPix2PixZero } from '../../daemon/pipeline/pix2pix-zero.js';
import { InversionCache } from '../../daemon/pipeline/inversion-cache.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { machineLine } from './machine.js';

type Format = 'jpeg' | 'webp' | 'png';
const SIDE = 8000;

async function largeImage(format: Format): Promise<Buffer> {
  const flat = sharp({ create: { width: SIDE, height: SIDE, channels: 3, background: { r: 200, g: 120, b: 40 } } });
  if (format === 'jpeg') return flat.jpeg({ quality: 1 }).toBuffer();
  if (format === 'webp') return flat.webp({ quality: 1 }).toBuffer();
  return flat.png({ compressionLevel: 9 }).toBuffer();
}

interface ChildResult { bytes: number; ms: number; baseMiB: number; peakMiB: number; out: string; path: string }

if (process.argv[2] === '--child') {
  const [, , , root, format, budget, blend] = process.argv;
  const models = new SessionCache({ modelsDir: root!, executionProviders: ['cpu'], maxSessions: 8 });
  const edit = EditParams.parse({ source: 'cat', target: 'dog', steps: 2, regSteps: 1, size: 128, seed: 1, mask: true, blend: blend === 'blend', caption: 'a photo of a cat' });
  const ctx = { models, signal: new AbortController().signal, progress: () => {}, inversionCache: new InversionCache(), directionCacheDir: join(root!, 'directions') };
  const small = await sharp({ create: { width: 160, height: 120, channels: 3, background: { r: 200, g: 120, b: 40 } } }).png().toBuffer();
  await runPix2PixZero({ image: small, edit, model: 'model', bankCount: 4 }, ctx);
  // Made by the parent: encoding 8000×8000 here would count in this process's peak.
  const image = await readFile(join(root!, `large.${format}`));
  global.gc?.();
  const baseMiB = process.memoryUsage().rss / 2 ** 20;
  const t = performance.now();
  const result = await runPix2PixZero({ image, edit, model: 'model', bankCount: 4, maxOutputPixels: Number(budget) }, ctx);
  const ms = performance.now() - t;
  const out = result.outputs.map((o) => `${o.role} ${o.width}×${o.height}`).join(', ');
  const r: ChildResult = { bytes: image.byteLength, ms, baseMiB, peakMiB: process.resourceUsage().maxRSS / 1024, out, path: JSON.stringify(result.details.decode) };
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}

const root = await mkdtemp(join(tmpdir(), 'p2pz-bench-large-'));
try {
  await writeTinyStableDiffusion(join(root, 'model'));
  const rows: string[] = [];
  for (const format of ['jpeg', 'webp', 'png'] as const) {
    await writeFile(join(root, `large.${format}`), await largeImage(format));
    const runs = [['before: 64 MP, blend', IMAGE_LIMITS.maxPixels, 'blend'], ['after: 16 MP, blend', DECODE_DEFAULTS.maxOutputPixels, 'blend'], ['after: 16 MP, no blend', DECODE_DEFAULTS.maxOutputPixels, 'none']] as const;
    for (const [label, budget, blend] of runs) {
      const child = spawnSync(process.execPath, ['--expose-gc', process.argv[1]!, '--child', root, format, String(budget), blend], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const line = child.stdout.trim().split('\n').pop() ?? '';
      if (child.status !== 0 || !line.startsWith('{')) throw new Error(`child failed: ${child.stderr.slice(-2000)}`);
      const r = JSON.parse(line) as ChildResult;
      rows.push(`| ${format} (${r.bytes} bytes) | ${label} | \`${r.path}\` | ${r.out} | ${(r.ms / 1000).toFixed(1)} s | ${(r.peakMiB - r.baseMiB).toFixed(0)} MiB (${r.peakMiB.toFixed(0)} peak) |`);
    }
  }
  console.log([
    `### An ${SIDE}×${SIDE} flat image through a whole edit (tiny model, mask on)`,
    '',
    `\`npm run bench large-input\` (${machineLine()})`,
    '',
    '| file | output budget, blend | decode paths | results | edit time | peak RSS over the warm process |',
    '|---|---|---|---|---:|---:|',
    ...rows,
  ].join('\n'));
} finally {
  await rm(root, { recursive: true, force: true });
}
