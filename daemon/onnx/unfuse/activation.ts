// com.microsoft activations and bias fusions as standard ops (ContribOperators.md):
//   Gelu(X)          = X·½(1 + erf(X/√2))
//   BiasGelu(A, B)   = Gelu(A + B)
//   FastGelu(X, b?)  = x·½(1 + tanh(√(2/π)·(x + 0.044715·x³))), x = X (+ b)
//   QuickGelu(X)     = X·σ(α·X), α = `alpha` (default 1.702)
//   BiasSplitGelu(X [N,S,D], b [D]) = L ⊙ Gelu(R), [L | R] = X + b split in two halves on the last axis
//                      (diffusers' GEGLU: hidden · GELU(gate))
//   BiasAdd(X, b, skip) = X + b + skip
import { attrFloat } from '../graph/nodes.js';
import { need, refuse, type ContribRule } from './rule.js';

const sameAsInput: ContribRule['shapes'] = (node, ins) => {
  const x = need(node, ins, 0);
  return [{ dtype: x.dtype, dims: x.dims }];
};

export const GELU: ContribRule = {
  shapes: sameAsInput,
  expand(node, ins, { r }) {
    r.gelu(node.input[0] as string, need(node, ins, 0).dtype, node.output[0]);
  },
};

export const BIAS_GELU: ContribRule = {
  shapes: sameAsInput,
  expand(node, ins, { r }) {
    need(node, ins, 1);
    r.gelu(r.op('Add', [node.input[0] as string, node.input[1] as string]), need(node, ins, 0).dtype, node.output[0]);
  },
};

export const FAST_GELU: ContribRule = {
  shapes: sameAsInput,
  expand(node, ins, { r }) {
    const dtype = need(node, ins, 0).dtype;
    const x = node.input[1] ? r.op('Add', [node.input[0] as string, node.input[1]]) : (node.input[0] as string);
    const cube = r.op('Mul', [r.op('Mul', [x, x]), x]);
    const inner = r.op('Mul', [r.op('Add', [x, r.op('Mul', [cube, r.scalar(0.044715, dtype)])]), r.scalar(Math.sqrt(2 / Math.PI), dtype)]);
    const t = r.op('Add', [r.op('Tanh', [inner]), r.scalar(1, dtype)]);
    r.op('Mul', [r.op('Mul', [x, t]), r.scalar(0.5, dtype)], {}, node.output[0]);
  },
};

export const QUICK_GELU: ContribRule = {
  shapes: sameAsInput,
  expand(node, ins, { r }) {
    const dtype = need(node, ins, 0).dtype;
    const x = node.input[0] as string;
    const alpha = attrFloat(node, 'alpha', 1.702);
    r.op('Mul', [x, r.op('Sigmoid', [r.op('Mul', [x, r.scalar(alpha, dtype)])])], {}, node.output[0]);
  },
};

export const BIAS_SPLIT_GELU: ContribRule = {
  shapes(node, ins) {
    const x = need(node, ins, 0);
    const d = x.dims[2] ?? 0;
    if (x.dims.length !== 3 || d % 2 !== 0) throw refuse(node, 'input must be [N,S,D] with D even');
    return [{ dtype: x.dtype, dims: [x.dims[0] ?? 1, x.dims[1] ?? 1, d / 2] }];
  },
  expand(node, ins, { r }) {
    const x = need(node, ins, 0);
    need(node, ins, 1);
    const [hidden, gate] = r.split(r.op('Add', [node.input[0] as string, node.input[1] as string]), 2, 2) as [string, string];
    r.op('Mul', [hidden, r.gelu(gate, x.dtype)], {}, node.output[0]);
  },
};

export const BIAS_ADD: ContribRule = {
  shapes: sameAsInput,
  expand(node, ins, { r }) {
    need(node, ins, 1);
    need(node, ins, 2);
    r.op('Add', [r.op('Add', [node.input[0] as string, node.input[1] as string]), node.input[2] as string], {}, node.output[0]);
  },
};
