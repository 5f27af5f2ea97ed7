// `p2pz serve`: starts the daemon in the foreground, prints its URL and a pairing code, and stops
// cleanly on SIGTERM/SIGINT (stop accepting, cancel jobs, close sockets, stop the worker; R23). A
// second signal, or a shutdown that hangs, exits at once.
import { P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, homePaths, type DeviceChoice } from '../config.js';
import { startDaemon } from '../daemon.js';
import { createLogger, describeError, parseLogLevel } from '../log.js';
import { deviceAtStartup, modelsAtStartup } from '../models/startup.js';
import { intFlag, parseFlags, type CliCommand } from './command.js';
import { watchParent } from './parent-watch.js';

export const SERVE_DEFAULTS = Object.freeze({
  /** After a stop signal, exit by force if the orderly shutdown has not finished by then. */
  forceExitMs: 10_000,
});

const DEVICES: readonly DeviceChoice[] = ['auto', 'cpu', 'cuda'];

export const serveCommand: CliCommand = {
  name: 'serve',
  summary: 'start the daemon (prints its URL and a pairing code)',
  usage: [
    'p2pz serve [--port N] [--host H --allow-remote] [--device auto|cpu|cuda] [--demo] [--token-expiry-days N] [--with-parent]',
    '',
    '  --port N         TCP port (default 7870; 0 picks a free one)',
    '  --host H         interface to listen on (default 127.0.0.1)',
    '  --allow-remote   required to listen on anything but loopback; every request then needs a token',
    '  --device D       execution provider: auto (CUDA, else CPU), cpu or cuda (default auto)',
    '  --demo           also serve a generated demo model pack (random weights, marked demo)',
    '  --token-expiry-days N  refuse and forget client tokens unused for N days (default never; P2PZ_TOKEN_EXPIRY_DAYS)',
    '  --with-parent    stop, as on SIGTERM, when the launching process ends (`npm start` uses it)',
    '',
    'Data lives in $P2PZ_HOME (default: the per-user data folder). P2PZ_LOG=debug logs more.',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseFlags(args, {
      port: { type: 'string' },
      host: { type: 'string' },
      'allow-remote': { type: 'boolean' },
      device: { type: 'string' },
      demo: { type: 'boolean' },
      'with-parent': { type: 'boolean' },
      'token-expiry-days': { type: 'string' },
    });
    const device = values.device ?? io.env['P2PZ_DEVICE'] ?? 'auto';
    if (!(DEVICES as readonly string[]).includes(device)) {
      throw new P2pzError('E_BAD_REQUEST', '--device must be auto, cpu or cuda.');
    }
    const port = intFlag('port', values.port, 0, 65535);
    const expiryDays = intFlag('token-expiry-days', values['token-expiry-days'] ?? io.env['P2PZ_TOKEN_EXPIRY_DAYS'], 1, 3650);
    const log = createLogger({ level: parseLogLevel(io.env['P2PZ_LOG']) ?? 'info' });
    const home = defaultHome(io.env);
    io.out((await modelsAtStartup(homePaths(home).models, values.demo === true)).notice);
    io.out(await deviceAtStartup(device as DeviceChoice));
    const daemon = await startDaemon({
      home,
      ...(port === undefined ? {} : { port }),
      ...(values.host === undefined ? {} : { host: values.host }),
      allowRemote: values['allow-remote'] ?? false,
      device: device as DeviceChoice,
      log,
      ...(expiryDays === undefined ? {} : { tokens: { expireUnusedDays: expiryDays } }),
    });
    // A bug must not print a stack (R21): log the scrubbed error, shut down, exit non-zero.
    const onFatal = (err: unknown): void => {
      log.error('daemon.fatal', describeError(err));
      setTimeout(() => process.exit(1), SERVE_DEFAULTS.forceExitMs).unref();
      daemon.close().finally(() => process.exit(1));
    };
    process.on('uncaughtException', onFatal);
    process.on('unhandledRejection', onFatal);
    const { code } = daemon.pairingCode();
    io.out(`p2pz daemon listening on ${daemon.url}\n`);
    io.out(`Pairing code: ${code} (valid for 5 minutes; \`p2pz pair\` prints a new one)\n`);
    io.out(`Try it in the browser: ${daemon.url}/ (Photopea plugin page: ${daemon.url}/photopea)\n`);

    return new Promise<number>((resolve) => {
      let stopping = false;
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stopping) {
          log.warn('daemon.forced-exit', { signal });
          process.exit(1);
        }
        stopping = true;
        log.info('daemon.signal', { signal });
        setTimeout(() => {
          log.error('daemon.shutdown-timeout');
          process.exit(1);
        }, SERVE_DEFAULTS.forceExitMs).unref();
        daemon.close().then(
          () => {
            // Exit even if a handle outlives the shutdown (this timer fires only then).
            setTimeout(() => process.exit(0), 1_000).unref();
            resolve(0);
          },
          (err: unknown) => {
            log.error('daemon.shutdown-failed', describeError(err));
            resolve(1);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      if (values['with-parent'] === true) {
        watchParent(() => {
          log.info('daemon.parent-gone');
          onSignal('SIGTERM');
        });
      }
    });
  },
};
