// The registry of vector-Jacobian product rules, one op family per file.
import { CONV_VJPS } from './conv.js';
import { ELEMENTWISE_VJPS } from './elementwise.js';
import { MATMUL_VJPS } from './matmul.js';
import { NORMALIZATION_VJPS } from './normalization.js';
import { RESIZE_VJPS } from './resize.js';
import { SHAPE_VJPS } from './shape.js';
import { SOFTMAX_VJPS } from './softmax.js';
import type { VjpRule } from './types.js';

export const VJP_RULES: Readonly<Record<string, VjpRule>> = Object.freeze({
  ...ELEMENTWISE_VJPS,
  ...MATMUL_VJPS,
  ...CONV_VJPS,
  ...NORMALIZATION_VJPS,
  ...SOFTMAX_VJPS,
  ...SHAPE_VJPS,
  ...RESIZE_VJPS,
});
