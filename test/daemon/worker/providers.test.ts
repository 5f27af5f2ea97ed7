// Execution provider choice: CUDA is tried first and onnxruntime's rejection (it does not fall back by
// itself) sends the worker to the CPU with the loader's message, path-free, as the reason.
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { P2pzError } from '../../../shared/protocol/index.js';
import { chooseExecution, devicePreference, probeModel, shortenLoaderMessage } from '../../../daemon/worker/providers.js';
import type { ProbeSessionFactory } from '../../../daemon/worker/providers.js';

/** onnxruntime-node 1.30's rejection on a machine without the CUDA provider library, and the longer
 *  form its provider bridge logs (with absolute paths). */
const ORT_CUDA_REJECTION = 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library';
const ORT_CUDA_BRIDGE =
  '/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1988 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() ' +
  '[ONNXRuntimeError] : 1 : FAIL : Failed to load library /home/ada/p2pz/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so ' +
  'with error: libcublasLt.so.12: cannot open shared object file: No such file or directory\nsecond line';

/** A probe factory that fails CUDA with `message` and records every provider list it was asked for. */
function fakeProbe(cuda: 'ok' | string, cpu: 'ok' | string = 'ok'): ProbeSessionFactory & { calls: string[][] } {
  const calls: string[][] = [];
  const factory = async (_model: Uint8Array, options: InferenceSession.SessionOptions) => {
    const providers = (options.executionProviders ?? []).map(String);
    calls.push(providers);
    const outcome = providers.includes('cuda') ? cuda : cpu;
    if (outcome !== 'ok') throw new Error(outcome);
    return { release: async () => {} };
  };
  return Object.assign(factory, { calls });
}

describe('chooseExecution', () => {
  it('auto: CUDA fails → CPU, with the loader message as the reason', async () => {
    const probe = fakeProbe(ORT_CUDA_REJECTION);
    const choice = await chooseExecution('auto', probe);
    expect(choice).toEqual({
      device: { provider: 'cpu', reason: `CUDA unavailable: ${ORT_CUDA_REJECTION} (Run \`npm run gpu:install\` to add onnxruntime's CUDA provider.)` },
      executionProviders: ['cpu'],
    });
    expect(probe.calls).toEqual([['cuda', 'cpu'], ['cpu']]);
  });

  it('auto: a reason never carries absolute paths or source locations', async () => {
    const choice = await chooseExecution('auto', fakeProbe(ORT_CUDA_BRIDGE));
    expect(choice.device.reason).toBe(
      'CUDA unavailable: onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : ' +
        'Failed to load library <path> with error: libcublasLt.so.12: cannot open shared object file: No such file or directory' +
        ' (Install CUDA 12 and cuDNN 9 for the GPU.)',
    );
  });

  it('auto: CUDA loads → CUDA first, CPU for the ops CUDA lacks', async () => {
    const probe = fakeProbe('ok');
    expect(await chooseExecution('auto', probe)).toEqual({
      device: { provider: 'cuda', reason: 'CUDA provider loaded.' },
      executionProviders: ['cuda', 'cpu'],
    });
    expect(probe.calls).toEqual([['cuda', 'cpu']]);
  });

  it('cpu: never tries CUDA', async () => {
    const probe = fakeProbe('must not be called');
    expect((await chooseExecution('cpu', probe)).device.provider).toBe('cpu');
    expect(probe.calls).toEqual([]);
  });

  it('cuda: no fallback; E_DEVICE_UNAVAILABLE with the reason', async () => {
    const probe = fakeProbe(ORT_CUDA_REJECTION);
    const err = await chooseExecution('cuda', probe).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(P2pzError);
    expect((err as P2pzError).code).toBe('E_DEVICE_UNAVAILABLE');
    expect((err as P2pzError).message).toContain(`CUDA could not be loaded: ${ORT_CUDA_REJECTION}`);
    expect(probe.calls).toEqual([['cuda', 'cpu']]);
  });

  it('auto: CPU failing too is E_DEVICE_UNAVAILABLE', async () => {
    const err = await chooseExecution('auto', fakeProbe('no cuda', 'no cpu')).catch((e: unknown) => e);
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
    expect(() => devicePreference(undefined, { P2PZ_DEVICE: 'rocm' })).toThrow(/auto, cpu or cuda/);
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
