// `p2pz models prepare DIR`: derives the graphs the full-quality edit needs for one working size and
// writes them next to the originals: the UNet with its cross-attention maps (batch 1 for the reference
// pass, batch 2 for the edit), the guidance gradient graph (batch 2), and for a VAE encoder that samples
// inside its graph, the graph of its posterior parameters. Reuses them when they are current.
import { basename } from 'node:path';
import { P2pzError } from '../../shared/protocol/errors.js';
import { defaultPrecision, prepareModel, preparePipelineGraphs, PREPARE_DEFAULTS } from '../onnx/prepare.js';
import { describePrecision, Precision, unetPrecision, writeChosenPrecision } from '../onnx/precision/unet-precision.js';
import { intFlag, parseFlags, type CliCommand, type CliIo } from './command.js';

export const MODELS_PREPARE_DEFAULTS = Object.freeze({
  /** Working size in pixels when neither --size nor --height/--width is given. */
  size: 512,
});

const USAGE = `p2pz models prepare DIR [--size N | --height H --width W] [--batch B] [--precision fp16|fp32] [--device cpu|gpu] [--force]

Derives what the pipeline runs at the working size (default ${MODELS_PREPARE_DEFAULTS.size}×${MODELS_PREPARE_DEFAULTS.size}; h, w: latent size =
pixels/8): unet/model.xattn.{h}x{w}.onnx and unet/model.grad.{h}x{w}.onnx (batch 2),
unet/model.xattn.{h}x{w}.b1.onnx (batch 1), and vae_encoder/model.params.onnx when the encoder samples
inside its graph. All share the originals' weights files. --batch B derives the UNet graphs for that
batch only. Skips the work when a manifest shows they are current; --force rebuilds.
--precision fp16 converts the UNet's weights to float16 (unet/model.fp16.onnx, half the bytes;
normalizations, Softmax, the timestep embedding and the guidance loss stay float32) and records the
choice (unet/model.precision.json) for every later edit; fp32 goes back to the export's weights (a
float16 export stays fp16). Graphs for --device cpu (the default) compute in float32 (the CPU provider
has no float16 kernels: the float16 weights are upcast once, unet/model.fp16-fp32.onnx); for a GPU
provider (--device gpu) they compute in float16. Every derived graph takes and returns float32.`;

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
    precision: { type: 'string' },
    device: { type: 'string' },
  }, true);
  const dir = positionals[0];
  if (!dir || positionals.length > 1) throw new P2pzError('E_BAD_REQUEST', 'Give exactly one model folder.', USAGE.split('\n')[0]);
  const size = intFlag('size', values.size, 64, PREPARE_DEFAULTS.maxSide) ?? MODELS_PREPARE_DEFAULTS.size;
  const height = intFlag('height', values.height, 8, PREPARE_DEFAULTS.maxSide) ?? size;
  const width = intFlag('width', values.width, 8, PREPARE_DEFAULTS.maxSide) ?? size;
  const force = values.force === true;
  const batch = intFlag('batch', values.batch, 1, 16);
  if (values.precision !== undefined) {
    const chosen = Precision.safeParse(values.precision);
    if (!chosen.success) throw new P2pzError('E_BAD_REQUEST', `--precision must be fp16 or fp32, not "${values.precision}".`, USAGE.split('\n')[0]);
    await writeChosenPrecision(dir, chosen.data);
  }
  const device = values.device ?? 'cpu';
  if (!/^[a-z]{2,10}$/.test(device)) throw new P2pzError('E_BAD_REQUEST', '--device must be cpu or gpu.', USAGE.split('\n')[0]);
  const precision = unetPrecision((await defaultPrecision(dir)).weights, device);
  if (batch !== undefined) {
    const r = await prepareModel(dir, { height, width, batch, force, precision });
    io.out(`${r.reused ? 'up to date' : 'prepared'}: ${r.manifest.files.xattn}, ${r.manifest.files.grad} (${r.manifest.sites.length} cross-attention layers, latent ${r.manifest.latentHeight}×${r.manifest.latentWidth}, batch ${r.manifest.batch})`);
    return 0;
  }
  const { single, pair, roles, vae } = await preparePipelineGraphs(dir, { height, width }, { force, precision });
  const state = (reused: boolean): string => (reused ? 'up to date' : 'prepared');
  io.out(`${state(pair.reused)}: ${pair.manifest.files.xattn}, ${pair.manifest.files.grad} (${pair.manifest.sites.length} cross-attention layers, latent ${pair.manifest.latentHeight}×${pair.manifest.latentWidth}, batch 2)`);
  io.out(`${state(single.reused)}: ${single.manifest.files.xattn} (reference pass, batch 1)`);
  io.out(`${state(roles.reused)}: ${basename(roles.path)} (the three graphs in one model, one copy of the weights)`);
  if (vae) io.out(`${state(vae.reused)}: vae_encoder/model.params.onnx (the encoder's posterior parameters)`);
  io.out(`precision: ${describePrecision(pair.manifest.precision ?? precision)} (${device === 'cpu' ? 'CPU provider' : 'GPU providers'})`);
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
