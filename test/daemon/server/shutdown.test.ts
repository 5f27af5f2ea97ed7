// SIGTERM/SIGINT on `p2pz serve` (docs/SECURITY.md §R23): the process exits promptly with code 0, leaves no worker
// process behind, and removes daemon.json. Also: serve refuses non-loopback addresses without
// --listen (docs/SECURITY.md §R1), and `p2pz pair` / `p2pz token` talk to the running daemon.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { send } from './helpers.js';
import { childPids, isAlive, runCli, spawnCli, waitForDaemonInfo, type Spawned } from './spawn.js';

const homes: string[] = [];
const running: Spawned[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const h of homes.splice(0)) await rm(h, { recursive: true, force: true });
});

async function newHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'p2pz-serve-'));
  homes.push(home);
  return home;
}

/** Waits until health reports the worker ready (so that a worker process exists). */
async function waitForWorker(port: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const reply = await send({ port }, { path: '/v1/health' });
    const health = HealthResponse.parse(reply.json);
    if (health.worker.state === 'ready') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the worker never became ready');
}

/** Resolves when the process has exited, or rejects after `ms` (a hung shutdown fails the test). */
function exitWithin(s: Spawned, ms: number) {
  return Promise.race([
    s.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still running after ${ms} ms: ${s.stderr}`)), ms).unref()),
  ]);
}

describe.each([['SIGTERM'], ['SIGINT']] as const)('p2pz serve and %s', (signal) => {
  it('exits with 0, no orphan worker, daemon.json removed', async () => {
    const home = await newHome();
    const s = spawnCli(['serve', '--port', '0', '--device', 'cpu'], { P2PZ_HOME: home });
    running.push(s);
    const info = await waitForDaemonInfo(home, s);
    expect(info.pid).toBe(s.child.pid);
    expect(info.url).toBe(`http://127.0.0.1:${info.port}`);
    expect((await stat(join(home, 'daemon.json'))).mode & 0o777).toBe(0o600);
    await waitForWorker(info.port);
    const workers = childPids(info.pid);
    expect(workers.length).toBe(1);
    // docs/SECURITY.md §R16: the native modules live in the worker; the daemon process never maps them.
    const daemonMaps = await readFile(`/proc/${info.pid}/maps`, 'utf8');
    expect(daemonMaps).not.toMatch(/onnxruntime|sharp|libvips/);
    expect(await readFile(`/proc/${workers[0]}/maps`, 'utf8')).toMatch(/onnxruntime_binding\.node/);

    s.child.kill(signal);
    const { code } = await exitWithin(s, 15_000);
    expect(code).toBe(0);
    for (const pid of workers) expect(isAlive(pid)).toBe(false);
    await expect(stat(join(home, 'daemon.json'))).rejects.toThrow();
    expect(s.stdout).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
    expect(s.stdout).toMatch(/Pairing code: [0-9A-Z]{4}-[0-9A-Z]{4} /);
    expect(s.stdout).toMatch(/Try it in the browser: http:\/\/127\.0\.0\.1:\d+\//);
  });
});

describe('p2pz CLI', () => {
  it('serve refuses a non-loopback host without --listen', async () => {
    const home = await newHome();
    const r = await runCli(['serve', '--port', '0', '--host', '0.0.0.0'], { P2PZ_HOME: home });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--listen 0.0.0.0');
  });

  it('pair prints a fresh code from the running daemon that pairs a client; token prints the CLI token', async () => {
    const home = await newHome();
    const s = spawnCli(['serve', '--port', '0', '--device', 'cpu'], { P2PZ_HOME: home });
    running.push(s);
    const info = await waitForDaemonInfo(home, s);
    const pair = await runCli(['pair'], { P2PZ_HOME: home });
    expect(pair.code).toBe(0);
    const code = /Pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})/.exec(pair.stdout)?.[1];
    expect(code).toBeDefined();
    const paired = await send(info, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
    expect(paired.status).toBe(200);
    const token = await runCli(['token'], { P2PZ_HOME: home });
    expect(token.stdout.trim()).toMatch(/^p2pz_[A-Za-z0-9_-]{43}$/);
    expect((await send(info, { path: '/v1/models', token: token.stdout.trim() })).status).toBe(200);
    s.child.kill('SIGTERM');
    expect((await exitWithin(s, 15_000)).code).toBe(0);
  });

  it('pair without a running daemon says so', async () => {
    const home = await newHome();
    const r = await runCli(['pair'], { P2PZ_HOME: home });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('not running');
  });

  it('--help lists the commands; an unknown command exits 2', async () => {
    const help = await runCli(['--help'], {});
    expect(help.code).toBe(0);
    for (const name of ['serve', 'pair', 'token']) expect(help.stdout).toContain(name);
    const unknown = await runCli(['frobnicate'], {});
    expect(unknown.code).toBe(2);
  });
});
