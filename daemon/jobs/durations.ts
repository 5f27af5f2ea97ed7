// What the last full renders cost on each device, for the panel's duration estimate
// (shared/protocol/durations.ts). A finished render (engine `diffusion`) adds one sample: seconds per
// UNet evaluation (its inversion and edit stages over the evaluations of its step count) and the rest
// as overhead, under the device's key (provider and adapter: a CPU sample must not estimate a GPU).
// The newest `keep` samples per device are kept in a JSON file in the cache folder, schema-checked
// on read (a damaged file is ignored and rewritten), so the estimate survives a restart.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { DurationSample, unetEvaluations } from '../../shared/protocol/index.js';
import type { Device, EditParams, JobOutcome } from '../../shared/protocol/index.js';

export const DURATION_DEFAULTS = Object.freeze({
  /** Samples kept per device (the protocol sends at most 20). */
  keep: 12,
  fileName: 'durations.json',
});

const DurationFile = z.object({ v: z.literal(1), devices: z.record(z.string().max(300), z.array(DurationSample).max(100)) });

export function deviceKey(device: Pick<Device, 'provider' | 'adapter'>): string {
  return `${device.provider}:${device.adapter ?? ''}`;
}

/** One render's sample, or undefined when its timings do not say (no inversion or edit stage). */
export function renderSample(edit: Pick<EditParams, 'size' | 'steps'>, outcome: Pick<JobOutcome, 'engine' | 'timings'>): DurationSample | undefined {
  if (outcome.engine !== 'diffusion') return undefined;
  const t = outcome.timings;
  const diffusionMs = (t['inversion'] ?? 0) + (t['edit'] ?? 0);
  const totalMs = (t['total'] ?? 0) - (t['queued'] ?? 0);
  if (diffusionMs <= 0 || totalMs < diffusionMs) return undefined;
  const sample = { size: edit.size, steps: edit.steps, secondsPerEvaluation: diffusionMs / 1000 / unetEvaluations(edit.steps), overheadSeconds: (totalMs - diffusionMs) / 1000 };
  const parsed = DurationSample.safeParse(sample);
  return parsed.success ? parsed.data : undefined;
}

export class DurationLog {
  #devices: Record<string, DurationSample[]> = {};
  #writing: Promise<void> = Promise.resolve();

  private constructor(private readonly file: string | undefined) {}

  /** Reads the file when there is one (absent or damaged: start empty). */
  static async open(file?: string): Promise<DurationLog> {
    const log = new DurationLog(file);
    if (file !== undefined) {
      try {
        const parsed = DurationFile.safeParse(JSON.parse(await readFile(file, 'utf8')));
        if (parsed.success) log.#devices = parsed.data.devices;
      } catch {
        // No file yet, or not JSON: the next render writes a fresh one.
      }
    }
    return log;
  }

  samples(device: Pick<Device, 'provider' | 'adapter'> | null): DurationSample[] {
    return device === null ? [] : [...(this.#devices[deviceKey(device)] ?? [])];
  }

  /** Adds a finished render's sample; resolves once it is on disk. */
  record(device: Pick<Device, 'provider' | 'adapter'> | null, edit: Pick<EditParams, 'size' | 'steps'>, outcome: Pick<JobOutcome, 'engine' | 'timings'>): Promise<void> {
    const sample = renderSample(edit, outcome);
    if (device === null || sample === undefined) return this.#writing;
    const key = deviceKey(device);
    this.#devices[key] = [...(this.#devices[key] ?? []), sample].slice(-DURATION_DEFAULTS.keep);
    const file = this.file;
    if (file === undefined) return this.#writing;
    const body = JSON.stringify({ v: 1, devices: this.#devices });
    this.#writing = this.#writing.then(async () => {
      await mkdir(dirname(file), { recursive: true });
      const temp = `${file}.${process.pid}.tmp`;
      await writeFile(temp, body);
      await rename(temp, file);
    }).catch(() => undefined);
    return this.#writing;
  }
}
