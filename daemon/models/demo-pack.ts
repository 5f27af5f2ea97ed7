// The demo pack: a model set generated on this machine in about a second, so that the plugin can be
// tried end to end before a real model is downloaded (`p2pz serve --demo`). It holds a tiny Stable
// Diffusion folder (`p2pz-demo`, the project's seeded test model, prepared for 512×512) and a tiny
// "cat → dog" preview generator (`gan/p2pz-demo-cat-dog`). Their weights are random: the output shows that the path
// works, not what an edit looks like. Both carry `demo: true` in their install record, which health
// and GET /v1/models report, and a real install removes them.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GanMeta, GAN_FOLDER_DEFAULTS } from './gan-meta.js';
import { preparePipelineGraphs } from '../onnx/prepare.js';
import { writeTinyImg2Img } from '../onnx/tiny/img2img.js';
import { writeTinyStableDiffusion } from '../onnx/tiny/stable-diffusion.js';
import { commitFolder } from './commit.js';
import { walkModelFolder } from './containment.js';
import { MODELS_DEFAULTS } from './defaults.js';
import { readInstallManifest, writeInstallManifest, type InstalledFile } from './install-manifest.js';
import { GAN_FOLDER, listModels, removeModel } from './registry.js';

export const DEMO_PACK = Object.freeze({
  diffusion: MODELS_DEFAULTS.demoName,
  gan: `${GAN_FOLDER}/${MODELS_DEFAULTS.demoName}-cat-dog`,
  direction: Object.freeze({ source: 'cat', target: 'dog' }),
  /** Working size written into the generator's meta.json. */
  ganSize: 256,
  generator: 'p2pz tiny seeded models',
});

/** Every generated file with its hash, derived graphs excepted (as for a downloaded model). */
async function recordFiles(dir: string): Promise<InstalledFile[]> {
  const out: InstalledFile[] = [];
  for (const f of (await walkModelFolder(dir)).files) {
    if (/^unet\/model\.(?:xattn|grad|prepared|roles)\./.test(f.path)) continue;
    out.push({ path: f.path, size: f.size, sha256: createHash('sha256').update(await readFile(join(dir, f.path))).digest('hex') });
  }
  return out;
}

async function stage(modelsDir: string, rel: string, kind: 'diffusion' | 'gan', write: (dir: string) => Promise<void>): Promise<void> {
  const staging = join(modelsDir, MODELS_DEFAULTS.stagingFolder, `${rel.replace('/', '_')}@demo`);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await write(staging);
  await writeInstallManifest(staging, {
    format: 1,
    name: rel,
    kind,
    demo: true,
    source: { kind: 'generated', generator: DEMO_PACK.generator },
    installedAt: new Date().toISOString(),
    files: await recordFiles(staging),
  });
  await commitFolder(modelsDir, staging, rel);
}

/** Writes the demo pack unless it is there already. Returns the names written. */
export async function writeDemoPack(modelsDir: string): Promise<string[]> {
  const written: string[] = [];
  if (!(await readInstallManifest(modelsDir, DEMO_PACK.diffusion))?.demo) {
    await stage(modelsDir, DEMO_PACK.diffusion, 'diffusion', async (dir) => {
      await writeTinyStableDiffusion(dir);
      await preparePipelineGraphs(dir, { height: MODELS_DEFAULTS.prepareSize, width: MODELS_DEFAULTS.prepareSize });
    });
    written.push(DEMO_PACK.diffusion);
  }
  if (!(await readInstallManifest(modelsDir, DEMO_PACK.gan))?.demo) {
    await stage(modelsDir, DEMO_PACK.gan, 'gan', async (dir) => {
      await writeTinyImg2Img(join(dir, GAN_FOLDER_DEFAULTS.generatorFile));
      const meta: GanMeta = { v: 1, ...DEMO_PACK.direction, size: DEMO_PACK.ganSize, from: { model: DEMO_PACK.diffusion, settings: { demo: true } } };
      await writeFile(join(dir, GAN_FOLDER_DEFAULTS.metaFile), `${JSON.stringify(GanMeta.parse(meta), null, 2)}\n`);
    });
    written.push(DEMO_PACK.gan);
  }
  return written;
}

/** Removes every installed model marked as demo. Returns their names. */
export async function removeDemoPack(modelsDir: string): Promise<string[]> {
  const demos = (await listModels(modelsDir)).filter((m) => m.demo).map((m) => m.name);
  for (const name of demos) await removeModel(modelsDir, name);
  return demos;
}

/** True when a diffusion model other than the demo pack is installed. */
export async function hasRealDiffusionModel(modelsDir: string): Promise<boolean> {
  return (await listModels(modelsDir)).some((m) => m.kind === 'diffusion' && !m.demo && m.problems.length === 0);
}
