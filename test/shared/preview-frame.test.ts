// Preview frames (shared/protocol/preview-frame.ts): what the daemon encodes, the plugin decodes to the
// same header and exactly the same pixels; everything else (wrong magic, a header length out of
// bounds, a header that is not JSON or not the schema, pixels that do not match the size, frames over
// the limits) is refused with E_BAD_FRAME and a message that says what is wrong.
import { describe, expect, it } from 'vitest';
import {
  decodePreviewFrame,
  encodePreviewFrame,
  P2pzError,
  PREVIEW_FRAME_LIMITS,
  PREVIEW_FRAME_MAX_BYTES,
  PROTOCOL_VERSION,
  PreviewPixels,
  type PreviewFrameHeader,
} from '../../shared/protocol/index.js';

const header = (over: Partial<PreviewFrameHeader> = {}): PreviewFrameHeader => ({
  v: PROTOCOL_VERSION,
  type: 'preview-frame',
  jobId: 'job_0123456789',
  kind: 'preview',
  role: 'result',
  stage: 'generate',
  step: 1,
  total: 1,
  width: 3,
  height: 2,
  format: 'rgba8',
  ...over,
});
const pixels = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 255);

/** The code and message of what `fn` throws. */
function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof P2pzError) return `${err.code}: ${err.message}`;
    throw err;
  }
  throw new Error('not refused');
}

/** A frame whose 4-byte header length is set to `n` (the rest as encoded). */
function withHeaderLength(frame: Uint8Array, n: number): Uint8Array {
  const out = frame.slice();
  new DataView(out.buffer).setUint32(4, n);
  return out;
}

describe('preview frames', () => {
  it('round-trip: header and pixels exactly, the pixels a view of the message (no copy)', () => {
    const rgba = pixels(3 * 2 * 4);
    const bytes = encodePreviewFrame(header(), rgba);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0x50, 0x32, 0x50, 0x46]);
    const frame = decodePreviewFrame(bytes);
    expect(frame.header).toEqual(header());
    expect(frame.rgba).toEqual(rgba);
    expect(frame.rgba.buffer).toBe(bytes.buffer);
    // At an offset inside a larger buffer, as a WebSocket library may hand it over.
    const padded = new Uint8Array(bytes.length + 5);
    padded.set(bytes, 5);
    expect(decodePreviewFrame(padded.subarray(5)).rgba).toEqual(rgba);
  });

  it('refuses what is not a well-formed frame, saying what is wrong', () => {
    const good = encodePreviewFrame(header(), pixels(24));
    const headerLength = new DataView(good.buffer).getUint32(4);
    expect(refusal(() => decodePreviewFrame(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0])))).toBe('E_BAD_FRAME: A preview image from the p2pz daemon could not be read. It does not start with P2PF.');
    expect(refusal(() => decodePreviewFrame(good.subarray(0, 6)))).toMatch(/^E_BAD_FRAME: .* It does not start with P2PF\.$/);
    expect(refusal(() => decodePreviewFrame(withHeaderLength(good, 5000)))).toMatch(/^E_BAD_FRAME: .* Its header length 5000 is out of bounds\.$/);
    expect(refusal(() => decodePreviewFrame(withHeaderLength(good, good.length)))).toMatch(/header length \d+ is out of bounds/);
    expect(refusal(() => decodePreviewFrame(withHeaderLength(good, headerLength - 1)))).toMatch(/Its header is not ASCII JSON\.$/);
    const notAscii = good.slice();
    notAscii[9] = 0xc3;
    expect(refusal(() => decodePreviewFrame(notAscii))).toMatch(/Its header is not ASCII JSON\.$/);
    expect(refusal(() => decodePreviewFrame(good.subarray(0, good.length - 1)))).toMatch(/It has 23 bytes of pixels for 3×2 RGBA \(24\)\.$/);
    const extra = new Uint8Array(good.length + 4);
    extra.set(good);
    expect(refusal(() => decodePreviewFrame(extra))).toMatch(/It has 28 bytes of pixels for 3×2 RGBA/);
    // A header the schema refuses: another version, a step frame larger than a thumbnail.
    const forged = (h: object, n: number): Uint8Array => {
      const json = new Uint8Array([...JSON.stringify(h)].map((c) => c.charCodeAt(0)));
      const out = new Uint8Array(8 + json.length + n);
      out.set([0x50, 0x32, 0x50, 0x46]);
      new DataView(out.buffer).setUint32(4, json.length);
      out.set(json, 8);
      return out;
    };
    expect(refusal(() => decodePreviewFrame(forged({ ...header(), v: 2 }, 24)))).toMatch(/Its header is not valid: v: /);
    expect(refusal(() => decodePreviewFrame(forged({ ...header(), role: 'step', width: 200, height: 2 }, 1600)))).toMatch(/a step frame is at most 128 pixels a side/);
    expect(refusal(() => decodePreviewFrame(forged({ ...header(), width: 1025, height: 1 }, 4100)))).toMatch(/Its header is not valid: width: /);
  });

  it('refuses an oversized frame before reading it, and the daemon encodes none', () => {
    const L = PREVIEW_FRAME_LIMITS;
    expect(PREVIEW_FRAME_MAX_BYTES).toBe(8 + 2048 + 1024 * 1024 * 4);
    expect(refusal(() => decodePreviewFrame(new Uint8Array(PREVIEW_FRAME_MAX_BYTES + 1)))).toMatch(/^E_BAD_FRAME: .* It is \d+ bytes; a frame is at most 4196360\.$/);
    expect(refusal(() => encodePreviewFrame(header({ width: L.maxSide + 1, height: 1 }), pixels((L.maxSide + 1) * 4)))).toMatch(/^E_BAD_FRAME: .*header is not valid/);
    expect(refusal(() => encodePreviewFrame(header(), pixels(23)))).toMatch(/It has 23 bytes of pixels for 3×2 RGBA\.$/);
    // The largest frame the limits allow goes through.
    const big = encodePreviewFrame(header({ width: 1024, height: 1024 }), new Uint8Array(1024 * 1024 * 4));
    expect(decodePreviewFrame(big).header.width).toBe(1024);
  });

  it('checks the pixels a pipeline hands on (worker IPC) against their size and role', () => {
    expect(PreviewPixels.safeParse({ role: 'step', width: 2, height: 2, rgba: new Uint8Array(16) }).success).toBe(true);
    expect(PreviewPixels.safeParse({ role: 'step', width: 2, height: 2, rgba: new Uint8Array(12) }).success).toBe(false);
    expect(PreviewPixels.safeParse({ role: 'step', width: 129, height: 1, rgba: new Uint8Array(129 * 4) }).success).toBe(false);
    expect(PreviewPixels.safeParse({ role: 'result', width: 129, height: 1, rgba: new Uint8Array(129 * 4) }).success).toBe(true);
    expect(PreviewPixels.safeParse({ role: 'result', width: 2, height: 2, rgba: [0, 0] }).success).toBe(false);
  });
});
