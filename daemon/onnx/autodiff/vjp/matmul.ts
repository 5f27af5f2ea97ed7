// Vector-Jacobian products of the contractions: MatMul (batched, broadcast), Gemm, Einsum.
// MatMul Y[..., M, N] = A[..., M, K] · B[..., K, N]:  dA = dY·Bᵀ,  dB = Aᵀ·dY  (summed over
// broadcast batch dims). 2-D weights use Gemm's trans flags so that no transposed copy is made.
import { attrFloat, attrInt, attrString } from '../../graph/nodes.js';
import { numel } from '../../graph/static-shapes.js';
import { gradOut, input, unsupported, type VjpRule } from './types.js';

function swapLast(rank: number): number[] {
  const p = [...Array(rank).keys()];
  p[rank - 1] = rank - 2;
  p[rank - 2] = rank - 1;
  return p;
}

const matmul: VjpRule = (a) => {
  const { em } = a;
  const dY = gradOut(a);
  const A = input(a, 0);
  const B = input(a, 1);
  const ad = em.dims(A);
  const bd = em.dims(B);
  const yd = em.dims(dY);
  const dtype = em.info(dY).dtype;
  const M = ad[ad.length - 2] ?? 1;
  const K = ad[ad.length - 1] ?? 1;
  const N = bd[bd.length - 1] ?? 1;
  const res: (string | undefined)[] = [undefined, undefined];
  if (a.needs[0]) {
    if (bd.length === 2) {
      // dA[P, K] = dY[P, N] · B[K, N]ᵀ
      const P = numel(yd) / N;
      const g = em.op('Gemm', [em.reshape(dY, [P, N]), B], { dtype, dims: [P, K] }, { transB: 1 });
      res[0] = em.sumToShape(em.reshape(g, [...yd.slice(0, -1), K]), ad);
    } else {
      const g = em.op('MatMul', [dY, em.transpose(B, swapLast(bd.length))], { dtype, dims: [...yd.slice(0, -2), M, K] });
      res[0] = em.sumToShape(g, ad);
    }
  }
  if (a.needs[1]) {
    if (bd.length === 2 && ad.length >= 2) {
      // dB[K, N] = A[P, K]ᵀ · dY[P, N]
      const P = numel(yd) / N;
      const aFull = em.expand(A, [...yd.slice(0, -1), K]);
      res[1] = em.op('Gemm', [em.reshape(aFull, [P, K]), em.reshape(dY, [P, N])], { dtype, dims: [K, N] }, { transA: 1 });
    } else {
      const g = em.op('MatMul', [em.transpose(A, swapLast(ad.length)), dY], { dtype, dims: [...yd.slice(0, -2), K, N] });
      res[1] = em.sumToShape(g, bd);
    }
  }
  return res;
};

/** Y = α·op(A)·op(B) + β·C with op(X) = Xᵀ when trans is set. */
const gemm: VjpRule = (a) => {
  const { em } = a;
  const dY = gradOut(a);
  const A = input(a, 0);
  const B = input(a, 1);
  const alpha = attrFloat(a.node, 'alpha', 1);
  const beta = attrFloat(a.node, 'beta', 1);
  const tA = attrInt(a.node, 'transA', 0);
  const tB = attrInt(a.node, 'transB', 0);
  const dtype = em.info(dY).dtype;
  const res: (string | undefined)[] = [undefined, undefined, undefined];
  const f = { float: alpha };
  if (a.needs[0]) {
    // transA=0: dA = α·dY·op(B)ᵀ;  transA=1: dA = α·op(B)·dYᵀ
    res[0] = tA === 0
      ? em.op('Gemm', [dY, B], { dtype, dims: em.dims(A) }, { transB: tB ? 0 : 1, alpha: f })
      : em.op('Gemm', [B, dY], { dtype, dims: em.dims(A) }, { transA: tB, transB: 1, alpha: f });
  }
  if (a.needs[1]) {
    // transB=0: dB = α·op(A)ᵀ·dY;  transB=1: dB = α·dYᵀ·op(A)
    res[1] = tB === 0
      ? em.op('Gemm', [A, dY], { dtype, dims: em.dims(B) }, { transA: tA ? 0 : 1, alpha: f })
      : em.op('Gemm', [dY, A], { dtype, dims: em.dims(B) }, { transA: 1, transB: tA, alpha: f });
  }
  const C = a.node.input[2];
  if (a.needs[2] && C) res[2] = em.sumToShape(em.scale(dY, beta), em.dims(C));
  return res;
};

/** Y = einsum(t_1,…,t_n → o): dA_k = einsum(o, t_j (j≠k) → t_k), valid when every index of t_k
 *  occurs in o or another term and no index repeats within t_k. */
const einsum: VjpRule = (a) => {
  const { em } = a;
  const dY = gradOut(a);
  const eq = attrString(a.node, 'equation', '').replace(/\s+/g, '');
  const [lhs = '', rhsGiven] = eq.split('->');
  const terms = lhs.split(',');
  const counts = new Map<string, number>();
  for (const c of terms.join('')) counts.set(c, (counts.get(c) ?? 0) + 1);
  const out = rhsGiven ?? [...counts.keys()].filter((c) => counts.get(c) === 1).sort().join('');
  return a.node.input.map((x, k) => {
    if (!a.needs[k] || !x) return undefined;
    const term = terms[k] ?? '';
    const others = terms.filter((_, j) => j !== k);
    const avail = new Set([...out, ...others.join('')]);
    if (new Set(term).size !== term.length || [...term].some((c) => !avail.has(c))) throw unsupported(a.node, `no gradient rule for equation ${eq}`);
    const inputs = [dY, ...a.node.input.filter((_, j) => j !== k)];
    return em.op('Einsum', inputs, { dtype: em.info(x).dtype, dims: em.dims(x) }, { equation: `${[out, ...others].join(',')}->${term}` });
  });
};

export const MATMUL_VJPS: Readonly<Record<string, VjpRule>> = { MatMul: matmul, Gemm: gemm, Einsum: einsum };
