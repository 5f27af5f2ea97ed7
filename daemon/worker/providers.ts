// The execution provider behind every onnxruntime session of this worker process, chosen by trying.
// onnxruntime-node rejects `InferenceSession.create` when a provider cannot start (CUDA: missing
// driver, CUDA or cuDNN libraries; WebGPU: no adapter; DirectML: no D3D12 device): it does not fall
// back by itself. So the choice is made once per process on a one-node probe model, trying each
// provider of the platform's order (PROVIDER_DEFAULTS.autoOrder) and keeping each failure's message
// (first line, no absolute paths) as the reason shown in health, then the CPU.
// Providers that this platform's onnxruntime-node build lacks (`listSupportedBackends()`), or that
// need a separate install (CUDA), are passed over with that as the reason, without a probe.
import { env as ortEnv, InferenceSession, listSupportedBackends, Tensor } from 'onnxruntime-node';
import { P2pzError, PROVIDER_NAMES } from '../../shared/protocol/index.js';
import type { Device, DevicePreference, Provider, SkippedProvider } from '../../shared/protocol/index.js';
import { scrub } from '../log.js';
import { CUDA_PROVIDER, cudaProviderInstalled } from '../models/cuda-provider.js';
import { DataType, onnx } from '../onnx/graph/onnx-proto.js';
import { adapterName } from './adapter-name.js';

export { DevicePreference, devicePreference } from '../../shared/protocol/index.js';
export type GpuProvider = Exclude<Provider, 'cpu'>;

export const PROVIDER_DEFAULTS = Object.freeze({
  /** Longest reason kept (the protocol's `Device.reason` allows 500). */
  reasonMaxLength: 300,
  /** What `auto` tries, in order, before the CPU. CUDA first where it exists: cuDNN's kernels beat
   *  every portable path on NVIDIA. On macOS WebGPU (Metal) before Core ML: Core ML compiles each
   *  graph for its own runtime at load (minutes for a UNet), cannot take ops it lacks in the middle
   *  of a graph without splitting it into partitions, and runs float16 on the Neural Engine; Metal
   *  through WebGPU runs the whole graph in float32. Not measured on a Mac yet (docs/BENCHMARKS.md). */
  autoOrder: Object.freeze({
    linux: Object.freeze(['cuda', 'webgpu'] as const),
    win32: Object.freeze(['cuda', 'dml', 'webgpu'] as const),
    darwin: Object.freeze(['webgpu', 'coreml'] as const),
  }) as Readonly<Partial<Record<NodeJS.Platform, readonly GpuProvider[]>>>,
  /** Core ML: compile to an ML Program (float32 on the GPU; the older NeuralNetwork format is float16)
   *  (COREML_FLAG_CREATE_MLPROGRAM = 0x010, coreml_provider_factory.h). */
  coreMlFlags: 0x010,
});

/** How one provider is asked for: the session's provider list (the CPU last, for the ops the
 *  provider lacks) and the session options it needs. DirectML supports neither memory patterns nor
 *  parallel execution (onnxruntime's DirectML provider documentation). */
export interface ProviderSetup {
  readonly executionProviders: readonly InferenceSession.ExecutionProviderConfig[];
  readonly sessionOptions: Readonly<Pick<InferenceSession.SessionOptions, 'enableMemPattern' | 'executionMode'>>;
}

export function providerSetup(provider: Provider): ProviderSetup {
  switch (provider) {
    case 'cpu':
      return { executionProviders: ['cpu'], sessionOptions: {} };
    case 'coreml':
      return { executionProviders: [{ name: 'coreml', coreMlFlags: PROVIDER_DEFAULTS.coreMlFlags }, 'cpu'], sessionOptions: {} };
    case 'dml':
      return { executionProviders: ['dml', 'cpu'], sessionOptions: { enableMemPattern: false, executionMode: 'sequential' } };
    default:
      return { executionProviders: [provider, 'cpu'], sessionOptions: {} };
  }
}

/** The device the worker reports, and how every session of this process is created. */
export interface ExecutionChoice extends ProviderSetup {
  readonly device: Device;
}

/** Creates (and the caller releases) a session on the probe model; injectable for tests. */
export type ProbeSessionFactory = (
  model: Uint8Array,
  options: InferenceSession.SessionOptions,
) => Promise<{ run?(feeds: InferenceSession.FeedsType): Promise<unknown>; release(): Promise<void> }>;

const createProbeSession: ProbeSessionFactory = (model, options) => InferenceSession.create(model, options);

/** What the choice asks of this machine; each part injectable for tests. */
export interface ProviderHost {
  readonly platform: NodeJS.Platform;
  readonly arch: string;
  /** The providers of this platform's onnxruntime-node build; `bundled: false` needs an install. */
  readonly backends: () => ReadonlyArray<{ readonly name: string; readonly bundled: boolean }>;
  /** Whether onnxruntime's CUDA provider library has been installed beside the binding. */
  readonly cudaInstalled: () => boolean;
  readonly create: ProbeSessionFactory;
  readonly adapterName: (provider: Provider) => Promise<string | undefined>;
}

export const systemProviderHost: ProviderHost = {
  platform: process.platform,
  arch: process.arch,
  backends: () => listSupportedBackends(),
  cudaInstalled: () => cudaProviderInstalled(),
  create: createProbeSession,
  adapterName: (provider) => adapterName(provider),
};

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

/** Starts the providers on the probe model and runs it once; null, or the failure as a reason. */
async function tryProviders(create: ProbeSessionFactory, setup: ProviderSetup): Promise<string | null> {
  try {
    // onnxruntime's environment logger also prints the loader's full error (with the library it
    // missed) to stderr; the supervisor carries that line, scrubbed of paths, into the daemon log.
    const session = await create(probeModel(), { executionProviders: [...setup.executionProviders], ...setup.sessionOptions, logSeverityLevel: 3 });
    try {
      await session.run?.({ x: new Tensor('float32', new Float32Array([1]), [1]) });
    } finally {
      await session.release();
    }
    return null;
  } catch (err) {
    return shortenLoaderMessage(err instanceof Error ? err.message : String(err));
  }
}

/** Why a provider is passed over without a probe on this machine, or null when it can be tried. */
function notOnThisMachine(provider: GpuProvider, host: ProviderHost): string | null {
  const backend = host.backends().find((b) => b.name === provider);
  if (!backend) return `not part of onnxruntime-node for ${host.platform}/${host.arch}.`;
  if (provider === 'cuda' && !host.cudaInstalled()) {
    return `onnxruntime's CUDA provider is not installed (\`${CUDA_PROVIDER.installCommand}\` adds it; it needs CUDA 12 and cuDNN 9).`;
  }
  return null;
}

/** What a designer can do about a provider's failure, when its message says. */
export function providerAdvice(provider: GpuProvider, message: string): string | undefined {
  if (provider === 'cuda') return cudaAdvice(message);
  if (provider === 'webgpu' && /No supported adapters|Failed to get a WebGPU adapter/i.test(message)) {
    return '(No GPU driver with Vulkan, Metal or Direct3D 12 was found; on Linux install the GPU\'s Vulkan driver and libvulkan1.)';
  }
  return undefined;
}

async function withAdapter(device: Device, host: ProviderHost): Promise<Device> {
  const adapter = await host.adapterName(device.provider).catch(() => undefined);
  return adapter === undefined ? device : { ...device, adapter };
}

/** Chooses the execution providers by trying them (see the file header). */
export async function chooseExecution(preference: DevicePreference, overrides: Partial<ProviderHost> = {}): Promise<ExecutionChoice> {
  const host: ProviderHost = { ...systemProviderHost, ...overrides };
  if (preference === 'cpu') {
    return { device: { provider: 'cpu', reason: 'CPU requested.' }, ...providerSetup('cpu') };
  }
  const order: readonly GpuProvider[] = preference === 'auto' ? (PROVIDER_DEFAULTS.autoOrder[host.platform] ?? ['webgpu']) : [preference];
  const skipped: SkippedProvider[] = [];
  for (const provider of order) {
    const name = PROVIDER_NAMES[provider];
    const absent = notOnThisMachine(provider, host);
    const failure = absent ?? (await tryProviders(host.create, providerSetup(provider)));
    if (failure === null) {
      const reason = preference === 'auto' ? `${name} started${skipped.length ? ` (${skipped.map((s) => PROVIDER_NAMES[s.provider]).join(', ')} did not)` : ''}.` : `${name} requested.`;
      const device = await withAdapter({ provider, reason, ...(skipped.length ? { skipped } : {}) }, host);
      return { device, ...providerSetup(provider) };
    }
    const advice = absent === null ? providerAdvice(provider, failure) : undefined;
    skipped.push({ provider, reason: `${failure}${advice ? ` ${advice}` : ''}` });
    if (preference !== 'auto') {
      throw new P2pzError(
        'E_DEVICE_UNAVAILABLE',
        `${name} could not be started: ${failure}`,
        advice ? `${advice.slice(1, -1)} Or start p2pz with --device auto to use the best device that works.` : 'Start p2pz with --device auto to use the best device that works, or --device cpu.',
      );
    }
  }
  const cpuFailure = await tryProviders(host.create, providerSetup('cpu'));
  if (cpuFailure !== null) {
    throw new P2pzError('E_DEVICE_UNAVAILABLE', `onnxruntime could not start on the CPU either: ${cpuFailure}`);
  }
  const reason = skipped.map((s) => `${PROVIDER_NAMES[s.provider]} unavailable: ${s.reason}`).join(' ');
  return { device: { provider: 'cpu', reason: shortenReason(reason || 'No GPU provider for this platform.'), ...(skipped.length ? { skipped } : {}) }, ...providerSetup('cpu') };
}

function shortenReason(text: string): string {
  return text.length > 500 ? `${text.slice(0, 499)}…` : text;
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
