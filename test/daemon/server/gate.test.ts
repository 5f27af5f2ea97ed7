// The gate in front of every route (docs/SECURITY.md §R2, §R3, §R5, §R6, §R7, §R8 headers): host and origin allowlists,
// CORS preflights, the token on every non-public route, content-type and encoding rules, and JSON
// answers for unknown paths and methods.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorResponse, PHOTOPEA_ORIGIN, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { codeOf, send, startTestDaemon, type TestDaemon } from './helpers.js';

let t: TestDaemon;
beforeAll(async () => {
  t = await startTestDaemon();
});
afterAll(async () => {
  await t.stop();
});

const SOME_ID = 'AAAAAAAAAAAAAAAAAAAAAA';

/** Every (method, path) registered on the express app, found by walking its router stack. */
function registeredRoutes(): Array<{ method: string; path: string }> {
  const routes: Array<{ method: string; path: string }> = [];
  for (const layer of t.daemon.app.router.stack) {
    if (!layer.route) continue;
    for (const sub of layer.route.stack) {
      if (sub.method) routes.push({ method: sub.method.toUpperCase(), path: layer.route.path });
    }
  }
  return routes;
}

describe('token gate (R3)', () => {
  it('finds the routes the service is meant to have', () => {
    const names = registeredRoutes().map((r) => `${r.method} ${r.path}`);
    expect(names.sort()).toEqual(
      [
        'GET /v1/health',
        'POST /v1/pair',
        'POST /v1/pairing-code',
        'DELETE /v1/tokens/current',
        'GET /v1/tokens',
        'POST /v1/tokens',
        'DELETE /v1/tokens/:idOrName',
        'POST /v1/images',
        'POST /v1/jobs',
        'GET /v1/jobs/:id',
        'DELETE /v1/jobs/:id',
        'GET /v1/results/:id',
        'GET /v1/models',
        'GET /',
        'GET /photopea',
      ].sort(),
    );
  });

  it('answers 401 E_UNAUTHORIZED on every registered route without a token, except health, pairing and the two static pages', async () => {
    // The routes open without a token, with the status each answers without one. The pages are
    // deliberately public static HTML (routes/pages.ts); the API calls they make need a token.
    const open: Record<string, number> = {
      'GET /v1/health': 200,
      // Reaches the route (no 401 for missing token): the code is just wrong.
      'POST /v1/pair': 400,
      'GET /': 200,
      'GET /photopea': 200,
    };
    const routes = registeredRoutes();
    let checked = 0;
    for (const { method, path } of routes) {
      const url = path.replace(':idOrName', SOME_ID).replace(':id', SOME_ID);
      const reply = await send(t.daemon, { method, path: url, ...(method === 'GET' || method === 'DELETE' ? {} : { json: { v: 1 } }) });
      const openStatus = open[`${method} ${path}`];
      if (openStatus !== undefined) {
        expect({ route: `${method} ${path}`, status: reply.status }).toEqual({ route: `${method} ${path}`, status: openStatus });
        continue;
      }
      expect({ route: `${method} ${path}`, status: reply.status, code: codeOf(reply) }).toEqual({
        route: `${method} ${path}`,
        status: 401,
        code: 'E_UNAUTHORIZED',
      });
      checked++;
    }
    expect(checked).toBe(routes.length - Object.keys(open).length);
  });

  it('rejects wrong, malformed and revoked-looking tokens, and tokens in the URL', async () => {
    for (const token of ['p2pz_' + 'A'.repeat(43), 'nonsense', `${t.token}x`, t.token.slice(0, -1)]) {
      const reply = await send(t.daemon, { path: '/v1/models', token });
      expect(reply.status).toBe(401);
    }
    const inUrl = await send(t.daemon, { path: `/v1/models?token=${t.token}` });
    expect(inUrl.status).toBe(401);
    expect((await send(t.daemon, { path: '/v1/models', token: t.token })).status).toBe(200);
    expect((await send(t.daemon, { path: '/v1/models', token: t.cliToken })).status).toBe(200);
  });

  it('does not open protected routes through case or slash variants', async () => {
    for (const path of ['/V1/health/../models', '/v1/health/', '/V1/HEALTH', '/v1//health', '/v1/pair/']) {
      const reply = await send(t.daemon, { path });
      expect({ path, status: reply.status, code: codeOf(reply) }).toEqual({ path, status: 401, code: 'E_UNAUTHORIZED' });
    }
  });
});

describe('Host allowlist (R2)', () => {
  const table: Array<[string, number]> = [
    ['attacker.example', 403],
    [`attacker.example:PORT`, 403],
    ['localhost', 403],
    ['127.0.0.1:1', 403],
    ['127.0.0.2:PORT', 403],
    ['localhost.attacker.example:PORT', 403],
    ['localhost:PORT', 200],
    ['LOCALHOST:PORT', 200],
    ['127.0.0.1:PORT', 200],
    ['[::1]:PORT', 200],
  ];
  it.each(table)('Host: %s → %i', async (host, status) => {
    const reply = await send(t.daemon, { path: '/v1/health', headers: { Host: host.replace('PORT', String(t.daemon.port)) } });
    expect(reply.status).toBe(status);
    if (status === 403) expect(codeOf(reply)).toBe('E_FORBIDDEN_HOST');
  });

  it('refuses a bad Host even with a valid token', async () => {
    const reply = await send(t.daemon, { path: '/v1/models', token: t.token, headers: { Host: 'attacker.example' } });
    expect(reply.status).toBe(403);
    expect(codeOf(reply)).toBe('E_FORBIDDEN_HOST');
  });
});

/** Writes `head` on a raw connection and resolves with everything the server sent until it closed. */
function rawExchange(head: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(t.daemon.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c) => {
      text += c.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text));
    socket.on('connect', () => socket.write(head));
  });
}

describe('duplicate Host headers (R2, RFC 9112 §3.2)', () => {
  // Node's parser keeps only the first Host of a request (req.headers.host), so a rebinding page's
  // name in a second Host would go unseen by the allowlist: the gate counts Host in rawHeaders.
  const own = (): string => `127.0.0.1:${t.daemon.port}`;
  it.each([
    ['own, then foreign', () => [own(), 'attacker.example']],
    ['foreign, then own', () => ['attacker.example', own()]],
    ['own twice', () => [own(), own()]],
  ])('%s → 400 E_BAD_REQUEST', async (_name, hosts) => {
    const lines = ['GET /v1/health HTTP/1.1', ...hosts().map((h) => `Host: ${h}`), 'Connection: close'];
    const answer = await rawExchange(`${lines.join('\r\n')}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('"code":"E_BAD_REQUEST"');
  });

  it('one Host (any case of the name) still passes', async () => {
    const answer = await rawExchange(`GET /v1/health HTTP/1.1\r\nhOsT: ${own()}\r\nConnection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
  });
});

describe('Origin allowlist (R5)', () => {
  const own = (): string => `http://127.0.0.1:${t.daemon.port}`;
  const table: Array<[string, () => string | undefined, boolean]> = [
    ['absent (non-browser)', () => undefined, true],
    ['null (Figma iframe)', () => 'null', true],
    ['Photopea', () => PHOTOPEA_ORIGIN, true],
    ['own origin', own, true],
    ['own origin via localhost', () => `http://localhost:${t.daemon.port}`, true],
    ['evil.example', () => 'https://evil.example', false],
    ['photopea over http', () => 'http://www.photopea.com', false],
    ['photopea lookalike', () => 'https://www.photopea.com.evil.example', false],
    ['own host, other port', () => `http://127.0.0.1:${t.daemon.port + 1}`, false],
  ];
  it.each(table)('%s', async (_name, origin, allowed) => {
    const o = origin();
    const headers: Record<string, string> = o === undefined ? {} : { Origin: o };
    for (const token of [undefined, t.token]) {
      const reply = await send(t.daemon, { path: '/v1/models', headers, ...(token ? { token } : {}) });
      if (!allowed) {
        expect(reply.status).toBe(403);
        expect(codeOf(reply)).toBe('E_FORBIDDEN_ORIGIN');
        expect(reply.headers['access-control-allow-origin']).toBeUndefined();
      } else {
        expect(reply.status).toBe(token ? 200 : 401);
        expect(reply.headers['access-control-allow-origin']).toBe(o);
      }
      // Never credentials.
      expect(reply.headers['access-control-allow-credentials']).toBeUndefined();
      expect(reply.headers['set-cookie']).toBeUndefined();
    }
  });
});

describe('CORS preflights (R6)', () => {
  const preflight = (origin: string, extra: Record<string, string> = {}) =>
    send(t.daemon, {
      method: 'OPTIONS',
      path: '/v1/jobs',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type', ...extra },
    });

  it('answers allowed origins with methods and headers, no credentials', async () => {
    for (const origin of ['null', PHOTOPEA_ORIGIN]) {
      const reply = await preflight(origin);
      expect(reply.status).toBe(204);
      expect(reply.headers['access-control-allow-origin']).toBe(origin);
      expect(reply.headers['access-control-allow-methods']).toContain('POST');
      expect(String(reply.headers['access-control-allow-headers']).toLowerCase()).toContain('authorization');
      expect(reply.headers['access-control-allow-credentials']).toBeUndefined();
      expect(reply.headers['access-control-allow-private-network']).toBeUndefined();
    }
  });

  it('grants Private / Local Network Access only when asked, to allowed origins', async () => {
    const pna = await preflight(PHOTOPEA_ORIGIN, { 'Access-Control-Request-Private-Network': 'true' });
    expect(pna.status).toBe(204);
    expect(pna.headers['access-control-allow-private-network']).toBe('true');
    const lna = await preflight('null', { 'Access-Control-Request-Local-Network': 'true' });
    expect(lna.headers['access-control-allow-local-network']).toBe('true');
  });

  it('refuses preflights from other origins, with or without the PNA header', async () => {
    for (const extra of [{}, { 'Access-Control-Request-Private-Network': 'true' }] as Array<Record<string, string>>) {
      const reply = await preflight('https://evil.example', extra);
      expect(reply.status).toBe(403);
      expect(codeOf(reply)).toBe('E_FORBIDDEN_ORIGIN');
      expect(reply.headers['access-control-allow-origin']).toBeUndefined();
      expect(reply.headers['access-control-allow-private-network']).toBeUndefined();
    }
  });
});

describe('content types and encodings (R7, R8)', () => {
  const jobBody = JSON.stringify({ v: 1, kind: 'preview', imageId: 'AAAAAAAAAAAAAAAAAAAAAA', edit: { source: 'cat', target: 'dog' } });
  const table: Array<[string, string, string]> = [
    ['text/plain', '/v1/jobs', jobBody],
    ['text/plain;charset=UTF-8', '/v1/jobs', jobBody],
    ['application/x-www-form-urlencoded', '/v1/jobs', 'v=1&kind=preview'],
    ['multipart/form-data; boundary=x', '/v1/jobs', '--x\r\n\r\n--x--'],
    ['application/json; charset=latin1', '/v1/jobs', jobBody],
    ['application/jsonx', '/v1/jobs', jobBody],
    ['text/plain', '/v1/images', 'x'],
    ['image/jpg', '/v1/images', 'x'],
    ['image/png; foo=bar', '/v1/images', 'x'],
    ['image/svg+xml', '/v1/images', '<svg/>'],
    ['application/json', '/v1/images', '{}'],
    ['image/png', '/v1/jobs', 'x'],
    ['text/plain', '/v1/pair', '{"v":1,"code":"123456"}'],
  ];
  it.each(table)('%s to %s → 415', async (type, path, body) => {
    const reply = await send(t.daemon, { method: 'POST', path, token: t.token, body, headers: { 'Content-Type': type } });
    expect(reply.status).toBe(415);
    expect(codeOf(reply)).toBe('E_UNSUPPORTED_MEDIA_TYPE');
    expect(ErrorResponse.safeParse(reply.json).success).toBe(true);
  });

  it('a POST body without Content-Type → 415', async () => {
    const reply = await send(t.daemon, { method: 'POST', path: '/v1/jobs', token: t.token, body: jobBody });
    expect(reply.status).toBe(415);
  });

  it.each(['gzip', 'deflate', 'br', 'identity, gzip'])('Content-Encoding: %s → 415', async (encoding) => {
    const reply = await send(t.daemon, {
      method: 'POST',
      path: '/v1/jobs',
      token: t.token,
      body: Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]),
      headers: { 'Content-Type': 'application/json', 'Content-Encoding': encoding },
    });
    expect(reply.status).toBe(415);
    expect(codeOf(reply)).toBe('E_UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('JSON answers for everything', () => {
  it('unknown path with a token → 404 JSON', async () => {
    const reply = await send(t.daemon, { path: '/v1/nothing-here', token: t.token });
    expect(reply.status).toBe(404);
    expect(ErrorResponse.parse(reply.json).code).toBe('E_NOT_FOUND');
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
  });

  it('known path, wrong method → 405 JSON', async () => {
    const reply = await send(t.daemon, { method: 'PUT', path: '/v1/models', token: t.token, json: { v: 1 } });
    expect(reply.status).toBe(405);
    expect(codeOf(reply)).toBe('E_METHOD_NOT_ALLOWED');
  });

  it('a malformed %-escape in a path → 400 JSON, no HTML', async () => {
    const reply = await send(t.daemon, { path: '/v1/jobs/%E0%A4%A', token: t.token });
    expect(reply.status).toBe(400);
    expect(codeOf(reply)).toBe('E_BAD_REQUEST');
    expect(reply.text).not.toMatch(/<html|<pre/i);
  });

  it('errors carry v and nothing else but code, message, hint', async () => {
    const reply = await send(t.daemon, { path: '/v1/models' });
    expect(Object.keys(reply.json as object).sort()).toEqual(['code', 'hint', 'message', 'v']);
    expect((reply.json as { v: number }).v).toBe(PROTOCOL_VERSION);
    expect(reply.headers['x-powered-by']).toBeUndefined();
    expect(reply.headers['cache-control']).toBe('no-store');
  });
});

describe('remote mode (R1)', () => {
  it('with a remote bind address, health needs a token too and that address is an allowed Host', async () => {
    const { createServer } = await import('node:http');
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { createGate } = await import('../../../daemon/server/gate.js');
    const { BODY_LIMITS } = await import('../../../daemon/server/body.js');
    const { TokenStore } = await import('../../../daemon/server/tokens.js');
    const dir = await mkdtemp(join(tmpdir(), 'p2pz-gate-'));
    const tokens = await TokenStore.open({ cliToken: join(dir, 'token'), tokens: join(dir, 'tokens.json') });
    let port = 0;
    const gate = createGate({ port: () => port, extraHostNames: ['192.168.1.5'], tokens, limits: BODY_LIMITS, healthNeedsToken: true });
    const server = createServer((req, res) => gate.http(req, res, () => res.end('passed')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    try {
      const remoteHost = { Host: `192.168.1.5:${port}` };
      expect((await send({ port }, { path: '/v1/health', headers: remoteHost })).status).toBe(401);
      const ok = await send({ port }, { path: '/v1/health', headers: remoteHost, token: tokens.cliToken() });
      expect(ok.text).toBe('passed');
      expect((await send({ port }, { path: '/v1/health', headers: { Host: `192.168.1.6:${port}` }, token: tokens.cliToken() })).status).toBe(403);
      // Pairing stays open (rate-limited) so a remote plugin can pair.
      expect((await send({ port }, { method: 'POST', path: '/v1/pair', headers: remoteHost, json: { v: 1 } })).text).toBe('passed');
    } finally {
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('startDaemon refuses a non-loopback host without allowRemote', async () => {
    const { startDaemon } = await import('../../../daemon/daemon.js');
    await expect(startDaemon({ host: '0.0.0.0', port: 0, home: t.home })).rejects.toMatchObject({ code: 'E_LISTEN_REFUSED' });
  });

  it('the test daemon listens on 127.0.0.1', () => {
    expect(t.daemon.url).toBe(`http://127.0.0.1:${t.daemon.port}`);
  });
});
