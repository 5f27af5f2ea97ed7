// `npm run bench queue [-- --jobs N --runs N]`: team mode (docs/TEAM.md) against the local daemon.
// The same preview job (a 256×256 PNG through the generated image-to-image generator as the cat → dog
// GAN preview) goes the whole way over HTTP + WebSocket: to a local daemon with its own worker, and to
// a team endpoint on a real redis-server with 1, 2 and 3 GPU workers (each with its own worker
// process, as `p2pz worker` runs). Reported: the median latency of one job alone (and what the queue
// adds to it), and the throughput of a burst of jobs, 8 in flight (one token's bound).
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { homePaths } from '../../daemon/config.js';
import { startDaemon, type RunningDaemon } from '../../daemon/daemon.js';
import type { JobEngine } from '../../daemon/jobs/engine.js';
import { silentLogger } from '../../daemon/log.js';
import { writeTinyImg2Img } from '../../daemon/onnx/tiny/img2img.js';
import { TokenStore } from '../../daemon/server/tokens.js';
import { startTeamWorker, type RunningTeamWorker } from '../../daemon/team/team-worker.js';
import { WorkerSupervisor } from '../../daemon/worker/supervisor.js';
import { startRedis } from '../../test/fixtures/redis-server.js';
import { openService, photoLikePng } from './lib/preview-service.js';
import { machineLine, median } from './machine.js';

const arg = (name: string, fallback: number): number => Number(process.argv[process.argv.indexOf(`--${name}`) + 1]) || fallback;
const JOBS = arg('jobs', 24);
const RUNS = arg('runs', 9);
const SIZE = 256;
const IN_FLIGHT = 8;
const WORKER = join(import.meta.dirname, '../daemon/worker.js');

async function installModels(home: string): Promise<string> {
  const models = homePaths(home).models;
  const dir = join(models, 'gan', 'cat-dog');
  await mkdir(dir, { recursive: true });
  await writeTinyImg2Img(join(dir, 'generator.onnx'), { seed: 1, channels: 32 });
  await writeFile(join(dir, 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'dog', size: SIZE }));
  return models;
}

const engineFor = (models: string): JobEngine => new WorkerSupervisor({ modelsDir: models, workerPath: WORKER, device: 'cpu', log: silentLogger });

interface Measured { readonly alone: number; readonly perSecond: number }

async function measure(daemon: RunningDaemon, png: Uint8Array): Promise<Measured> {
  const token = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
  const service = await openService(daemon.url, token, png);
  try {
    for (let i = 0; i < 2; i++) await service.roundTrip();
    const alone: number[] = [];
    for (let i = 0; i < RUNS; i++) alone.push((await service.roundTrip()).ms);
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < JOBS) {
          next += 1;
          await service.roundTrip();
        }
      }),
    );
    return { alone: median(alone), perSecond: JOBS / ((performance.now() - started) / 1000) };
  } finally {
    service.close();
  }
}

const png = await photoLikePng(SIZE);
const rows: string[] = [];

{
  const home = await mkdtemp(join(tmpdir(), 'p2pz-bench-local-'));
  const daemon = await startDaemon({ port: 0, home, engine: engineFor(await installModels(home)), log: silentLogger });
  const local = await measure(daemon, png);
  await daemon.close();
  await rm(home, { recursive: true, force: true });
  rows.push(`| local daemon, its own worker | 1 | ${local.alone.toFixed(0)} | – | ${local.perSecond.toFixed(2)} | 1.00 |`);

  const redis = await startRedis();
  for (const count of [1, 2, 3]) {
    const endpointHome = await mkdtemp(join(tmpdir(), 'p2pz-bench-team-'));
    const workerHome = await mkdtemp(join(tmpdir(), 'p2pz-bench-worker-'));
    const models = await installModels(workerHome);
    const tokens = await TokenStore.open(homePaths(endpointHome));
    const { token } = await tokens.issue(`gpu-${count}`, 'worker');
    const endpoint = await startDaemon({ port: 0, home: endpointHome, log: silentLogger, team: { connection: redis.connection, settings: { queueName: `bench-${count}` } } });
    const workers: RunningTeamWorker[] = [];
    for (let i = 0; i < count; i++) {
      workers.push(startTeamWorker({ connection: redis.connection, endpoint: endpoint.url, token, engine: engineFor(models), log: silentLogger, settings: { queueName: `bench-${count}` } }));
    }
    await Promise.all(workers.map((w) => w.ready));
    const team = await measure(endpoint, png);
    await Promise.all(workers.map((w) => w.close()));
    await endpoint.close();
    await rm(endpointHome, { recursive: true, force: true });
    await rm(workerHome, { recursive: true, force: true });
    rows.push(`| team endpoint + Redis | ${count} | ${team.alone.toFixed(0)} | ${(team.alone - local.alone).toFixed(0)} | ${team.perSecond.toFixed(2)} | ${(team.perSecond / local.perSecond).toFixed(2)} |`);
  }
  await redis.close();
}

console.log(`## queue: team mode against the local daemon

Machine: ${machineLine()}. Command: \`npm run bench queue -- --jobs ${JOBS} --runs ${RUNS}\`. A ${SIZE}×${SIZE} preview job (generated
generator, 32 channels) from upload to downloaded result over HTTP + WebSocket; "alone" is the median of ${RUNS} jobs one
after another (after 2 warm-ups), the burst is ${JOBS} jobs with ${IN_FLIGHT} in flight. Workers run in this process's
children, so on this machine's cores they compete with the endpoint, Redis and each other.

| set-up | workers | one job alone, ms | added by the queue, ms | burst jobs/s | burst throughput vs local |
|---|---|---|---|---|---|
${rows.join('\n')}
`);
