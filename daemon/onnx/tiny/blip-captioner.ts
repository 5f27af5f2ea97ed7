// A tiny seeded BLIP captioner (transformers' BlipForConditionalGeneration, Li et al. 2022) in the
// encoder + decoder-with-past ONNX layout that optimum and transformers.js use for image-to-text:
//
//   config.json, generation_config.json, preprocessor_config.json, vocab.txt, tokenizer_config.json
//   onnx/encoder_model.onnx          pixel_values f32 [B,3,S,S] → last_hidden_state [B,1+N,Dv]
//   onnx/decoder_model_merged.onnx   input_ids i64 [B,L], attention_mask i64 [B,P+L],
//                                    encoder_hidden_states [B,1+N,Dv], encoder_attention_mask i64 [B,1+N],
//                                    past_key_values.{i}.key|value [B,H,P,dh], use_cache_branch bool [1]
//                                    → logits [B,L,V], present.{i}.key|value [B,H,P+L,dh]
//
// Vision (BlipVisionModel): patch Conv(k = s = patch) → [CLS; patches] + positions → pre-LN layers
// (h += Attn(LN₁ h); h += fc2(gelu(fc1(LN₂ h)))) → post_layernorm.
// Text (BlipTextLMHeadModel, BERT post-LN): e = LN(E_word[ids] + E_pos[P … P+L)); per layer
// h = LN(h + SelfAttn(h; past, causal)), h = LN(h + CrossAttn(h, image)), h = LN(h + W₂ gelu(W₁ h));
// logits = W_dec LN(gelu(W_t h)) + b. Only self-attention keys and values are cached, as in BLIP.
// `use_cache_branch` is accepted (the merged export's switch); this graph computes both branches the
// same way, since concatenating an empty past is the no-cache branch. Weights are random: captions are
// word salad from the tiny vocabulary, but every shape, name and dtype is the real layout's.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GraphBuilder, attr } from '../graph/builder.js';
import { Layers } from './layers.js';
import { TOKENIZER_WORDS } from './tokenizer-files.js';

export interface TinyCaptionerConfig {
  readonly imageSize: number;
  readonly patchSize: number;
  readonly visionWidth: number;
  readonly visionLayers: number;
  readonly visionHeads: number;
  readonly textWidth: number;
  readonly textLayers: number;
  readonly textHeads: number;
  readonly intermediateSize: number;
  readonly maxPositions: number;
  readonly layerNormEps: number;
}

export const TINY_CAPTIONER: TinyCaptionerConfig = Object.freeze({
  imageSize: 32, patchSize: 8, visionWidth: 32, visionLayers: 1, visionHeads: 2,
  textWidth: 32, textLayers: 2, textHeads: 2, intermediateSize: 64, maxPositions: 64, layerNormEps: 1e-12,
});

export const TINY_CAPTIONER_DEFAULTS = Object.freeze({
  seed: 7,
  /** The ONNX files, relative to the captioner's folder (transformers.js' names). */
  encoder: 'onnx/encoder_model.onnx',
  decoder: 'onnx/decoder_model_merged.onnx',
});

/** BERT's special tokens first (as in bert-base-uncased, whose [PAD] is 0), then the words, a few
 *  continuation pieces, and BLIP's added decoder start token [DEC] last (30522 in BLIP). */
export function tinyCaptionerVocab(): string[] {
  const words = [...new Set(TOKENIZER_WORDS)];
  return ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...words, '.', ',', '##s', '##es', '##ing', '##ed', '##y', '[DEC]'];
}

/** Float32's lowest value: what transformers adds to masked attention scores. */
const MASKED = -3.4028234663852886e38;

function buildEncoder(b: GraphBuilder, cfg: TinyCaptionerConfig): void {
  const L = new Layers(b, 'opset17');
  const D = cfg.visionWidth;
  const grid = cfg.imageSize / cfg.patchSize;
  const x = b.input('pixel_values', 'float32', ['batch_size', 3, cfg.imageSize, cfg.imageSize]);
  const out = b.scope('vision_model', () => {
    const h0 = b.scope('embeddings', () => {
      const patches = L.conv('patch_embedding', x, 3, D, { kernel: cfg.patchSize, stride: cfg.patchSize, pads: [0, 0, 0, 0] });
      const flat = b.op('Transpose', [b.op('Reshape', [patches, b.constInt64([0, D, -1])])], { perm: attr.ints([0, 2, 1]) });
      const cls = b.param('class_embedding', [1, 1, D], { kind: 'normal', std: 0.02 });
      const batch = L.dim(x, 0);
      const clsB = b.op('Expand', [cls, L.shapeOf([batch, b.constInt64([1]), b.constInt64([D])])]);
      const tokens = b.op('Concat', [clsB, flat], { axis: attr.i(1) });
      const pos = b.param('position_embedding', [1, 1 + grid * grid, D], { kind: 'normal', std: 0.02 });
      return b.op('Add', [tokens, pos]);
    });
    let h = h0;
    b.scope('encoder', () => {
      for (let l = 0; l < cfg.visionLayers; l++) {
        h = b.scope(`layers.${l}`, () => {
          const n1 = L.layerNorm('layer_norm1', h, D, 1e-5);
          const a = b.scope('self_attn', () => L.attention(n1, n1, {
            heads: cfg.visionHeads, dim: D, contextDim: D, qkvBias: true, names: { q: 'q', k: 'k', v: 'v', out: 'projection' },
          }));
          const h1 = b.op('Add', [h, a]);
          const m = b.scope('mlp', () => L.linear('fc2', L.gelu(L.linear('fc1', L.layerNorm('layer_norm2', h1, D, 1e-5), D, cfg.intermediateSize)), cfg.intermediateSize, D));
          return b.op('Add', [h1, m]);
        });
      }
    });
    return L.layerNorm('post_layernorm', h, D, 1e-5);
  });
  b.output(out, 'last_hidden_state', 'float32', ['batch_size', 1 + grid * grid, D]);
}

/** [B,T,D] → [B,H,T,dh]. */
function toHeads(b: GraphBuilder, t: string, heads: number, dh: number): string {
  return b.op('Transpose', [b.op('Reshape', [t, b.constInt64([0, 0, heads, dh])])], { perm: attr.ints([0, 2, 1, 3]) });
}

/** softmax(q·kᵀ/√dh + mask)·v over [B,H,·,dh] heads, merged back to [B,T,D]. */
function attend(b: GraphBuilder, qh: string, kh: string, vh: string, mask: string, dh: number, D: number): string {
  const scores = b.op('Add', [b.op('Mul', [b.op('MatMul', [qh, b.op('Transpose', [kh], { perm: attr.ints([0, 1, 3, 2]) })]), b.constFloat([1 / Math.sqrt(dh)])]), mask]);
  const probs = b.op('Softmax', [scores], { axis: attr.i(-1) });
  const ctx = b.op('Transpose', [b.op('MatMul', [probs, vh])], { perm: attr.ints([0, 2, 1, 3]) });
  return b.op('Reshape', [ctx, b.constInt64([0, 0, D])]);
}

/** An int64 [B,S] 0/1 attention mask → additive [B,1,1,S]: 0 where 1, float32 min where 0. */
function additiveMask(b: GraphBuilder, mask: string): string {
  const f = b.op('Cast', [mask], { to: attr.i(1) });
  const m = b.op('Mul', [b.op('Sub', [b.constFloat([1]), f]), b.constFloat([MASKED])]);
  return b.op('Unsqueeze', [m, b.constInt64([1, 2])]);
}

function buildDecoder(b: GraphBuilder, cfg: TinyCaptionerConfig, vocabSize: number): void {
  const L = new Layers(b, 'opset17');
  const D = cfg.textWidth;
  const H = cfg.textHeads;
  const dh = D / H;
  const eps = cfg.layerNormEps;
  const grid = cfg.imageSize / cfg.patchSize;
  const P = 1 + grid * grid;
  const ids = b.input('input_ids', 'int64', ['batch_size', 'sequence_length']);
  const attentionMask = b.input('attention_mask', 'int64', ['batch_size', 'past_sequence_length + sequence_length']);
  const image = b.input('encoder_hidden_states', 'float32', ['batch_size', P, cfg.visionWidth]);
  const imageMask = b.input('encoder_attention_mask', 'int64', ['batch_size', P]);
  const pasts: [string, string][] = [];
  for (let l = 0; l < cfg.textLayers; l++) {
    pasts.push([
      b.input(`past_key_values.${l}.key`, 'float32', ['batch_size', H, 'past_sequence_length', dh]),
      b.input(`past_key_values.${l}.value`, 'float32', ['batch_size', H, 'past_sequence_length', dh]),
    ]);
  }
  b.input('use_cache_branch', 'bool', [1]);

  // Positions P … P+L−1 of the new tokens; the causal mask lets query i see keys j ≤ P + i.
  const scalar = (t: string, axis: number): string => b.op('Gather', [b.op('Shape', [t]), b.op('Constant', [], { value: attr.t({ dataType: 7, dims: [], rawData: new Uint8Array(BigInt64Array.of(BigInt(axis)).buffer) }) })], { axis: attr.i(0) });
  const past = scalar(pasts[0]![0], 2);
  const total = b.op('Add', [past, scalar(ids, 1)]);
  const one = b.op('Constant', [], { value: attr.t({ dataType: 7, dims: [], rawData: new Uint8Array(BigInt64Array.of(1n).buffer) }) });
  const zero = b.op('Constant', [], { value: attr.t({ dataType: 7, dims: [], rawData: new Uint8Array(BigInt64Array.of(0n).buffer) }) });
  const queryPos = b.op('Range', [past, total, one]);
  const keyPos = b.op('Range', [zero, total, one]);
  const later = b.op('Greater', [b.op('Unsqueeze', [keyPos, b.constInt64([0])]), b.op('Unsqueeze', [queryPos, b.constInt64([1])])]);
  const causal = b.op('Where', [later, b.constFloat([MASKED]), b.constFloat([0])]);
  const selfMask = b.op('Add', [causal, additiveMask(b, attentionMask)]);
  const crossMask = additiveMask(b, imageMask);

  const logits = b.scope('text_decoder', () => {
    const h0 = b.scope('bert.embeddings', () => {
      const words = b.scope('word_embeddings', () => b.param('weight', [vocabSize, D], { kind: 'normal', std: 0.5 }));
      const positions = b.scope('position_embeddings', () => b.param('weight', [cfg.maxPositions, D], { kind: 'normal', std: 0.1 }));
      const e = b.op('Add', [b.op('Gather', [words, ids], { axis: attr.i(0) }), b.op('Gather', [positions, queryPos], { axis: attr.i(0) })]);
      return L.layerNorm('LayerNorm', e, D, eps);
    });
    let h = h0;
    b.scope('bert.encoder', () => {
      for (let l = 0; l < cfg.textLayers; l++) {
        h = b.scope(`layer.${l}`, () => {
          const selfOut = b.scope('attention', () => {
            const [pk, pv] = pasts[l]!;
            const a = b.scope('self', () => {
              const q = toHeads(b, L.linear('query', h, D, D), H, dh);
              const k = b.op('Concat', [pk, toHeads(b, L.linear('key', h, D, D), H, dh)], { axis: attr.i(2) }, { outputs: [`present.${l}.key`] });
              const v = b.op('Concat', [pv, toHeads(b, L.linear('value', h, D, D), H, dh)], { axis: attr.i(2) }, { outputs: [`present.${l}.value`] });
              b.output(k, `present.${l}.key`, 'float32', ['batch_size', H, 'past_sequence_length + sequence_length', dh]);
              b.output(v, `present.${l}.value`, 'float32', ['batch_size', H, 'past_sequence_length + sequence_length', dh]);
              return attend(b, q, k, v, selfMask, dh, D);
            });
            return b.scope('output', () => L.layerNorm('LayerNorm', b.op('Add', [L.linear('dense', a, D, D), h]), D, eps));
          });
          const crossOut = b.scope('crossattention', () => {
            const a = b.scope('self', () => {
              const q = toHeads(b, L.linear('query', selfOut, D, D), H, dh);
              const k = toHeads(b, L.linear('key', image, cfg.visionWidth, D), H, dh);
              const v = toHeads(b, L.linear('value', image, cfg.visionWidth, D), H, dh);
              return attend(b, q, k, v, crossMask, dh, D);
            });
            return b.scope('output', () => L.layerNorm('LayerNorm', b.op('Add', [L.linear('dense', a, D, D), selfOut]), D, eps));
          });
          const inner = b.scope('intermediate', () => L.gelu(L.linear('dense', crossOut, D, cfg.intermediateSize)));
          return b.scope('output', () => L.layerNorm('LayerNorm', b.op('Add', [L.linear('dense', inner, cfg.intermediateSize, D), crossOut]), D, eps));
        });
      }
    });
    return b.scope('cls.predictions', () => {
      const t = b.scope('transform', () => L.layerNorm('LayerNorm', L.gelu(L.linear('dense', h, D, D)), D, eps));
      return L.linear('decoder', t, D, vocabSize, { gain: 4 });
    });
  });
  b.output(logits, 'logits', 'float32', ['batch_size', 'sequence_length', vocabSize]);
}

export interface TinyCaptionerOptions {
  readonly seed?: number;
  readonly config?: TinyCaptionerConfig;
}

/** Writes the captioner folder `dir` (the layout above). Returns the vocabulary it wrote. */
export async function writeTinyCaptioner(dir: string, options: TinyCaptionerOptions = {}): Promise<{ vocab: string[] }> {
  const cfg = options.config ?? TINY_CAPTIONER;
  const seed = options.seed ?? TINY_CAPTIONER_DEFAULTS.seed;
  const vocab = tinyCaptionerVocab();
  await mkdir(join(dir, 'onnx'), { recursive: true });
  const enc = new GraphBuilder({ seed, graphName: 'blip_vision_encoder' });
  buildEncoder(enc, cfg);
  await enc.write(join(dir, TINY_CAPTIONER_DEFAULTS.encoder), { weights: 'inline' });
  const dec = new GraphBuilder({ seed: seed + 1, graphName: 'blip_text_decoder' });
  buildDecoder(dec, cfg, vocab.length);
  await dec.write(join(dir, TINY_CAPTIONER_DEFAULTS.decoder), { weights: 'inline' });
  const idOf = (t: string): number => vocab.indexOf(t);
  const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
  await writeFile(join(dir, 'config.json'), json({
    architectures: ['BlipForConditionalGeneration'],
    model_type: 'blip',
    text_config: {
      model_type: 'blip_text_model', vocab_size: vocab.length, hidden_size: cfg.textWidth, num_hidden_layers: cfg.textLayers,
      num_attention_heads: cfg.textHeads, max_position_embeddings: cfg.maxPositions,
      bos_token_id: idOf('[DEC]'), sep_token_id: idOf('[SEP]'), pad_token_id: idOf('[PAD]'), eos_token_id: idOf('[SEP]'),
    },
    vision_config: { model_type: 'blip_vision_model', image_size: cfg.imageSize, patch_size: cfg.patchSize, hidden_size: cfg.visionWidth },
  }));
  await writeFile(join(dir, 'preprocessor_config.json'), json({
    image_processor_type: 'BlipImageProcessor', do_resize: true, size: { height: cfg.imageSize, width: cfg.imageSize }, resample: 3,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711],
  }));
  await writeFile(join(dir, 'generation_config.json'), json({ bos_token_id: idOf('[DEC]'), eos_token_id: idOf('[SEP]'), pad_token_id: idOf('[PAD]') }));
  await writeFile(join(dir, 'tokenizer_config.json'), json({ tokenizer_class: 'BertTokenizer', do_lower_case: true, bos_token: '[DEC]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', cls_token: '[CLS]' }));
  await writeFile(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  return { vocab };
}
