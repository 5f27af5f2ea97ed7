// Shared by the preview benchmarks (daemon.ts, preview.ts): a photo-like test PNG, the generator's own
// onnxruntime run() time with the worker's session options, and the full service round trip of a
// preview job (upload, queue, worker IPC, decode, run, preview frame over the WebSocket; then encode,
// store, `finished` event, download)
// through a real daemon on 127.0.0.1 in a temporary home with one generator installed as cat → dog.
// The two are measured in alternation, so that a shared machine's changing load hits both alike.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import WebSocket from 'ws';
import { decodePreviewFrame, PROTOCOL_VERSION, ImageUploadResponse, JobResponse, ServerEvent, type JobOutcome } from '../../../shared/protocol/index.js';
import { startDaemon } from '../../../daemon/daemon.js';
import { SESSION_DEFAULTS } from '../../../daemon/worker/sessions.js';
import { median } from '../machine.js';

const CLIENT = 'bench_client_01';
/** Runs discarded before timing (session warm-up, allocator growth). */
export const WARMUP_RUNS = 2;

/** A size×size smooth gradient with noise: compresses like a photo, not like a flat colour. Each
 *  `variant` is another image of the same kind (another noise phase). */
export async function photoLikePng(size: number, variant = 0): Promise<Uint8Array> {
  const raw = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      raw[i] = (x / 2 + ((x * 7919 + y * 104729 + variant) % 23)) & 255;
      raw[i + 1] = (y / 2 + ((x * 31 + y * 17) % 19)) & 255;
      raw[i + 2] = ((x + y) / 4) & 255;
    }
  return new Uint8Array(await sharp(raw, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer());
}

/** The generator's own onnxruntime session (CPU provider, the worker's graph optimization level) on a
 *  [1,3,size,size] input: `runOnce()` times one run() in milliseconds. Its thread pool does not spin
 *  after run() returns: by default onnxruntime's threads spin a while for more work, which took a core
 *  from the service round trip that follows in this same process (measured: the same-upload-again
 *  overhead 30–46 ms with, 15–22 ms without, run() itself unchanged). */
export async function openDirect(modelPath: string, size: number): Promise<{ runOnce(): Promise<number>; close(): Promise<void> }> {
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: SESSION_DEFAULTS.graphOptimizationLevel,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const input = new ort.Tensor('float32', new Float32Array(3 * size * size).fill(0.1), [1, 3, size, size]);
  const name = session.inputNames[0] as string;
  return {
    async runOnce() {
      const t0 = performance.now();
      await session.run({ [name]: input });
      return performance.now() - t0;
    },
    close: () => session.release(),
  };
}

let jobCount = 0;

/** Client-side phases of one round trip, milliseconds: upload answered, job accepted, the quick
 *  preview's frame received and decoded (from the job's acceptance; 0 when it came first), `finished`
 *  received (after the frame), result PNG downloaded. */
export interface RoundTripPhases { readonly upload: number; readonly submit: number; readonly frame: number; readonly finished: number; readonly download: number }

export interface RoundTripOptions {
  /** Upload this image instead of the service's own. */
  readonly png?: Uint8Array;
  /** Preview an image uploaded before (as the panel does for a layer it has uploaded): no upload. */
  readonly imageId?: string;
}

export interface RoundTrip {
  /** The uploaded image's id. */
  readonly imageId: string;
  /** Milliseconds from the upload's start to the downloaded PNG result. */
  readonly ms: number;
  /** Milliseconds from the upload's start to the quick preview's frame, decoded; undefined when no
   *  frame came (a team endpoint: frames do not travel through Redis). */
  readonly frameMs: number | undefined;
  readonly outcome: JobOutcome;
  readonly phases: RoundTripPhases;
}

/** A client of the daemon's preview jobs: `roundTrip()` times one job from upload to the preview frame
 *  (decoded by the plugin's own decoder) and on to the downloaded result. */
export async function openService(url: string, token: string, png: Uint8Array): Promise<{ upload(png: Uint8Array): Promise<string>; roundTrip(options?: RoundTripOptions): Promise<RoundTrip>; close(): void }> {
  const auth = { authorization: `Bearer ${token}`, 'x-p2pz-client': CLIENT };
  const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/events`);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const waiting = new Map<string, { frame: (at: number) => void; resolve: (outcome: JobOutcome) => void; reject: (err: Error) => void }>();
  let welcomed: () => void = () => {};
  const welcome = new Promise<void>((resolve) => { welcomed = resolve; });
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      const frame = decodePreviewFrame(data instanceof Buffer ? data : Buffer.concat(data as Buffer[]));
      if (frame.header.role === 'result') waiting.get(frame.header.jobId)?.frame(performance.now());
      return;
    }
    const event = ServerEvent.parse(JSON.parse(String(data)));
    if (event.type === 'welcome') welcomed();
    if (event.type === 'finished') waiting.get(event.jobId)?.resolve(event.outcome);
    if (event.type === 'error') waiting.get(event.jobId)?.reject(new Error(`job failed: ${event.error.code}`));
  });
  ws.on('close', () => {
    for (const w of waiting.values()) w.reject(new Error('the event stream closed'));
  });
  ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: CLIENT }));
  await welcome;
  const upload = async (bytes: Uint8Array): Promise<string> => {
    const answer = await fetch(`${url}/v1/images`, { method: 'POST', headers: { ...auth, 'content-type': 'image/png' }, body: new Uint8Array(bytes) });
    return ImageUploadResponse.parse(await answer.json()).imageId;
  };
  return {
    upload,
    async roundTrip(options: RoundTripOptions = {}) {
      const t0 = performance.now();
      const imageId = options.imageId ?? (await upload(options.png ?? png));
      const t1 = performance.now();
      const jobId = `bench_job_${(jobCount++).toString().padStart(4, '0')}`;
      let frameAt: number | undefined;
      const done = new Promise<JobOutcome>((resolve, reject) => waiting.set(jobId, { frame: (at) => { frameAt = at; }, resolve, reject }));
      const submit = await fetch(`${url}/v1/jobs`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ v: PROTOCOL_VERSION, jobId, kind: 'preview', imageId, edit: { source: 'cat', target: 'dog' } }),
      });
      JobResponse.parse(await submit.json());
      const t2 = performance.now();
      const outcome = await done;
      const t3 = performance.now();
      waiting.delete(jobId);
      const result = outcome.results[0];
      if (!result) throw new Error('no result');
      const download = await fetch(`${url}/v1/results/${result.id}`, { headers: auth });
      const bytes = new Uint8Array(await download.arrayBuffer());
      if (bytes.length < 1000) throw new Error('result too small');
      const t4 = performance.now();
      const frameDone = frameAt ?? t3;
      return {
        imageId,
        ms: t4 - t0,
        frameMs: frameAt === undefined ? undefined : frameAt - t0,
        outcome,
        phases: { upload: t1 - t0, submit: t2 - t1, frame: Math.max(0, frameDone - t2), finished: t3 - Math.max(t2, frameDone), download: t4 - t3 },
      };
    },
    close: () => ws.close(),
  };
}

export interface PairedTimes {
  /** run() milliseconds. */
  readonly direct: number[];
  /** Milliseconds to the quick preview's frame (what the designer waits for). */
  readonly frame: number[];
  /** Milliseconds to the downloaded PNG result. */
  readonly service: number[];
  /** With `again`: run() milliseconds, and milliseconds to the frame of a second preview of the same
   *  upload (no upload; the worker has the image decoded), of each round. */
  readonly againDirect: number[];
  readonly againFrame: number[];
  /** With `chosenGapMs`: run() milliseconds, and milliseconds from the preview request to its frame,
   *  of another new image uploaded `chosenGapMs` before the request (the panel uploads a layer when it
   *  is chosen; the designer picks the edit after), of each round. */
  readonly chosenDirect: number[];
  readonly chosenFrame: number[];
  /** The last chosen-flow preview's outcome. */
  readonly chosenOutcome: JobOutcome | undefined;
  /** The last job's outcome. */
  readonly outcome: JobOutcome;
  /** Client-side phases of each timed round trip. */
  readonly phases: RoundTripPhases[];
}

/** `runs` rounds (after WARMUP_RUNS) of one direct run() then one service round trip, interleaved so
 *  that both see the same load on a shared machine. Each round previews another image of `size`
 *  (`png` is the first), so that no round finds the image decoded already; with `again`, each round
 *  then times a second direct run() and a second preview of the same upload; with `chosenGapMs`, a
 *  direct run(), then the upload of yet another image, `chosenGapMs` of idle time, and its preview,
 *  timed from the request. */
export async function pairedTimes(
  generatorPath: string,
  size: number,
  daemon: { url: string; token: string },
  png: Uint8Array,
  runs: number,
  again = false,
  chosenGapMs?: number,
): Promise<PairedTimes> {
  const direct = await openDirect(generatorPath, size);
  const directMs: number[] = [];
  const frameMs: number[] = [];
  const serviceMs: number[] = [];
  const againDirect: number[] = [];
  const againFrame: number[] = [];
  const chosenDirect: number[] = [];
  const chosenFrame: number[] = [];
  let outcome: JobOutcome | undefined;
  let chosenOutcome: JobOutcome | undefined;
  const phases: RoundTripPhases[] = [];
  try {
    for (let i = 0; i < runs + WARMUP_RUNS; i++) {
      const d = await direct.runOnce();
      // A fresh event stream per round (connected before the clock starts): run() blocks this
      // process's event loop, long enough for a big generator to miss the server's heartbeat.
      const service = await openService(daemon.url, daemon.token, png);
      try {
        const s = await service.roundTrip({ png: i === 0 ? png : await photoLikePng(size, i) });
        if (s.frameMs === undefined) throw new Error('no preview frame arrived');
        outcome = s.outcome;
        if (i >= WARMUP_RUNS) {
          directMs.push(d);
          frameMs.push(s.frameMs);
          serviceMs.push(s.ms);
          phases.push(s.phases);
        }
        if (again) {
          const d2 = await direct.runOnce();
          const s2 = await service.roundTrip({ imageId: s.imageId });
          if (s2.frameMs === undefined) throw new Error('no preview frame arrived');
          if (i >= WARMUP_RUNS) {
            againDirect.push(d2);
            againFrame.push(s2.frameMs);
          }
        }
        if (chosenGapMs !== undefined) {
          const d3 = await direct.runOnce();
          const imageId = await service.upload(await photoLikePng(size, 1000 + i));
          await new Promise((resolve) => setTimeout(resolve, chosenGapMs));
          const s3 = await service.roundTrip({ imageId });
          if (s3.frameMs === undefined) throw new Error('no preview frame arrived');
          chosenOutcome = s3.outcome;
          if (i >= WARMUP_RUNS) {
            chosenDirect.push(d3);
            chosenFrame.push(s3.frameMs);
          }
        }
      } finally {
        service.close();
      }
    }
  } finally {
    await direct.close();
  }
  if (!outcome) throw new Error('no runs');
  return { direct: directMs, frame: frameMs, service: serviceMs, againDirect, againFrame, chosenDirect, chosenFrame, chosenOutcome, outcome, phases };
}

/** "| run() | round trip | ratio | overhead |" cells: medians, their ratio, and the median of the
 *  per-round differences (less sensitive to load drift than the difference of medians). */
export function pairedCells(t: PairedTimes, digits: number, until: 'frame' | 'service' = 'service'): string {
  const d = median(t.direct);
  const times = t[until];
  const s = median(times);
  const overhead = median(times.map((v, i) => v - (t.direct[i] as number)));
  return `${d.toFixed(digits)} | ${s.toFixed(digits)} | ${(s / d).toFixed(2)} | ${overhead.toFixed(digits)}`;
}

/** The smallest per-round overhead (service − run() of the same round): what the service adds when
 *  the shared machine's load happens to leave it alone. */
export function fastestOverhead(t: PairedTimes, until: 'frame' | 'service', digits: number): string {
  return Math.min(...t[until].map((v, i) => v - (t.direct[i] as number))).toFixed(digits);
}

/** Medians of the client-side phases ("upload 3.1, submit 1.2, frame 40.3, finished 2.0, download 2.0"). */
export function phaseTimings(t: PairedTimes): string {
  const keys: (keyof RoundTripPhases)[] = ['upload', 'submit', 'frame', 'finished', 'download'];
  return keys.map((k) => `${k} ${median(t.phases.map((p) => p[k])).toFixed(1)}`).join(', ');
}

/** Worker stage timings of an outcome, for the table ("decode 12.3, load 0.1, …"). */
export function stageTimings(outcome: JobOutcome): string {
  return Object.entries(outcome.timings)
    .filter(([k]) => !['total', 'queued'].includes(k))
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join(', ');
}

/** A temporary daemon home with `install` writing gan/cat-dog/generator.onnx; meta.json says
 *  cat → dog at working size `size`. Runs `fn` with the daemon's URL, CLI token and the model path;
 *  removes everything afterwards. */
export async function withPreviewDaemon<T>(
  size: number,
  install: (generatorPath: string) => Promise<void>,
  fn: (daemon: { url: string; token: string; generatorPath: string }) => Promise<T>,
): Promise<T> {
  const home = await mkdtemp(join(tmpdir(), 'p2pz-bench-'));
  try {
    const gan = join(home, 'models', 'gan', 'cat-dog');
    await mkdir(gan, { recursive: true });
    const generatorPath = join(gan, 'generator.onnx');
    await install(generatorPath);
    await writeFile(join(gan, 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'dog', size }));
    const daemon = await startDaemon({
      port: 0,
      home,
      device: 'cpu',
      supervisor: { workerPath: join(process.cwd(), 'dist/daemon/worker.js') },
    });
    try {
      const token = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
      return await fn({ url: daemon.url, token, generatorPath });
    } finally {
      await daemon.close();
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}
