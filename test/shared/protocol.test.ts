// Round trips for every message kind of the protocol: each example survives the trip its channel makes
// (JSON for HTTP and WebSocket, V8 structured clone for the worker IPC) and parses back to itself;
// near-misses are refused with a readable issue.
import { deserialize, serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  ClientMessage,
  ERRORS,
  ErrorBody,
  ErrorResponse,
  HealthResponse,
  ImageUploadResponse,
  JobResponse,
  JobSubmit,
  ModelsResponse,
  P2pzError,
  formatPairingCode,
  normalizePairingCode,
  PAIRING_CODE,
  PAIRING_CODE_SHOWN,
  PairRequest,
  PairResponse,
  PROTOCOL_VERSION,
  ServerEvent,
  SupervisorMessage,
  WorkerMessage,
  EditParams,
  EDIT_DEFAULTS,
} from '../../shared/protocol/index.js';

const v = PROTOCOL_VERSION;
const id = 'job_0123456789';
const edit = EditParams.parse({ source: 'cat', target: 'dog' });
const health = {
  v,
  name: 'p2pz',
  version: '0.1.0',
  state: 'ready',
  device: { provider: 'cpu', reason: 'CUDA provider not found' },
  worker: { state: 'ready', restarts: 0, recentCrashes: 0 },
  models: [{ name: 'cat-dog', kind: 'gan', direction: { source: 'cat', target: 'dog' }, demo: false }],
  queue: { running: 0, queued: 0 },
} as const;
const outcome = {
  results: [{ id: 'res_0123456789', role: 'image', mime: 'image/png', width: 640, height: 480 }],
  engine: 'gan',
  timings: { total: 12.5, generate: 8 },
  device: 'cpu',
} as const;
const job = { jobId: id, kind: 'render', state: 'finished', outcome, createdAt: 1 } as const;

function jsonTrip<S extends z.ZodType>(schema: S, value: unknown): void {
  const parsed = schema.parse(value);
  expect(schema.parse(JSON.parse(JSON.stringify(parsed)))).toEqual(parsed);
}
function cloneTrip<S extends z.ZodType>(schema: S, value: unknown): void {
  const parsed = schema.parse(value);
  expect(schema.parse(deserialize(serialize(parsed)))).toEqual(parsed);
}

describe('HTTP bodies', () => {
  it.each([
    ['HealthResponse', HealthResponse, health],
    ['PairRequest', PairRequest, { v, code: '7K3Q-MXR9', client: 'figma' }],
    ['PairResponse', PairResponse, { v, token: 'tok' }],
    ['ImageUploadResponse', ImageUploadResponse, { v, imageId: 'img_0123456789', width: 3, height: 2, format: 'png' }],
    ['JobSubmit', JobSubmit, { v, kind: 'render', imageId: 'img_0123456789', edit: { source: 'cat', target: 'dog' } }],
    ['JobResponse', JobResponse, { v, job }],
    ['ModelsResponse', ModelsResponse, { v, models: health.models }],
    ['ErrorResponse', ErrorResponse, { v, code: 'E_BAD_REQUEST', message: 'x', hint: 'y' }],
  ] as const)('%s round-trips through JSON', (_name, schema, value) => jsonTrip(schema, value));

  it('fills the paper defaults into edit params', () => {
    expect(edit).toMatchObject({ steps: EDIT_DEFAULTS.steps, cfg: 5, xa: 0.1, regSteps: 5, size: 512, editScale: 1 });
  });

  it.each([
    ['another protocol version', { v: 2, kind: 'render', imageId: 'img_0123456789', edit }],
    ['an unknown job kind', { v, kind: 'upscale', imageId: 'img_0123456789', edit }],
    ['a traversal image id', { v, kind: 'render', imageId: '../../etc/passwd', edit }],
    ['a size not a multiple of 64', { v, kind: 'render', imageId: 'img_0123456789', edit: { ...edit, size: 500 } }],
    ['steps out of range', { v, kind: 'render', imageId: 'img_0123456789', edit: { ...edit, steps: 100000 } }],
    ['a script in a concept word', { v, kind: 'render', imageId: 'img_0123456789', edit: { ...edit, target: '"); app.close(); ("' } }],
  ])('JobSubmit refuses %s', (_name, value) => {
    expect(JobSubmit.safeParse(value).success).toBe(false);
  });

  it('PairRequest reads a code as Crockford base32 does and refuses anything else', () => {
    for (const [typed, canonical] of [['7K3Q-MXR9', '7K3QMXR9'], ['7k3qmxr9', '7K3QMXR9'], [' 7k3q mxr9 ', '7K3QMXR9'], ['OIL0-1234', '0110' + '1234']] as const) {
      expect(PairRequest.parse({ v, code: typed }).code).toBe(canonical);
    }
    for (const code of ['123456', '7K3Q-MXR', '7K3Q-MXR9A', '7K3Q-MXRU', '7K3Q_MXR9', '7K3Q-MXR9'.padEnd(40, ' ')]) {
      expect(PairRequest.safeParse({ v, code }).success).toBe(false);
    }
  });

  it('normalizePairingCode and formatPairingCode round-trip every symbol', () => {
    expect(normalizePairingCode(formatPairingCode('0123ABYZ'))).toBe('0123ABYZ');
    expect(formatPairingCode('0123ABYZ')).toMatch(PAIRING_CODE_SHOWN);
    expect(PAIRING_CODE.alphabet).toHaveLength(32);
    expect(new Set(PAIRING_CODE.alphabet).size).toBe(32);
    for (const ch of 'ILOU') expect(PAIRING_CODE.alphabet).not.toContain(ch);
  });
});

describe('WebSocket messages', () => {
  const clientMessages = [
    { v, type: 'hello', token: 't', clientId: 'client_01234' },
    { v, type: 'cancel', jobId: id },
    { v, type: 'ping', nonce: 3 },
  ];
  it.each(clientMessages)('client message $type round-trips', (m) => jsonTrip(ClientMessage, m));

  const base = { v, jobId: id, kind: 'render' } as const;
  const serverEvents = [
    { v, type: 'welcome', health },
    { ...base, type: 'queued', position: 2 },
    { ...base, type: 'retrying', attempt: 2, attempts: 5 },
    { ...base, type: 'started' },
    { ...base, type: 'progress', stage: 'edit', step: 3, total: 50 },
    { ...base, type: 'finished', outcome },
    { ...base, type: 'cancelled' },
    { ...base, type: 'error', error: { code: 'E_WORKER_CRASHED', message: 'm', hint: 'h' } },
    { v, type: 'protocol-error', error: { code: 'E_UNKNOWN_MESSAGE', message: 'm' } },
    { v, type: 'pong', nonce: 3 },
  ];
  it.each(serverEvents)('server event $type round-trips', (m) => jsonTrip(ServerEvent, m));

  it('covers every event type of the union', () => {
    const types = new Set(serverEvents.map((e) => e.type));
    expect([...types].sort()).toEqual(ServerEvent.options.map((o) => o.shape.type.value).sort());
  });

  it('refuses unknown types and versions', () => {
    expect(ClientMessage.safeParse({ v, type: 'shutdown' }).success).toBe(false);
    expect(ClientMessage.safeParse({ v: 0, type: 'ping' }).success).toBe(false);
  });
});

describe('worker IPC', () => {
  const png = new Uint8Array([137, 80, 78, 71, 1, 2, 3]);
  const supervisor = [
    { v, type: 'run', jobId: id, kind: 'preview', image: png, modelsDir: '/m', edit, stepPreviews: false },
    { v, type: 'cancel', jobId: id },
    { v, type: 'shutdown' },
  ];
  it.each(supervisor)('supervisor message $type survives structured clone', (m) => cloneTrip(SupervisorMessage, m));

  const worker = [
    { v, type: 'ready', device: { provider: 'cpu', reason: 'forced' }, pid: 12 },
    { v, type: 'progress', jobId: id, stage: 'generate', step: 1, total: 1, frame: { role: 'result', width: 2, height: 1, rgba: new Uint8Array(8).fill(7) } },
    { v, type: 'done', jobId: id, outputs: [{ role: 'image', png, width: 3, height: 2 }], engine: 'gan', timings: { generate: 1 } },
    { v, type: 'cancelled', jobId: id },
    { v, type: 'failed', jobId: id, error: { code: 'E_DEVICE_OOM', message: 'm', hint: 'h' } },
  ];
  it.each(worker)('worker message $type survives structured clone', (m) => cloneTrip(WorkerMessage, m));

  it('bytes stay bytes across the clone', () => {
    const back = WorkerMessage.parse(deserialize(serialize(worker[2])));
    expect(back.type === 'done' && back.outputs[0]?.png).toEqual(png);
  });
});

describe('errors', () => {
  it('every code has a status, a message and a hint', () => {
    for (const [code, info] of Object.entries(ERRORS)) {
      expect(info.status, code).toBeGreaterThanOrEqual(400);
      expect(info.message.length, code).toBeGreaterThan(10);
      expect(info.hint.length, code).toBeGreaterThan(10);
    }
  });
  it('P2pzError round-trips through its body', () => {
    const e = new P2pzError('E_IMAGE_TOO_LARGE', '60000×60000 pixels.');
    const body = ErrorBody.parse(JSON.parse(JSON.stringify(e.toBody())));
    const back = P2pzError.fromBody(body);
    expect(back.code).toBe('E_IMAGE_TOO_LARGE');
    expect(back.status).toBe(413);
    expect(back.message).toBe('The image has too many pixels to edit. 60000×60000 pixels.');
    expect(back.hint).toBe(ERRORS.E_IMAGE_TOO_LARGE.hint);
  });
  it('refuses codes outside the closed set', () => {
    expect(ErrorBody.safeParse({ code: 'E_WHATEVER', message: 'x' }).success).toBe(false);
  });
});
