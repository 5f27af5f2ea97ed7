// Installs a Stable Diffusion 1.x ONNX model, or an image-to-text captioner (under `captioner/`,
// docs/CAPTIONER.md), into the models directory, from the hub or from a local folder. Every file goes to a staging folder inside the models directory first
// (`.downloads/<name>@<commit>`, kept between runs so that downloads resume); only when every file
// has its listed size and hash, the derived graphs are prepared and the install record is written is
// the staging folder renamed to `<models>/<name>` in one step. A half-finished install is therefore
// never at a place the daemon looks.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { P2pzError } from '../../shared/protocol/index.js';
import { preparePipelineGraphs } from '../onnx/prepare.js';
import { GanMeta, normalizeConcept, GAN_FOLDER_DEFAULTS } from './gan-meta.js';
import { commitFolder, emptyTrash } from './commit.js';
import { checkModelName } from './containment.js';
import { MODELS_DEFAULTS } from './defaults.js';
import { downloadFile, type DownloadOptions } from './download.js';
import type { HubClient } from './hub-client.js';
import type { RemoteFile } from './hub-schema.js';
import { formatBytes } from './progress.js';
import { CAPTIONER_FOLDER, GAN_FOLDER } from './registry.js';
import { looksLikeCaptioner, selectCaptionerFiles } from './captioner-files.js';
import { lockStaging } from './staging-lock.js';
import { readInstallManifest, writeInstallManifest, type InstalledFile, type InstallManifest, type InstallSource } from './install-manifest.js';

export interface InstallEvents {
  /** The files to fetch and their total size. */
  readonly start?: (files: ReadonlyArray<{ readonly path: string; readonly size: number }>, totalBytes: number) => void;
  readonly file?: (path: string) => void;
  readonly bytes?: (delta: number) => void;
  readonly resumed?: (bytes: number) => void;
  readonly notice?: (text: string) => void;
  readonly phase?: (phase: 'download' | 'prepare' | 'commit') => void;
}

export interface InstallCommon {
  readonly modelsDir: string;
  /** Folder name; default derived from the source. */
  readonly name?: string;
  /** Working size (pixels per side) whose derived graphs are prepared; 0 skips the step. */
  readonly prepareSize?: number;
  /** Replace an install of the same name even when it is current. */
  readonly force?: boolean;
  readonly events?: InstallEvents;
  readonly signal?: AbortSignal;
  /** Install as a captioner (under `captioner/`) whatever the files look like; by default a source
   *  with a config.json and no model_index.json is taken for one (captioner-files.ts). */
  readonly captioner?: boolean;
}

export type InstallKind = InstallManifest['kind'];

export interface HubInstallOptions extends InstallCommon {
  readonly client: HubClient;
  readonly repo?: string;
  readonly revision?: string;
  /** Free disk bytes where the model is staged (injectable for tests); default statfs. */
  readonly freeDiskBytes?: (path: string) => Promise<number>;
  /** Download limits (attempts, backoff, stall timeout). */
  readonly download?: Pick<DownloadOptions, 'attempts' | 'retryBaseMs' | 'retryMaxMs' | 'stallTimeoutMs'>;
}

export interface InstallResult {
  readonly name: string;
  /** Absolute path of the installed folder. */
  readonly dir: string;
  readonly manifest: InstallManifest;
  /** True when the same source was installed already and nothing was done. */
  readonly upToDate: boolean;
}

/** Keeps what the pipeline needs: top-level `model_index.json` and the component folders. */
export function selectModelFiles<T extends { readonly path: string }>(files: readonly T[]): T[] {
  return files.filter((f) => {
    const slash = f.path.indexOf('/');
    if (slash < 0) return MODELS_DEFAULTS.topLevelFiles.includes(f.path);
    return MODELS_DEFAULTS.components.includes(f.path.slice(0, slash));
  });
}

function checkComplete(paths: readonly string[], where: string): void {
  const missing = MODELS_DEFAULTS.requiredFiles.filter((p) => !paths.includes(p));
  if (missing.length > 0) {
    throw new P2pzError(
      'E_MODEL_INVALID',
      `${where} is not a Stable Diffusion ONNX export in the diffusers layout: it lacks ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? '…' : ''}.`,
      'Install an ONNX export (for example CompVis/stable-diffusion-v1-4 --revision onnx, or onnx-community/stable-diffusion-v1-5-ONNX).',
    );
  }
}

/** The default folder name for a hub repository: the default model's name, else the repository's
 *  own name. */
export function defaultModelName(repo: string): string {
  if (repo === MODELS_DEFAULTS.repo) return MODELS_DEFAULTS.name;
  const base = repo.split('/').pop() ?? repo;
  return checkModelName(base.replace(/^[^A-Za-z0-9]+/, '').slice(0, 100));
}

/** Installs a model from the hub: resolve the revision, download and verify, prepare, commit. */
export async function installFromHub(options: HubInstallOptions): Promise<InstallResult> {
  const repo = options.repo ?? MODELS_DEFAULTS.repo;
  // The default repository's ONNX export lives on its `onnx` branch; other exports on `main`.
  const revision = options.revision ?? (repo === MODELS_DEFAULTS.repo ? MODELS_DEFAULTS.revision : 'main');
  const folderName = checkModelName(options.name ?? defaultModelName(repo));
  const events = options.events ?? {};
  const snapshot = await options.client.snapshot(repo, revision, options.signal);
  const source: InstallSource = { kind: 'hub', hubUrl: options.client.baseUrl, repo, revision, commit: snapshot.commit };
  const kind: InstallKind = options.captioner === true || looksLikeCaptioner(snapshot.files.map((f) => f.path)) ? 'captioner' : 'diffusion';
  const name = kind === 'captioner' ? `${CAPTIONER_FOLDER}/${folderName}` : folderName;

  const existing = await readInstallManifest(options.modelsDir, name);
  if (!options.force && existing?.source.kind === 'hub' && existing.source.repo === repo && existing.source.commit === snapshot.commit) {
    return { name, dir: join(options.modelsDir, name), manifest: existing, upToDate: true };
  }

  const where = `${repo} at “${revision}”`;
  let files: RemoteFile[];
  if (kind === 'captioner') {
    files = selectCaptionerFiles(snapshot.files, where);
  } else {
    files = selectModelFiles(snapshot.files);
    checkComplete(files.map((f) => f.path), where);
  }
  const staging = join(options.modelsDir, MODELS_DEFAULTS.stagingFolder, `${name.replace('/', '_')}@${snapshot.commit.slice(0, 12)}`);
  await mkdir(staging, { recursive: true });
  const unlock = await lockStaging(staging);
  try {
    await checkDiskSpace(staging, files, options.freeDiskBytes ?? freeDiskBytes);
    events.phase?.('download');
    events.start?.(files, files.reduce((s, f) => s + f.size, 0));
    await downloadAll(options, repo, snapshot.commit, staging, files);
    const installed: InstalledFile[] = files.map((f) => ({ path: f.path, size: f.size, ...(f.sha256 ? { sha256: f.sha256 } : { gitOid: f.gitOid }) }));
    return await finishInstall(options, name, staging, source, installed, kind);
  } finally {
    await unlock();
  }
}

async function downloadAll(options: HubInstallOptions, repo: string, commit: string, staging: string, files: readonly RemoteFile[]): Promise<void> {
  const events = options.events ?? {};
  for (const file of files) {
    events.file?.(file.path);
    const dest = join(staging, ...file.path.split('/'));
    await mkdir(dirname(dest), { recursive: true });
    await downloadFile(options.client.fileUrl(repo, commit, file.path), dest, file, {
      ...options.download,
      get: (url, headers, signal) => options.client.get(url, headers, signal),
      ...(events.bytes ? { onBytes: events.bytes } : {}),
      ...(events.resumed ? { onResumed: events.resumed } : {}),
      onNotice: (text) => events.notice?.(`${file.path}: ${text}`),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }
}

/** Free bytes on the file system holding `path`. */
export async function freeDiskBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.bavail * s.bsize;
}

/** Refuses a download that cannot fit on the disk (bytes already on disk excepted), with a margin
 *  for the derived graphs. */
async function checkDiskSpace(staging: string, files: readonly RemoteFile[], free: (path: string) => Promise<number>): Promise<void> {
  let missing = 0;
  for (const f of files) {
    const base = join(staging, ...f.path.split('/'));
    const have = (await stat(base).catch(() => undefined))?.size === f.size ? f.size : ((await stat(`${base}.part`).catch(() => undefined))?.size ?? 0);
    missing += Math.max(0, f.size - have);
  }
  const need = missing + MODELS_DEFAULTS.diskMarginBytes;
  const available = await free(staging);
  if (available < need) {
    throw new P2pzError(
      'E_DOWNLOAD_FAILED',
      `Not enough disk space: the model needs ${formatBytes(need)} more, ${formatBytes(available)} is free.`,
      'Free some disk space (or set P2PZ_HOME to a larger disk), then run the same command again.',
    );
  }
}

/** `cat → golden retriever` → `cat-golden-retriever`: a GAN folder name from its direction. */
export function ganFolderName(meta: Pick<GanMeta, 'source' | 'target'>): string {
  const slug = (t: string): string => normalizeConcept(t).replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return checkModelName(`${slug(meta.source)}-${slug(meta.target)}`.replace(/^-+/, '').slice(0, 100) || 'generator');
}

/** A GAN generator folder's files (generator.onnx, its external data, meta.json) and its meta. */
async function ganSource(folder: string, all: ReadonlyArray<{ path: string; size: number }>): Promise<{ files: Array<{ path: string; size: number }>; meta: GanMeta }> {
  const d = GAN_FOLDER_DEFAULTS;
  const metaFile = all.find((f) => f.path === d.metaFile);
  if (!metaFile || metaFile.size > d.maxMetaBytes) throw new P2pzError('E_MODEL_INVALID', `The generator folder needs a ${d.metaFile} (direction and size).`);
  let meta: GanMeta;
  try {
    meta = GanMeta.parse(JSON.parse(await readFile(join(folder, d.metaFile), 'utf8')));
  } catch {
    throw new P2pzError('E_MODEL_INVALID', `The generator's ${d.metaFile} is not valid.`, 'It needs {"v": 1, "source": …, "target": …, "size": …}.');
  }
  return { files: all.filter((f) => !f.path.includes('/') && (f.path === d.metaFile || f.path.startsWith('generator.'))), meta };
}

/** Installs a model by copying a local folder: a Stable Diffusion export (diffusers or optimum
 *  layout, installed as `<name>`), a distilled GAN generator (`generator.onnx` + `meta.json`,
 *  installed as `gan/<source>-<target>`) or a captioner (config.json + encoder and decoder graphs,
 *  installed as `captioner/<name>`). The files are hashed while copied; the install record keeps
 *  the hashes for `verify`. */
export async function installFromFolder(options: InstallCommon & { readonly folder: string }): Promise<InstallResult> {
  const events = options.events ?? {};
  let info;
  try {
    info = await stat(options.folder);
  } catch {
    throw new P2pzError('E_BAD_REQUEST', 'That model folder does not exist.');
  }
  if (!info.isDirectory()) throw new P2pzError('E_BAD_REQUEST', 'Give a model folder (with model_index.json), not a file.');
  const all = await listSourceFolder(options.folder);
  const isGan = options.captioner !== true && !all.some((f) => f.path === 'model_index.json') && all.some((f) => f.path === GAN_FOLDER_DEFAULTS.generatorFile);
  const isCaptioner = !isGan && (options.captioner === true || looksLikeCaptioner(all.map((f) => f.path)));
  const folderName = (): string => checkModelName(options.name ?? defaultModelName(options.folder.split(/[\\/]/).filter(Boolean).pop() ?? 'model'));
  let kind: InstallKind = 'diffusion';
  let name: string;
  let files: Array<{ path: string; size: number }>;
  if (isCaptioner) {
    kind = 'captioner';
    files = selectCaptionerFiles(all, 'The folder');
    name = `${CAPTIONER_FOLDER}/${folderName()}`;
  } else if (isGan) {
    const gan = await ganSource(options.folder, all);
    kind = 'gan';
    files = gan.files;
    name = `${GAN_FOLDER}/${checkModelName(options.name ?? ganFolderName(gan.meta))}`;
  } else {
    name = folderName();
    files = selectModelFiles(all);
    checkComplete(files.map((f) => f.path), 'The folder');
  }
  const staging = join(options.modelsDir, MODELS_DEFAULTS.stagingFolder, `${name.replace('/', '_')}@folder-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true });
  events.phase?.('download');
  events.start?.(files, files.reduce((s, f) => s + f.size, 0));
  const installed: InstalledFile[] = [];
  try {
    for (const file of files) {
      events.file?.(file.path);
      const dest = join(staging, ...file.path.split('/'));
      await mkdir(dirname(dest), { recursive: true });
      const hash = createHash('sha256');
      let size = 0;
      // The source is the user's own folder: links there are followed (a Hugging Face cache snapshot
      // is made of links); the copies are regular files inside the models directory.
      const input = createReadStream(join(options.folder, ...file.path.split('/')));
      input.on('data', (chunk) => {
        hash.update(chunk as Buffer);
        size += chunk.length;
        events.bytes?.(chunk.length);
      });
      await pipeline(input, createWriteStream(dest, { flags: 'wx' }), ...(options.signal ? [{ signal: options.signal }] : []));
      installed.push({ path: file.path, size, sha256: hash.digest('hex') });
    }
    return await finishInstall(options, name, staging, { kind: 'folder' }, installed, kind);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** Files under a source folder (following links: the user chose this folder), relative, `/`-separated. */
async function listSourceFolder(root: string): Promise<Array<{ path: string; size: number }>> {
  const out: Array<{ path: string; size: number }> = [];
  const visit = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir)) {
      const full = join(dir, e);
      const s = await stat(full).catch(() => undefined);
      if (!s) continue;
      if (s.isDirectory()) await visit(full);
      else if (s.isFile()) out.push({ path: relative(root, full).split(sep).join('/'), size: s.size });
      if (out.length > MODELS_DEFAULTS.maxFiles) throw new P2pzError('E_BAD_REQUEST', 'The folder holds too many files to be a model.');
    }
  };
  await visit(root);
  return out;
}

/** Prepares the derived graphs in the staging folder, writes the install record, and moves the
 *  folder into place (replacing an older install of the same name). */
async function finishInstall(
  options: InstallCommon, name: string, staging: string, source: InstallSource, files: InstalledFile[], kind: InstallKind = 'diffusion',
): Promise<InstallResult> {
  const events = options.events ?? {};
  const size = kind === 'diffusion' ? (options.prepareSize ?? MODELS_DEFAULTS.prepareSize) : 0;
  if (size > 0) {
    events.phase?.('prepare');
    try {
      await preparePipelineGraphs(staging, { height: size, width: size });
    } catch (err) {
      if (!(err instanceof P2pzError)) throw err;
      // The verified files stay staged: the next run does not download them again.
      const kept = source.kind === 'hub' ? 'The downloaded files are kept. ' : '';
      throw new P2pzError(err.code, `Preparing the derived graphs failed: ${err.message}`, `${kept}Run the command again with --no-prepare to install the model without them (the full-quality render needs them), or report the model.`);
    }
  }
  events.phase?.('commit');
  await emptyTrash(options.modelsDir);
  const manifest: InstallManifest = { format: 1, name, kind, demo: false, source, installedAt: new Date().toISOString(), files };
  await writeInstallManifest(staging, manifest);
  const dir = await commitFolder(options.modelsDir, staging, name);
  return { name, dir, manifest, upToDate: false };
}
