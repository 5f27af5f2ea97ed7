// The folder contract of a distilled GAN preview generator (docs/DESIGN.md §3 stage 8). The paper distils
// each direction into a conditional image-to-image GAN; p2pz installs one per direction as
//   <modelsDir>/gan/<source>-<target>/generator.onnx   image [1,3,H,W] in [-1,1] → image
//   <modelsDir>/gan/<source>-<target>/meta.json        GanMeta below
// The installer writes these folders and the pipeline's preview registry reads them.
import { z } from 'zod';
import { Concept } from '../../shared/protocol/index.js';

export const GAN_FOLDER_DEFAULTS = Object.freeze({
  /** Folder of the GAN generators inside the models directory. */
  folder: 'gan',
  generatorFile: 'generator.onnx',
  metaFile: 'meta.json',
  /** A meta.json is a few hundred bytes; anything much larger is not one. */
  maxMetaBytes: 64 * 1024,
});

/** `meta.json` of an installed generator. */
export const GanMeta = z.object({
  v: z.literal(1),
  source: Concept,
  target: Concept,
  /** Working size: the long side the generator was trained at (a multiple of 64 keeps the aspect
   *  rounding of the diffusion pipeline; other sizes keep the aspect exactly). A generator whose ONNX
   *  input has fixed height and width uses those instead. */
  size: z.number().int().min(8).max(2048),
  /** The diffusion model and pix2pix-zero settings the training pairs were made with. */
  from: z.object({ model: z.string().max(200), settings: z.record(z.string().max(60), z.unknown()) }).optional(),
  /** Hash of the training pairs. */
  dataHash: z.string().max(200).optional(),
});
export type GanMeta = z.infer<typeof GanMeta>;

/** Concepts compare case-insensitively with whitespace collapsed: "Golden  Retriever" = "golden retriever". */
export function normalizeConcept(concept: string): string {
  return concept.trim().toLowerCase().replace(/\s+/g, ' ');
}
