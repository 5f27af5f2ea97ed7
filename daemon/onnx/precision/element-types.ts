// Element types of every tensor of a graph whose shapes are still symbolic (an export as written, before
// the static-shape folding of prepare): propagated from the graph inputs, initializers and `Constant`
// nodes through each node's type rule. Only the types matter to the precision conversion, so no
// dims are computed here.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { attrInt, attrTensor, declaredType } from '../graph/nodes.js';
import { DataType, type GraphProto, type NodeProto } from '../graph/onnx-proto.js';

/** Ops whose outputs are int64 whatever their inputs. */
const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin', 'NonMaxSuppression']);
/** Ops whose outputs are bool. */
const BOOL_OUT = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);
/** Ops with a `dtype` attribute (default float32 or, for the *Like ops, the input's type). */
const DTYPE_ATTR = new Set(['RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'EyeLike', 'Multinomial', 'Bernoulli']);

/** The element types of one node's outputs, given its inputs' (undefined where not known). */
export function outputTypes(node: NodeProto, inputs: readonly (number | undefined)[]): (number | undefined)[] {
  const n = node.output.length;
  const all = (t: number | undefined): (number | undefined)[] => Array.from({ length: n }, () => t);
  const op = node.opType;
  if (INT64_OUT.has(op)) return all(DataType.INT64);
  if (BOOL_OUT.has(op)) return all(DataType.BOOL);
  switch (op) {
    case 'Cast': return all(attrInt(node, 'to', DataType.FLOAT));
    case 'CastLike': return all(inputs[1]);
    case 'Constant': {
      const t = attrTensor(node, 'value');
      if (t) return all(t.dataType);
      if (node.attribute.some((a) => a.name === 'value_float' || a.name === 'value_floats')) return all(DataType.FLOAT);
      return all(DataType.INT64);
    }
    case 'ConstantOfShape': return all(attrTensor(node, 'value')?.dataType ?? DataType.FLOAT);
    case 'Where': return all(inputs[1]);
    case 'OneHot': return all(inputs[2]);
    case 'TopK': return [inputs[0], DataType.INT64];
    case 'LayerNormalization': return [inputs[0], DataType.FLOAT, DataType.FLOAT].slice(0, n);
    case 'Dropout': return [inputs[0], DataType.BOOL].slice(0, n);
    default:
      if (DTYPE_ATTR.has(op)) {
        const declared = node.attribute.find((a) => a.name === 'dtype');
        return all(declared ? attrInt(node, 'dtype', DataType.FLOAT) : op.endsWith('Like') ? inputs[0] : DataType.FLOAT);
      }
      return all(inputs.find((t) => t !== undefined));
  }
}

/** Element type of every tensor of `graph` (graph inputs, initializers, node outputs). Subgraphs
 *  (If, Loop, Scan) are refused: the UNet, text encoder and VAE exports have none. */
export function elementTypes(graph: GraphProto): Map<string, number> {
  const types = new Map<string, number>();
  for (const t of graph.initializer) types.set(t.name, t.dataType);
  for (const v of graph.input) if (!types.has(v.name)) types.set(v.name, declaredType(v).dtype);
  for (const node of graph.node) {
    if (node.attribute.some((a) => a.g || (a.graphs && a.graphs.length > 0))) {
      throw new P2pzError('E_UNSUPPORTED_OP', `op ${node.opType} at node ${node.name} (a subgraph: the precision conversion handles flat graphs only)`);
    }
    const outs = outputTypes(node, node.input.map((i) => (i ? types.get(i) : undefined)));
    node.output.forEach((o, k) => {
      const t = outs[k];
      if (o && t !== undefined) types.set(o, t);
    });
  }
  return types;
}
