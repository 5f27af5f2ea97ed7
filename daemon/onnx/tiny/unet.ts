// A UNet2DConditionModel-style denoiser ε_θ(z_t, t, c) with diffusers' module layout and export names:
//   time_proj (sinusoidal, flip_sin_to_cos) → time_embedding (linear_1, SiLU, linear_2)   temb [B,4·C₀]
//   conv_in → down_blocks.i (resnets.j [+ attentions.j]; downsamplers.0 = stride-2 conv except last)
//   → mid_block (resnets.0, attentions.0, resnets.1)
//   → up_blocks.i (Concat with the skip, resnets.j [+ attentions.j], layersPerBlock+1 of them;
//     upsamplers.0 = nearest Resize ×2 + conv except last) → conv_norm_out, SiLU, conv_out
// Transformer blocks: GroupNorm, proj_in, LN → self-attention (attn1), LN → cross-attention (attn2,
// K and V from encoder_hidden_states), LN → GEGLU feed-forward, proj_out, residual. With the SD 1.5
// configuration (channels [320,640,1280,1280], 2 layers, attention at the first three levels) there are
// 16 attn2 Softmax nodes: 6 down, 1 mid, 9 up.
// Inputs: sample f32 [B,4,h,w]; timestep int64 [B] (opset14 flavour) or f32 scalar (opset17 flavour);
// encoder_hidden_states f32 [B,S,D]. Output: out_sample f32 [B,4,h,w]. h and w must be multiples of
// 2^(levels−1).
import { DataType } from '../graph/onnx-proto.js';
import { GraphBuilder, attr } from '../graph/builder.js';
import { FLAVOURS, Layers } from './layers.js';
import type { Flavour, WriteComponentOptions } from './layers.js';

export interface UNetConfig {
  readonly inChannels: number;
  readonly outChannels: number;
  /** Channels per resolution level, C₀ first. */
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  /** Per down level, whether its blocks have transformer (attention) blocks; up levels mirror it. */
  readonly attentionLevels: readonly boolean[];
  readonly heads: number;
  /** D: width of encoder_hidden_states. */
  readonly crossAttentionDim: number;
  readonly normGroups: number;
  readonly normEps: number;
}

export const UNET_IO = Object.freeze({
  sample: 'sample',
  timestep: 'timestep',
  encoderHiddenStates: 'encoder_hidden_states',
  output: 'out_sample',
});

/** Where the weights go: diffusers' script writes `weights.pb`, optimum `model.onnx_data`. */
export const UNET_WEIGHTS_LOCATION: Readonly<Record<Flavour, string>> = Object.freeze({
  opset14: 'weights.pb',
  opset17: 'model.onnx_data',
});

interface Ctx {
  readonly b: GraphBuilder;
  readonly L: Layers;
  readonly cfg: UNetConfig;
  readonly temb: string;
  readonly tembDim: number;
  readonly context: string;
}

function resnet(c: Ctx, module: string, x: string, cin: number, cout: number): string {
  const { b, L, cfg } = c;
  return b.scope(module, () => {
    let h = L.silu(L.groupNorm('norm1', x, cin, cfg.normGroups, cfg.normEps));
    h = L.conv('conv1', h, cin, cout);
    // Time conditioning: h += time_emb_proj(SiLU(temb))[:, :, None, None].
    const t = L.linear2d('time_emb_proj', L.silu(c.temb), c.tembDim, cout);
    h = b.op('Add', [h, b.op('Unsqueeze', [t, b.constInt64([2, 3])])]);
    h = L.silu(L.groupNorm('norm2', h, cout, cfg.normGroups, cfg.normEps));
    h = L.conv('conv2', h, cout, cout);
    const shortcut = cin === cout ? x : L.conv('conv_shortcut', x, cin, cout, { kernel: 1 });
    return b.op('Add', [shortcut, h]);
  });
}

function transformer(c: Ctx, module: string, x: string, channels: number): string {
  const { b, L, cfg } = c;
  const C = channels;
  return b.scope(module, () => {
    const norm = L.groupNorm('norm', x, C, cfg.normGroups, 1e-6);
    const projIn = L.conv('proj_in', norm, C, C, { kernel: 1 });
    // [B,C,H,W] → [B,H·W,C]
    const batch = L.dim(x, 0);
    const height = L.dim(x, 2);
    const width = L.dim(x, 3);
    const channelsDim = b.constInt64([C]);
    const nhwc = b.op('Transpose', [projIn], { perm: attr.ints([0, 2, 3, 1]) });
    let h = b.op('Reshape', [nhwc, L.shapeOf([batch, b.op('Mul', [height, width]), channelsDim])]);
    h = b.scope('transformer_blocks.0', () => {
      const n1 = L.layerNorm('norm1', h, C, 1e-5);
      const a1 = b.scope('attn1', () => L.attention(n1, n1, attentionOptions(C, C, cfg.heads)));
      const h1 = b.op('Add', [a1, h]);
      const n2 = L.layerNorm('norm2', h1, C, 1e-5);
      const a2 = b.scope('attn2', () => L.attention(n2, c.context, attentionOptions(C, cfg.crossAttentionDim, cfg.heads)));
      const h2 = b.op('Add', [a2, h1]);
      const n3 = L.layerNorm('norm3', h2, C, 1e-5);
      const ff = b.scope('ff', () => {
        const inner = 4 * C;
        // GEGLU: [hidden, gate] = proj(x).chunk(2); hidden · GELU(gate)
        const geglu = b.scope('net.0', () => {
          const p = L.linear('proj', n3, C, 2 * inner);
          const [hidden, gate] = b.opN('Split', [p, b.constInt64([inner, inner])], { axis: attr.i(-1) }, { outputs: 2 }) as [string, string];
          return b.op('Mul', [hidden, L.gelu(gate)]);
        });
        return L.linear('net.2', geglu, inner, C);
      });
      return b.op('Add', [ff, h2]);
    });
    // [B,H·W,C] → [B,C,H,W]
    const back = b.op('Transpose', [b.op('Reshape', [h, L.shapeOf([batch, height, width, channelsDim])])], { perm: attr.ints([0, 3, 1, 2]) });
    const projOut = L.conv('proj_out', back, C, C, { kernel: 1 });
    return b.op('Add', [projOut, x]);
  });
}

function attentionOptions(dim: number, contextDim: number, heads: number) {
  return { heads, dim, contextDim, qkvBias: false, names: { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' } } as const;
}

/** Adds the UNet to `b` with graph inputs sample, timestep, encoder_hidden_states and output out_sample. */
export function buildUNet(b: GraphBuilder, cfg: UNetConfig, flavour: Flavour): void {
  const L = new Layers(b, flavour);
  const ch = cfg.blockOutChannels;
  const levels = ch.length;
  if (levels < 1 || cfg.attentionLevels.length !== levels) throw new RangeError('UNet: one attention flag per level is required');
  const c0 = ch[0] as number;
  const tembDim = 4 * c0;
  const sample = b.input(UNET_IO.sample, 'float32', ['batch', cfg.inChannels, 'height', 'width']);
  const timestepInput = flavour === 'opset14'
    ? b.input(UNET_IO.timestep, 'int64', ['batch'])
    : b.input(UNET_IO.timestep, 'float32', []);
  const context = b.input(UNET_IO.encoderHiddenStates, 'float32', ['batch', 'sequence', cfg.crossAttentionDim]);

  // 1. Timesteps t as float [B]: int64 [B] is cast; a scalar is broadcast to the batch (as diffusers'
  //    `timesteps.expand(sample.shape[0])`).
  const t = flavour === 'opset14'
    ? b.op('Cast', [timestepInput], { to: attr.i(DataType.FLOAT) })
    : b.op('Expand', [timestepInput, L.dim(sample, 0)]);

  // 2. Sinusoidal embedding: φ = t·ω_k, ω_k = exp(−ln(10⁴)·k/half), k < half = C₀/2; emb = [cos φ, sin φ]  [B,C₀]
  const emb = b.scope('time_proj', () => {
    const half = c0 / 2;
    const freqs = Float32Array.from({ length: half }, (_, k) => Math.exp((-Math.log(10000) * k) / half));
    const omega = b.anonymous('Mul', [1, half], { kind: 'values', data: freqs });
    const phase = b.op('Mul', [b.op('Unsqueeze', [t, b.constInt64([1])]), omega]);
    return b.op('Concat', [b.op('Cos', [phase]), b.op('Sin', [phase])], { axis: attr.i(-1) });
  });
  const temb = b.scope('time_embedding', () => L.linear2d('linear_2', L.silu(L.linear2d('linear_1', emb, c0, tembDim)), tembDim, tembDim));
  const c: Ctx = { b, L, cfg, temb, tembDim, context };

  // 3. Down path; every resnet/attention output and every downsample is kept for the up path.
  let h = L.conv('conv_in', sample, cfg.inChannels, c0);
  const skips: { value: string; channels: number }[] = [{ value: h, channels: c0 }];
  let hc = c0;
  for (let i = 0; i < levels; i++) {
    const out = ch[i] as number;
    b.scope(`down_blocks.${i}`, () => {
      for (let j = 0; j < cfg.layersPerBlock; j++) {
        h = resnet(c, `resnets.${j}`, h, hc, out);
        hc = out;
        if (cfg.attentionLevels[i]) h = transformer(c, `attentions.${j}`, h, out);
        skips.push({ value: h, channels: out });
      }
      if (i < levels - 1) {
        h = b.scope('downsamplers.0', () => L.conv('conv', h, out, out, { stride: 2 }));
        skips.push({ value: h, channels: out });
      }
    });
  }

  // 4. Mid block.
  b.scope('mid_block', () => {
    h = resnet(c, 'resnets.0', h, hc, hc);
    h = transformer(c, 'attentions.0', h, hc);
    h = resnet(c, 'resnets.1', h, hc, hc);
  });

  // 5. Up path: Concat the skip on channels before each resnet; nearest ×2 + conv between levels.
  const rev = [...ch].reverse();
  const revAttention = [...cfg.attentionLevels].reverse();
  for (let i = 0; i < levels; i++) {
    const out = rev[i] as number;
    b.scope(`up_blocks.${i}`, () => {
      for (let j = 0; j <= cfg.layersPerBlock; j++) {
        const skip = skips.pop();
        if (!skip) throw new Error('UNet: skip stack exhausted');
        const cat = b.op('Concat', [h, skip.value], { axis: attr.i(1) });
        h = resnet(c, `resnets.${j}`, cat, hc + skip.channels, out);
        hc = out;
        if (revAttention[i]) h = transformer(c, `attentions.${j}`, h, out);
      }
      if (i < levels - 1) {
        h = L.upsample(h, out);
      }
    });
  }

  // 6. Output head.
  h = L.silu(L.groupNorm('conv_norm_out', h, c0, cfg.normGroups, cfg.normEps));
  h = L.conv('conv_out', h, c0, cfg.outChannels);
  b.output(h, UNET_IO.output, 'float32', ['batch', cfg.outChannels, 'height', 'width']);
}

/** Names of the cross-attention Softmax nodes in graph order (down, mid, up), as the export names them. */
export function crossAttentionSoftmaxNames(cfg: UNetConfig): string[] {
  const names: string[] = [];
  const levels = cfg.blockOutChannels.length;
  const name = (block: string, j: number): string => `/${block}/attentions.${j}/transformer_blocks.0/attn2/Softmax`;
  for (let i = 0; i < levels; i++) if (cfg.attentionLevels[i]) for (let j = 0; j < cfg.layersPerBlock; j++) names.push(name(`down_blocks.${i}`, j));
  names.push(name('mid_block', 0));
  const rev = [...cfg.attentionLevels].reverse();
  for (let i = 0; i < levels; i++) if (rev[i]) for (let j = 0; j <= cfg.layersPerBlock; j++) names.push(name(`up_blocks.${i}`, j));
  return names;
}

export type WriteUNetOptions = WriteComponentOptions;

/** Writes the UNet to `path` with its weights in one external file beside it (streamed, never held
 *  whole in memory). */
export async function writeUNet(path: string, cfg: UNetConfig, options: WriteUNetOptions): Promise<void> {
  const b = new GraphBuilder({ seed: options.seed, opsetVersion: FLAVOURS[options.flavour].opsetVersion, graphName: 'unet' });
  buildUNet(b, cfg, options.flavour);
  await b.write(path, { location: UNET_WEIGHTS_LOCATION[options.flavour], ...options, weights: 'external' });
}
