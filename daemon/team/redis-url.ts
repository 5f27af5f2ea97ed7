// `--queue redis://[user:password@]HOST:PORT/N` (or `rediss://` for TLS) as the connection options
// BullMQ hands to ioredis. BullMQ needs `maxRetriesPerRequest: null` on its connections so that a
// blocking command waits through a Redis restart instead of failing (BullMQ docs, "Connections").
import { P2pzError } from '../../shared/protocol/index.js';

export interface RedisConnection {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly tls?: Record<string, never>;
  readonly maxRetriesPerRequest: null;
}

const HINT = 'Give the queue as redis://HOST:PORT/N, for example redis://127.0.0.1:6379/0.';

export function parseRedisUrl(text: string): RedisConnection {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new P2pzError('E_BAD_REQUEST', '--queue is not a URL.', HINT);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new P2pzError('E_BAD_REQUEST', `--queue must start with redis:// or rediss://, not ${url.protocol}//.`, HINT);
  }
  if (url.hostname === '') throw new P2pzError('E_BAD_REQUEST', '--queue names no host.', HINT);
  const port = url.port === '' ? 6379 : Number(url.port);
  const path = url.pathname.replace(/^\//, '');
  if (!/^\d{0,2}$/.test(path)) throw new P2pzError('E_BAD_REQUEST', `--queue database "${path}" is not a number.`, HINT);
  const db = path === '' ? 0 : Number(path);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    db,
    ...(url.username === '' ? {} : { username: decodeURIComponent(url.username) }),
    ...(url.password === '' ? {} : { password: decodeURIComponent(url.password) }),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
    maxRetriesPerRequest: null,
  };
}

/** The URL without its password, for logs and health. */
export function redactRedisUrl(connection: RedisConnection): string {
  return `redis://${connection.host}:${connection.port}/${connection.db}`;
}
