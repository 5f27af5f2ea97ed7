// `npm run device:fallbacks -- [--provider webgpu] [--preset tiny|sd15] [--size N] [--model DIR]`:
// which nodes of each graph an execution provider leaves to the CPU. onnxruntime assigns every node
// its provider while it creates a session and, at log severity 0 (verbose), lists the assignment
// ("Node(s) placed on [CPUExecutionProvider]. Number of nodes: 77", then one line per node, op type
// first). This script prepares the model's derived graphs at the working size, creates a session on
// each graph in a child process at verbose level (the log goes to the child's stderr), and prints a
// Markdown table for docs/BENCHMARKS.md: nodes per provider, the op types left on the CPU, and the
// copies between the device and the host that the fallbacks cost. Nothing runs: placement happens
// at session creation, so this works on a software device too.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { InferenceSession } from 'onnxruntime-node';
import { prepareModel } from '../../daemon/onnx/prepare.js';
import { SD15_SHAPED, TINY_SD, writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { providerSetup } from '../../daemon/worker/providers.js';
import { DevicePreference } from '../../shared/protocol/index.js';
import { parsePlacements, type Placement } from './placements.js';
import type { Provider } from '../../shared/protocol/index.js';

export const FALLBACK_DEFAULTS = Object.freeze({
  provider: 'webgpu' as Provider,
  preset: 'tiny',
  /** Pixels per side of the derived graphs. */
  size: 64,
});

/** Child mode: create one session at verbose level; the placement log goes to stderr. */
async function placeOne(path: string, provider: Provider): Promise<void> {
  const setup = providerSetup(provider);
  const session = await InferenceSession.create(path, {
    executionProviders: [...setup.executionProviders],
    ...setup.sessionOptions,
    graphOptimizationLevel: 'all',
    logSeverityLevel: 0,
    logVerbosityLevel: 0,
  });
  await session.release();
}

function placementOf(path: string, provider: Provider): Placement | string {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--place', path, '--provider', provider], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
  });
  if (child.status !== 0) return (child.stderr.split('\n').find((l) => /error|fail/i.test(l)) ?? `exit ${child.status}`).slice(0, 200);
  return parsePlacements(child.stderr);
}

function table(rows: ReadonlyArray<readonly [string, Placement | string]>, provider: Provider): string {
  const out = ['| graph | nodes on ' + provider + ' | nodes on CPU | ops on the CPU (count) | device↔host copies |', '|---|---:|---:|---|---:|'];
  for (const [graph, p] of rows) {
    if (typeof p === 'string') {
      out.push(`| ${graph} | – | – | session failed: ${p} | – |`);
      continue;
    }
    const device = Object.entries(p.perProvider).filter(([ep]) => ep !== 'CPUExecutionProvider').reduce((a, [, n]) => a + n, 0);
    const ops = Object.entries(p.onCpu).sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${n}`).join(', ');
    out.push(`| ${graph} | ${device} | ${p.perProvider['CPUExecutionProvider'] ?? 0} | ${ops || '–'} | ${p.copies} |`);
  }
  return out.join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      place: { type: 'string' },
      provider: { type: 'string', default: FALLBACK_DEFAULTS.provider },
      preset: { type: 'string', default: FALLBACK_DEFAULTS.preset },
      size: { type: 'string', default: String(FALLBACK_DEFAULTS.size) },
      model: { type: 'string' },
    },
  });
  const provider = DevicePreference.exclude(['auto']).parse(values.provider);
  if (values.place !== undefined) {
    await placeOne(values.place, provider);
    return 0;
  }
  const size = Number(values.size);
  if (!Number.isInteger(size) || size < 64 || size % 64 !== 0) throw new Error('--size must be a multiple of 64');
  const temp = values.model === undefined ? await mkdtemp(join(tmpdir(), 'p2pz-fallbacks-')) : undefined;
  const dir = values.model ?? join(temp as string, 'model');
  try {
    if (temp !== undefined) await writeTinyStableDiffusion(dir, { preset: values.preset === 'sd15' ? SD15_SHAPED : TINY_SD, flavour: 'opset17' });
    const prepared = await prepareModel(dir, { height: size, width: size });
    const graphs: Array<readonly [string, string]> = [
      ['UNet (as exported, dynamic shapes)', join(dir, 'unet', 'model.onnx')],
      [`UNet + cross-attention maps, ${size}², batch 2`, prepared.xattnPath],
      [`guidance gradient ∂L/∂x, ${size}², batch 2`, prepared.gradPath],
      ['VAE encoder', join(dir, 'vae_encoder', 'model.onnx')],
      ['VAE decoder', join(dir, 'vae_decoder', 'model.onnx')],
      ['text encoder', join(dir, 'text_encoder', 'model.onnx')],
    ];
    const rows = graphs.map(([name, path]) => [name, placementOf(path, provider)] as const);
    process.stdout.write(`${table(rows, provider)}\n`);
    return rows.every(([, p]) => typeof p !== 'string') ? 0 : 1;
  } finally {
    if (temp !== undefined) await rm(temp, { recursive: true, force: true });
  }
}

process.exitCode = await main().catch((err: unknown) => {
  process.stderr.write(`device:fallbacks failed: ${err instanceof Error ? err.message : String(err)}\n`);
  return 2;
});
