// The up-front memory check of a job (docs/SECURITY.md §R17), for the worker to call before it loads anything for a
// job: the model's footprint (memory-estimate.ts) against the free memory of the device the job runs
// on (device-memory.ts). Memory the worker already holds for this model (cached sessions) is counted
// as available, since running the job reuses it rather than allocating it again.
import type { Provider } from '../../shared/protocol/index.js';
import type { DeviceMemoryProbe } from './device-memory.js';
import { freeDeviceMemory } from './device-memory.js';
import { checkJobFits, modelFootprint, type JobShape, type MemoryEstimate } from './memory-estimate.js';

export interface JobMemoryOptions {
  readonly modelsDir: string;
  /** The diffusion model's folder name. */
  readonly model: string;
  readonly job: JobShape;
  readonly provider: Provider;
  /** Bytes the caller already holds for this model (its open sessions); default 0. */
  readonly heldBytes?: number;
  /** Injectable probes (tests give a fake small budget). */
  readonly probe?: DeviceMemoryProbe;
}

/** Resolves with the estimate when the job fits (or the free memory is unknown); rejects with
 *  `E_JOB_TOO_LARGE` and a hint otherwise. */
export async function assertJobFits(options: JobMemoryOptions): Promise<MemoryEstimate> {
  const footprint = await modelFootprint(options.modelsDir, options.model);
  const free = await freeDeviceMemory(options.provider, options.probe);
  return checkJobFits(footprint, options.job, free === undefined ? undefined : free + (options.heldBytes ?? 0));
}
