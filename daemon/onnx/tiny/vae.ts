// An AutoencoderKL-style VAE in diffusers' layout, as the two ONNX exports split it:
//   vae_encoder: sample x ∈ [-1,1] [B,3,H,W] → encoder (conv_in; down_blocks.i: resnets, stride-2
//     downsample (asymmetric pad 0,1 as diffusers) except last; mid_block; GroupNorm, SiLU, conv_out)
//     → quant_conv → latent_parameters [B,8,H/8,W/8] = mean ‖ logvar (4 + 4 channels)
//   vae_decoder: latent_sample [B,4,h,w] → post_quant_conv → decoder (conv_in; mid_block; up_blocks.i:
//     resnets, nearest ×2 Resize + conv except last; GroupNorm, SiLU, conv_out) → Tanh → sample
//     [B,3,8h,8w] in [-1,1]
// With four levels there are three ×2 steps each way (×8). The Tanh is not in the real decoder; it
// keeps a random decoder's output in range.
import { GraphBuilder, attr } from '../graph/builder.js';
import { FLAVOURS, Layers } from './layers.js';
import type { WriteComponentOptions } from './layers.js';

export interface VaeConfig {
  /** Channels per level, finest first (SD: [128,256,512,512]). Levels − 1 = number of ×2 steps. */
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  readonly latentChannels: number;
  readonly normGroups: number;
  readonly normEps: number;
}

export const VAE_ENCODER_IO = Object.freeze({ input: 'sample', output: 'latent_parameters' });
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

export function buildVaeEncoder(b: GraphBuilder, cfg: VaeConfig, L: Layers): void {
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
  b.output(params, VAE_ENCODER_IO.output, 'float32', ['batch', moments, 'latent_height', 'latent_width']);
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
          h = b.scope('upsamplers.0', () => {
            const up = b.op('Resize', [h, '', b.constFloat([1, 1, 2, 2], [4])], {
              coordinate_transformation_mode: attr.s('asymmetric'),
              cubic_coeff_a: attr.f(-0.75),
              mode: attr.s('nearest'),
              nearest_mode: attr.s('floor'),
            });
            return L.conv('conv', up, out, out);
          });
        }
      });
    });
    h = L.silu(L.groupNorm('conv_norm_out', h, c, cfg.normGroups, cfg.normEps));
    return b.op('Tanh', [L.conv('conv_out', h, c, 3)]);
  });
  b.output(y, VAE_DECODER_IO.output, 'float32', ['batch', 3, 'height', 'width']);
}

export async function writeVaeEncoder(path: string, cfg: VaeConfig, options: WriteComponentOptions): Promise<void> {
  const b = new GraphBuilder({ seed: options.seed, opsetVersion: FLAVOURS[options.flavour].opsetVersion, graphName: 'vae_encoder' });
  buildVaeEncoder(b, cfg, new Layers(b, options.flavour));
  await b.write(path, options);
}

export async function writeVaeDecoder(path: string, cfg: VaeConfig, options: WriteComponentOptions): Promise<void> {
  const b = new GraphBuilder({ seed: options.seed, opsetVersion: FLAVOURS[options.flavour].opsetVersion, graphName: 'vae_decoder' });
  buildVaeDecoder(b, cfg, new Layers(b, options.flavour));
  await b.write(path, options);
}
