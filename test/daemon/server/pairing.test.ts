// Pairing and tokens (docs/SECURITY.md §R4, §Pairing): codes expire and work once; the right code is
// accepted before any budget, wrong tries are capped per source (per code and per minute); tokens are stored hashed in a 0600 file, the CLI token file is 0600, and a client can
// revoke its own token (its event streams close too).
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { P2pzError, PAIRING_CODE, PairingCodeResponse, PairResponse, PHOTOPEA_ORIGIN, PROTOCOL_VERSION, WS_CLOSE_TOKEN_REVOKED } from '../../../shared/protocol/index.js';
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

/** A well-formed code (shown form) that is not `code`: its last symbol changed. */
const other = (code: string): string => {
  const last = code.at(-1) ?? '0';
  const i = PAIRING_CODE.alphabet.indexOf(last);
  return code.slice(0, -1) + PAIRING_CODE.alphabet[(i + 1) % PAIRING_CODE.alphabet.length];
};

describe('Pairing (fake timers)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a code is 8 symbols of Crockford base32 shown as XXXX-XXXX, and works exactly once', () => {
    const p = new Pairing();
    const { code } = p.newCode();
    expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(codeError(() => p.redeem(code))).toBeUndefined();
    expect(codeError(() => p.redeem(code))).toBe('E_PAIRING_INVALID');
  });

  it('every symbol of the alphabet turns up at every position (40 bits, not fewer)', () => {
    const p = new Pairing();
    const seen = Array.from({ length: PAIRING_CODE.length }, () => new Set<string>());
    // P(some symbol missing at some position in 2000 codes) ≤ 8·32·(31/32)^2000 < 10⁻²⁵.
    for (let n = 0; n < 2000; n += 1) [...p.newCode().code.replace('-', '')].forEach((ch, i) => seen[i]!.add(ch));
    expect(seen.map((s) => s.size)).toEqual(Array(PAIRING_CODE.length).fill(32));
  });

  it('is read as typed: any case, without the hyphen or with spaces, O as 0 and I or L as 1', () => {
    const p = new Pairing();
    const { code } = p.newCode();
    const typed = code.toLowerCase().replace('-', ' ').replace(/0/g, 'o').replace(/1/g, 'l');
    expect(codeError(() => p.redeem(` ${typed} `))).toBeUndefined();
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

  it('past 5 wrong tries at a code a source is answered 429, and the right code still pairs from it', () => {
    vi.useFakeTimers();
    const p = new Pairing();
    const { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTries; i++) {
      expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_INVALID');
      vi.advanceTimersByTime(7_000); // under the per-minute cap
    }
    expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_RATE_LIMITED');
    // The right code is checked before any budget.
    expect(codeError(() => p.redeem(code))).toBeUndefined();
    // A fresh code gives the source its per-code budget back.
    const fresh = p.newCode();
    vi.advanceTimersByTime(60_000);
    expect(codeError(() => p.redeem(other(fresh.code)))).toBe('E_PAIRING_INVALID');
  });

  it('past 10 wrong tries a minute a source is answered 429 (its further tries not recorded); the right code still pairs; a minute later it may guess again', () => {
    vi.useFakeTimers();
    const p = new Pairing({ maxWrongTries: 1000 });
    let { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTriesPerMinute; i++) expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_INVALID');
    for (let i = 0; i < 100; i++) expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_RATE_LIMITED');
    expect(codeError(() => p.redeem(code))).toBeUndefined();
    ({ code } = p.newCode());
    expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_RATE_LIMITED');
    vi.advanceTimersByTime(60_000);
    // The 100 refused tries were not recorded: the budget is whole again.
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTriesPerMinute; i++) expect(codeError(() => p.redeem(other(code)))).toBe('E_PAIRING_INVALID');
  });

  it('a new code replaces the previous one', () => {
    const p = new Pairing();
    const first = p.newCode();
    const second = p.newCode();
    if (first.code !== second.code) expect(codeError(() => p.redeem(first.code))).toBe('E_PAIRING_INVALID');
    expect(codeError(() => p.redeem(second.code))).toBeUndefined();
  });
});

describe('pairing cannot be jammed, not even from the same source (docs/SECURITY.md §Pairing)', () => {
  const PAGE = 'null 127.0.0.1';
  const PHOTOPEA = `${PHOTOPEA_ORIGIN} 127.0.0.1`;

  it('a page guessing without pause as `null` from 127.0.0.1 cannot keep Figma (the same source) or Photopea from pairing', () => {
    const p = new Pairing();
    let { code } = p.newCode();
    for (let i = 0; i < 1000; i++) codeError(() => p.redeem(other(code), PAGE));
    expect(codeError(() => p.redeem(code, PAGE))).toBeUndefined();
    ({ code } = p.newCode());
    for (let i = 0; i < 1000; i++) codeError(() => p.redeem(other(code), PAGE));
    expect(codeError(() => p.redeem(code, PHOTOPEA))).toBeUndefined();
  });

  it('the budgets are per source: one source\'s 429 leaves another\'s wrong tries answered 401', () => {
    const p = new Pairing();
    const { code } = p.newCode();
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTries; i++) codeError(() => p.redeem(other(code), PAGE));
    expect(codeError(() => p.redeem(other(code), PAGE))).toBe('E_PAIRING_RATE_LIMITED');
    expect(codeError(() => p.redeem(other(code), PHOTOPEA))).toBe('E_PAIRING_INVALID');
  });

  it('over HTTP: 40 guesses at once from a null-origin page, then the Figma plugin (null too) pairs with the right code', async () => {
    const d = await startTestDaemon();
    try {
      const { code } = d.daemon.pairingCode();
      const guesses = await Promise.all(
        Array.from({ length: 40 }, () => send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: other(code) }, headers: { Origin: 'null' } })),
      );
      expect(guesses.filter((r) => r.status === 401)).toHaveLength(PAIRING_DEFAULTS.maxWrongTries);
      expect(guesses.filter((r) => r.status === 429)).toHaveLength(40 - PAIRING_DEFAULTS.maxWrongTries);
      expect(codeOf(guesses.find((r) => r.status === 429)!)).toBe('E_PAIRING_RATE_LIMITED');
      // Figma's plugin iframe is the same source as the page: it still pairs, typed in lower case.
      const figma = await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: code.toLowerCase(), client: 'figma' }, headers: { Origin: 'null' } });
      expect(figma.status).toBe(200);
      // And Photopea with a fresh code while the page keeps guessing at it.
      const fresh = d.daemon.pairingCode();
      for (let i = 0; i < 10; i += 1) await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: other(fresh.code) }, headers: { Origin: 'null' } });
      const photopea = await send(d.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: fresh.code, client: 'photopea' }, headers: { Origin: PHOTOPEA_ORIGIN } });
      expect(photopea.status).toBe(200);
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
    for (const code of ['123456', '7K3Q-MXR', '7K3Q-MXR9A', '7K3Q-MXRU', '7K3Q_MXR9', 'x'.repeat(1000), 12345678]) {
      const reply = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code } });
      expect(codeOf(reply)).toBe('E_BAD_REQUEST');
    }
    const v2 = await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: 2, code: '7K3Q-MXR9' } });
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
    for (let i = 0; i < PAIRING_DEFAULTS.maxWrongTriesPerMinute + 2; i++) {
      statuses.push((await send(t.daemon, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code: '0000-0000' } })).status);
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
