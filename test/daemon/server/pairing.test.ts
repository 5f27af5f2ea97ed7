// Pairing and tokens (docs/SECURITY.md §R4): codes expire, work once, are burnt after wrong tries, attempts are capped
// per minute; tokens are stored hashed in a 0600 file, the CLI token file is 0600, and a client can
// revoke its own token (its event streams close too).
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { P2pzError, PairingCodeResponse, PairResponse, PHOTOPEA_ORIGIN, PROTOCOL_VERSION, WS_CLOSE_TOKEN_REVOKED } from '../../../shared/protocol/index.js';
import { Pairing, PAIRING_DEFAULTS } from '../../../daemon/server/pairing.js';
import { codeOf, EventClient, send, startTestDaemon, type TestDaemon } from './helpers.js';

function codeError(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof P2pzError ? err.code : 'not a P2pzError';
  }
}

/** A 6-digit code that is not `code`. */
const other = (code: string): string => String((Number(code) + 1) % 1_000_000).padStart(6, '0');

describe('Pairing (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a code is 6 digits and works exactly once', () => {
    const p = new Pairing();
    const { code } = p.newCode();
    expect(code).toMatch(/^[0-9]{6}$/);
    expect(codeError(() => p.redeem(code))).toBeUndefined();
    expect(codeError(() => p.redeem(code))).toBe('E_PAIRING_INVALID');
  });

  it('expires after 5 minutes', () => {
    vi.useFakeTimers();
    const p = new Pairing();
    const { code, expiresAt } = p.newCode();
    expect(expiresAt - Date.now()).toBe(5 * 60_000);
    vi.advanceTimersByTime(5 * 60_000 - 1);
    expect(p.active()).toBe(true);
    vi.advanceTimersByTime(1);
    expect(p.active()).toBe(false);
    expect(codeError(() => p.redeem(code))).toBe('E_PAIRING_INVALID');
  });

  it('is burnt after 5 wrong tries: even the right code then fails', () => {
    vi.useFakeTimers();
    const p = new Pairing();
    const { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTries; i++) {
      expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_INVALID');
      vi.advanceTimersByTime(7_000); // stay under the per-minute cap
    }
    expect(codeError(() => p.redeem(code))).toBe('E_PAIRING_INVALID');
    // A fresh code works again.
    const fresh = p.newCode();
    expect(codeError(() => p.redeem(fresh.code))).toBeUndefined();
  });

  it('4 wrong tries still leave the right code usable', () => {
    const p = new Pairing();
    const { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTries - 1; i++) expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_INVALID');
    expect(codeError(() => p.redeem(code))).toBeUndefined();
  });

  it('caps attempts per minute, right or wrong, and lifts the cap a minute later', () => {
    vi.useFakeTimers();
    const p = new Pairing({ maxWrongTries: 1000 });
    const { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxAttemptsPerMinute; i++) expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_INVALID');
    // Over the cap even the right code is refused, and the refusal does not consume it.
    expect(codeError(() => p.redeem(code))).toBe('E_PAIRING_RATE_LIMITED');
    vi.advanceTimersByTime(60_000);
    expect(codeError(() => p.redeem(code))).toBeUndefined();
  });

  it('a new code replaces the previous one', () => {
    const p = new Pairing();
    const first = p.newCode();
    const second = p.newCode();
    if (first.code !== second.code) expect(codeError(() => p.redeem(first.code))).toBe('E_PAIRING_INVALID');
    expect(codeError(() => p.redeem(second.code))).toBeUndefined();
  });
});

describe('pairing cannot be jammed from one source (docs/SECURITY.md §Pairing)', () => {
  const PAGE = 'null 127.0.0.1';
  const PHOTOPEA = `${PHOTOPEA_ORIGIN} 127.0.0.1`;

  it('wrong tries from one source burn the code for that source only; brute force gets 5 guesses per code', () => {
    vi.useFakeTimers();
    const p = new Pairing();
    const { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTries; i++) expect(codeError(() => p.redeem(other(code), PAGE))).toBe('E_PAIRING_INVALID');
    // Burnt for the guessing source: even the right code fails there.
    expect(codeError(() => p.redeem(code, PAGE))).toBe('E_PAIRING_INVALID');
    // Another source pairs with it.
    expect(codeError(() => p.redeem(code, PHOTOPEA))).toBeUndefined();
    vi.useRealTimers();
  });

  it('the per-minute cap is per source; a fresh code (p2pz pair) gives every source its budget back', () => {
    vi.useFakeTimers();
    const p = new Pairing();
    const first = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxAttemptsPerMinute; i++) codeError(() => p.redeem(other(first.code), PAGE));
    expect(codeError(() => p.redeem(first.code, PAGE))).toBe('E_PAIRING_RATE_LIMITED');
    expect(codeError(() => p.redeem(first.code, PHOTOPEA))).toBeUndefined();
    vi.advanceTimersByTime(60_000);
    const fresh = p.newCode();
    expect(codeError(() => p.redeem(fresh.code, PAGE))).toBeUndefined();
    vi.useRealTimers();
  });

  it('over HTTP: a null-origin page guessing without pause cannot keep Photopea or the daemon\'s own page from pairing', async () => {
    const d = await startTestDaemon();
    try {
      const { code } = d.daemon.pairingCode();
      const guesses = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: String(i).padStart(6, '0') === code ? '999999' : String(i).padStart(6, '0') }, headers: { Origin: 'null' } }),
        ),
      );
      expect(guesses.every((r) => r.status === 401 || r.status === 429)).toBe(true);
      expect(guesses.filter((r) => r.status === 401)).toHaveLength(PAIRING_DEFAULTS.maxAttemptsPerMinute);
      // The page's budget is spent; the owner pairs from Photopea with the same code.
      const photopea = await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code, client: 'photopea' }, headers: { Origin: PHOTOPEA_ORIGIN } });
      expect(photopea.status).toBe(200);
      // And with a fresh code from the terminal, from the daemon's own page.
      const fresh = d.daemon.pairingCode();
      for (let i = 0; i < 10; i += 1) await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: other(fresh.code) }, headers: { Origin: 'null' } });
      const own = await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: fresh.code, client: 'web' }, headers: { Origin: `http://127.0.0.1:${d.daemon.port}` } });
      expect(own.status).toBe(200);
    } finally {
      await d.stop();
    }
  });
});

describe('pairing over HTTP', () => {
  let t: TestDaemon;
  beforeAll(async () => {
    t = await startTestDaemon();
  });
  afterAll(async () => {
    await t.stop();
  });

  it('POST /v1/pair with the code → a token that works; the same code again → 401', async () => {
    const { code } = t.daemon.pairingCode();
    const first = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code, client: 'figma' }, headers: { Origin: 'null' } });
    expect(first.status).toBe(200);
    const { token } = PairResponse.parse(first.json);
    expect(token).toMatch(/^p2pz_[A-Za-z0-9_-]{43}$/);
    expect((await send(t.daemon, { path: '/v1/models', token })).status).toBe(200);
    const again = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
    expect(again.status).toBe(401);
    expect(codeOf(again)).toBe('E_PAIRING_INVALID');
  });

  it('malformed codes → 400 E_BAD_REQUEST; another version → E_PROTOCOL_VERSION', async () => {
    for (const code of ['12345', '1234567', 'abcdef', 123456]) {
      const reply = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
      expect(codeOf(reply)).toBe('E_BAD_REQUEST');
    }
    const v2 = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: 2, code: '123456' } });
    expect(v2.status).toBe(400);
    expect(codeOf(v2)).toBe('E_PROTOCOL_VERSION');
  });

  it('POST /v1/pairing-code needs the CLI token; a paired client token is refused', async () => {
    const byClient = await send(t.daemon, { method: 'POST', path: '/v1/pairing-code', token: t.token, json: { v: PROTOCOL_VERSION } });
    expect(byClient.status).toBe(401);
    const byCli = await send(t.daemon, { method: 'POST', path: '/v1/pairing-code', token: t.cliToken, json: { v: PROTOCOL_VERSION } });
    expect(byCli.status).toBe(200);
    const { code } = PairingCodeResponse.parse(byCli.json);
    const paired = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
    expect(paired.status).toBe(200);
  });

  it('token files are mode 0600 and hold only hashes of client tokens', async () => {
    expect((await stat(t.daemon.paths.cliToken)).mode & 0o777).toBe(0o600);
    expect((await stat(t.daemon.paths.tokens)).mode & 0o777).toBe(0o600);
    expect((await stat(t.daemon.paths.home)).mode & 0o777).toBe(0o700);
    const stored = await readFile(t.daemon.paths.tokens, 'utf8');
    expect(stored).not.toContain(t.token);
    expect(stored).not.toContain(t.token.slice(5));
    expect(JSON.parse(stored).tokens.length).toBeGreaterThanOrEqual(1);
  });

  it('DELETE /v1/tokens/current revokes the token and closes its event streams', async () => {
    const storedCount = async (): Promise<number> => (JSON.parse(await readFile(t.daemon.paths.tokens, 'utf8')) as { tokens: unknown[] }).tokens.length;
    const before = await storedCount();
    const { code } = t.daemon.pairingCode();
    const { token } = PairResponse.parse((await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } })).json);
    const hash = createHash('sha256').update(token).digest('hex');
    expect(await readFile(t.daemon.paths.tokens, 'utf8')).toContain(hash);
    expect(await storedCount()).toBe(before + 1);
    const events = EventClient.connect(t.daemon);
    await events.opened;
    events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: 'client-revoke' });
    await events.next((e) => e['type'] === 'welcome');
    const revoked = await send(t.daemon, { method: 'DELETE', path: '/v1/tokens/current', token });
    expect(revoked.status).toBe(204);
    expect(await events.closed).toBe(WS_CLOSE_TOKEN_REVOKED);
    expect((await send(t.daemon, { path: '/v1/models', token })).status).toBe(401);
    // Others keep working; the revoked hash is gone from the file.
    expect((await send(t.daemon, { path: '/v1/models', token: t.token })).status).toBe(200);
    expect(await storedCount()).toBe(before);
    expect(await readFile(t.daemon.paths.tokens, 'utf8')).not.toContain(hash);
  });

  it('the CLI token cannot be revoked over HTTP', async () => {
    const reply = await send(t.daemon, { method: 'DELETE', path: '/v1/tokens/current', token: t.cliToken });
    expect(reply.status).toBe(400);
    expect((await send(t.daemon, { path: '/v1/models', token: t.cliToken })).status).toBe(200);
  });

  it('guessing over HTTP hits the rate limit (429)', async () => {
    t.daemon.pairingCode();
    const statuses: number[] = [];
    for (let i = 0; i < PAIRING_DEFAULTS.maxAttemptsPerMinute + 2; i++) {
      statuses.push((await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: '000000' } })).status);
    }
    expect(statuses.at(-1)).toBe(429);
  });
});

describe('tokens survive a restart', () => {
  it('a paired token still works after the daemon restarts in the same home; the CLI token is the same', async () => {
    const t = await startTestDaemon();
    const { startDaemon } = await import('../../../daemon/daemon.js');
    const { silentLogger } = await import('../../../daemon/log.js');
    const { FakeEngine } = await import('./helpers.js');
    await t.daemon.close();
    const again = await startDaemon({ port: 0, home: t.home, engine: new FakeEngine(), log: silentLogger, models: async () => [] });
    try {
      expect((await send(again, { path: '/v1/models', token: t.token })).status).toBe(200);
      expect((await readFile(again.paths.cliToken, 'utf8')).trim()).toBe(t.cliToken);
    } finally {
      await again.close();
      await t.stop();
    }
  });
});
