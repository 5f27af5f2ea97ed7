// The quick preview, one dispatch for the worker's `preview` jobs and `p2pz edit --mode preview`: the
// distilled GAN for the direction when one is installed (engine `gan`), else the same edit with
// reduced settings (engine `diffusion-preview`). With neither installed, `E_MODEL_MISSING` names the
// direction and the missing diffusion model.
import { P2pzError } from '../../shared/protocol/index.js';
import { chooseDiffusionModel, listDiffusionModels } from './diffusion-model.js';
import { runDiffusionPreview } from './diffusion-preview.js';
import { runGanPreview } from './gan-preview.js';
import type { PipelineOutcome } from './context.js';
import type { DiffusionContext, Pix2PixZeroRequest } from './pix2pix-zero.js';
import { previewInputKey } from './preview-input-cache.js';
import { lookupGanGenerator, noGeneratorError } from './preview-registry.js';

export async function runPreview(request: Omit<Pix2PixZeroRequest, 'engine' | 'dump'>, ctx: DiffusionContext): Promise<PipelineOutcome> {
  const { image, edit, model } = request;
  const lookup = lookupGanGenerator(ctx.models, edit.source, edit.target);
  // The input's cache key (gan-preview.ts step 1) is hashed while the lookup waits for the disk.
  previewInputKey(image);
  const generator = await lookup;
  if (generator) return runGanPreview(image, generator, ctx);
  if (model === undefined) {
    if ((await listDiffusionModels(ctx.models)).length === 0) {
      throw noGeneratorError(edit.source, edit.target, 'and no diffusion model is installed for a slower preview');
    }
  } else {
    try {
      await chooseDiffusionModel(ctx.models, model);
    } catch (err) {
      if (!(err instanceof P2pzError) || err.code !== 'E_MODEL_MISSING') throw err;
      // The direction's missing generator and the missing model in one message; the hint installs the model.
      const both = noGeneratorError(edit.source, edit.target, `and the diffusion model “${model}” for a slower preview is not installed either`);
      throw P2pzError.fromBody({ ...both.toBody(), hint: err.hint });
    }
  }
  return runDiffusionPreview(request, ctx);
}
