// Free memory of the device a job runs on: the CPU's free RAM (`os.freemem()`), or the first CUDA
// device's free memory as `nvidia-smi` reports it. When that is unknown (no nvidia-smi, or it fails)
// the answer is undefined and no job is refused for memory: onnxruntime's own allocation failure
// (mapped to E_DEVICE_OOM) is then the only guard.
import { execFile } from 'node:child_process';
import { freemem } from 'node:os';

export const DEVICE_MEMORY_DEFAULTS = Object.freeze({
  /** `nvidia-smi` may take a second to wake the driver; never longer than this. */
  nvidiaSmiTimeoutMs: 5_000,
});

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

export async function freeDeviceMemory(provider: 'cpu' | 'cuda', probe: DeviceMemoryProbe = {}): Promise<number | undefined> {
  if (provider === 'cpu') return (probe.freemem ?? freemem)();
  try {
    return parseNvidiaSmiFree(await (probe.nvidiaSmi ?? runNvidiaSmi)());
  } catch {
    return undefined;
  }
}
