// Free memory of the device a job runs on. Where it is read depends on the provider (memorySource):
// the system's free RAM (`os.freemem()`) for the CPU, for a software Vulkan device (it allocates from
// RAM), and for WebGPU and Core ML on macOS (Apple GPUs share the system's unified memory); the first
// NVIDIA GPU's free memory as `nvidia-smi` reports it for CUDA, and for WebGPU and DirectML elsewhere
// (right on an NVIDIA card; on other GPUs nvidia-smi is absent and the memory unknown). When it is
// unknown the answer is undefined and no job is refused for memory unless P2PZ_FREE_MEMORY_MIB gives
// a budget: onnxruntime's own allocation failure (mapped to E_DEVICE_OOM) is then the only guard.
import { execFile } from 'node:child_process';
import { freemem } from 'node:os';
import type { Provider } from '../../shared/protocol/index.js';

export const DEVICE_MEMORY_DEFAULTS = Object.freeze({
  /** `nvidia-smi` may take a second to wake the driver; never longer than this. */
  nvidiaSmiTimeoutMs: 5_000,
});

export type MemorySource = 'ram' | 'nvidia-smi';

export interface MemoryHost {
  readonly platform: NodeJS.Platform;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Where the provider's free memory is read (see the file header). */
export function memorySource(provider: Provider, host: MemoryHost = { platform: process.platform, env: process.env }): MemorySource {
  if (provider === 'cpu') return 'ram';
  if (provider === 'cuda') return 'nvidia-smi';
  if (host.platform === 'darwin') return 'ram';
  const icd = host.env['VK_ICD_FILENAMES'] ?? host.env['VK_DRIVER_FILES'] ?? '';
  if (provider === 'webgpu' && /swiftshader|lvp|lavapipe/i.test(icd)) return 'ram';
  return 'nvidia-smi';
}

/** How jobs are planned against the device's memory, in words for health. */
export function memoryPlanWords(source: MemorySource, known: boolean, configuredMib: number | undefined): string {
  if (configuredMib !== undefined) return `Planned against P2PZ_FREE_MEMORY_MIB = ${configuredMib} MiB.`;
  if (source === 'ram') return 'Planned against the free system memory.';
  if (known) return 'Planned against the GPU memory nvidia-smi reports free.';
  return 'The GPU\'s free memory cannot be read here: no job is refused up front; set P2PZ_FREE_MEMORY_MIB to plan against a budget.';
}

export interface DeviceMemoryProbe {
  readonly freemem?: () => number;
  /** Runs `nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits`; resolves its stdout. */
  readonly nvidiaSmi?: () => Promise<string>;
}

const runNvidiaSmi = (): Promise<string> =>
  new Promise((resolve, reject) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=memory.free', '--format=csv,noheader,nounits'],
      { timeout: DEVICE_MEMORY_DEFAULTS.nvidiaSmiTimeoutMs, windowsHide: true },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });

/** nvidia-smi's `memory.free` lines (MiB, one per GPU) → bytes free on the first GPU. */
export function parseNvidiaSmiFree(stdout: string): number | undefined {
  const first = stdout.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '');
  if (!first || !/^\d+$/.test(first)) return undefined;
  return Number(first) * 1024 * 1024;
}

export async function freeDeviceMemory(provider: Provider, probe: DeviceMemoryProbe = {}, host?: MemoryHost): Promise<number | undefined> {
  if (memorySource(provider, host) === 'ram') return (probe.freemem ?? freemem)();
  try {
    return parseNvidiaSmiFree(await (probe.nvidiaSmi ?? runNvidiaSmi)());
  } catch {
    return undefined;
  }
}
