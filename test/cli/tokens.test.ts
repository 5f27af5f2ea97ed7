// `p2pz tokens list|create|revoke` as the owner uses it: real CLI processes against a running
// `p2pz serve` (changes go through the daemon, so they hold at once on HTTP and on open event
// streams), and against the files when no daemon runs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PairResponse, PROTOCOL_VERSION, WS_CLOSE_TOKEN_REVOKED } from '../../shared/protocol/index.js';
import { EventClient, send } from '../daemon/server/helpers.js';
import { runCli, spawnCli, waitForDaemonInfo, type Spawned } from '../daemon/server/spawn.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

async function newHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'p2pz-tokens-'));
  cleanup.push(() => rm(home, { recursive: true, force: true }));
  return home;
}

function serve(home: string, extra: string[] = []): Spawned {
  const s = spawnCli(['serve', '--port', '0', '--device', 'cpu', ...extra], { P2PZ_HOME: home });
  cleanup.unshift(async () => {
    if (s.child.exitCode === null) {
      s.child.kill('SIGTERM');
      await s.exited;
    }
  });
  return s;
}

describe('p2pz tokens with the daemon running', () => {
  it('lists a paired plugin, revokes it at once (HTTP 401, open stream closed 4001), creates a named token', async () => {
    const home = await newHome();
    const s = serve(home);
    const info = await waitForDaemonInfo(home, s);
    const env = { P2PZ_HOME: home };
    const code = /Pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})/.exec((await runCli(['pair'], env)).stdout)?.[1];
    const { token } = PairResponse.parse((await send(info, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code, client: 'figma' } })).json);
    const events = EventClient.connect(info);
    await events.opened;
    events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: 'client-figma' });
    await events.next((e) => e['type'] === 'welcome');

    const list = await runCli(['tokens', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID +NAME +KIND +CREATED +LAST USED$/m);
    expect(list.stdout).toMatch(/^[A-Za-z0-9_-]{16} +figma +client +\d{4}-\d\d-\d\d \d\d:\d\d +\d{4}-\d\d-\d\d \d\d:\d\d$/m);
    expect(list.stdout).toContain('Tokens do not expire.');
    expect(list.stdout).not.toContain(token);

    const revoke = await runCli(['tokens', 'revoke', 'figma'], env);
    expect(revoke.code).toBe(0);
    expect(revoke.stdout).toMatch(/^Revoked token [A-Za-z0-9_-]{16}\.$/m);
    expect(await events.closed).toBe(WS_CLOSE_TOKEN_REVOKED);
    expect((await send(info, { path: '/v1/models', token })).status).toBe(401);

    const created = await runCli(['tokens', 'create', 'anna laptop'], env);
    expect(created.code).toBe(0);
    const anna = created.stdout.trim();
    expect(anna).toMatch(/^p2pz_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toMatch(/shown only this once/);
    expect((await send(info, { path: '/v1/models', token: anna })).status).toBe(200);
    expect((await runCli(['tokens', 'list'], env)).stdout).toMatch(/anna laptop/);
  });

  it('serve --token-expiry-days shows in the list; bad values and bad usage are refused with a hint', async () => {
    const home = await newHome();
    const s = serve(home, ['--token-expiry-days', '30']);
    await waitForDaemonInfo(home, s);
    const env = { P2PZ_HOME: home };
    expect((await runCli(['tokens', 'list'], env)).stdout).toContain('Tokens unused for 30 days expire.');
    const unknown = await runCli(['tokens', 'revoke', 'nobody'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('No token has the id or name "nobody".');
    const usage = await runCli(['tokens', 'delete', 'x'], env);
    expect(usage.code).toBe(1);
    expect(usage.stderr).toContain('Usage: p2pz tokens list | create NAME | revoke ID|NAME');
    const zero = await runCli(['serve', '--port', '0', '--token-expiry-days', '0'], { P2PZ_HOME: await newHome() });
    expect(zero.code).toBe(1);
    expect(zero.stderr).toContain('--token-expiry-days must be a whole number from 1 to 3650.');
  });
});

describe('p2pz tokens without a daemon', () => {
  it('creates, lists and revokes in the token files; the daemon started later honours them', async () => {
    const home = await newHome();
    const env = { P2PZ_HOME: home };
    const created = await runCli(['tokens', 'create', 'ci-bot'], env);
    expect(created.code).toBe(0);
    const bot = created.stdout.trim();
    const other = (await runCli(['tokens', 'create', 'other'], env)).stdout.trim();
    const gpu = (await runCli(['tokens', 'create', 'gpu-1', '--worker'], env)).stdout.trim();
    const list = await runCli(['tokens', 'list'], env);
    expect(list.stdout).toMatch(/ci-bot +client +\d{4}-\d\d-\d\d \d\d:\d\d +never/);
    expect(list.stdout).toContain('The daemon is not running');
    expect((await runCli(['tokens', 'revoke', 'ci-bot'], env)).code).toBe(0);
    expect((await runCli(['tokens', 'list'], env)).stdout).not.toContain('ci-bot');

    const s = serve(home);
    const info = await waitForDaemonInfo(home, s);
    expect((await send(info, { path: '/v1/models', token: bot })).status).toBe(401);
    expect((await send(info, { path: '/v1/models', token: other })).status).toBe(200);
    // A team worker's token reaches only the team routes (docs/TEAM.md).
    expect(list.stdout).toMatch(/gpu-1 +worker +\d{4}/);
    expect((await send(info, { path: '/v1/models', token: gpu })).status).toBe(401);
  });
});
