// Preview frames: a job's preview pixels as one binary WebSocket message, daemon → client, so that a
// quick preview is on screen without a PNG codec, a result file or a second HTTP request. Two roles:
// `result`, the quick preview's image as the generator made it (the job's `finished` event still
// follows, with the full PNG in the result store for placing); `step`, a small step preview of a
// render (sent only when the job asked for step previews). Frames go only to the event streams of
// the client that submitted the job, like its events. Text frames stay JSON events; a binary frame is
// always a preview frame, laid out as
//
//   offset 0   4 bytes   ASCII "P2PF"
//          4   4 bytes   N, the header's length in bytes, unsigned big-endian, at most 2048
//          8   N bytes   the header: JSON in ASCII (every field is), PreviewFrameHeader below
//        8+N   W·H·4     the pixels: 8-bit RGBA, rows top to bottom, not premultiplied
//
// and nothing after. Both ends check everything: the daemon encodes only what the schema accepts, and
// a client refuses any frame whose magic, header, size or length is off with E_BAD_FRAME.
import { z } from 'zod';
import { P2pzError } from './errors.js';
import { Id, JobKind, Stage } from './jobs.js';
import { Version } from './version.js';

export const PREVIEW_FRAME_LIMITS = Object.freeze({
  /** Longest side of a frame's image. A generator working at a larger size sends no result frame
   *  (its PNG result still arrives with `finished`). */
  maxSide: 1024,
  /** Most pixels of a frame's image (1024²: 4 MiB of RGBA). */
  maxPixels: 1024 * 1024,
  /** Longest side of a step frame: step previews are thumbnails. */
  maxStepSide: 128,
  /** Largest header, in bytes. */
  maxHeaderBytes: 2048,
});

/** The frame's leading magic bytes, "P2PF". */
export const PREVIEW_FRAME_MAGIC = Object.freeze([0x50, 0x32, 0x50, 0x46] as const);
const PREFIX_BYTES = 8;

/** Bytes of the largest frame (header and pixels): what an event stream must be ready to buffer. */
export const PREVIEW_FRAME_MAX_BYTES = PREFIX_BYTES + PREVIEW_FRAME_LIMITS.maxHeaderBytes + PREVIEW_FRAME_LIMITS.maxPixels * 4;

const Side = z.number().int().positive().max(PREVIEW_FRAME_LIMITS.maxSide);

export const PreviewFrameHeader = z
  .object({
    v: Version,
    type: z.literal('preview-frame'),
    jobId: Id,
    kind: JobKind,
    role: z.enum(['result', 'step']),
    /** The stage (and its step) the frame belongs to, as in the `progress` events. */
    stage: Stage,
    step: z.number().int().nonnegative(),
    total: z.number().int().positive(),
    width: Side,
    height: Side,
    format: z.literal('rgba8'),
  })
  .refine((h) => h.width * h.height <= PREVIEW_FRAME_LIMITS.maxPixels, { message: `a frame holds at most ${PREVIEW_FRAME_LIMITS.maxPixels} pixels` })
  .refine((h) => h.role === 'result' || Math.max(h.width, h.height) <= PREVIEW_FRAME_LIMITS.maxStepSide, {
    message: `a step frame is at most ${PREVIEW_FRAME_LIMITS.maxStepSide} pixels a side`,
  });
export type PreviewFrameHeader = z.infer<typeof PreviewFrameHeader>;

/** A decoded frame: its header and a view of its RGBA pixels (width·height·4 bytes). */
export interface PreviewFrame {
  readonly header: PreviewFrameHeader;
  readonly rgba: Uint8Array;
}

/** The pixels a pipeline hands on for a frame (worker IPC, the engine's progress). */
export const PreviewPixels = z
  .object({
    role: z.enum(['result', 'step']),
    width: Side,
    height: Side,
    // `z.custom`, not `z.instanceof`: see ipc.ts.
    rgba: z.custom<Uint8Array>((value) => value instanceof Uint8Array, 'bytes (a Uint8Array)'),
  })
  .refine((p) => p.width * p.height <= PREVIEW_FRAME_LIMITS.maxPixels, { message: `a frame holds at most ${PREVIEW_FRAME_LIMITS.maxPixels} pixels` })
  .refine((p) => p.rgba.byteLength === p.width * p.height * 4, { message: 'rgba holds width·height·4 bytes' })
  .refine((p) => p.role === 'result' || Math.max(p.width, p.height) <= PREVIEW_FRAME_LIMITS.maxStepSide, {
    message: `a step frame is at most ${PREVIEW_FRAME_LIMITS.maxStepSide} pixels a side`,
  });
export type PreviewPixels = z.infer<typeof PreviewPixels>;

/** Whether `width`×`height` fits a frame of `role`. */
export function fitsPreviewFrame(role: PreviewPixels['role'], width: number, height: number): boolean {
  const L = PREVIEW_FRAME_LIMITS;
  const side = role === 'result' ? L.maxSide : L.maxStepSide;
  return width > 0 && height > 0 && width <= side && height <= side && width * height <= L.maxPixels;
}

/** The header's bytes; throws for a character beyond ASCII (the schema admits none). */
function asciiBytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) throw badFrame('Its header is not ASCII.');
    out[i] = c;
  }
  return out;
}

/** The header's text; throws for a byte beyond ASCII. */
function asciiText(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) {
    if (b > 0x7f) throw badFrame('Its header is not ASCII.');
    text += String.fromCharCode(b);
  }
  return text;
}

function badFrame(detail: string): P2pzError {
  return new P2pzError('E_BAD_FRAME', detail);
}

/** The frame's bytes: throws E_BAD_FRAME when the header does not pass its schema or the pixels do
 *  not match its size (nothing malformed leaves the daemon). */
export function encodePreviewFrame(header: PreviewFrameHeader, rgba: Uint8Array): Uint8Array {
  const [head, pixels] = encodePreviewFrameParts(header, rgba);
  const out = new Uint8Array(head.byteLength + pixels.byteLength);
  out.set(head, 0);
  out.set(pixels, head.byteLength);
  return out;
}

/** The same frame as two parts, the magic, length and header, then the pixels themselves (not
 *  copied): the daemon sends them as two fragments of one WebSocket message, which a client receives
 *  as the frame's bytes, without copying a megabyte of pixels into a new buffer first. Same checks. */
export function encodePreviewFrameParts(header: PreviewFrameHeader, rgba: Uint8Array): readonly [Uint8Array, Uint8Array] {
  const parsed = PreviewFrameHeader.safeParse(header);
  if (!parsed.success) throw badFrame(`Its header is not valid: ${parsed.error.issues[0]?.message ?? 'unknown'}.`);
  const { width, height } = parsed.data;
  if (rgba.byteLength !== width * height * 4) throw badFrame(`It has ${rgba.byteLength} bytes of pixels for ${width}×${height} RGBA.`);
  const json = asciiBytes(JSON.stringify(parsed.data));
  if (json.byteLength > PREVIEW_FRAME_LIMITS.maxHeaderBytes) throw badFrame('Its header is too long.');
  const head = new Uint8Array(PREFIX_BYTES + json.byteLength);
  head.set(PREVIEW_FRAME_MAGIC, 0);
  new DataView(head.buffer).setUint32(4, json.byteLength);
  head.set(json, PREFIX_BYTES);
  return [head, rgba];
}

/** Reads a frame received as one binary message. The pixels are a view into `bytes` (no copy).
 *  Throws E_BAD_FRAME, saying what is wrong, for anything but a well-formed frame within the limits. */
export function decodePreviewFrame(bytes: Uint8Array): PreviewFrame {
  if (bytes.byteLength > PREVIEW_FRAME_MAX_BYTES) throw badFrame(`It is ${bytes.byteLength} bytes; a frame is at most ${PREVIEW_FRAME_MAX_BYTES}.`);
  if (bytes.byteLength < PREFIX_BYTES || PREVIEW_FRAME_MAGIC.some((b, i) => bytes[i] !== b)) throw badFrame('It does not start with P2PF.');
  const headerBytes = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4);
  if (headerBytes > PREVIEW_FRAME_LIMITS.maxHeaderBytes || PREFIX_BYTES + headerBytes > bytes.byteLength) {
    throw badFrame(`Its header length ${headerBytes} is out of bounds.`);
  }
  let json: unknown;
  try {
    json = JSON.parse(asciiText(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes)));
  } catch {
    throw badFrame('Its header is not ASCII JSON.');
  }
  const parsed = PreviewFrameHeader.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badFrame(`Its header is not valid: ${issue?.path.join('.') || 'header'}: ${issue?.message ?? 'unknown'}.`);
  }
  const { width, height } = parsed.data;
  const rgba = bytes.subarray(PREFIX_BYTES + headerBytes);
  if (rgba.byteLength !== width * height * 4) throw badFrame(`It has ${rgba.byteLength} bytes of pixels for ${width}×${height} RGBA (${width * height * 4}).`);
  return { header: parsed.data, rgba };
}
