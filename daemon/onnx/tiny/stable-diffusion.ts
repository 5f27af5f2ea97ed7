// Writes a complete, seeded Stable Diffusion 1.x model folder in the diffusers/optimum ONNX layout
// (docs/DESIGN.md §2): model_index.json, text_encoder/, unet/ (+ external weights), vae_encoder/,
// vae_decoder/, tokenizer/, scheduler/. Two presets: TINY_SD (tests: small enough to run many times)
// and SD15_SHAPED (SD 1.5's exact structure and cost with random weights, for benchmarks). Two
// flavours mirror the two exporters (see layers.ts). Same options → byte-identical files.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GraphBuilder } from '../graph/builder.js';
import { tensorSeed } from '../graph/prng.js';
import { FLAVOURS, Layers } from './layers.js';
import { exportAsFloat16, FLOAT16_EXPORT_COMPONENTS } from './float16-export.js';
import type { Flavour } from './layers.js';
import { schedulerConfigJson } from './scheduler-config.js';
import { buildTextEncoder } from './text-encoder.js';
import type { TextEncoderConfig } from './text-encoder.js';
import { tokenizerFiles, tokenizerVocabularySize } from './tokenizer-files.js';
import { UNET_WEIGHTS_LOCATION, crossAttentionSoftmaxNames, writeUNet } from './unet.js';
import type { UNetConfig } from './unet.js';
import { buildVaeDecoder, buildVaeEncoder } from './vae.js';
import { writeOrtOptimizedComponent, writeOrtOptimizedUNet, type FusionCounts, type OrtFusionOptions } from './ort-fusions.js';
import type { VaeConfig, VaeEncoderOutput } from './vae.js';

export interface StableDiffusionPreset {
  readonly textEncoder: TextEncoderConfig;
  readonly unet: UNetConfig;
  readonly vae: VaeConfig;
}

/** Small and fast: D = 32, UNet channels [32,64] with attention at both levels (7 cross-attention
 *  layers), VAE ×8 with channels [16,16,32,32]. */
export const TINY_SD: StableDiffusionPreset = Object.freeze({
  textEncoder: Object.freeze({
    vocabSize: 1024, hiddenSize: 32, layers: 2, heads: 2, intermediateSize: 64, maxPositions: 77,
    activation: 'quick_gelu', layerNormEps: 1e-5,
  }),
  unet: Object.freeze({
    inChannels: 4, outChannels: 4, blockOutChannels: [32, 64], layersPerBlock: 1, attentionLevels: [true, true],
    heads: 2, crossAttentionDim: 32, normGroups: 8, normEps: 1e-5,
  }),
  vae: Object.freeze({ blockOutChannels: [16, 16, 32, 32], layersPerBlock: 1, latentChannels: 4, normGroups: 8, normEps: 1e-6 }),
});

/** Stable Diffusion 1.5's structure: CLIP ViT-L/14 text encoder (D = 768, 12 layers), UNet with
 *  channels [320,640,1280,1280], 2 layers per block, 8 heads, attention at the first three levels
 *  (16 cross-attention layers, ≈860 M parameters), VAE [128,256,512,512]. */
export const SD15_SHAPED: StableDiffusionPreset = Object.freeze({
  textEncoder: Object.freeze({
    vocabSize: 49408, hiddenSize: 768, layers: 12, heads: 12, intermediateSize: 3072, maxPositions: 77,
    activation: 'quick_gelu', layerNormEps: 1e-5,
  }),
  unet: Object.freeze({
    inChannels: 4, outChannels: 4, blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: 2,
    attentionLevels: [true, true, true, false], heads: 8, crossAttentionDim: 768, normGroups: 32, normEps: 1e-5,
  }),
  vae: Object.freeze({ blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, latentChannels: 4, normGroups: 32, normEps: 1e-6 }),
});

export type Component = 'text_encoder' | 'unet' | 'vae_encoder' | 'vae_decoder' | 'tokenizer' | 'scheduler';
export const ALL_COMPONENTS: readonly Component[] = Object.freeze(['text_encoder', 'unet', 'vae_encoder', 'vae_decoder', 'tokenizer', 'scheduler']);

export const STABLE_DIFFUSION_DEFAULTS = Object.freeze({
  preset: TINY_SD,
  flavour: 'opset14' as Flavour,
  seed: 0,
  fill: 'random' as 'random' | 'sparse-zeros',
  vaeEncoderOutput: 'latent_parameters' as VaeEncoderOutput,
  /** Components whose parameters exceed this many bytes keep them in an external file (protobuf caps
   *  a model at 2 GiB, and large inline tensors would be built in memory whole). */
  inlineLimitBytes: 64 << 20,
});

export interface TinyStableDiffusionOptions {
  readonly preset?: StableDiffusionPreset;
  readonly flavour?: Flavour;
  readonly seed?: number;
  /** `sparse-zeros`: exact graphs, all-zero weights in sparse files (fast structural checks). */
  readonly fill?: 'random' | 'sparse-zeros';
  /** Write only these (model_index.json is always written). */
  readonly components?: readonly Component[];
  /** The VAE encoder's output: `latent_parameters` (default), or `latent_sample` drawn inside the
   *  graph as diffusers' conversion script exports it. Same weights either way for a seed. */
  readonly vaeEncoderOutput?: VaeEncoderOutput;
  /** Write the UNet as onnxruntime's transformers optimizer leaves it (com.microsoft fused ops, same
   *  weights; ort-fusions.ts), with these fusion options. */
  readonly ortOptimized?: OrtFusionOptions;
  /** Which components `ortOptimized` applies to (default the UNet only; optimize_pipeline.py
   *  optimizes them all). */
  readonly ortOptimizedComponents?: readonly OptimizableComponent[];
  /** `fp16`: the components as `optimum-cli export onnx --fp16` writes them (float16-export.ts). */
  readonly precision?: 'fp32' | 'fp16';
}

export interface TinyStableDiffusionInfo {
  readonly flavour: Flavour;
  /** Token ids the tokenizer can produce are below this. */
  readonly vocabularySize: number;
  /** The UNet's cross-attention Softmax node names, down → mid → up. */
  readonly crossAttentionSoftmaxNames: readonly string[];
  /** With `ortOptimized`: how many nodes of each fused op the UNet holds. */
  readonly fusedOps?: FusionCounts;
  /** With `ortOptimized`: the fused ops of each optimized component. */
  readonly fusedOpsByComponent?: Readonly<Partial<Record<OptimizableComponent, FusionCounts>>>;
}

export type OptimizableComponent = 'unet' | 'text_encoder' | 'vae_encoder' | 'vae_decoder';

function modelIndex(flavour: Flavour): Record<string, unknown> {
  // diffusers' OnnxStableDiffusionPipeline (conversion script) vs optimum's ORTStableDiffusionPipeline.
  const onnxModel = flavour === 'opset14' ? ['diffusers', 'OnnxRuntimeModel'] : ['optimum', 'ORTModel'];
  return {
    _class_name: flavour === 'opset14' ? 'OnnxStableDiffusionPipeline' : 'ORTStableDiffusionPipeline',
    _diffusers_version: flavour === 'opset14' ? '0.6.0' : '0.21.0',
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', 'PNDMScheduler'],
    text_encoder: onnxModel,
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: onnxModel,
    vae_decoder: onnxModel,
    vae_encoder: onnxModel,
  };
}

async function writeComponent(
  dir: string, component: string, seed: number, flavour: Flavour, fill: 'random' | 'sparse-zeros',
  build: (b: GraphBuilder) => void,
): Promise<void> {
  const b = new GraphBuilder({ seed: tensorSeed(seed, component), opsetVersion: FLAVOURS[flavour].opsetVersion, graphName: component });
  build(b);
  const external = b.parameterBytes > STABLE_DIFFUSION_DEFAULTS.inlineLimitBytes;
  await b.write(join(dir, component, 'model.onnx'), { weights: external ? 'external' : 'inline', fill });
}

/** Writes the model folder `dir` (created if needed; files there are replaced). */
export async function writeTinyStableDiffusion(dir: string, options: TinyStableDiffusionOptions = {}): Promise<TinyStableDiffusionInfo> {
  const d = STABLE_DIFFUSION_DEFAULTS;
  const preset = options.preset ?? d.preset;
  const flavour = options.flavour ?? d.flavour;
  const seed = options.seed ?? d.seed;
  const fill = options.fill ?? d.fill;
  const want = new Set(options.components ?? ALL_COMPONENTS);
  await mkdir(dir, { recursive: true });

  const tokenizer = tokenizerFiles();
  const vocabularySize = tokenizerVocabularySize(tokenizer);
  if (vocabularySize > preset.textEncoder.vocabSize) {
    throw new RangeError(`the tokenizer has ${vocabularySize} tokens but the text encoder embeds only ${preset.textEncoder.vocabSize}`);
  }
  if (preset.textEncoder.hiddenSize !== preset.unet.crossAttentionDim) {
    throw new RangeError('the text encoder width must equal the UNet cross-attention width');
  }

  await writeFile(join(dir, 'model_index.json'), JSON.stringify(modelIndex(flavour), null, 2) + '\n');
  if (want.has('tokenizer')) {
    await mkdir(join(dir, 'tokenizer'), { recursive: true });
    for (const [name, text] of Object.entries(tokenizer)) await writeFile(join(dir, 'tokenizer', name), text);
  }
  if (want.has('scheduler')) {
    await mkdir(join(dir, 'scheduler'), { recursive: true });
    await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), schedulerConfigJson());
  }
  if (want.has('text_encoder')) {
    await writeComponent(dir, 'text_encoder', seed, flavour, fill, (b) =>
      buildTextEncoder(b, preset.textEncoder, flavour, flavour === 'opset14' ? 'int32' : 'int64'));
  }
  if (want.has('vae_encoder')) {
    const output = options.vaeEncoderOutput ?? d.vaeEncoderOutput;
    await writeComponent(dir, 'vae_encoder', seed, flavour, fill, (b) => buildVaeEncoder(b, preset.vae, new Layers(b, flavour), output));
  }
  if (want.has('vae_decoder')) {
    await writeComponent(dir, 'vae_decoder', seed, flavour, fill, (b) => buildVaeDecoder(b, preset.vae, new Layers(b, flavour)));
  }
  let fusedOps: FusionCounts | undefined;
  if (want.has('unet')) {
    const unetPath = join(dir, 'unet', 'model.onnx');
    await writeUNet(unetPath, preset.unet, {
      seed: tensorSeed(seed, 'unet'), flavour, fill, location: UNET_WEIGHTS_LOCATION[flavour],
    });
  }
  const byComponent: Partial<Record<OptimizableComponent, FusionCounts>> = {};
  if (options.ortOptimized) {
    for (const c of options.ortOptimizedComponents ?? ['unet']) {
      if (!want.has(c)) continue;
      const path = join(dir, c, 'model.onnx');
      byComponent[c] = c === 'unet' ? await writeOrtOptimizedUNet(path, options.ortOptimized) : await writeOrtOptimizedComponent(path, options.ortOptimized);
    }
    fusedOps = byComponent.unet;
  }
  if (options.precision === 'fp16') {
    await exportAsFloat16(dir, FLOAT16_EXPORT_COMPONENTS.filter((c) => want.has(c)));
  }
  return { flavour, vocabularySize, crossAttentionSoftmaxNames: crossAttentionSoftmaxNames(preset.unet), ...(fusedOps ? { fusedOps } : {}), ...(options.ortOptimized ? { fusedOpsByComponent: byComponent } : {}) };
}
