// NumPy's `.npy` format, version 1.0 (numpy.lib.format): the magic "\x93NUMPY", version 1.0, a
// little-endian uint16 header length, an ASCII Python-dict header padded with spaces and a newline
// so that the data starts on a 64-byte boundary, then the raw data in C order. Only the two types
// the pipeline writes: little-endian float32 ('<f4') and int64 ('<i8'). Reading (for the caches)
// parses the header and refuses anything else.
import { z } from 'zod';
import { P2pzError } from '../../../shared/protocol/index.js';

export type NpyData = Float32Array | BigInt64Array;

export interface NpyArray {
  readonly data: NpyData;
  readonly shape: readonly number[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const PREAMBLE = 10; // magic (6) + version (2) + header length (2)
const ALIGN = 64;

function descr(data: NpyData): '<f4' | '<i8' {
  return data instanceof Float32Array ? '<f4' : '<i8';
}

/** Encodes `data` with `shape` (Π shape = data.length) as .npy v1.0, little-endian, C order. */
export function encodeNpy(data: NpyData, shape: readonly number[]): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (shape.some((d) => !Number.isInteger(d) || d < 0) || count !== data.length) {
    throw new P2pzError('E_INTERNAL', `npy: shape [${shape.join(',')}] does not hold ${data.length} values.`);
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr(data)}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = PREAMBLE + dict.length + 1;
  const headerLength = dict.length + 1 + ((ALIGN - (unpadded % ALIGN)) % ALIGN);
  if (headerLength > 0xffff) throw new P2pzError('E_INTERNAL', 'npy: header too long for version 1.0.');
  const out = new Uint8Array(PREAMBLE + headerLength + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out[8] = headerLength & 0xff;
  out[9] = headerLength >> 8;
  const header = dict.padEnd(headerLength - 1, ' ') + '\n';
  for (let i = 0; i < header.length; i++) out[PREAMBLE + i] = header.charCodeAt(i);
  const view = new DataView(out.buffer, PREAMBLE + headerLength);
  if (data instanceof Float32Array) {
    for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i]!, true);
  } else {
    for (let i = 0; i < data.length; i++) view.setBigInt64(i * 8, data[i]!, true);
  }
  return out;
}

const NpyHeader = z.object({
  descr: z.enum(['<f4', '<i8']),
  fortran_order: z.literal(false),
  shape: z.array(z.number().int().nonnegative()).max(8),
});

function bad(detail: string): P2pzError {
  return new P2pzError('E_INTERNAL', `npy: ${detail}`);
}

/** Parses a .npy v1.0 file written by `encodeNpy` (or NumPy with the same types). */
export function decodeNpy(bytes: Uint8Array): NpyArray {
  if (bytes.length < PREAMBLE || MAGIC.some((m, i) => bytes[i] !== m)) throw bad('not a .npy file.');
  if (bytes[6] !== 1 || bytes[7] !== 0) throw bad('only version 1.0 is read.');
  const headerLength = bytes[8]! | (bytes[9]! << 8);
  if (PREAMBLE + headerLength > bytes.length) throw bad('truncated header.');
  const text = new TextDecoder('latin1').decode(bytes.subarray(PREAMBLE, PREAMBLE + headerLength)).trim();
  // The header is a Python dict literal; rewrite it as JSON for the three keys it may hold.
  const json = text
    .replace(/'/g, '"')
    .replace(/\bFalse\b/g, 'false')
    .replace(/\bTrue\b/g, 'true')
    .replace(/\(([^)]*)\)/g, (_, inner: string) => `[${inner.split(',').map((s) => s.trim()).filter((s) => s !== '').join(',')}]`)
    .replace(/,\s*}/g, '}');
  let header: z.infer<typeof NpyHeader>;
  try {
    const parsed = NpyHeader.safeParse(JSON.parse(json));
    if (!parsed.success) throw new Error('schema');
    header = parsed.data;
  } catch {
    throw bad('unsupported header.');
  }
  const count = header.shape.reduce((a, b) => a * b, 1);
  const itemSize = header.descr === '<f4' ? 4 : 8;
  const start = PREAMBLE + headerLength;
  if (bytes.length !== start + count * itemSize) throw bad('data length does not match the shape.');
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, count * itemSize);
  if (header.descr === '<f4') {
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(i * 4, true);
    return { data, shape: header.shape };
  }
  const data = new BigInt64Array(count);
  for (let i = 0; i < count; i++) data[i] = view.getBigInt64(i * 8, true);
  return { data, shape: header.shape };
}
