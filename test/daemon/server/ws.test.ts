// The event stream (docs/SECURITY.md §R11, §R12): upgrade through the Host/Origin gate, hello with the token first and
// in time, no compression, 64 KiB frames (over → 1009), connections per token capped, dead peers
// terminated by the heartbeat, bad messages answered with `protocol-error` while the connection stays.
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { EVENTS_SUBPROTOCOL, EVENTS_TOKEN_PROTOCOL_PREFIX, PHOTOPEA_ORIGIN, PROTOCOL_VERSION, ServerEvent, WelcomeEvent } from '../../../shared/protocol/index.js';
import { EventClient, startTestDaemon, type TestDaemon } from './helpers.js';

let t: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon({ ws: { helloTimeoutMs: 500, heartbeatMs: 400, maxConnectionsPerToken: 3 } });
});
afterAll(async () => {
  await t.stop();
});

const hello = (clientId = 'ws-client-01', token = t.token) => ({ v: PROTOCOL_VERSION, type: 'hello', token, clientId });

async function open(headers: Record<string, string> = { Origin: 'null' }): Promise<EventClient> {
  const c = EventClient.connect(t.daemon, headers);
  await c.opened;
  return c;
}

/** Sends a raw upgrade request and resolves with what the server answered until it closed (or 2 KB). */
function rawUpgrade(headers: Record<string, string>, path = '/v1/events'): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(t.daemon.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c) => {
      text += c.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
    socket.on('connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
  });
}

describe('upgrade gate', () => {
  it('a bad Host is refused with 403, no switch of protocols', async () => {
    const answer = await rawUpgrade({ Host: 'attacker.example' });
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('E_FORBIDDEN_HOST');
    expect(answer).not.toContain('101');
  });

  it('a foreign Origin is refused with 403', async () => {
    const answer = await rawUpgrade({ Host: `127.0.0.1:${t.daemon.port}`, Origin: 'https://evil.example' });
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('E_FORBIDDEN_ORIGIN');
  });

  it('two Host headers are refused with 400, even when both name the daemon', async () => {
    const own = `127.0.0.1:${t.daemon.port}`;
    for (const second of [own, 'attacker.example']) {
      const answer = await rawUpgrade({ Host: own, host: second });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('E_BAD_REQUEST');
    }
  });

  it('another path → 404', async () => {
    const answer = await rawUpgrade({ Host: `127.0.0.1:${t.daemon.port}` }, '/v1/other');
    expect(answer).toMatch(/^HTTP\/1\.1 404 /);
  });

  it.each([['null'], [PHOTOPEA_ORIGIN], ['none']])('Origin %s is accepted', async (origin) => {
    const c = await open(origin === 'none' ? {} : { Origin: origin });
    c.sendJson(hello());
    expect(WelcomeEvent.parse(await c.next((e) => e['type'] === 'welcome')).health.name).toBe('p2pz');
    c.ws.close();
  });

  it('compression is never negotiated', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${t.daemon.port}/v1/events`, { perMessageDeflate: true, headers: { Origin: 'null' } });
    await new Promise((resolve) => ws.once('open', resolve));
    expect(ws.extensions).toBe('');
    ws.close();
  });
});

describe('hello', () => {
  it('a wrong token → protocol-error E_UNAUTHORIZED and close 1008', async () => {
    const c = await open();
    c.sendJson(hello('ws-client-01', `p2pz_${'A'.repeat(43)}`));
    const err = await c.next((e) => e['type'] === 'protocol-error').catch(() => undefined);
    expect((err?.['error'] as { code: string } | undefined)?.code).toBe('E_UNAUTHORIZED');
    expect(await c.closed).toBe(1008);
  });

  it('no hello in time → close 1008', async () => {
    const c = await open();
    expect(await c.closed).toBe(1008);
  });

  it.each([
    ['ping', (c: EventClient) => c.sendJson({ v: PROTOCOL_VERSION, type: 'ping', nonce: 1 })],
    ['not JSON', (c: EventClient) => c.ws.send('{"broken')],
  ])('a first frame other than hello (%s) → protocol-error and close 1008: no waiting without hello', async (_name, first) => {
    const c = await open();
    first(c);
    expect(await c.closed).toBe(1008);
    expect(c.events.some((e) => e['type'] === 'pong')).toBe(false);
    expect(c.events.some((e) => e['type'] === 'protocol-error')).toBe(true);
  });

  it(`caps connections per token (3 here); the one over is refused with E_RATE_LIMITED`, async () => {
    const clients: EventClient[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await open();
      c.sendJson(hello(`ws-cap-0000${i}`));
      await c.next((e) => e['type'] === 'welcome');
      clients.push(c);
    }
    const over = await open();
    over.sendJson(hello('ws-cap-00009'));
    const err = await over.next((e) => e['type'] === 'protocol-error').catch(() => undefined);
    expect((err?.['error'] as { code: string } | undefined)?.code).toBe('E_RATE_LIMITED');
    expect(await over.closed).toBe(1008);
    // Another token is not affected.
    const cli = await open();
    cli.sendJson(hello('ws-cap-cli01', t.cliToken));
    await cli.next((e) => e['type'] === 'welcome');
    for (const c of [...clients, cli]) c.ws.close();
    await Promise.all([...clients, cli].map((c) => c.closed));
  });
});

describe('bad messages keep the connection (R12)', () => {
  it('not JSON, unknown type, other version, binary, bad fields → protocol-error each; ping still answered', async () => {
    const c = await open();
    c.sendJson(hello('ws-bad-msgs1'));
    await c.next((e) => e['type'] === 'welcome');
    c.ws.send('{"v":1,');
    c.sendJson({ v: PROTOCOL_VERSION, type: 'subscribe-everything' });
    c.sendJson({ v: 2, type: 'ping' });
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    c.sendJson({ v: PROTOCOL_VERSION, type: 'cancel', jobId: '../../etc' });
    c.sendJson([1, 2, 3]);
    c.sendJson({ v: PROTOCOL_VERSION, type: 'cancel', jobId: 'unknown-job-1' });
    c.sendJson({ v: PROTOCOL_VERSION, type: 'ping', nonce: 42 });
    const pong = await c.next((e) => e['type'] === 'pong');
    expect(pong['nonce']).toBe(42);
    const codes = c.events.filter((e) => e['type'] === 'protocol-error').map((e) => (e['error'] as { code: string }).code);
    expect(codes).toEqual(['E_BAD_REQUEST', 'E_UNKNOWN_MESSAGE', 'E_PROTOCOL_VERSION', 'E_BAD_REQUEST', 'E_BAD_REQUEST', 'E_BAD_REQUEST', 'E_NOT_FOUND']);
    for (const e of c.events) expect(ServerEvent.safeParse(e).success).toBe(true);
    expect(c.closeCode).toBeUndefined();
    c.ws.close();
  });

  it('a frame over 64 KiB closes the connection with 1009', async () => {
    const c = await open();
    c.sendJson(hello('ws-oversize1'));
    await c.next((e) => e['type'] === 'welcome');
    c.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'ping', pad: 'x'.repeat(64 * 1024) }));
    expect(await c.closed).toBe(1009);
  });

  it('a frame just under 64 KiB is parsed and answered: the padded ping gets its pong, connection kept', async () => {
    const c = await open();
    c.sendJson(hello('ws-undersize'));
    await c.next((e) => e['type'] === 'welcome');
    const base = JSON.stringify({ v: PROTOCOL_VERSION, type: 'ping', nonce: 7 });
    c.ws.send(base.slice(0, -1) + ',"pad":"' + 'x'.repeat(64 * 1024 - base.length - 9) + '"}');
    const pong = await c.next((e) => e['type'] === 'pong');
    expect(pong['nonce']).toBe(7);
    c.ws.close();
  });
});

/** A client→server text frame (masked, as RFC 6455 requires), payload under 64 KiB. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] ?? 0)));
  return Buffer.concat([header, mask, masked]);
}

describe('heartbeat (R11)', () => {
  it('a peer that said hello but never answers pings is terminated', async () => {
    // A raw client: handshake and hello (so the hello timer is off), then it never answers a ping.
    const seen = await new Promise<Buffer>((resolve) => {
      const socket = connect(t.daemon.port, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (c) => {
        chunks.push(c);
        if (chunks.length === 1) socket.write(maskedTextFrame(JSON.stringify(hello('ws-silent-01'))));
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      socket.on('connect', () => {
        socket.write(
          `GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:${t.daemon.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
    });
    const text = seen.toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 101 /);
    expect(text).toContain('"type":"welcome"');
    // At least one ping frame (opcode 0x9) arrived before the server gave up.
    expect(seen.includes(Buffer.from([0x89, 0x00]))).toBe(true);
  });
});

describe('admission of sockets waiting for hello (docs/SECURITY.md §Event-stream admission)', () => {
  const connectFrom = (port: number, origin: string, protocols?: string[]): EventClient =>
    new EventClient(new WebSocket(`ws://127.0.0.1:${port}/v1/events`, protocols, { headers: { Origin: origin }, perMessageDeflate: false }));

  it('upgrades are never refused for the budget: a source over its share loses its oldest waiting socket (1013)', async () => {
    const small = await startTestDaemon({ ws: { maxPendingConnections: 4, maxPendingPerSource: 2, helloTimeoutMs: 10_000 } });
    try {
      const a = [connectFrom(small.daemon.port, 'null'), connectFrom(small.daemon.port, 'null')];
      await Promise.all(a.map((c) => c.opened));
      const b = [connectFrom(small.daemon.port, PHOTOPEA_ORIGIN), connectFrom(small.daemon.port, PHOTOPEA_ORIGIN)];
      await Promise.all(b.map((c) => c.opened));
      // A third from the first source: its own oldest goes, the other source is untouched.
      const a3 = connectFrom(small.daemon.port, 'null');
      await a3.opened;
      expect(await a[0]?.closed).toBe(1013);
      // The total is spent: a new source takes the place of the oldest socket of the largest source.
      const c = connectFrom(small.daemon.port, `http://127.0.0.1:${small.daemon.port}`);
      await c.opened;
      const closedB = await Promise.race([b[0]?.closed, a[1]?.closed]);
      expect(closedB).toBe(1013);
      // Whoever is still waiting can say hello.
      c.sendJson(hello('admitted-1', small.token));
      await c.next((e) => e['type'] === 'welcome');
      for (const x of [...a, ...b, a3, c]) x.ws.close();
    } finally {
      await small.stop();
    }
  });

  it('a socket that offers a valid token as a subprotocol waits in the reserve: never evicted; the token is never echoed', async () => {
    const small = await startTestDaemon({ ws: { maxPendingConnections: 2, maxPendingPerSource: 2, helloTimeoutMs: 10_000 } });
    try {
      const reserved = connectFrom(small.daemon.port, 'null', [EVENTS_SUBPROTOCOL, `${EVENTS_TOKEN_PROTOCOL_PREFIX}${small.token}`]);
      let upgradeHeaders = '';
      reserved.ws.on('upgrade', (res) => {
        upgradeHeaders = JSON.stringify(res.headers);
      });
      await reserved.opened;
      expect(reserved.ws.protocol).toBe(EVENTS_SUBPROTOCOL);
      expect(upgradeHeaders).not.toContain(small.token);
      // A wrong token in the subprotocol is just an ordinary waiting socket.
      const flood = Array.from({ length: 6 }, (_, i) =>
        connectFrom(small.daemon.port, 'null', i === 0 ? [EVENTS_SUBPROTOCOL, `${EVENTS_TOKEN_PROTOCOL_PREFIX}p2pz_${'B'.repeat(43)}`] : undefined),
      );
      await Promise.all(flood.map((c) => c.opened.catch(() => undefined)));
      const evicted = await Promise.all(flood.slice(0, 4).map((c) => c.closed));
      expect(evicted).toEqual([1013, 1013, 1013, 1013]);
      expect(reserved.closeCode).toBeUndefined();
      reserved.sendJson(hello('reserved-01', small.token));
      await reserved.next((e) => e['type'] === 'welcome');
      for (const x of [reserved, ...flood]) x.ws.close();
    } finally {
      await small.stop();
    }
  });

  it('40 sockets from one page kept opening: the plugin still gets in every time, with or without the reserve', async () => {
    const d = await startTestDaemon({ ws: { helloTimeoutMs: 2_000 } });
    let stop = false;
    let attempts = 0;
    const attacker = async (): Promise<void> => {
      while (!stop) {
        attempts += 1;
        const c = connectFrom(d.daemon.port, 'null');
        await c.opened.catch(() => undefined);
        await c.closed;
      }
    };
    try {
      const flood = Array.from({ length: 40 }, () => attacker());
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 0; i < 10; i += 1) {
        const protocols = i % 2 === 0 ? [EVENTS_SUBPROTOCOL, `${EVENTS_TOKEN_PROTOCOL_PREFIX}${d.token}`] : undefined;
        const c = connectFrom(d.daemon.port, 'null', protocols);
        c.ws.once('open', () => c.sendJson(hello(`plugin-client-${i}`, d.token)));
        await c.next((e) => e['type'] === 'welcome');
        c.ws.close();
        await c.closed;
      }
      expect(attempts).toBeGreaterThan(40);
    } finally {
      stop = true;
      await d.stop();
    }
  });
});
