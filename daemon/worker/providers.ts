// The execution provider behind every onnxruntime session of this worker process. onnxruntime-node
// rejects `InferenceSession.create` when the CUDA provider cannot load (missing driver, CUDA or cuDNN
// libraries, no device): it does not fall back by itself. So the choice is made by trying, once per
// process, on a one-node probe model: `['cuda', 'cpu']` first, then `['cpu']`, keeping the loader's
// message (first line, no absolute paths) as the reason shown in health.
import { env as ortEnv, InferenceSession } from 'onnxruntime-node';
import { z } from 'zod';
import { P2pzError } from '../../shared/protocol/index.js';
import type { Device } from '../../shared/protocol/index.js';
import { scrub } from '../log.js';
import { DataType, onnx } from '../onnx/graph/onnx-proto.js';

/** `auto`: CUDA when it loads, else CPU. `cpu`: never try CUDA. `cuda`: CUDA or nothing. */
export const DevicePreference = z.enum(['auto', 'cpu', 'cuda']);
export type DevicePreference = z.infer<typeof DevicePreference>;

export const PROVIDER_DEFAULTS = Object.freeze({
  /** Environment variable that forces the device when the supervisor passes no `--device` (the CLI's flag). */
  envVar: 'P2PZ_DEVICE',
  preference: 'auto' as DevicePreference,
  /** Longest reason kept (the protocol's `Device.reason` allows 500). */
  reasonMaxLength: 300,
});

/** The device the worker reports, and the provider list every session of this process is created with. */
export interface ExecutionChoice {
  readonly device: Device;
  readonly executionProviders: readonly string[];
}

/** Creates (and the caller releases) a session on the probe model; injectable for tests. */
export type ProbeSessionFactory = (
  model: Uint8Array,
  options: InferenceSession.SessionOptions,
) => Promise<{ release(): Promise<void> }>;

const createProbeSession: ProbeSessionFactory = (model, options) => InferenceSession.create(model, options);

/** The preference: the `--device` flag the supervisor passes, else `P2PZ_DEVICE`, else `auto`. An
 *  unknown value is a configuration error. */
export function devicePreference(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): DevicePreference {
  const raw = flag ?? env[PROVIDER_DEFAULTS.envVar];
  if (raw === undefined || raw.trim() === '') return PROVIDER_DEFAULTS.preference;
  const parsed = DevicePreference.safeParse(raw.trim().toLowerCase());
  if (!parsed.success) {
    throw new P2pzError('E_BAD_REQUEST', `The device must be auto, cpu or cuda, not “${raw.slice(0, 20)}”.`, 'Pass --device auto, --device cpu or --device cuda.');
  }
  return parsed.data;
}

/** A native loader message as a one-line reason: first line, onnxruntime's source locations dropped,
 *  absolute paths replaced (they name the user's home folder), cut to `reasonMaxLength`. */
export function shortenLoaderMessage(message: string): string {
  const firstLine = message.split(/\r?\n/).find((line) => line.trim() !== '') ?? 'unknown error';
  const text = scrub(firstLine.replace(/\S+\.(?:cc|cpp|h):\d+\s*/g, '').replace(/\s+/g, ' ').trim());
  const max = PROVIDER_DEFAULTS.reasonMaxLength;
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The smallest valid model: y = Identity(x), x float32 [1]. Creating a session on it is what loads
 *  (or fails to load) the execution provider's libraries. */
export function probeModel(): Uint8Array {
  const tensor = (name: string) =>
    onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: 1 }] } } } });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'p2pz-probe',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'probe',
      node: [{ opType: 'Identity', input: ['x'], output: ['y'], name: 'probe' }],
      input: [tensor('x')],
      output: [tensor('y')],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

async function tryProviders(create: ProbeSessionFactory, providers: readonly string[]): Promise<string | null> {
  try {
    // onnxruntime's environment logger also prints the loader's full error (with the library it
    // missed) to stderr; the supervisor carries that line, scrubbed of paths, into the daemon log.
    const session = await create(probeModel(), { executionProviders: [...providers] });
    await session.release();
    return null;
  } catch (err) {
    return shortenLoaderMessage(err instanceof Error ? err.message : String(err));
  }
}

/** Chooses the execution providers by trying them (see the file header). */
export async function chooseExecution(
  preference: DevicePreference,
  create: ProbeSessionFactory = createProbeSession,
): Promise<ExecutionChoice> {
  if (preference === 'cpu') {
    return { device: { provider: 'cpu', reason: 'CPU requested.' }, executionProviders: ['cpu'] };
  }
  // With CUDA first, onnxruntime still places the odd op CUDA lacks on the CPU provider.
  const cudaFailure = await tryProviders(create, ['cuda', 'cpu']);
  if (cudaFailure === null) {
    const reason = preference === 'cuda' ? 'CUDA requested.' : 'CUDA provider loaded.';
    return { device: { provider: 'cuda', reason }, executionProviders: ['cuda', 'cpu'] };
  }
  if (preference === 'cuda') {
    throw new P2pzError(
      'E_DEVICE_UNAVAILABLE',
      `CUDA could not be loaded: ${cudaFailure}`,
      'Install the NVIDIA driver, CUDA 12 and cuDNN 9, or start p2pz with --device auto to use the CPU.',
    );
  }
  const cpuFailure = await tryProviders(create, ['cpu']);
  if (cpuFailure !== null) {
    throw new P2pzError('E_DEVICE_UNAVAILABLE', `onnxruntime could not start on the CPU either: ${cpuFailure}`);
  }
  const advice = cudaAdvice(cudaFailure);
  return { device: { provider: 'cpu', reason: `CUDA unavailable: ${cudaFailure}${advice ? ` ${advice}` : ''}` }, executionProviders: ['cpu'] };
}

/** What a designer can do about a CUDA loader failure, when the message says which part is missing:
 *  onnxruntime's CUDA provider library (not in the npm package) or the CUDA/cuDNN runtime it needs. */
export function cudaAdvice(loaderMessage: string): string | undefined {
  if (/lib(cublas|cudart|cufft|curand|cudnn)\w*\.so/i.test(loaderMessage) || /cudnn|cublas/i.test(loaderMessage)) {
    return '(Install CUDA 12 and cuDNN 9 for the GPU.)';
  }
  if (/Failed to load shared library|providers_cuda/i.test(loaderMessage)) {
    return '(Run `npm run gpu:install` to add onnxruntime\'s CUDA provider.)';
  }
  return undefined;
}

/** Limits onnxruntime's native logger to fatal errors. Without it, probing CUDA on a machine without
 *  the provider prints the loader's failure in red on stderr (`[E:onnxruntime:…, provider_bridge_ort.cc
 *  … Failed to load library`), although the probe's rejection already carries it as the device's
 *  reason. onnxruntime-node applies `env.logLevel` when it creates its environment, at the first
 *  session: call this before then. */
export function quietNativeLog(): void {
  ortEnv.logLevel = 'fatal';
}

let cached: Promise<ExecutionChoice> | undefined;

/** The process-wide choice: made once, on first use (probing loads the CUDA libraries, which takes
 *  seconds and cannot be undone within the process anyway). */
export function processExecution(preference: DevicePreference): Promise<ExecutionChoice> {
  cached ??= chooseExecution(preference);
  return cached;
}
