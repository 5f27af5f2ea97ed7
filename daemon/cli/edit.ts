// `p2pz edit IN --from WORD --to WORD`: one pix2pix-zero edit from the command line (docs/DESIGN.md §4),
// in this process (no daemon): the full pipeline, or with `--mode preview` the distilled GAN for the
// direction when one is installed beside the model, else the reduced diffusion preview. Writes the
// edited PNG (exactly the input's size, alpha kept), optionally the attention mask and, with
// `--dump DIR`, the replay record of docs/DUMP.md. Δ and inversions are cached in the data directory.
import { open, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { deviceWords, EDIT_DEFAULTS, P2pzError, skippedWords } from '../../shared/protocol/index.js';
import { defaultHome, homePaths, type DaemonPaths } from '../config.js';
import { MODELS_DEFAULTS } from '../models/defaults.js';
import type { PipelineOutcome } from '../pipeline/context.js';
import { SENTENCE_BANK_DEFAULTS, SENTENCE_BANK_LIMITS } from '../pipeline/directions/sentence-bank.js';
import { DumpWriter } from '../pipeline/dump/dump-writer.js';
import { InversionCache } from '../pipeline/inversion-cache.js';
import { runPix2PixZero, type DiffusionContext } from '../pipeline/pix2pix-zero.js';
import { runPreview } from '../pipeline/preview.js';
import { chooseExecution, devicePreference, quietNativeLog } from '../worker/providers.js';
import { RUN_JOB_DEFAULTS } from '../worker/run-job.js';
import { SessionCache } from '../worker/sessions.js';
import { intFlag, parseFlags, UserPathError, type CliCommand, type CliIo } from './command.js';
import { EditProgress } from './edit-progress.js';
import { EDIT_FLAG_OPTIONS, editParamsFromFlags, modelFolder, userBanksFromFlags } from './edit-flags.js';

export const EDIT_CLI_DEFAULTS = Object.freeze({
  /** Sessions kept open: the five components plus the three derived UNet graphs. */
  maxSessions: 8,
  /** The model folder when --model is not given: the installer's default name in the models directory. */
  defaultModel: MODELS_DEFAULTS.name,
});

/** The caches of the data directory, shared with the daemon's worker (same folders under `cache/`):
 *  Δ per text encoder and sentence banks, and inverted latents. */
export function dataDirCaches(paths: DaemonPaths): { directionCacheDir: string; inversionCache: InversionCache } {
  return {
    directionCacheDir: join(paths.cache, RUN_JOB_DEFAULTS.directionCache),
    inversionCache: new InversionCache({ dir: join(paths.cache, RUN_JOB_DEFAULTS.inversionCache) }),
  };
}

const d = EDIT_DEFAULTS;
const USAGE = `p2pz edit IN --from WORD --to WORD [options]

  --model NAME|DIR     a model as "p2pz models list" names it, or a Stable Diffusion 1.x ONNX folder
                       (default: ${EDIT_CLI_DEFAULTS.defaultModel})
  --caption TEXT       caption of the input (default: the installed captioner's, else "a photo of a WORD")
  --steps N            DDIM steps (default ${d.steps})            --seed N        seed (default ${d.seed})
  --xa F               cross-attention guidance λ_xa (${d.xa}) --cfg F         guidance scale w (${d.cfg})
  --reg-steps N        noise regularization iterations (${d.regSteps}) --size N        working long side (${d.size})
  --edit-scale F       s in e_edit = e_c + s·Δ (${d.editScale})
  --out PNG            edited image (default IN-TARGET.png) --mask PNG      attention mask of WORD
  --blend              blend the edit into the input through the mask
  --mode full|preview  full render (default) or quick preview
  --device D           auto (default: the first GPU provider that starts, else the CPU),
                       cpu, cuda, webgpu, coreml (macOS) or dml (Windows); also $P2PZ_DEVICE
  --dump DIR           write every intermediate (.npy) for a step-by-step replay
  --source-bank FILE, --target-bank FILE   your own sentence banks (one sentence per line)
  --bank-count N                           sentences per generated bank (default ${SENTENCE_BANK_DEFAULTS.count})
  --vae-latent mean|sample                 z0 from the VAE mean (default) or a seeded sample`;

const FILE_PROBLEMS: Readonly<Record<string, string>> = Object.freeze({
  ENOENT: 'not found',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a folder',
  ENOTDIR: 'a part of the path is not a folder',
  EROFS: 'read-only file system',
});

function fileProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return FILE_PROBLEMS[code] ?? (code || 'unreadable');
}

async function readInput(path: string): Promise<Uint8Array> {
  try {
    if ((await stat(path)).isDirectory()) throw Object.assign(new Error('folder'), { code: 'EISDIR' });
    return await readFile(path);
  } catch (err) {
    const problem = fileProblem(err);
    throw new UserPathError('E_BAD_REQUEST', `Input image ${path}: ${problem}.`, problem === 'not found' ? 'Check the file name; a relative path starts in the current folder.' : 'Choose a PNG, JPEG or WebP file you can read.');
  }
}

/** Fails before the edit (minutes of work) when an output file cannot be written: opens it for writing
 *  without changing it, or creates it and removes it again. */
async function checkWritable(path: string, flag: string): Promise<void> {
  try {
    let existed = true;
    try {
      await stat(path);
    } catch {
      existed = false;
    }
    const handle = await open(path, existed ? 'r+' : 'wx');
    await handle.close();
    if (!existed) await unlink(path);
  } catch (err) {
    throw new UserPathError('E_BAD_REQUEST', `${flag} ${path}: cannot be written (${fileProblem(err)}).`, 'Choose a file in a folder that exists and that you can write to.');
  }
}

function outputPath(input: string, target: string): string {
  const ext = extname(input);
  const stem = basename(input, ext);
  return join(dirname(input), `${stem}-${target.replace(/[^\p{L}\p{N}-]+/gu, '_')}.png`);
}

async function run(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    ...EDIT_FLAG_OPTIONS,
    out: { type: 'string' },
    mask: { type: 'string' },
    blend: { type: 'boolean' },
    mode: { type: 'string' },
    dump: { type: 'string' },
    'vae-latent': { type: 'string' },
    'bank-count': { type: 'string' },
  }, true);
  const input = positionals[0];
  if (input === undefined || positionals.length > 1) throw new P2pzError('E_BAD_REQUEST', 'Give exactly one input image.', USAGE.split('\n')[0]);
  const mode = values.mode ?? 'full';
  if (mode !== 'full' && mode !== 'preview') throw new P2pzError('E_BAD_REQUEST', '--mode must be full or preview.');
  const vaeLatent = values['vae-latent'] ?? 'mean';
  if (vaeLatent !== 'mean' && vaeLatent !== 'sample') throw new P2pzError('E_BAD_REQUEST', '--vae-latent must be mean or sample.');
  const edit = editParamsFromFlags(values, USAGE.split('\n')[0] ?? '', { mask: values.mask !== undefined, blend: values.blend === true });

  const image = await readInput(input);
  const out = values.out ?? outputPath(input, edit.target);
  await checkWritable(out, '--out');
  if (values.mask !== undefined) await checkWritable(values.mask, '--mask');
  const banks = await userBanksFromFlags(values);

  const paths = homePaths(defaultHome(io.env));
  const modelDir = modelFolder(values.model, paths.models, EDIT_CLI_DEFAULTS.defaultModel);
  // The CUDA probe's loader failure is the device reason below, not a red native line on stderr.
  if (io.env['P2PZ_LOG'] !== 'debug') quietNativeLog();
  const execution = await chooseExecution(devicePreference(values.device, io.env));
  // The device, unless the CPU was asked for: a GPU with its adapter, or why none was used.
  if (execution.device.provider !== 'cpu' || execution.device.skipped) {
    io.err(`device: ${deviceWords(execution.device)}: ${execution.device.provider === 'cpu' ? 'no GPU provider started.' : execution.device.reason}\n`);
    for (const line of skippedWords(execution.device)) io.err(`  skipped ${line}\n`);
  }
  const models = new SessionCache({ modelsDir: dirname(modelDir), executionProviders: execution.executionProviders, sessionOptions: execution.sessionOptions, maxSessions: EDIT_CLI_DEFAULTS.maxSessions });
  const started = performance.now();
  const meter = new EditProgress({ write: io.err, tty: io.errIsTTY === true, editSteps: mode === 'full' ? edit.steps : 0 });
  const ctx: DiffusionContext = {
    models,
    memory: { provider: execution.device.provider },
    signal: new AbortController().signal,
    progress: (stage, step, total) => meter.update(stage, step, total),
    ...dataDirCaches(paths),
  };
  const bankCount = intFlag('bank-count', values['bank-count'], 1, SENTENCE_BANK_LIMITS.maxCount);
  const request = { image, edit, model: basename(modelDir), ...(banks ? { banks } : {}), ...(bankCount === undefined ? {} : { bankCount }) };
  let outcome: PipelineOutcome;
  try {
    if (mode === 'preview') {
      outcome = await runPreview(request, ctx);
    } else {
      outcome = await runPix2PixZero({
        ...request, vaeLatent, ...(values.dump === undefined ? {} : { dump: new DumpWriter(resolve(values.dump)) }),
      }, ctx);
    }
  } finally {
    meter.end();
    await models.releaseAll();
  }

  for (const o of outcome.outputs) {
    if (o.role === 'image') await writeFile(out, o.png);
    if (o.role === 'mask' && values.mask !== undefined) await writeFile(values.mask, o.png);
  }
  const report = outcome.report;
  if (report?.caption !== undefined) io.err(`caption: "${report.caption}" (${report.captionOrigin === 'captioner' ? `captioner ${report.captioner ?? ''}`.trim() : report.captionOrigin ?? 'template'})\n`);
  for (const note of report?.notes ?? []) io.err(`note: ${note}\n`);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  io.out(`${basename(out)}: ${edit.source} → ${edit.target} (${outcome.engine}, ${execution.device.provider}, ${seconds} s)\n`);
  return 0;
}

export const editCommand: CliCommand = {
  name: 'edit',
  summary: 'edit one image (pix2pix-zero): p2pz edit IN --from cat --to dog',
  usage: USAGE,
  run,
};
