// Vector-Jacobian product of Conv. Y = conv(X, W) + b with strides s, pads p, dilations d, group g:
//   dX = convTranspose(dY, W) with the same s, p, d, g and the output padding that restores X's
//   spatial dims (floor division in the forward pass loses up to s−1 rows);  db = Σ_{n, spatial} dY.
// Measured alternative (docs/BENCHMARKS.md, grad): for stride 1, a Conv of dY with the flipped,
// channel-transposed kernel gave the same forward+backward ratio on the CPU provider but raised
// peak memory from 3.8 to 6.9 GiB (the folded kernel copies), so ConvTranspose stays.
// The weight gradient is never needed for ∂L/∂sample (weights are constants) and is not provided.
import { attrInt, attrInts, attrString } from '../../graph/nodes.js';
import { gradOut, input, unsupported, type VjpRule } from './types.js';

const conv: VjpRule = (a) => {
  const { em, node } = a;
  const dY = gradOut(a);
  const X = input(a, 0);
  const W = input(a, 1);
  const xd = em.dims(X);
  const wd = em.dims(W);
  const yd = em.dims(dY);
  const spatial = xd.length - 2;
  const res: (string | undefined)[] = [undefined, undefined, undefined];
  if (a.needs[1]) throw unsupported(node, 'gradient with respect to the weights');
  if (attrString(node, 'auto_pad', 'NOTSET') !== 'NOTSET') throw unsupported(node, 'auto_pad');
  const strides = attrInts(node, 'strides') ?? new Array<number>(spatial).fill(1);
  const dil = attrInts(node, 'dilations') ?? new Array<number>(spatial).fill(1);
  const pads = attrInts(node, 'pads') ?? new Array<number>(2 * spatial).fill(0);
  const kernel = attrInts(node, 'kernel_shape') ?? wd.slice(2);
  const group = attrInt(node, 'group', 1);
  if (a.needs[0]) {
    // ConvTranspose out = s·(in−1) + op + (k−1)·d + 1 − p_begin − p_end; solve op for out = X's dim.
    const outPad = Array.from({ length: spatial }, (_, i) => {
      const base = (strides[i] ?? 1) * ((yd[i + 2] ?? 1) - 1) + ((kernel[i] ?? 1) - 1) * (dil[i] ?? 1) + 1 - (pads[i] ?? 0) - (pads[i + spatial] ?? 0);
      return (xd[i + 2] ?? 0) - base;
    });
    const attrs: Record<string, number[] | number> = { strides, dilations: dil, pads, kernel_shape: kernel, group };
    if (outPad.some((p) => p !== 0)) attrs.output_padding = outPad;
    res[0] = em.op('ConvTranspose', [dY, W], { dtype: em.info(X).dtype, dims: xd }, attrs);
  }
  const bias = node.input[2];
  if (a.needs[2] && bias) res[2] = em.reduceSum(dY, [0, ...Array.from({ length: spatial }, (_, i) => i + 2)], false);
  return res;
};

export const CONV_VJPS: Readonly<Record<string, VjpRule>> = { Conv: conv };
