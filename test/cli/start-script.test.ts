// `npm start` and SIGTERM (docs/SECURITY.md §R23 through the README's own command). npm runs the start script as
// `sh -c "…"` and forwards SIGTERM to that shell only (@npmcli/run-script lib/signal-manager.js);
// Debian's dash then exits and leaves its child running. The test runs the real npm with the real
// start script (`--ignore-scripts` only skips `prestart`, the build that global-setup already did:
// npm docs, using-npm/config.md `ignore-scripts`), signals npm's own process, and expects the daemon
// and its worker to be gone and daemon.json removed.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthResponse } from '../../shared/protocol/index.js';
import { send } from '../daemon/server/helpers.js';
import { childPids, isAlive, ROOT, waitForDaemonInfo, type Spawned } from '../daemon/server/spawn.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

function spawnNpmStart(home: string, detached = false): Spawned {
  const child = spawn('npm', ['start', '--ignore-scripts', '--', '--port', '0', '--device', 'cpu'], {
    cwd: ROOT,
    // Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
    detached,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', P2PZ_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const s: Spawned = { child, stdout: '', stderr: '', exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))) };
  child.stdout?.on('data', (c: Buffer) => (s.stdout += c.toString('utf8')));
  child.stderr?.on('data', (c: Buffer) => (s.stderr += c.toString('utf8')));
  return s;
}

async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `npm start` in a fresh home; the processes it leaves (pids pushed by the test) are killed and the
 *  home removed after the test. */
async function startNpm(detached: boolean): Promise<{ home: string; s: ReturnType<typeof spawnNpmStart>; pids: number[] }> {
  const home = await mkdtemp(join(tmpdir(), 'p2pz-npm-start-'));
  const s = spawnNpmStart(home, detached);
  const pids: number[] = [];
  cleanup.push(async () => {
    if (s.child.exitCode === null) s.child.kill('SIGKILL');
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await rm(home, { recursive: true, force: true });
  });
  return { home, s, pids };
}

describe('npm start', () => {
  it('SIGTERM to npm stops the daemon and its worker (no orphans) and removes daemon.json', async () => {
    const { home, s, pids } = await startNpm(false);
    const info = await waitForDaemonInfo(home, s, 60_000);
    pids.push(info.pid);
    // The daemon is not npm's own child: a shell sits between them.
    expect(childPids(s.child.pid ?? -1)).not.toContain(info.pid);
    await until(async () => HealthResponse.parse((await send(info, { path: '/v1/health' })).json).worker.state === 'ready', 60_000, 'worker ready');
    const workers = childPids(info.pid);
    expect(workers.length).toBe(1);
    pids.push(...workers);

    s.child.kill('SIGTERM');
    await s.exited;
    await until(() => pids.every((pid) => !isAlive(pid)), 15_000, `daemon ${info.pid} and worker ${workers.join()} to exit`);
    await expect(stat(join(home, 'daemon.json'))).rejects.toThrow();
  });

  it('Ctrl-C (SIGINT to the whole process group) stops the daemon in order, not by a forced exit', async () => {
    const { home, s, pids } = await startNpm(true);
    const info = await waitForDaemonInfo(home, s, 60_000);
    pids.push(info.pid);
    await until(async () => HealthResponse.parse((await send(info, { path: '/v1/health' })).json).worker.state === 'ready', 60_000, 'worker ready');
    pids.push(...childPids(info.pid));
    process.kill(-(s.child.pid ?? 0), 'SIGINT');
    await s.exited;
    await until(() => pids.every((pid) => !isAlive(pid)), 15_000, 'daemon and worker to exit');
    await expect(stat(join(home, 'daemon.json'))).rejects.toThrow();
    expect(s.stdout + s.stderr).toContain('daemon.stopped');
    expect(s.stdout + s.stderr).not.toContain('forced-exit');
  });
});
