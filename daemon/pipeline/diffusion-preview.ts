// The quick preview without a distilled GAN (docs/DESIGN.md §3 step 8): the same pix2pix-zero edit with
// reduced settings — at most 10 DDIM steps, one outer regularization iteration, a 256-pixel working
// size — reported as engine `diffusion-preview`. It shares the direction and inversion caches with
// full renders of the same settings.
import type { EditParams } from '../../shared/protocol/index.js';
import { runPix2PixZero, type DiffusionContext, type Pix2PixZeroRequest, type Pix2PixZeroResult } from './pix2pix-zero.js';

export const DIFFUSION_PREVIEW_DEFAULTS = Object.freeze({
  maxSteps: 10,
  maxRegSteps: 1,
  maxSize: 256,
});

/** The preview's settings: the edit's, capped by DIFFUSION_PREVIEW_DEFAULTS. */
export function previewSettings(edit: EditParams): EditParams {
  const d = DIFFUSION_PREVIEW_DEFAULTS;
  return { ...edit, steps: Math.min(edit.steps, d.maxSteps), regSteps: Math.min(edit.regSteps, d.maxRegSteps), size: Math.min(edit.size, d.maxSize) };
}

export function runDiffusionPreview(
  request: Omit<Pix2PixZeroRequest, 'engine' | 'dump'>,
  ctx: DiffusionContext,
): Promise<Pix2PixZeroResult> {
  return runPix2PixZero({ ...request, edit: previewSettings(request.edit), engine: 'diffusion-preview' }, ctx);
}
