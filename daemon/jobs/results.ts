// Files kept for a while under server-generated ids: uploaded images ($HOME/uploads) and job results
// ($HOME/results), one instance per folder. The index (id → metadata) lives in memory, so a file name
// on disk is only ever built from an id this process generated and still holds: a client-supplied id
// is checked for shape and looked up in the index before any file access (docs/SECURITY.md R20).
// Files expire and their total size is capped, oldest first (docs/SECURITY.md §R13). The index does not outlive the
// process: files of this kind that it does not hold (left by an earlier run) are removed by `open` and
// by every sweep once they are as old as an expired file. Younger ones are left alone, since they may
// belong to another daemon still running on the same folder.
import type { ReadStream } from 'node:fs';
import { chmod, mkdir, open as openFile, readFile, readdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { describeError, silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { isServerId, newId } from './ids.js';

export const RESULT_STORE_DEFAULTS = Object.freeze({
  /** A file is forgotten and deleted this long after it was stored (1 hour). */
  maxAgeMs: 3600_000,
  /** Total bytes of all files; storing beyond it deletes the oldest files first (1 GiB). */
  maxTotalBytes: 1024 ** 3,
  /** How often the background timer sweeps expired files (unref'd: it never keeps the process up);
   *  0 turns the timer off. Expired files are refused by `get` whether or not a sweep has run. */
  sweepIntervalMs: 60_000,
});
/** The settings above, each a number of its own. */
export type ResultStoreSettings = { readonly [K in keyof typeof RESULT_STORE_DEFAULTS]: number };
export type ResultStoreOptions = Partial<ResultStoreSettings> & {
  /** Clock in epoch milliseconds. */
  now?: () => number;
  /** Where a failed background sweep is reported. */
  log?: Logger;
};

const EXTENSIONS = { 'image/png': '.png', 'image/jpeg': '.jpg', 'image/webp': '.webp' } as const;
export type StoredMime = keyof typeof EXTENSIONS;

/** Names this store writes: `<id>.<ext>`. Only these are ever deleted from the folder. */
const OWN_FILE = /^([A-Za-z0-9_-]{22})\.(?:png|jpg|webp)$/;

export interface StoredMeta {
  readonly mime: StoredMime;
  readonly width: number;
  readonly height: number;
  readonly role?: 'image' | 'mask';
}

export interface StoredFile extends StoredMeta {
  readonly id: string;
  /** Bytes on disk. */
  readonly size: number;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly expiresAt: number;
}

/** A file kept for a queued job: neither expiry nor the size cap removes it until released. */
export interface HeldFile {
  readonly meta: StoredFile;
  /** The bytes, read now; E_NOT_FOUND when the file is gone or changed on disk. */
  read(): Promise<Uint8Array>;
  /** Lets expiry and the cap have the file again. Idempotent. */
  release(): void;
}

export class ResultStore {
  /** Insertion order is creation order: the first entry is the oldest. */
  private readonly index = new Map<string, StoredFile>();
  /** id → number of holders (queued jobs that will read the file when they start). */
  private readonly holds = new Map<string, number>();
  private totalBytes = 0;
  private readonly settings: ResultStoreSettings;
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly dir: string,
    options: ResultStoreOptions,
  ) {
    const { now, log, ...settings } = options;
    this.settings = { ...RESULT_STORE_DEFAULTS, ...settings };
    this.now = now ?? (() => Date.now());
    this.log = log ?? silentLogger;
  }

  /** Creates `dir` (mode 0700), removes expired files a previous run left there, starts the sweep timer. */
  static async open(dir: string, options: ResultStoreOptions = {}): Promise<ResultStore> {
    const store = new ResultStore(dir, options);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing folder's mode alone.
    await chmod(dir, 0o700);
    await store.removeOrphans();
    const interval = store.settings.sweepIntervalMs;
    if (interval > 0) {
      const sweep = (): void => {
        store.sweep().catch((error: unknown) => store.log.warn('store.sweep-failed', describeError(error)));
      };
      store.timer = setInterval(sweep, interval);
      store.timer.unref();
    }
    return store;
  }

  /** Stores `bytes` under a fresh id (file mode 0600). Throws E_PAYLOAD_TOO_LARGE when the file alone
   *  exceeds the total cap; otherwise deletes the oldest files until the total fits. */
  async put(bytes: Uint8Array, meta: StoredMeta): Promise<StoredFile> {
    if (bytes.byteLength > this.settings.maxTotalBytes) throw new P2pzError('E_PAYLOAD_TOO_LARGE');
    const id = newId();
    // 'wx': never overwrite, even on an id collision.
    await writeFile(this.pathOf(id, meta.mime), bytes, { mode: 0o600, flag: 'wx' });
    const createdAt = this.now();
    const file: StoredFile = {
      id,
      mime: meta.mime,
      width: meta.width,
      height: meta.height,
      ...(meta.role === undefined ? {} : { role: meta.role }),
      size: bytes.byteLength,
      createdAt,
      expiresAt: createdAt + this.settings.maxAgeMs,
    };
    this.index.set(id, file);
    this.totalBytes += file.size;
    await this.evictOverCap();
    return file;
  }

  /** The metadata of a stored, unexpired file; undefined for an id of the wrong shape (no file
   *  access at all) or an unknown or expired id (an expired file nobody holds is removed). */
  private async live(id: string): Promise<StoredFile | undefined> {
    if (!isServerId(id)) return undefined;
    const meta = this.index.get(id);
    if (meta === undefined) return undefined;
    if (this.isExpired(meta)) {
      if (!this.holds.has(id)) await this.remove(meta);
      return undefined;
    }
    return meta;
  }

  /** The file and its metadata; undefined for an id of the wrong shape (no file access at all), an
   *  unknown or expired id, or a file that is gone or changed on disk. */
  async get(id: string): Promise<{ bytes: Uint8Array; meta: StoredFile } | undefined> {
    const meta = await this.live(id);
    if (meta === undefined) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = await readFile(this.pathOf(id, meta.mime));
    } catch {
      this.forget(meta);
      return undefined;
    }
    if (bytes.byteLength !== meta.size) {
      await this.remove(meta);
      return undefined;
    }
    return { bytes, meta };
  }

  /**
   * Holds a stored file for later reading without reading it now (a queued job keeps this instead of
   * the bytes: docs/SECURITY.md §Memory bound). Undefined like `get` for an unknown or expired id.
   */
  hold(id: string): HeldFile | undefined {
    if (!isServerId(id)) return undefined;
    const meta = this.index.get(id);
    if (meta === undefined || this.isExpired(meta)) return undefined;
    this.holds.set(id, (this.holds.get(id) ?? 0) + 1);
    let held = true;
    return {
      meta,
      read: async () => {
        let bytes: Uint8Array;
        try {
          bytes = await readFile(this.pathOf(id, meta.mime));
        } catch {
          throw new P2pzError('E_NOT_FOUND', 'The uploaded image is gone.', 'Upload the image again, then submit the job.');
        }
        if (bytes.byteLength !== meta.size) throw new P2pzError('E_NOT_FOUND', 'The uploaded image changed on disk.', 'Upload the image again, then submit the job.');
        return bytes;
      },
      release: () => {
        if (!held) return;
        held = false;
        const left = (this.holds.get(id) ?? 1) - 1;
        if (left > 0) this.holds.set(id, left);
        else this.holds.delete(id);
      },
    };
  }

  /** The file as a stream from disk (never read whole into memory) and its metadata; undefined as
   *  for `get`. The stream is opened before this returns, so a later delete cannot break it. */
  async stream(id: string): Promise<{ stream: ReadStream; meta: StoredFile } | undefined> {
    const meta = await this.live(id);
    if (meta === undefined) return undefined;
    let handle;
    try {
      handle = await openFile(this.pathOf(id, meta.mime), 'r');
    } catch {
      this.forget(meta);
      return undefined;
    }
    const size = (await handle.stat()).size;
    if (size !== meta.size) {
      await handle.close();
      await this.remove(meta);
      return undefined;
    }
    return { stream: handle.createReadStream(), meta };
  }

  /** Deletes one file; unknown ids are ignored. */
  async delete(id: string): Promise<void> {
    if (!isServerId(id)) return;
    const meta = this.index.get(id);
    if (meta !== undefined) await this.remove(meta);
  }

  /** Deletes expired files, then the oldest files while the total exceeds the cap, then expired
   *  files the index does not hold. */
  async sweep(): Promise<void> {
    const expired = [...this.index.values()].filter((meta) => this.isExpired(meta) && !this.holds.has(meta.id));
    await Promise.all(expired.map((meta) => this.remove(meta)));
    await this.evictOverCap();
    await this.removeOrphans();
  }

  /** Number of files and their total bytes. */
  usage(): { files: number; bytes: number } {
    return { files: this.index.size, bytes: this.totalBytes };
  }

  /** Stops the sweep timer; the files stay until they expire or the next `open`. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Deletes files named like this store's that the index does not hold, once modified at least
   *  maxAgeMs ago. */
  private async removeOrphans(): Promise<void> {
    const cutoff = this.now() - this.settings.maxAgeMs;
    const entries = await readdir(this.dir, { withFileTypes: true });
    const orphans = entries.filter((entry) => {
      const id = OWN_FILE.exec(entry.name)?.[1];
      return entry.isFile() && id !== undefined && !this.index.has(id);
    });
    await Promise.all(
      orphans.map(async (entry) => {
        const path = join(this.dir, entry.name);
        const modified = await stat(path).then((s) => s.mtimeMs, () => undefined);
        if (modified !== undefined && modified <= cutoff) await unlinkIfPresent(path);
      }),
    );
  }

  private async evictOverCap(): Promise<void> {
    const victims: StoredFile[] = [];
    for (const meta of this.index.values()) {
      if (this.totalBytes <= this.settings.maxTotalBytes) break;
      // A held file waits for its job; the cap is met again once it is released.
      if (this.holds.has(meta.id)) continue;
      victims.push(meta);
      this.forget(meta);
    }
    await Promise.all(victims.map((meta) => unlinkIfPresent(this.pathOf(meta.id, meta.mime))));
  }

  private isExpired(meta: StoredFile): boolean {
    return this.now() >= meta.expiresAt;
  }

  /** Drops `meta` from the index first (so no reader finds it any more), then deletes its file. */
  private async remove(meta: StoredFile): Promise<void> {
    this.forget(meta);
    await unlinkIfPresent(this.pathOf(meta.id, meta.mime));
  }

  private forget(meta: StoredFile): void {
    if (this.index.delete(meta.id)) this.totalBytes -= meta.size;
  }

  private pathOf(id: string, mime: StoredMime): string {
    return join(this.dir, id + EXTENSIONS[mime]);
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
