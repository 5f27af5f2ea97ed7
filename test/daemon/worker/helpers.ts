// Shared helpers for the worker tests: engine jobs, polling for a state, checking a process is gone.
import { readFileSync } from 'node:fs';
import { EditParams } from '../../../shared/protocol/index.js';
import { encodePng } from '../../../daemon/image/encode.js';
import type { EngineJob } from '../../../daemon/jobs/engine.js';
import type { Logger } from '../../../daemon/log.js';

let counter = 0;

export function engineJob(source: string, overrides: Partial<EngineJob> = {}): EngineJob & { readonly edit: EditParams } {
  counter++;
  return {
    jobId: `job_${String(counter).padStart(6, '0')}`,
    kind: 'preview',
    image: new Uint8Array([1, 2, 3]),
    model: undefined,
    stepPreviews: false,
    ...overrides,
    edit: overrides.edit ?? EditParams.parse({ source, target: 'dog' }),
  };
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs` with `what`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True while `pid` is a live process. A zombie (exited, not yet reaped by whoever adopted it, as a
 *  container's init may be slow to do) counts as gone. */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ..." where S is the state letter.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

/** A logger that keeps its lines (events and fields joined) for assertions. */
export function memoryLogger(): Logger & { readonly lines: string[] } {
  const lines: string[] = [];
  const write = (level: string) => (event: string, fields?: Readonly<Record<string, unknown>>) => {
    lines.push(`${level} ${event} ${JSON.stringify(fields ?? {})}`);
  };
  return { lines, debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** A W×H RGBA test image: colour gradients, alpha ramping left to right after a transparent band. */
export async function rgbaTestImage(width: number, height: number): Promise<{ png: Uint8Array; alpha: Uint8Array }> {
  const rgb = new Uint8Array(width * height * 3);
  const alpha = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      rgb[p * 3] = (x * 255) / (width - 1);
      rgb[p * 3 + 1] = (y * 255) / (height - 1);
      rgb[p * 3 + 2] = ((x + y) * 7) % 256;
      alpha[p] = x < 10 ? 0 : Math.min(255, x * 3);
    }
  }
  return { png: await encodePng({ width, height, rgb, alpha }), alpha };
}
