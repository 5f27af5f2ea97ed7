// `p2pz models verify`: checks an installed model folder against its install record: every file is
// a contained regular file (docs/SECURITY.md §R19: links are reported, never followed), present, of the recorded size
// and hash; the files a Stable Diffusion folder needs are there. Files the record does not know
// (derived graphs from `prepare`, files added by hand) are listed but not hashed.
import { join } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { resolveModelPath } from './model-path.js';
import { modelFolder, walkModelFolder } from './containment.js';
import { MODELS_DEFAULTS } from './defaults.js';
import { fileMatches } from './download.js';
import { readInstallManifest } from './install-manifest.js';
import { CAPTIONER_FILES } from './captioner-files.js';

export interface VerifyReport {
  /** Folder path relative to the models directory. */
  readonly name: string;
  readonly ok: boolean;
  /** What is wrong, one line each (relative paths only). */
  readonly problems: readonly string[];
  /** Files the install record does not list (derived graphs, additions). */
  readonly unrecorded: readonly string[];
  readonly checkedFiles: number;
  readonly checkedBytes: number;
}

/** Derived files `prepare` writes next to the UNet and the VAE encoder (see onnx/prepare.ts, onnx/vae-parameters.ts,
 *  the precision conversions of onnx/precision/unet-precision.ts, and the unfused twins of an optimized VAE or
 *  text encoder, onnx/unfuse/component-twin.ts). */
const DERIVED = /^unet\/model\.(?:xattn|grad|roles)\.[0-9x.b]+(?:\.fp16(?:-fp32)?)?\.onnx$|^unet\/model\.(?:prepared|roles)\.[0-9x.b]+(?:\.fp16(?:-fp32)?)?\.json$|^vae_encoder\/model\.params\.(?:onnx|json)$|^unet\/model\.fp16(?:-fp32)?\.(?:onnx|onnx_data|json)$|^unet\/model\.precision\.json$|^(?:text_encoder|vae_encoder|vae_decoder)\/model(?:\.params)?\.unfused\.[0-9x_]+\.(?:onnx|json)$/;

export async function verifyModel(modelsDir: string, relPath: string): Promise<VerifyReport> {
  const dir = await modelFolder(modelsDir, relPath);
  const walk = await walkModelFolder(dir);
  const problems = [...walk.problems];
  const manifest = await readInstallManifest(modelsDir, relPath);
  const present = new Map(walk.files.map((f) => [f.path, f.size]));
  let checkedFiles = 0;
  let checkedBytes = 0;
  if (!manifest) {
    problems.push(`${MODELS_DEFAULTS.manifestFile}: missing or not valid (the install did not finish, or the folder was not installed by p2pz)`);
  } else {
    for (const file of manifest.files) {
      const size = present.get(file.path);
      if (size === undefined) {
        if (!walk.problems.some((p) => p.startsWith(`${file.path}:`))) problems.push(`${file.path}: missing`);
        continue;
      }
      if (size !== file.size) {
        problems.push(`${file.path}: ${size} bytes, expected ${file.size}`);
        continue;
      }
      try {
        // The walk saw a regular file; resolve again right before reading (docs/SECURITY.md §R19).
        const real = await resolveModelPath(modelsDir, join(relPath, file.path));
        if (!(await fileMatches(real, file))) problems.push(`${file.path}: content differs from the installed file (hash mismatch)`);
      } catch (err) {
        problems.push(`${file.path}: ${err instanceof P2pzError ? err.message : 'cannot be read'}`);
        continue;
      }
      checkedFiles++;
      checkedBytes += file.size;
    }
  }
  const captioner = manifest ? manifest.kind === 'captioner' : relPath.startsWith(`${CAPTIONER_FILES.folder}/`);
  if (captioner) {
    const has = (candidates: readonly string[]): boolean => candidates.some((c) => present.has(c));
    for (const required of CAPTIONER_FILES.required) if (!present.has(required) && !problems.some((p) => p.startsWith(`${required}:`))) problems.push(`${required}: missing`);
    if (!has(CAPTIONER_FILES.vocabularies)) problems.push(`${CAPTIONER_FILES.vocabularies.join(' or ')}: missing`);
    if (!has(CAPTIONER_FILES.encoders)) problems.push(`${CAPTIONER_FILES.encoders[0]}: missing (the vision encoder)`);
    if (!has(CAPTIONER_FILES.decoders)) problems.push(`${CAPTIONER_FILES.decoders[0]}: missing (the text decoder)`);
  } else if (!manifest || manifest.kind === 'diffusion') {
    for (const required of MODELS_DEFAULTS.requiredFiles) {
      if (!present.has(required) && !problems.some((p) => p.startsWith(`${required}:`))) problems.push(`${required}: missing`);
    }
  }
  const recorded = new Set(manifest?.files.map((f) => f.path) ?? []);
  const unrecorded = walk.files.map((f) => f.path).filter((p) => !recorded.has(p) && p !== MODELS_DEFAULTS.manifestFile && !DERIVED.test(p));
  return { name: relPath, ok: problems.length === 0, problems, unrecorded, checkedFiles, checkedBytes };
}
