// .npy v1.0 as NumPy writes it: magic, version, header dict padded to a 64-byte boundary, little-endian
// data in C order; the reader accepts what the writer wrote and refuses anything else.
import { describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy } from '../../../../daemon/pipeline/dump/npy.js';

function headerOf(bytes: Uint8Array): string {
  const len = bytes[8]! | (bytes[9]! << 8);
  return new TextDecoder('latin1').decode(bytes.subarray(10, 10 + len));
}

describe('encodeNpy', () => {
  it('writes the header NumPy writes for float32 (2, 3), data aligned to 64 bytes', () => {
    const bytes = encodeNpy(Float32Array.of(1, 2, 3, 4, 5, 6.5), [2, 3]);
    expect([...bytes.subarray(0, 8)]).toEqual([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    const header = headerOf(bytes);
    expect(header.trimEnd()).toBe("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
    expect(header.endsWith('\n')).toBe(true);
    expect((10 + header.length) % 64).toBe(0);
    expect(bytes.length).toBe(10 + header.length + 24);
    const view = new DataView(bytes.buffer, bytes.byteOffset + 10 + header.length);
    expect(view.getFloat32(20, true)).toBe(6.5);
    expect(view.getUint32(0, true)).toBe(0x3f800000); // 1.0f little-endian
  });

  it('writes one-dimensional shapes as (n,) and int64 as <i8', () => {
    const bytes = encodeNpy(BigInt64Array.of(49406n, -1n), [2]);
    expect(headerOf(bytes).trimEnd()).toBe("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }");
    const back = decodeNpy(bytes);
    expect(back.shape).toEqual([2]);
    expect([...(back.data as BigInt64Array)]).toEqual([49406n, -1n]);
  });

  it('refuses a shape that does not hold the data', () => {
    expect(() => encodeNpy(new Float32Array(5), [2, 3])).toThrow(/shape/);
  });
});

describe('decodeNpy', () => {
  it('round-trips float32 [1,4,2,3] exactly', () => {
    const data = Float32Array.from({ length: 24 }, (_, i) => Math.fround(Math.sin(i) * 1e3));
    const back = decodeNpy(encodeNpy(data, [1, 4, 2, 3]));
    expect(back.shape).toEqual([1, 4, 2, 3]);
    expect([...(back.data as Float32Array)]).toEqual([...data]);
  });

  it('refuses a truncated file, another version and Fortran order', () => {
    const good = encodeNpy(Float32Array.of(1, 2), [2]);
    expect(() => decodeNpy(good.subarray(0, good.length - 1))).toThrow(/length/);
    const v2 = good.slice();
    v2[6] = 2;
    expect(() => decodeNpy(v2)).toThrow(/version/);
    const fortran = new TextDecoder('latin1').decode(good).replace('False', 'True ');
    expect(() => decodeNpy(Uint8Array.from(fortran, (c) => c.charCodeAt(0)))).toThrow(/header/);
  });
});
