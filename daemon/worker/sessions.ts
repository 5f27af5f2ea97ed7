// The worker's onnxruntime sessions: a small LRU keyed by the model file's real path. Every path is
// resolved and checked to lie inside the models directory before onnxruntime sees it (no `..`, no
// symbolic link or extra hard link leading out of it: R19). Sessions are released on eviction.
// onnxruntime's allocation failures become `E_DEVICE_OOM`, and every session is released so that the
// next job starts from an empty device (R18).
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { P2pzError } from '../../shared/protocol/index.js';
import { scrub } from '../log.js';

export const SESSION_DEFAULTS = Object.freeze({
  /** Sessions kept open at once (a diffusion edit uses five: text encoder, UNet, its gradient graph, VAE
   *  encoder and decoder); the least recently used one is released beyond this. */
  maxSessions: 6,
  /** Refuse model files with more than one hard link: another name of the same bytes may lie outside
   *  the models directory, where anyone could have written them. */
  refuseHardLinks: true,
  graphOptimizationLevel: 'all' as const,
  /** onnxruntime's own log: 3 = errors only (warnings about unused initializers are noise). */
  logSeverityLevel: 3 as const,
});

/** The part of an onnxruntime session the pipelines use (a fake in tests). */
export type Session = Pick<InferenceSession, 'run' | 'release' | 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>;

export type SessionFactory = (path: string, options: InferenceSession.SessionOptions) => Promise<Session>;

export interface SessionCacheOptions {
  /** The only directory models are loaded from. */
  readonly modelsDir: string;
  /** From the worker's provider choice (providers.ts). */
  readonly executionProviders: readonly string[];
  readonly maxSessions?: number;
  readonly refuseHardLinks?: boolean;
  /** Injectable for tests; defaults to `InferenceSession.create`. */
  readonly create?: SessionFactory;
}

/** Messages onnxruntime (CPU arena, CUDA allocator, cuBLAS/cuDNN, the C++ runtime) gives when an
 *  allocation fails. */
const OUT_OF_MEMORY_PATTERNS: readonly RegExp[] = [
  /Failed to allocate memory/i,
  /\bbad_alloc\b/,
  /CUDA failure 2\b/,
  /\bout of memory\b/i,
  /Available memory of \d+ is smaller than requested bytes/i,
  /CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation/,
];

export function isOutOfMemoryMessage(message: string): boolean {
  return OUT_OF_MEMORY_PATTERNS.some((re) => re.test(message));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first line of a native message without paths, for a designer-facing detail. */
function nativeDetail(err: unknown): string {
  const line = messageOf(err).split(/\r?\n/)[0] ?? '';
  const text = scrub(line).trim();
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel);
}

const outsideModelsDir = (): P2pzError =>
  new P2pzError(
    'E_MODEL_INVALID',
    'A model file lies outside the models directory.',
    'Keep model files inside the models directory (links that lead out of it are refused), then run `p2pz models verify`.',
  );

/**
 * Resolves `path` (absolute, or relative to `modelsDir`) to the real path of a regular file inside
 * the real models directory. Refuses `..` escapes, symbolic links (of the file or of any folder on
 * the way) that lead out, and, when `refuseHardLinks`, files with more than one hard link.
 */
export async function resolveModelPath(modelsDir: string, path: string, refuseHardLinks: boolean = SESSION_DEFAULTS.refuseHardLinks): Promise<string> {
  const lexicalRoot = resolve(modelsDir);
  const lexical = resolve(lexicalRoot, path);
  if (!isInside(lexicalRoot, lexical)) throw outsideModelsDir();
  let root: string;
  let real: string;
  try {
    root = await realpath(lexicalRoot);
    real = await realpath(lexical);
  } catch {
    throw new P2pzError('E_MODEL_MISSING', 'A file of the model is missing.', 'Reinstall the model with `p2pz models install`.');
  }
  if (!isInside(root, real)) throw outsideModelsDir();
  const info = await stat(real);
  if (!info.isFile()) throw new P2pzError('E_MODEL_INVALID', 'A model file is not a regular file.');
  if (refuseHardLinks && info.nlink > 1) throw outsideModelsDir();
  return real;
}

export class SessionCache {
  readonly #modelsDir: string;
  readonly #providers: readonly string[];
  readonly #max: number;
  readonly #refuseHardLinks: boolean;
  readonly #create: SessionFactory;
  /** Insertion order = recency (oldest first). Promises, so concurrent loads of one model share one session. */
  readonly #sessions = new Map<string, Promise<Session>>();

  constructor(options: SessionCacheOptions) {
    this.#modelsDir = options.modelsDir;
    this.#providers = options.executionProviders;
    this.#max = options.maxSessions ?? SESSION_DEFAULTS.maxSessions;
    this.#refuseHardLinks = options.refuseHardLinks ?? SESSION_DEFAULTS.refuseHardLinks;
    this.#create = options.create ?? ((path, opts) => InferenceSession.create(path, opts));
    if (!Number.isInteger(this.#max) || this.#max < 1) throw new RangeError(`maxSessions must be a positive integer, got ${this.#max}`);
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** The session for a model file (absolute, or relative to the models directory), loading it on first use. */
  async get(path: string): Promise<Session> {
    const key = await resolveModelPath(this.#modelsDir, path, this.#refuseHardLinks);
    const open = this.#sessions.get(key);
    if (open) {
      this.#sessions.delete(key);
      this.#sessions.set(key, open);
      return open;
    }
    const loading = this.#load(key);
    this.#sessions.set(key, loading);
    loading.catch(() => {
      if (this.#sessions.get(key) === loading) this.#sessions.delete(key);
    });
    await this.#evict();
    return loading;
  }

  /** Runs a model, mapping onnxruntime's failures: allocation → `E_DEVICE_OOM` (after releasing every
   *  session), anything else → `E_MODEL_INVALID` with the first line of the native message. */
  async run(path: string, feeds: InferenceSession.FeedsType): Promise<InferenceSession.ReturnType> {
    const session = await this.get(path);
    try {
      return await session.run(feeds);
    } catch (err) {
      throw await this.#mapFailure(err, 'The model failed while running:');
    }
  }

  /** Releases every session (OOM recovery, shutdown). */
  async releaseAll(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(all.map(releaseQuietly));
  }

  async #load(path: string): Promise<Session> {
    try {
      return await this.#create(path, {
        executionProviders: [...this.#providers],
        graphOptimizationLevel: SESSION_DEFAULTS.graphOptimizationLevel,
        logSeverityLevel: SESSION_DEFAULTS.logSeverityLevel,
      });
    } catch (err) {
      throw await this.#mapFailure(err, 'The model could not be loaded:');
    }
  }

  async #mapFailure(err: unknown, what: string): Promise<P2pzError> {
    if (err instanceof P2pzError) return err;
    if (isOutOfMemoryMessage(messageOf(err))) {
      await this.releaseAll();
      return new P2pzError('E_DEVICE_OOM');
    }
    return new P2pzError('E_MODEL_INVALID', `${what} ${nativeDetail(err)}`);
  }

  async #evict(): Promise<void> {
    while (this.#sessions.size > this.#max) {
      const oldest = this.#sessions.keys().next().value;
      if (oldest === undefined) return;
      const session = this.#sessions.get(oldest);
      this.#sessions.delete(oldest);
      if (session) await releaseQuietly(session);
    }
  }
}

async function releaseQuietly(session: Promise<Session>): Promise<void> {
  try {
    await (await session).release();
  } catch {
    // A session that failed to load, or failed to release, holds nothing we can free.
  }
}
