// Vector-Jacobian products of the normalisations and reductions.
// Normalisation over axes S (n elements): μ = mean_S X, σ = √(var_S X + ε), X̂ = (X − μ)/σ,
// Y = γ·X̂ + β. With Ĝ = dY·γ:  dX = (Ĝ − mean_S Ĝ − X̂ · mean_S(Ĝ ⊙ X̂)) / σ,
// dγ = Σ dY ⊙ X̂, dβ = Σ dY (summed to γ's and β's shapes).
// InstanceNormalization normalises over the spatial axes of [N, C, ...] with γ, β of shape [C];
// LayerNormalization over axes axis…rank−1 with γ, β broadcast to those trailing dims.
import { attrFloat, attrInt } from '../../graph/nodes.js';
import type { GraphEmitter } from '../emitter.js';
import { normAxis, numel, reduceAxes } from '../../graph/static-shapes.js';
import { gradOut, input, unsupported, type VjpArgs, type VjpRule } from './types.js';

/** X̂ and 1/σ recomputed from X over `axes` (ReduceSum·(1/n): valid in every opset >= 13). */
function standardise(em: GraphEmitter, X: string, axes: number[], eps: number): { xhat: string; inv: string } {
  const n = axes.reduce((p, ax) => p * (em.dims(X)[ax] ?? 1), 1);
  const dtype = em.info(X).dtype;
  const mu = em.scale(em.reduceSum(X, axes, true), 1 / n);
  const xc = em.sub(X, mu);
  const variance = em.scale(em.reduceSum(em.mul(xc, xc), axes, true), 1 / n);
  const sigma = em.unary('Sqrt', em.add(variance, em.scalar(eps, dtype)));
  const inv = em.div(em.scalar(1, dtype), sigma);
  return { xhat: em.mul(xc, inv), inv };
}

function normalizationVjp(a: VjpArgs, axes: number[], eps: number, gammaB: string | undefined): {
  dX: string | undefined; xhat: string;
} {
  const { em } = a;
  const dY = gradOut(a);
  const X = input(a, 0);
  const n = axes.reduce((p, ax) => p * (em.dims(X)[ax] ?? 1), 1);
  const { xhat, inv } = standardise(em, X, axes, eps);
  if (!a.needs[0]) return { dX: undefined, xhat };
  const g = gammaB ? em.mul(dY, gammaB) : dY;
  const meanG = em.scale(em.reduceSum(g, axes, true), 1 / n);
  const meanGX = em.scale(em.reduceSum(em.mul(g, xhat), axes, true), 1 / n);
  const dX = em.mul(em.sub(em.sub(g, meanG), em.mul(xhat, meanGX)), inv);
  return { dX, xhat };
}

const instanceNorm: VjpRule = (a) => {
  const { em } = a;
  const X = input(a, 0);
  const xd = em.dims(X);
  const axes = Array.from({ length: xd.length - 2 }, (_, i) => i + 2);
  const gammaShape = [xd[1] ?? 1, ...axes.map(() => 1)];
  const gamma = em.reshape(input(a, 1), gammaShape);
  const { dX, xhat } = normalizationVjp(a, axes, attrFloat(a.node, 'epsilon', 1e-5), gamma);
  const dY = gradOut(a);
  const chanAxes = [0, ...axes];
  return [
    dX,
    a.needs[1] ? em.reduceSum(em.mul(dY, xhat), chanAxes, false) : undefined,
    a.needs[2] ? em.reduceSum(dY, chanAxes, false) : undefined,
  ];
};

const layerNorm: VjpRule = (a) => {
  const { em, node } = a;
  if (a.dY.slice(1).some((g) => g !== undefined)) throw unsupported(node, 'gradient through the Mean/InvStdDev outputs');
  const X = input(a, 0);
  const xd = em.dims(X);
  const axis = normAxis(attrInt(node, 'axis', -1), xd.length);
  const axes = Array.from({ length: xd.length - axis }, (_, i) => axis + i);
  const gamma = input(a, 1);
  const { dX, xhat } = normalizationVjp(a, axes, attrFloat(node, 'epsilon', 1e-5), gamma);
  const dY = gradOut(a);
  const beta = node.input[2];
  return [
    dX,
    a.needs[1] ? em.sumToShape(em.mul(dY, xhat), em.dims(gamma)) : undefined,
    a.needs[2] && beta ? em.sumToShape(dY, em.dims(beta)) : undefined,
  ];
};

/** Y = Σ_axes X (·1/n for the mean): dX = expand(dY with the reduced axes kept) (·1/n). */
function reduction(mean: boolean): VjpRule {
  return (a) => {
    if (!a.needs[0]) return [undefined];
    const { em } = a;
    const X = input(a, 0);
    const xd = em.dims(X);
    const axes = reduceAxes(a.node, xd.length, (i) => {
      const name = a.node.input[i];
      return name ? em.info(name).value : undefined;
    });
    if (!axes) throw unsupported(a.node, 'reduction axes not constant');
    const kept = xd.map((d, i) => (axes.includes(i) ? 1 : d));
    const g = em.reshape(gradOut(a), kept);
    const n = numel(axes.map((ax) => xd[ax] ?? 1));
    return [em.expand(mean ? em.scale(g, 1 / n) : g, xd)];
  };
}

export const NORMALIZATION_VJPS: Readonly<Record<string, VjpRule>> = {
  InstanceNormalization: instanceNorm,
  LayerNormalization: layerNorm,
  ReduceMean: reduction(true),
  ReduceSum: reduction(false),
};
