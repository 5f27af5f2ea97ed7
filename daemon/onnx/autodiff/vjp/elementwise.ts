// Vector-Jacobian products of elementwise ops (numpy broadcasting: each input's gradient is summed
// back to that input's shape). Notation: Y = f(A, B), dY = ∂L/∂Y, all tensors broadcast to Y's dims.
import { DataType, isFloatType } from '../../graph/onnx-proto.js';
import { attrInt } from '../../graph/nodes.js';
import { gradOut, input, output, unsupported, type VjpArgs, type VjpRule } from './types.js';

const add: VjpRule = (a) => {
  const dY = gradOut(a);
  const { em } = a;
  return a.node.input.map((x, i) => (a.needs[i] && x ? em.sumToShape(dY, em.dims(x)) : undefined));
};

const sub: VjpRule = (a) => {
  const dY = gradOut(a);
  const { em } = a;
  return [
    a.needs[0] ? em.sumToShape(dY, em.dims(input(a, 0))) : undefined,
    a.needs[1] ? em.sumToShape(em.neg(dY), em.dims(input(a, 1))) : undefined,
  ];
};

/** Y = A·B: dA = Σ(dY·B), dB = Σ(dY·A). */
const mul: VjpRule = (a) => {
  const dY = gradOut(a);
  const { em } = a;
  const A = input(a, 0);
  const B = input(a, 1);
  return [
    a.needs[0] ? em.sumToShape(em.mul(dY, B), em.dims(A)) : undefined,
    a.needs[1] ? em.sumToShape(em.mul(dY, A), em.dims(B)) : undefined,
  ];
};

/** Y = A/B: dA = Σ(dY/B), dB = Σ(−(dY/B)·Y). */
const div: VjpRule = (a) => {
  const dY = gradOut(a);
  const { em } = a;
  const A = input(a, 0);
  const B = input(a, 1);
  const t = em.div(dY, B);
  return [
    a.needs[0] ? em.sumToShape(t, em.dims(A)) : undefined,
    a.needs[1] ? em.sumToShape(em.neg(em.mul(t, output(a, 0))), em.dims(B)) : undefined,
  ];
};

/** Y = A^B: dA = dY·B·A^(B−1); dB = dY·Y·ln A. */
const pow: VjpRule = (a) => {
  const dY = gradOut(a);
  const { em } = a;
  const A = input(a, 0);
  const B = input(a, 1);
  const dtype = em.info(A).dtype;
  const res: (string | undefined)[] = [undefined, undefined];
  if (a.needs[0]) {
    const bInfo = em.info(B);
    const bv = bInfo.value;
    let local: string;
    if (bv && bv.length === 1 && bv[0] === 2) local = em.scale(A, 2);
    else if (bv && bv.length === 1 && bv[0] === 1) local = em.expand(em.reshape(em.scalar(1, dtype), em.dims(A).map(() => 1)), em.dims(A));
    else if (bv && bv.length === 1) local = em.scale(em.op('Pow', [A, em.scalar((bv[0] ?? 0) - 1, bInfo.dtype)], { dtype, dims: em.dims(A) }), bv[0] ?? 0);
    else {
      const bf = isFloatType(bInfo.dtype) ? B : em.op('Cast', [B], { dtype, dims: bInfo.dims }, { to: dtype });
      const bm1 = em.sub(bf, em.scalar(1, dtype));
      local = em.mul(bf, em.op('Pow', [A, bm1], { dtype, dims: broadcast(em.dims(A), em.dims(bm1)) }));
    }
    res[0] = em.sumToShape(em.mul(dY, local), em.dims(A));
  }
  if (a.needs[1]) res[1] = em.sumToShape(em.mul(em.mul(dY, output(a, 0)), em.unary('Log', A)), em.dims(B));
  return res;
};

function broadcast(x: readonly number[], y: readonly number[]): number[] {
  const r = Math.max(x.length, y.length);
  return Array.from({ length: r }, (_, i) => Math.max(x[x.length - r + i] ?? 1, y[y.length - r + i] ?? 1));
}

/** Rules of the form dA = dY · g(A, Y) for unary ops. */
function unary(local: (a: VjpArgs, A: string, Y: string) => string): VjpRule {
  return (a) => [a.needs[0] ? a.em.mul(gradOut(a), local(a, input(a, 0), output(a, 0))) : undefined];
}

const identity: VjpRule = (a) => [a.needs[0] ? gradOut(a) : undefined];

/** Y = cast(A): the gradient is cast back to A's float type. */
const cast: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const A = input(a, 0);
  const info = a.em.info(A);
  const dY = gradOut(a);
  if (!isFloatType(info.dtype)) return [undefined];
  return [info.dtype === a.em.info(dY).dtype ? dY : a.em.op('Cast', [dY], { dtype: info.dtype, dims: info.dims }, { to: info.dtype })];
};

/** Y = where(C, A, B): dA = Σ where(C, dY, 0), dB = Σ where(C, 0, dY). */
const where: VjpRule = (a) => {
  const dY = gradOut(a);
  const { em } = a;
  const C = input(a, 0);
  const zero = em.scalar(0, em.info(dY).dtype);
  const res: (string | undefined)[] = [undefined, undefined, undefined];
  for (const i of [1, 2]) {
    if (!a.needs[i]) continue;
    const X = input(a, i);
    const picked = em.op('Where', i === 1 ? [C, dY, zero] : [C, zero, dY], em.info(dY));
    res[i] = em.sumToShape(picked, em.dims(X));
  }
  return res;
};

/** Y = relu(A): dA = where(A > 0, dY, 0). */
const relu: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const A = input(a, 0);
  const dY = gradOut(a);
  const zero = em.scalar(0, em.info(A).dtype);
  const pos = em.op('Greater', [A, zero], { dtype: DataType.BOOL, dims: em.dims(A) });
  return [em.op('Where', [pos, dY, zero], em.info(dY))];
};

/** Y = Σ_i A_i: dA_i = Σ(dY). */
const sum: VjpRule = add;

export const ELEMENTWISE_VJPS: Readonly<Record<string, VjpRule>> = {
  Add: add,
  Sub: sub,
  Mul: mul,
  Div: div,
  Pow: pow,
  Sum: sum,
  Where: where,
  Relu: relu,
  Identity: identity,
  Dropout: (a) => {
    if (a.node.input[2] || attrInt(a.node, 'is_test', 1) === 0) throw unsupported(a.node, 'training-mode dropout');
    return identity(a);
  },
  Cast: cast,
  Neg: (a) => [a.needs[0] ? a.em.neg(gradOut(a)) : undefined],
  // d sqrt(A) = dY / (2·Y)
  Sqrt: (a) => [a.needs[0] ? a.em.div(a.em.scale(gradOut(a), 0.5), output(a, 0)) : undefined],
  // d (1/A) = −dY·Y²
  Reciprocal: unary((a, _A, Y) => a.em.neg(a.em.mul(Y, Y))),
  // d erf(A) = dY · 2/√π · exp(−A²)
  Erf: unary((a, A) => a.em.scale(a.em.unary('Exp', a.em.neg(a.em.mul(A, A))), 2 / Math.sqrt(Math.PI))),
  // d tanh(A) = dY · (1 − Y²)
  Tanh: unary((a, _A, Y) => a.em.sub(a.em.scalar(1, a.em.info(Y).dtype), a.em.mul(Y, Y))),
  // d σ(A) = dY · Y·(1 − Y)
  Sigmoid: unary((a, _A, Y) => a.em.mul(Y, a.em.sub(a.em.scalar(1, a.em.info(Y).dtype), Y))),
  Exp: unary((_a, _A, Y) => Y),
  Log: (a) => [a.needs[0] ? a.em.div(gradOut(a), input(a, 0)) : undefined],
  Sin: unary((a, A) => a.em.unary('Cos', A)),
  Cos: unary((a, A) => a.em.neg(a.em.unary('Sin', A))),
};
