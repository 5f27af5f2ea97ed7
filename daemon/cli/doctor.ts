// `p2pz doctor`: checks what a failing edit usually comes down to (the E_WORKER_CRASHED hint sends
// designers here) and prints one line per area with a fix for each problem: the environment (Node,
// the native modules), the device (the same probe the worker runs), the installed models, the port,
// the data folder. Exit code 0 when nothing failed (warnings allowed), 1 otherwise. It runs on the
// files and the machine only; a running daemon is just asked for its health.
import { constants } from 'node:fs';
import { access, mkdir, readFile, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { DEFAULT_PORT, HealthResponse } from '../../shared/protocol/index.js';
import { DaemonInfo, defaultHome, homePaths, type DaemonPaths } from '../config.js';
import { describeError } from '../log.js';
import { parseFlags, type CliCommand, type CliIo } from './command.js';

export const DOCTOR_DEFAULTS = Object.freeze({
  /** Oldest Node.js the package supports (package.json engines). */
  minNode: [20, 9] as const,
  /** Free space below this in the data folder is a warning (a model is 2–5 GB, results add up). */
  minFreeBytes: 5 * 1024 ** 3,
  /** How long a running daemon may take to answer health. */
  healthTimeoutMs: 3_000,
});

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly area: 'environment' | 'device' | 'models' | 'port' | 'data folder';
  readonly verdict: Verdict;
  readonly detail: string;
  /** What to do about a warning or failure. */
  readonly fix?: string;
}

async function environment(): Promise<Check> {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const [wantMajor, wantMinor] = DOCTOR_DEFAULTS.minNode;
  if (major < wantMajor || (major === wantMajor && minor < wantMinor)) {
    return { area: 'environment', verdict: 'fail', detail: `Node ${process.version} is too old.`, fix: `Install Node ${wantMajor}.${wantMinor} or newer (an LTS release).` };
  }
  const missing: string[] = [];
  for (const name of ['onnxruntime-node', 'sharp']) {
    try {
      await import(name);
    } catch {
      missing.push(name);
    }
  }
  if (missing.length > 0) {
    return {
      area: 'environment',
      verdict: 'fail',
      detail: `Node ${process.version}, ${process.platform}-${process.arch}: ${missing.join(' and ')} cannot be loaded.`,
      fix: 'Run `npm install` in the p2pz folder again (it fetches the native parts for this platform).',
    };
  }
  return { area: 'environment', verdict: 'ok', detail: `Node ${process.version}, ${process.platform}-${process.arch}; onnxruntime-node and sharp load.` };
}

async function device(io: CliIo): Promise<Check> {
  try {
    const { chooseExecution, devicePreference, quietNativeLog } = await import('../worker/providers.js');
    quietNativeLog();
    const choice = await chooseExecution(devicePreference(undefined, io.env));
    if (choice.device.provider === 'cpu' && choice.device.reason.startsWith('CUDA unavailable')) {
      return {
        area: 'device',
        verdict: 'warn',
        detail: `CPU (${choice.device.reason})`,
        fix: 'Edits work on the CPU, slowly. For an NVIDIA GPU: install the driver, CUDA 12 and cuDNN 9, then `npm run gpu:install`.',
      };
    }
    return { area: 'device', verdict: 'ok', detail: `${choice.device.provider.toUpperCase()}: ${choice.device.reason}` };
  } catch (err) {
    const { detail } = describeError(err);
    return { area: 'device', verdict: 'fail', detail, fix: 'Start with `--device cpu` (or P2PZ_DEVICE=cpu), or fix the GPU set-up as the message says.' };
  }
}

async function models(paths: DaemonPaths): Promise<Check> {
  const { listModels, listUnfinished } = await import('../models/registry.js');
  let entries;
  try {
    entries = await listModels(paths.models);
  } catch {
    return { area: 'models', verdict: 'warn', detail: 'No models folder yet.', fix: 'Run `p2pz models install` (or `npm start -- --demo` to try the plugin with a demo pack).' };
  }
  const broken = entries.filter((e) => e.problems.length > 0);
  if (broken.length > 0) {
    return {
      area: 'models',
      verdict: 'fail',
      detail: `${broken.map((e) => e.name).join(', ')}: ${broken[0]?.problems[0] ?? 'damaged'}.`,
      fix: `Remove and install again: \`p2pz models remove ${broken[0]?.name ?? '<name>'}\`, then \`p2pz models install\`.`,
    };
  }
  const unfinished = await listUnfinished(paths.models).catch(() => []);
  const diffusion = entries.filter((e) => e.kind === 'diffusion');
  const gans = entries.filter((e) => e.kind === 'gan');
  const captioners = entries.filter((e) => e.kind === 'captioner');
  // The one edits use: the preferred name when installed, else the first (pipeline/captioner/installed.ts).
  const { CAPTIONER_LAYOUT } = await import('../models/captioner-files.js');
  const captioner = captioners.find((e) => e.name === `${CAPTIONER_LAYOUT.folder}/${CAPTIONER_LAYOUT.preferred}`) ?? captioners[0];
  const captionerText = captioner ? `captioner ${captioner.name.slice(CAPTIONER_LAYOUT.folder.length + 1)}` : `no captioner (captions are the template "a photo of a …"; install one with ${CAPTIONER_LAYOUT.installCommand})`;
  const summary = `${diffusion.length} diffusion model${diffusion.length === 1 ? '' : 's'}${diffusion.length ? ` (${diffusion.map((e) => e.name).join(', ')})` : ''}, ${gans.length} quick preview${gans.length === 1 ? '' : 's'}, ${captionerText}`;
  if (unfinished.length > 0) {
    return { area: 'models', verdict: 'warn', detail: `${summary}; ${unfinished.length} unfinished download(s).`, fix: 'Run `p2pz models install` again: it resumes the download.' };
  }
  if (diffusion.length === 0) {
    return { area: 'models', verdict: 'warn', detail: `${summary}: full renders need a Stable Diffusion model.`, fix: 'Run `p2pz models install` (about 4.3 GB).' };
  }
  return { area: 'models', verdict: 'ok', detail: summary };
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function port(paths: DaemonPaths, wanted: number): Promise<Check> {
  let info: DaemonInfo | undefined;
  try {
    info = DaemonInfo.parse(JSON.parse(await readFile(paths.daemonInfo, 'utf8')));
  } catch {
    info = undefined;
  }
  if (info !== undefined) {
    try {
      const response = await fetch(`${info.url}/v1/health`, { signal: AbortSignal.timeout(DOCTOR_DEFAULTS.healthTimeoutMs) });
      const health = HealthResponse.parse(await response.json());
      const engine = health.worker.state;
      const verdict: Verdict = engine === 'crash-loop' ? 'fail' : 'ok';
      return {
        area: 'port',
        verdict,
        detail: `A daemon answers on ${info.url} (engine ${engine}).`,
        ...(verdict === 'fail' ? { fix: 'The worker keeps crashing: read the daemon log, try `p2pz serve --device cpu`, check the models above.' } : {}),
      };
    } catch {
      // daemon.json is stale: fall through to the port check.
    }
  }
  if (await portFree(wanted)) return { area: 'port', verdict: 'ok', detail: `No daemon is running; port ${wanted} on 127.0.0.1 is free for \`p2pz serve\`.` };
  return {
    area: 'port',
    verdict: 'fail',
    detail: `Port ${wanted} on 127.0.0.1 is taken by another program${info ? ' (daemon.json is stale)' : ''}.`,
    fix: `Stop that program, or start with \`p2pz serve --port N\` and set the same port in the plugin.`,
  };
}

async function dataFolder(paths: DaemonPaths): Promise<Check> {
  const where = paths.home;
  try {
    await mkdir(where, { recursive: true, mode: 0o700 });
    const mode = (await stat(where)).mode & 0o777;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      return {
        area: 'data folder',
        verdict: 'fail',
        detail: `${where} is open to other users (mode ${mode.toString(8)}); it holds the tokens.`,
        fix: `Run \`chmod 700 "${where}"\` (the daemon also does so when it starts).`,
      };
    }
    await access(where, constants.W_OK);
    const probe = join(where, `.doctor-${process.pid}`);
    await writeFile(probe, 'ok', { mode: 0o600 });
    await unlink(probe);
    const fs = await statfs(where);
    const free = fs.bavail * fs.bsize;
    if (free < DOCTOR_DEFAULTS.minFreeBytes) {
      return { area: 'data folder', verdict: 'warn', detail: `${where}: ${(free / 1024 ** 3).toFixed(1)} GiB free.`, fix: 'Free some space, or set P2PZ_HOME to a folder on a larger disk.' };
    }
    return { area: 'data folder', verdict: 'ok', detail: `${where}: writable, private, ${(free / 1024 ** 3).toFixed(0)} GiB free.` };
  } catch (err) {
    return { area: 'data folder', verdict: 'fail', detail: `${where} cannot be written (${describeError(err).error}).`, fix: 'Fix its owner and permissions, or set P2PZ_HOME to a folder you own.' };
  }
}

/** Runs every check; `wantedPort` is the port `p2pz serve` would use. */
export async function runDoctor(io: CliIo, wantedPort: number): Promise<Check[]> {
  const paths = homePaths(defaultHome(io.env));
  return [await environment(), await device(io), await models(paths), await port(paths, wantedPort), await dataFolder(paths)];
}

const MARK: Readonly<Record<Verdict, string>> = Object.freeze({ ok: 'ok  ', warn: 'WARN', fail: 'FAIL' });

export const doctorCommand: CliCommand = {
  name: 'doctor',
  summary: 'check the environment, device, models, port and data folder, with a fix for each problem',
  usage: 'p2pz doctor [--port N]\n\nChecks what p2pz needs and prints a fix for each problem. Exit code 1 when a check failed.\n  --port N   the port `p2pz serve` would use (default 7870)',
  async run(args, io) {
    const { values } = parseFlags(args, { port: { type: 'string' } });
    const wanted = values.port === undefined ? DEFAULT_PORT : Number(values.port);
    const checks = await runDoctor(io, Number.isInteger(wanted) && wanted >= 0 && wanted < 65536 ? wanted : DEFAULT_PORT);
    for (const check of checks) {
      io.out(`${MARK[check.verdict]} ${check.area.padEnd(12)} ${check.detail}\n`);
      if (check.fix !== undefined) io.out(`     ${''.padEnd(12)} fix: ${check.fix}\n`);
    }
    return checks.some((c) => c.verdict === 'fail') ? 1 : 0;
  },
};
