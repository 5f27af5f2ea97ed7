// `p2pz models …` end to end against a local hub on 127.0.0.1: install with its progress line and
// summary (the demo pack then goes), list, verify (exit 1 on a damaged file), remove, prepare; and the
// built `p2pz` binary dispatching `models`.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { modelsCommand } from '../../daemon/cli/models.js';
import type { CliIo } from '../../daemon/cli/command.js';
import { writeTinyStableDiffusion } from '../../daemon/onnx/tiny/stable-diffusion.js';
import { writeDemoPack } from '../../daemon/models/demo-pack.js';
import { startHubServer, type HubServer } from '../daemon/models/hub-server.js';
import { runCli } from '../daemon/server/spawn.js';

let work: string;
let repo: string;
let hub: HubServer;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'p2pz-cli-models-'));
  repo = join(work, 'repo');
  await writeTinyStableDiffusion(repo);
  hub = await startHubServer({ repo: 'test-org/tiny-sd', revision: 'onnx', commit: 'ab'.repeat(20), root: repo });
});

afterAll(async () => {
  await hub.close();
  await rm(work, { recursive: true, force: true });
});

interface Captured extends CliIo {
  stdout: string;
  stderr: string;
}

let home: string;
afterEach(() => {
  hub.faults.length = 0;
});

async function freshHome(): Promise<string> {
  home = await mkdtemp(join(work, 'home-'));
  return home;
}

function io(): Captured {
  const c: Captured = {
    stdout: '',
    stderr: '',
    env: { P2PZ_HOME: home, P2PZ_HUB_URL: hub.url },
    out: (t) => {
      c.stdout += t;
    },
    err: (t) => {
      c.stderr += t;
    },
  };
  return c;
}

async function run(...args: string[]): Promise<Captured & { code: number }> {
  const c = io();
  const code = await modelsCommand.run(args, c);
  return Object.assign(c, { code });
}

describe('p2pz models', () => {
  it('install → list → verify → remove', async () => {
    await freshHome();
    await writeDemoPack(join(home, 'models'));
    const install = await run('install', 'test-org/tiny-sd', '--revision', 'onnx', '--size', '64');
    expect(install.code).toBe(0);
    expect(install.stderr).toMatch(/^Fetching 11 files, 6\.\d\d MB\.\n/);
    // The progress line is redrawn with \r and ends at 100 % with speed and ETA.
    expect(install.stderr).toMatch(/\r\[#{20}\] 100% {2}6\.\d\d MB \/ 6\.\d\d MB {2}\S+ (?:k|M|G)?B\/s {2}ETA 0s {2}\S+\x1b\[K\n/);
    expect(install.stderr).toContain('Preparing the derived graphs for 64×64…');
    expect(install.stdout).toMatch(/^Installed tiny-sd from test-org\/tiny-sd@onnx, commit ababababab: 11 files, 6\.\d\d MB, verified, prepared for 64×64\.\n/);
    expect(install.stdout).toContain('Removed the demo pack (p2pz-demo, gan/p2pz-demo-cat-dog).');

    const list = await run('list');
    expect(list.stdout).toMatch(/^tiny-sd {2}diffusion {2} +\d\.\d\d MB {2}test-org\/tiny-sd@onnx \(ababababab\)  \[prepared 8x8\]\n$/);
    const json = JSON.parse((await run('list', '--json')).stdout) as Array<{ name: string; demo: boolean }>;
    expect(json.map((m) => [m.name, m.demo])).toEqual([['tiny-sd', false]]);

    const ok = await run('verify');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^ok {6}tiny-sd: 11 files, 6\.\d\d MB checked\n$/);

    const index = join(home, 'models', 'tiny-sd', 'model_index.json');
    await writeFile(index, (await readFile(index, 'utf8')).replace('Onnx', 'Xnnx'));
    const bad = await run('verify', 'tiny-sd');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('FAILED  tiny-sd:\n  - model_index.json: content differs from the installed file (hash mismatch)\n');
    expect(bad.stderr).toContain('remove and install them again');

    const again = await run('install', 'test-org/tiny-sd', '--revision', 'onnx', '--no-prepare');
    expect(again.stdout).toBe('tiny-sd is installed and up to date (use --force to install it again).\n');

    expect((await run('remove', 'tiny-sd')).stdout).toBe('Removed tiny-sd.\n');
    expect((await run('list')).stdout).toBe('No models installed. Install the default one with:\n  node bin/p2pz.js models install\n');
  });

  it('an unknown model is E_MODEL_MISSING; --name and --no-prepare; prepare works on an installed folder', async () => {
    await freshHome();
    await expect(run('install', 'test-org/absent')).rejects.toMatchObject({ code: 'E_MODEL_MISSING' });
    const r = await run('install', 'test-org/tiny-sd', '--revision', 'onnx', '--no-prepare', '--name', 'sd-x');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Installed sd-x from test-org/tiny-sd@onnx');
    expect(r.stdout).not.toContain('prepared');
    const prep = await run('prepare', join(home, 'models', 'sd-x'), '--size', '128');
    expect(prep.code).toBe(0);
    expect(prep.stdout).toBe(
      'prepared: model.xattn.16x16.onnx, model.grad.16x16.onnx (7 cross-attention layers, latent 16×16, batch 2)\n' +
        'prepared: model.xattn.16x16.b1.onnx (reference pass, batch 1)\n' +
        'prepared: model.roles.16x16.onnx (the three graphs in one model, one copy of the weights)\n' +
        'precision: fp32 (CPU provider)\n',
    );
    expect((await run('list')).stdout).toContain('[prepared 16x16]');
  });

  it('list names unfinished downloads; remove deletes them with the model name', async () => {
    await freshHome();
    const staging = join(home, 'models', '.downloads', 'tiny-sd@abababababab', 'unet');
    await mkdir(staging, { recursive: true });
    await writeFile(join(staging, 'weights.pb.part'), Buffer.alloc(1500));
    const list = await run('list');
    expect(list.stdout).toBe(
      'Unfinished downloads: tiny-sd@abababababab (1.50 kB so far). Run the same `p2pz models install` command to resume.\n' +
        'No models installed. Install the default one with:\n  node bin/p2pz.js models install\n',
    );
    await run('install', 'test-org/tiny-sd', '--revision', 'onnx', '--no-prepare');
    expect((await run('list')).stdout).not.toContain('Unfinished');
  });

  it('rejects bad arguments', async () => {
    await freshHome();
    const usage = await run('frobnicate');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('p2pz models <list|install|verify|remove|prepare>');
    await expect(run('install', 'a/b', 'c/d')).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    await expect(run('install', '--size', '100')).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    await expect(run('remove')).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    await expect(run('remove', '../x')).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
  });

  it('the built p2pz binary runs `models`', async () => {
    await freshHome();
    const help = await runCli(['--help'], { P2PZ_HOME: home });
    expect(help.stdout).toMatch(/\n {2}models +list, install, verify, remove or prepare models\n/);
    const r = await runCli(['models', 'install', 'test-org/tiny-sd', '--revision', 'onnx', '--no-prepare'], { P2PZ_HOME: home, P2PZ_HUB_URL: hub.url });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Installed tiny-sd from test-org/tiny-sd@onnx');
    const missing = await runCli(['models', 'remove', 'nothing-here'], { P2PZ_HOME: home });
    expect(missing.code).toBe(1);
    // What happened, not the edit's "The model this edit needs is not installed.".
    expect(missing.stderr).toBe('No model “nothing-here” is installed.\nRun `p2pz models list` to see the installed models.\n');
    const verify = await runCli(['models', 'verify', 'nothing-here'], { P2PZ_HOME: home });
    expect(verify.stderr).toBe('No model “nothing-here” is installed.\nRun `p2pz models list` to see the installed models.\n');
    const from = await runCli(['models', 'install', '--from', join(home, 'no-such-export')], { P2PZ_HOME: home });
    expect(from.code).toBe(1);
    expect(from.stderr).not.toContain('this edit');
  });
});
