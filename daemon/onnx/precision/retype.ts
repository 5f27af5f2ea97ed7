// Rewrites the floating-point element types of a graph: every node computes in the type `compute`
// gives it (float16, or float32 for the nodes keep-float32.ts names), the graph's float inputs and
// outputs take the boundary type, and a Cast is inserted wherever a value is read in another type
// than it was made in (one Cast per value and type). Initializers and `Constant` values take the
// type of their first reader; the weights conversion itself is materialize.ts. Non-float values
// (shapes, indices, masks) are untouched. This is the ONNX counterpart of torch's `model.half()` plus
// autocast's float32 list, and of onnxconverter-common's `convert_float_to_float16(keep_io_types=…,
// op_block_list=…)`.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { attrTensor, makeAttr, makeNode } from '../graph/nodes.js';
import { cloneModelShallow } from '../graph/fold.js';
import { DataType, onnx, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../graph/onnx-proto.js';
import { elementTypes } from './element-types.js';
import { float16BytesToFloat32, float32BytesToFloat16 } from '../graph/float16.js';

/** The two floating-point types the conversion moves between. */
export type FloatType = typeof DataType.FLOAT | typeof DataType.FLOAT16;

const retypable = (t: number | undefined): t is FloatType => t === DataType.FLOAT || t === DataType.FLOAT16;

/** Input slots that keep their own type whatever the node computes in (Resize's roi and scales,
 *  Upsample's scales), and ops whose inputs may be of any type (no Cast needed before them). */
const FIXED_SLOTS: Readonly<Record<string, readonly number[]>> = Object.freeze({ Resize: [1, 2], Upsample: [1] });
const ANY_INPUT = new Set(['Cast', 'Shape', 'Size', 'CastLike']);

/** A graph input or output's declaration with another element type (shape kept as declared). */
function withElemType(v: ValueInfoProto, elemType: FloatType): ValueInfoProto {
  return onnx.ValueInfoProto.create({ ...v, type: { tensorType: { elemType, shape: v.type?.tensorType?.shape ?? null } } }) as unknown as ValueInfoProto;
}

export interface RetypeOptions {
  /** The type each node computes in. */
  readonly compute: (node: NodeProto) => FloatType;
  /** The type of the graph's float inputs and outputs. */
  readonly boundary: FloatType;
}

/** An initializer whose data must be converted (from → to) when the model is written. */
export interface WeightConversion {
  readonly name: string;
  readonly from: FloatType;
  readonly to: FloatType;
}

export interface Retyped {
  readonly model: ModelProto;
  readonly conversions: readonly WeightConversion[];
}

function convertInlineTensor(t: TensorProto, to: FloatType): TensorProto {
  if (t.dataType === to) return t;
  let raw: Uint8Array;
  if (t.rawData && t.rawData.length > 0) raw = t.rawData;
  else if (t.dataType === DataType.FLOAT) raw = new Uint8Array(Float32Array.from(t.floatData ?? []).buffer);
  else raw = new Uint8Array(Uint16Array.from(t.int32Data ?? []).buffer); // float16 in int32_data (ONNX's rule)
  const converted = to === DataType.FLOAT16 ? float32BytesToFloat16(raw) : float16BytesToFloat32(raw);
  return onnx.TensorProto.create({ name: t.name, dataType: to, dims: t.dims, rawData: converted }) as unknown as TensorProto;
}

/** Returns the retyped model (the input is not modified) and the initializers to convert. */
export function retypeFloats(model: ModelProto, options: RetypeOptions): Retyped {
  const foreign = model.graph.node.find((n) => n.domain && n.domain !== 'ai.onnx');
  if (foreign) {
    throw new P2pzError('E_UNSUPPORTED_OP', `op ${foreign.domain}.${foreign.opType} at node ${foreign.name} (the precision conversion handles standard ONNX ops only)`, 'Use an export without com.microsoft fused ops for a precision conversion.');
  }
  const out = cloneModelShallow(model);
  const graph = out.graph as GraphProto;
  const types = elementTypes(model.graph);
  const initializers = new Map(graph.initializer.map((t) => [t.name, t]));
  const inputNames = new Set(graph.input.map((v) => v.name));

  // 1. Each float value's new type: inputs take the boundary type, node outputs their node's type;
  //    constants (initializers, Constant nodes) the type their first reader needs.
  const newType = new Map<string, FloatType>();
  for (const v of graph.input) if (retypable(types.get(v.name)) && !initializers.has(v.name)) newType.set(v.name, options.boundary);
  const required = (node: NodeProto, slot: number, name: string): FloatType | undefined => {
    const t = types.get(name);
    if (!retypable(t) || ANY_INPUT.has(node.opType)) return undefined;
    if (FIXED_SLOTS[node.opType]?.includes(slot)) return t;
    return options.compute(node);
  };
  const constantNodes = new Map<string, NodeProto>();
  for (const node of graph.node) {
    if (node.opType === 'Constant' && retypable(types.get(node.output[0] ?? ''))) constantNodes.set(node.output[0] as string, node);
  }
  for (const node of graph.node) {
    node.input.forEach((name, slot) => {
      if (!name || newType.has(name) || !(initializers.has(name) || constantNodes.has(name))) return;
      const r = required(node, slot, name);
      if (r) newType.set(name, r);
    });
    if (node.opType === 'Constant') continue;
    const ct = options.compute(node);
    node.output.forEach((o, k) => {
      if (!o || !retypable(types.get(o))) return;
      if (node.opType === 'LayerNormalization' && k > 0) return; // mean / inv-std: float32 by stash_type
      newType.set(o, ct);
    });
  }

  // 2. Nodes: attributes that name a float type follow the node's compute type; readers of a value in
  //    another type read it through a Cast.
  const casts = new Map<string, string>();
  const castNodes: NodeProto[] = [];
  const castOf = (name: string, to: FloatType): string => {
    const key = `${name}\u0000${to}`;
    let c = casts.get(key);
    if (!c) {
      c = `${name}/${to === DataType.FLOAT16 ? 'float16' : 'float32'}`;
      casts.set(key, c);
      castNodes.push(makeNode('Cast', [name], [c], `${c}/Cast`, { to }));
    }
    return c;
  };
  const nodes: NodeProto[] = [];
  for (const node of graph.node) {
    const ct = options.compute(node);
    let attribute = node.attribute;
    if (node.opType === 'Cast') {
      const to = types.get(node.output[0] ?? '');
      if (retypable(to) && to !== ct) attribute = attribute.map((a) => (a.name === 'to' ? makeAttr('to', ct) : a));
    } else if (node.opType === 'Constant' || node.opType === 'ConstantOfShape') {
      const t = attrTensor(node, 'value');
      const target = newType.get(node.output[0] ?? '');
      if (t && retypable(t.dataType) && target && target !== t.dataType) {
        attribute = attribute.map((a) => (a.name === 'value' ? makeAttr('value', convertInlineTensor(t, target)) : a));
      }
    } else if (node.attribute.some((a) => a.name === 'dtype') && retypable(types.get(node.output[0] ?? ''))) {
      attribute = attribute.map((a) => (a.name === 'dtype' ? makeAttr('dtype', ct) : a));
    }
    const input = node.input.map((name, slot) => {
      if (!name) return name;
      const want = required(node, slot, name);
      const have = newType.get(name) ?? types.get(name);
      return want && have !== want ? castOf(name, want) : name;
    });
    const changed = attribute !== node.attribute || input.some((v, k) => v !== node.input[k]);
    if (changed) nodes.push(onnx.NodeProto.create({ ...node, input, attribute }) as unknown as NodeProto);
    else nodes.push(node);
    // Casts are placed right after the value they read is made (inputs, constants: at the front).
  }
  const castReads = new Map<string, NodeProto[]>();
  for (const c of castNodes) {
    const src = c.input[0] as string;
    const list = castReads.get(src);
    if (list) list.push(c);
    else castReads.set(src, [c]);
  }
  const ordered: NodeProto[] = [];
  for (const [src, cs] of castReads) if (inputNames.has(src) || initializers.has(src)) ordered.push(...cs);
  for (const n of nodes) {
    ordered.push(n);
    for (const o of n.output) if (o) ordered.push(...(castReads.get(o) ?? []));
  }

  // 3. Outputs in the boundary type: a float output made in another type is renamed inside and cast.
  const rename = new Map<string, string>();
  const tail: NodeProto[] = [];
  graph.output = graph.output.map((v) => {
    const t = newType.get(v.name);
    if (!t) return v;
    if (t !== options.boundary) {
      const inner = `${v.name}/compute`;
      rename.set(v.name, inner);
      tail.push(makeNode('Cast', [inner], [v.name], `${v.name}/Cast`, { to: options.boundary }));
    }
    return withElemType(v, options.boundary);
  });
  const renamed = (n: NodeProto): NodeProto => {
    if (!n.input.some((i) => rename.has(i)) && !n.output.some((o) => rename.has(o))) return n;
    return onnx.NodeProto.create({ ...n, input: n.input.map((i) => rename.get(i) ?? i), output: n.output.map((o) => rename.get(o) ?? o) }) as unknown as NodeProto;
  };
  graph.node = [...ordered.map(renamed), ...tail];
  graph.input = graph.input.map((v) => {
    const t = newType.get(v.name);
    return t && !initializers.has(v.name) ? withElemType(v, t) : v;
  });
  // Stale per-value types would contradict the new ones; onnxruntime infers them again.
  graph.valueInfo = [];

  // 4. Initializers whose type changes: recorded, converted when written.
  const conversions: WeightConversion[] = [];
  for (const t of graph.initializer) {
    const to = newType.get(t.name);
    if (to && retypable(t.dataType) && to !== t.dataType) conversions.push({ name: t.name, from: t.dataType, to });
  }
  return { model: out, conversions };
}
