// Vector-Jacobian products of Softmax and LogSoftmax along one axis (opset >= 13; older opsets
// normalise over every axis from `axis` on, as if the tensor were flattened to 2-D).
//   Y = softmax(X):    dX = Y ⊙ (dY − Σ_axis(dY ⊙ Y))
//   Y = logsoftmax(X): dX = dY − exp(Y) ⊙ Σ_axis dY
import { attrInt } from '../../graph/nodes.js';
import { normAxis } from '../../graph/static-shapes.js';
import { gradOut, input, output, type VjpArgs, type VjpRule } from './types.js';

function softmaxAxes(a: VjpArgs, rank: number): number[] {
  const axis = normAxis(attrInt(a.node, 'axis', a.opset >= 13 ? -1 : 1), rank);
  return a.opset >= 13 ? [axis] : Array.from({ length: rank - axis }, (_, i) => axis + i);
}

const softmax: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const dY = gradOut(a);
  const Y = output(a, 0);
  const axes = softmaxAxes(a, em.dims(Y).length);
  const s = em.reduceSum(em.mul(dY, Y), axes, true);
  return [em.mul(Y, em.sub(dY, s))];
};

const logSoftmax: VjpRule = (a) => {
  if (!a.needs[0]) return [undefined];
  const { em } = a;
  const dY = gradOut(a);
  const Y = output(a, 0);
  const axes = softmaxAxes(a, em.dims(input(a, 0)).length);
  return [em.sub(dY, em.mul(em.unary('Exp', Y), em.reduceSum(dY, axes, true)))];
};

export const SOFTMAX_VJPS: Readonly<Record<string, VjpRule>> = { Softmax: softmax, LogSoftmax: logSoftmax };
