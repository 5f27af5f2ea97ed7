// The pipeline's UNet calls through the roles model (onnx/roles-model.ts): one session, one copy of
// the weights, serving the reference pass and the inversion (`single`, batch 1), the edit pass's ε
// (`pair`, batch 2) and the guidance gradient (`grad`, batch 2). A call feeds its own role's inputs
// under their outer names, an empty tensor (a zero for a scalar) for every input of the other roles (the If branches not
// taken never read them), and the selector; it fetches and returns its own role's outputs under their
// plain names.
import { Tensor } from 'onnxruntime-node';
import type { InferenceSession } from 'onnxruntime-node';
import { P2pzError } from '../../shared/protocol/index.js';
import { TENSOR_TYPE } from '../onnx/graph/signature.js';
import { fromFloat16Array, toFloat16Array } from '../onnx/graph/float16.js';
import { ROLES_IO, roleValue } from '../onnx/roles-model.js';
import { UNET_ROLES, type PreparedRoles, type UNetRole } from '../onnx/prepare.js';
import type { ModelSessions } from './context.js';

/** One UNet graph's run(): the feeds and outputs under the graph's own names. */
export type UNetCall = (feeds: InferenceSession.FeedsType) => Promise<InferenceSession.ReturnType>;

function emptyTensor(dtype: number, rank: number): Tensor {
  // A scalar cannot be empty: it gets its one zero.
  const dims = Array.from({ length: rank }, () => 0);
  const n = rank === 0 ? 1 : 0;
  switch (TENSOR_TYPE[dtype]) {
    case 'int64': return new Tensor('int64', new BigInt64Array(n), dims);
    case 'int32': return new Tensor('int32', new Int32Array(n), dims);
    case 'float64': return new Tensor('float64', new Float64Array(n), dims);
    case 'float16': return new Tensor('float16', new Uint16Array(n), dims);
    case 'bool': return new Tensor('bool', new Uint8Array(n), dims);
    case 'float32': return new Tensor('float32', new Float32Array(n), dims);
    default: throw new P2pzError('E_MODEL_INVALID', `The UNet roles model has an input of ONNX type ${dtype}.`, 'Prepare the model again (`p2pz models prepare`).');
  }
}

/** A float timestep made for the export (float16 in an fp16 export) fed to a prepared graph that
 *  takes float32 (every prepared graph does), or the other way round. */
function asFloatType(value: Tensor, want: Tensor.Type | undefined): Tensor {
  if (value.type === want) return value;
  if (value.type === 'float16' && want === 'float32') return new Tensor('float32', fromFloat16Array(value.data as Uint16Array), value.dims);
  if (value.type === 'float32' && want === 'float16') return new Tensor('float16', toFloat16Array(value.data as Float32Array), value.dims);
  return value;
}

/** A UNetCall per role of the prepared roles model at `roles.path`. */
export function unetRoles(models: Pick<ModelSessions, 'run'>, roles: PreparedRoles): Record<UNetRole, UNetCall> {
  const { manifest } = roles;
  const empties: Record<string, Tensor> = {};
  for (const r of manifest.roles) for (const i of r.inputs) empties[roleValue(r.name, i.name)] = emptyTensor(i.dtype, i.dims.length);
  const call = (role: UNetRole, index: number): UNetCall => {
    const signature = manifest.roles.find((r) => r.name === role);
    if (!signature) throw new P2pzError('E_MODEL_INVALID', `The UNet roles model has no role “${role}”.`, 'Prepare the model again (`p2pz models prepare`).');
    const selector = new Tensor('int64', BigInt64Array.of(BigInt(index)), []);
    return async (feeds) => {
      const all: Record<string, Tensor> = { ...empties, [ROLES_IO.selector]: selector };
      for (const i of signature.inputs) {
        const value = feeds[i.name];
        if (!(value instanceof Tensor)) throw new P2pzError('E_INTERNAL', `UNet role “${role}”: no input “${i.name}”.`);
        all[roleValue(role, i.name)] = asFloatType(value, TENSOR_TYPE[i.dtype]);
      }
      const out = await models.run(roles.path, all);
      const mine: Record<string, InferenceSession.ReturnType[string]> = {};
      for (const o of signature.outputs) {
        const value = out[roleValue(role, o.name)];
        if (value) mine[o.name] = value;
      }
      return mine;
    };
  };
  const index = (role: UNetRole): number => manifest.roles.findIndex((r) => r.name === role);
  return { single: call('single', index('single')), pair: call('pair', index('pair')), grad: call('grad', index('grad')) };
}

export { UNET_ROLES };
