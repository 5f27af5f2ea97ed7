// startDaemon: composes the running service. Config and data directory, token store, pairing, the
// upload and result stores, the job queue over the engine (the worker supervisor unless a test injects
// a fake), the express app behind the gate, the HTTP server and the WebSocket event stream. Once it
// listens it writes `daemon.json` (0600) so that CLI commands can find it; close() undoes everything
// in order: stop accepting, cancel jobs, close sockets, stop the engine (docs/SECURITY.md §R23).
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { P2pzError, PROTOCOL_VERSION, type InstalledModel } from '../shared/protocol/index.js';
import { checkListenHost, checkTransport, DAEMON_DEFAULTS, DAEMON_VERSION, DaemonInfo, defaultHome, homePaths, isLoopbackHost, type DaemonPaths, type DeviceChoice } from './config.js';
import type { JobEngine } from './jobs/engine.js';
import { JobQueue, type QueueOptions } from './jobs/queue.js';
import { ResultStore, type ResultStoreOptions } from './jobs/results.js';
import { addScrubRoot, createLogger, describeError, type Logger } from './log.js';
import { createApp } from './server/app.js';
import { BODY_LIMITS, type BodyLimits } from './server/body.js';
import type { ServiceContext } from './server/context.js';
import { createGate } from './server/gate.js';
import { buildHealth } from './server/health.js';
import { DURATION_DEFAULTS, DurationLog } from './jobs/durations.js';
import { createHttpServer, type HttpOptions } from './server/http-server.js';
import { listInstalledModels } from './server/installed-models.js';
import { Pairing, type PairingCode, type PairingOptions } from './server/pairing.js';
import { parsePublicHost } from './server/public-host.js';
import { loadTls, type TlsFiles } from './server/tls.js';
import { TokenStore, type TokenStoreOptions } from './server/tokens.js';
import { UploadBudget } from './server/upload-budget.js';
import { attachEvents, type WsOptions } from './server/ws.js';
import type { RedisConnection } from './team/redis-url.js';
import type { TeamExchange } from './team/team-engine.js';
import { TEAM_DEFAULTS, type TeamSettings } from './team/settings.js';
import { WorkerSupervisor, type SupervisorOptions } from './worker/supervisor.js';

export interface DaemonOptions {
  /** Data directory; default `$P2PZ_HOME` or the per-user folder (config.ts). */
  readonly home?: string;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  /** Listen beyond loopback (`p2pz serve --listen`); needs `tls` or `insecureBehindProxy`. */
  readonly allowRemote?: boolean;
  /** Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`). */
  readonly tls?: TlsFiles;
  /** Plain HTTP beyond loopback: a reverse proxy terminates TLS (`--insecure-behind-proxy`). */
  readonly insecureBehindProxy?: boolean;
  /** The team's public names, `NAME[:PORT]` (`--public-host`): allowed Host values and https origins. */
  readonly publicHosts?: readonly string[];
  readonly device?: DeviceChoice;
  /** The job engine; default a WorkerSupervisor over `dist/daemon/worker.js`. Closed by close(). */
  readonly engine?: JobEngine;
  /** Options for the default WorkerSupervisor (models dir and device are filled in). */
  readonly supervisor?: Omit<SupervisorOptions, 'modelsDir'>;
  /** Lists installed models; default scans the models directory. */
  readonly models?: (modelsDir: string) => Promise<InstalledModel[]>;
  readonly log?: Logger;
  readonly limits?: Partial<BodyLimits>;
  readonly http?: Partial<HttpOptions>;
  readonly ws?: Partial<WsOptions>;
  readonly pairing?: PairingOptions;
  /** Token settings: expiry of unused client tokens (`p2pz serve --token-expiry-days`), test clock. */
  readonly tokens?: Omit<TokenStoreOptions, 'log'>;
  readonly queue?: QueueOptions;
  /** Options of both file stores (uploads and results). */
  readonly stores?: ResultStoreOptions;
  readonly shutdownGraceMs?: number;
  /** Team endpoint mode (docs/TEAM.md): jobs go onto this Redis's BullMQ queue for `p2pz worker`s
   *  instead of a local worker process. */
  readonly team?: { readonly connection: RedisConnection; readonly settings?: Partial<TeamSettings> };
}

export interface RunningDaemon {
  readonly port: number;
  /** `http://127.0.0.1:<port>` (or the remote bind address; `https://` with TLS). */
  readonly url: string;
  readonly paths: DaemonPaths;
  /** The express app, for introspection (tests enumerate its routes). */
  readonly app: Express;
  /** A fresh pairing code (replacing the previous one), as printed at start and by `p2pz pair`. */
  pairingCode(): PairingCode;
  /** Stops accepting, cancels jobs, closes sockets and the engine, removes daemon.json. Idempotent. */
  close(): Promise<void>;
}

async function writeDaemonInfo(path: string, info: DaemonInfo): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(DaemonInfo.parse(info))}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, path);
}

/** Removes daemon.json if it still describes this process (a newer daemon may have replaced it). */
async function removeDaemonInfo(path: string): Promise<void> {
  try {
    const parsed = DaemonInfo.safeParse(JSON.parse(await readFile(path, 'utf8')));
    if (parsed.success && parsed.data.pid === process.pid) await unlink(path);
  } catch {
    // already gone
  }
}

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function startDaemon(options: DaemonOptions = {}): Promise<RunningDaemon> {
  const host = options.host ?? DAEMON_DEFAULTS.host;
  const allowRemote = options.allowRemote ?? DAEMON_DEFAULTS.allowRemote;
  checkListenHost(host, allowRemote);
  const publicHosts = (options.publicHosts ?? []).map(parsePublicHost);
  const tls = await loadTls(options.tls ?? {});
  checkTransport(host, tls !== undefined, options.insecureBehindProxy ?? DAEMON_DEFAULTS.insecureBehindProxy);
  const remote = !isLoopbackHost(host);
  const scheme = tls === undefined ? 'http' : 'https';
  const log = options.log ?? createLogger();
  const paths = homePaths(options.home ?? defaultHome());
  addScrubRoot('<data>', paths.home);
  await mkdir(paths.home, { recursive: true, mode: 0o700 });
  await chmod(paths.home, 0o700);
  await mkdir(paths.models, { recursive: true, mode: 0o700 });

  const limits: BodyLimits = { ...BODY_LIMITS, ...options.limits };
  const tokens = await TokenStore.open(paths, { ...options.tokens, log });
  // Unused tokens expire (when configured): forgotten at start and hourly, refused on use meanwhile.
  const sweepTokens = (): void => void tokens.expire().catch((err: unknown) => log.warn('tokens.expire-failed', describeError(err)));
  sweepTokens();
  const tokenSweep = setInterval(sweepTokens, 60 * 60 * 1000);
  tokenSweep.unref();
  const uploads = await ResultStore.open(paths.uploads, { log, ...options.stores });
  const results = await ResultStore.open(paths.results, { log, ...options.stores });
  let team: (JobEngine & TeamExchange) | undefined;
  if (options.team !== undefined) {
    // Loaded only in team mode: a local daemon never maps BullMQ or a Redis client.
    const { TeamEngine } = await import('./team/team-engine.js');
    team = await TeamEngine.open(options.team.connection, { ...options.team.settings, log });
  }
  const engine =
    options.engine ??
    team ??
    new WorkerSupervisor({ cacheDir: paths.cache, ...options.supervisor, modelsDir: paths.models, device: options.device ?? DAEMON_DEFAULTS.device, log });
  const shutdownGraceMs = options.shutdownGraceMs ?? DAEMON_DEFAULTS.shutdownGraceMs;
  // A team endpoint keeps `inFlight` jobs on the shared queue, where BullMQ orders them for the workers.
  const concurrency = team === undefined ? {} : { concurrency: options.team?.settings?.inFlight ?? TEAM_DEFAULTS.inFlight };
  const durations = await DurationLog.open(join(paths.cache, DURATION_DEFAULTS.fileName));
  const queue = new JobQueue(engine, results, {
    closeGraceMs: shutdownGraceMs,
    log,
    ...concurrency,
    onFinished: (request, outcome, device) => {
      if (request.kind !== 'caption') void durations.record(device, request.edit, outcome);
    },
    ...options.queue,
  });
  const pairing = new Pairing(options.pairing);
  const listModels = options.models ?? listInstalledModels;
  let stopping = false;

  const ctx: ServiceContext = {
    tokens,
    pairing,
    queue,
    uploads,
    results,
    limits,
    uploadBudget: new UploadBudget({ totalBytes: limits.uploadBytesInFlight, perTokenBytes: limits.uploadBytesInFlightPerToken }),
    log,
    ...(team === undefined ? {} : { team }),
    models: () => listModels(paths.models),
    health: async () =>
      buildHealth({
        version: DAEMON_VERSION,
        engine: engine.health(),
        queue: queue.counts(),
        models: await listModels(paths.models),
        stopping,
        durations: durations.samples(engine.health().device),
      }),
  };

  let port = 0;
  // A specific remote bind address may be used as a Host name; a wildcard (0.0.0.0, ::) cannot.
  const extraHostNames = remote && host !== '0.0.0.0' && host !== '::' ? [urlHost(host)] : [];
  // Reachable under a public name (directly or through a proxy on this machine): health needs a token.
  const gate = createGate({ port: () => port, extraHostNames, tokens, limits, healthNeedsToken: remote || publicHosts.length > 0, publicHosts, scheme });
  const app = createApp(ctx, gate);
  const server = createHttpServer(app, options.http, tls);
  const events = attachEvents(server, gate, ctx, options.ws);

  const cleanupPartial = async (): Promise<void> => {
    clearInterval(tokenSweep);
    await events.close();
    await queue.close();
    uploads.close();
    results.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? DAEMON_DEFAULTS.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await cleanupPartial();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      throw new P2pzError('E_INTERNAL', `Port ${options.port ?? DAEMON_DEFAULTS.port} is already in use.`, 'Another p2pz daemon may be running (`p2pz pair` talks to it), or start with --port N.');
    }
    throw new P2pzError('E_INTERNAL', `Could not listen on ${host}.`, 'Check the --host and --port values.');
  }
  port = (server.address() as AddressInfo).port;
  const url = `${scheme}://${urlHost(host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host)}:${port}`;
  await writeDaemonInfo(paths.daemonInfo, { v: PROTOCOL_VERSION, pid: process.pid, port, url, ...(tls === undefined ? {} : { certSha256: tls.fingerprint256 }) });
  log.info('daemon.listening', { url, remote, ...(tls === undefined ? {} : { tlsValidTo: tls.validTo.toISOString() }), ...(publicHosts.length > 0 ? { publicHosts: publicHosts.map((h) => h.name).join(' ') } : {}) });
  if (tls !== undefined && tls.validTo.getTime() < Date.now()) log.warn('daemon.tls-expired', { validTo: tls.validTo.toISOString() });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopping = true;
      clearInterval(tokenSweep);
      log.info('daemon.stopping');
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      try {
        await queue.close();
      } catch (err) {
        log.warn('daemon.queue-close-failed', describeError(err));
      }
      await events.close();
      server.closeAllConnections();
      await serverClosed;
      uploads.close();
      results.close();
      await tokens.flush();
      await removeDaemonInfo(paths.daemonInfo);
      log.info('daemon.stopped');
    })();
    return closing;
  };

  return { port, url, paths, app, pairingCode: () => pairing.newCode(), close };
}
