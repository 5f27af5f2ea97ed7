// The daemon's memory under the burst that once took it from 88 MiB to 2.9 GiB (docs/SECURITY.md
// §Memory bound): a 49 MiB upload (a valid PNG header, then junk: it passes the sniffer), a long
// render running, 50 concurrent submissions of that image, then 50 more under other client ids.
// Queued jobs hold the stored file, not its bytes, and the bounds are checked before anything is
// read, so the burst adds next to nothing; a waiting job reads its image only when it starts.
// The daemon runs in this process, so RSS is sampled here (its growth, against a baseline taken just
// before the burst); the benchmark (`npm run bench memory`) measures a spawned daemon instead.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLIENT_HEADER, ImageUploadResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { codeOf, PNG_1X1, pngHeader, send, startTestDaemon, type TestDaemon } from './helpers.js';

const MiB = 1024 * 1024;
let t: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon();
});
afterAll(async () => {
  await t.stop();
});

/** Samples RSS every few milliseconds until stopped; resolves with the highest value seen. */
function sampleRss(): { stop: () => number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 2);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

const upload = async (body: Buffer): Promise<string> =>
  ImageUploadResponse.parse((await send(t.daemon, { method: 'POST', path: '/v1/images', token: t.token, body, headers: { 'Content-Type': 'image/png' } })).json).imageId;

const job = (imageId: string, jobId: string) => ({ v: PROTOCOL_VERSION, kind: 'render', imageId, jobId, edit: { source: 'cat', target: 'dog' } });

it('50 + 50 concurrent submissions of a 49 MiB upload behind a running render: no image is read, RSS barely moves', async () => {
  t.engine.mode = 'hold';
  const running = await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: job(await upload(PNG_1X1), 'long-render-0') });
  expect(running.status).toBe(202);

  const big = Buffer.alloc(49 * MiB, 0x5a);
  pngHeader(4000, 3000).copy(big);
  const bigId = await upload(big);

  const before = process.memoryUsage.rss();
  const rss = sampleRss();
  const first = await Promise.all(
    Array.from({ length: 50 }, (_, i) => send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: job(bigId, `burst-a-${i}`) })),
  );
  const second = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, json: job(bigId, `burst-b-${i}`), headers: { [CLIENT_HEADER]: `other-client-${i}` } }),
    ),
  );
  const grown = rss.stop() - before;

  // One token: 8 jobs waiting or running, the running render included; the rest are 429.
  expect(first.filter((r) => r.status === 202)).toHaveLength(7);
  expect(first.filter((r) => r.status === 429).every((r) => codeOf(r) === 'E_QUEUE_FULL')).toBe(true);
  expect(second.every((r) => r.status === 429)).toBe(true);
  // The engine has seen only the running render's 1×1 image: nothing of the burst was read.
  expect(t.engine.jobs.map((j) => j.image.byteLength)).toEqual([PNG_1X1.byteLength]);
  // Well under one copy of the image (before: one copy per submission, 2.4 GiB here).
  expect(grown).toBeLessThan(40 * MiB);

  // A waiting job reads its image when it starts: cancel the render, the next job gets all 49 MiB.
  await send(t.daemon, { method: 'DELETE', path: '/v1/jobs/long-render-0', token: t.token });
  for (let i = 0; i < 200 && t.engine.jobs.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
  expect(t.engine.jobs[1]?.image.byteLength).toBe(49 * MiB);
});

it('a stored upload outlives its expiry and the size cap while a queued job holds it', async () => {
  const small = await startTestDaemon({ stores: { maxAgeMs: 200, maxTotalBytes: PNG_1X1.byteLength * 2, sweepIntervalMs: 0 } });
  small.engine.mode = 'hold';
  try {
    const put = async (): Promise<string> =>
      ImageUploadResponse.parse((await send(small.daemon, { method: 'POST', path: '/v1/images', token: small.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json).imageId;
    expect((await send(small.daemon, { method: 'POST', path: '/v1/jobs', token: small.token, json: job(await put(), 'hold-run-0') })).status).toBe(202);
    const waitingImage = await put();
    expect((await send(small.daemon, { method: 'POST', path: '/v1/jobs', token: small.token, json: job(waitingImage, 'hold-wait-0') })).status).toBe(202);
    // Two more uploads push the store over its cap, and the held one expires meanwhile.
    await put();
    await put();
    await new Promise((r) => setTimeout(r, 300));
    await send(small.daemon, { method: 'DELETE', path: '/v1/jobs/hold-run-0', token: small.token });
    for (let i = 0; i < 200 && small.engine.jobs.length < 2; i += 1) await new Promise((r) => setTimeout(r, 10));
    expect(small.engine.jobs[1]?.jobId).toBe('hold-wait-0');
    expect(Buffer.from(small.engine.jobs[1]?.image ?? []).equals(PNG_1X1)).toBe(true);
    // Released once read: the expired upload is gone for a new submission.
    expect((await send(small.daemon, { method: 'POST', path: '/v1/jobs', token: small.token, json: job(waitingImage, 'hold-wait-1') })).status).toBe(404);
  } finally {
    await small.stop();
  }
});

it('uploads in flight are bounded per token and in total; the reservation ends with the upload', async () => {
  const small = await startTestDaemon({ limits: { uploadBytesInFlight: 3 * MiB, uploadBytesInFlightPerToken: 2 * MiB } });
  try {
    // A declared 2 MiB upload that has sent only its first bytes holds the token's whole share.
    const { connect } = await import('node:net');
    const socket = connect(small.daemon.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(
      `POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1:${small.daemon.port}\r\nAuthorization: Bearer ${small.token}\r\n` +
        `Content-Type: image/png\r\nContent-Length: ${2 * MiB}\r\n\r\n`,
    );
    socket.write(pngHeader(10, 10));
    await new Promise((r) => setTimeout(r, 100));
    const refused = await send(small.daemon, { method: 'POST', path: '/v1/images', token: small.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } });
    expect(refused.status).toBe(429);
    expect(codeOf(refused)).toBe('E_RATE_LIMITED');
    // Another pairing has its own share, within what is left of the total.
    const { code } = small.daemon.pairingCode();
    const other = ((await send(small.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } })).json as { token: string }).token;
    const ok = await send(small.daemon, { method: 'POST', path: '/v1/images', token: other, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } });
    expect(ok.status).toBe(201);
    const overTotal = await send(small.daemon, { method: 'POST', path: '/v1/images', token: other, body: Buffer.alloc(1536 * 1024), headers: { 'Content-Type': 'image/png' } });
    expect(overTotal.status).toBe(429);
    // The stalled upload goes away: its share is free again.
    socket.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const again = await send(small.daemon, { method: 'POST', path: '/v1/images', token: small.token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } });
    expect(again.status).toBe(201);
  } finally {
    await small.stop();
  }
});
