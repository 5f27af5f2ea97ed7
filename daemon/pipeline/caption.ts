// The caption c of the input image (docs/DESIGN.md §3 step 2), in pix2pix-zero's order: the user's when
// given; else the installed captioner's (BLIP, as the official code captions every input); else the
// template "a photo of a {source}" with the right article, and a note that says why.
// A `caption` job (runCaptionJob) asks only the middle question, so the panel can show the caption
// before any render: it decodes the upload exactly as the edit pipelines do and goes through the same
// memory (keyed by captioner and image bytes), so a preview or render of the same bytes uses exactly
// the caption the job answered.
import { createHash } from 'node:crypto';
import { P2pzError, templateCaption } from '../../shared/protocol/index.js';
import { decodeImage } from '../image/decode.js';
import { CAPTIONER_DEFAULTS, captionImage, loadCaptioner } from './captioner/blip.js';
import { findCaptioner } from './captioner/installed.js';
import type { ModelSessions, PipelineContext, PipelineOutcome } from './context.js';

export type CaptionOrigin = 'user' | 'captioner' | 'template';

export const CAPTION_DEFAULTS = Object.freeze({
  /** Captions remembered per process, by captioner and image bytes (a caption job, a preview, then the render). */
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
  return { caption: templateCaption(source), origin: 'template' };
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

/** What the installed captioner says of an image: its caption, or why there is none. */
export type CaptionerAnswer =
  | { readonly ok: true; readonly caption: string; readonly captioner: string }
  | { readonly ok: false; readonly reason: 'missing' }
  | { readonly ok: false; readonly reason: 'empty'; readonly captioner: string }
  | { readonly ok: false; readonly reason: 'unusable'; readonly captioner: string; readonly error: P2pzError };

/** The installed captioner's caption of the image, remembered by captioner and image bytes. */
export async function captionerCaption(models: ModelSessions, image: CaptionInput, signal?: AbortSignal): Promise<CaptionerAnswer> {
  const name = await findCaptioner(models);
  if (name === null) return { ok: false, reason: 'missing' };
  const key = `${name}\n${createHash('sha256').update(image.bytes).digest('hex')}`;
  const known = remembered.get(key);
  if (known !== undefined) return { ok: true, caption: known, captioner: name };
  try {
    const captioner = await loadCaptioner(models, name);
    const result = await captionImage(models, captioner, image.rgb, image.width, image.height, signal ? { signal } : {});
    if (result.caption === '') return { ok: false, reason: 'empty', captioner: name };
    remembered.delete(key);
    remembered.set(key, result.caption);
    while (remembered.size > CAPTION_DEFAULTS.memoryEntries) remembered.delete(remembered.keys().next().value!);
    return { ok: true, caption: result.caption, captioner: name };
  } catch (err) {
    if (signal?.aborted) throw err;
    if (!(err instanceof P2pzError) || err.code !== 'E_MODEL_INVALID') throw err;
    return { ok: false, reason: 'unusable', captioner: name, error: err };
  }
}

/** The caption of an edit: the user's, the captioner's, or the template's (with a note). */
export async function chooseCaption(
  models: ModelSessions, source: string, userCaption: string | undefined, image: CaptionInput, signal?: AbortSignal,
): Promise<CaptionChoice> {
  const given = captionFor(source, userCaption);
  if (given.origin === 'user') return given;
  const answer = await captionerCaption(models, image, signal);
  if (answer.ok) return { caption: answer.caption, origin: 'captioner', captioner: answer.captioner };
  switch (answer.reason) {
    case 'missing':
      return { ...given, note: `No captioner is installed, so the caption is the template "${given.caption}". Install one for captions of the image itself, as pix2pix-zero makes them: ${CAPTIONER_DEFAULTS.installCommand}.` };
    case 'empty':
      return { ...given, note: `The captioner "${answer.captioner}" wrote an empty caption, so the caption is the template "${given.caption}".` };
    case 'unusable':
      return { ...given, note: `The captioner "${answer.captioner}" could not be used (${answer.error.message}), so the caption is the template "${given.caption}".` };
  }
}

/**
 * A `caption` job (engine `captioner`, no images): the caption a preview or render of the same bytes
 * uses when the designer gives none. Without a usable captioner it fails with a coded error (edits then
 * use the template caption, which the panel writes itself from the source word).
 */
export async function runCaptionJob(image: Uint8Array, ctx: PipelineContext): Promise<PipelineOutcome> {
  const timings: Record<string, number> = {};
  const timed = async <T>(stage: string, fn: () => Promise<T>): Promise<T> => {
    ctx.signal.throwIfAborted();
    const start = performance.now();
    try {
      return await fn();
    } finally {
      timings[stage] = (timings[stage] ?? 0) + performance.now() - start;
    }
  };
  ctx.progress('decode', 0, 1);
  const decoded = await timed('decode', () => decodeImage(image));
  ctx.progress('caption', 0, 1);
  const answer = await timed('caption', () => captionerCaption(ctx.models, { bytes: image, rgb: decoded.rgb, width: decoded.width, height: decoded.height }, ctx.signal));
  ctx.progress('caption', 1, 1);
  if (!answer.ok) {
    switch (answer.reason) {
      case 'missing':
        throw P2pzError.fromBody({
          code: 'E_MODEL_MISSING',
          message: 'No captioner is installed, so previews and renders use the template caption ("a photo of a …") unless you write one.',
          hint: `Install a captioner for captions of the image itself, as pix2pix-zero makes them: ${CAPTIONER_DEFAULTS.installCommand}.`,
        });
      case 'empty':
        throw P2pzError.fromBody({
          code: 'E_MODEL_INVALID',
          message: `The captioner "${answer.captioner}" wrote an empty caption, so previews and renders use the template caption unless you write one.`,
          hint: 'Describe the image in the Caption field, or install another captioner.',
        });
      case 'unusable':
        throw answer.error;
    }
  }
  return {
    outputs: [],
    engine: 'captioner',
    timings,
    report: { caption: answer.caption, captionOrigin: 'captioner', captioner: answer.captioner, notes: [] },
  };
}
