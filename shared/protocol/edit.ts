// What one edit needs: the direction (source → target words) and the pix2pix-zero settings.
// Defaults are the paper's (docs/DESIGN.md §3); bounds keep every job finite.
import { z } from 'zod';

/** A concept word or short phrase, e.g. "cat" or "golden retriever". */
export const Concept = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} '\-]*$/u, 'letters, digits, spaces, apostrophes and hyphens only');

export const EDIT_DEFAULTS = Object.freeze({
  /** DDIM steps for inversion and editing. */
  steps: 50,
  /** Classifier-free guidance weight w (the caption is the negative prompt). */
  cfg: 5,
  /** λ_xa: cross-attention guidance step size. */
  xa: 0.1,
  /** Outer regularization iterations per inversion step (each with 5 autocorrelation steps). */
  regSteps: 5,
  /** Working size: the long side in pixels, a multiple of 64. */
  size: 512,
  /** s in e_edit = e_c + s·Δ. */
  editScale: 1,
  seed: 42,
});

export const EditParams = z.object({
  source: Concept,
  target: Concept,
  caption: z.string().trim().min(1).max(300).optional(),
  steps: z.number().int().min(1).max(200).default(EDIT_DEFAULTS.steps),
  cfg: z.number().min(0).max(30).default(EDIT_DEFAULTS.cfg),
  xa: z.number().min(0).max(10).default(EDIT_DEFAULTS.xa),
  regSteps: z.number().int().min(0).max(20).default(EDIT_DEFAULTS.regSteps),
  size: z.number().int().min(64).max(1024).multipleOf(64).default(EDIT_DEFAULTS.size),
  editScale: z.number().min(-5).max(5).default(EDIT_DEFAULTS.editScale),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(EDIT_DEFAULTS.seed),
  /** Return the source concept's attention mask as a grayscale PNG. */
  mask: z.boolean().default(true),
  /** Blend the edit into the original through the mask (background kept pixel-exact). */
  blend: z.boolean().default(false),
});
export type EditParams = z.infer<typeof EditParams>;
export type EditParamsInput = z.input<typeof EditParams>;
