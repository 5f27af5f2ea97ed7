// `p2pz models prepare DIR`: derives the UNet graphs the full-quality edit needs (cross-attention
// maps, guidance gradient) for one working size and writes them next to the model's UNet. Reuses
// them when they are current.
import { P2pzError } from '../../shared/protocol/errors.js';
import { prepareModel, PREPARE_DEFAULTS } from '../onnx/prepare.js';
import { intFlag, parseFlags, type CliCommand, type CliIo } from './command.js';

export const MODELS_PREPARE_DEFAULTS = Object.freeze({
  /** Working size in pixels when neither --size nor --height/--width is given. */
  size: 512,
});

const USAGE = `p2pz models prepare DIR [--size N | --height H --width W] [--batch B] [--force]

Derives unet/model.xattn.{h}x{w}.onnx and unet/model.grad.{h}x{w}.onnx (h, w: latent size = pixels/8)
for the working size (default ${MODELS_PREPARE_DEFAULTS.size}×${MODELS_PREPARE_DEFAULTS.size}), sharing the UNet's weights file. Skips the work
when a manifest shows they are current; --force rebuilds.`;

const stdio: CliIo = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
  env: process.env,
};

async function run(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    size: { type: 'string' },
    height: { type: 'string' },
    width: { type: 'string' },
    batch: { type: 'string' },
    force: { type: 'boolean' },
  }, true);
  const dir = positionals[0];
  if (!dir || positionals.length > 1) throw new P2pzError('E_BAD_REQUEST', 'Give exactly one model folder.', USAGE.split('\n')[0]);
  const size = intFlag('size', values.size, 64, PREPARE_DEFAULTS.maxSide) ?? MODELS_PREPARE_DEFAULTS.size;
  const height = intFlag('height', values.height, 8, PREPARE_DEFAULTS.maxSide) ?? size;
  const width = intFlag('width', values.width, 8, PREPARE_DEFAULTS.maxSide) ?? size;
  const batch = intFlag('batch', values.batch, 1, 16) ?? PREPARE_DEFAULTS.batch;
  const r = await prepareModel(dir, { height, width, batch, force: values.force === true });
  io.out(`${r.reused ? 'up to date' : 'prepared'}: ${r.manifest.files.xattn}, ${r.manifest.files.grad} (${r.manifest.sites.length} cross-attention layers, latent ${r.manifest.latentHeight}×${r.manifest.latentWidth}, batch ${r.manifest.batch})`);
  return 0;
}

export const modelsPrepareCommand: CliCommand = {
  name: 'models prepare',
  summary: 'derive the cross-attention and gradient graphs of a model for one working size',
  usage: USAGE,
  run,
};

/** Runs the command with process stdio; a P2pzError is printed as its message and hint (exit 1). */
export async function modelsPrepare(argv: string[], io: CliIo = stdio): Promise<number> {
  try {
    return await run(argv, io);
  } catch (e) {
    if (!(e instanceof P2pzError)) throw e;
    io.err(`${e.message}\n${e.hint}`);
    return 1;
  }
}
