// An AutoencoderKL-style VAE in diffusers' layout, as the two ONNX exports split it:
//   vae_encoder: sample x ∈ [-1,1] [B,3,H,W] → encoder (conv_in; down_blocks.i: resnets, stride-2
//     downsample (asymmetric pad 0,1 as diffusers) except last; mid_block; GroupNorm, SiLU, conv_out)
//     → quant_conv → latent_parameters [B,8,H/8,W/8] = mean ‖ logvar (4 + 4 channels); or, as
//     diffusers' conversion script exports it (`vae.encode(sample).latent_dist.sample()`), the
//     posterior sample drawn inside the graph: mean, logvar = chunk(moments, 2, dim=1); logvar clamped
//     to [-30, 20]; std = exp(0.5·logvar); latent_sample = mean + std · randn [B,4,H/8,W/8]
//   vae_decoder: latent_sample [B,4,h,w] → post_quant_conv → decoder (conv_in; mid_block; up_blocks.i:
//     resnets, nearest ×2 Resize + conv except last; GroupNorm, SiLU, conv_out) → Tanh → sample
//     [B,3,8h,8w] in [-1,1]
// With four levels there are three ×2 steps each way (×8). The Tanh is not in the real decoder; it
// keeps a random decoder's output in range.
import { attr, rawBytes, type GraphBuilder } from '../graph/builder.js';
import { DataType } from '../graph/onnx-proto.js';
import type { Layers } from './layers.js';

export interface VaeConfig {
  /** Channels per level, finest first (SD: [128,256,512,512]). Levels − 1 = number of ×2 steps. */
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  readonly latentChannels: number;
  readonly normGroups: number;
  readonly normEps: number;
}

/** What the encoder graph returns: the posterior's parameters, or a sample it draws itself. */
export type VaeEncoderOutput = 'latent_parameters' | 'latent_sample';

export const VAE_ENCODER_IO = Object.freeze({ input: 'sample', output: 'latent_parameters', sampleOutput: 'latent_sample' });
export const VAE_DECODER_IO = Object.freeze({ input: 'latent_sample', output: 'sample' });

function resnet(L: Layers, cfg: VaeConfig, module: string, x: string, cin: number, cout: number): string {
  return L.scope(module, () => {
    let h = L.conv('conv1', L.silu(L.groupNorm('norm1', x, cin, cfg.normGroups, cfg.normEps)), cin, cout);
    h = L.conv('conv2', L.silu(L.groupNorm('norm2', h, cout, cfg.normGroups, cfg.normEps)), cout, cout);
    const shortcut = cin === cout ? x : L.conv('conv_shortcut', x, cin, cout, { kernel: 1 });
    return L.b.op('Add', [shortcut, h]);
  });
}

function midBlock(L: Layers, cfg: VaeConfig, x: string, c: number): string {
  return L.scope('mid_block', () => resnet(L, cfg, 'resnets.1', resnet(L, cfg, 'resnets.0', x, c, c), c, c));
}

/**
 * DiagonalGaussianDistribution.sample() as torch.onnx lowers it: z = μ + exp(½·clamp(log σ², −30, 20))·n,
 * moments [B,2C,h,w] → z [B,C,h,w]. The opset14 flavour (torch 1.12 era, the conversion script) splits
 * with Split and draws n with `randn(mean.shape)` → Shape → ConstantOfShape → RandomNormalLike; the
 * opset17 flavour slices with two Slice nodes and draws with `randn_like(mean)` → RandomNormalLike.
 */
function posteriorSample(L: Layers, moments: string, c: number): string {
  const b = L.b;
  return b.scope('latent_dist', () => {
    let mean: string;
    let logvar: string;
    if (L.flavour === 'opset14') {
      [mean, logvar] = b.opN('Split', [moments, b.constInt64([c, c])], { axis: attr.i(1) }, { outputs: 2 }) as [string, string];
    } else {
      const axes = b.constInt64([1]);
      const steps = b.constInt64([1]);
      mean = b.op('Slice', [moments, b.constInt64([0]), b.constInt64([c]), axes, steps]);
      logvar = b.op('Slice', [moments, b.constInt64([c]), b.constInt64([2 * c]), axes, steps]);
    }
    const clamped = b.op('Clip', [logvar, b.constFloat([-30]), b.constFloat([20])]);
    const std = b.op('Exp', [b.op('Mul', [clamped, b.constFloat([0.5])])]);
    const like = L.flavour === 'opset14'
      ? b.op('ConstantOfShape', [b.op('Shape', [mean])], {
        value: attr.t({ dataType: DataType.FLOAT, dims: [1], rawData: rawBytes(Float32Array.of(0)) }),
      })
      : mean;
    const noise = b.op('RandomNormalLike', [like], { dtype: attr.i(DataType.FLOAT) });
    return b.op('Add', [mean, b.op('Mul', [std, noise])]);
  });
}

export function buildVaeEncoder(b: GraphBuilder, cfg: VaeConfig, L: Layers, output: VaeEncoderOutput = VAE_ENCODER_IO.output): void {
  const ch = cfg.blockOutChannels;
  const x = b.input(VAE_ENCODER_IO.input, 'float32', ['batch', 3, 'height', 'width']);
  const moments = 2 * cfg.latentChannels;
  const h = b.scope('encoder', () => {
    let c = ch[0] as number;
    let h = L.conv('conv_in', x, 3, c);
    ch.forEach((out, i) => {
      b.scope(`down_blocks.${i}`, () => {
        for (let j = 0; j < cfg.layersPerBlock; j++) {
          h = resnet(L, cfg, `resnets.${j}`, h, c, out);
          c = out;
        }
        if (i < ch.length - 1) h = b.scope('downsamplers.0', () => L.conv('conv', h, out, out, { stride: 2, pads: [0, 0, 1, 1] }));
      });
    });
    h = midBlock(L, cfg, h, c);
    h = L.silu(L.groupNorm('conv_norm_out', h, c, cfg.normGroups, cfg.normEps));
    return L.conv('conv_out', h, c, moments);
  });
  const params = L.conv('quant_conv', h, moments, moments, { kernel: 1 });
  if (output === 'latent_sample') {
    const z = posteriorSample(L, params, cfg.latentChannels);
    b.output(z, VAE_ENCODER_IO.sampleOutput, 'float32', ['batch', cfg.latentChannels, 'latent_height', 'latent_width']);
  } else {
    b.output(params, VAE_ENCODER_IO.output, 'float32', ['batch', moments, 'latent_height', 'latent_width']);
  }
}

export function buildVaeDecoder(b: GraphBuilder, cfg: VaeConfig, L: Layers): void {
  const rev = [...cfg.blockOutChannels].reverse();
  const z = b.input(VAE_DECODER_IO.input, 'float32', ['batch', cfg.latentChannels, 'latent_height', 'latent_width']);
  const zq = L.conv('post_quant_conv', z, cfg.latentChannels, cfg.latentChannels, { kernel: 1 });
  const y = b.scope('decoder', () => {
    let c = rev[0] as number;
    let h = L.conv('conv_in', zq, cfg.latentChannels, c);
    h = midBlock(L, cfg, h, c);
    rev.forEach((out, i) => {
      b.scope(`up_blocks.${i}`, () => {
        for (let j = 0; j <= cfg.layersPerBlock; j++) {
          h = resnet(L, cfg, `resnets.${j}`, h, c, out);
          c = out;
        }
        if (i < rev.length - 1) {
          h = L.upsample(h, out);
        }
      });
    });
    h = L.silu(L.groupNorm('conv_norm_out', h, c, cfg.normGroups, cfg.normEps));
    return b.op('Tanh', [L.conv('conv_out', h, c, 3)]);
  });
  b.output(y, VAE_DECODER_IO.output, 'float32', ['batch', 3, 'height', 'width']);
}
