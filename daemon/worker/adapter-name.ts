// The GPU's name in words, for health and the plugin footer. onnxruntime-node 1.30 does not say which
// adapter a provider picked: its binding exposes no adapter or device information (`env.webgpu.adapter`
// exists in onnxruntime-web only), its verbose log names only the Dawn instance and device pointers,
// and profiling names the provider of each node, not the adapter. So the name is the one the system
// gives its GPU: nvidia-smi for CUDA; on macOS the chip (`sysctl machdep.cpu.brand_string`, "Apple M2";
// `system_profiler` on Intel Macs); on Windows the first display adapter WMI lists; on Linux the
// Vulkan driver named by VK_ICD_FILENAMES when it is a software device, else the vendor and kernel
// driver of the first DRM card. With several GPUs this may name a different one than the provider
// uses; when nothing answers, the name is left out rather than guessed.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Provider } from '../../shared/protocol/index.js';

export const ADAPTER_NAME_DEFAULTS = Object.freeze({
  /** System tools (nvidia-smi, sysctl, system_profiler, PowerShell) never delay start-up longer. */
  commandTimeoutMs: 5_000,
  maxLength: 100,
  drmRoot: '/sys/class/drm',
});

/** PCI vendor ids of the GPU makers a DRM card may belong to. */
const PCI_VENDORS: Readonly<Record<string, string>> = Object.freeze({
  '0x10de': 'NVIDIA',
  '0x1002': 'AMD',
  '0x1022': 'AMD',
  '0x8086': 'Intel',
  '0x5143': 'Qualcomm',
  '0x13b5': 'Arm',
  '0x1af4': 'virtio',
  '0x15ad': 'VMware',
});

/** Software Vulkan drivers, by the file name of their ICD manifest. */
const SOFTWARE_VULKAN: ReadonlyArray<readonly [RegExp, string]> = [
  [/swiftshader/i, 'SwiftShader, software Vulkan on the CPU'],
  [/lvp|lavapipe/i, 'lavapipe, software Vulkan on the CPU'],
];

export interface AdapterHost {
  readonly platform: NodeJS.Platform;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Runs a command; resolves its stdout, rejects on failure or timeout. */
  readonly run: (command: string, args: readonly string[]) => Promise<string>;
  readonly readText: (path: string) => Promise<string>;
  readonly list: (dir: string) => Promise<string[]>;
}

export const systemHost: AdapterHost = {
  platform: process.platform,
  env: process.env,
  run: (command, args) =>
    new Promise((resolve, reject) => {
      execFile(command, [...args], { timeout: ADAPTER_NAME_DEFAULTS.commandTimeoutMs, windowsHide: true }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    }),
  readText: (path) => readFile(path, 'utf8'),
  list: (dir) => readdir(dir),
};

function clean(name: string | undefined): string | undefined {
  const text = name?.replace(/\s+/g, ' ').trim();
  if (!text) return undefined;
  return text.length > ADAPTER_NAME_DEFAULTS.maxLength ? `${text.slice(0, ADAPTER_NAME_DEFAULTS.maxLength - 1)}…` : text;
}

async function attempt(fn: () => Promise<string | undefined>): Promise<string | undefined> {
  try {
    return clean(await fn());
  } catch {
    return undefined;
  }
}

const firstLine = (text: string): string | undefined => text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '');

const nvidiaSmi = (host: AdapterHost) => attempt(async () => firstLine(await host.run('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'])));

async function macGpu(host: AdapterHost): Promise<string | undefined> {
  const chip = await attempt(async () => firstLine(await host.run('sysctl', ['-n', 'machdep.cpu.brand_string'])));
  if (chip?.startsWith('Apple')) return chip;
  return attempt(async () => /Chipset Model:\s*(.+)/.exec(await host.run('system_profiler', ['SPDisplaysDataType']))?.[1]);
}

async function windowsGpu(host: AdapterHost): Promise<string | undefined> {
  return attempt(async () => {
    const out = await host.run('powershell.exe', ['-NoProfile', '-NonInteractive', '-Command', '(Get-CimInstance Win32_VideoController).Name']);
    const names = out.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
    return names.find((n) => !/Microsoft Basic|Remote Display/i.test(n)) ?? names[0];
  });
}

async function linuxGpu(host: AdapterHost): Promise<string | undefined> {
  const icd = host.env['VK_ICD_FILENAMES'] ?? host.env['VK_DRIVER_FILES'];
  if (icd) {
    const files = icd.split(':').map((f) => basename(f));
    for (const [re, words] of SOFTWARE_VULKAN) if (files.some((f) => re.test(f))) return words;
  }
  const nvidia = await nvidiaSmi(host);
  if (nvidia) return nvidia;
  return attempt(async () => {
    const root = ADAPTER_NAME_DEFAULTS.drmRoot;
    const cards = (await host.list(root)).filter((c) => /^card\d+$/.test(c)).sort();
    for (const card of cards) {
      const vendorId = (await attempt(() => host.readText(join(root, card, 'device', 'vendor'))))?.toLowerCase();
      if (!vendorId) continue;
      const uevent = (await attempt(() => host.readText(join(root, card, 'device', 'uevent')))) ?? '';
      const driver = /DRIVER=(\S+)/.exec(uevent)?.[1];
      const vendor = PCI_VENDORS[vendorId] ?? `PCI vendor ${vendorId}`;
      return `${vendor} GPU${driver ? ` (${driver} driver)` : ''}`;
    }
    return undefined;
  });
}

/** The adapter's name for a GPU provider (see the file header), or undefined. */
export async function adapterName(provider: Provider, host: AdapterHost = systemHost): Promise<string | undefined> {
  if (provider === 'cpu') return undefined;
  if (provider === 'cuda') return nvidiaSmi(host);
  if (host.platform === 'darwin') return macGpu(host);
  if (host.platform === 'win32') return windowsGpu(host);
  return linuxGpu(host);
}
