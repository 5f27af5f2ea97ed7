// Shared by the tiny-model tests: deterministic inputs and small numeric helpers.
import * as ort from 'onnxruntime-node';

/** Deterministic pseudo-random values in [-amp, amp] (a fixed sine hash; no Math.random). */
export function wave(n: number, phase = 0, amp = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const s = Math.sin((i + 1) * 12.9898 + phase * 78.233) * 43758.5453;
    x[i] = amp * (2 * (s - Math.floor(s)) - 1);
  }
  return x;
}

export function f32(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, [...dims]);
}

export function ids(type: 'int32' | 'int64', values: readonly number[], dims: readonly number[]): ort.Tensor {
  return type === 'int32'
    ? new ort.Tensor('int32', Int32Array.from(values), [...dims])
    : new ort.Tensor('int64', BigInt64Array.from(values, BigInt), [...dims]);
}

export function data(t: ort.Tensor | undefined): Float32Array {
  if (!t) throw new Error('missing output');
  return t.data as Float32Array;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

export function allFinite(a: Float32Array): boolean {
  return a.every((v) => Number.isFinite(v));
}

export function rms(a: Float32Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s / a.length);
}
