// A CLI command's call to the running daemon: found through $P2PZ_HOME/daemon.json, authorised with
// the CLI token. `undefined` means no daemon answers there (none started, or a stale daemon.json), so
// the command may work on the files itself; an answer that is an error is thrown as its P2pzError.
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { ErrorResponse, P2pzError } from '../../shared/protocol/index.js';
import { DaemonInfo, type DaemonPaths } from '../config.js';
import { readCliToken } from '../server/tokens.js';
import { daemonFetch, type DaemonExchange } from './daemon-fetch.js';

export const DAEMON_API_DEFAULTS = Object.freeze({
  /** How long to wait for the daemon's answer. */
  timeoutMs: 5_000,
});

export interface DaemonCall {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: string;
  readonly body?: unknown;
}

export async function callDaemon<S extends z.ZodType>(paths: DaemonPaths, call: DaemonCall, schema: S): Promise<z.infer<S> | undefined> {
  let info: DaemonInfo;
  try {
    info = DaemonInfo.parse(JSON.parse(await readFile(paths.daemonInfo, 'utf8')));
  } catch {
    return undefined;
  }
  const token = await readCliToken(paths.cliToken);
  if (token === undefined) return undefined;
  let answer: DaemonExchange;
  try {
    answer = await daemonFetch(info, call.path, {
      method: call.method,
      headers: { Authorization: `Bearer ${token}`, ...(call.body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
      timeoutMs: DAEMON_API_DEFAULTS.timeoutMs,
    });
  } catch {
    return undefined;
  }
  const body = answer.body;
  if (answer.status < 200 || answer.status > 299) {
    const error = ErrorResponse.safeParse(body);
    throw error.success ? P2pzError.fromBody(error.data) : new P2pzError('E_INTERNAL');
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new P2pzError('E_PROTOCOL_VERSION');
  return parsed.data;
}
