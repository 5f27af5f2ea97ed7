// What `p2pz serve` (and so `npm start`) says about models before the daemon starts: with no real
// Stable Diffusion model installed, the one command that installs the default, and how to try the
// plugin meanwhile (with `--demo`, the demo pack is generated first); with an NVIDIA GPU but no CUDA
// provider, the command that installs it. The demo pack is opt-in: its random weights produce noise,
// and a designer must not take that for what p2pz does.
import type { DeviceChoice } from '../config.js';
import { cudaAdvice, cudaProviderInstalled, cudaProviderSupported, nvidiaGpuName } from './cuda-provider.js';
import { DEMO_PACK, hasRealDiffusionModel, writeDemoPack } from './demo-pack.js';
import { MODELS_DEFAULTS } from './defaults.js';

export interface ModelsAtStartup {
  /** Text for the terminal (empty when a real model is installed and no demo was asked for). */
  readonly notice: string;
  /** Demo models written now. */
  readonly written: readonly string[];
}

export async function modelsAtStartup(modelsDir: string, demo: boolean): Promise<ModelsAtStartup> {
  const written = demo ? await writeDemoPack(modelsDir) : [];
  const lines: string[] = [];
  if (!(await hasRealDiffusionModel(modelsDir))) {
    lines.push(
      'No Stable Diffusion model is installed. Install the default one (SD v1.4 in ONNX, about 4.3 GB) with:',
      `  ${MODELS_DEFAULTS.installCommand}`,
    );
    if (!demo) lines.push('Meanwhile, try the plugin with a generated demo pack (random weights, labelled demo): npm start -- --demo');
  }
  if (demo) {
    lines.push(
      `Serving the demo pack (${DEMO_PACK.diffusion}, ${DEMO_PACK.gan}: random weights, marked demo in health): its images are noise, not edits.`,
    );
  }
  return { notice: lines.length ? `${lines.join('\n')}\n` : '', written };
}

/** What `p2pz serve` says about the GPU before the worker starts (see cuda-provider.ts). */
export function deviceAtStartup(device: DeviceChoice): Promise<string> {
  return cudaAdvice({ device, supported: cudaProviderSupported(), installed: cudaProviderInstalled(), gpuName: nvidiaGpuName });
}
