// CLIP's text encoder as Stable Diffusion conditions on it (docs/DESIGN.md §3 step 2): text → tokenizer
// (77 ids, max-length padding) → `last_hidden_state` [B,77,D]. The ids' element type (int32 or int64)
// is the session's; batches are split so that a thousand-sentence bank never needs one huge run.
import { Tensor } from 'onnxruntime-node';
import { P2pzError } from '../../../shared/protocol/index.js';
import type { DiffusionModel } from '../diffusion-model.js';
import { outputData } from '../diffusion-model.js';
import type { ModelSessions } from '../context.js';
import { idsToInt32, idsToInt64 } from './clip-tokenizer.js';

export const TEXT_ENCODER_DEFAULTS = Object.freeze({
  /** Sentences per text-encoder run. */
  batch: 16,
});

export interface TextEmbedding {
  /** [B,T,D] float32, C order. */
  readonly data: Float32Array;
  readonly dims: readonly [number, number, number];
}

/** Token ids of each text (tokenizer's maxLength each). */
export function tokenizeAll(model: Pick<DiffusionModel, 'tokenizer'>, texts: readonly string[]): number[][] {
  return texts.map((t) => [...model.tokenizer.encode(t).ids]);
}

/**
 * e = E_text(ids): ids [B,T] → last_hidden_state [B,T,D], in runs of at most `batch` rows.
 * `onBatch` is called after each run (progress, cancel checks).
 */
export async function encodeTokenIds(
  models: ModelSessions,
  model: Pick<DiffusionModel, 'paths' | 'textEncoder' | 'textWidth'>,
  ids: readonly (readonly number[])[],
  options: { batch?: number; onBatch?: (done: number, total: number) => void } = {},
): Promise<TextEmbedding> {
  const batch = options.batch ?? TEXT_ENCODER_DEFAULTS.batch;
  const T = ids[0]?.length ?? 0;
  if (ids.length === 0 || T === 0 || ids.some((r) => r.length !== T)) throw new P2pzError('E_INTERNAL', 'encodeTokenIds: empty or ragged ids.');
  const D = model.textWidth;
  const out = new Float32Array(ids.length * T * D);
  for (let start = 0; start < ids.length; start += batch) {
    const rows = ids.slice(start, start + batch);
    const flat = rows.flat();
    const input = model.textEncoder.ids === 'int64'
      ? new Tensor('int64', idsToInt64(flat), [rows.length, T])
      : new Tensor('int32', idsToInt32(flat), [rows.length, T]);
    const result = await models.run(model.paths.textEncoder, { [model.textEncoder.input]: input });
    out.set(outputData(result, model.textEncoder.output, rows.length * T * D), start * T * D);
    options.onBatch?.(Math.min(start + batch, ids.length), ids.length);
  }
  return { data: out, dims: [ids.length, T, D] };
}

/** e = E_text(tokenize(text)) for one text: [1,T,D], with its ids. */
export async function encodeText(
  models: ModelSessions,
  model: Pick<DiffusionModel, 'paths' | 'textEncoder' | 'textWidth' | 'tokenizer'>,
  text: string,
): Promise<{ ids: number[]; embedding: TextEmbedding }> {
  const [ids] = tokenizeAll(model, [text]);
  return { ids: ids!, embedding: await encodeTokenIds(models, model, [ids!]) };
}
