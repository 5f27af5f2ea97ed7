// `npm run bench daemon [-- --runs N]`: what the service adds to a preview job. A 512×512 PNG goes the
// whole way (upload, sniff, queue, worker IPC, decode, run, encode, store, WebSocket event, download)
// through a real daemon on 127.0.0.1 with the generated image-to-image generator installed as the
// cat → dog GAN preview, against calling the same model's onnxruntime session directly with the same
// session options. Reported as medians, their ratio and the absolute overhead.
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, ImageUploadResponse, JobResponse, ServerEvent, type JobOutcome } from '../../shared/protocol/index.js';
import { startDaemon } from '../../daemon/daemon.js';
import { writeTinyImg2Img } from '../../daemon/onnx/tiny/img2img.js';
import { SESSION_DEFAULTS } from '../../daemon/worker/sessions.js';
import { machineLine, median } from './machine.js';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 15;
const SIZE = 512;
const CLIENT = 'bench_client_01';

async function testImage(): Promise<Uint8Array> {
  // A smooth gradient with noise: compresses like a photo, not like a flat colour.
  const raw = Buffer.alloc(SIZE * SIZE * 3);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const i = (y * SIZE + x) * 3;
      raw[i] = (x / 2 + ((x * 7919 + y * 104729) % 23)) & 255;
      raw[i + 1] = (y / 2 + ((x * 31 + y * 17) % 19)) & 255;
      raw[i + 2] = ((x + y) / 4) & 255;
    }
  return new Uint8Array(await sharp(raw, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toBuffer());
}

async function directRunMs(modelPath: string): Promise<number[]> {
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: SESSION_DEFAULTS.graphOptimizationLevel,
  });
  const input = new ort.Tensor('float32', new Float32Array(3 * SIZE * SIZE).fill(0.1), [1, 3, SIZE, SIZE]);
  const name = session.inputNames[0] as string;
  const times: number[] = [];
  for (let i = 0; i < runs + 2; i++) {
    const t0 = performance.now();
    await session.run({ [name]: input });
    if (i >= 2) times.push(performance.now() - t0);
  }
  await session.release();
  return times;
}

async function serviceRoundTripMs(url: string, token: string, png: Uint8Array): Promise<{ times: number[]; outcome: JobOutcome }> {
  const auth = { authorization: `Bearer ${token}`, 'x-p2pz-client': CLIENT };
  const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/events`);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const waiting = new Map<string, (outcome: JobOutcome) => void>();
  ws.on('message', (data) => {
    const event = ServerEvent.parse(JSON.parse(String(data)));
    if (event.type === 'finished') waiting.get(event.jobId)?.(event.outcome);
    if (event.type === 'error') throw new Error(`job failed: ${event.error.code}`);
  });
  ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: CLIENT }));
  const times: number[] = [];
  let outcome: JobOutcome | undefined;
  for (let i = 0; i < runs + 2; i++) {
    const t0 = performance.now();
    const upload = await fetch(`${url}/v1/images`, { method: 'POST', headers: { ...auth, 'content-type': 'image/png' }, body: png });
    const { imageId } = ImageUploadResponse.parse(await upload.json());
    const jobId = `bench_job_${i.toString().padStart(4, '0')}`;
    const done = new Promise<JobOutcome>((resolve) => waiting.set(jobId, resolve));
    const submit = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ v: PROTOCOL_VERSION, jobId, kind: 'preview', imageId, edit: { source: 'cat', target: 'dog' } }),
    });
    JobResponse.parse(await submit.json());
    outcome = await done;
    const result = outcome.results[0];
    if (!result) throw new Error('no result');
    const download = await fetch(`${url}/v1/results/${result.id}`, { headers: auth });
    const bytes = new Uint8Array(await download.arrayBuffer());
    if (i >= 2) times.push(performance.now() - t0);
    if (bytes.length < 1000) throw new Error('result too small');
  }
  ws.close();
  if (!outcome) throw new Error('no runs');
  return { times, outcome };
}

async function measure(channels: number, png: Uint8Array): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'p2pz-bench-'));
  try {
    const gan = join(home, 'models', 'gan', 'cat-dog');
    await mkdir(gan, { recursive: true });
    await writeTinyImg2Img(join(gan, 'generator.onnx'), { seed: 1, channels });
    await writeFile(join(gan, 'meta.json'), JSON.stringify({ v: 1, source: 'cat', target: 'dog', size: SIZE }));
    const direct = median(await directRunMs(join(gan, 'generator.onnx')));
    const daemon = await startDaemon({
      port: 0,
      home,
      device: 'cpu',
      supervisor: { workerPath: join(process.cwd(), 'dist/daemon/worker.js') },
    });
    try {
      const token = (await readFile(daemon.paths.cliToken, 'utf8')).trim();
      const { times, outcome } = await serviceRoundTripMs(daemon.url, token, png);
      const service = median(times);
      const stages = Object.entries(outcome.timings)
        .filter(([k]) => !['total', 'queued'].includes(k))
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ');
      return `| ${channels} | ${direct.toFixed(1)} | ${service.toFixed(1)} | ${(service / direct).toFixed(2)} | ${(service - direct).toFixed(1)} | ${stages} |`;
    } finally {
      await daemon.close();
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

const png = await testImage();
const rows = [];
for (const channels of [16, 64]) rows.push(await measure(channels, png));
console.log(`## daemon: service overhead on a 512×512 preview

Machine: ${machineLine()}. Command: \`npm run bench daemon -- --runs ${runs}\` (medians of ${runs} runs after 2 warm-ups).

| generator channels | session.run() ms | HTTP+WS round trip ms | ratio | overhead ms | worker stages (ms, last run) |
|---|---|---|---|---|---|
${rows.join('\n')}
`);
