// `npm run bench weights [-- --latent N --options a,b,…]`: how many copies of the UNet's weights a
// process holds when it opens the UNet graphs an edit runs (the UNet, the cross-attention graph at
// batch 1 and 2, the gradient graph), for several onnxruntime session options. Each option runs in its
// own child process that opens the sessions one after another, runs each once at a small latent, and
// reports the resident memory (RSS, and its anonymous and file-backed parts from /proc/self/status)
// after each step. The SD-1.5-shaped UNet (860 M parameters, all-zero weights in a sparse file: the
// same bytes to hold) is generated into a temporary folder.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { prepareModel } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { UNET_WEIGHTS_LOCATION } from '../../daemon/onnx/tiny/unet.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    latent: { type: 'string', default: '8' },
    preset: { type: 'string', default: 'sd15' },
    options: { type: 'string', default: 'all,all-noprepack,extended,extended-noprepack,memory-all,memory-extended-noprepack' },
    child: { type: 'string' },
    paths: { type: 'string' },
    /** Keep the generated model in this folder and reuse it on the next run. */
    dir: { type: 'string' },
  },
});

/** The session options under test, by name. `memory-*` pass the weights file as one in-memory buffer
 *  (`externalData`) shared by every session. */
const VARIANTS: Record<string, { level: 'basic' | 'extended' | 'all'; prepack: boolean; inMemory: boolean }> = {
  all: { level: 'all', prepack: true, inMemory: false },
  'all-noprepack': { level: 'all', prepack: false, inMemory: false },
  extended: { level: 'extended', prepack: true, inMemory: false },
  'extended-noprepack': { level: 'extended', prepack: false, inMemory: false },
  basic: { level: 'basic', prepack: true, inMemory: false },
  'memory-all': { level: 'all', prepack: true, inMemory: true },
  'memory-extended-noprepack': { level: 'extended', prepack: false, inMemory: true },
  'memory-all-noprepack': { level: 'all', prepack: false, inMemory: true },
};

function memory(): { rss: number; anon: number; file: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
}

/** Dynamic dims of the original UNet: batch 1, the latent size, SD's 77 tokens of width 768. */
function feedsFor(session: ort.InferenceSession, latent: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const meta of session.inputMetadata) {
    if (!meta.isTensor) continue;
    const fill = meta.name === 'sample' ? [1, 4, latent, latent] : meta.name === 'encoder_hidden_states' ? [1, 77, 768] : [1];
    const dims = meta.shape.map((d, i) => (typeof d === 'number' ? d : (fill[i] ?? 1)));
    const n = dims.reduce((a, b) => a * b, 1);
    if (meta.type === 'int64') feeds[meta.name] = new ort.Tensor('int64', new BigInt64Array(n).fill(500n), dims);
    else feeds[meta.name] = new ort.Tensor('float32', new Float32Array(n).map((_, i) => Math.sin(i) * 0.5), dims);
  }
  return feeds;
}

async function child(variant: string, paths: string[], latent: number): Promise<void> {
  const v = VARIANTS[variant];
  if (!v) throw new Error(`unknown variant ${variant}`);
  const weights = join(paths[0] ? join(paths[0], '..') : '', UNET_WEIGHTS_LOCATION.opset14);
  const shared = v.inMemory ? await readFile(weights) : undefined;
  const steps: { step: string; rss: number; anon: number; file: number }[] = [{ step: 'start', ...memory() }];
  if (shared) steps.push({ step: 'weights read', ...memory() });
  const sessions: ort.InferenceSession[] = [];
  for (const path of paths) {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: ['cpu'],
      graphOptimizationLevel: v.level,
      intraOpNumThreads: 2,
      logSeverityLevel: 3,
      ...(v.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } }),
      ...(shared ? { externalData: [{ path: UNET_WEIGHTS_LOCATION.opset14, data: shared }] } : {}),
    };
    const session = await ort.InferenceSession.create(path, options);
    sessions.push(session);
    steps.push({ step: `open ${basename(path)}`, ...memory() });
    await session.run(feedsFor(session, latent));
    steps.push({ step: `run ${basename(path)}`, ...memory() });
  }
  process.stdout.write(`${JSON.stringify({ steps, maxRss: process.resourceUsage().maxRSS / 1024 })}\n`);
}

async function main(): Promise<void> {
  if (values.child) {
    await child(values.child, (values.paths ?? '').split(','), Number(values.latent));
    return;
  }
  const latent = Number(values.latent);
  const preset = values.preset === 'tiny' ? TINY_SD : SD15_SHAPED;
  const keep = values.dir !== undefined;
  const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'p2pz-bench-weights-')));
  try {
    if (!keep || !existsSync(join(dir, 'unet/model.onnx'))) await writeTinyStableDiffusion(dir, { preset, fill: values.preset === 'tiny' ? 'random' : 'sparse-zeros', flavour: 'opset14', components: ['unet'] });
    const size = { height: latent * 8, width: latent * 8 };
    const b1 = await prepareModel(dir, { ...size, batch: 1, graphs: 'xattn' });
    const b2 = await prepareModel(dir, { ...size, batch: 2 });
    const paths = [join(dir, 'unet/model.onnx'), b1.xattnPath, b2.xattnPath, b2.gradPath];
    const weightsMiB = statSync(join(dir, 'unet', UNET_WEIGHTS_LOCATION.opset14)).size / 2 ** 20;
    const sections: string[] = [];
    for (const variant of (values.options ?? '').split(',')) {
      const r = spawnSync(process.execPath, [process.argv[1] ?? '', '--child', variant, '--latent', String(latent), '--paths', paths.join(',')], { encoding: 'utf8', maxBuffer: 1 << 22 });
      if (r.status !== 0) {
        sections.push(`### ${variant}\n\nfailed: ${r.stderr.split("\n").filter((l) => /Error|error/.test(l)).slice(0, 3).join(" ")}\n`);
        continue;
      }
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { steps: { step: string; rss: number; anon: number; file: number }[]; maxRss: number };
      const rows = out.steps.map((s) => `| ${s.step} | ${s.rss.toFixed(0)} | ${s.anon.toFixed(0)} | ${s.file.toFixed(0)} | ${(s.rss / weightsMiB).toFixed(2)} |`);
      sections.push(`### ${variant}\n\n| step | RSS MiB | anonymous MiB | file MiB | RSS / weights |\n|---|---:|---:|---:|---:|\n${rows.join('\n')}\n\npeak RSS ${out.maxRss.toFixed(0)} MiB = ${(out.maxRss / weightsMiB).toFixed(2)} × the weights\n`);
    }
    console.log(`## weights: copies of the UNet weights per process

Machine: ${machineLine()}. Command: \`npm run bench weights -- --latent ${latent} --preset ${values.preset}\`.
UNet weights file: ${weightsMiB.toFixed(0)} MiB. Sessions opened in the order of an edit, each run once at latent ${latent}×${latent}.

${sections.join('\n')}`);
  } finally {
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}

await main();
