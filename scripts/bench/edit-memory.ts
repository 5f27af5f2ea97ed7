// `npm run bench edit-memory [-- --sizes 256,512 --configs before,after --arena on|off --prepack on|off]`: peak memory of the UNet part of
// an SD-1.5-shaped edit (860 M parameters, all-zero weights in a sparse file: the same bytes and
// kernels), one child process per configuration and working size, so each max RSS is its own:
//   before  four sessions, as edits ran until the roles model: the UNet (inversion), the cross-
//           attention graph at batch 1 (reference) and 2 (edit ε), and the gradient graph keeping
//           every attention probability for the backward pass
//   after   one session of the roles model (onnx/roles-model.ts) whose gradient graph recomputes the
//           self-attention probabilities (autodiff/recompute.ts)
//   forward one session of the batch-2 cross-attention graph alone, one call: the activation peak of
//           the forward pass that any edit needs (peak − weights), the goal's yardstick
// Each child opens its sessions and runs one step of an edit in the pipeline's order: inversion
// (batch 1), reference (batch 1), gradient (batch 2), edit ε (batch 2). The text encoder and the VAE
// are not loaded (they add the same ≈0.7 GB to both).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { guidanceGradientModel } from '../../daemon/onnx/attention/guidance-graph.js';
import { writeDerivedModel } from '../../daemon/onnx/graph/model-io.js';
import { decodeModel } from '../../daemon/onnx/graph/model-io.js';
import { preparePipelineGraphs } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { UNET_WEIGHTS_LOCATION } from '../../daemon/onnx/tiny/unet.js';
import { unetRoles } from '../../daemon/pipeline/unet-roles.js';
import { machineLine } from './machine.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '256,512' },
    configs: { type: 'string', default: 'before,after' },
    /** The generated model is kept here between runs (3.4 GB, sparse). */
    dir: { type: 'string', default: join(tmpdir(), 'p2pz-bench-sd15') },
    child: { type: 'string' },
    size: { type: 'string' },
    threads: { type: 'string', default: '2' },
    /** `off`: onnxruntime's CPU memory arena disabled (freed tensors go back to the system). */
    arena: { type: 'string', default: 'on' },
    /** `off`: onnxruntime's pre-packing of constant weights disabled (session.disable_prepacking). */
    prepack: { type: 'string', default: 'on' },
    /** `off`: onnxruntime's memory pattern (one planned block per run after the first) disabled. */
    mempattern: { type: 'string', default: 'on' },
    /** Edit steps run in a row (an edit runs the gradient and edit-ε roles once per guided step: from the
     *  second call on, onnxruntime serves a run from the memory pattern it recorded in the first). */
    steps: { type: 'string', default: '1' },
  },
});

interface ChildResult { openMs: number; openPeakMiB: number; runs: { role: string; ms: number; rssMiB: number; peakMiB: number }[]; maxRssMiB: number }

const rssMiB = (): number => process.memoryUsage().rss / 2 ** 20;
const peakMiB = (): number => process.resourceUsage().maxRSS / 1024;

function feeds(latent: number, batch: number, extra: Record<string, ort.Tensor> = {}): Record<string, ort.Tensor> {
  const n = batch * 4 * latent * latent;
  return {
    sample: new ort.Tensor('float32', new Float32Array(n).map((_, i) => Math.sin(i) * 0.5), [batch, 4, latent, latent]),
    timestep: new ort.Tensor('int64', new BigInt64Array(batch).fill(501n), [batch]),
    encoder_hidden_states: new ort.Tensor('float32', new Float32Array(batch * 77 * 768).map((_, i) => Math.cos(i) * 0.5), [batch, 77, 768]),
    ...extra,
  };
}

async function child(config: string, pixels: number, dir: string, threads: number): Promise<void> {
  const latent = pixels / 8;
  const prepared = await preparePipelineGraphs(dir, { height: pixels, width: pixels });
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3, enableCpuMemArena: values.arena !== 'off', enableMemPattern: values.mempattern !== 'off', ...(values.prepack === 'off' ? { extra: { session: { disable_prepacking: '1' } } } : {}) };
  const refs: Record<string, ort.Tensor> = {};
  for (const s of prepared.pair.manifest.sites) {
    refs[s.output.replace('attn_map_', 'attn_ref_')] = new ort.Tensor('float32', new Float32Array(s.heads * s.queries * s.tokens).fill(1 / s.tokens), [s.heads, s.queries, s.tokens]);
  }
  const runs: ChildResult['runs'] = [];
  const t0 = performance.now();
  const timed = async (role: string, fn: () => Promise<unknown>): Promise<void> => {
    const t = performance.now();
    await fn();
    runs.push({ role, ms: performance.now() - t, rssMiB: rssMiB(), peakMiB: peakMiB() });
  };
  let openMs = 0;
  let openPeakMiB = 0;
  if (config === 'before') {
    const kept = join(dir, 'unet', `model.grad-kept.${latent}x${latent}.onnx`);
    if (!existsSync(kept)) {
      const unet = decodeModel(await readFile(join(dir, 'unet/model.onnx')));
      await writeDerivedModel(guidanceGradientModel(unet, { batch: 2, latentHeight: latent, latentWidth: latent }, { recompute: false }).model, join(dir, 'unet/model.onnx'), kept);
    }
    const open = (p: string): Promise<ort.InferenceSession> => ort.InferenceSession.create(p, options);
    const unet = await open(join(dir, 'unet/model.onnx'));
    const single = await open(prepared.single.xattnPath);
    const grad = await open(kept);
    const pair = await open(prepared.pair.xattnPath);
    openMs = performance.now() - t0;
    openPeakMiB = peakMiB();
    await timed('inversion', () => unet.run(feeds(latent, 1)));
    await timed('reference', () => single.run(feeds(latent, 1)));
    await timed('gradient', () => grad.run(feeds(latent, 2, refs)));
    await timed('edit', () => pair.run(feeds(latent, 2)));
  } else if (config === 'forward') {
    const pair = await ort.InferenceSession.create(prepared.pair.xattnPath, options);
    openMs = performance.now() - t0;
    openPeakMiB = peakMiB();
    await timed('edit', () => pair.run(feeds(latent, 2)));
  } else {
    const session = await ort.InferenceSession.create(prepared.roles.path, options);
    openMs = performance.now() - t0;
    openPeakMiB = peakMiB();
    const unet = unetRoles({ run: (_path, f) => session.run(f) }, prepared.roles);
    await timed('inversion', () => unet.single(feeds(latent, 1)));
    await timed('reference', () => unet.single(feeds(latent, 1)));
    for (let step = 1; step <= Number(values.steps); step++) {
      const tag = step === 1 ? '' : ` ${step}`;
      await timed(`gradient${tag}`, () => unet.grad(feeds(latent, 2, refs)));
      await timed(`edit${tag}`, () => unet.pair(feeds(latent, 2)));
    }
  }
  const result: ChildResult = { openMs, openPeakMiB, runs, maxRssMiB: peakMiB() };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function main(): Promise<void> {
  const dir = values.dir ?? '';
  const threads = Number(values.threads);
  if (values.child) {
    await child(values.child, Number(values.size), dir, threads);
    return;
  }
  if (!existsSync(join(dir, 'unet/model.onnx'))) await writeTinyStableDiffusion(dir, { preset: SD15_SHAPED, fill: 'sparse-zeros', flavour: 'opset14', components: ['unet', 'vae_encoder'] });
  const weightsMiB = statSync(join(dir, 'unet', UNET_WEIGHTS_LOCATION.opset14)).size / 2 ** 20;
  const rows: string[] = [];
  for (const size of (values.sizes ?? '').split(',')) {
    for (const config of (values.configs ?? '').split(',')) {
      const r = spawnSync(process.execPath, [process.argv[1] ?? '', '--child', config, '--size', size, '--dir', dir, '--threads', String(threads), '--arena', values.arena ?? 'on', '--prepack', values.prepack ?? 'on', '--mempattern', values.mempattern ?? 'on', '--steps', values.steps ?? '1'], { encoding: 'utf8', maxBuffer: 1 << 22 });
      if (r.status !== 0) {
        rows.push(`| ${size}² | ${config} | failed: ${r.stderr.split('\n').filter((l) => /Error/.test(l)).slice(0, 2).join(' ')} |||||`);
        continue;
      }
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as ChildResult;
      const runs = out.runs.map((x) => `${x.role} ${(x.ms / 1000).toFixed(1)} s`).join(', ');
      // Peak so far after opening and after each role (max RSS only grows: a role that raises it holds the peak).
      const peaks = [`open ${(out.openPeakMiB / 1024).toFixed(2)}`, ...out.runs.map((x) => `${x.role} ${(x.peakMiB / 1024).toFixed(2)}`)].join(', ');
      const edit = out.runs.find((x) => x.role === 'edit');
      const grad = out.runs.find((x) => x.role === 'gradient');
      const ratio = edit && grad ? (grad.ms / edit.ms).toFixed(2) : '–';
      rows.push(`| ${size}² | ${config} | ${config === 'before' ? 4 : 1} | ${(out.maxRssMiB / 1024).toFixed(2)} | ${(out.maxRssMiB / weightsMiB).toFixed(2)} | ${(out.openMs / 1000).toFixed(0)} s | ${runs} | ${ratio}× | ${peaks} |`);
      console.error(rows[rows.length - 1]);
    }
  }
  console.log(`## edit-memory: peak of the UNet part of an SD-1.5-shaped edit

Machine: ${machineLine()}. Command: \`npm run bench edit-memory -- --sizes ${values.sizes} --configs ${values.configs}${values.steps === '1' ? '' : ` --steps ${values.steps}`}\`.
UNet weights: ${(weightsMiB / 1024).toFixed(2)} GiB (860 M parameters, float32). One child process per row; onnxruntime CPU
provider, graph optimisation 'all', ${threads} intra-op threads, CPU memory arena ${values.arena}, memory pattern ${values.mempattern}, weight pre-packing ${values.prepack}; ${values.steps} edit step(s) in the pipeline's order.
Gradient / forward: the gradient role's run() over the batch-2 forward's (edit ε). Peak GiB so far: max RSS after opening and after each role.

| working size | configuration | UNet sessions | peak RSS GiB | peak / weights | sessions opened in | run() per role | gradient / forward | peak GiB so far |
|---|---|---:|---:|---:|---:|---|---:|---|
${rows.join('\n')}
`);
}

await main();
