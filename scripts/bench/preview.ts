// `npm run bench preview [-- --runs N]`: the distilled GAN preview as a designer gets it. For the
// trainer's generator architectures (models/distill/, exported by its own export_onnx with the
// runtime's contract; the weights are the initialization, which costs the same as trained ones), a
// 512×512 PNG goes through the real daemon (upload, queue, worker, decode, generate, encode, WebSocket
// event, download) and is compared with the generator's own onnxruntime run() at 512×512 with the
// worker's session options. Needs the trainer's Python with PyTorch (P2PZ_PYTHON, default
// /usr/bin/python3); onnxruntime runs on the CPU.
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pairedCells, pairedTimes, photoLikePng, stageTimings, WARMUP_RUNS, withPreviewDaemon } from './lib/preview-service.js';
import { machineLine } from './machine.js';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 5;
const SIZE = 512;
const PYTHON = process.env['P2PZ_PYTHON'] ?? '/usr/bin/python3';
const DISTILL_DIR = join(process.cwd(), 'models/distill');

interface Architecture {
  readonly label: string;
  readonly arch: 'resnet' | 'unet';
  readonly width: number;
  readonly blocks: number;
  readonly depth: number;
}

const ARCHITECTURES: readonly Architecture[] = [
  { label: 'ResNet, 9 blocks, width 64 (train.py default)', arch: 'resnet', width: 64, blocks: 9, depth: 8 },
  { label: 'ResNet, 6 blocks, width 32', arch: 'resnet', width: 32, blocks: 6, depth: 8 },
  { label: 'U-Net, depth 8, width 64', arch: 'unet', width: 64, blocks: 9, depth: 8 },
];

/** Exports the architecture with the trainer's own code; returns its parameter count. */
function exportGenerator(a: Architecture, path: string): Promise<number> {
  const script = [
    'import sys, json',
    'sys.dont_write_bytecode = True',
    'sys.path.insert(0, sys.argv[1])',
    'import torch',
    'from p2pz_distill.networks import build_generator, init_weights',
    'from p2pz_distill.export import export_onnx',
    'torch.manual_seed(0)',
    'G = build_generator(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))',
    'init_weights(G)',
    'export_onnx(G, sys.argv[2])',
    'print(json.dumps({"parameters": sum(p.numel() for p in G.parameters())}))',
  ].join('\n');
  const args = ['-c', script, DISTILL_DIR, path, a.arch, String(a.width), String(a.blocks), String(a.depth)];
  return new Promise((resolve, reject) => {
    execFile(PYTHON, args, { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${PYTHON} could not export the generator (PyTorch installed? set P2PZ_PYTHON): ${stderr.split('\n').filter(Boolean).pop() ?? err.message}`));
      else resolve((JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { parameters: number }).parameters);
    });
  });
}

async function measure(a: Architecture, png: Uint8Array): Promise<string> {
  let parameters = 0;
  return withPreviewDaemon(SIZE, async (path) => { parameters = await exportGenerator(a, path); }, async (daemon) => {
    const megabytes = (await stat(daemon.generatorPath)).size / 2 ** 20;
    const times = await pairedTimes(daemon.generatorPath, SIZE, daemon, png, runs);
    if (times.outcome.engine !== 'gan') throw new Error(`the preview ran on ${times.outcome.engine}, not the GAN`);
    return `| ${a.label} | ${(parameters / 1e6).toFixed(2)} M | ${megabytes.toFixed(1)} | ${pairedCells(times, 0)} | ${stageTimings(times.outcome)} |`;
  });
}

const png = await photoLikePng(SIZE);
const rows = [];
for (const a of ARCHITECTURES) rows.push(await measure(a, png));
console.log(`## preview: the distilled GAN preview through the daemon, 512×512

Machine: ${machineLine()}; onnxruntime on the CPU. Command: \`npm run bench preview -- --runs ${runs}\`
(medians of ${runs} runs after ${WARMUP_RUNS} warm-ups). A 512×512 PNG in and out; "run()" is the generator's own
onnxruntime session at 512×512, "round trip" the whole preview job from upload to downloaded PNG, the
two alternating; overhead = median of the per-round differences.

| generator | parameters | ONNX MB | run() ms | round trip ms | ratio of medians | overhead ms | worker stages (ms, last run) |
|---|---|---|---|---|---|---|---|
${rows.join('\n')}
`);
