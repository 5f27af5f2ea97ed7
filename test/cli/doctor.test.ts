// `p2pz doctor` (the E_WORKER_CRASHED hint names it): one line per area (environment, device, models,
// port, data folder), a fix under each problem, exit code 1 when a check failed. Runs the built CLI.
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ERRORS } from '../../shared/protocol/index.js';
import { startTestDaemon } from '../daemon/server/helpers.js';
import { runCli } from '../daemon/server/spawn.js';

let base = '';
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'p2pz-doctor-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const line = (out: string, area: string): string => out.split('\n').find((l) => l.slice(5).startsWith(area)) ?? '';

it('the hint of E_WORKER_CRASHED names a command that exists', async () => {
  expect(ERRORS.E_WORKER_CRASHED.hint).toContain('p2pz doctor');
  const help = await runCli(['--help'], {});
  expect(help.stdout + help.stderr).toMatch(/\bdoctor\b/);
});

it('a fresh data folder on the CPU: every area checked, models only warned about, exit 0', async () => {
  const home = join(base, 'fresh');
  const { code, stdout } = await runCli(['doctor', '--port', String(await freePort())], { P2PZ_HOME: home, P2PZ_DEVICE: 'cpu' });
  expect(code).toBe(0);
  expect(line(stdout, 'environment')).toMatch(/^ok +environment +Node v\d+/);
  expect(line(stdout, 'device')).toMatch(/^ok +device +CPU/);
  expect(line(stdout, 'models')).toMatch(/^WARN models +0 diffusion models/);
  expect(stdout).toContain('fix: Run `p2pz models install`');
  expect(line(stdout, 'port')).toMatch(/^ok +port +No daemon is running/);
  expect(line(stdout, 'data folder')).toMatch(/^ok +data folder .*writable, private/);
});

it('a data folder open to others, a taken port and a model with a link out: each fails with its fix, exit 1', async () => {
  const home = join(base, 'broken');
  await mkdir(join(home, 'models', 'sd-linked'), { recursive: true });
  await writeFile(join(home, 'models', 'sd-linked', 'model_index.json'), '{}');
  await symlink('/etc', join(home, 'models', 'sd-linked', 'unet'));
  await chmod(home, 0o755);
  const blocker: Server = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  try {
    const port = (blocker.address() as { port: number }).port;
    const { code, stdout } = await runCli(['doctor', '--port', String(port)], { P2PZ_HOME: home, P2PZ_DEVICE: 'cpu' });
    expect(code).toBe(1);
    expect(line(stdout, 'port')).toMatch(new RegExp(`^FAIL port +Port ${port} .* taken`));
    expect(stdout).toContain('fix: Stop that program, or start with `p2pz serve --port N`');
    expect(line(stdout, 'data folder')).toMatch(/^FAIL data folder .*open to other users \(mode 755\)/);
    expect(stdout).toContain('fix: Run `chmod 700');
    expect(line(stdout, 'models')).toMatch(/^FAIL models +sd-linked/);
    expect(stdout).toContain('fix: Remove and install again');
  } finally {
    blocker.close();
  }
});

it('asks a running daemon for its health instead of testing the port', async () => {
  const t = await startTestDaemon();
  try {
    const { stdout } = await runCli(['doctor'], { P2PZ_HOME: t.home, P2PZ_DEVICE: 'cpu' });
    expect(line(stdout, 'port')).toMatch(new RegExp(`^ok +port +A daemon answers on http://127\\.0\\.0\\.1:${t.daemon.port} \\(engine ready\\)`));
  } finally {
    await t.stop();
  }
});
