// Which files of a folder or hub repository make an image-to-text captioner (docs/CAPTIONER.md): the
// layout optimum and transformers.js export (config.json, preprocessor_config.json, a WordPiece
// vocabulary, a vision encoder graph and a text decoder graph). Installation keeps the configuration
// files, the one encoder and the one decoder the loader will pick (daemon/pipeline/captioner/installed.ts
// looks for the same names in the same order) and their external data; quantized or float16 variants
// and READMEs are skipped. A missing file is refused with E_MODEL_INVALID, naming it.
import { P2pzError } from '../../shared/protocol/index.js';

/** Where captioners live and which graph files the loader looks for (daemon/pipeline/captioner/). */
export const CAPTIONER_LAYOUT = Object.freeze({
  /** Captioners live in this folder of the models directory, one folder each. */
  folder: 'captioner',
  /** Used when several are installed. */
  preferred: 'blip-image-captioning-base',
  /** Graph file names, in the order they are looked for (transformers.js, then optimum). */
  encoders: Object.freeze(['onnx/encoder_model.onnx', 'encoder_model.onnx', 'onnx/vision_encoder.onnx']),
  decoders: Object.freeze(['onnx/decoder_model_merged.onnx', 'decoder_model_merged.onnx', 'onnx/decoder_model.onnx', 'decoder_model.onnx']),
  /** The commands that install one (daemon/cli/models.ts), for the hints where none is installed. */
  installCommand: 'p2pz models install --from DIR (a captioner export, docs/CAPTIONER.md), or p2pz models install OWNER/NAME --captioner from the hub',
});

export const CAPTIONER_FILES = Object.freeze({
  /** Folder of the models directory holding one folder per captioner. */
  folder: CAPTIONER_LAYOUT.folder,
  /** Files that must be there. */
  required: Object.freeze(['config.json', 'preprocessor_config.json']),
  /** One of these vocabularies must be there (BERT WordPiece). */
  vocabularies: Object.freeze(['vocab.txt', 'tokenizer.json']),
  /** Top-level files installed when present. */
  configFiles: Object.freeze([
    'config.json', 'preprocessor_config.json', 'generation_config.json', 'vocab.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
  ]),
  encoders: CAPTIONER_LAYOUT.encoders,
  decoders: CAPTIONER_LAYOUT.decoders,
  /** What an export holds, for the hint. */
  layout: 'config.json, preprocessor_config.json, vocab.txt (or tokenizer.json), onnx/encoder_model.onnx and onnx/decoder_model_merged.onnx (or onnx/decoder_model.onnx)',
});

/** A folder or listing that is a captioner rather than a Stable Diffusion export: it has a
 *  config.json and no model_index.json (a diffusers export has the latter, a GAN generator neither). */
export function looksLikeCaptioner(paths: readonly string[]): boolean {
  return paths.includes('config.json') && !paths.includes('model_index.json');
}

/** External data of a graph as torch.onnx and optimum name it (`model.onnx_data`, `model.onnx.data`). */
function isExternalDataOf(path: string, graph: string): boolean {
  return path.startsWith(`${graph}_data`) || path.startsWith(`${graph}.data`);
}

/** The captioner files of `files`, or E_MODEL_INVALID naming the first missing one. */
export function selectCaptionerFiles<T extends { readonly path: string }>(files: readonly T[], where: string): T[] {
  const paths = files.map((f) => f.path);
  const refuse = (missing: string): never => {
    throw new P2pzError(
      'E_MODEL_INVALID',
      `${where} is not a captioner export: it lacks ${missing}.`,
      `Add ${missing}. A captioner folder holds ${CAPTIONER_FILES.layout} (docs/CAPTIONER.md).`,
    );
  };
  for (const r of CAPTIONER_FILES.required) if (!paths.includes(r)) refuse(r);
  if (!CAPTIONER_FILES.vocabularies.some((v) => paths.includes(v))) refuse(CAPTIONER_FILES.vocabularies.join(' or '));
  const encoder = CAPTIONER_FILES.encoders.find((e) => paths.includes(e)) ?? refuse(`${CAPTIONER_FILES.encoders[0]} (the vision encoder)`);
  const decoder = CAPTIONER_FILES.decoders.find((d) => paths.includes(d)) ?? refuse(`${CAPTIONER_FILES.decoders[0]} or onnx/decoder_model.onnx (the text decoder)`);
  return files.filter(
    (f) => CAPTIONER_FILES.configFiles.includes(f.path) || f.path === encoder || f.path === decoder || isExternalDataOf(f.path, encoder) || isExternalDataOf(f.path, decoder),
  );
}
