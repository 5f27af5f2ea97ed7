// The daemon's configuration: where it keeps its files, where it listens, and the service-level
// defaults. Module-specific limits live with their modules (HTTP_DEFAULTS in server/http-server.ts,
// WS_DEFAULTS in server/ws.ts, PAIRING_DEFAULTS in server/pairing.ts, BODY_LIMITS in server/body.ts);
// this file composes them into one resolved config.
import { homedir } from 'node:os';
import { isIP } from 'node:net';
import { join, resolve, win32 } from 'node:path';
import { z } from 'zod';
import { DEFAULT_PORT, P2pzError, Version } from '../shared/protocol/index.js';
import type { DevicePreference } from '../shared/protocol/index.js';

// Replaced by esbuild with the package version (scripts/build.mjs); absent when run from source.
declare const P2PZ_VERSION: string | undefined;
export const DAEMON_VERSION: string = typeof P2PZ_VERSION === 'string' ? P2PZ_VERSION : '0.0.0-dev';

export type DeviceChoice = DevicePreference;

export const DAEMON_DEFAULTS = Object.freeze({
  /** Interface to listen on. Loopback only; anything else needs `allowRemote` (`--listen`, docs/SECURITY.md §R1). */
  host: '127.0.0.1',
  /** TCP port; 0 picks a free one (tests). 7860 is taken by common SD UIs, hence 7870. */
  port: DEFAULT_PORT,
  /** Must be true to listen on a non-loopback interface (`p2pz serve --listen ADDR`), which also
   *  needs TLS or `insecureBehindProxy`. Every route then needs a token, health too. */
  allowRemote: false,
  /** Plain HTTP beyond loopback, for a reverse proxy that terminates TLS (`--insecure-behind-proxy`). */
  insecureBehindProxy: false,
  /** Execution provider for the worker: `auto` tries the platform's GPU providers, then the CPU. */
  device: 'auto' as DeviceChoice,
  /** How long close() waits for running jobs to stop cooperatively before closing the engine anyway. */
  shutdownGraceMs: 3_000,
});

/** Names of the files and folders inside the data directory. */
export const HOME_LAYOUT = Object.freeze({
  /** Installed models (diffusion folders and `gan/<source>-<target>/`). */
  models: 'models',
  /** Uploaded images waiting for jobs; expire like results. */
  uploads: 'uploads',
  /** Job outputs (PNG), served by GET /v1/results/:id. */
  results: 'results',
  /** Caches shared by the daemon's worker and `p2pz edit`: `directions/` (Δ per text encoder and
   *  sentence banks) and `inversions/` (z_T per image and settings). */
  cache: 'cache',
  /** The CLI token in plain text (0600): `p2pz token` prints it, `p2pz pair` uses it. */
  cliToken: 'token',
  /** Hashes of the tokens issued at pairing (0600). */
  tokens: 'tokens.json',
  /** `{v, pid, port, url}` of the running daemon (0600), written once it listens. */
  daemonInfo: 'daemon.json',
});

export interface DaemonPaths {
  readonly home: string;
  readonly models: string;
  readonly uploads: string;
  readonly results: string;
  readonly cache: string;
  readonly cliToken: string;
  readonly tokens: string;
  readonly daemonInfo: string;
}

/**
 * The data directory: `$P2PZ_HOME` when set, else the platform's per-user data folder:
 * Linux `$XDG_DATA_HOME/p2pz` or `~/.local/share/p2pz`, macOS `~/Library/Application Support/p2pz`,
 * Windows `%LOCALAPPDATA%\p2pz` (or `~\AppData\Local\p2pz`).
 */
export function defaultHome(
  env: Readonly<Record<string, string | undefined>> = process.env,
  platform: NodeJS.Platform = process.platform,
  home: string = homedir(),
): string {
  const explicit = env['P2PZ_HOME'];
  if (explicit) return resolve(explicit);
  if (platform === 'win32') return win32.join(env['LOCALAPPDATA'] || win32.join(home, 'AppData', 'Local'), 'p2pz');
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'p2pz');
  const xdg = env['XDG_DATA_HOME'];
  // XDG says relative values are invalid and must be ignored.
  return join(xdg && xdg.startsWith('/') ? xdg : join(home, '.local', 'share'), 'p2pz');
}

export function homePaths(home: string): DaemonPaths {
  const root = resolve(home);
  return Object.freeze({
    home: root,
    models: join(root, HOME_LAYOUT.models),
    uploads: join(root, HOME_LAYOUT.uploads),
    results: join(root, HOME_LAYOUT.results),
    cache: join(root, HOME_LAYOUT.cache),
    cliToken: join(root, HOME_LAYOUT.cliToken),
    tokens: join(root, HOME_LAYOUT.tokens),
    daemonInfo: join(root, HOME_LAYOUT.daemonInfo),
  });
}

/** True for addresses that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** docs/SECURITY.md §R1: listening anywhere but loopback is refused unless explicitly asked for (`--listen ADDR`). */
export function checkListenHost(host: string, allowRemote: boolean): void {
  if (!isLoopbackHost(host) && !allowRemote) {
    throw new P2pzError(
      'E_LISTEN_REFUSED',
      `Refusing to listen on ${host.slice(0, 100)}: only loopback addresses are allowed without --listen.`,
      `Use the default 127.0.0.1, or pass --listen ${host.slice(0, 100)} with --tls-cert and --tls-key if other machines must reach this daemon (every request then needs a token; docs/TEAM.md).`,
    );
  }
}

/** docs/SECURITY.md §R1: beyond loopback the daemon speaks TLS itself, or is told that a proxy in front of it does. */
export function checkTransport(host: string, tls: boolean, insecureBehindProxy: boolean): void {
  if (!isLoopbackHost(host) && !tls && !insecureBehindProxy) throw new P2pzError('E_TLS_REQUIRED', `Refusing to listen on ${host.slice(0, 100)} without TLS.`);
}

/** `--listen ADDR[:PORT]`: an IPv4 address or name, `[IPv6]`, or a bare IPv6 address, with an
 *  optional port (else `defaultPort`). */
export function parseListen(value: string, defaultPort: number): { host: string; port: number } {
  const v = value.trim();
  const bad = (): P2pzError =>
    new P2pzError('E_BAD_REQUEST', `--listen must be ADDR or ADDR:PORT, such as 0.0.0.0:7870, 192.168.1.5 or [::]:7870, not "${v.slice(0, 100)}".`);
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(v);
  if (bracketed) {
    host = bracketed[1] ?? '';
    portText = bracketed[2];
    if (isIP(host) !== 6) throw bad();
  } else if (isIP(v) === 6) {
    host = v;
  } else {
    const m = /^([A-Za-z0-9.-]+)(?::(\d+))?$/.exec(v);
    if (!m) throw bad();
    host = m[1] ?? '';
    portText = m[2];
  }
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535 || host === '') throw bad();
  return { host, port };
}

/** `daemon.json`: how CLI commands find the running daemon. */
export const DaemonInfo = z.object({
  v: Version,
  pid: z.number().int().positive(),
  port: z.number().int().min(1).max(65535),
  url: z.string().url().max(200),
  /** With TLS: the SHA-256 fingerprint of the daemon's certificate, as Node prints it (`AB:CD:…`);
   *  CLI commands pin it (cli/daemon-fetch.ts). */
  certSha256: z.string().regex(/^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/).optional(),
});
export type DaemonInfo = z.infer<typeof DaemonInfo>;
