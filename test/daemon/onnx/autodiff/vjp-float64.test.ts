// Per-op gradients against central finite differences in float64, for the ops whose float64
// kernels onnxruntime's CPU provider has (MatMul, Gemm, Softmax, Sigmoid, LayerNormalization,
// ReduceMean, Sqrt, Sin) and the elementwise arithmetic around them. Step h = 1e-5: truncation error
// O(h²) ≈ 1e-10 and rounding error ≈ 1e-16/h ≈ 1e-11, so 1e-6 relative is a strict bound.
import { describe, expect, it } from 'vitest';
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { checkOpGradient, uniform, type OpCase } from './op-harness.js';

const D = DataType.DOUBLE;
const H = 1e-5;
const TOL = 1e-6;

const cases: [string, OpCase][] = [
  ['MatMul 3-D × 2-D weight', { op: 'MatMul', dtype: D, inputs: [{ name: 'A', dims: [2, 3, 4], wrt: true }, { name: 'B', dims: [4, 5], wrt: true }] }],
  ['MatMul batched with broadcast', { op: 'MatMul', dtype: D, inputs: [{ name: 'A', dims: [2, 1, 3, 4], wrt: true }, { name: 'B', dims: [3, 4, 2], wrt: true }] }],
  ['Gemm', { op: 'Gemm', dtype: D, attrs: { alpha: { float: 0.7 }, beta: { float: 1.3 } }, inputs: [{ name: 'A', dims: [3, 4], wrt: true }, { name: 'B', dims: [4, 5], wrt: true }, { name: 'C', dims: [5], wrt: true }] }],
  ['Gemm transA transB', { op: 'Gemm', dtype: D, attrs: { transA: 1, transB: 1, alpha: { float: 1.5 } }, inputs: [{ name: 'A', dims: [4, 3], wrt: true }, { name: 'B', dims: [5, 4], wrt: true }, { name: 'C', dims: [3, 5], wrt: true }] }],
  ['Gemm transB (Linear)', { op: 'Gemm', dtype: D, attrs: { transB: 1 }, inputs: [{ name: 'A', dims: [2, 6], wrt: true }, { name: 'B', dims: [3, 6], wrt: true }, { name: 'C', dims: [1, 3], wrt: true }] }],
  ['Softmax last axis', { op: 'Softmax', dtype: D, attrs: { axis: -1 }, inputs: [{ name: 'X', dims: [2, 3, 5], wrt: true }] }],
  ['Softmax middle axis', { op: 'Softmax', dtype: D, attrs: { axis: 1 }, inputs: [{ name: 'X', dims: [2, 4, 3], wrt: true }] }],
  ['Sigmoid', { op: 'Sigmoid', dtype: D, inputs: [{ name: 'X', dims: [3, 4], values: uniform(5, 12, -4, 4), wrt: true }] }],
  ['LayerNormalization', { op: 'LayerNormalization', dtype: D, attrs: { axis: -1, epsilon: { float: 1e-5 } }, inputs: [{ name: 'X', dims: [2, 3, 8], wrt: true }, { name: 'S', dims: [8], wrt: true }, { name: 'Bi', dims: [8], wrt: true }] }],
  ['LayerNormalization over two axes', { op: 'LayerNormalization', dtype: D, attrs: { axis: 1 }, inputs: [{ name: 'X', dims: [2, 3, 4], wrt: true }, { name: 'S', dims: [3, 4], wrt: true }] }],
  ['ReduceMean (axes attribute, opset 14)', { op: 'ReduceMean', dtype: D, opset: 14, attrs: { axes: [-1], keepdims: 1 }, inputs: [{ name: 'X', dims: [2, 3, 4], wrt: true }] }],
  ['ReduceMean (axes input, opset 18, no keepdims)', { op: 'ReduceMean', dtype: D, opset: 18, attrs: { keepdims: 0 }, inputs: [{ name: 'X', dims: [2, 3, 4], wrt: true }, { name: 'ax', dims: [2], dtype: DataType.INT64, values: [0, 2], constant: true }] }],
  ['ReduceSum', { op: 'ReduceSum', dtype: D, attrs: { keepdims: 0 }, inputs: [{ name: 'X', dims: [2, 3, 4], wrt: true }, { name: 'ax', dims: [1], dtype: DataType.INT64, values: [1], constant: true }] }],
  ['Sqrt', { op: 'Sqrt', dtype: D, inputs: [{ name: 'X', dims: [3, 4], values: uniform(3, 12, 0.2, 3), wrt: true }] }],
  ['Sin', { op: 'Sin', dtype: D, inputs: [{ name: 'X', dims: [3, 4], values: uniform(4, 12, -3, 3), wrt: true }] }],
  ['Add with broadcasting', { op: 'Add', dtype: D, inputs: [{ name: 'A', dims: [2, 3, 4], wrt: true }, { name: 'B', dims: [3, 1], wrt: true }] }],
  ['Sub with broadcasting', { op: 'Sub', dtype: D, inputs: [{ name: 'A', dims: [4], wrt: true }, { name: 'B', dims: [2, 3, 4], wrt: true }] }],
  ['Mul with broadcasting', { op: 'Mul', dtype: D, inputs: [{ name: 'A', dims: [2, 1, 4], wrt: true }, { name: 'B', dims: [3, 1], wrt: true }] }],
  ['Div with broadcasting', { op: 'Div', dtype: D, inputs: [{ name: 'A', dims: [2, 3], wrt: true }, { name: 'B', dims: [3], values: uniform(9, 3, 0.5, 2), wrt: true }] }],
  ['Pow by a constant 2', { op: 'Pow', dtype: D, inputs: [{ name: 'A', dims: [2, 3], wrt: true }, { name: 'E', dims: [], values: [2], constant: true }] }],
  ['Pow by a constant 0.5', { op: 'Pow', dtype: D, inputs: [{ name: 'A', dims: [2, 3], values: uniform(8, 6, 0.3, 2), wrt: true }, { name: 'E', dims: [], values: [0.5], constant: true }] }],
  ['Pow with both operands varying', { op: 'Pow', dtype: D, inputs: [{ name: 'A', dims: [2, 3], values: uniform(8, 6, 0.3, 2), wrt: true }, { name: 'E', dims: [3], values: uniform(9, 3, 0.5, 2.5), wrt: true }] }],
];

describe('vector-Jacobian products in float64', () => {
  for (const [title, c] of cases) {
    it(title, async () => {
      const r = await checkOpGradient(c, H);
      for (const [name, err] of Object.entries(r.relErr)) {
        expect(r.analytic[name]?.length, name).toBeGreaterThan(0);
        expect(err, `${title}: ∂L/∂${name}`).toBeLessThan(TOL);
      }
      expect(Math.max(...Object.values(r.numeric).flat().map(Math.abs))).toBeGreaterThan(1e-3);
    });
  }
});
