// One model that serves several graphs ("roles") of the same UNet with one copy of its weights.
//
// onnxruntime keeps a copy of every initializer per session, and the Node binding offers no way to
// share them between sessions (no AddInitializer, no prepacked-weights container; `externalData` in
// memory is copied per session and limited to one 2 GiB Buffer): an edit's four UNet sessions held
// ≈3.2× the weights (docs/BENCHMARKS.md "weights"). It also computes every node of a graph whatever
// outputs are fetched, and refuses a run that does not feed every input. So the roles go into one
// graph as ONNX `If` branches, which run only when taken:
//
//   inputs   role (int64 scalar: the index of the role to run), then `<role>/<input>` for each role's
//            inputs (symbolic dims: the roles not run get empty tensors, scalars a zero)
//   nodes    per role k:  active_k = Equal(role, k);  <role>/<outputs> = If(active_k,
//                           then: the role's graph, reading its inputs and the shared weights from
//                                 the outer scope;  else: empty tensors of the same types and ranks)
//   outputs  `<role>/<output>` for each role's outputs (empty for the roles not run)
//   weights  external initializers with the same name and the same file/offset/length in several
//            roles are one initializer of the outer graph; everything else stays in its branch.
//
// Names inside a branch get the prefix `<role>::` (ONNX forbids a subgraph to redefine an outer name).
import { P2pzError } from '../../shared/protocol/errors.js';
import { makeGraph, makeModel, makeNode, makeTensor, valueInfo, declaredType } from './graph/nodes.js';
import { DataType, isExternal, onnx } from './graph/onnx-proto.js';
import type { GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto } from './graph/onnx-proto.js';

export const ROLES_IO = Object.freeze({
  /** The int64 scalar input that picks the role. */
  selector: 'role',
  /** Outer names of a role's inputs and outputs. */
  separator: '/',
  /** Prefix of names inside a role's branch. */
  branchSeparator: '::',
});

/** One role's inputs and outputs as its own graph declared them (dims −1 where symbolic). */
export interface RoleSignature {
  readonly name: string;
  readonly inputs: readonly { readonly name: string; readonly dtype: number; readonly dims: readonly number[] }[];
  readonly outputs: readonly { readonly name: string; readonly dtype: number; readonly dims: readonly number[] }[];
}

export const roleValue = (role: string, name: string): string => `${role}${ROLES_IO.separator}${name}`;

function externalKey(t: TensorProto): string {
  return JSON.stringify((t.externalData ?? []).map((e) => [e.key, e.value]));
}

/**
 * Combines `roles` (graphs of one model family whose big weights live in the same external file) into
 * one model as described in the file header. The first role's opsets and IR version are kept; every
 * role must import the same default-domain opset.
 */
export function rolesModel(roles: readonly { readonly name: string; readonly model: ModelProto }[]): { model: ModelProto; signatures: RoleSignature[] } {
  if (roles.length === 0) throw new P2pzError('E_INTERNAL', 'rolesModel: no roles.');
  const names = new Set<string>();
  const shared = new Map<string, TensorProto>();
  const outerInitializers: TensorProto[] = [];
  const outerInputs: ValueInfoProto[] = [valueInfo(ROLES_IO.selector, DataType.INT64, [])];
  const outerOutputs: ValueInfoProto[] = [];
  const outerNodes: NodeProto[] = [];
  const signatures: RoleSignature[] = [];
  const opsets = JSON.stringify(roles[0]!.model.opsetImport.map((o) => [o.domain ?? '', Number(o.version)]).sort());

  roles.forEach(({ name: role, model }, k) => {
    if (names.has(role) || !/^[A-Za-z0-9_-]+$/.test(role)) throw new P2pzError('E_INTERNAL', `rolesModel: bad or repeated role name “${role}”.`);
    names.add(role);
    if (JSON.stringify(model.opsetImport.map((o) => [o.domain ?? '', Number(o.version)]).sort()) !== opsets) {
      throw new P2pzError('E_INTERNAL', `rolesModel: role “${role}” imports other opsets than “${roles[0]!.name}”.`);
    }
    const g = model.graph;
    const inner = (v: string): string => `${role}${ROLES_IO.branchSeparator}${v}`;
    const rename = new Map<string, string>();
    const branchInitializers: TensorProto[] = [];
    for (const t of g.initializer) {
      if (isExternal(t)) {
        const prev = shared.get(t.name);
        if (!prev) {
          shared.set(t.name, t);
          outerInitializers.push(t);
          rename.set(t.name, t.name);
          continue;
        }
        if (externalKey(prev) === externalKey(t)) {
          rename.set(t.name, t.name);
          continue;
        }
      }
      rename.set(t.name, inner(t.name));
      branchInitializers.push({ ...t, name: inner(t.name) } as TensorProto);
    }
    const inputs: RoleSignature['inputs'][number][] = [];
    for (const i of g.input) {
      if (rename.has(i.name)) continue; // an initializer listed as an input (IR < 4)
      const outer = roleValue(role, i.name);
      rename.set(i.name, outer);
      const { dtype, dims } = declaredType(i);
      inputs.push({ name: i.name, dtype, dims });
      outerInputs.push(valueInfo(outer, dtype, dims.map((_, j) => `${role}_${i.name}_${j}`)));
    }
    const r = (v: string): string => (v === '' ? '' : (rename.get(v) ?? inner(v)));
    const nodes = g.node.map((n) => ({ ...n, name: inner(n.name), input: n.input.map(r), output: n.output.map(r) }) as NodeProto);
    const outputs = g.output.map((o) => ({ name: o.name, ...declaredType(o) }));
    const thenBranch = makeGraph({
      name: `${role}_then`,
      node: nodes,
      initializer: branchInitializers,
      output: outputs.map((o) => valueInfo(r(o.name), o.dtype, o.dims.map((d, j) => (d >= 0 ? d : `${role}_${o.name}_${j}`)))),
    });
    // The branch not taken: empty tensors of the same element types and ranks (a scalar: zero).
    const elseNodes: NodeProto[] = [];
    const elseOutputs: ValueInfoProto[] = [];
    for (const o of outputs) {
      const v = inner(`empty_${o.name}`);
      const dims = o.dims.map(() => 0);
      elseNodes.push(makeNode('Constant', [], [v], v, { value: makeTensor('', o.dtype, dims, dims.length === 0 ? [0] : []) }));
      elseOutputs.push(valueInfo(v, o.dtype, dims));
    }
    const elseBranch = makeGraph({ name: `${role}_else`, node: elseNodes, output: elseOutputs });
    const index = roleValue(role, 'index');
    const active = roleValue(role, 'active');
    outerInitializers.push(makeTensor(index, DataType.INT64, [], [k]));
    outerNodes.push(makeNode('Equal', [ROLES_IO.selector, index], [active], roleValue(role, 'Equal')));
    outerNodes.push(onnx.NodeProto.create({
      opType: 'If',
      name: roleValue(role, 'If'),
      input: [active],
      output: outputs.map((o) => roleValue(role, o.name)),
      attribute: [
        onnx.AttributeProto.create({ name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: thenBranch }),
        onnx.AttributeProto.create({ name: 'else_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: elseBranch }),
      ],
    }) as unknown as NodeProto);
    for (const o of outputs) outerOutputs.push(valueInfo(roleValue(role, o.name), o.dtype, o.dims.map((_, j) => `${role}_${o.name}_out${j}`)));
    signatures.push({ name: role, inputs, outputs });
  });

  const first = roles[0]!.model;
  const graph: GraphProto = makeGraph({ name: 'roles', node: outerNodes, initializer: outerInitializers, input: outerInputs, output: outerOutputs });
  const model = makeModel({
    irVersion: first.irVersion,
    opsetImport: first.opsetImport,
    producerName: 'p2pz',
    graph,
  });
  return { model, signatures };
}
