// Recognises an uploaded image from its magic bytes and header alone (PNG IHDR, JPEG up to the first
// SOFn, WebP VP8 / VP8L / VP8X), reads its EXIF orientation, and enforces the pixel budget before any
// decoder sees the bytes. Pure JS on purpose: this runs in the HTTP process, where a decoder would be
// the attack surface it is meant to guard, and rejects bad uploads in milliseconds (docs/SECURITY.md R9).
// Also owns the exact image MIME types the daemon accepts (docs/SECURITY.md §R7).
import { P2pzError, type ImageUploadResponse } from '../../shared/protocol/index.js';

export type ImageFormat = ImageUploadResponse['format'];

/** EXIF orientation, 1 (as stored) to 8; 5–8 swap width and height when displayed. */
export type ExifOrientation = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

/** What the header says. `width`/`height` are the stored dimensions, before EXIF orientation is
 *  applied; `orientedSize` gives the displayed ones. */
export interface ImageHeader {
  readonly format: ImageFormat;
  readonly width: number;
  readonly height: number;
  readonly orientation: ExifOrientation;
}

export interface ImageLimits {
  /** Most pixels (width × height) an image may have. */
  readonly maxPixels: number;
  /** Longest side in pixels. */
  readonly maxSide: number;
}

export const IMAGE_LIMITS: ImageLimits = Object.freeze({
  /** 8192 × 8192 = 64 MP: decoded RGB is 192 MiB, the most one job may hold before resizing. */
  maxPixels: 8192 * 8192,
  /** A thin strip may be longer than 8192, but no side may exceed 16384 (libvips tiles stay sane). */
  maxSide: 16384,
});

/** The exact Content-Type of each accepted format. */
export const IMAGE_MIME: Readonly<Record<ImageFormat, string>> = Object.freeze({
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
});

/** The format for an upload's Content-Type, or null. Only the exact types `image/png`,
 *  `image/jpeg`, `image/webp` are accepted (case-insensitive, as media types are; no parameters,
 *  no `image/jpg`), so no form or text post can reach an image route (docs/SECURITY.md §R7). */
export function formatForMime(contentType: string | null | undefined): ImageFormat | null {
  if (typeof contentType !== 'string') return null;
  const type = contentType.trim().toLowerCase();
  for (const format of Object.keys(IMAGE_MIME) as ImageFormat[]) {
    if (IMAGE_MIME[format] === type) return format;
  }
  return null;
}

/** `width`/`height` as displayed, after EXIF orientation (5–8 are transposing). */
export function orientedSize(header: ImageHeader): { width: number; height: number } {
  return header.orientation >= 5
    ? { width: header.height, height: header.width }
    : { width: header.width, height: header.height };
}

/** Throws E_IMAGE_TOO_LARGE when a side is over `limits.maxSide` or width × height is over
 *  `limits.maxPixels`. */
export function checkPixelBudget(header: Pick<ImageHeader, 'width' | 'height'>, limits: ImageLimits = IMAGE_LIMITS): void {
  const { width, height } = header;
  if (width > limits.maxSide || height > limits.maxSide) {
    throw new P2pzError(
      'E_IMAGE_TOO_LARGE',
      `It is ${width}×${height} pixels; each side may be at most ${limits.maxSide}.`,
    );
  }
  const pixels = width * height;
  if (pixels > limits.maxPixels) {
    throw new P2pzError(
      'E_IMAGE_TOO_LARGE',
      `It is ${width}×${height} pixels (${megapixels(pixels)} MP); at most ${megapixels(limits.maxPixels)} MP are allowed.`,
    );
  }
}

/** Identifies a PNG, JPEG or WebP image from its header and checks the pixel budget. Never decodes
 *  pixel data. Unknown, unsupported or truncated → E_IMAGE_FORMAT; over budget → E_IMAGE_TOO_LARGE. */
export function sniffImage(bytes: Uint8Array, limits: ImageLimits = IMAGE_LIMITS): ImageHeader {
  const header = parseHeader(bytes);
  checkPixelBudget(header, limits);
  return header;
}

function parseHeader(bytes: Uint8Array): ImageHeader {
  if (startsWith(bytes, 0, PNG_SIGNATURE)) return parsePng(bytes);
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return parseJpeg(bytes);
  if (startsWith(bytes, 0, ascii('RIFF')) && startsWith(bytes, 8, ascii('WEBP'))) return parseWebp(bytes);
  const other = recogniseOther(bytes);
  throw formatError(other ? `This looks like ${other} file.` : undefined);
}

// ---------------------------------------------------------------------------------------------- PNG

const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
/** Allowed bit depths per PNG colour type (PNG spec §11.2.2). */
const PNG_BIT_DEPTHS: Readonly<Record<number, readonly number[]>> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

// Layout: signature(8) | length(4)=13 "IHDR" width(4) height(4) depth colourType compression filter
// interlace | CRC(4) over type+data. Then chunks until IDAT; an eXIf chunk there carries orientation.
function parsePng(bytes: Uint8Array): ImageHeader {
  const view = dataView(bytes);
  if (bytes.length < 33) throw truncated();
  if (view.getUint32(8) !== 13 || !startsWith(bytes, 12, ascii('IHDR'))) throw formatError('The PNG header is damaged.');
  if (crc32(bytes.subarray(12, 29)) !== view.getUint32(29)) throw formatError('The PNG header is damaged.');
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const depth = bytes[24] ?? 0;
  const colourType = bytes[25] ?? 0;
  const valid =
    width > 0 && height > 0 && width <= 0x7fffffff && height <= 0x7fffffff &&
    (PNG_BIT_DEPTHS[colourType]?.includes(depth) ?? false) &&
    bytes[26] === 0 && bytes[27] === 0 && (bytes[28] === 0 || bytes[28] === 1);
  if (!valid) throw formatError('The PNG header is damaged.');

  let orientation: ExifOrientation = 1;
  for (let at = 33; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (type === 'IDAT' || type === 'IEND') break;
    const data = at + 8;
    if (length > bytes.length - data) break;
    if (type === 'eXIf') {
      orientation = exifOrientation(bytes.subarray(data, data + length));
      break;
    }
    at = data + length + 4;
  }
  return { format: 'png', width, height, orientation };
}

// --------------------------------------------------------------------------------------------- JPEG

/** SOFn markers that carry the frame size: C0–CF except DHT (C4), JPG (C8) and DAC (CC). */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

// Walks marker segments from SOI: FF xx [length(2) payload]. Standalone markers (TEM, RSTn) have no
// length; FF fill bytes (and, as libjpeg tolerates, stray bytes) may precede a marker. APP1
// "Exif\0\0" gives orientation, SOFn gives precision(1) height(2) width(2) components(1). Reaching
// SOS or EOI first means there is no frame header.
function parseJpeg(bytes: Uint8Array): ImageHeader {
  const view = dataView(bytes);
  let orientation: ExifOrientation = 1;
  let sawExif = false;
  let at = 2;
  for (;;) {
    // Like libjpeg's next_marker: stray bytes before a marker are skipped (decoders only warn).
    while (at < bytes.length && bytes[at] !== 0xff) at++;
    while (at < bytes.length && bytes[at] === 0xff) at++;
    if (at >= bytes.length) throw truncated();
    const marker = bytes[at] ?? 0;
    at++;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    if (marker === 0xd8 || marker === 0xd9 || marker === 0xda || marker === 0x00) {
      throw formatError('The JPEG has no frame header.');
    }
    if (at + 2 > bytes.length) throw truncated();
    const length = view.getUint16(at);
    if (length < 2) throw formatError('The JPEG data is damaged.');
    if (at + length > bytes.length) throw truncated();
    const payload = bytes.subarray(at + 2, at + length);
    if (marker === 0xe1 && !sawExif && startsWith(payload, 0, EXIF_PREFIX)) {
      sawExif = true;
      orientation = exifOrientation(payload.subarray(EXIF_PREFIX.length));
    } else if (isStartOfFrame(marker)) {
      if (payload.length < 6) throw formatError('The JPEG frame header is damaged.');
      const height = view.getUint16(at + 3);
      const width = view.getUint16(at + 5);
      if (width === 0 || height === 0) throw formatError('The JPEG frame header has no size.');
      return { format: 'jpeg', width, height, orientation };
    }
    at += length;
  }
}

// --------------------------------------------------------------------------------------------- WebP

// RIFF(4) size(4, LE, file length − 8) WEBP(4), then chunks fourcc(4) size(4, LE) data, padded to
// even sizes. The first chunk decides: VP8 (lossy key frame: start code 9D 01 2A, 14-bit sizes),
// VP8L (lossless: 0x2F, 14-bit size − 1 each, 3-bit version 0) or VP8X (extended: 24-bit canvas
// size − 1 each; an EXIF chunk, flagged by 0x08, carries orientation).
function parseWebp(bytes: Uint8Array): ImageHeader {
  const view = dataView(bytes);
  if (bytes.length < 20) throw truncated();
  const riffEnd = view.getUint32(4, true) + 8;
  if (riffEnd > bytes.length) throw truncated();
  const fourcc = String.fromCharCode(...bytes.subarray(12, 16));
  const size = view.getUint32(16, true);
  const data = 20;
  if (data + size > riffEnd) throw truncated();
  const damaged = (): P2pzError => formatError('The WebP header is damaged.');

  if (fourcc === 'VP8 ') {
    if (size < 10) throw damaged();
    const keyFrame = ((bytes[data] ?? 1) & 1) === 0;
    if (!keyFrame || !startsWith(bytes, data + 3, Uint8Array.of(0x9d, 0x01, 0x2a))) throw damaged();
    const width = view.getUint16(data + 6, true) & 0x3fff;
    const height = view.getUint16(data + 8, true) & 0x3fff;
    if (width === 0 || height === 0) throw damaged();
    return { format: 'webp', width, height, orientation: 1 };
  }
  if (fourcc === 'VP8L') {
    if (size < 5 || bytes[data] !== 0x2f) throw damaged();
    const bits = view.getUint32(data + 1, true);
    if (bits >>> 29 !== 0) throw damaged();
    return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, orientation: 1 };
  }
  if (fourcc === 'VP8X') {
    if (size < 10) throw damaged();
    const flags = bytes[data] ?? 0;
    const width = uint24le(bytes, data + 4) + 1;
    const height = uint24le(bytes, data + 7) + 1;
    let orientation: ExifOrientation = 1;
    if (flags & 0x08) {
      for (let at = data + size + (size & 1); at + 8 <= riffEnd; ) {
        const chunkSize = view.getUint32(at + 4, true);
        if (chunkSize > riffEnd - at - 8) break;
        if (startsWith(bytes, at, ascii('EXIF'))) {
          const exif = bytes.subarray(at + 8, at + 8 + chunkSize);
          orientation = exifOrientation(startsWith(exif, 0, EXIF_PREFIX) ? exif.subarray(EXIF_PREFIX.length) : exif);
          break;
        }
        at += 8 + chunkSize + (chunkSize & 1);
      }
    }
    return { format: 'webp', width, height, orientation };
  }
  throw damaged();
}

// --------------------------------------------------------------------------------------------- EXIF

const EXIF_PREFIX = Uint8Array.of(0x45, 0x78, 0x69, 0x66, 0x00, 0x00); // "Exif\0\0"

/** Orientation (tag 0x0112, SHORT) from a TIFF structure: byte order "II"/"MM", 42, IFD0 offset,
 *  then 12-byte entries. Broken or missing EXIF means 1, as decoders treat it. */
function exifOrientation(tiff: Uint8Array): ExifOrientation {
  if (tiff.length < 8) return 1;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  const big = tiff[0] === 0x4d && tiff[1] === 0x4d;
  if (!little && !big) return 1;
  const view = dataView(tiff);
  if (view.getUint16(2, little) !== 42) return 1;
  const ifd = view.getUint32(4, little);
  if (ifd > tiff.length - 2) return 1;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) return 1;
    if (view.getUint16(entry, little) !== 0x0112) continue;
    if (view.getUint16(entry + 2, little) !== 3) return 1;
    const value = view.getUint16(entry + 8, little);
    return value >= 1 && value <= 8 ? (value as ExifOrientation) : 1;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------- utilities

/** Other formats a designer may export, named in the error so the fix is obvious. */
function recogniseOther(bytes: Uint8Array): string | null {
  const head = String.fromCharCode(...bytes.subarray(0, 16));
  if (head.startsWith('GIF87a') || head.startsWith('GIF89a')) return 'a GIF';
  if (head.startsWith('BM')) return 'a BMP';
  if (head.startsWith('II*\0') || head.startsWith('MM\0*')) return 'a TIFF';
  if (head.startsWith('%PDF')) return 'a PDF';
  if (head.startsWith('8BPS')) return 'a Photoshop';
  if (head.slice(4, 8) === 'ftyp') return 'a HEIC or AVIF';
  if (/^(\xEF\xBB\xBF)?\s*</.test(head)) return 'an SVG or other text';
  return null;
}

function formatError(detail?: string): P2pzError {
  return new P2pzError('E_IMAGE_FORMAT', detail);
}

function truncated(): P2pzError {
  return formatError('The file ends inside its header (truncated upload?).');
}

function megapixels(pixels: number): string {
  return (pixels / 1e6).toFixed(1);
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function startsWith(bytes: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at < 0 || at + prefix.length > bytes.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

function uint24le(bytes: Uint8Array, at: number): number {
  return (bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8) | ((bytes[at + 2] ?? 0) << 16);
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (ISO-HDLC, polynomial 0xEDB88320 reflected) as PNG uses it over chunk type + data. */
export function crc32(bytes: Uint8Array): number {
  const table = (crcTable ??= makeCrcTable());
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (table[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function makeCrcTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}
