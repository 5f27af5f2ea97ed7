// Image captioning with BLIP (Li et al. 2022), as pix2pix-zero's official code does it (src/inversion.py:
// LAVIS `blip_caption` / `base_coco`, `generate()` with its defaults), on an ONNX export in the common
// encoder + decoder-with-past layout (optimum, transformers.js; see daemon/onnx/tiny/blip-captioner.ts):
//   1. pixels    resize to S×S (bicubic, aspect not kept), x = (p/255 − mean)/std, [1,3,S,S]
//   2. encoder   image embeddings [1,1+N,Dv], repeated for each beam
//   3. decoder   prompt "[DEC] a picture of" (BLIP's prompt with [CLS] → [DEC] and [SEP] dropped), then
//                one token per step with the self-attention key/value cache, beams reordered each step
//   4. search    beam search, 3 beams, max_length 30 and min_length 10 (prompt included), repetition
//                penalty 1.0, eos = [SEP] (LAVIS BlipCaption.generate; transformers' BeamSearchScorer)
//   5. text      the generated tokens after the prompt, WordPiece-decoded
// A captioner is a folder under `<models>/captioner/` holding config.json (BLIP's text_config token
// ids), preprocessor_config.json (size, mean, std), vocab.txt or tokenizer.json, and the two graphs.
// A decoder without past inputs (decoder_model.onnx) also works: it is fed the whole sequence each step.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import sharp from 'sharp';
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/index.js';
import type { ModelSessions } from '../context.js';
import { beamSearch, type BeamSearchOptions } from './beam-search.js';
import { CAPTIONER_LAYOUT } from '../../models/captioner-files.js';
import { firstPresent } from './installed.js';
import { WordPieceTokenizer } from './wordpiece.js';

export const CAPTIONER_DEFAULTS = Object.freeze({
  ...CAPTIONER_LAYOUT,
  /** LAVIS base_coco's prompt; the caption is what follows it. */
  prompt: 'a picture of ',
  /** LAVIS BlipCaption.generate's defaults (the official code passes none). */
  numBeams: 3,
  maxLength: 30,
  minLength: 10,
  repetitionPenalty: 1.0,
  /** transformers' generate default. */
  lengthPenalty: 1.0,
  /** BLIP's eval transform when the folder says nothing: 384², CLIP's mean and std. */
  imageSize: 384,
  mean: Object.freeze([0.48145466, 0.4578275, 0.40821073]),
  std: Object.freeze([0.26862954, 0.26130258, 0.27577711]),
});

const TokenId = z.number().int().nonnegative();
const BlipConfig = z.object({
  text_config: z.object({
    bos_token_id: TokenId.default(30522),
    sep_token_id: TokenId.default(102),
    pad_token_id: TokenId.default(0),
  }).default({ bos_token_id: 30522, sep_token_id: 102, pad_token_id: 0 }),
  vision_config: z.object({ image_size: z.number().int().min(16).max(2048).optional() }).optional(),
});
const Preprocessor = z.object({
  size: z.union([z.object({ height: z.number().int().min(16).max(2048), width: z.number().int().min(16).max(2048) }), z.number().int().min(16).max(2048)]).optional(),
  image_mean: z.array(z.number()).length(3).optional(),
  image_std: z.array(z.number().positive()).length(3).optional(),
  rescale_factor: z.number().positive().optional(),
});

export interface Captioner {
  /** Folder name under captioner/. */
  readonly name: string;
  readonly encoderPath: string;
  readonly decoderPath: string;
  readonly tokenizer: WordPieceTokenizer;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly width: number;
  readonly height: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly rescale: number;
}

export interface CaptionOptions {
  readonly signal?: AbortSignal;
  readonly search?: Partial<Omit<BeamSearchOptions, 'eosId' | 'signal'>>;
  readonly prompt?: string;
}

export interface CaptionResult {
  readonly caption: string;
  readonly captioner: string;
  /** Generated ids after the prompt (eos excluded). */
  readonly ids: readonly number[];
  readonly finished: boolean;
}

function invalid(name: string, detail: string): P2pzError {
  return new P2pzError('E_MODEL_INVALID', `The captioner "${name}" ${detail}`, `Reinstall it, or remove the folder ${CAPTIONER_DEFAULTS.folder}/${name} to caption from the template.`);
}

async function readJson<T>(models: Pick<ModelSessions, 'resolve'>, path: string, schema: z.ZodType<T>, name: string, optional: boolean): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(await models.resolve(path), 'utf8');
  } catch {
    if (optional) return undefined;
    throw invalid(name, `has no readable ${path.split('/').pop()}.`);
  }
  try {
    return schema.parse(JSON.parse(text));
  } catch {
    throw invalid(name, `has an invalid ${path.split('/').pop()}.`);
  }
}

/** Loads the captioner `name` (its folder: captioner/NAME in the models directory, unless given). */
export async function loadCaptioner(
  models: Pick<ModelSessions, 'modelsDir' | 'resolve'>, name: string, folder: string = join(CAPTIONER_DEFAULTS.folder, name),
): Promise<Captioner> {
  const encoderPath = await firstPresent(models, folder, CAPTIONER_LAYOUT.encoders);
  const decoderPath = await firstPresent(models, folder, CAPTIONER_LAYOUT.decoders);
  if (!encoderPath || !decoderPath) throw invalid(name, 'lacks its encoder or decoder graph.');
  const config = (await readJson(models, join(folder, 'config.json'), BlipConfig, name, false))!;
  const pre = await readJson(models, join(folder, 'preprocessor_config.json'), Preprocessor, name, true);
  // The tokenizer's files sit beside config.json (resolved, so contained in the models directory).
  const tokenizer = await WordPieceTokenizer.load(dirname(await models.resolve(join(folder, 'config.json'))));
  const t = config.text_config;
  for (const [role, id] of [['bos', t.bos_token_id], ['sep', t.sep_token_id], ['pad', t.pad_token_id]] as const) {
    if (tokenizer.tokenOf(id) === undefined) throw invalid(name, `names a ${role} token id (${id}) outside its vocabulary.`);
  }
  const size = pre?.size;
  const side = config.vision_config?.image_size ?? CAPTIONER_DEFAULTS.imageSize;
  return {
    name, encoderPath, decoderPath, tokenizer,
    bosId: t.bos_token_id, eosId: t.sep_token_id, padId: t.pad_token_id,
    width: typeof size === 'number' ? size : size?.width ?? side,
    height: typeof size === 'number' ? size : size?.height ?? side,
    mean: pre?.image_mean ?? CAPTIONER_DEFAULTS.mean,
    std: pre?.image_std ?? CAPTIONER_DEFAULTS.std,
    rescale: pre?.rescale_factor ?? 1 / 255,
  };
}

/** BLIP's eval transform: HWC 8-bit RGB w×h → [1,3,S,S] float32, (p·rescale − mean)/std per channel. */
export async function captionerPixels(c: Pick<Captioner, 'width' | 'height' | 'mean' | 'std' | 'rescale'>, rgb: Uint8Array, w: number, h: number): Promise<Float32Array> {
  const resized = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .resize(c.width, c.height, { fit: 'fill', kernel: 'cubic' })
    .raw({ depth: 'uchar' })
    .toBuffer();
  const plane = c.width * c.height;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    for (let ch = 0; ch < 3; ch++) out[ch * plane + p] = (resized[p * 3 + ch]! * c.rescale - c.mean[ch]!) / c.std[ch]!;
  }
  return out;
}

type SessionInfo = Pick<InferenceSession, 'inputNames' | 'outputNames' | 'inputMetadata' | 'outputMetadata'>;

interface CacheSlot {
  readonly input: string;
  readonly output: string;
  /** [heads, head dim] from the input's metadata. */
  readonly heads: number;
  readonly headDim: number;
}

function intTensor(type: string | undefined, values: readonly number[], dims: readonly number[]): Tensor {
  return type === 'int32' ? new Tensor('int32', Int32Array.from(values), dims) : new Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

function floatOutput(out: InferenceSession.ReturnType, name: string): Float32Array {
  const t = out[name];
  if (!t || !(t.data instanceof Float32Array)) throw new P2pzError('E_MODEL_INVALID', `The captioner's decoder gave no float32 "${name}".`);
  return t.data;
}

/** A decoding session over the decoder graph: feeds the key/value cache when the graph has one. */
class DecoderRun {
  readonly #models: ModelSessions;
  readonly #c: Captioner;
  readonly #session: SessionInfo;
  readonly #slots: CacheSlot[];
  readonly #image: Float32Array;
  readonly #imageDims: readonly number[];
  /** The cache of the last call: per slot, [rows, heads, length, dh]. */
  #cache: Float32Array[] | null = null;
  #cacheLength = 0;

  constructor(models: ModelSessions, c: Captioner, session: SessionInfo, image: Float32Array, imageDims: readonly number[]) {
    this.#models = models;
    this.#c = c;
    this.#session = session;
    this.#image = image;
    this.#imageDims = imageDims;
    this.#slots = [];
    for (const m of session.inputMetadata) {
      const match = /^past_key_values\.(.+)$/.exec(m.name);
      if (!match) continue;
      const output = `present.${match[1]}`;
      if (!session.outputNames.includes(output)) throw invalid(c.name, `has a cache input ${m.name} without the output ${output}.`);
      const shape = m.isTensor ? m.shape : [];
      const heads = shape[1];
      const headDim = shape[3];
      if (shape.length !== 4 || typeof heads !== 'number' || typeof headDim !== 'number') throw invalid(c.name, `has a cache input ${m.name} of unknown heads or width.`);
      this.#slots.push({ input: m.name, output, heads, headDim });
    }
    if (!session.outputNames.includes('logits')) throw invalid(c.name, 'has a decoder without a "logits" output.');
  }

  #type(name: string): string | undefined {
    const m = this.#session.inputMetadata.find((v) => v.name === name);
    return m?.isTensor ? m.type : undefined;
  }

  /** Rows of the cache reordered by `parents` (row r continues row parents[r]). */
  #reorder(parents: readonly number[]): Float32Array[] {
    return this.#cache!.map((data, s) => {
      const slot = this.#slots[s]!;
      const rowSize = slot.heads * this.#cacheLength * slot.headDim;
      const out = new Float32Array(parents.length * rowSize);
      parents.forEach((p, r) => out.set(data.subarray(p * rowSize, (p + 1) * rowSize), r * rowSize));
      return out;
    });
  }

  readonly next = async (rows: readonly (readonly number[])[], parents: readonly number[] | null): Promise<Float32Array[]> => {
    const B = rows.length;
    const cached = this.#slots.length > 0 && parents !== null && this.#cache !== null;
    const newTokens = cached ? rows.map((r) => r.slice(-1)) : rows.map((r) => [...r]);
    const L = newTokens[0]!.length;
    const past = cached ? this.#cacheLength : 0;
    const feeds: Record<string, Tensor> = {
      input_ids: intTensor(this.#type('input_ids'), newTokens.flat(), [B, L]),
    };
    const names = this.#session.inputNames;
    if (names.includes('encoder_hidden_states')) {
      const [, P, Dv] = this.#imageDims as [number, number, number];
      const tiled = new Float32Array(B * P * Dv);
      for (let r = 0; r < B; r++) tiled.set(this.#image, r * P * Dv);
      feeds['encoder_hidden_states'] = new Tensor('float32', tiled, [B, P, Dv]);
      if (names.includes('encoder_attention_mask')) feeds['encoder_attention_mask'] = intTensor(this.#type('encoder_attention_mask'), new Array<number>(B * P).fill(1), [B, P]);
    } else {
      throw invalid(this.#c.name, 'has a decoder without an "encoder_hidden_states" input.');
    }
    if (names.includes('attention_mask')) feeds['attention_mask'] = intTensor(this.#type('attention_mask'), new Array<number>(B * (past + L)).fill(1), [B, past + L]);
    if (names.includes('use_cache_branch')) feeds['use_cache_branch'] = new Tensor('bool', Uint8Array.of(cached ? 1 : 0), [1]);
    const pastData = cached ? this.#reorder(parents) : null;
    this.#slots.forEach((slot, s) => {
      const data = pastData ? pastData[s]! : new Float32Array(0);
      feeds[slot.input] = new Tensor('float32', data, [B, slot.heads, past, slot.headDim]);
    });
    const out = await this.#models.run(this.#c.decoderPath, feeds);
    const logits = out['logits'];
    if (!logits || !(logits.data instanceof Float32Array) || logits.dims.length !== 3 || logits.dims[0] !== B || logits.dims[1] !== L) {
      throw invalid(this.#c.name, `returned logits of shape [${logits?.dims.join(',') ?? ''}], not [${B},${L},V].`);
    }
    const V = logits.dims[2]!;
    const data = logits.data;
    if (this.#slots.length > 0) {
      this.#cache = this.#slots.map((slot) => floatOutput(out, slot.output));
      this.#cacheLength = past + L;
    }
    return rows.map((_, r) => data.slice((r * L + L - 1) * V, (r * L + L) * V));
  };
}

/** Captions an image (HWC 8-bit RGB, w×h) with an installed captioner. */
export async function captionImage(models: ModelSessions, c: Captioner, rgb: Uint8Array, w: number, h: number, options: CaptionOptions = {}): Promise<CaptionResult> {
  const D = CAPTIONER_DEFAULTS;
  const pixels = await captionerPixels(c, rgb, w, h);
  options.signal?.throwIfAborted();
  const encoder = await models.get(c.encoderPath);
  const inputName = encoder.inputNames.includes('pixel_values') ? 'pixel_values' : encoder.inputNames[0];
  if (inputName === undefined) throw invalid(c.name, 'has an encoder without inputs.');
  const encoded = await models.run(c.encoderPath, { [inputName]: new Tensor('float32', pixels, [1, 3, c.height, c.width]) });
  const outName = encoder.outputNames.includes('last_hidden_state') ? 'last_hidden_state' : encoder.outputNames[0]!;
  const image = encoded[outName];
  if (!image || !(image.data instanceof Float32Array) || image.dims.length !== 3) throw invalid(c.name, 'has an encoder whose output is not [1, tokens, width].');
  const decoder = await models.get(c.decoderPath);
  const run = new DecoderRun(models, c, decoder, image.data, image.dims);
  const promptText = options.prompt ?? D.prompt;
  const prompt = [c.bosId, ...c.tokenizer.encode(promptText)];
  const result = await beamSearch(prompt, run.next, {
    numBeams: options.search?.numBeams ?? D.numBeams,
    maxLength: options.search?.maxLength ?? D.maxLength,
    minLength: options.search?.minLength ?? D.minLength,
    repetitionPenalty: options.search?.repetitionPenalty ?? D.repetitionPenalty,
    lengthPenalty: options.search?.lengthPenalty ?? D.lengthPenalty,
    eosId: c.eosId,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const ids = result.sequence.slice(prompt.length);
  const special = new Set([c.bosId, c.eosId, c.padId]);
  for (const t of ['[CLS]', '[SEP]', '[PAD]', '[MASK]', '[UNK]', '[DEC]', '[ENC]']) {
    const id = c.tokenizer.idOf(t);
    if (id !== undefined && t !== '[UNK]') special.add(id);
  }
  const caption = c.tokenizer.decode(ids, special).replace(/\s+/g, ' ').trim();
  return { caption, captioner: c.name, ids, finished: result.finished };
}
