// `p2pz worker --queue redis://… --endpoint URL`: a GPU worker of a team (docs/TEAM.md). It owns its
// onnxruntime sessions through the same worker process as the local daemon (WorkerSupervisor), takes
// the team's jobs one at a time, and stops on SIGTERM/SIGINT after its running job (a second signal
// abandons it: BullMQ hands it to another worker once its lock expires).
import { readFile } from 'node:fs/promises';
import { devicePreference, P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, homePaths } from '../config.js';
import { createLogger, describeError, parseLogLevel } from '../log.js';
import { TOKEN_PATTERN } from '../server/tokens.js';
import { parseRedisUrl, redactRedisUrl } from '../team/redis-url.js';
import { startTeamWorker } from '../team/team-worker.js';
import { WorkerSupervisor } from '../worker/supervisor.js';
import { intFlag, parseFlags, type CliCommand } from './command.js';

async function workerToken(file: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<string> {
  const token = file === undefined ? env['P2PZ_WORKER_TOKEN'] : (await readFile(file, 'utf8').catch(() => '')).trim();
  if (token === undefined || !TOKEN_PATTERN.test(token)) {
    throw new P2pzError(
      'E_UNAUTHORIZED',
      file === undefined ? 'P2PZ_WORKER_TOKEN holds no worker token.' : 'The --token-file holds no worker token.',
      'On the endpoint run `p2pz tokens create NAME --worker` and give the token to this worker.',
    );
  }
  return token;
}

export const workerCommand: CliCommand = {
  name: 'worker',
  summary: "run a team's GPU worker: take jobs from its queue (docs/TEAM.md)",
  usage: [
    'p2pz worker --queue redis://HOST:PORT/N --endpoint URL [--token-file F] [--device auto|cpu|cuda|webgpu|coreml|dml]',
    '',
    '  --queue URL       the team queue (the same URL as the endpoint\'s `p2pz serve --queue`)',
    '  --endpoint URL    the team endpoint\'s address, e.g. https://p2pz.studio.example',
    '  --token-file F    a file holding this worker\'s token (default: $P2PZ_WORKER_TOKEN)',
    '  --device D        execution provider, as for `p2pz serve` (default auto)',
    '  --lock-duration-ms N  how long a job stays this worker\'s without a sign of life before another',
    '                    worker may take it (default 30000; the stalled check runs at half of it)',
    '',
    'The models it runs are those installed in its own $P2PZ_HOME (`p2pz models install`).',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseFlags(args, {
      queue: { type: 'string' },
      endpoint: { type: 'string' },
      'token-file': { type: 'string' },
      device: { type: 'string' },
      'lock-duration-ms': { type: 'string' },
    });
    const lockDurationMs = intFlag('lock-duration-ms', values['lock-duration-ms'], 1_000, 600_000);
    if (values.queue === undefined || values.endpoint === undefined) {
      throw new P2pzError('E_BAD_REQUEST', 'p2pz worker needs --queue and --endpoint.', 'Run `p2pz worker --help`.');
    }
    const connection = parseRedisUrl(values.queue);
    if (!/^https?:\/\/[^/]+/.test(values.endpoint)) throw new P2pzError('E_BAD_REQUEST', '--endpoint must be an http:// or https:// address.');
    const device = devicePreference(values.device, io.env);
    const token = await workerToken(values['token-file'], io.env);
    const log = createLogger({ level: parseLogLevel(io.env['P2PZ_LOG']) ?? 'info' });
    const paths = homePaths(defaultHome(io.env));
    const engine = new WorkerSupervisor({ modelsDir: paths.models, cacheDir: paths.cache, device, log });
    const settings = lockDurationMs === undefined ? {} : { lockDurationMs, stalledIntervalMs: Math.max(500, Math.floor(lockDurationMs / 2)) };
    const worker = startTeamWorker({ connection, endpoint: values.endpoint, token, engine, log, settings });
    await worker.ready;
    io.out(`p2pz worker taking jobs from ${redactRedisUrl(connection)} for ${values.endpoint}\n`);
    return new Promise<number>((resolve) => {
      let stopping = false;
      const onSignal = (): void => {
        if (stopping) process.exit(1);
        stopping = true;
        worker.close().then(
          () => resolve(0),
          (err: unknown) => {
            log.error('worker.shutdown-failed', describeError(err));
            resolve(1);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
  },
};
