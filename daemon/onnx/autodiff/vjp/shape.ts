// Vector-Jacobian products of the data-movement ops. Each moves dY back to where X's elements came
// from: Reshape-likes reshape back, Transpose applies the inverse permutation, Concat splits,
// Split concatenates, Slice pads with zeros, Pad slices, Expand/Tile sum over the copies, Gather
// scatters-adds (as a product with a constant one-hot matrix, which also sums repeated indices).
import { attrInt, attrInts, attrString } from '../../graph/nodes.js';
import { normAxis, numel, sliceRanges } from '../../graph/static-shapes.js';
import { gradOut, input, unsupported, type VjpRule } from './types.js';

export const SHAPE_DEFAULTS = Object.freeze({
  /** Largest one-hot matrix (elements) built for a Gather gradient. */
  maxGatherOneHot: 1 << 22,
});

const reshapeBack: VjpRule = (a) => [a.needs[0] ? a.em.reshape(gradOut(a), a.em.dims(input(a, 0))) : undefined];

const transpose: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const rank = a.em.dims(input(a, 0)).length;
  const perm = attrInts(a.node, 'perm') ?? [...Array(rank).keys()].reverse();
  const inv = new Array<number>(rank);
  perm.forEach((p, i) => { inv[p] = i; });
  return [a.em.transpose(gradOut(a), inv)];
};

const concat: VjpRule = (a) => {
  const { em } = a;
  const dY = gradOut(a);
  const yd = em.dims(dY);
  const axis = normAxis(attrInt(a.node, 'axis', 0), yd.length);
  const sizes = a.node.input.map((x) => em.dims(x)[axis] ?? 0);
  const outs = sizes.map((s) => ({ dtype: em.info(dY).dtype, dims: yd.map((d, i) => (i === axis ? s : d)) }));
  const parts = a.opset >= 13
    ? em.opMulti('Split', [dY, em.ints(sizes)], outs, { axis })
    : em.opMulti('Split', [dY], outs, { axis, split: sizes });
  return parts.map((p, i) => (a.needs[i] ? p : undefined));
};

const split: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const X = input(a, 0);
  const axis = normAxis(attrInt(a.node, 'axis', 0), em.dims(X).length);
  const parts = a.node.output.map((o, i) => a.dY[i] ?? em.zerosLike(o));
  return [em.op('Concat', parts, em.info(X), { axis })];
};

const slice: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const X = input(a, 0);
  const xd = em.dims(X);
  const ranges = sliceRanges(a.node, xd, (i) => {
    const n = a.node.input[i];
    return n ? em.info(n).value : undefined;
  });
  if (!ranges) throw unsupported(a.node, 'slice bounds not constant');
  if (ranges.some((r) => r.step !== 1)) throw unsupported(a.node, 'slice step other than 1');
  const pads = new Array<number>(2 * xd.length).fill(0);
  for (const r of ranges) {
    pads[r.axis] = r.start;
    pads[r.axis + xd.length] = (xd[r.axis] ?? 0) - Math.max(r.end, r.start);
  }
  return [em.op('Pad', [gradOut(a), em.ints(pads)], em.info(X), { mode: 'constant' })];
};

const pad: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  if (attrString(a.node, 'mode', 'constant') !== 'constant') throw unsupported(a.node, 'non-constant padding mode');
  const X = input(a, 0);
  const xd = em.dims(X);
  const padsName = a.node.input[1];
  const pads = a.opset >= 11 ? (padsName ? em.info(padsName).value : undefined) : attrInts(a.node, 'pads');
  if (!pads || (a.node.input[3] ?? '') !== '') throw unsupported(a.node, 'pads not constant');
  const starts = xd.map((_, i) => pads[i] ?? 0);
  const ends = xd.map((d, i) => (pads[i] ?? 0) + d);
  if (starts.some((s) => s < 0)) throw unsupported(a.node, 'negative pads');
  return [em.op('Slice', [gradOut(a), em.ints(starts), em.ints(ends)], em.info(X))];
};

const expand: VjpRule = (a) => [a.needs[0] ? a.em.sumToShape(gradOut(a), a.em.dims(input(a, 0))) : undefined];

/** Y = tile(X, r): view dY as [r_0, d_0, r_1, d_1, …] and sum over the r axes. */
const tile: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const xd = em.dims(input(a, 0));
  const yd = em.dims(gradOut(a));
  const view = xd.flatMap((d, i) => [(yd[i] ?? d) / d, d]);
  const g = em.reshape(gradOut(a), view);
  return [em.reduceSum(g, xd.map((_, i) => 2 * i), false)];
};

/** Y = gather(X, idx, axis) with constant idx. With X viewed as [P, D, Q] and dY as [P, I, Q]:
 *  dX[p, d, q] = Σ_i dY[p, i, q]·[idx_i = d] = (dYᵀ · O)ᵀ with the one-hot O[I, D]. */
const gather: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const X = input(a, 0);
  const xd = em.dims(X);
  const idx = em.info(input(a, 1));
  if (!idx.value) throw unsupported(a.node, 'indices not constant');
  const axis = normAxis(attrInt(a.node, 'axis', 0), xd.length);
  const D = xd[axis] ?? 1;
  const I = idx.value.length;
  if (I * D > SHAPE_DEFAULTS.maxGatherOneHot) throw unsupported(a.node, 'index set too large');
  const P = numel(xd.slice(0, axis));
  const Q = numel(xd.slice(axis + 1));
  const dtype = em.info(X).dtype;
  const oneHot = new Array<number>(I * D).fill(0);
  idx.value.forEach((v, i) => { oneHot[i * D + (v < 0 ? v + D : v)] = 1; });
  const O = em.constant(oneHot, dtype, [I, D]);
  const g = em.transpose(em.reshape(gradOut(a), [P, I, Q]), [0, 2, 1]);
  const prod = em.op('MatMul', [g, O], { dtype, dims: [P, Q, D] });
  return [em.reshape(em.transpose(prod, [0, 2, 1]), xd)];
};

export const SHAPE_VJPS: Readonly<Record<string, VjpRule>> = {
  Reshape: reshapeBack,
  Flatten: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,
  Transpose: transpose,
  Concat: concat,
  Split: split,
  Slice: slice,
  Pad: pad,
  Expand: expand,
  Tile: tile,
  Gather: gather,
};

