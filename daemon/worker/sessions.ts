// The worker's onnxruntime sessions: a small LRU keyed by the model file's real path. Every path is
// resolved and checked to lie inside the models directory before onnxruntime sees it (no `..`, no
// symbolic link or extra hard link leading out of it: docs/SECURITY.md §R19). The check runs when a session is opened
// (and again whenever it is reopened); while that session stays open, later calls with the same path
// reuse its result, since the session holds what was checked. Sessions are released on eviction.
// onnxruntime's allocation failures become `E_DEVICE_OOM`, and every session is released so that the
// next job starts from an empty device (docs/SECURITY.md §R18). On a GPU provider, a lost device (driver reset, GPU
// removed) becomes `E_DEVICE_LOST` and any other failure while running `E_DEVICE_FAILED`; both release
// every session too, and the worker then restarts itself for a fresh device (worker-main.ts).
// A graph holding onnxruntime's com.microsoft fused nodes (an optimized VAE or text encoder) runs
// through its unfused twin for the dims it is fed (onnx/unfuse/component-twin.ts): get() answers its
// declared metadata without a session, run() opens the twin. When the rewrite refuses a node, the
// original is tried as it is (a provider may have the kernel); if that fails too, the rewrite's
// E_UNSUPPORTED_OP (op, component, hint) is the error, never onnxruntime's text.
import type { Dirent } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve as resolvePath, sep } from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { P2pzError } from '../../shared/protocol/index.js';
import { scrub } from '../log.js';
import { resolveModelPath } from '../models/model-path.js';
import { fusedGraph, unfusedTwin, type FusedGraph } from '../onnx/unfuse/component-twin.js';

export const SESSION_DEFAULTS = Object.freeze({
  /** Sessions kept open at once; the least recently used one is released beyond this. A diffusion edit
   *  uses four (text encoder, VAE encoder and decoder, and the UNet roles model for its working size),
   *  a GAN preview one more. */
  maxSessions: 9,
  graphOptimizationLevel: 'all' as const,
  /** File names of UNet roles models: one open per folder at a time (see get()). */
  rolesModel: /^model\.roles\.[0-9x.b]+\.onnx$/,
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
  readonly executionProviders: readonly InferenceSession.ExecutionProviderConfig[];
  /** Session options the provider needs (providers.ts `providerSetup`). */
  readonly sessionOptions?: Readonly<Pick<InferenceSession.SessionOptions, 'enableMemPattern' | 'executionMode'>>;
  readonly maxSessions?: number;
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

/** Messages of a GPU that is gone: Dawn's device-lost callback text ("WebGPU device lost (2): …"),
 *  Direct3D 12's DXGI_ERROR_DEVICE_REMOVED/HUNG/RESET (0x887A0005/6/7, as DirectML reports them in
 *  HRESULTs), CUDA's unavailable-device, launch-timeout and unknown errors, and the NVIDIA kernel
 *  driver's "fallen off the bus". */
const DEVICE_LOST_PATTERNS: readonly RegExp[] = [
  /\bdevice (?:was |is )?lost\b|DeviceLost/i,
  /DXGI_ERROR_DEVICE_(?:REMOVED|HUNG|RESET)|(?:0x)?887A000[567]/i,
  /cudaErrorDevicesUnavailable|cudaErrorLaunchTimeout|cudaErrorUnknown|CUDA failure (?:6|46|702|999)\b/,
  /fallen off the bus/i,
];

export function isDeviceLostMessage(message: string): boolean {
  return DEVICE_LOST_PATTERNS.some((re) => re.test(message));
}

/** Failures after which the worker restarts itself for a fresh device context. */
export function needsFreshDevice(code: string): boolean {
  return code === 'E_DEVICE_LOST' || code === 'E_DEVICE_FAILED';
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

export class SessionCache {
  readonly #modelsDir: string;
  readonly #providers: readonly InferenceSession.ExecutionProviderConfig[];
  readonly #sessionOptions: SessionCacheOptions['sessionOptions'];
  readonly #max: number;
  readonly #create: SessionFactory;
  /** Insertion order = recency (oldest first). Promises of onnxruntime's own result (failures are mapped
   *  by each caller), so concurrent loads of one model share one session. */
  readonly #sessions = new Map<string, Promise<Session>>();
  /** Checked paths, by the lexical path asked for: the real path, and the session opened after the
   *  check. Valid only while that very session is the one open for the real path. */
  readonly #checked = new Map<string, { readonly real: string; readonly session: Promise<Session> }>();

  constructor(options: SessionCacheOptions) {
    this.#modelsDir = options.modelsDir;
    this.#providers = options.executionProviders;
    this.#sessionOptions = options.sessionOptions;
    this.#max = options.maxSessions ?? SESSION_DEFAULTS.maxSessions;
    this.#create = options.create ?? ((path, opts) => InferenceSession.create(path, opts));
    if (!Number.isInteger(this.#max) || this.#max < 1) throw new RangeError(`maxSessions must be a positive integer, got ${this.#max}`);
  }

  get size(): number {
    return this.#sessions.size;
  }

  get modelsDir(): string {
    return this.#modelsDir;
  }

  /** The real path of a model file inside the models directory (see model-path.ts). */
  resolve(path: string): Promise<string> {
    return resolveModelPath(this.#modelsDir, path);
  }

  /** The session for a model file (absolute, or relative to the models directory), loading it on first
   *  use. For a fused graph: its declared metadata, running through its twins. */
  async get(path: string): Promise<Session> {
    const fused = await this.#fused(path);
    if (fused) return { ...fused.signature, run: (feeds) => this.run(path, feeds), release: async () => {} };
    return this.#open(path);
  }

  /** The fused graph at `path`, or null (also for a model whose session is open: it was not fused
   *  when opened, and a rewritten file gets a new real path check on reopening). */
  async #fused(path: string): Promise<FusedGraph | null> {
    const checked = this.#checked.get(resolvePath(this.#modelsDir, path));
    if (checked && this.#sessions.get(checked.real) === checked.session) return null;
    const real = await this.resolve(path);
    try {
      return await fusedGraph(real);
    } catch {
      return null; // unreadable: opening it reports the problem
    }
  }

  /** Runs a fused graph through its twin for the feeds' dims. */
  async #runFused(path: string, fused: FusedGraph, feeds: InferenceSession.FeedsType): Promise<InferenceSession.ReturnType> {
    const dims: Record<string, readonly number[]> = {};
    for (const name of fused.signature.inputNames) {
      const t = feeds[name];
      if (t) dims[name] = t.dims;
    }
    let twin: string;
    try {
      twin = await unfusedTwin(fused, dims);
    } catch (refused) {
      if (!(refused instanceof P2pzError) || refused.code !== 'E_UNSUPPORTED_OP') throw refused;
      try {
        const session = await this.#open(path);
        return await session.run(feeds);
      } catch (err) {
        if (err instanceof P2pzError && (err.code === 'E_DEVICE_OOM' || needsFreshDevice(err.code))) throw err;
        if (err instanceof P2pzError) throw refused;
        const mapped = await this.#mapFailure(err, '', 'run');
        throw mapped.code === 'E_MODEL_INVALID' ? refused : mapped;
      }
    }
    const session = await this.#open(twin);
    try {
      return await session.run(feeds);
    } catch (err) {
      throw await this.#mapFailure(err, 'The model failed while running:', 'run');
    }
  }

  async #open(path: string): Promise<Session> {
    const lexical = resolvePath(this.#modelsDir, path);
    const checked = this.#checked.get(lexical);
    const key = checked && this.#sessions.get(checked.real) === checked.session ? checked.real : await this.resolve(path);
    let entry = this.#sessions.get(key);
    if (entry) {
      this.#sessions.delete(key); // re-inserted below as the most recent
    } else {
      // Make room first, so the evicted session's memory is free for the new one. Both happen inside
      // the cached promise: a concurrent get() of the same model finds it and waits for it.
      // A UNet's roles model for one working size replaces the one for another size: each holds a
      // full copy of the weights (onnx/roles-model.ts), and an edit runs at one size.
      const evicted = [...this.#takeRolesSiblings(key), ...this.#takeOldest(this.#max - 1)];
      const options: InferenceSession.SessionOptions = {
        executionProviders: [...this.#providers],
        ...this.#sessionOptions,
        graphOptimizationLevel: SESSION_DEFAULTS.graphOptimizationLevel,
        logSeverityLevel: SESSION_DEFAULTS.logSeverityLevel,
      };
      entry = Promise.all(evicted.map(releaseQuietly)).then(() => this.#create(key, options));
    }
    this.#sessions.set(key, entry);
    this.#checked.set(lexical, { real: key, session: entry });
    const loading = entry;
    try {
      return await loading;
    } catch (err) {
      if (this.#sessions.get(key) === loading) this.#sessions.delete(key);
      if (this.#checked.get(lexical)?.session === loading) this.#checked.delete(lexical);
      throw await this.#mapFailure(err, 'The model could not be loaded:', 'load');
    }
  }

  /** Runs a model, mapping onnxruntime's failures: allocation → `E_DEVICE_OOM` (after releasing every
   *  session), anything else → `E_MODEL_INVALID` with the first line of the native message. */
  async run(path: string, feeds: InferenceSession.FeedsType): Promise<InferenceSession.ReturnType> {
    const fused = await this.#fused(path);
    if (fused) return this.#runFused(path, fused, feeds);
    const session = await this.#open(path);
    try {
      return await session.run(feeds);
    } catch (err) {
      throw await this.#mapFailure(err, 'The model failed while running:', 'run');
    }
  }

  /**
   * Bytes the open (or opening) sessions hold for model files under `dir` (absolute, or relative to
   * the models directory), estimated from the files onnxruntime loaded for them: each session's graph
   * file plus the external weights beside it (files in the same folder that are neither graphs nor
   * metadata: `*.onnx_data`, `weights.pb`, …). Derived graphs reference their original's weights, so
   * each UNet session counts them once, as the memory estimate does. 0 when `dir` does not exist.
   */
  async heldBytes(dir: string): Promise<number> {
    let root: string;
    try {
      root = await realpath(resolvePath(this.#modelsDir, dir));
    } catch {
      return 0;
    }
    const beside = new Map<string, Promise<number>>();
    let total = 0;
    for (const key of [...this.#sessions.keys()]) {
      if (!isInsideDir(root, key)) continue;
      const folder = dirname(key);
      let weights = beside.get(folder);
      if (!weights) {
        weights = externalWeightsBytes(folder);
        beside.set(folder, weights);
      }
      total += (await fileSize(key)) + (await weights);
    }
    return total;
  }

  /** Releases every session (OOM recovery, shutdown). */
  async releaseAll(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    this.#checked.clear();
    await Promise.all(all.map(releaseQuietly));
  }

  /** Whether the sessions run on a GPU provider (the CPU provider is only the fallback for its ops). */
  get onGpu(): boolean {
    const first = this.#providers[0];
    return first !== undefined && (typeof first === 'string' ? first : first.name) !== 'cpu';
  }

  async #mapFailure(err: unknown, what: string, phase: 'load' | 'run'): Promise<P2pzError> {
    if (err instanceof P2pzError) return err;
    const message = messageOf(err);
    if (isOutOfMemoryMessage(message)) {
      await this.releaseAll();
      return new P2pzError('E_DEVICE_OOM');
    }
    if (this.onGpu && isDeviceLostMessage(message)) {
      await this.releaseAll();
      return new P2pzError('E_DEVICE_LOST', nativeDetail(err));
    }
    if (this.onGpu && phase === 'run') {
      await this.releaseAll();
      return new P2pzError('E_DEVICE_FAILED', nativeDetail(err));
    }
    return new P2pzError('E_MODEL_INVALID', `${what} ${nativeDetail(err)}`);
  }

  /** Removes the open roles models (`model.roles.*.onnx`) of `path`'s folder other than `path`
   *  itself; the caller releases them. */
  #takeRolesSiblings(path: string): Promise<Session>[] {
    if (!SESSION_DEFAULTS.rolesModel.test(basename(path))) return [];
    const taken: Promise<Session>[] = [];
    for (const [key, session] of [...this.#sessions]) {
      if (key === path || dirname(key) !== dirname(path) || !SESSION_DEFAULTS.rolesModel.test(basename(key))) continue;
      this.#sessions.delete(key);
      for (const [lexical, c] of this.#checked) if (c.real === key) this.#checked.delete(lexical);
      taken.push(session);
    }
    return taken;
  }

  /** Removes the least recently used sessions until at most `keep` remain; the caller releases them. */
  #takeOldest(keep: number): Promise<Session>[] {
    const taken: Promise<Session>[] = [];
    for (const [key, session] of this.#sessions) {
      if (this.#sessions.size <= keep) break;
      this.#sessions.delete(key);
      for (const [lexical, c] of this.#checked) if (c.real === key) this.#checked.delete(lexical);
      taken.push(session);
    }
    return taken;
  }
}

const NOT_WEIGHTS = /\.(?:onnx|json|txt)$/i;

function isInsideDir(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Sizes of the files in `folder` that hold external weights (see heldBytes). */
async function externalWeightsBytes(folder: string): Promise<number> {
  let entries: Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch {
    return 0;
  }
  const sizes = await Promise.all(entries.filter((e) => e.isFile() && !NOT_WEIGHTS.test(e.name)).map((e) => fileSize(join(folder, e.name))));
  return sizes.reduce((a, b) => a + b, 0);
}

async function releaseQuietly(session: Promise<Session>): Promise<void> {
  try {
    await (await session).release();
  } catch {
    // A session that failed to load, or failed to release, holds nothing we can free.
  }
}
