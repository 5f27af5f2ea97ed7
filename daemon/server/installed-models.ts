// What GET /v1/models and health report as installed: diffusion model folders (those with a
// `model_index.json`, docs/DESIGN.md §2), the distilled GAN generators found by the preview registry, and
// the captioners under captioner/ (docs/CAPTIONER.md).
// Only folder names and directions are reported, never paths. Files are resolved inside the models
// directory (docs/SECURITY.md §R19) before they count. `demo` comes from the install record (daemon/models/registry.ts).
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstalledModel } from '../../shared/protocol/index.js';
import { isDemoModel } from '../models/registry.js';
import { CAPTIONER_LAYOUT } from '../models/captioner-files.js';
import { listCaptioners } from '../pipeline/captioner/installed.js';
import { listGanGenerators } from '../pipeline/preview-registry.js';
import { GAN_FOLDER_DEFAULTS } from '../models/gan-meta.js';
import { resolveModelPath } from '../models/model-path.js';

/** A diffusion model folder name as JobRequest.model accepts it. */
const MODEL_NAME = /^[A-Za-z0-9._-]{1,100}$/;

export async function listInstalledModels(modelsDir: string): Promise<InstalledModel[]> {
  const files = { modelsDir, resolve: (path: string) => resolveModelPath(modelsDir, path) };
  let entries: string[] = [];
  try {
    entries = (await readdir(modelsDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch {
    return [];
  }
  const diffusion: InstalledModel[] = [];
  for (const name of entries) {
    if (name === GAN_FOLDER_DEFAULTS.folder || name === CAPTIONER_LAYOUT.folder || !MODEL_NAME.test(name)) continue;
    try {
      await files.resolve(join(name, 'model_index.json'));
      diffusion.push({ name, kind: 'diffusion', demo: await isDemoModel(modelsDir, name) });
    } catch {
      // not a model folder (or one leading outside the models directory)
    }
  }
  const { generators } = await listGanGenerators(files);
  const gans: InstalledModel[] = [];
  for (const g of generators) {
    gans.push({ name: g.name, kind: 'gan', direction: { source: g.meta.source, target: g.meta.target }, demo: await isDemoModel(modelsDir, `gan/${g.name}`) });
  }
  const captioners: InstalledModel[] = (await listCaptioners(files)).map((name) => ({ name, kind: 'captioner', demo: false }));
  return [...diffusion, ...gans, ...captioners];
}
