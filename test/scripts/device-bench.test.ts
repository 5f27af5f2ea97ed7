// The device benchmark (scripts/device/bench.ts), bundled as the device pack bundles it (every pure-JS
// dependency inside, onnxruntime-node and sharp external), runs end to end at the tiny size on the
// CPU and prints its table: forward, forward + backward, a measured full edit, peak memory; a
// provider that cannot start gets an "unavailable" row instead of stopping the run.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../..');
let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-device-bench-'));
  // Beside node_modules, as in the pack (there it sits in dist/ next to the carried node_modules).
  bundle = join(REPO, 'dist', `device-bench-test-${process.pid}.mjs`);
  await build({
    entryPoints: [join(REPO, 'scripts/device/bench.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['onnxruntime-node', 'sharp'],
    banner: { js: "import { createRequire as __p2pzRequire } from 'node:module'; const require = __p2pzRequire(import.meta.url);" },
    outfile: bundle,
    logLevel: 'warning',
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(bundle, { force: true });
});

describe('scripts/device/bench.ts', () => {
  it('prints the table at the tiny size on the CPU, and marks a provider that cannot start', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [bundle, '--preset', 'tiny', '--size', '64', '--steps', '2', '--runs', '1', '--providers', 'cpu,coreml', '--edit', 'cpu'], {
      cwd: dir,
      env: { ...process.env, TMPDIR: dir },
      maxBuffer: 16 << 20,
    });
    expect(stdout).toMatch(/^## Device bench: tiny UNet at 64², 2 steps$/m);
    expect(stdout).toMatch(/^\| cpu \| UNet forward, batch 2 \(load [\d.]+ s\) \| [\d.]+ s \| median of 1 \|$/m);
    expect(stdout).toMatch(/^\| cpu \| forward \+ backward ∂L\/∂x, batch 2 \(load [\d.]+ s\) \| [\d.]+ s \| median of 1 \|$/m);
    expect(stdout).toMatch(/^\| cpu \| full edit, 2 steps \| [\d.]+ s \| measured: /m);
    // Both precisions by default; on the CPU fp16 is the float16 weights computed in float32.
    expect(stdout).toMatch(/^\| cpu \| UNet forward, batch 2, fp16 weights computed in fp32 \(load [\d.]+ s\) \| [\d.]+ s \| median of 1 \|$/m);
    expect(stdout).toMatch(/^\| cpu \| full edit, 2 steps, fp16 weights computed in fp32 \| [\d.]+ s \| measured: /m);
    expect(stdout).toMatch(/^\| cpu \| peak memory \| – \| process RSS [\d.]+ GiB so far/m);
    expect(stdout).toMatch(/^\| coreml \| unavailable \| – \| .*Core ML could not be started: not part of onnxruntime-node for linux\/x64\./m);
  }, 300_000);
});
