// Runs the built CLI (`node bin/p2pz.js ...`) as a real process, for the tests of serve, signals and
// what the daemon prints.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DaemonInfo } from '../../../daemon/config.js';

export const ROOT = join(import.meta.dirname, '../../..');
export const BIN = join(ROOT, 'bin/p2pz.js');

export interface Spawned {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnCli(args: readonly string[], env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const s: Spawned = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
  };
  child.stdout?.on('data', (c: Buffer) => {
    s.stdout += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    s.stderr += c.toString('utf8');
  });
  return s;
}

/** Runs a CLI command to completion. */
export async function runCli(args: readonly string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const s = spawnCli(args, env);
  const { code } = await s.exited;
  return { code, stdout: s.stdout, stderr: s.stderr };
}

/** Waits until `home/daemon.json` names a daemon (the serve process listens). */
export async function waitForDaemonInfo(home: string, s: Spawned, timeoutMs = 30_000): Promise<DaemonInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return DaemonInfo.parse(JSON.parse(await readFile(join(home, 'daemon.json'), 'utf8')));
    } catch {
      if (s.child.exitCode !== null) throw new Error(`serve exited early: ${s.stderr}`);
      if (Date.now() > deadline) throw new Error(`daemon.json never appeared: ${s.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Process ids whose parent is `pid` (Linux /proc). */
export function childPids(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may hold spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(name));
    } catch {
      // the process went away meanwhile
    }
  }
  return found;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
