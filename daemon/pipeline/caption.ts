// The caption c of the input image (docs/DESIGN.md §3 step 2), in pix2pix-zero's order: the user's when
// given; else the installed captioner's (BLIP, as the official code captions every input); else the
// template "a photo of a {source}" with the right article, and a note that says why.
import { createHash } from 'node:crypto';
import { P2pzError } from '../../shared/protocol/index.js';
import { captionImage, loadCaptioner } from './captioner/blip.js';
import { findCaptioner } from './captioner/installed.js';
import { subjectPhrase } from './directions/sentence-bank.js';
import type { ModelSessions } from './context.js';

export type CaptionOrigin = 'user' | 'captioner' | 'template';

export const CAPTION_DEFAULTS = Object.freeze({
  /** Captions remembered per process, by captioner and image bytes (a preview, then the render). */
  memoryEntries: 32,
});

export interface CaptionChoice {
  readonly caption: string;
  readonly origin: CaptionOrigin;
  /** The captioner's folder name, when it wrote the caption. */
  readonly captioner?: string;
  /** Why the template was used, for the job's details and the CLI. */
  readonly note?: string;
}

export function captionFor(source: string, caption?: string): { caption: string; origin: CaptionOrigin } {
  const given = caption?.replace(/\s+/g, ' ').trim();
  if (given) return { caption: given, origin: 'user' };
  return { caption: `a photo of ${subjectPhrase(source)}`, origin: 'template' };
}

const remembered = new Map<string, string>();

export interface CaptionInput {
  /** The upload, still encoded (its hash keys the memory). */
  readonly bytes: Uint8Array;
  /** Its decoded HWC 8-bit RGB. */
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** The caption of an edit: the user's, the captioner's, or the template's (with a note). */
export async function chooseCaption(
  models: ModelSessions, source: string, userCaption: string | undefined, image: CaptionInput, signal?: AbortSignal,
): Promise<CaptionChoice> {
  const given = captionFor(source, userCaption);
  if (given.origin === 'user') return given;
  const name = await findCaptioner(models);
  if (name === null) {
    return { ...given, note: `No captioner is installed, so the caption is the template "${given.caption}". Install one (models/captioner/) for captions of the image itself, as pix2pix-zero makes them.` };
  }
  const key = `${name}\n${createHash('sha256').update(image.bytes).digest('hex')}`;
  const known = remembered.get(key);
  if (known !== undefined) return { caption: known, origin: 'captioner', captioner: name };
  try {
    const captioner = await loadCaptioner(models, name);
    const result = await captionImage(models, captioner, image.rgb, image.width, image.height, signal ? { signal } : {});
    if (result.caption === '') return { ...given, note: `The captioner "${name}" wrote an empty caption, so the caption is the template "${given.caption}".` };
    remembered.delete(key);
    remembered.set(key, result.caption);
    while (remembered.size > CAPTION_DEFAULTS.memoryEntries) remembered.delete(remembered.keys().next().value!);
    return { caption: result.caption, origin: 'captioner', captioner: name };
  } catch (err) {
    if (signal?.aborted) throw err;
    if (!(err instanceof P2pzError) || err.code !== 'E_MODEL_INVALID') throw err;
    return { ...given, note: `The captioner "${name}" could not be used (${err.message}), so the caption is the template "${given.caption}".` };
  }
}
