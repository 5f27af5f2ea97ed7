// An upload made ready for its quick preview before anyone asks for one. The panel uploads a layer as
// soon as it is chosen (plugin/ui/job-runner.ts), seconds before the designer picks an edit; the
// preview's decode and tensor (gan-preview.ts steps 1–2, ≈ 20 ms at 512² on the 2-core machine,
// docs/BENCHMARKS.md "daemon") are done then, into the same cache a preview reads
// (preview-input-cache.ts), so that the preview finds them ready. The decode is registered with the
// cache before the first await, so a preview that arrives meanwhile waits for it rather than decoding
// the same bytes again. Only when a quick-preview generator is installed (else no preview reads them),
// only for images within GAN_PREFETCH_DEFAULTS.maxPixels (the cache could not keep a larger one), and
// only while `idle()` says no job runs: the worker starts a prefetch only then (worker/prefetch-queue.ts),
// and the tensors wait for the next idle time once a job has started (a decode under way, one image of
// at most maxPixels in sharp's thread pool, runs to its end: the job just started is most often this
// image's own preview, which waits for it). A decode that fails keeps nothing: the preview decodes the
// bytes again and reports the error itself.
import { P2pzError } from '../../shared/protocol/index.js';
import { checkPixelBudget, orientedSize, sniffImage } from '../image/sniff.js';
import type { GanMeta } from '../models/gan-meta.js';
import type { ModelFiles } from './context.js';
import { decodePreviewInput, generatorWorkingSize, previewTensor } from './gan-preview.js';
import { previewInputKey, sharedPreviewInputCache, type PreviewInput, type PreviewInputCache } from './preview-input-cache.js';
import { listGanGenerators } from './preview-registry.js';

export const GAN_PREFETCH_DEFAULTS = Object.freeze({
  /** Largest image (pixels, after EXIF orientation) decoded ahead: 2048² holds 12 MiB of pixels, a
   *  third of the input cache's budget. Larger uploads are decoded by their preview, as before. */
  maxPixels: 2048 * 2048,
});

/** What a prefetch did: `ready` (decoded and its tensors made, or found so), `partly` (a job started
 *  before it was done), or why it did nothing. */
export type PrefetchOutcome = 'ready' | 'partly' | 'no-generator' | 'too-large' | 'unreadable' | 'busy';

/** Why a prefetch's decode gave up without an error of the image's own. */
class Skipped extends Error {
  constructor(readonly outcome: 'no-generator') {
    super(outcome);
  }
}

export async function prefetchGanInput(
  image: Uint8Array,
  files: ModelFiles,
  idle: () => boolean,
  inputs: PreviewInputCache = sharedPreviewInputCache,
): Promise<PrefetchOutcome> {
  // The upload route sniffed these bytes already; the worker checks again before decoding anything.
  let size: { width: number; height: number };
  try {
    const header = sniffImage(image);
    checkPixelBudget(header);
    size = orientedSize(header);
  } catch (err) {
    if (err instanceof P2pzError) return 'unreadable';
    throw err;
  }
  if (size.width * size.height > GAN_PREFETCH_DEFAULTS.maxPixels) return 'too-large';
  let metas: GanMeta[] | undefined;
  let found: { readonly input: PreviewInput };
  try {
    found = await inputs.decoded(previewInputKey(image), async () => {
      const { generators } = await listGanGenerators(files);
      metas = generators.map((g) => g.meta);
      if (metas.length === 0) throw new Skipped('no-generator');
      return decodePreviewInput(image);
    });
  } catch (err) {
    if (err instanceof Skipped) return err.outcome;
    if (err instanceof P2pzError) return 'unreadable';
    throw err;
  }
  const { input } = found;
  metas ??= (await listGanGenerators(files)).generators.map((g) => g.meta);
  // The working sizes the installed generators' meta asks for (a generator with fixed dimensions makes
  // its own tensor at its first preview).
  const sizes = new Map(metas.map((meta) => {
    const s = generatorWorkingSize(input.width, input.height, meta.size);
    return [`${s.width}×${s.height}`, s] as const;
  }));
  for (const s of sizes.values()) {
    if (!idle()) return 'partly';
    await inputs.tensor(input, s.width, s.height, () => previewTensor(input, s.width, s.height));
  }
  return 'ready';
}
