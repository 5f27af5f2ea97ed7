// `p2pz caption IMAGE`: the caption the installed captioner writes for an image (BLIP, with the
// official pix2pix-zero settings), the one `p2pz edit` and the daemon use when no caption is given.
// The captioner is the one in $P2PZ_HOME/models/captioner/ (or --models DIR's captioner/), or the
// folder given with --captioner DIR.
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { P2pzError } from '../../shared/protocol/index.js';
import { defaultHome, homePaths } from '../config.js';
import { decodeImage } from '../image/decode.js';
import { CAPTIONER_DEFAULTS, captionImage, loadCaptioner } from '../pipeline/captioner/blip.js';
import { findCaptioner } from '../pipeline/captioner/installed.js';
import { chooseExecution, devicePreference } from '../worker/providers.js';
import { SessionCache } from '../worker/sessions.js';
import { intFlag, parseFlags, type CliCommand, type CliIo } from './command.js';

const USAGE = `p2pz caption IMAGE [--captioner DIR | --models DIR] [--beams N] [--device cpu|cuda]

  --captioner DIR   a captioner folder (config.json, vocab.txt, onnx/encoder_model.onnx, onnx/decoder_model_merged.onnx)
  --models DIR      models directory whose ${CAPTIONER_DEFAULTS.folder}/ holds the captioner (default: $P2PZ_HOME/models)
  --beams N         beam search width (default ${CAPTIONER_DEFAULTS.numBeams}, as pix2pix-zero's BLIP)`;

async function run(args: readonly string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    captioner: { type: 'string' },
    models: { type: 'string' },
    beams: { type: 'string' },
    device: { type: 'string' },
  }, true);
  const input = positionals[0];
  if (input === undefined || positionals.length > 1) throw new P2pzError('E_BAD_REQUEST', 'Give exactly one image.', USAGE.split('\n')[0]);
  if (values.device !== undefined && values.device !== 'cpu' && values.device !== 'cuda') throw new P2pzError('E_BAD_REQUEST', '--device must be cpu or cuda.');
  const beams = intFlag('beams', values.beams, 1, 16);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(input);
  } catch {
    throw new P2pzError('E_BAD_REQUEST', 'The image could not be read.');
  }
  const decoded = await decodeImage(bytes);
  const own = values.captioner === undefined ? undefined : resolve(values.captioner);
  const modelsDir = own ? dirname(own) : resolve(values.models ?? homePaths(defaultHome(io.env)).models);
  const execution = await chooseExecution(devicePreference(values.device, io.env));
  const models = new SessionCache({ modelsDir, executionProviders: execution.executionProviders, maxSessions: 2 });
  try {
    const name = own ? basename(own) : await findCaptioner(models);
    if (name === null) {
      throw new P2pzError('E_MODEL_MISSING', 'No captioner is installed.', `Install one: ${CAPTIONER_DEFAULTS.installCommand}; it goes to ${join(modelsDir, CAPTIONER_DEFAULTS.folder)}/NAME/. Or give --captioner DIR.`);
    }
    const captioner = await loadCaptioner(models, name, own ? basename(own) : undefined);
    const result = await captionImage(models, captioner, decoded.rgb, decoded.width, decoded.height, beams === undefined ? {} : { search: { numBeams: beams } });
    io.out(`${result.caption}\n`);
  } finally {
    await models.releaseAll();
  }
  return 0;
}

export const captionCommand: CliCommand = {
  name: 'caption',
  summary: 'caption an image with the installed captioner (BLIP): p2pz caption IMAGE',
  usage: USAGE,
  run,
};
