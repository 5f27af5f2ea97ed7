// Request bodies (docs/SECURITY.md §R7, §R8): which content types a route accepts, how large a body may be, and reading
// it without ever holding more than the limit. State-changing requests carry JSON or an image with its
// exact MIME type; anything a plain HTML form or `text/plain` fetch could send is 415, so a web page
// cannot make a "simple" cross-site request. Compressed bodies are refused (no decompression bombs).
// Limits are checked against Content-Length before reading and again while streaming; an overflow
// answers 413 at once and closes the connection instead of reading the rest.
import type { IncomingMessage } from 'node:http';
import type { z } from 'zod';
import { P2pzError } from '../../shared/protocol/index.js';
import { formatForMime } from '../image/sniff.js';
import { parseBody, parseJsonText } from './validate.js';

export interface BodyLimits {
  readonly jsonBytes: number;
  readonly imageBytes: number;
  readonly uploadBytesInFlight: number;
  readonly uploadBytesInFlightPerToken: number;
}

export const BODY_LIMITS: BodyLimits = Object.freeze({
  /** JSON bodies (job submissions are well under 2 KiB). */
  jsonBytes: 64 * 1024,
  /** Raw image uploads. */
  imageBytes: 50 * 1024 * 1024,
  /** Image upload bytes arriving at once, all tokens together (server/upload-budget.ts). */
  uploadBytesInFlight: 4 * 50 * 1024 * 1024,
  /** Image upload bytes arriving at once for one token: one upload of the largest size. */
  uploadBytesInFlightPerToken: 50 * 1024 * 1024,
});

export type ImageMime = 'image/png' | 'image/jpeg' | 'image/webp';
export type BodyKind = { readonly kind: 'json' } | { readonly kind: 'image'; readonly mime: ImageMime } | { readonly kind: 'none' };

const JSON_TYPE = /^application\/json\s*(?:;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Classifies a request's body from its headers: JSON, an image (exact MIME), or none. Throws
 * E_UNSUPPORTED_MEDIA_TYPE for a Content-Encoding, for any other Content-Type, and for a
 * state-changing request with a body but no Content-Type.
 */
export function bodyKind(req: IncomingMessage): BodyKind {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    throw new P2pzError('E_UNSUPPORTED_MEDIA_TYPE', 'Compressed bodies are not accepted.');
  }
  const type = req.headers['content-type'];
  if (type === undefined) {
    if (STATE_CHANGING.has(req.method ?? '') && hasBody(req)) throw new P2pzError('E_UNSUPPORTED_MEDIA_TYPE');
    return { kind: 'none' };
  }
  if (JSON_TYPE.test(type)) return { kind: 'json' };
  const format = formatForMime(type);
  if (format !== null) return { kind: 'image', mime: `image/${format}` };
  throw new P2pzError('E_UNSUPPORTED_MEDIA_TYPE');
}

export function limitFor(kind: BodyKind, limits: BodyLimits): number {
  return kind.kind === 'image' ? limits.imageBytes : limits.jsonBytes;
}

function tooLarge(limit: number, limits: BodyLimits): P2pzError {
  return limit === limits.imageBytes
    ? new P2pzError('E_PAYLOAD_TOO_LARGE')
    : new P2pzError('E_PAYLOAD_TOO_LARGE', `JSON bodies are limited to ${Math.floor(limit / 1024)} KiB.`, 'Send the image with POST /v1/images and refer to it by its id.');
}

/** Throws E_PAYLOAD_TOO_LARGE when Content-Length already exceeds the limit for the body's kind. */
export function checkDeclaredLength(req: IncomingMessage, kind: BodyKind, limits: BodyLimits): void {
  const length = req.headers['content-length'];
  if (length === undefined) return;
  const limit = limitFor(kind, limits);
  if (Number(length) > limit) throw tooLarge(limit, limits);
}

/** Reads the whole body, failing with E_PAYLOAD_TOO_LARGE as soon as more than `limit` bytes arrived.
 *  With a declared length the bytes go straight into one buffer of that size, so a body is held once,
 *  never as chunks plus their concatenation (docs/SECURITY.md §Memory bound). */
export function readBody(req: IncomingMessage, limit: number, limits: BodyLimits = BODY_LIMITS): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
    const whole = declared !== undefined && Number.isSafeInteger(declared) && declared <= limit ? Buffer.allocUnsafe(declared) : undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit, limits));
        return;
      }
      if (whole === undefined) chunks.push(chunk);
      else if (size <= whole.length) chunk.copy(whole, size - chunk.length);
    };
    const onEnd = (): void => {
      cleanup();
      if (whole === undefined) resolve(Buffer.concat(chunks, size));
      else if (size === whole.length) resolve(whole);
      else reject(new P2pzError('E_BAD_REQUEST', 'The upload was interrupted.'));
    };
    const onError = (): void => {
      cleanup();
      reject(new P2pzError('E_BAD_REQUEST', 'The upload was interrupted.'));
    };
    const onClose = (): void => {
      if (req.readableEnded) return;
      onError();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** Reads and parses a JSON body with `schema` (the route has already been classified as JSON). */
export async function readJson<S extends z.ZodType>(req: IncomingMessage, schema: S, limits: BodyLimits): Promise<z.output<S>> {
  const kind = bodyKind(req);
  if (kind.kind !== 'json') throw new P2pzError('E_UNSUPPORTED_MEDIA_TYPE', 'This route takes an application/json body.');
  checkDeclaredLength(req, kind, limits);
  return parseBody(schema, parseJsonText(await readBody(req, limits.jsonBytes, limits)));
}

/** Reads a raw image body sent with its exact MIME type. */
export async function readImage(req: IncomingMessage, limits: BodyLimits): Promise<{ mime: ImageMime; bytes: Buffer }> {
  const kind = bodyKind(req);
  if (kind.kind !== 'image') {
    throw new P2pzError('E_UNSUPPORTED_MEDIA_TYPE', 'This route takes the raw image with Content-Type image/png, image/jpeg or image/webp.');
  }
  checkDeclaredLength(req, kind, limits);
  return { mime: kind.mime, bytes: await readBody(req, limits.imageBytes, limits) };
}
