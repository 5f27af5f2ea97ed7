// com.microsoft FusedMatMul (onnxruntime's MatMulScaleFusion and MatMulTransposeFusion, which the
// "extended" graph optimizations write, e.g. optimum's ORTOptimizer at O2 and above) as standard ops:
//   Y = alpha · op(A) · op(B), op(X) = X with its last two axes swapped when transA / transB is 1,
// batch axes broadcast as in MatMul. The attention scores Mul(MatMul(Q, Kᵀ), s) become one
// FusedMatMul this way; the rewrite gives back the MatMul that cross-attention.ts looks for.
// Not rewritten (refused): transBatchA / transBatchB.
import { attrFloat, attrInt } from '../graph/nodes.js';
import { broadcastDims } from '../graph/static-shapes.js';
import { need, refuse, type ContribRule } from './rule.js';

const swapLast = (rank: number): number[] => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];

export const FUSED_MATMUL: ContribRule = {
  shapes(node, ins) {
    const a = need(node, ins, 0);
    const b = need(node, ins, 1);
    if (a.dims.length < 2 || b.dims.length < 2) throw refuse(node, 'operands must have two or more axes');
    if (attrInt(node, 'transBatchA', 0) !== 0 || attrInt(node, 'transBatchB', 0) !== 0) throw refuse(node, 'transBatchA / transBatchB');
    const ta = attrInt(node, 'transA', 0) !== 0;
    const tb = attrInt(node, 'transB', 0) !== 0;
    const m = a.dims[a.dims.length - (ta ? 1 : 2)] ?? 1;
    const n = b.dims[b.dims.length - (tb ? 2 : 1)] ?? 1;
    return [{ dtype: a.dtype, dims: [...broadcastDims(a.dims.slice(0, -2), b.dims.slice(0, -2)), m, n] }];
  },
  expand(node, ins, { r }) {
    const a = need(node, ins, 0);
    const b = need(node, ins, 1);
    const x = attrInt(node, 'transA', 0) !== 0 ? r.transpose(node.input[0] as string, swapLast(a.dims.length)) : (node.input[0] as string);
    const y = attrInt(node, 'transB', 0) !== 0 ? r.transpose(node.input[1] as string, swapLast(b.dims.length)) : (node.input[1] as string);
    const alpha = attrFloat(node, 'alpha', 1);
    if (alpha === 1) {
      r.op('MatMul', [x, y], {}, node.output[0]);
      return;
    }
    r.op('Mul', [r.op('MatMul', [x, y]), r.scalar(alpha, a.dtype)], {}, node.output[0]);
  },
};
