// The device the worker's onnxruntime sessions run on, as health, job outcomes and the plugin footer
// show it: the execution provider, the adapter in words, why this provider, and why each provider
// tried before it was skipped.
import { z } from 'zod';
import { P2pzError } from './errors.js';

/** onnxruntime execution providers p2pz can run on. `dml` is DirectML (Windows), `coreml` Core ML (macOS). */
export const Provider = z.enum(['cpu', 'cuda', 'webgpu', 'coreml', 'dml']);
export type Provider = z.infer<typeof Provider>;

export const SkippedProvider = z.object({
  provider: Provider,
  /** The loader's or adapter request's message (one line, no paths), or why it was not tried. */
  reason: z.string().max(500),
});
export type SkippedProvider = z.infer<typeof SkippedProvider>;

export const Device = z.object({
  /** The execution provider the worker's sessions use. */
  provider: Provider,
  /** Why this provider: e.g. the CUDA loader's message when it fell back to CPU. */
  reason: z.string().max(500),
  /** The adapter in words ("NVIDIA GeForce RTX 4070", "Apple M2", "SwiftShader, software Vulkan"),
   *  when the system names it. onnxruntime-node does not report the adapter a provider picked, so
   *  this is the system's own name for its GPU (see daemon/worker/adapter-name.ts). */
  adapter: z.string().max(200).optional(),
  /** How jobs are planned against the device's memory (docs/SECURITY.md §R17), or that its free memory cannot be read. */
  memory: z.string().max(300).optional(),
  /** Providers tried (or passed over) before this one, in order, each with its reason. */
  skipped: z.array(SkippedProvider).max(8).optional(),
});
export type Device = z.infer<typeof Device>;

export const PROVIDER_NAMES: Readonly<Record<Provider, string>> = Object.freeze({
  cpu: 'CPU',
  cuda: 'CUDA',
  webgpu: 'WebGPU',
  coreml: 'Core ML',
  dml: 'DirectML',
});

/** The device in words: "GPU · WebGPU (Apple M2)", "GPU · CUDA (RTX 4070)", "CPU". */
export function deviceWords(device: Pick<Device, 'provider' | 'adapter'>): string {
  if (device.provider === 'cpu') return 'CPU';
  const name = PROVIDER_NAMES[device.provider];
  return `GPU · ${name}${device.adapter ? ` (${device.adapter})` : ''}`;
}

/** Why the providers before the chosen one were skipped, one line each ("WebGPU: no adapter …"). */
export function skippedWords(device: Pick<Device, 'skipped'>): string[] {
  return (device.skipped ?? []).map((s) => `${PROVIDER_NAMES[s.provider]}: ${s.reason}`);
}

/** `--device` / `P2PZ_DEVICE`. `auto`: the first provider of the platform's order that starts, else
 *  the CPU (daemon/worker/providers.ts). Any other value: that provider or nothing. */
export const DevicePreference = z.enum(['auto', 'cpu', 'cuda', 'webgpu', 'coreml', 'dml']);
export type DevicePreference = z.infer<typeof DevicePreference>;

export const DEVICE_PREFERENCE_DEFAULTS = Object.freeze({
  /** Environment variable that forces the device when no `--device` flag is given. */
  envVar: 'P2PZ_DEVICE',
  preference: 'auto' as DevicePreference,
});

const DEVICE_HINT = 'Pass --device auto (the best device that starts), cpu, cuda, webgpu, coreml (macOS) or dml (Windows).';

/** The preference: the `--device` flag, else `P2PZ_DEVICE`, else `auto`. An unknown value is
 *  `E_BAD_REQUEST` naming the values allowed. */
export function devicePreference(flag: string | undefined, env: Readonly<Record<string, string | undefined>> = {}): DevicePreference {
  const raw = flag ?? env[DEVICE_PREFERENCE_DEFAULTS.envVar];
  if (raw === undefined || raw.trim() === '') return DEVICE_PREFERENCE_DEFAULTS.preference;
  const parsed = DevicePreference.safeParse(raw.trim().toLowerCase());
  if (!parsed.success) {
    const source = flag === undefined ? DEVICE_PREFERENCE_DEFAULTS.envVar : '--device';
    throw new P2pzError('E_BAD_REQUEST', `${source} must be one of ${DevicePreference.options.join(', ')}, not “${raw.slice(0, 20)}”.`, DEVICE_HINT);
  }
  return parsed.data;
}
