// docs/SECURITY.md §R21 with the data folder where macOS puts it for a user named with a space, and a non-ASCII name
// (".../John Smith/Library/Application Support/p2pz josé"): the spawned daemon and its real worker
// load a damaged model from there. The job's error, health, and the whole log (the worker's own
// stderr lines included) name the folder as <data> and never show any part of it.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { CLIENT_HEADER, ImageUploadResponse, PairResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { homePaths } from '../../../daemon/config.js';
import { addScrubRoot, createLogger } from '../../../daemon/log.js';
import { shortenLoaderMessage } from '../../../daemon/worker/providers.js';
import { WorkerSupervisor } from '../../../daemon/worker/supervisor.js';
import { engineJob, waitFor } from '../worker/helpers.js';
import { installTinyModels } from '../../fixtures/tiny-models.js';
import { EventClient, PNG_1X1, send } from './helpers.js';
import { runCli, spawnCli, waitForDaemonInfo, type Spawned } from './spawn.js';

let base = '';
let s: Spawned | undefined;
afterAll(async () => {
  if (s && s.child.exitCode === null) s.child.kill('SIGKILL');
  if (base) await rm(base, { recursive: true, force: true });
});

it('a damaged model under a data folder with spaces and non-ASCII: no piece of the folder reaches a client or the log', async () => {
  base = await mkdtemp(join(tmpdir(), 'p2pz-scrub-'));
  const home = join(base, 'John Smith', 'Library', 'Application Support', 'p2pz josé');
  const models = homePaths(home).models;
  await mkdir(models, { recursive: true });
  await installTinyModels(models);
  // Damaged: onnxruntime's loader names the file it could not parse.
  await writeFile(join(models, 'gan', 'cat-dog', 'generator.onnx'), Buffer.from('not an onnx model at all'));

  s = spawnCli(['serve', '--port', '0', '--device', 'cpu'], { P2PZ_HOME: home, P2PZ_LOG: 'debug' });
  const info = await waitForDaemonInfo(home, s);
  const d = { port: info.port };
  const seen: string[] = [];

  const pair = await runCli(['pair'], { P2PZ_HOME: home });
  const code = /Pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})/.exec(pair.stdout)?.[1] ?? '';
  const { token } = PairResponse.parse((await send(d, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code, client: 'figma' } })).json);
  const events = EventClient.connect(d, { Origin: 'null' });
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: 'scrub-client-1' });
  await events.next((e) => e['type'] === 'welcome', 30_000);

  const { imageId } = ImageUploadResponse.parse(
    (await send(d, { method: 'POST', path: '/v1/images', token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json,
  );
  const headers = { [CLIENT_HEADER]: 'scrub-client-1' };
  await send(d, { method: 'POST', path: '/v1/jobs', token, headers, json: { v: PROTOCOL_VERSION, kind: 'preview', imageId, jobId: 'scrub-preview-1', edit: { source: 'cat', target: 'dog' } } });
  const ended = await events.next((e) => e['jobId'] === 'scrub-preview-1' && (e['type'] === 'error' || e['type'] === 'finished'), 60_000);
  const job = await send(d, { path: '/v1/jobs/scrub-preview-1', token, headers });
  const health = await send(d, { path: '/v1/health' });
  seen.push(job.text, health.text, ...events.events.map((e) => JSON.stringify(e)));
  events.ws.close();
  s.child.kill('SIGTERM');
  expect((await s.exited).code).toBe(0);
  seen.push(s.stdout, s.stderr);

  // The damaged model was really loaded from there, and the error says where, relative to <data>.
  expect(ended['type']).toBe('error');
  const message = JSON.stringify(ended['error']);
  expect(message).toContain('<data>/models/gan/cat-dog/generator.onnx');
  expect(s.stderr).toContain('<data>');

  const all = seen.join('\n');
  for (const piece of [home, base, 'John Smith', 'Smith/', 'Application Support', 'josé', 'jos%C3%A9', 'John%20Smith', tmpdir()]) {
    expect(all).not.toContain(piece);
  }
  expect(all).not.toMatch(/\n\s+at .+:\d+:\d+/);
});

it("the worker's stack lines reach the log with the data folder as <data>: plain, file: URL and percent-encoded", async () => {
  const dir = join(tmpdir(), 'Jane Doe', 'Application Support', 'p2pz zoë');
  addScrubRoot('<data>', dir);
  const lines: string[] = [];
  const log = createLogger({ sink: (line) => lines.push(line) });
  const supervisor = new WorkerSupervisor({
    modelsDir: join(dir, 'models'),
    workerPath: fileURLToPath(new URL('../worker/fixtures/fake-worker.mjs', import.meta.url)),
    env: { FAKE_WORKER_DIR: dir },
    log,
  });
  try {
    const result = await supervisor.run(engineJob('stack'), () => undefined, new AbortController().signal);
    expect(result.status).toBe('done');
    await waitFor(() => lines.filter((l) => l.includes('worker.log')).length >= 4, 'the stack lines in the log');
  } finally {
    await supervisor.close();
  }
  const logged = lines.filter((l) => l.includes('worker.log')).join('\n');
  expect(logged).toContain('cannot read <data>/models/unet/model.onnx');
  expect(logged).toContain('loadModel (<data>/dist/daemon/worker.js:12:7)');
  expect(logged).toContain('at <data>/dist/daemon/worker.js:99:1');
  for (const piece of ['Jane', 'Doe', 'zo%C3%AB', 'zoë', 'Application', 'file:', tmpdir()]) expect(logged).not.toContain(piece);
});

it("health's device reason: the CUDA loader's message about a checkout under a spaced, non-ASCII folder", () => {
  const checkout = '/Users/John Smith/Développement/p2pz';
  addScrubRoot('<checkout>', checkout);
  const reason = shortenLoaderMessage(
    `Failed to load library ${checkout}/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory\n` +
      `    at file://${encodeURI(checkout)}/dist/daemon/worker.js:10:2`,
  );
  expect(reason).toBe(
    'Failed to load library <checkout>/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory',
  );
});
