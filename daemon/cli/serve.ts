// `p2pz serve`: starts the daemon in the foreground, prints its URL and a pairing code, and stops
// cleanly on SIGTERM/SIGINT (stop accepting, cancel jobs, close sockets, stop the worker; docs/SECURITY.md §R23). A
// second signal, or a shutdown that hangs, exits at once.
import { DEFAULT_PORT, devicePreference, P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, homePaths, parseListen } from '../config.js';
import { startDaemon } from '../daemon.js';
import { createLogger, describeError, parseLogLevel } from '../log.js';
import { deviceAtStartup, modelsAtStartup } from '../models/startup.js';
import { parseRedisUrl } from '../team/redis-url.js';
import { intFlag, parseFlags, type CliCommand } from './command.js';
import { watchParent } from './parent-watch.js';

export const SERVE_DEFAULTS = Object.freeze({
  /** After a stop signal, exit by force if the orderly shutdown has not finished by then. */
  forceExitMs: 10_000,
});

export const serveCommand: CliCommand = {
  name: 'serve',
  summary: 'start the daemon (prints its URL and a pairing code)',
  usage: [
    'p2pz serve [--port N] [--listen ADDR[:PORT] (--tls-cert FILE --tls-key FILE | --insecure-behind-proxy)] [--public-host NAME[:PORT]]',
    '           [--device auto|cpu|cuda|webgpu|coreml|dml] [--demo] [--token-expiry-days N] [--with-parent]',
    '',
    '  --port N         TCP port (default 7870; 0 picks a free one)',
    '  --listen ADDR[:PORT]  listen beyond this machine, e.g. 0.0.0.0:7870; every request then needs a',
    '                   token, and TLS is required (docs/TEAM.md)',
    '  --tls-cert FILE  PEM certificate (chain) to serve HTTPS with',
    '  --tls-key FILE   its PEM private key (unencrypted)',
    '  --insecure-behind-proxy  plain HTTP beyond loopback: only when a reverse proxy terminates TLS',
    '  --public-host NAME[:PORT]  the name designers use (https://NAME); allowed as Host and Origin',
    '                   (repeatable; behind a proxy: the Host the proxy forwards)',
    '  --host H         loopback interface to listen on (default 127.0.0.1); `--host H --allow-remote`',
    '                   is the older spelling of `--listen H`',
    '  --device D       execution provider (default auto: the first that starts of CUDA, DirectML,',
    '                   WebGPU, Core ML as the platform has them, else the CPU); also $P2PZ_DEVICE',
    '  --demo           also serve a generated demo model pack (random weights, marked demo)',
    '  --token-expiry-days N  refuse and forget client tokens unused for N days (default never; P2PZ_TOKEN_EXPIRY_DAYS)',
    '  --with-parent    stop, as on SIGTERM, when the launching process ends (`npm start` uses it)',
    '  --queue URL      be a team endpoint: put jobs on this Redis (redis://HOST:PORT/N) for',
    '                   `p2pz worker`s instead of running them here (docs/TEAM.md)',
    '',
    'Data lives in $P2PZ_HOME (default: the per-user data folder). P2PZ_LOG=debug logs more.',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseFlags(args, {
      port: { type: 'string' },
      host: { type: 'string' },
      'allow-remote': { type: 'boolean' },
      listen: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'insecure-behind-proxy': { type: 'boolean' },
      'public-host': { type: 'string', multiple: true },
      device: { type: 'string' },
      demo: { type: 'boolean' },
      'with-parent': { type: 'boolean' },
      'token-expiry-days': { type: 'string' },
      queue: { type: 'string' },
    });
    const team = values.queue === undefined ? undefined : { connection: parseRedisUrl(values.queue) };
    const device = devicePreference(values.device, io.env);
    let port = intFlag('port', values.port, 0, 65535);
    let host = values.host;
    let allowRemote = values['allow-remote'] ?? false;
    if (values.listen !== undefined) {
      if (host !== undefined) throw new P2pzError('E_BAD_REQUEST', '--listen and --host name the same thing.', 'Pass only --listen ADDR[:PORT].');
      ({ host, port } = parseListen(values.listen, port ?? DEFAULT_PORT));
      allowRemote = true;
    }
    const expiryDays = intFlag('token-expiry-days', values['token-expiry-days'] ?? io.env['P2PZ_TOKEN_EXPIRY_DAYS'], 1, 3650);
    const log = createLogger({ level: parseLogLevel(io.env['P2PZ_LOG']) ?? 'info' });
    const home = defaultHome(io.env);
    io.out((await modelsAtStartup(homePaths(home).models, values.demo === true)).notice);
    if (team === undefined) io.out(await deviceAtStartup(device));
    const daemon = await startDaemon({
      home,
      ...(port === undefined ? {} : { port }),
      ...(host === undefined ? {} : { host }),
      allowRemote,
      tls: { certFile: values['tls-cert'], keyFile: values['tls-key'] },
      insecureBehindProxy: values['insecure-behind-proxy'] ?? false,
      publicHosts: values['public-host'] ?? [],
      device: device,
      log,
      ...(expiryDays === undefined ? {} : { tokens: { expireUnusedDays: expiryDays } }),
      ...(team === undefined ? {} : { team }),
    });
    // A bug must not print a stack (docs/SECURITY.md §R21): log the scrubbed error, shut down, exit non-zero.
    const onFatal = (err: unknown): void => {
      log.error('daemon.fatal', describeError(err));
      setTimeout(() => process.exit(1), SERVE_DEFAULTS.forceExitMs).unref();
      daemon.close().finally(() => process.exit(1));
    };
    process.on('uncaughtException', onFatal);
    process.on('unhandledRejection', onFatal);
    const { code } = daemon.pairingCode();
    io.out(`p2pz daemon listening on ${daemon.url}\n`);
    for (const name of values['public-host'] ?? []) io.out(`Designers connect to https://${name}\n`);
    io.out(`Pairing code: ${code} (type it in the plugin within 5 minutes; \`p2pz pair\` prints a new one)\n`);
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
        // Ctrl-C reaches npm, its shell and the daemon together: the shell may exit while the daemon
        // is already stopping, which is no reason for a forced exit.
        watchParent(() => {
          if (stopping) return;
          log.info('daemon.parent-gone');
          onSignal('SIGTERM');
        });
      }
    });
  },
};
