// `p2pz distill pairs --queue` (docs/TEAM.md): the pairs' edits fan out over a team's GPU workers
// through a real redis-server, the images travelling inline. The dataset must be the one a
// one-machine run makes with the same seeds (manifest entries and every PNG byte for byte), and the
// run must stay resumable. Both runs are the real CLI; the workers run the real built worker process.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { homePaths } from '../../../daemon/config.js';
import { readPairsManifest, type PairsManifest } from '../../../daemon/distill/manifest.js';
import { silentLogger } from '../../../daemon/log.js';
import { startTeamWorker, type RunningTeamWorker } from '../../../daemon/team/team-worker.js';
import { runProcess } from '../../distill/helpers.js';
import { builtWorker, installTinyModels } from '../../fixtures/tiny-models.js';
import { startRedis, type TestRedis } from '../../fixtures/redis-server.js';

const CLI = join(import.meta.dirname, '../../../bin/p2pz.js');
let redis: TestRedis;
let tmp: string;
let workerHome: string;
const workers: RunningTeamWorker[] = [];

beforeAll(async () => {
  redis = await startRedis();
  tmp = await mkdtemp(join(tmpdir(), 'p2pz-distill-queue-'));
  workerHome = join(tmp, 'worker-home');
  await installTinyModels(homePaths(workerHome).models, { diffusion: true });
  await mkdir(join(tmp, 'images'));
  for (const [k, name] of ['a.png', 'b.png', 'c.png'].entries()) {
    const raw = Buffer.alloc(80 * 48 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * (5 + k) + ((i / 240) | 0) * 11) % 256;
    await writeFile(join(tmp, 'images', name), await sharp(raw, { raw: { width: 80, height: 48, channels: 3 } }).png().toBuffer());
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.close(true)));
  await redis?.close();
  await rm(tmp, { recursive: true, force: true });
});

function pairs(out: string, extra: string[]): ReturnType<typeof runProcess> {
  const model = join(homePaths(workerHome).models, 'tiny-sd');
  const args = ['distill', 'pairs', '--from', 'cat', '--to', 'dog', '--images', join(tmp, 'images'), '--out', out, '--model', model, '--steps', '3', '--reg-steps', '1', '--size', '64', '--seed', '5', '--min-change', '0.001', '--device', 'cpu', ...extra];
  return runProcess(process.execPath, [CLI, ...args], { P2PZ_HOME: join(tmp, `home-${extra.length}`), P2PZ_LOG: 'error' });
}

/** The manifest without what differs between any two runs (the seconds each edit took). */
async function content(out: string): Promise<unknown> {
  const manifest = (await readPairsManifest(join(out, 'manifest.json'))) as PairsManifest;
  return { ...manifest, pairs: manifest.pairs.map((p) => ({ ...p, seconds: 0 })) };
}

describe('p2pz distill pairs --queue', () => {
  it('makes the same dataset as one machine, on two workers, and resumes it', async () => {
    const local = await pairs(join(tmp, 'local'), []);
    expect(local.code, local.stderr).toBe(0);

    for (let i = 0; i < 2; i++) {
      const worker = startTeamWorker({ connection: redis.connection, endpoint: 'http://127.0.0.1:9', token: 'p2pz_unused', engine: builtWorker(homePaths(workerHome).models), log: silentLogger });
      workers.push(worker);
      await worker.ready;
    }
    const team = await pairs(join(tmp, 'team'), ['--queue', redis.url]);
    expect(team.code, team.stderr).toBe(0);
    expect(team.stderr).toMatch(/\[3\/3\]/);

    const expected = await content(join(tmp, 'local'));
    expect(await content(join(tmp, 'team'))).toEqual(expected);
    const manifest = (await readPairsManifest(join(tmp, 'team', 'manifest.json'))) as PairsManifest;
    expect(manifest.pairs.filter((p) => p.status !== 'failed')).toHaveLength(3);
    for (const pair of manifest.pairs) {
      if (pair.status === 'failed') continue;
      for (const file of [pair.input, pair.output, pair.mask]) {
        expect(Buffer.compare(await readFile(join(tmp, 'team', file)), await readFile(join(tmp, 'local', file))), file).toBe(0);
      }
    }

    // Run again: every pair is taken over from the manifest, nothing is queued.
    const again = await pairs(join(tmp, 'team'), ['--queue', redis.url]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr.match(/done before/g)).toHaveLength(3);
  }, 300_000);

  it('refuses to queue when no worker is connected, with a hint', async () => {
    await Promise.all(workers.splice(0).map((w) => w.close(true)));
    const empty = await pairs(join(tmp, 'nobody'), ['--queue', redis.url.replace(/\/0$/, '/1')]);
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toMatch(/No GPU worker is connected/);
  }, 60_000);
});
