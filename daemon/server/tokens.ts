// Bearer tokens (docs/SECURITY.md §R3, §R4). Two kinds: one CLI token, kept in plain text in `$P2PZ_HOME/token` (0600) so
// that `p2pz token` can print it and `p2pz pair` can use it; and one token per paired client, issued at
// pairing and kept only as a SHA-256 hash in `$P2PZ_HOME/tokens.json` (0600), revocable one by one.
// Verification hashes the presented token and compares it with every stored hash in constant time.
// Client tokens have a name (the pairing's label, or the NAME of `p2pz tokens create NAME`), a creation
// and a last-use time; the owner lists and revokes them (`p2pz tokens`), and with `expireUnusedDays`
// set a token not used for that many days is refused and forgotten. Revocation and expiry are
// announced to listeners (ws.ts closes the token's open event streams).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import { P2pzError, PROTOCOL_VERSION, Version } from '../../shared/protocol/index.js';
import { describeError, silentLogger, type Logger } from '../log.js';

export const TOKEN_DEFAULTS: {
  readonly maxClientTokens: number;
  readonly expireUnusedDays: number | null;
  readonly lastUsedResolutionMs: number;
} = Object.freeze({
  /** Paired clients kept; pairing one more forgets the oldest. */
  maxClientTokens: 32,
  /** A client token unused for this many days is refused and forgotten; null: tokens never expire. */
  expireUnusedDays: null,
  /** Last-use times are written to tokens.json when they moved by more than this (not on every request). */
  lastUsedResolutionMs: 60_000,
});

const DAY_MS = 24 * 60 * 60 * 1000;

/** `p2pz_` + 32 random bytes in base64url. The prefix lets logs and tests recognise a token. */
export const TOKEN_PATTERN = /^p2pz_[A-Za-z0-9_-]{43}$/;
export const CLI_TOKEN_ID = 'cli-token';

const TokenRecord = z.object({
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  label: z.string().max(60),
  /** SHA-256 of the token, hex. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.number(),
  /** Epoch ms of the last request or open event stream with this token; absent until first use. */
  lastUsedAt: z.number().optional(),
  /** `worker`: a GPU worker of a team (docs/TEAM.md), which may use only the `/v1/team/` routes. */
  kind: z.enum(['client', 'worker']).default('client'),
});
type TokenRecord = z.infer<typeof TokenRecord>;
const TokensFile = z.object({ v: Version, tokens: z.array(TokenRecord).max(1000) });

/** Who made a request: the token's id and kind. */
export interface Principal {
  readonly tokenId: string;
  readonly kind: 'cli' | 'client' | 'worker';
  readonly label: string;
}

export interface TokenFiles {
  /** The CLI token file. */
  readonly cliToken: string;
  /** The hashed client tokens. */
  readonly tokens: string;
}

export type TokenStoreOptions = Partial<typeof TOKEN_DEFAULTS> & { log?: Logger; now?: () => number };

/** A client token as `p2pz tokens list` shows it (never the token itself). */
export interface TokenSummary {
  readonly id: string;
  readonly name: string;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  readonly kind: TokenRecord['kind'];
}

function newToken(): string {
  return `p2pz_${randomBytes(32).toString('base64url')}`;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Writes `text` with mode 0600 through a temporary file and a rename (never half a file). */
async function writePrivate(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  await rename(tmp, path);
}

/** Reads the CLI token file (for CLI commands); undefined when absent or malformed. */
export async function readCliToken(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return TOKEN_PATTERN.test(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

export class TokenStore {
  private records: TokenRecord[];
  private readonly cliHash: Buffer;
  private readonly settings: typeof TOKEN_DEFAULTS;
  private readonly now: () => number;
  private writing: Promise<void> = Promise.resolve();
  private readonly revokeListeners = new Set<(tokenId: string) => void>();
  /** Last-use times not yet written (see lastUsedResolutionMs). */
  private readonly lastUsedWritten = new Map<string, number>();
  private readonly log: Logger;

  private constructor(
    private readonly files: TokenFiles,
    private readonly cli: string,
    records: TokenRecord[],
    options: TokenStoreOptions,
  ) {
    const { log, now, ...settings } = options;
    this.log = log ?? silentLogger;
    this.settings = { ...TOKEN_DEFAULTS, ...settings };
    for (const r of records) this.lastUsedWritten.set(r.id, r.lastUsedAt ?? 0);
    this.now = now ?? Date.now;
    this.cliHash = sha256(cli);
    this.records = records;
  }

  /** Loads the client token hashes and the CLI token, creating the CLI token on first run. */
  static async open(files: TokenFiles, options: TokenStoreOptions = {}): Promise<TokenStore> {
    const log = options.log ?? silentLogger;
    let cli = await readCliToken(files.cliToken);
    if (cli === undefined) {
      cli = newToken();
      await writePrivate(files.cliToken, `${cli}\n`);
      log.info('cli-token.created');
    } else {
      await chmod(files.cliToken, 0o600);
    }
    let records: TokenRecord[] = [];
    try {
      const parsed = TokensFile.safeParse(JSON.parse(await readFile(files.tokens, 'utf8')));
      if (parsed.success) records = parsed.data.tokens;
      else log.warn('tokens.unreadable', { detail: 'tokens.json is malformed; paired clients must pair again' });
      await chmod(files.tokens, 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') log.warn('tokens.unreadable', describeError(err));
    }
    return new TokenStore(files, cli, records, options);
  }

  /** The CLI token (for the daemon's own use; never logged or sent to clients). */
  cliToken(): string {
    return this.cli;
  }

  /** The principal holding `token`, or undefined. Every stored hash is compared, in constant time.
   *  A client token's use is recorded; an expired one is refused (and forgotten). */
  verify(token: string | undefined): Principal | undefined {
    if (token === undefined || !TOKEN_PATTERN.test(token)) return undefined;
    const hash = sha256(token);
    let found: Principal | undefined;
    let record: TokenRecord | undefined;
    if (timingSafeEqual(hash, this.cliHash)) found = { tokenId: CLI_TOKEN_ID, kind: 'cli', label: 'cli' };
    for (const r of this.records) {
      if (timingSafeEqual(hash, Buffer.from(r.hash, 'hex')) && found === undefined) {
        found = { tokenId: r.id, kind: r.kind, label: r.label };
        record = r;
      }
    }
    if (record !== undefined) {
      if (this.isExpired(record)) {
        void this.expire().catch((err: unknown) => this.log.warn('tokens.expire-failed', describeError(err)));
        return undefined;
      }
      this.touch(record.id);
    }
    return found;
  }

  /** Records a use of a client token now (a request, or an event stream that is still open). */
  touch(tokenId: string): void {
    const record = this.records.find((r) => r.id === tokenId);
    if (record === undefined) return;
    const now = this.now();
    record.lastUsedAt = now;
    if (now - (this.lastUsedWritten.get(tokenId) ?? 0) >= this.settings.lastUsedResolutionMs) {
      this.lastUsedWritten.set(tokenId, now);
      void this.save().catch((err: unknown) => this.log.warn('tokens.save-failed', describeError(err)));
    }
  }

  private isExpired(r: TokenRecord): boolean {
    const days = this.settings.expireUnusedDays;
    return days !== null && this.now() - (r.lastUsedAt ?? r.createdAt) > days * DAY_MS;
  }

  /** Forgets every client token unused for longer than `expireUnusedDays`; returns their ids. */
  async expire(): Promise<string[]> {
    const expired = this.records.filter((r) => this.isExpired(r));
    if (expired.length === 0) return [];
    const ids = new Set(expired.map((r) => r.id));
    this.records = this.records.filter((r) => !ids.has(r.id));
    await this.save();
    for (const id of ids) {
      this.log.info('token.expired', { tokenId: id });
      this.emitRevoked(id);
    }
    return [...ids];
  }

  /** The expiry policy in days (null: never). */
  expireUnusedDays(): number | null {
    return this.settings.expireUnusedDays;
  }

  /** Issues a client (or team worker) token, returned once and stored hashed. `label` is its name. */
  async issue(label: string, kind: TokenRecord['kind'] = 'client'): Promise<{ id: string; token: string }> {
    const token = newToken();
    const id = randomBytes(12).toString('base64url');
    this.records.push({ id, label: label.slice(0, 60), hash: sha256(token).toString('hex'), createdAt: this.now(), kind });
    const overflow = this.records.length - this.settings.maxClientTokens;
    const forgotten = overflow > 0 ? this.records.splice(0, overflow) : [];
    await this.save();
    for (const r of forgotten) this.emitRevoked(r.id);
    return { id, token };
  }

  /** The id of the client token named by `idOrName`: its id, or a name only one token has.
   *  Throws E_NOT_FOUND for none and E_BAD_REQUEST for a name several tokens share. */
  resolve(idOrName: string): string {
    if (this.records.some((r) => r.id === idOrName)) return idOrName;
    const named = this.records.filter((r) => r.label === idOrName);
    if (named.length === 1 && named[0] !== undefined) return named[0].id;
    if (named.length > 1) {
      throw new P2pzError('E_BAD_REQUEST', `${named.length} tokens are named "${idOrName.slice(0, 60)}".`, 'Revoke one by its id (`p2pz tokens list` shows the ids).');
    }
    throw new P2pzError('E_NOT_FOUND', `No token has the id or name "${idOrName.slice(0, 60)}".`, '`p2pz tokens list` shows the tokens.');
  }

  /** Revokes a client token; false when there is none with this id. */
  async revoke(tokenId: string): Promise<boolean> {
    const before = this.records.length;
    this.records = this.records.filter((r) => r.id !== tokenId);
    if (this.records.length === before) return false;
    await this.save();
    this.emitRevoked(tokenId);
    return true;
  }

  list(): TokenSummary[] {
    return this.records.map(({ id, label, createdAt, lastUsedAt, kind }) => ({ id, name: label, createdAt, lastUsedAt: lastUsedAt ?? null, kind }));
  }

  /** Resolves once every pending write of tokens.json has finished (the daemon awaits it at close). */
  async flush(): Promise<void> {
    await this.writing.catch(() => undefined);
  }

  /** Called with the id of each revoked token (open WebSockets of that token are closed). */
  onRevoke(listener: (tokenId: string) => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }

  private emitRevoked(tokenId: string): void {
    for (const l of this.revokeListeners) l(tokenId);
  }

  private save(): Promise<void> {
    for (const r of this.records) if (r.lastUsedAt !== undefined) this.lastUsedWritten.set(r.id, r.lastUsedAt);
    const text = `${JSON.stringify({ v: PROTOCOL_VERSION, tokens: this.records }, null, 2)}\n`;
    this.writing = this.writing.catch(() => undefined).then(() => writePrivate(this.files.tokens, text));
    return this.writing;
  }
}
