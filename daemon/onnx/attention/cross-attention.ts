// Finds the UNet's cross-attention probability maps A = softmax(QKᵀ/√d) (the Softmax nodes whose
// keys come from `encoder_hidden_states` while the queries come from `sample`; self-attention has
// both from `sample`) and exposes them as graph outputs `attn_map_00`, `attn_map_01`, … in graph
// order, each as [B, heads, h·w, tokens] whichever layout the exporter used
// ([B·heads, hw, T] from diffusers' head_to_batch_dim, or [B, heads, hw, T]). Node names are a
// hint only, recorded in the model's metadata. The existing outputs are left untouched.
import { P2pzError } from '../../../shared/protocol/errors.js';
import { producers } from '../graph/graph-index.js';
import { cloneModelShallow } from '../graph/fold.js';
import { DataType, type GraphProto, type ModelProto, type NodeProto } from '../graph/onnx-proto.js';
import { makeNode, makeTensor, valueInfo } from '../graph/nodes.js';
import type { ShapeMap } from '../graph/static-shapes.js';

export const CROSS_ATTENTION_IO = Object.freeze({
  sample: 'sample',
  timestep: 'timestep',
  encoderHiddenStates: 'encoder_hidden_states',
  output: 'out_sample',
  /** Output name prefix of the exposed maps (two-digit index in graph order). */
  mapPrefix: 'attn_map_',
  /** metadata_props key holding the JSON list of sites. */
  metadataKey: 'p2pz.cross_attention',
});

export const CROSS_ATTENTION_DEFAULTS = Object.freeze({
  /** How many producer steps above a Softmax to look for the QKᵀ contraction. */
  maxSearchDepth: 8,
});

export interface CrossAttentionSite {
  /** Position in graph order (the NN of attn_map_NN). */
  readonly index: number;
  /** Original Softmax node name (e.g. /down_blocks.0/attentions.0/.../attn2/Softmax). */
  readonly node: string;
  /** Softmax output tensor. */
  readonly probs: string;
  /** 'batch_by_heads': [B·heads, hw, T]; 'batch_heads': [B, heads, hw, T]. */
  readonly layout: 'batch_by_heads' | 'batch_heads';
  readonly heads: number;
  /** h·w of this layer's resolution. */
  readonly queries: number;
  readonly tokens: number;
}

const SAMPLE = 1;
const CONTEXT = 2;

/** Per tensor: which of sample / encoder_hidden_states it depends on (bit mask). */
function dependence(graph: GraphProto): Map<string, number> {
  const dep = new Map<string, number>([[CROSS_ATTENTION_IO.sample, SAMPLE], [CROSS_ATTENTION_IO.encoderHiddenStates, CONTEXT]]);
  for (const node of graph.node) {
    let m = 0;
    for (const i of node.input) m |= (i && dep.get(i)) || 0;
    if (m) for (const o of node.output) if (o) dep.set(o, m);
  }
  return dep;
}

/** The attention-score contraction feeding a Softmax (through scaling, masking, casts). */
function scoreContraction(softmax: NodeProto, producer: Map<string, NodeProto>, dep: Map<string, number>): NodeProto | undefined {
  let frontier = [softmax.input[0] ?? ''];
  for (let depth = 0; depth < CROSS_ATTENTION_DEFAULTS.maxSearchDepth && frontier.length > 0; depth++) {
    const next: string[] = [];
    for (const t of frontier) {
      const p = producer.get(t);
      if (!p) continue;
      if ((p.opType === 'MatMul' || p.opType === 'Einsum') && p.input.filter((i) => i && dep.get(i)).length >= 1) return p;
      for (const i of p.input) if (i && dep.get(i)) next.push(i);
    }
    frontier = next;
  }
  return undefined;
}

/** Cross-attention Softmax nodes in graph order, with their layout from the static shapes. */
export function findCrossAttention(model: ModelProto, shapes: ShapeMap, batch: number): CrossAttentionSite[] {
  const graph = model.graph;
  const dep = dependence(graph);
  const producer = producers(graph);
  const sites: CrossAttentionSite[] = [];
  for (const node of graph.node) {
    if (node.opType !== 'Softmax') continue;
    const mm = scoreContraction(node, producer, dep);
    let cross: boolean;
    if (mm) {
      const masks = mm.input.slice(0, 2).map((i) => (i ? dep.get(i) ?? 0 : 0));
      cross = masks.some((m) => m & SAMPLE) && masks.some((m) => (m & CONTEXT) !== 0 && (m & SAMPLE) === 0);
    } else {
      // No contraction found within reach: fall back on diffusers' module name.
      cross = /attn2/.test(node.name);
    }
    if (!cross) continue;
    const probs = node.output[0] ?? '';
    const dims = shapes.get(probs)?.dims;
    if (!dims || (dims.length !== 3 && dims.length !== 4)) throw new P2pzError('E_MODEL_INVALID', `cross-attention ${node.name} has an unexpected rank`);
    const rank4 = dims.length === 4;
    const heads = rank4 ? (dims[1] ?? 1) : (dims[0] ?? 1) / batch;
    if (!Number.isInteger(heads) || (rank4 && dims[0] !== batch)) throw new P2pzError('E_MODEL_INVALID', `cross-attention ${node.name} does not match the batch size`);
    sites.push({
      index: sites.length,
      node: node.name,
      probs,
      layout: rank4 ? 'batch_heads' : 'batch_by_heads',
      heads,
      queries: dims[dims.length - 2] ?? 0,
      tokens: dims[dims.length - 1] ?? 0,
    });
  }
  return sites;
}

export function mapName(index: number): string {
  return `${CROSS_ATTENTION_IO.mapPrefix}${String(index).padStart(2, '0')}`;
}

/** Adds Reshape nodes and outputs attn_map_NN [B, heads, hw, T] for every site; records the sites
 *  in metadata. `shapes` is extended with the new tensors. */
export function exposeCrossAttentionMaps(model: ModelProto, shapes: ShapeMap, sites: readonly CrossAttentionSite[], batch: number): ModelProto {
  const out = cloneModelShallow(model);
  const graph = out.graph;
  for (const s of sites) {
    const name = mapName(s.index);
    const dims = [batch, s.heads, s.queries, s.tokens];
    const shapeName = `${name}/shape`;
    graph.initializer.push(makeTensor(shapeName, DataType.INT64, [4], dims));
    graph.node.push(makeNode('Reshape', [s.probs, shapeName], [name], `${name}/Reshape`));
    const dtype = shapes.get(s.probs)?.dtype ?? DataType.FLOAT;
    shapes.set(shapeName, { dtype: DataType.INT64, dims: [4], value: dims });
    shapes.set(name, { dtype, dims });
    graph.output.push(valueInfo(name, dtype, dims));
  }
  out.metadataProps = [
    ...out.metadataProps.filter((p) => p.key !== CROSS_ATTENTION_IO.metadataKey),
    { key: CROSS_ATTENTION_IO.metadataKey, value: JSON.stringify(sites.map((s) => ({ output: mapName(s.index), node: s.node, layout: s.layout, heads: s.heads, queries: s.queries, tokens: s.tokens }))) },
  ];
  return out;
}
