// Whether onnxruntime-node's CUDA execution provider is installed. The npm package ships the CPU
// runtime only; on Linux x64 its install script fetches the CUDA 12 provider libraries (from NuGet)
// next to the binding when asked to (`npm run gpu:install`), and no other platform has a CUDA build.
// Checked with one file-existence test, so `p2pz serve` can say what to run when a machine has an
// NVIDIA GPU that p2pz cannot use yet.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { DeviceChoice } from '../config.js';

export const CUDA_PROVIDER = Object.freeze({
  /** The project's command that installs the provider (package.json `gpu:install`). */
  installCommand: 'npm run gpu:install',
  /** Platforms onnxruntime-node 1.30 offers a CUDA provider download for. */
  platforms: ['linux/x64'] as readonly string[],
  library: 'libonnxruntime_providers_cuda.so',
  nvidiaSmiTimeoutMs: 5_000,
});

/** The folder holding onnxruntime-node's native binding for this platform, if the package resolves. */
export function ortBinaryFolder(platform: string = process.platform, arch: string = process.arch): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
    return join(dirname(pkg), 'bin', 'napi-v6', platform, arch);
  } catch {
    return undefined;
  }
}

export function cudaProviderSupported(platform: string = process.platform, arch: string = process.arch): boolean {
  return CUDA_PROVIDER.platforms.includes(`${platform}/${arch}`);
}

export function cudaProviderInstalled(folder: string | undefined = ortBinaryFolder()): boolean {
  return folder !== undefined && existsSync(join(folder, CUDA_PROVIDER.library));
}

/** The first NVIDIA GPU's name from nvidia-smi, or undefined (no driver, no GPU). */
export function nvidiaGpuName(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { timeout: CUDA_PROVIDER.nvidiaSmiTimeoutMs, windowsHide: true }, (err, stdout) => {
      const name = err ? undefined : stdout.split(/\r?\n/)[0]?.trim();
      resolve(name ? name.slice(0, 100) : undefined);
    });
  });
}

export interface CudaAdviceInputs {
  readonly device: DeviceChoice;
  readonly supported: boolean;
  readonly installed: boolean;
  /** Resolves the GPU's name (asked only when the provider is missing). */
  readonly gpuName: () => Promise<string | undefined>;
}

/** A line for the terminal when an NVIDIA GPU is present but the CUDA provider is not installed. */
export async function cudaAdvice(inputs: CudaAdviceInputs): Promise<string> {
  if ((inputs.device !== 'auto' && inputs.device !== 'cuda') || !inputs.supported || inputs.installed) return '';
  const gpu = await inputs.gpuName();
  if (gpu === undefined) return '';
  return `Found ${gpu}, but onnxruntime's CUDA provider is not installed, so p2pz cannot use CUDA (it tries WebGPU through Vulkan, then the CPU). For CUDA, install it (CUDA 12 and cuDNN 9 needed) with:\n  ${CUDA_PROVIDER.installCommand}\n`;
}
