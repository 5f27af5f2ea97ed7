// The contract of a vector-Jacobian product rule: given a forward node and the gradients flowing
// into its outputs, emit the nodes computing the gradients of the inputs that need one.
import { P2pzError } from '../../../../shared/protocol/errors.js';
import type { GraphEmitter } from '../emitter.js';
import type { NodeProto } from '../../graph/onnx-proto.js';

export interface VjpArgs {
  readonly node: NodeProto;
  readonly em: GraphEmitter;
  /** Opset of the default domain (attribute-vs-input forms differ by version). */
  readonly opset: number;
  /** ∂L/∂output_i, or undefined where no gradient reaches that output (zero). */
  readonly dY: readonly (string | undefined)[];
  /** Which inputs need ∂L/∂input_i. */
  readonly needs: readonly boolean[];
}

/** Returns ∂L/∂input_i (same dims as input i) for each input that needs one, else undefined. */
export type VjpRule = (args: VjpArgs) => (string | undefined)[];

export function unsupported(node: NodeProto, why?: string): P2pzError {
  return new P2pzError('E_UNSUPPORTED_OP', `op ${node.opType} at node ${node.name}${why ? ` (${why})` : ''}`);
}

/** The first output's gradient; rules for single-output ops call this. */
export function gradOut(a: VjpArgs): string {
  const g = a.dY[0];
  if (!g) throw new P2pzError('E_INTERNAL', `no gradient reaches ${a.node.name}`);
  return g;
}

export function input(a: VjpArgs, i: number): string {
  const n = a.node.input[i];
  if (!n) throw unsupported(a.node, `input ${i} missing`);
  return n;
}

export function output(a: VjpArgs, i: number): string {
  const n = a.node.output[i];
  if (!n) throw unsupported(a.node, `output ${i} missing`);
  return n;
}
