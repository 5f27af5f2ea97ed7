// `p2pz tokens list|create NAME|revoke ID|NAME`: the owner's view of the client tokens (paired plugins
// and named tokens for people or scripts). With the daemon running, every change goes through it
// (routes/tokens.ts), so a revocation holds at once on HTTP and closes the token's open event
// streams; without one, the token files are read and changed directly.
import { mkdir } from 'node:fs/promises';
import {
  P2pzError,
  PROTOCOL_VERSION,
  TokenCreateResponse,
  TokenName,
  TokenRevokeResponse,
  TokensResponse,
  type TokenInfo,
} from '../../shared/protocol/index.js';
import { defaultHome, homePaths, type DaemonPaths } from '../config.js';
import { TokenStore } from '../server/tokens.js';
import { parseFlags, type CliCommand, type CliIo } from './command.js';
import { callDaemon } from './daemon-api.js';

const USAGE = [
  'p2pz tokens list              the client tokens: id, name, created, last used',
  'p2pz tokens create NAME       a new token named NAME (printed once; send it as `Authorization: Bearer …`)',
  'p2pz tokens create NAME --worker   a token for a team\'s GPU worker (`p2pz worker`, docs/TEAM.md): it can',
  '                              take the team\'s jobs but not submit any',
  'p2pz tokens revoke ID|NAME    revoke a token at once (its requests get 401, its event streams close)',
  '',
  'Paired plugins appear under the name they paired with. `p2pz token` prints the command-line token,',
  'which is not listed. `p2pz serve --token-expiry-days N` forgets tokens unused for N days.',
].join('\n');

function when(ms: number | null): string {
  if (ms === null) return 'never';
  const d = new Date(ms);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The list as a table (one line per token), then the running daemon's expiry policy (undefined: not known). */
export function formatTokens(tokens: readonly TokenInfo[], expireUnusedDays: number | null | undefined): string {
  const policy =
    expireUnusedDays === undefined
      ? '(The daemon is not running: `p2pz serve --token-expiry-days N` sets the expiry.)'
      : expireUnusedDays === null
        ? 'Tokens do not expire.'
        : `Tokens unused for ${expireUnusedDays} days expire.`;
  if (tokens.length === 0) return `No client tokens. Pair a plugin, or run \`p2pz tokens create NAME\`.\n${policy}\n`;
  const rows = [['ID', 'NAME', 'KIND', 'CREATED', 'LAST USED'], ...tokens.map((t) => [t.id, t.name, t.kind, when(t.createdAt), when(t.lastUsedAt)])];
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const lines = rows.map((r) => r.map((cell, i) => (i < 4 ? cell.padEnd(widths[i] ?? 0) : cell)).join('  '));
  return `${lines.join('\n')}\n${policy}\n`;
}

async function offlineStore(paths: DaemonPaths): Promise<TokenStore> {
  await mkdir(paths.home, { recursive: true, mode: 0o700 });
  return TokenStore.open(paths);
}

async function list(paths: DaemonPaths, io: CliIo): Promise<number> {
  const live = await callDaemon(paths, { method: 'GET', path: '/v1/tokens' }, TokensResponse);
  if (live !== undefined) {
    io.out(formatTokens(live.tokens, live.expireUnusedDays));
    return 0;
  }
  const store = await offlineStore(paths);
  io.out(formatTokens(store.list(), undefined));
  return 0;
}

async function create(paths: DaemonPaths, rawName: string, kind: 'client' | 'worker', io: CliIo): Promise<number> {
  const name = TokenName.safeParse(rawName);
  if (!name.success) throw new P2pzError('E_BAD_REQUEST', 'A token name is 1–60 letters, digits, spaces or . _ @ + -, starting with a letter or digit.', 'For example: p2pz tokens create "anna laptop"');
  const live = await callDaemon(paths, { method: 'POST', path: '/v1/tokens', body: { v: PROTOCOL_VERSION, name: name.data, kind } }, TokenCreateResponse);
  const made = live ?? (await (await offlineStore(paths)).issue(name.data, kind));
  io.out(`${made.token}\n`);
  io.err(`Token "${name.data}" created (id ${made.id}). It is shown only this once; \`p2pz tokens revoke ${made.id}\` revokes it.\n`);
  return 0;
}

async function revoke(paths: DaemonPaths, idOrName: string, io: CliIo): Promise<number> {
  const live = await callDaemon(paths, { method: 'DELETE', path: `/v1/tokens/${encodeURIComponent(idOrName)}` }, TokenRevokeResponse);
  let id = live?.id;
  if (id === undefined) {
    const store = await offlineStore(paths);
    id = store.resolve(idOrName);
    await store.revoke(id);
  }
  io.out(`Revoked token ${id}.\n`);
  return 0;
}

export const tokensCommand: CliCommand = {
  name: 'tokens',
  summary: 'list, create and revoke client tokens (paired plugins, people, scripts)',
  usage: USAGE,
  async run(args, io) {
    const { values, positionals } = parseFlags(args, { worker: { type: 'boolean' } }, true);
    const [action, arg, ...extra] = positionals;
    const paths = homePaths(defaultHome(io.env));
    const wrongUse = (): P2pzError => new P2pzError('E_BAD_REQUEST', 'Usage: p2pz tokens list | create NAME | revoke ID|NAME', 'Run `p2pz tokens --help`.');
    if (extra.length > 0) throw wrongUse();
    if (action === 'list' && arg === undefined) return list(paths, io);
    if (action === 'create' && arg !== undefined) return create(paths, arg, values.worker === true ? 'worker' : 'client', io);
    if (values.worker === true) throw wrongUse();
    if (action === 'revoke' && arg !== undefined) return revoke(paths, arg, io);
    throw wrongUse();
  },
};
