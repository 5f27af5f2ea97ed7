// A CLIP-style text encoder (transformers' CLIPTextModel as exported for Stable Diffusion):
//   h₀ = E_tok[input_ids] + E_pos[0..S)                                       [B,S,D]
//   per layer: h += Attn(LN₁(h)) with a causal mask;  h += fc2(act(fc1(LN₂(h))))   (pre-LN)
//   last_hidden_state = LN_final(h)                                          [B,S,D]
// Position i attends to positions ≤ i only, so changing a later token never changes earlier outputs.
import { GraphBuilder, attr } from '../graph/builder.js';
import { FLAVOURS, Layers } from './layers.js';
import type { Flavour, WriteComponentOptions } from './layers.js';

export interface TextEncoderConfig {
  readonly vocabSize: number;
  /** D: width of the hidden states (the UNet's cross-attention dim). */
  readonly hiddenSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly intermediateSize: number;
  /** S: the context length (77 for CLIP). */
  readonly maxPositions: number;
  readonly activation: 'quick_gelu' | 'gelu';
  readonly layerNormEps: number;
}

export const TEXT_ENCODER_IO = Object.freeze({ input: 'input_ids', output: 'last_hidden_state' });

/** Float32's lowest value: what transformers adds to masked attention scores. */
const MASKED = -3.4028234663852886e38;

/** Adds the encoder to `b`: graph input `input_ids` ([batch, sequence], `idType`) and output `last_hidden_state`. */
export function buildTextEncoder(b: GraphBuilder, cfg: TextEncoderConfig, flavour: Flavour, idType: 'int32' | 'int64'): void {
  const L = new Layers(b, flavour);
  const D = cfg.hiddenSize;
  const S = cfg.maxPositions;
  const ids = b.input(TEXT_ENCODER_IO.input, idType, ['batch', 'sequence']);
  const out = b.scope('text_model', () => {
    const seq = L.dim(ids, 1);
    const h0 = b.scope('embeddings', () => {
      const tok = b.scope('token_embedding', () => b.param('weight', [cfg.vocabSize, D], { kind: 'normal', std: 0.02 }));
      const pos = b.scope('position_embedding', () => b.param('weight', [S, D], { kind: 'normal', std: 0.01 }));
      const allPositions = b.param('position_ids', [1, S], { kind: 'values', data: BigInt64Array.from({ length: S }, (_, i) => BigInt(i)) });
      const positions = b.op('Slice', [allPositions, b.constInt64([0]), seq, b.constInt64([1])]);
      const te = b.op('Gather', [tok, ids], { axis: attr.i(0) });
      const pe = b.op('Gather', [pos, positions], { axis: attr.i(0) });
      return b.op('Add', [te, pe]);
    });
    // Causal mask M[i,j] = 0 for j ≤ i, float32 min for j > i; sliced to [seq, seq].
    const maskValues = new Float32Array(S * S);
    for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) maskValues[i * S + j] = MASKED;
    const fullMask = b.tensor('text_model.causal_attention_mask', [S, S], { kind: 'values', data: maskValues });
    const mask = b.op('Slice', [fullMask, b.constInt64([0, 0]), b.op('Concat', [seq, seq], { axis: attr.i(0) }), b.constInt64([0, 1])]);
    let h = h0;
    b.scope('encoder', () => {
      for (let l = 0; l < cfg.layers; l++) {
        h = b.scope(`layers.${l}`, () => {
          const n1 = L.layerNorm('layer_norm1', h, D, cfg.layerNormEps);
          const a = b.scope('self_attn', () =>
            L.attention(n1, n1, {
              heads: cfg.heads, dim: D, contextDim: D, qkvBias: true, mask,
              names: { q: 'q_proj', k: 'k_proj', v: 'v_proj', out: 'out_proj' },
            }));
          const h1 = b.op('Add', [h, a]);
          const m = b.scope('mlp', () => {
            const f1 = L.linear('fc1', L.layerNorm('layer_norm2', h1, D, cfg.layerNormEps), D, cfg.intermediateSize);
            const act = cfg.activation === 'quick_gelu' ? L.quickGelu(f1) : L.gelu(f1);
            return L.linear('fc2', act, cfg.intermediateSize, D);
          });
          return b.op('Add', [h1, m]);
        });
      }
    });
    return L.layerNorm('final_layer_norm', h, D, cfg.layerNormEps);
  });
  b.output(out, TEXT_ENCODER_IO.output, 'float32', ['batch', 'sequence', D]);
}

/** Writes the text encoder to `path`. Token ids are int32 in the opset14 flavour (diffusers' script)
 *  and int64 in the opset17 flavour (optimum). */
export async function writeTextEncoder(path: string, cfg: TextEncoderConfig, options: WriteComponentOptions): Promise<void> {
  const b = new GraphBuilder({ seed: options.seed, opsetVersion: FLAVOURS[options.flavour].opsetVersion, graphName: 'text_encoder' });
  buildTextEncoder(b, cfg, options.flavour, options.flavour === 'opset14' ? 'int32' : 'int64');
  await b.write(path, options);
}
