// Body and connection limits (docs/SECURITY.md §R8, §R22): JSON 64 KiB and images 50 MiB, checked from Content-Length
// and while streaming, answered 413 at once without reading the rest; slow clients timed out; header
// size capped. Raw sockets make the client misbehave exactly.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_LIMITS } from '../../../daemon/server/body.js';
import { codeOf, pngHeader, send, startTestDaemon, type TestDaemon } from './helpers.js';

// Default limits for the body tests; a second daemon with short timeouts for the slow-client tests.
let t: TestDaemon;
let slow: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon();
  slow = await startTestDaemon({ http: { headersTimeoutMs: 400, requestTimeoutMs: 800, connectionsCheckingIntervalMs: 100 } });
});
afterAll(async () => {
  await t.stop();
  await slow.stop();
});

/** Opens a raw connection, writes `head`, and resolves with everything the server sent until it closed. */
function rawExchange(head: string | Buffer, keepWriting?: (socket: Socket) => void, to: TestDaemon = t): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(to.daemon.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('connect', () => {
      socket.write(head);
      keepWriting?.(socket);
    });
    setTimeout(() => reject(new Error('the server never answered')), 20_000).unref();
  });
}

const jobPath = '/v1/jobs';
function jsonOfSize(size: number): string {
  const core = JSON.stringify({ v: 1, kind: 'preview', imageId: 'AAAAAAAAAAAAAAAAAAAAAA', edit: { source: 'cat', target: 'dog' } });
  return core + ' '.repeat(size - core.length);
}

describe('JSON body limit', () => {
  it('exactly 64 KiB is read and parsed (the image is unknown: 404)', async () => {
    const body = jsonOfSize(BODY_LIMITS.jsonBytes);
    expect(Buffer.byteLength(body)).toBe(64 * 1024);
    const reply = await send(t.daemon, { method: 'POST', path: jobPath, token: t.token, body, headers: { 'Content-Type': 'application/json' } });
    expect(reply.status).toBe(404);
    expect(codeOf(reply)).toBe('E_NOT_FOUND');
  });

  it('one byte more → 413 E_PAYLOAD_TOO_LARGE', async () => {
    const body = jsonOfSize(BODY_LIMITS.jsonBytes + 1);
    const reply = await send(t.daemon, { method: 'POST', path: jobPath, token: t.token, body, headers: { 'Content-Type': 'application/json' } });
    expect(reply.status).toBe(413);
    expect(codeOf(reply)).toBe('E_PAYLOAD_TOO_LARGE');
  });

  it('one byte more, chunked (no Content-Length) → 413 while streaming', async () => {
    const body = jsonOfSize(BODY_LIMITS.jsonBytes + 1);
    const reply = await send(t.daemon, {
      method: 'POST',
      path: jobPath,
      token: t.token,
      body,
      headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
    });
    expect(reply.status).toBe(413);
  });
});

describe('image body limit', () => {
  it('exactly 50 MiB is accepted (a PNG header padded with data)', async () => {
    const body = Buffer.alloc(BODY_LIMITS.imageBytes);
    pngHeader(64, 48).copy(body);
    const reply = await send(t.daemon, { method: 'POST', path: '/v1/images', token: t.token, body, headers: { 'Content-Type': 'image/png' } });
    expect(reply.status).toBe(201);
    expect(reply.json).toMatchObject({ width: 64, height: 48, format: 'png' });
  });

  it('one byte more → 413', async () => {
    const body = Buffer.alloc(BODY_LIMITS.imageBytes + 1);
    pngHeader(64, 48).copy(body);
    const reply = await send(t.daemon, { method: 'POST', path: '/v1/images', token: t.token, body, headers: { 'Content-Type': 'image/png' } });
    expect(reply.status).toBe(413);
    expect(codeOf(reply)).toBe('E_PAYLOAD_TOO_LARGE');
  });
});

describe('413 without buffering the rest', () => {
  it('a declared 10 GB upload with only a few bytes sent is answered at once and closed', async () => {
    const head =
      `POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1:${t.daemon.port}\r\nAuthorization: Bearer ${t.token}\r\n` +
      `Content-Type: image/png\r\nContent-Length: 10000000000\r\n\r\n\x89PNG`;
    // The rest of the body is never sent: an answer proves the server did not wait for it.
    const answer = await rawExchange(head);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('E_PAYLOAD_TOO_LARGE');
    expect(answer.toLowerCase()).toContain('connection: close');
  });

  it('a chunked upload that passes the limit is cut off while it keeps streaming', async () => {
    const head =
      `POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:${t.daemon.port}\r\nAuthorization: Bearer ${t.token}\r\n` +
      `Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const chunk = 'x'.repeat(16 * 1024);
    let writer: NodeJS.Timeout | undefined;
    const answer = await rawExchange(head, (socket) => {
      // Keeps sending forever; only the server can end this exchange.
      writer = setInterval(() => {
        if (!socket.destroyed) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      }, 5);
    });
    clearInterval(writer);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
  });
});

describe('slow and malformed clients (R22)', () => {
  it('a slow-loris client that never finishes its headers is answered 408 and disconnected', async () => {
    let writer: NodeJS.Timeout | undefined;
    const answer = await rawExchange(
      `GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${slow.daemon.port}\r\n`,
      (socket) => {
        writer = setInterval(() => {
          if (!socket.destroyed) socket.write('X-Slow: a\r\n');
        }, 50);
      },
      slow,
    );
    clearInterval(writer);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('E_TIMEOUT');
  });

  it('a body that trickles past the request timeout is cut off', async () => {
    let writer: NodeJS.Timeout | undefined;
    const head =
      `POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:${slow.daemon.port}\r\nAuthorization: Bearer ${slow.token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{`;
    const answer = await rawExchange(
      head,
      (socket) => {
        writer = setInterval(() => {
          if (!socket.destroyed) socket.write(' ');
        }, 50);
      },
      slow,
    );
    clearInterval(writer);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"code":"E_TIMEOUT"');
  });

  it('oversized headers → 431 with a JSON body', async () => {
    const answer = await rawExchange(`GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:${t.daemon.port}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).toContain('"code":"E_BAD_REQUEST"');
  });

  it('garbage instead of HTTP → 400 JSON', async () => {
    const answer = await rawExchange('HELLO THERE\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"code":"E_BAD_REQUEST"');
  });

  it('the daemons still answer after all of this', async () => {
    expect((await send(t.daemon, { path: '/v1/health' })).status).toBe(200);
    expect((await send(slow.daemon, { path: '/v1/health' })).status).toBe(200);
  });
});
