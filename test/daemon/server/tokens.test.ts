// The owner's token management (docs/SECURITY.md §R4, issue 16 finding 2): list with name, created and last used;
// create named tokens; revoke any client token at once, on HTTP and on open event streams (closed
// with WS_CLOSE_TOKEN_REVOKED after a protocol-error); optional expiry of tokens unused for N days.
// Only the CLI token may manage tokens.
import { readFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  PairResponse,
  PROTOCOL_VERSION,
  TokenCreateResponse,
  TokensResponse,
  WS_CLOSE_TOKEN_REVOKED,
} from '../../../shared/protocol/index.js';
import { codeOf, EventClient, send, startTestDaemon, type TestDaemon } from './helpers.js';

const DAY = 24 * 60 * 60 * 1000;
let t: TestDaemon | undefined;
afterEach(async () => {
  await t?.stop();
  t = undefined;
});

async function pair(d: TestDaemon, client: string): Promise<string> {
  const { code } = d.daemon.pairingCode();
  return PairResponse.parse((await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code, client } })).json).token;
}

async function listTokens(d: TestDaemon) {
  const reply = await send(d.daemon, { path: '/v1/tokens', token: d.cliToken });
  expect(reply.status).toBe(200);
  return TokensResponse.parse(reply.json);
}

async function openStream(d: TestDaemon, token: string, clientId: string): Promise<EventClient> {
  const events = EventClient.connect(d.daemon);
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId });
  await events.next((e) => e['type'] === 'welcome');
  return events;
}

describe('owner revocation', () => {
  it('a revoked token is refused on HTTP at once and its open event stream is closed with 4001', async () => {
    t = await startTestDaemon();
    const stolen = await pair(t, 'photopea');
    const events = await openStream(t, stolen, 'client-stolen');
    const other = await openStream(t, t.token, 'client-other');
    const listed = await listTokens(t);
    const entry = listed.tokens.find((x) => x.name === 'photopea');
    expect(entry).toBeDefined();

    const revoked = await send(t.daemon, { method: 'DELETE', path: `/v1/tokens/${entry?.id}`, token: t.cliToken });
    expect(revoked.status).toBe(200);
    expect(await events.closed).toBe(WS_CLOSE_TOKEN_REVOKED);
    const why = events.events.find((e) => e['type'] === 'protocol-error') as { error: { code: string; message: string } } | undefined;
    expect(why?.error.code).toBe('E_UNAUTHORIZED');
    expect(why?.error.message).toMatch(/revoked/);
    const refused = await send(t.daemon, { path: '/v1/models', token: stolen });
    expect(refused.status).toBe(401);
    // A new event stream with it is refused too; the other client is untouched.
    const again = EventClient.connect(t.daemon);
    await again.opened;
    again.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token: stolen, clientId: 'client-again' });
    expect(await again.closed).toBe(1008);
    expect(other.closeCode).toBeUndefined();
    expect((await send(t.daemon, { path: '/v1/models', token: t.token })).status).toBe(200);
    expect((await listTokens(t)).tokens.map((x) => x.id)).not.toContain(entry?.id);
    other.ws.close();
  });

  it('revokes by a unique name; a shared name must be given by id; unknown → 404', async () => {
    t = await startTestDaemon();
    const a = await pair(t, 'figma');
    await pair(t, 'figma');
    const shared = await send(t.daemon, { method: 'DELETE', path: '/v1/tokens/figma', token: t.cliToken });
    expect(shared.status).toBe(400);
    expect(codeOf(shared)).toBe('E_BAD_REQUEST');
    expect(((shared.json as { hint: string }).hint)).toMatch(/id/);
    const unknown = await send(t.daemon, { method: 'DELETE', path: '/v1/tokens/nobody-at-all', token: t.cliToken });
    expect(unknown.status).toBe(404);
    const made = TokenCreateResponse.parse((await send(t.daemon, { method: 'POST', path: '/v1/tokens', token: t.cliToken, json: { v: PROTOCOL_VERSION, name: 'anna laptop' } })).json);
    expect((await send(t.daemon, { path: '/v1/models', token: made.token })).status).toBe(200);
    expect((await send(t.daemon, { method: 'DELETE', path: `/v1/tokens/${encodeURIComponent('anna laptop')}`, token: t.cliToken })).status).toBe(200);
    expect((await send(t.daemon, { path: '/v1/models', token: made.token })).status).toBe(401);
    expect((await send(t.daemon, { path: '/v1/models', token: a })).status).toBe(200);
  });

  it('only the CLI token may list, create or revoke', async () => {
    t = await startTestDaemon();
    const id = (await listTokens(t)).tokens[0]?.id;
    for (const req of [
      { path: '/v1/tokens' },
      { method: 'POST', path: '/v1/tokens', json: { v: PROTOCOL_VERSION, name: 'mallory' } },
      { method: 'DELETE', path: `/v1/tokens/${id}` },
    ]) {
      expect((await send(t.daemon, { ...req, token: t.token })).status).toBe(401);
      expect((await send(t.daemon, req)).status).toBe(401);
    }
    expect((await listTokens(t)).tokens.length).toBe(1);
  });

  it('lists name, created and last used (never the token or its hash); last use is kept on disk', async () => {
    let now = Date.UTC(2026, 11, 1, 12, 0);
    t = await startTestDaemon({ tokens: { now: () => now } });
    const listed = await listTokens(t);
    expect(listed.expireUnusedDays).toBeNull();
    expect(listed.tokens).toEqual([{ id: expect.any(String), name: 'plugin', createdAt: now, lastUsedAt: null, kind: 'client' }]);
    now += 5 * 60_000;
    await send(t.daemon, { path: '/v1/models', token: t.token });
    expect((await listTokens(t)).tokens[0]?.lastUsedAt).toBe(now);
    expect(JSON.stringify(listed)).not.toContain(t.token.slice(5, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(JSON.parse(await readFile(t.daemon.paths.tokens, 'utf8')).tokens[0].lastUsedAt).toBe(now);
  });
});

describe('expiry of unused tokens', () => {
  it('a token unused for longer than N days is refused and forgotten; a used one lives on', async () => {
    let now = Date.UTC(2026, 11, 1, 12, 0);
    t = await startTestDaemon({ tokens: { expireUnusedDays: 7, now: () => now } });
    const idle = await pair(t, 'idle');
    const busy = await pair(t, 'busy');
    expect((await listTokens(t)).expireUnusedDays).toBe(7);
    for (let day = 0; day < 10; day++) {
      now += DAY;
      expect((await send(t.daemon, { path: '/v1/models', token: busy })).status).toBe(200);
    }
    expect((await send(t.daemon, { path: '/v1/models', token: idle })).status).toBe(401);
    const names = (await listTokens(t)).tokens.map((x) => x.name);
    expect(names).toContain('busy');
    expect(names).not.toContain('idle');
    // Day 6 of the first pairing's silence: still valid.
    now += 6 * DAY;
    expect((await send(t.daemon, { path: '/v1/models', token: busy })).status).toBe(200);
  });

  it('an expired token cannot open an event stream', async () => {
    let now = Date.UTC(2026, 11, 1, 12, 0);
    t = await startTestDaemon({ tokens: { expireUnusedDays: 1, now: () => now } });
    now += 2 * DAY;
    const c = EventClient.connect(t.daemon);
    await c.opened;
    c.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token: t.token, clientId: 'client-expired' });
    expect(await c.closed).toBe(1008);
  });
});
