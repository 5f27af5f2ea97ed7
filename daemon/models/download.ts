// Downloads one file of a model, resumably and verified. Bytes go to `<file>.part`; a later attempt
// (after a dropped connection, a stall, or a new run of the command) asks for the rest with
// `Range: bytes=<have>-` and appends. The content hash is computed while the bytes arrive (and over
// the bytes already on disk when a run resumes), and the file gets its final name only once its size
// and hash match the hub's listing. A mismatch throws the bytes away and fetches the file once more;
// a second mismatch is an error. A response that delivers nothing for `stallTimeoutMs` is aborted.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, stat, truncate, unlink } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { P2pzError } from '../../shared/protocol/index.js';
import { MODELS_DEFAULTS } from './defaults.js';
import type { RemoteFile } from './hub-schema.js';

export interface DownloadOptions {
  /** GET with redirects (HubClient.get). */
  readonly get: (url: string, headers: Record<string, string>, signal: AbortSignal) => Promise<Response>;
  /** Failed attempts in a row (without a byte of progress in between) before giving up. */
  readonly attempts?: number;
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  readonly stallTimeoutMs?: number;
  /** Bytes of this file newly counted (negative when bytes on disk are thrown away). */
  readonly onBytes?: (delta: number) => void;
  /** Bytes found on disk and kept (a resumed or already complete file); default `onBytes`. */
  readonly onResumed?: (bytes: number) => void;
  /** A line for the log or terminal: retries, resumes, re-fetches. */
  readonly onNotice?: (text: string) => void;
  readonly signal?: AbortSignal;
}

export interface DownloadReport {
  /** Bytes found on disk and kept when the download started (resume). */
  readonly resumedFrom: number;
  /** Requests made (0 when the file was already complete). */
  readonly requests: number;
  /** True when a complete file failed its hash and was fetched again. */
  readonly refetched: boolean;
}

/** The hash a file is checked with: SHA-256 of the content, else its git blob id (SHA-1 of
 *  "blob {size}\0" + content). */
export function contentHasher(file: Pick<RemoteFile, 'size' | 'sha256' | 'gitOid'>): { hash: Hash; expected: string } {
  if (file.sha256 !== undefined) return { hash: createHash('sha256'), expected: file.sha256 };
  if (file.gitOid !== undefined) return { hash: createHash('sha1').update(`blob ${file.size}\0`), expected: file.gitOid };
  throw new P2pzError('E_DOWNLOAD_FAILED', 'A file has no hash to check it against.');
}

/** Hashes the first `length` bytes of `path` into `hash`. */
async function hashPrefix(path: string, length: number, hash: Hash): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1 })) hash.update(chunk as Buffer);
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/** True when `path` holds exactly the listed content. */
export async function fileMatches(path: string, file: Pick<RemoteFile, 'size' | 'sha256' | 'gitOid'>): Promise<boolean> {
  if ((await sizeOf(path)) !== file.size) return false;
  const { hash, expected } = contentHasher(file);
  await hashPrefix(path, file.size, hash);
  return hash.digest('hex') === expected;
}

/** Failures worth another attempt (network, stall, server trouble). */
class Retryable extends Error {
  constructor(
    message: string,
    readonly stalled = false,
  ) {
    super(message);
  }
}

/** `bytes start-end/total` → start and total (total may be `*`). */
function contentRangeStart(header: string | null): { start: number; total: number | undefined } | undefined {
  const m = header ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(header.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

/**
 * Downloads `file` from `url` to `path` (through `path.part`). Resolves once `path` holds the
 * verified content; rejects with `E_TIMEOUT` (stalled on every attempt), `E_DOWNLOAD_FAILED`
 * (network, refusals) or `E_MODEL_INVALID` (content differs from the listing twice).
 */
export async function downloadFile(url: string, path: string, file: RemoteFile, options: DownloadOptions): Promise<DownloadReport> {
  const attempts = options.attempts ?? MODELS_DEFAULTS.attempts;
  const stallMs = options.stallTimeoutMs ?? MODELS_DEFAULTS.stallTimeoutMs;
  const onBytes = options.onBytes ?? (() => undefined);
  const onResumed = options.onResumed ?? onBytes;
  const notice = options.onNotice ?? (() => undefined);
  const part = `${path}.part`;

  if (await fileMatches(path, file)) {
    onResumed(file.size);
    return { resumedFrom: file.size, requests: 0, refetched: false };
  }
  await unlink(path).catch(() => undefined);

  // What has been hashed and counted so far; reused across attempts while the .part file agrees.
  let hasher = contentHasher(file);
  let hashed = 0;
  let counted = 0;
  const reset = async (): Promise<void> => {
    await truncate(part, 0).catch(() => undefined);
    hasher = contentHasher(file);
    hashed = 0;
    onBytes(-counted);
    counted = 0;
  };

  let requests = 0;
  let refetched = false;
  let failures = 0;
  await (await open(part, 'a')).close();
  const initial = (await sizeOf(part)) ?? 0;
  let resumedFrom = initial > file.size ? 0 : initial;
  if (initial > file.size) await truncate(part, 0);

  for (;;) {
    if (options.signal?.aborted) throw cancelled();
    const have = (await sizeOf(part)) ?? 0;
    if (have !== hashed || have > file.size) {
      hasher = contentHasher(file);
      hashed = 0;
      if (have > file.size) await truncate(part, 0);
      else {
        await hashPrefix(part, have, hasher.hash);
        hashed = have;
      }
      if (hashed >= counted) onResumed(hashed - counted);
      else onBytes(hashed - counted);
      counted = hashed;
    }
    const attemptStart = hashed;
    try {
      if (hashed < file.size) {
        requests++;
        if (hashed > 0) notice(`resuming at ${hashed} bytes`);
        await fetchRest();
      }
      if (hasher.hash.digest('hex') === hasher.expected) {
        await rename(part, path);
        return { resumedFrom, requests, refetched };
      }
      // Complete but wrong: throw the bytes away and fetch the whole file once more.
      await reset();
      resumedFrom = 0;
      if (refetched) {
        throw new P2pzError('E_MODEL_INVALID', `${file.path} does not match the hub's checksum, even after downloading it again.`, 'Run the command again later; if it keeps failing, the hub or a proxy is serving damaged files.');
      }
      refetched = true;
      notice('checksum mismatch: downloading the file again');
    } catch (err) {
      if (err instanceof P2pzError) throw err;
      if (options.signal?.aborted) throw cancelled();
      // An attempt that brought bytes starts the count afresh: only failures in a row give up.
      if (hashed > attemptStart) failures = 0;
      failures++;
      const stalled = err instanceof Retryable && err.stalled;
      if (failures >= attempts) {
        if (stalled) {
          throw new P2pzError('E_TIMEOUT', `The download of ${file.path} stalled: no data for ${stallMs < 10_000 ? (stallMs / 1000).toFixed(1) : Math.round(stallMs / 1000)} s, ${failures} times.`, 'Check the network connection and run the same command again: it resumes where it stopped.');
        }
        throw new P2pzError('E_DOWNLOAD_FAILED', `${file.path}: ${reasonOf(err)} (${failures} attempts).`);
      }
      const wait = Math.min(options.retryMaxMs ?? MODELS_DEFAULTS.retryMaxMs, (options.retryBaseMs ?? MODELS_DEFAULTS.retryBaseMs) * 2 ** (failures - 1));
      notice(`${reasonOf(err)}; retrying in ${Math.round(wait / 100) / 10} s`);
      await delay(wait, undefined, options.signal ? { signal: options.signal } : undefined).catch(() => undefined);
    }
  }

  /** One request for the bytes from `hashed` on, appended to the .part file. */
  async function fetchRest(): Promise<void> {
    const controller = new AbortController();
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, stallMs);
    };
    const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    const from = hashed;
    const handle = await open(part, 'a');
    try {
      arm();
      let response: Response;
      try {
        response = await options.get(url, from > 0 ? { range: `bytes=${from}-` } : {}, signal);
      } catch (err) {
        if (err instanceof P2pzError) throw err;
        throw new Retryable(stalled ? 'no answer' : 'connection failed', stalled);
      }
      const status = response.status;
      if (status === 416 || (status !== 200 && status !== 206)) await response.body?.cancel().catch(() => undefined);
      if (status === 401 || status === 403) throw new P2pzError('E_DOWNLOAD_FAILED', `The hub refused ${file.path} (HTTP ${status}).`, 'If the model is gated, accept its licence on huggingface.co and set HF_TOKEN, then run the command again.');
      if (status === 404) throw new P2pzError('E_MODEL_MISSING', `The hub has no file ${file.path} at this revision.`);
      if (status === 416) {
        await reset();
        throw new Retryable('the hub refused to resume');
      }
      if (status !== 200 && status !== 206) throw new Retryable(`HTTP ${status}`);
      if (status === 206) {
        const range = contentRangeStart(response.headers.get('content-range'));
        if (!range || range.start !== from || (range.total !== undefined && range.total !== file.size)) {
          await response.body?.cancel().catch(() => undefined);
          await reset();
          throw new Retryable('the hub sent another part of the file');
        }
      } else if (from > 0) {
        // The server ignored the Range header: start over with its full answer.
        await handle.truncate(0);
        hasher = contentHasher(file);
        hashed = 0;
        onBytes(-counted);
        counted = 0;
      }
      if (!response.body) throw new Retryable('empty answer');
      const reader = response.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          arm();
          if (hashed + value.byteLength > file.size) {
            await reader.cancel().catch(() => undefined);
            await reset();
            throw new Retryable('the hub sent more bytes than listed');
          }
          await handle.write(value);
          hasher.hash.update(value);
          hashed += value.byteLength;
          counted += value.byteLength;
          onBytes(value.byteLength);
        }
      } catch (err) {
        if (err instanceof Retryable || err instanceof P2pzError) throw err;
        throw new Retryable(stalled ? 'stalled' : 'connection dropped', stalled);
      }
      if (hashed < file.size) throw new Retryable('connection closed early');
    } finally {
      clearTimeout(timer);
      await handle.close();
    }
  }
}

function reasonOf(err: unknown): string {
  return err instanceof Retryable ? err.message : 'network error';
}

function cancelled(): P2pzError {
  return new P2pzError('E_DOWNLOAD_FAILED', 'The download was cancelled.', 'Run the same command again: it resumes where it stopped.');
}
