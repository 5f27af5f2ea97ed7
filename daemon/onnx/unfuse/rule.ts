// The contract of one fused operator's rewrite: its output types (for static shape inference of the
// fused graph) and the standard-ONNX subgraph that computes exactly the same values.
import { P2pzError } from '../../../shared/protocol/errors.js';
import type { NodeProto } from '../graph/onnx-proto.js';
import type { TensorInfo } from '../graph/static-shapes.js';
import type { Rewriter } from './rewriter.js';

export const CONTRIB_DOMAIN = 'com.microsoft';

/** What every refusal of a fused graph tells the designer to do. */
export const UNFUSE_HINT =
  'Export the UNet without onnxruntime graph optimization (optimum-cli export onnx without --optimize, or '
  + "diffusers' convert_stable_diffusion_checkpoint_to_onnx.py), or re-run onnxruntime's optimize_pipeline.py "
  + 'with only the fusions p2pz accepts (README: "Optimized exports").';

export type Inputs = readonly (TensorInfo | undefined)[];

export interface UnfuseContext {
  readonly r: Rewriter;
  /** Whether a tensor is read by any node or is a graph output (optional outputs we do not rebuild). */
  readonly used: (name: string) => boolean;
}

export interface ContribRule {
  /** Output types from the inputs' (undefined for an absent optional output). */
  shapes(node: NodeProto, ins: Inputs): (TensorInfo | undefined)[];
  /** Emits the subgraph into `ctx.r`; its last nodes write the fused node's output names. */
  expand(node: NodeProto, ins: Inputs, ctx: UnfuseContext): void;
}

export function refuse(node: NodeProto, why?: string): P2pzError {
  return new P2pzError('E_UNSUPPORTED_OP', `op ${node.domain}.${node.opType} at node ${node.name}${why ? ` (${why})` : ''}`, UNFUSE_HINT);
}

/** Input `i`, which must be present with a known type. */
export function need(node: NodeProto, ins: Inputs, i: number): TensorInfo {
  const t = node.input[i] ? ins[i] : undefined;
  if (!t) throw refuse(node, `input ${i} is missing`);
  return t;
}

/** Refuses optional inputs at positions ≥ `from` that are present. */
export function refuseInputsFrom(node: NodeProto, from: number, names: readonly string[]): void {
  for (let i = from; i < node.input.length; i++) {
    if (node.input[i]) throw refuse(node, `input ${names[i] ?? i} is not supported`);
  }
}

/** Refuses optional outputs at positions ≥ `from` that something reads. */
export function refuseOutputsFrom(node: NodeProto, from: number, ctx: UnfuseContext, names: readonly string[]): void {
  for (let i = from; i < node.output.length; i++) {
    const o = node.output[i];
    if (o && ctx.used(o)) throw refuse(node, `output ${names[i] ?? i} is not supported`);
  }
}
