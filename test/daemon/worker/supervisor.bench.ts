// The cost of the process boundary: a GAN quick preview of a 1024×768 RGBA PNG through the supervisor
// and the real built worker (IPC both ways, decode, generate at 512×384, encode) against the same
// pipeline called in-process; and a cold worker start (fork, onnxruntime import, provider probe, ready).
// The generator is the tiny seeded conv net (16 channels), so these are the overheads around a model,
// not a GAN's own speed.
// Run: node scripts/build.mjs && npx vitest bench --run test/daemon/worker/supervisor.bench.ts
// Measured (2 shared cores, noisy): in-process 675 ms mean, through the worker 488 ms mean, i.e. the
// process boundary costs nothing measurable next to decode + generate + encode; cold start 1.04 s.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, bench, describe } from 'vitest';
import { encodePng } from '../../../daemon/image/encode.js';
import { writeTinyImg2Img } from '../../../daemon/onnx/tiny/img2img.js';
import { runGanPreview } from '../../../daemon/pipeline/gan-preview.js';
import { findGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { resolveModelPath } from '../../../daemon/models/model-path.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';
import { WorkerSupervisor } from '../../../daemon/worker/supervisor.js';
import { engineJob, memoryLogger, waitFor } from './helpers.js';

const WORKER = join(process.cwd(), 'dist/daemon/worker.js');
const modelsDir = await mkdtemp(join(tmpdir(), 'p2pz-worker-bench-'));
await mkdir(join(modelsDir, 'gan', 'cat-dog'), { recursive: true });
await writeTinyImg2Img(join(modelsDir, 'gan', 'cat-dog', 'generator.onnx'), { seed: 3 });
await writeFile(join(modelsDir, 'gan', 'cat-dog', 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'dog', size: 512 }));

const W = 1024;
const H = 768;
const rgb = new Uint8Array(W * H * 3).map((_, i) => (i * 2654435761) >>> 24);
const alpha = new Uint8Array(W * H).fill(255);
const png = await encodePng({ width: W, height: H, rgb, alpha });
const never = new AbortController().signal;
const generator = await findGanGenerator({ modelsDir, resolve: (p) => resolveModelPath(modelsDir, p) }, 'cat', 'dog');

describe(`GAN preview ${W}×${H} (tiny generator, CPU)`, () => {
  const supervisor = new WorkerSupervisor({ modelsDir, workerPath: WORKER, device: 'cpu', log: memoryLogger() });
  const cache = new SessionCache({ modelsDir, executionProviders: ['cpu'] });
  const ctx = { models: cache, signal: never, progress: () => {} };
  afterAll(async () => {
    await supervisor.close();
    await cache.releaseAll();
    await rm(modelsDir, { recursive: true, force: true });
  });

  bench(
    'in-process runGanPreview',
    async () => {
      await runGanPreview(png, generator, ctx);
    },
    { time: 2000, iterations: 5, warmupIterations: 1 },
  );

  bench(
    'through the supervisor and worker',
    async () => {
      const r = await supervisor.run(engineJob('cat', { image: png }), () => {}, never);
      if (r.status !== 'done') throw new Error(JSON.stringify(r));
    },
    { time: 2000, iterations: 5, warmupIterations: 1 },
  );
});

describe('worker cold start', () => {
  bench(
    'fork → ready (--device auto: CUDA probe fails, CPU)',
    async () => {
      const s = new WorkerSupervisor({ modelsDir, workerPath: WORKER, log: memoryLogger() });
      await waitFor(() => s.health().state === 'ready', 'ready', 30_000);
      await s.close();
    },
    { time: 2000, iterations: 3 },
  );
});
