// A graph builder for writing ONNX models node by node, named the way the PyTorch exporter names
// things (node `/down_blocks.0/resnets.0/conv1/Conv`, its output `/down_blocks.0/resnets.0/conv1/Conv_output_0`,
// parameter `down_blocks.0.resnets.0.conv1.weight`). Parameters are declared with a seeded initializer
// recipe and only materialized when the model is written: large ones are streamed chunk by chunk into
// one external weights file per model (as the real exports store them), small ones stay inline. So a
// model the size of SD 1.5's UNet is never held in memory whole.
import { mkdir, open, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { encodeModel, writeFileAtomic } from './model-io.js';
import { ATTRIBUTE_TYPE, BYTES_PER_ELEMENT, DATA_LOCATION, DataType, onnx } from './onnx-proto.js';
import type { AttributeFields, DataTypeCode, ModelFields, NodeFields, TensorFields, ValueInfoFields } from './onnx-proto.js';
import { NormalStream, tensorSeed } from './prng.js';

export const BUILDER_DEFAULTS = Object.freeze({
  /** Default-domain opset the model imports. */
  opsetVersion: 17,
  /** ONNX IR version written into the model (8 = ONNX 1.10, read by every onnxruntime since 1.10). */
  irVersion: 8,
  producerName: 'p2pz',
  /** Tensors at least this large go to the external weights file (onnx's own default threshold). */
  externalThresholdBytes: 1024,
  /** External tensors at least `largeTensorBytes` start at a multiple of `largeAlignBytes` (the OS
   *  allocation granularity), so onnxruntime can memory-map them; smaller ones at `alignBytes`. */
  alignBytes: 64,
  largeTensorBytes: 1 << 20,
  largeAlignBytes: 65536,
  /** Elements generated per chunk while streaming weights (bounds memory: 4 MiB of float32). */
  chunkElements: 1 << 20,
  /** Weights file name next to `model.onnx` (optimum's naming). */
  weightsLocation: 'model.onnx_data',
});

export type ElemType = 'float32' | 'int64' | 'int32' | 'bool';
/** A dimension: a fixed size, or a symbolic name (dynamic). */
export type Dim = number | string;

const ELEM_CODE: Readonly<Record<ElemType, DataTypeCode>> = Object.freeze({
  float32: DataType.FLOAT,
  int64: DataType.INT64,
  int32: DataType.INT32,
  bool: DataType.BOOL,
});

/** How a parameter's values are made. `normal`: seeded N(mean, std²) from the tensor's own stream. */
export type TensorInit =
  | { readonly kind: 'normal'; readonly std: number; readonly mean?: number }
  | { readonly kind: 'constant'; readonly value: number }
  | { readonly kind: 'values'; readonly data: Float32Array | Int32Array | BigInt64Array };

/** A typed attribute value (ONNX distinguishes int and float attributes; JS numbers do not). */
export type AttrValue =
  | { readonly i: number }
  | { readonly f: number }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly s: string }
  | { readonly t: TensorFields };
export type Attrs = Readonly<Record<string, AttrValue>>;

export const attr = Object.freeze({
  i: (i: number): AttrValue => ({ i }),
  f: (f: number): AttrValue => ({ f }),
  ints: (ints: readonly number[]): AttrValue => ({ ints }),
  floats: (floats: readonly number[]): AttrValue => ({ floats }),
  s: (s: string): AttrValue => ({ s }),
  t: (t: TensorFields): AttrValue => ({ t }),
});

interface PendingTensor {
  readonly name: string;
  readonly dataType: DataTypeCode;
  readonly dims: readonly number[];
  readonly init: TensorInit;
  readonly byteLength: number;
}

export interface NodeOptions {
  /** Number of outputs (default 1), or their explicit names. */
  readonly outputs?: number | readonly string[];
  /** Node name relative to the current scope (default: the op type, de-duplicated with `_1`, `_2`…). */
  readonly name?: string;
  readonly domain?: string;
}

export interface WriteOptions {
  /** `external` (default): tensors ≥ the threshold go to one weights file beside the model;
   *  `inline`: everything inside `model.onnx` (very small models only: protobuf caps files at 2 GiB). */
  readonly weights?: 'external' | 'inline';
  /** Weights file name, relative to the model's folder. */
  readonly location?: string;
  /** `random` (default): materialize every recipe. `sparse-zeros`: size the weights file without
   *  writing it (a sparse file of zeros): the graph is exact and loadable, the values are all zero.
   *  For structural checks of very large graphs. */
  readonly fill?: 'random' | 'sparse-zeros';
}

export interface BuilderOptions {
  readonly seed: number;
  readonly opsetVersion?: number;
  readonly graphName?: string;
}

export class GraphBuilder {
  readonly seed: number;
  private readonly opsetVersion: number;
  private readonly graphName: string;
  private readonly nodes: NodeFields[] = [];
  private readonly inputs: ValueInfoFields[] = [];
  private readonly outputs: ValueInfoFields[] = [];
  private readonly tensors: PendingTensor[] = [];
  private readonly scopes: string[] = [];
  private readonly usedNodeNames = new Set<string>();
  private readonly usedValueNames = new Set<string>();
  private anonymousCount = 0;

  constructor(options: BuilderOptions) {
    this.seed = options.seed >>> 0;
    this.opsetVersion = options.opsetVersion ?? BUILDER_DEFAULTS.opsetVersion;
    this.graphName = options.graphName ?? 'main_graph';
  }

  get opset(): number {
    return this.opsetVersion;
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  /** Runs `fn` with `segment` appended to the module path (`down_blocks.0`, then `resnets.1`, …). */
  scope<T>(segment: string, fn: () => T): T {
    this.scopes.push(segment);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** The current module path as a parameter prefix: `down_blocks.0.resnets.1`. */
  get modulePath(): string {
    return this.scopes.join('.');
  }

  input(name: string, type: ElemType, dims: readonly Dim[]): string {
    this.claimValueName(name);
    this.inputs.push(valueInfo(name, ELEM_CODE[type], dims));
    return name;
  }

  /** Declares `value` a graph output named `name` (through an Identity when the names differ). */
  output(value: string, name: string, type: ElemType, dims?: readonly Dim[]): void {
    let v = value;
    if (value !== name) {
      this.claimValueName(name);
      this.nodes.push({ opType: 'Identity', name: this.uniqueNodeName('Identity'), input: [value], output: [name] });
      v = name;
    }
    this.outputs.push(valueInfo(v, ELEM_CODE[type], dims));
  }

  /** Adds one node; returns its first output's name. */
  op(opType: string, inputs: readonly string[], attrs: Attrs = {}, options: NodeOptions = {}): string {
    const outs = this.opN(opType, inputs, attrs, options);
    return outs[0] as string;
  }

  /** Adds one node; returns all of its output names. */
  opN(opType: string, inputs: readonly string[], attrs: Attrs = {}, options: NodeOptions = {}): string[] {
    const name = this.uniqueNodeName(options.name ?? opType);
    const spec = options.outputs ?? 1;
    const outputs = typeof spec === 'number' ? Array.from({ length: spec }, (_, k) => `${name}_output_${k}`) : [...spec];
    for (const o of outputs) this.claimValueName(o);
    const node: NodeFields = {
      opType,
      name,
      input: [...inputs],
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    };
    if (options.domain) node.domain = options.domain;
    this.nodes.push(node);
    return outputs;
  }

  /** A parameter of the current module (`<module path>.<localName>`), made by `init` at write time. */
  param(localName: string, dims: readonly number[], init: TensorInit): string {
    const name = this.scopes.length ? `${this.modulePath}.${localName}` : localName;
    return this.tensor(name, dims, init);
  }

  /** A named initializer. float32 unless `init` holds int32 or int64 values. */
  tensor(name: string, dims: readonly number[], init: TensorInit): string {
    this.claimValueName(name);
    const count = dims.reduce((a, b) => a * b, 1);
    const dataType: DataTypeCode =
      init.kind === 'values' && init.data instanceof BigInt64Array ? DataType.INT64
      : init.kind === 'values' && init.data instanceof Int32Array ? DataType.INT32
      : DataType.FLOAT;
    if (init.kind === 'values' && init.data.length !== count) {
      throw new RangeError(`tensor ${name}: ${init.data.length} values for dims [${dims.join(',')}]`);
    }
    this.tensors.push({ name, dataType, dims: [...dims], init, byteLength: count * (BYTES_PER_ELEMENT[dataType] ?? 4) });
    return name;
  }

  /** An initializer outside any module, named as the PyTorch exporter names folded constants
   *  (`onnx::Mul_12`); `hint` is usually the consuming op type. */
  anonymous(hint: string, dims: readonly number[], init: TensorInit): string {
    let name: string;
    do name = `onnx::${hint}_${this.anonymousCount++}`;
    while (this.usedValueNames.has(name));
    return this.tensor(name, dims, init);
  }

  /** A small int64 constant (shapes, axes) as a `Constant` node, as the PyTorch exporter writes them. */
  constInt64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.op('Constant', [], {
      value: attr.t({ dataType: DataType.INT64, dims: [...dims], rawData: rawBytes(BigInt64Array.from(values, BigInt)) }),
    });
  }

  /** A small float32 constant as a `Constant` node. */
  constFloat(values: readonly number[], dims: readonly number[] = []): string {
    return this.op('Constant', [], {
      value: attr.t({ dataType: DataType.FLOAT, dims: [...dims], rawData: rawBytes(Float32Array.from(values)) }),
    });
  }

  /** Total bytes of all parameters (the weights file is about this size). */
  get parameterBytes(): number {
    return this.tensors.reduce((a, t) => a + t.byteLength, 0);
  }

  /**
   * Writes `model.onnx` (at `path`) and, for external weights, the weights file beside it. The weights
   * are generated and written one chunk at a time. Files are written under temporary names and renamed
   * into place, so a crash never leaves a half-written model that looks complete.
   */
  async write(path: string, options: WriteOptions = {}): Promise<void> {
    const external = (options.weights ?? 'external') === 'external';
    const location = options.location ?? BUILDER_DEFAULTS.weightsLocation;
    const fill = options.fill ?? 'random';
    const dir = dirname(path);
    await mkdir(dir, { recursive: true });

    const initializers: TensorFields[] = [];
    const placed: { t: PendingTensor; offset: number }[] = [];
    let end = 0;
    for (const t of this.tensors) {
      const proto: TensorFields = { name: t.name, dataType: t.dataType, dims: [...t.dims] };
      if (external && t.byteLength >= BUILDER_DEFAULTS.externalThresholdBytes) {
        const align = t.byteLength >= BUILDER_DEFAULTS.largeTensorBytes ? BUILDER_DEFAULTS.largeAlignBytes : BUILDER_DEFAULTS.alignBytes;
        const offset = Math.ceil(end / align) * align;
        end = offset + t.byteLength;
        proto.dataLocation = DATA_LOCATION.EXTERNAL;
        proto.externalData = [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(t.byteLength) },
        ];
        placed.push({ t, offset });
      } else {
        proto.rawData = materialize(t, this.seed);
      }
      initializers.push(proto);
    }

    const model: ModelFields = onnx.ModelProto.create({
      irVersion: BUILDER_DEFAULTS.irVersion,
      producerName: BUILDER_DEFAULTS.producerName,
      opsetImport: [{ domain: '', version: this.opsetVersion }],
      graph: {
        name: this.graphName,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: initializers,
      },
    });

    if (placed.length > 0) {
      const weightsPath = join(dir, location);
      const tmp = `${weightsPath}.tmp-${process.pid}`;
      const fh = await open(tmp, 'w');
      try {
        if (fill === 'sparse-zeros') {
          await fh.truncate(end);
        } else {
          const streamer = new WeightsStreamer(fh, BUILDER_DEFAULTS.chunkElements);
          try {
            for (const { t, offset } of placed) await streamer.tensor(t, offset, this.seed);
          } finally {
            await streamer.flush();
          }
          await fh.truncate(end);
        }
      } catch (e) {
        await fh.close();
        await rm(tmp, { force: true });
        throw e;
      }
      await fh.close();
      await rename(tmp, weightsPath);
    }
    await writeFileAtomic(path, encodeModel(model));
  }

  private uniqueNodeName(local: string): string {
    const base = `/${this.scopes.join('/')}${this.scopes.length ? '/' : ''}${local}`;
    let name = base;
    for (let k = 1; this.usedNodeNames.has(name); k++) name = `${base}_${k}`;
    this.usedNodeNames.add(name);
    return name;
  }

  private claimValueName(name: string): void {
    if (this.usedValueNames.has(name)) throw new Error(`duplicate value name ${name}`);
    this.usedValueNames.add(name);
  }
}

function valueInfo(name: string, elemType: number, dims: readonly Dim[] | undefined): ValueInfoFields {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        ...(dims ? { shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } : {}),
      },
    },
  };
}

function attribute(name: string, v: AttrValue): AttributeFields {
  const T = ATTRIBUTE_TYPE;
  if ('i' in v) return { name, type: T.INT, i: v.i };
  if ('f' in v) return { name, type: T.FLOAT, f: v.f };
  if ('ints' in v) return { name, type: T.INTS, ints: [...v.ints] };
  if ('floats' in v) return { name, type: T.FLOATS, floats: [...v.floats] };
  if ('s' in v) return { name, type: T.STRING, s: new TextEncoder().encode(v.s) };
  return { name, type: T.TENSOR, t: v.t };
}

/** Little-endian bytes of a typed array (the platform is little-endian wherever onnxruntime runs). */
export function rawBytes(a: Float32Array | Int32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Values of a small tensor, whole. */
function materialize(t: PendingTensor, modelSeed: number): Uint8Array {
  const count = t.byteLength / (BYTES_PER_ELEMENT[t.dataType] ?? 4);
  if (t.init.kind === 'values') return new Uint8Array(rawBytes(t.init.data));
  const out = new Float32Array(count);
  fillChunk(t, out, new NormalStream(tensorSeed(modelSeed, t.name)));
  return rawBytes(out);
}

function fillChunk(t: PendingTensor, out: Float32Array, stream: NormalStream): void {
  const init = t.init;
  if (init.kind === 'normal') stream.fill(out, init.mean ?? 0, init.std);
  else if (init.kind === 'constant') out.fill(init.value);
}

/**
 * Streams generated tensors into the weights file: chunks are produced into a small ring of buffers
 * and written asynchronously, so generating the next chunk overlaps writing the previous ones (the
 * SD-1.5-shaped UNet is 3.4 GB: generation and disk each take seconds). Memory stays at
 * `ring × chunkElements × 4` bytes.
 */
class WeightsStreamer {
  private readonly ring: { buf: Float32Array; pending: Promise<unknown> }[];
  private next = 0;
  constructor(private readonly fh: FileHandle, chunkElements: number, ringSize = 3) {
    this.ring = Array.from({ length: ringSize }, () => ({ buf: new Float32Array(chunkElements), pending: Promise.resolve() }));
  }

  async tensor(t: PendingTensor, offset: number, modelSeed: number): Promise<void> {
    if (t.init.kind === 'values') {
      await this.fh.write(rawBytes(t.init.data), 0, t.byteLength, offset);
      return;
    }
    const count = t.byteLength / 4;
    const stream = new NormalStream(tensorSeed(modelSeed, t.name));
    for (let start = 0; start < count; ) {
      const slot = this.ring[this.next] as { buf: Float32Array; pending: Promise<unknown> };
      this.next = (this.next + 1) % this.ring.length;
      await slot.pending;
      const view = slot.buf.subarray(0, Math.min(slot.buf.length, count - start));
      fillChunk(t, view, stream);
      slot.pending = this.fh.write(rawBytes(view), 0, view.byteLength, offset + start * 4);
      start += view.length;
    }
  }

  async flush(): Promise<void> {
    await Promise.all(this.ring.map((s) => s.pending));
  }
}
