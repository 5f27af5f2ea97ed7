// `p2pz-install.json`, the record an install writes last into a model folder: where the model came
// from, whether it is the demo pack, and every installed file with its size and hash (what `p2pz
// models verify` checks again later). Read back from disk, so parsed with its schema.
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { resolveModelPath } from './model-path.js';
import { MODELS_DEFAULTS } from './defaults.js';

export const INSTALL_MANIFEST_FORMAT = 1;

const InstalledFile = z.object({
  path: z.string().min(1).max(1000),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  gitOid: z.string().regex(/^[0-9a-f]{40}$/).optional(),
});
export type InstalledFile = z.infer<typeof InstalledFile>;

export const InstallSource = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('hub'),
    hubUrl: z.string().max(500),
    repo: z.string().max(200),
    revision: z.string().max(200),
    commit: z.string().regex(/^[0-9a-f]{40}$/),
  }),
  /** Copied from a local folder (its path is not kept: it names the user's folders). */
  z.object({ kind: z.literal('folder') }),
  /** Generated on this machine (the demo pack). */
  z.object({ kind: z.literal('generated'), generator: z.string().max(100) }),
]);
export type InstallSource = z.infer<typeof InstallSource>;

export const InstallManifest = z.object({
  format: z.literal(INSTALL_MANIFEST_FORMAT),
  name: z.string().max(100),
  kind: z.enum(['diffusion', 'gan', 'captioner']),
  /** The demo pack: random weights, for trying the plugin before a real model is installed. */
  demo: z.boolean(),
  source: InstallSource,
  installedAt: z.string().max(40),
  files: z.array(InstalledFile).max(MODELS_DEFAULTS.maxFiles),
});
export type InstallManifest = z.infer<typeof InstallManifest>;

/** The manifest of the model folder `folder` (relative to the models directory, or absolute inside
 *  it), or undefined when absent, not valid, or not a contained regular file (docs/SECURITY.md §R19). */
export async function readInstallManifest(modelsDir: string, folder: string): Promise<InstallManifest | undefined> {
  try {
    const path = await resolveModelPath(modelsDir, join(folder, MODELS_DEFAULTS.manifestFile));
    const text = await readFile(path, 'utf8');
    if (text.length > MODELS_DEFAULTS.maxApiBytes) return undefined;
    const parsed = InstallManifest.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Writes the manifest atomically (temporary file, then rename). */
export async function writeInstallManifest(dir: string, manifest: InstallManifest): Promise<void> {
  const path = join(dir, MODELS_DEFAULTS.manifestFile);
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(InstallManifest.parse(manifest), null, 2)}\n`);
  await rename(tmp, path);
}
