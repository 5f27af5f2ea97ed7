// The job routes end to end with a fake engine: upload → submit → events on the client's WebSocket
// → state → result bytes; jobs scoped to their token and client; cancel by HTTP and by WS; upload
// sniffing (docs/SECURITY.md §R9); ids validated before any lookup (docs/SECURITY.md §R20); arbitrary JSON never crashes (docs/SECURITY.md §R10).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_HEADER, ImageUploadResponse, JobResponse, PROTOCOL_VERSION, ServerEvent } from '../../../shared/protocol/index.js';
import { codeOf, EventClient, PNG_1X1, pngHeader, send, startTestDaemon, type TestDaemon } from './helpers.js';

let t: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon();
});
afterAll(async () => {
  await t.stop();
});

async function upload(token = t.token, body: Buffer = PNG_1X1, type = 'image/png') {
  return send(t.daemon, { method: 'POST', path: '/v1/images', token, body, headers: { 'Content-Type': type } });
}

function jobBody(imageId: string, extra: Record<string, unknown> = {}) {
  return { v: PROTOCOL_VERSION, kind: 'preview', imageId, edit: { source: 'cat', target: 'dog' }, ...extra };
}

async function connectClient(clientId: string, token = t.token): Promise<EventClient> {
  const events = EventClient.connect(t.daemon, { Origin: 'null' });
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId });
  await events.next((e) => e['type'] === 'welcome');
  return events;
}

describe('uploads (R9)', () => {
  it('a PNG → 201 with its size and format', async () => {
    const reply = await upload();
    expect(reply.status).toBe(201);
    const body = ImageUploadResponse.parse(reply.json);
    expect(body).toMatchObject({ width: 1, height: 1, format: 'png' });
    expect(body.imageId).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('bytes that are no image → 415 E_IMAGE_FORMAT', async () => {
    const reply = await upload(t.token, Buffer.from('GIF89a....................'));
    expect(reply.status).toBe(415);
    expect(codeOf(reply)).toBe('E_IMAGE_FORMAT');
  });

  it('PNG bytes sent as image/jpeg → E_IMAGE_FORMAT', async () => {
    const reply = await upload(t.token, PNG_1X1, 'image/jpeg');
    expect(codeOf(reply)).toBe('E_IMAGE_FORMAT');
  });

  it('a header-only 60000×60000 PNG → 413 E_IMAGE_TOO_LARGE (nothing decoded)', async () => {
    const reply = await upload(t.token, pngHeader(60000, 60000));
    expect(reply.status).toBe(413);
    expect(codeOf(reply)).toBe('E_IMAGE_TOO_LARGE');
  });
});

describe('a job from upload to result', () => {
  it('streams queued/started/progress/finished to the client and serves the PNG', async () => {
    const events = await connectClient('client-flow-1');
    const { imageId } = ImageUploadResponse.parse((await upload()).json);
    const submitted = await send(t.daemon, {
      method: 'POST',
      path: '/v1/jobs',
      token: t.token,
      json: jobBody(imageId, { jobId: 'job-flow-0001' }),
      headers: { [CLIENT_HEADER]: 'client-flow-1' },
    });
    expect(submitted.status).toBe(202);
    expect(JobResponse.parse(submitted.json).job.jobId).toBe('job-flow-0001');
    const finished = await events.next((e) => e['type'] === 'finished');
    for (const e of events.events) expect(ServerEvent.safeParse(e).success).toBe(true);
    const types = events.events.map((e) => e['type']);
    expect(types).toContain('started');
    expect(types).toContain('progress');
    expect(types.filter((x) => x === 'finished')).toHaveLength(1);
    expect(Buffer.from(t.engine.jobs.at(-1)?.image ?? []).equals(PNG_1X1)).toBe(true);

    const state = JobResponse.parse(
      (await send(t.daemon, { path: '/v1/jobs/job-flow-0001', token: t.token, headers: { [CLIENT_HEADER]: 'client-flow-1' } })).json,
    );
    expect(state.job.state).toBe('finished');
    const resultId = (finished['outcome'] as { results: Array<{ id: string }> }).results[0]?.id ?? '';
    const result = await send(t.daemon, { path: `/v1/results/${resultId}`, token: t.token });
    expect(result.status).toBe(200);
    expect(result.headers['content-type']).toBe('image/png');
    expect(result.bytes.equals(PNG_1X1)).toBe(true);
    events.ws.close();
  });

  it('jobs are invisible to other tokens and to other client ids', async () => {
    const { imageId } = ImageUploadResponse.parse((await upload()).json);
    await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: jobBody(imageId, { jobId: 'job-private-01' }) });
    expect((await send(t.daemon, { path: '/v1/jobs/job-private-01', token: t.token })).status).toBe(200);
    expect((await send(t.daemon, { path: '/v1/jobs/job-private-01', token: t.cliToken })).status).toBe(404);
    const otherClient = await send(t.daemon, { path: '/v1/jobs/job-private-01', token: t.token, headers: { [CLIENT_HEADER]: 'another-client' } });
    expect(otherClient.status).toBe(404);
    expect((await send(t.daemon, { method: 'DELETE', path: '/v1/jobs/job-private-01', token: t.cliToken })).status).toBe(404);
  });

  it("a quick preview's frame goes as one binary message to the submitting client's streams only", async () => {
    const rgba = Uint8Array.from({ length: 3 * 2 * 4 }, (_, i) => (i * 53) & 255);
    t.engine.frame = { role: 'result', width: 3, height: 2, rgba };
    try {
      const mine = await connectClient('client-frames-1');
      const mineToo = await connectClient('client-frames-1');
      const otherClient = await connectClient('client-frames-2');
      const otherToken = await connectClient('client-frames-1', t.cliToken);
      const { imageId } = ImageUploadResponse.parse((await upload()).json);
      const headers = { [CLIENT_HEADER]: 'client-frames-1' };
      await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: jobBody(imageId, { jobId: 'job-frames-01' }), headers });
      for (const events of [mine, mineToo]) {
        await events.next((e) => e['type'] === 'finished' && e['jobId'] === 'job-frames-01');
        expect(events.frames.map((f) => [f.header.jobId, f.header.role, f.header.width, f.header.height])).toEqual([['job-frames-01', 'result', 3, 2]]);
        expect(events.frames[0]?.rgba).toEqual(rgba);
        expect(events.refusedFrames).toEqual([]);
      }
      await send(t.daemon, { path: '/v1/health' });
      for (const events of [otherClient, otherToken]) expect(events.frames).toEqual([]);
      for (const events of [mine, mineToo, otherClient, otherToken]) events.ws.close();
    } finally {
      t.engine.frame = undefined;
    }
  });

  it('a malformed client id header → 400', async () => {
    const reply = await send(t.daemon, { path: '/v1/jobs/job-private-01', token: t.token, headers: { [CLIENT_HEADER]: '../x' } });
    expect(reply.status).toBe(400);
    expect(codeOf(reply)).toBe('E_BAD_REQUEST');
  });

  it('an unknown image id → 404 with a hint to upload again', async () => {
    const reply = await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: jobBody('AAAAAAAAAAAAAAAAAAAAAA') });
    expect(reply.status).toBe(404);
    expect((reply.json as { hint: string }).hint).toMatch(/Upload/);
  });

  it('cancel by HTTP is acknowledged at once and reported exactly once', async () => {
    t.engine.mode = 'hold';
    try {
      const events = await connectClient('client-cancel-1');
      const { imageId } = ImageUploadResponse.parse((await upload()).json);
      const headers = { [CLIENT_HEADER]: 'client-cancel-1' };
      await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: jobBody(imageId, { jobId: 'job-cancel-01' }), headers });
      await events.next((e) => e['type'] === 'started');
      const cancelled = await send(t.daemon, { method: 'DELETE', path: '/v1/jobs/job-cancel-01', token: t.token, headers });
      expect(cancelled.status).toBe(200);
      expect(JobResponse.parse(cancelled.json).job.state).toBe('cancelled');
      await events.next((e) => e['type'] === 'cancelled');
      // The WS cancel message works too.
      const second = ImageUploadResponse.parse((await upload()).json);
      await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: jobBody(second.imageId, { jobId: 'job-cancel-02' }), headers });
      await events.next((e) => e['type'] === 'started' && e['jobId'] === 'job-cancel-02');
      events.sendJson({ v: PROTOCOL_VERSION, type: 'cancel', jobId: 'job-cancel-02' });
      await events.next((e) => e['type'] === 'cancelled' && e['jobId'] === 'job-cancel-02');
      await send(t.daemon, { path: '/v1/health' });
      expect(events.events.filter((e) => e['type'] === 'cancelled' && e['jobId'] === 'job-cancel-01')).toHaveLength(1);
      events.ws.close();
    } finally {
      t.engine.mode = 'done';
    }
  });
});

describe('ids from clients (R20)', () => {
  const bad = [
    '..',
    '..%2F..%2Fetc%2Fpasswd',
    '%2e%2e%2f%2e%2e%2fetc',
    '%2Fetc%2Fpasswd',
    'C%3A%5Cwindows',
    'AAAAAAAA%00.png',
    'short',
    'A'.repeat(65),
    'AAAAAAAAAAAAAAAAAAAAAA.png',
  ];
  it.each(bad)('/v1/results/%s → 400 or 404, JSON', async (id) => {
    const reply = await send(t.daemon, { path: `/v1/results/${id}`, token: t.token });
    expect([400, 404]).toContain(reply.status);
    expect(['E_BAD_REQUEST', 'E_NOT_FOUND']).toContain(codeOf(reply));
  });

  it('a well-formed unknown id → 404', async () => {
    const reply = await send(t.daemon, { path: '/v1/results/AAAAAAAAAAAAAAAAAAAAAA', token: t.token });
    expect(reply.status).toBe(404);
  });

  it('traversal in a job id → 400', async () => {
    const reply = await send(t.daemon, { path: '/v1/jobs/..%2F..%2Fetc', token: t.token });
    expect(reply.status).toBe(400);
  });
});

describe('arbitrary JSON to POST /v1/jobs (R10)', () => {
  it('is always 400 E_BAD_REQUEST / E_PROTOCOL_VERSION (or 404 for a valid job with an unknown image), never 500', async () => {
    const nearValid = fc.record(
      {
        v: fc.oneof(fc.constant(1), fc.jsonValue()),
        kind: fc.oneof(fc.constantFrom('preview', 'render'), fc.string()),
        imageId: fc.oneof(fc.constant('AAAAAAAAAAAAAAAAAAAAAA'), fc.string()),
        jobId: fc.string(),
        model: fc.string(),
        stepPreviews: fc.jsonValue(),
        edit: fc.oneof(
          fc.record(
            {
              source: fc.oneof(fc.constant('cat'), fc.string()),
              target: fc.oneof(fc.constant('dog'), fc.string()),
              steps: fc.oneof(fc.integer(), fc.double()),
              cfg: fc.double(),
              size: fc.integer(),
              seed: fc.oneof(fc.integer(), fc.bigInt().map(String)),
              caption: fc.string({ maxLength: 400 }),
            },
            { requiredKeys: [] },
          ),
          fc.jsonValue(),
        ),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), nearValid), async (value) => {
        const reply = await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, body: JSON.stringify(value) ?? 'null', headers: { 'Content-Type': 'application/json' } });
        const code = codeOf(reply);
        if (reply.status === 404) return code === 'E_NOT_FOUND';
        return reply.status === 400 && (code === 'E_BAD_REQUEST' || code === 'E_PROTOCOL_VERSION');
      }),
      { numRuns: 300 },
    );
    expect((await send(t.daemon, { path: '/v1/health' })).status).toBe(200);
  });

  it('bodies that are not JSON or not UTF-8 → 400', async () => {
    for (const body of [Buffer.from('{"v":1,'), Buffer.from([0xff, 0xfe, 0x7b, 0x7d]), Buffer.from('')]) {
      const reply = await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, body, headers: { 'Content-Type': 'application/json' } });
      expect(reply.status).toBe(400);
      expect(codeOf(reply)).toBe('E_BAD_REQUEST');
    }
  });
});

describe('queue bounds reach the client (R13)', () => {
  it('a job over the per-client bound → 429 E_QUEUE_FULL', async () => {
    const small = await startTestDaemon({ queue: { maxQueuedPerClient: 1 } });
    small.engine.mode = 'hold';
    try {
      const { imageId } = ImageUploadResponse.parse(
        (await send(small.daemon, { method: 'POST', path: '/v1/images', token: small.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json,
      );
      const first = await send(small.daemon, { method: 'POST', path: '/v1/jobs', token: small.token, json: jobBody(imageId) });
      expect(first.status).toBe(202);
      const second = await send(small.daemon, { method: 'POST', path: '/v1/jobs', token: small.token, json: jobBody(imageId) });
      expect(second.status).toBe(429);
      expect(codeOf(second)).toBe('E_QUEUE_FULL');
      // Another client id of the same token has its own share of the token's bound.
      const other = await send(small.daemon, { method: 'POST', path: '/v1/jobs', token: small.token, json: jobBody(imageId), headers: { [CLIENT_HEADER]: 'second-client' } });
      expect(other.status).toBe(202);
    } finally {
      await small.stop();
    }
  });

  it('the per-token bound holds whatever x-p2pz-client says: one token cannot fill the global queue', async () => {
    const d = await startTestDaemon();
    d.engine.mode = 'hold';
    try {
      const { imageId } = ImageUploadResponse.parse(
        (await send(d.daemon, { method: 'POST', path: '/v1/images', token: d.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json,
      );
      const statuses: number[] = [];
      for (let i = 0; i < 12; i += 1) {
        const reply = await send(d.daemon, { method: 'POST', path: '/v1/jobs', token: d.token, json: jobBody(imageId), headers: { [CLIENT_HEADER]: `client-id-${i}` } });
        statuses.push(reply.status);
        if (reply.status !== 202) expect(codeOf(reply)).toBe('E_QUEUE_FULL');
      }
      expect(statuses).toEqual([...Array<number>(8).fill(202), ...Array<number>(4).fill(429)]);
      // Another pairing still gets its own share of the global queue.
      const { code } = d.daemon.pairingCode();
      const paired = await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
      const second = (paired.json as { token: string }).token;
      const upload = ImageUploadResponse.parse(
        (await send(d.daemon, { method: 'POST', path: '/v1/images', token: second, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json,
      );
      const own = await send(d.daemon, { method: 'POST', path: '/v1/jobs', token: second, json: jobBody(upload.imageId) });
      expect(own.status).toBe(202);
    } finally {
      await d.stop();
    }
  });
});
