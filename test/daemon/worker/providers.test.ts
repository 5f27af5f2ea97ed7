// Execution provider choice by trying, with injected failures for every platform: each provider of the
// platform's order is probed, onnxruntime's rejection (it does not fall back by itself) moves on to
// the next with the message, path-free, kept as that provider's reason, and the CPU closes the list.
// CoreML, DirectML and CUDA cannot run on this machine: this file is what proves their choice logic.
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { deviceWords, skippedWords } from '../../../shared/protocol/index.js';
import { chooseExecution, devicePreference, probeModel, shortenLoaderMessage } from '../../../daemon/worker/providers.js';
import type { ProbeSessionFactory, ProviderHost } from '../../../daemon/worker/providers.js';

/** onnxruntime-node 1.30's rejection on a machine without the CUDA provider library, and the longer
 *  form its provider bridge logs (with absolute paths). */
const ORT_CUDA_REJECTION = 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library';
const ORT_CUDA_BRIDGE =
  '/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1988 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() ' +
  '[ONNXRuntimeError] : 1 : FAIL : Failed to load library /home/ada/p2pz/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so ' +
  'with error: libcublasLt.so.12: cannot open shared object file: No such file or directory\nsecond line';

/** The providers each platform's onnxruntime-node 1.30 build lists (`listSupportedBackends()`; Linux
 *  printed here, macOS and Windows from the package's per-platform binaries: CoreML on darwin,
 *  DirectML on win32, WebGPU on all three; CUDA as a separate download on linux/x64). */
const BACKENDS: Record<string, Array<{ name: string; bundled: boolean }>> = {
  linux: [{ name: 'cpu', bundled: true }, { name: 'webgpu', bundled: true }, { name: 'cuda', bundled: false }, { name: 'tensorrt', bundled: false }],
  darwin: [{ name: 'cpu', bundled: true }, { name: 'webgpu', bundled: true }, { name: 'coreml', bundled: true }],
  win32: [{ name: 'cpu', bundled: true }, { name: 'webgpu', bundled: true }, { name: 'dml', bundled: true }, { name: 'cuda', bundled: false }],
};

/** Dawn's rejection (through onnxruntime's WebGPU context) when no adapter qualifies: seen here
 *  without a Vulkan loader on the library path. */
const ORT_WEBGPU_NO_ADAPTER =
  '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters';

type Outcome = 'ok' | string;

/** A machine: a platform, its backends, and what each provider's probe does (fail with a message, or
 *  start). Records every provider list it was asked for. */
function fakeHost(platform: NodeJS.Platform, outcomes: Partial<Record<string, Outcome>>, opts: { cudaInstalled?: boolean; adapter?: string } = {}) {
  const calls: string[][] = [];
  const create: ProbeSessionFactory = async (_model, options) => {
    const providers = (options.executionProviders ?? []).map((p) => (typeof p === 'string' ? p : p.name));
    calls.push(providers);
    const outcome = outcomes[providers[0] ?? 'cpu'] ?? 'ok';
    if (outcome !== 'ok') throw new Error(outcome);
    return { run: async () => ({}), release: async () => {} };
  };
  const host: Partial<ProviderHost> = {
    platform,
    arch: 'x64',
    backends: () => BACKENDS[platform] ?? [],
    cudaInstalled: () => opts.cudaInstalled ?? true,
    create,
    adapterName: async (provider) => (provider === 'cpu' ? undefined : opts.adapter),
  };
  return { host, calls };
}

describe('chooseExecution', () => {
  it('auto on Linux: CUDA fails → WebGPU fails → CPU, each reason kept in order', async () => {
    const { host, calls } = fakeHost('linux', { cuda: ORT_CUDA_REJECTION, webgpu: ORT_WEBGPU_NO_ADAPTER });
    const choice = await chooseExecution('auto', host);
    expect(calls).toEqual([['cuda', 'cpu'], ['webgpu', 'cpu'], ['cpu']]);
    expect(choice.executionProviders).toEqual(['cpu']);
    expect(choice.device.provider).toBe('cpu');
    expect(choice.device.skipped).toEqual([
      { provider: 'cuda', reason: `${ORT_CUDA_REJECTION} (Run \`npm run gpu:install\` to add onnxruntime's CUDA provider.)` },
      {
        provider: 'webgpu',
        reason:
          'onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters' +
          " (No GPU driver with Vulkan, Metal or Direct3D 12 was found; on Linux install the GPU's Vulkan driver and libvulkan1.)",
      },
    ]);
    expect(choice.device.reason).toMatch(/^CUDA unavailable: OrtSessionOptions.* WebGPU unavailable: onnxruntime::webgpu/);
    expect(deviceWords(choice.device)).toBe('CPU');
  });

  it('auto on Linux without the CUDA provider installed: CUDA passed over without a probe, WebGPU chosen with its adapter', async () => {
    const { host, calls } = fakeHost('linux', {}, { cudaInstalled: false, adapter: 'AMD GPU (amdgpu driver)' });
    const choice = await chooseExecution('auto', host);
    expect(calls).toEqual([['webgpu', 'cpu']]);
    expect(choice.executionProviders).toEqual(['webgpu', 'cpu']);
    expect(choice.device).toEqual({
      provider: 'webgpu',
      reason: 'WebGPU started (CUDA did not).',
      adapter: 'AMD GPU (amdgpu driver)',
      skipped: [{ provider: 'cuda', reason: "onnxruntime's CUDA provider is not installed (`npm run gpu:install` adds it; it needs CUDA 12 and cuDNN 9)." }],
    });
    expect(deviceWords(choice.device)).toBe('GPU · WebGPU (AMD GPU (amdgpu driver))');
    expect(skippedWords(choice.device)).toEqual(["CUDA: onnxruntime's CUDA provider is not installed (`npm run gpu:install` adds it; it needs CUDA 12 and cuDNN 9)."]);
  });

  it('auto on Linux: CUDA loads → CUDA first, CPU for the ops CUDA lacks; WebGPU never tried', async () => {
    const { host, calls } = fakeHost('linux', {}, { adapter: 'NVIDIA GeForce RTX 4070' });
    const choice = await chooseExecution('auto', host);
    expect(calls).toEqual([['cuda', 'cpu']]);
    expect(choice.device).toEqual({ provider: 'cuda', reason: 'CUDA started.', adapter: 'NVIDIA GeForce RTX 4070' });
    expect(choice.executionProviders).toEqual(['cuda', 'cpu']);
    expect(deviceWords(choice.device)).toBe('GPU · CUDA (NVIDIA GeForce RTX 4070)');
  });

  it('auto on macOS: WebGPU first; WebGPU failing → Core ML as an ML Program', async () => {
    const first = fakeHost('darwin', {}, { adapter: 'Apple M2' });
    const metal = await chooseExecution('auto', first.host);
    expect(first.calls).toEqual([['webgpu', 'cpu']]);
    expect(deviceWords(metal.device)).toBe('GPU · WebGPU (Apple M2)');

    const { host, calls } = fakeHost('darwin', { webgpu: 'Failed to get a WebGPU adapter: No supported adapters' }, { adapter: 'Apple M2' });
    const choice = await chooseExecution('auto', host);
    expect(calls).toEqual([['webgpu', 'cpu'], ['coreml', 'cpu']]);
    expect(choice.executionProviders).toEqual([{ name: 'coreml', coreMlFlags: 0x010 }, 'cpu']);
    expect(choice.device.provider).toBe('coreml');
    expect(choice.device.skipped?.map((s) => s.provider)).toEqual(['webgpu']);
    expect(deviceWords(choice.device)).toBe('GPU · Core ML (Apple M2)');
  });

  it('auto on Windows: CUDA, then DirectML (sequential, no memory patterns), then WebGPU, then CPU', async () => {
    const { host, calls } = fakeHost('win32', { cuda: 'LoadLibrary failed with error 126 when trying to load C:\\p2pz\\onnxruntime_providers_cuda.dll' }, { adapter: 'Intel(R) Arc(TM) Graphics' });
    const choice = await chooseExecution('auto', host);
    expect(calls).toEqual([['cuda', 'cpu'], ['dml', 'cpu']]);
    expect(choice.device.provider).toBe('dml');
    expect(choice.sessionOptions).toEqual({ enableMemPattern: false, executionMode: 'sequential' });
    expect(choice.device.skipped).toEqual([{ provider: 'cuda', reason: 'LoadLibrary failed with error 126 when trying to load <path>' }]);

    const all = fakeHost('win32', { cuda: 'no cuda', dml: 'DXGI_ERROR_UNSUPPORTED', webgpu: 'No supported adapters' });
    const cpu = await chooseExecution('auto', all.host);
    expect(all.calls).toEqual([['cuda', 'cpu'], ['dml', 'cpu'], ['webgpu', 'cpu'], ['cpu']]);
    expect(cpu.device.skipped?.map((s) => s.provider)).toEqual(['cuda', 'dml', 'webgpu']);
  });

  it('a provider this platform’s build lacks is passed over with that reason, and refused when asked for', async () => {
    const { host, calls } = fakeHost('linux', {});
    await expect(chooseExecution('coreml', host)).rejects.toMatchObject({
      code: 'E_DEVICE_UNAVAILABLE',
      message: expect.stringContaining('Core ML could not be started: not part of onnxruntime-node for linux/x64.'),
    });
    await expect(chooseExecution('dml', host)).rejects.toMatchObject({ code: 'E_DEVICE_UNAVAILABLE' });
    expect(calls).toEqual([]);
  });

  it('a reason never carries absolute paths or source locations', async () => {
    const { host } = fakeHost('linux', { cuda: ORT_CUDA_BRIDGE, webgpu: 'ok' });
    const choice = await chooseExecution('auto', host);
    expect(choice.device.skipped?.[0]?.reason).toBe(
      'onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : ' +
        'Failed to load library <path> with error: libcublasLt.so.12: cannot open shared object file: No such file or directory' +
        ' (Install CUDA 12 and cuDNN 9 for the GPU.)',
    );
  });

  it('cpu: never tries a GPU provider', async () => {
    const { host, calls } = fakeHost('linux', { cuda: 'must not be called', webgpu: 'must not be called' });
    expect((await chooseExecution('cpu', host)).device).toEqual({ provider: 'cpu', reason: 'CPU requested.' });
    expect(calls).toEqual([]);
  });

  it('cuda / webgpu asked for: no fallback; E_DEVICE_UNAVAILABLE with the reason and what to do', async () => {
    const { host, calls } = fakeHost('linux', { cuda: ORT_CUDA_REJECTION, webgpu: ORT_WEBGPU_NO_ADAPTER });
    const err = await chooseExecution('cuda', host).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_DEVICE_UNAVAILABLE');
    expect((err as P2pzError).message).toContain(`CUDA could not be started: ${ORT_CUDA_REJECTION}`);
    expect((err as P2pzError).hint).toBe("Run `npm run gpu:install` to add onnxruntime's CUDA provider. Or start p2pz with --device auto to use the best device that works.");
    const webgpu = await chooseExecution('webgpu', host).catch((e: unknown) => e);
    expect((webgpu as P2pzError).message).toMatch(/WebGPU could not be started: .*No supported adapters$/);
    expect(calls).toEqual([['cuda', 'cpu'], ['webgpu', 'cpu']]);
  });

  it('a provider that starts but fails its probe run is skipped too', async () => {
    const { host: base } = fakeHost('linux', { cuda: 'ok' });
    const host: Partial<ProviderHost> = { ...base };
    const create: ProbeSessionFactory = async (_m, options) => {
      const first = options.executionProviders?.[0];
      return {
        run: async () => {
          if (first === 'cuda') throw new Error('CUDA failure 100: no CUDA-capable device is detected');
          return {};
        },
        release: async () => {},
      };
    };
    const choice = await chooseExecution('auto', { ...host, create });
    expect(choice.device.provider).toBe('webgpu');
    expect(choice.device.skipped).toEqual([{ provider: 'cuda', reason: 'CUDA failure 100: no CUDA-capable device is detected' }]);
  });

  it('auto: CPU failing too is E_DEVICE_UNAVAILABLE', async () => {
    const { host } = fakeHost('linux', { cuda: 'no cuda', webgpu: 'no webgpu', cpu: 'no cpu' });
    const err = await chooseExecution('auto', host).catch((e: unknown) => e);
    expect((err as P2pzError).code).toBe('E_DEVICE_UNAVAILABLE');
  });

  it('the CPU choice runs the probe model on the real onnxruntime', async () => {
    const choice = await chooseExecution('cpu');
    const session = await InferenceSession.create(probeModel(), { executionProviders: [...choice.executionProviders] });
    const out = await session.run({ x: new Tensor('float32', new Float32Array([2.5]), [1]) });
    expect(Array.from((out['y'] as Tensor).data as Float32Array)).toEqual([2.5]);
    await session.release();
  });
});

describe('devicePreference', () => {
  it('takes the flag, else P2PZ_DEVICE, else auto', () => {
    expect(devicePreference('cuda', { P2PZ_DEVICE: 'cpu' })).toBe('cuda');
    expect(devicePreference(undefined, { P2PZ_DEVICE: ' CPU ' })).toBe('cpu');
    expect(devicePreference(undefined, {})).toBe('auto');
    expect(devicePreference(undefined, { P2PZ_DEVICE: '' })).toBe('auto');
  });

  it('rejects anything else with E_BAD_REQUEST', () => {
    expect(() => devicePreference('gpu', {})).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    expect(() => devicePreference(undefined, { P2PZ_DEVICE: 'rocm' })).toThrow('P2PZ_DEVICE must be one of auto, cpu, cuda, webgpu, coreml, dml, not “rocm”.');
    expect(() => devicePreference('metal', {})).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST', message: expect.stringContaining('--device must be one of'), hint: expect.stringContaining('webgpu') }));
  });

  it('accepts every provider name', () => {
    for (const d of ['auto', 'cpu', 'cuda', 'webgpu', 'coreml', 'dml']) expect(devicePreference(d, {})).toBe(d);
  });
});

describe('shortenLoaderMessage', () => {
  it('keeps the first non-empty line, cut to 300 characters', () => {
    expect(shortenLoaderMessage('\n  first  line \nsecond')).toBe('first line');
    const long = shortenLoaderMessage('x'.repeat(1000));
    expect(long).toHaveLength(300);
    expect(long.endsWith('…')).toBe(true);
  });

  it('replaces Windows paths too', () => {
    expect(shortenLoaderMessage('LoadLibrary failed with error 126 when trying to load C:\\Users\\ada\\p2pz\\onnxruntime_providers_cuda.dll')).toBe(
      'LoadLibrary failed with error 126 when trying to load <path>',
    );
  });
});
