// Per-op gradients against central finite differences in float32, for the ops onnxruntime's CPU
// provider has no float64 kernel for (Conv, InstanceNormalization, Erf, Resize, ...) and the data
// movement ops. L = Σ Y ⊙ W is evaluated in float64 from the float32 output Y, so its rounding error
// is about √n·|Y|·6e-8 ≈ 1e-6.
// - Ops linear (or multilinear) in each input element: central differences are exact for any step,
//   so h = 0.5 leaves only rounding, ≈ 1e-6 / (2h) = 1e-6 relative: tolerance 1e-4.
// - Smooth nonlinear ops: h = 1e-2 gives truncation ≈ h²·|f'''|/6 ≈ 2e-5 and rounding ≈ 5e-5:
//   tolerance 2e-3 (5e-3 for the normalisations, whose third derivative grows as 1/σ³).
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../../shared/protocol/errors.js';
import { DataType } from '../../../../daemon/onnx/graph/onnx-proto.js';
import { makeNode } from '../../../../daemon/onnx/graph/nodes.js';
import { checkOpGradient, uniform, type OpCase } from './op-harness.js';

const F = DataType.FLOAT;
const I64 = DataType.INT64;
type Row = [string, OpCase, number, number];
const LINEAR = [0.5, 1e-4] as const;
const SMOOTH = [1e-2, 2e-3] as const;

const cases: Row[] = [
  ['Conv 3×3 stride 1 pad 1 with bias', { op: 'Conv', dtype: F, attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, inputs: [{ name: 'X', dims: [2, 3, 5, 5], wrt: true }, { name: 'W', dims: [4, 3, 3, 3], constant: true }, { name: 'B', dims: [4], constant: true }] }, ...LINEAR],
  ['Conv 3×3 stride 2 pad 1 on an odd size', { op: 'Conv', dtype: F, attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, inputs: [{ name: 'X', dims: [1, 2, 7, 6], wrt: true }, { name: 'W', dims: [3, 2, 3, 3], constant: true }] }, ...LINEAR],
  ['Conv 3×3 stride 1 with dilation and uneven pads', { op: 'Conv', dtype: F, attrs: { kernel_shape: [3, 3], dilations: [2, 1], pads: [2, 0, 1, 2] }, inputs: [{ name: 'X', dims: [1, 2, 7, 5], wrt: true }, { name: 'W', dims: [3, 2, 3, 3], constant: true }] }, ...LINEAR],
  ['Conv 1×1', { op: 'Conv', dtype: F, inputs: [{ name: 'X', dims: [1, 4, 3, 3], wrt: true }, { name: 'W', dims: [2, 4, 1, 1], constant: true }, { name: 'B', dims: [2], constant: true }] }, ...LINEAR],
  ['InstanceNormalization', { op: 'InstanceNormalization', dtype: F, attrs: { epsilon: { float: 1e-5 } }, inputs: [{ name: 'X', dims: [2, 3, 12], wrt: true }, { name: 'S', dims: [3], wrt: true }, { name: 'Bi', dims: [3], wrt: true }] }, 1e-2, 5e-3],
  ['Erf', { op: 'Erf', dtype: F, inputs: [{ name: 'X', dims: [3, 4], values: uniform(1, 12, -2, 2), wrt: true }] }, ...SMOOTH],
  ['Tanh', { op: 'Tanh', dtype: F, inputs: [{ name: 'X', dims: [3, 4], values: uniform(2, 12, -2, 2), wrt: true }] }, ...SMOOTH],
  ['Exp', { op: 'Exp', dtype: F, inputs: [{ name: 'X', dims: [3, 4], wrt: true }] }, ...SMOOTH],
  ['Cos', { op: 'Cos', dtype: F, inputs: [{ name: 'X', dims: [3, 4], values: uniform(3, 12, -3, 3), wrt: true }] }, ...SMOOTH],
  ['Sigmoid', { op: 'Sigmoid', dtype: F, inputs: [{ name: 'X', dims: [3, 4], values: uniform(4, 12, -3, 3), wrt: true }] }, ...SMOOTH],
  ['Reshape', { op: 'Reshape', dtype: F, inputs: [{ name: 'X', dims: [2, 3, 4], wrt: true }, { name: 's', dims: [2], dtype: I64, values: [4, -1], constant: true }] }, ...LINEAR],
  ['Transpose', { op: 'Transpose', dtype: F, attrs: { perm: [2, 0, 1] }, inputs: [{ name: 'X', dims: [2, 3, 4], wrt: true }] }, ...LINEAR],
  ['Concat', { op: 'Concat', dtype: F, attrs: { axis: 1 }, inputs: [{ name: 'A', dims: [2, 3, 2], wrt: true }, { name: 'B', dims: [2, 1, 2], wrt: true }] }, ...LINEAR],
  ['Slice', { op: 'Slice', dtype: F, inputs: [{ name: 'X', dims: [3, 6], wrt: true }, { name: 'st', dims: [2], dtype: I64, values: [1, -5], constant: true }, { name: 'en', dims: [2], dtype: I64, values: [3, 4], constant: true }] }, ...LINEAR],
  ['Split (two outputs)', { op: 'Split', dtype: F, outputs: 2, attrs: { axis: -1 }, inputs: [{ name: 'X', dims: [2, 6], wrt: true }, { name: 'sp', dims: [2], dtype: I64, values: [2, 4], constant: true }] }, ...LINEAR],
  ['Gather with repeated indices', { op: 'Gather', dtype: F, attrs: { axis: 1 }, inputs: [{ name: 'X', dims: [2, 4, 3], wrt: true }, { name: 'ix', dims: [3], dtype: I64, values: [3, 0, 3], constant: true }] }, ...LINEAR],
  ['Unsqueeze', { op: 'Unsqueeze', dtype: F, inputs: [{ name: 'X', dims: [2, 3], wrt: true }, { name: 'ax', dims: [1], dtype: I64, values: [1], constant: true }] }, ...LINEAR],
  ['Squeeze', { op: 'Squeeze', dtype: F, inputs: [{ name: 'X', dims: [2, 1, 3], wrt: true }, { name: 'ax', dims: [1], dtype: I64, values: [1], constant: true }] }, ...LINEAR],
  ['Expand', { op: 'Expand', dtype: F, inputs: [{ name: 'X', dims: [3, 1], wrt: true }, { name: 'sh', dims: [3], dtype: I64, values: [2, 3, 4], constant: true }] }, ...LINEAR],
  ['Cast float→float', { op: 'Cast', dtype: F, attrs: { to: F }, inputs: [{ name: 'X', dims: [2, 3], wrt: true }] }, ...LINEAR],
  ['Identity', { op: 'Identity', dtype: F, inputs: [{ name: 'X', dims: [2, 3], wrt: true }] }, ...LINEAR],
  ['Where', { op: 'Where', dtype: F, inputs: [{ name: 'C', dims: [3], dtype: DataType.BOOL, values: [1, 0, 1], constant: true }, { name: 'A', dims: [2, 3], wrt: true }, { name: 'B', dims: [1], wrt: true }] }, ...LINEAR],
  ['Resize nearest ×2 (asymmetric, floor)', { op: 'Resize', dtype: F, attrs: { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }, inputs: [{ name: 'X', dims: [1, 2, 3, 4], wrt: true }, { name: 'roi', dims: [0], constant: true, values: [] }, { name: 'sc', dims: [4], values: [1, 1, 2, 2], constant: true }] }, ...LINEAR],
  ['Resize nearest ×2 by sizes (half_pixel)', { op: 'Resize', dtype: F, attrs: { mode: 'nearest' }, inputs: [{ name: 'X', dims: [1, 2, 3, 3], wrt: true }, { name: 'roi', dims: [0], constant: true, values: [] }, { name: 'sc', dims: [0], constant: true, values: [] }, { name: 'sz', dims: [4], dtype: I64, values: [1, 2, 6, 6], constant: true }] }, ...LINEAR],
  ['Einsum (attention scores)', { op: 'Einsum', dtype: F, attrs: { equation: 'bid,bjd->bij' }, inputs: [{ name: 'Q', dims: [2, 3, 4], wrt: true }, { name: 'K', dims: [2, 5, 4], wrt: true }] }, ...LINEAR],
  ['Tile', { op: 'Tile', dtype: F, inputs: [{ name: 'X', dims: [2, 3], wrt: true }, { name: 'r', dims: [2], dtype: I64, values: [2, 2], constant: true }] }, ...LINEAR],
  ['Pad', { op: 'Pad', dtype: F, inputs: [{ name: 'X', dims: [2, 3], wrt: true }, { name: 'p', dims: [4], dtype: I64, values: [1, 0, 0, 2], constant: true }] }, ...LINEAR],
  ['Neg after Mul (a chain, and a tensor used twice)', {
    op: 'Neg', dtype: F, pre: [makeNode('Mul', ['X', 'X'], ['XX'], 'sq')],
    inputs: [{ name: 'XX', dims: [2, 3], produced: true }], extraGraphInputs: [{ name: 'X', dims: [2, 3], wrt: true }],
  }, 1e-2, 2e-3],
];

describe('vector-Jacobian products in float32', () => {
  for (const [title, c, h, tol] of cases) {
    it(title, async () => {
      const r = await checkOpGradient(c, h);
      expect(Object.keys(r.relErr).length).toBeGreaterThan(0);
      for (const [name, err] of Object.entries(r.relErr)) expect(err, `${title}: ∂L/∂${name}`).toBeLessThan(tol);
      expect(Math.max(...Object.values(r.numeric).flat().map(Math.abs))).toBeGreaterThan(1e-2);
    });
  }
});

describe('ops without a vector-Jacobian product', () => {
  it('rejects an op on the path with E_UNSUPPORTED_OP naming the op and the node', async () => {
    const err = await checkOpGradient({ op: 'Floor', dtype: F, inputs: [{ name: 'X', dims: [2, 2], wrt: true }] }, 0.1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_UNSUPPORTED_OP');
    expect((err as P2pzError).message).toContain('op Floor at node op0');
  });

  it('rejects a Conv weight gradient (weights are constants of the UNet)', async () => {
    const err = await checkOpGradient({ op: 'Conv', dtype: F, inputs: [{ name: 'X', dims: [1, 1, 3, 3] }, { name: 'W', dims: [1, 1, 1, 1], wrt: true }] }, 0.1).catch((e: unknown) => e);
    expect((err as P2pzError).code).toBe('E_UNSUPPORTED_OP');
  });
});
