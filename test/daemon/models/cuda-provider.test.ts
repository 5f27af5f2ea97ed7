// The CUDA provider advice at `p2pz serve`: only when a GPU is present, the provider is missing, the
// platform has a CUDA build and the CPU was not asked for; and the library check itself.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cudaAdvice, cudaProviderInstalled, cudaProviderSupported, ortBinaryFolder } from '../../../daemon/models/cuda-provider.js';

describe('CUDA provider', () => {
  it('advises npm run gpu:install only when it would help', async () => {
    const gpu = async () => 'NVIDIA GeForce RTX 4090';
    const none = async () => undefined;
    const base = { device: 'auto', supported: true, installed: false, gpuName: gpu } as const;
    expect(await cudaAdvice(base)).toBe(
      "Found NVIDIA GeForce RTX 4090, but onnxruntime's CUDA provider is not installed, so p2pz cannot use CUDA (it tries WebGPU through Vulkan, then the CPU). For CUDA, install it (CUDA 12 and cuDNN 9 needed) with:\n  npm run gpu:install\n",
    );
    expect(await cudaAdvice({ ...base, device: 'cuda' })).toContain('npm run gpu:install');
    expect(await cudaAdvice({ ...base, device: 'cpu' })).toBe('');
    expect(await cudaAdvice({ ...base, device: 'webgpu' })).toBe('');
    expect(await cudaAdvice({ ...base, installed: true })).toBe('');
    expect(await cudaAdvice({ ...base, supported: false })).toBe('');
    expect(await cudaAdvice({ ...base, gpuName: none })).toBe('');
  });

  it('finds the binding folder and checks for the provider library there', async () => {
    expect(ortBinaryFolder('linux', 'x64')).toMatch(/onnxruntime-node[\\/]bin[\\/]napi-v6[\\/]linux[\\/]x64$/);
    expect(cudaProviderSupported('linux', 'x64')).toBe(true);
    expect(cudaProviderSupported('win32', 'x64')).toBe(false);
    expect(cudaProviderSupported('darwin', 'arm64')).toBe(false);
    const dir = await mkdtemp(join(tmpdir(), 'p2pz-ort-bin-'));
    try {
      expect(cudaProviderInstalled(dir)).toBe(false);
      await writeFile(join(dir, 'libonnxruntime_providers_cuda.so'), '');
      expect(cudaProviderInstalled(dir)).toBe(true);
      expect(cudaProviderInstalled(undefined)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
