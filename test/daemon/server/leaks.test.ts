// docs/SECURITY.md §R21: a full flow against the real spawned daemon (real worker) with a known CLI token. Nothing it
// prints and nothing it answers (HTTP bodies, headers, WebSocket events) contains a token, an
// absolute path or a stack trace, whether the requests succeed or fail.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { CLIENT_HEADER, ImageUploadResponse, PairResponse, PROTOCOL_VERSION } from '../../../shared/protocol/index.js';
import { EventClient, PNG_1X1, send, type Reply } from './helpers.js';
import { runCli, spawnCli, waitForDaemonInfo, type Spawned } from './spawn.js';

const KNOWN_TOKEN = `p2pz_${'Kn0wnT0ken-'.repeat(4).slice(0, 43)}`;
let home = '';
let s: Spawned | undefined;
afterAll(async () => {
  if (s && s.child.exitCode === null) s.child.kill('SIGKILL');
  if (home) await rm(home, { recursive: true, force: true });
});

it('no token, path or stack in anything the daemon prints or answers', async () => {
  home = await mkdtemp(join(tmpdir(), 'p2pz-leaks-'));
  await writeFile(join(home, 'token'), `${KNOWN_TOKEN}\n`, { mode: 0o600 });
  s = spawnCli(['serve', '--port', '0', '--device', 'cpu'], { P2PZ_HOME: home, P2PZ_LOG: 'debug' });
  const info = await waitForDaemonInfo(home, s);
  const d = { port: info.port };
  const seen: string[] = [];
  const record = (r: Reply): Reply => {
    seen.push(r.text, JSON.stringify(r.headers));
    return r;
  };

  record(await send(d, { path: '/v1/health' }));
  const pair = await runCli(['pair'], { P2PZ_HOME: home });
  seen.push(pair.stdout, pair.stderr);
  const code = /Pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})/.exec(pair.stdout)?.[1] ?? '';
  // The pair response body is the one place a client token must appear: only its headers are checked.
  const paired = await send(d, { method: 'POST', path: '/v1/pair', json: { v: PROTOCOL_VERSION, code, client: 'figma' } });
  seen.push(JSON.stringify(paired.headers));
  const { token } = PairResponse.parse(paired.json);

  const events = EventClient.connect(d, { Origin: 'null' });
  await events.opened;
  events.sendJson({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: 'leak-client-1' });
  await events.next((e) => e['type'] === 'welcome', 30_000);

  const headers = { [CLIENT_HEADER]: 'leak-client-1' };
  const { imageId } = ImageUploadResponse.parse(
    record(await send(d, { method: 'POST', path: '/v1/images', token, body: PNG_1X1, headers: { 'Content-Type': 'image/png' } })).json,
  );
  for (const kind of ['preview', 'render']) {
    const jobId = `leak-${kind}-job`;
    record(await send(d, { method: 'POST', path: '/v1/jobs', token, headers, json: { v: PROTOCOL_VERSION, kind, imageId, jobId, edit: { source: 'cat', target: 'dog' } } }));
    await events.next((e) => e['jobId'] === jobId && (e['type'] === 'error' || e['type'] === 'finished'), 30_000);
    record(await send(d, { path: `/v1/jobs/${jobId}`, token, headers }));
  }
  // Failures of every kind.
  record(await send(d, { path: '/v1/models', token: `${KNOWN_TOKEN.slice(0, -1)}x` }));
  record(await send(d, { path: '/v1/models', headers: { Host: 'attacker.example' } }));
  record(await send(d, { path: '/v1/models', token, headers: { Origin: 'https://evil.example' } }));
  record(await send(d, { method: 'POST', path: '/v1/jobs', token, body: '{"v":1,', headers: { 'Content-Type': 'application/json' } }));
  record(await send(d, { method: 'POST', path: '/v1/jobs', token, json: { v: PROTOCOL_VERSION, kind: 'x', edit: { source: '../../etc', target: home } } }));
  record(await send(d, { method: 'POST', path: '/v1/jobs', token, body: 'a=b', headers: { 'Content-Type': 'text/plain' } }));
  record(await send(d, { method: 'POST', path: '/v1/images', token, body: Buffer.from('not an image at all'), headers: { 'Content-Type': 'image/png' } }));
  record(await send(d, { path: `/v1/results/..%2F..%2F${encodeURIComponent(home)}`, token }));
  record(await send(d, { path: '/v1/results/AAAAAAAAAAAAAAAAAAAAAA', token }));
  record(await send(d, { path: '/v1/models', token }));
  record(await send(d, { method: 'POST', path: '/v1/pairing-code', token: KNOWN_TOKEN, json: { v: PROTOCOL_VERSION } }));
  events.ws.send('{"broken');
  events.sendJson({ v: PROTOCOL_VERSION, type: 'cancel', jobId: 'leak-preview-job' });
  events.sendJson({ v: PROTOCOL_VERSION, type: 'ping', nonce: 1 });
  await events.next((e) => e['type'] === 'pong');
  record(await send(d, { method: 'DELETE', path: '/v1/tokens/current', token }));
  await events.closed;
  seen.push(...events.events.map((e) => JSON.stringify(e)));

  s.child.kill('SIGTERM');
  expect((await s.exited).code).toBe(0);
  seen.push(s.stdout, s.stderr);

  // The flow did happen: the jobs reached the worker and were reported.
  expect(events.events.filter((e) => e['type'] === 'error' || e['type'] === 'finished')).toHaveLength(2);
  expect(s.stderr).toContain('daemon.stopped');

  const all = seen.join('\n');
  for (const secret of [KNOWN_TOKEN, KNOWN_TOKEN.slice(5), token, token.slice(5)]) expect(all).not.toContain(secret);
  for (const path of [home, tmpdir(), '/tmp/', '/home/', '/root/', '/usr/', '/work/', 'node_modules', process.cwd()]) {
    expect(all).not.toContain(path);
  }
  expect(all).not.toMatch(/\n\s+at .+:\d+:\d+/);
  expect(all).not.toMatch(/\b(TypeError|ReferenceError|SyntaxError|RangeError):/);
});
