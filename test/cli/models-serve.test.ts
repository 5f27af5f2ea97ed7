// `npm start` (p2pz serve) and models: without a model it prints the one install command and how to
// try the demo; with --demo it serves the generated demo pack, which health and /v1/models label
// `demo: true`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthResponse } from '../../shared/protocol/index.js';
import { spawnCli, waitForDaemonInfo, type Spawned } from '../daemon/server/spawn.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-serve-models-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function serve(args: string[]): Promise<{ s: Spawned; url: string }> {
  const home = await mkdtemp(join(work, 'home-'));
  const s = spawnCli(['serve', '--port', '0', '--device', 'cpu', ...args], { P2PZ_HOME: home });
  const info = await waitForDaemonInfo(home, s);
  return { s, url: info.url };
}

async function stop(s: Spawned): Promise<void> {
  s.child.kill('SIGTERM');
  await s.exited;
}

async function health(url: string): Promise<HealthResponse> {
  return HealthResponse.parse(await (await fetch(`${url}/v1/health`)).json());
}

describe('serve and models', () => {
  it('without a model: names the one install command and the demo option', async () => {
    const { s, url } = await serve([]);
    try {
      expect(s.stdout).toContain('No Stable Diffusion model is installed. Install the default one (SD v1.4 in ONNX, about 4.3 GB) with:\n  node bin/p2pz.js models install\n');
      expect(s.stdout).toContain('npm start -- --demo');
      expect((await health(url)).models).toEqual([]);
    } finally {
      await stop(s);
    }
  });

  it('--demo serves the generated pack, labelled demo', async () => {
    const { s, url } = await serve(['--demo']);
    try {
      expect(s.stdout).toContain('Serving the demo pack (p2pz-demo, gan/p2pz-demo-cat-dog: random weights, marked demo in health)');
      expect(s.stdout).toContain('node bin/p2pz.js models install');
      expect((await health(url)).models).toEqual([
        { name: 'p2pz-demo', kind: 'diffusion', demo: true },
        { name: 'p2pz-demo-cat-dog', kind: 'gan', direction: { source: 'cat', target: 'dog' }, demo: true },
      ]);
    } finally {
      await stop(s);
    }
  });
});
