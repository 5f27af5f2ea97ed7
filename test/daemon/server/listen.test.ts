// Listening beyond this machine (docs/SECURITY.md §R1, docs/TEAM.md): `--listen` is explicit, TLS is required unless a
// reverse proxy terminates it, each certificate mistake is refused at start with its own code, the
// daemon really speaks TLS (a handshake against a self-signed certificate made here with Debian's
// `openssl`), and the team's public host name joins the Host (docs/SECURITY.md §R2) and Origin (docs/SECURITY.md §R5) allowlists.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { callDaemon } from '../../../daemon/cli/daemon-api.js';
import { checkTransport, homePaths, parseListen } from '../../../daemon/config.js';
import { startDaemon, type RunningDaemon } from '../../../daemon/daemon.js';
import { silentLogger } from '../../../daemon/log.js';
import { parsePublicHost } from '../../../daemon/server/public-host.js';
import { PHOTOPEA_ORIGIN, PROTOCOL_VERSION, TokensResponse } from '../../../shared/protocol/index.js';
import { codeOf, FakeEngine, send, startTestDaemon, type TestDaemon } from './helpers.js';
import { runCli } from './spawn.js';

let dir: string;
/** A self-signed certificate for p2pz.test and 127.0.0.1, its key, another key, and bad files. */
const f = { cert: '', key: '', otherKey: '', encryptedKey: '', notPem: '', missing: '' };

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'p2pz-tls-'));
  Object.assign(f, {
    cert: join(dir, 'cert.pem'),
    key: join(dir, 'key.pem'),
    otherKey: join(dir, 'other-key.pem'),
    encryptedKey: join(dir, 'encrypted-key.pem'),
    notPem: join(dir, 'not.pem'),
    missing: join(dir, 'missing.pem'),
  });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f.key, '-out', f.cert, '-days', '2', '-subj', '/CN=p2pz.test', '-addext', 'subjectAltName=DNS:p2pz.test,IP:127.0.0.1');
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', f.otherKey);
  openssl('pkey', '-in', f.key, '-aes256', '-passout', 'pass:secret', '-out', f.encryptedKey);
  await writeFile(f.notPem, 'this is not a certificate\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function newHome(): Promise<string> {
  return mkdtemp(join(dir, 'home-'));
}

/** startDaemon's refusal code for these options, or 'started' (the daemon is closed at once). */
async function refusal(options: Parameters<typeof startDaemon>[0]): Promise<string> {
  try {
    const d = await startDaemon({ port: 0, home: await newHome(), engine: new FakeEngine(), log: silentLogger, models: async () => [], ...options });
    await d.close();
    return 'started';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

interface TlsReply {
  status: number;
  json: unknown;
  authorized: boolean;
  protocol: string | null;
}

/** One HTTPS request that trusts only the test certificate and checks the name p2pz.test. */
function tlsSend(port: number, path: string, headers: Record<string, string>, ca: Buffer): Promise<TlsReply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', servername: 'p2pz.test', port, path, headers, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const socket = res.socket as import('node:tls').TLSSocket;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json, authorized: socket.authorized, protocol: socket.getProtocol() });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('--listen (R1)', () => {
  it('parses ADDR[:PORT], [IPv6][:PORT] and a bare IPv6 address; refuses the rest', () => {
    expect(parseListen('0.0.0.0', 7870)).toEqual({ host: '0.0.0.0', port: 7870 });
    expect(parseListen('192.168.1.5:9000', 7870)).toEqual({ host: '192.168.1.5', port: 9000 });
    expect(parseListen('[::]:7871', 7870)).toEqual({ host: '::', port: 7871 });
    expect(parseListen('::', 7870)).toEqual({ host: '::', port: 7870 });
    expect(parseListen('gpu-box.lan', 1)).toEqual({ host: 'gpu-box.lan', port: 1 });
    for (const bad of ['', 'http://0.0.0.0', '0.0.0.0:70000', '[zz]:1', 'a b', '0.0.0.0:']) {
      expect(() => parseListen(bad, 7870), bad).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    }
  });

  it('refuses a non-loopback address that was not asked for with --listen', async () => {
    expect(await refusal({ host: '0.0.0.0' })).toBe('E_LISTEN_REFUSED');
  });

  it('refuses to listen beyond loopback without TLS, and allows it behind a proxy or with TLS', async () => {
    expect(() => checkTransport('0.0.0.0', false, false)).toThrow(expect.objectContaining({ code: 'E_TLS_REQUIRED' }));
    expect(() => checkTransport('127.0.0.1', false, false)).not.toThrow();
    expect(await refusal({ host: '0.0.0.0', allowRemote: true })).toBe('E_TLS_REQUIRED');
    expect(await refusal({ host: '0.0.0.0', allowRemote: true, insecureBehindProxy: true })).toBe('started');
    expect(await refusal({ host: '0.0.0.0', allowRemote: true, tls: { certFile: f.cert, keyFile: f.key } })).toBe('started');
  });

  it.each([
    ['a certificate without its key', () => ({ certFile: f.cert }), 'E_TLS_INCOMPLETE', '--tls-cert was given without --tls-key.'],
    ['a key without its certificate', () => ({ keyFile: f.key }), 'E_TLS_INCOMPLETE', '--tls-key was given without --tls-cert.'],
    ['a certificate file that does not exist', () => ({ certFile: f.missing, keyFile: f.key }), 'E_TLS_UNREADABLE', '--tls-cert could not be read (ENOENT).'],
    ['a certificate that is not PEM', () => ({ certFile: f.notPem, keyFile: f.key }), 'E_TLS_UNREADABLE', '--tls-cert is not a PEM certificate.'],
    ['a key that is not PEM', () => ({ certFile: f.cert, keyFile: f.notPem }), 'E_TLS_UNREADABLE', '--tls-key is not an unencrypted PEM private key.'],
    ['an encrypted key', () => ({ certFile: f.cert, keyFile: f.encryptedKey }), 'E_TLS_UNREADABLE', '--tls-key is not an unencrypted PEM private key.'],
    ['a key that is not the certificate’s', () => ({ certFile: f.cert, keyFile: f.otherKey }), 'E_TLS_MISMATCH', 'does not belong to the certificate'],
  ])('refuses %s with its code, a hint, and no path', async (_name, tls, code, detail) => {
    const home = await newHome();
    const err = await startDaemon({ host: '0.0.0.0', allowRemote: true, tls: tls(), port: 0, home, engine: new FakeEngine(), log: silentLogger }).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string; hint: string },
    );
    expect(err?.code).toBe(code);
    expect(err?.message).toContain(detail);
    expect(err?.hint.length).toBeGreaterThan(20);
    expect(`${err?.message} ${err?.hint}`).not.toContain(dir);
  });

  it('refuses a certificate path that cannot be read as a file (a folder; mode 000 for others than root)', async () => {
    expect(await refusal({ host: '0.0.0.0', allowRemote: true, tls: { certFile: dir, keyFile: f.key } })).toBe('E_TLS_UNREADABLE');
    const locked = join(dir, 'locked.pem');
    await writeFile(locked, await readFile(f.cert));
    await chmod(locked, 0o000);
    // root reads a mode-000 file anyway; everyone else is refused.
    expect(await refusal({ host: '0.0.0.0', allowRemote: true, tls: { certFile: locked, keyFile: f.key } })).toBe(process.getuid?.() === 0 ? 'started' : 'E_TLS_UNREADABLE');
  });

  it('p2pz serve --listen refuses without TLS and prints the code and the hint', async () => {
    const r = await runCli(['serve', '--listen', '0.0.0.0:0'], { P2PZ_HOME: await newHome() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Refusing to listen on 0.0.0.0 without TLS.');
    expect(r.stderr).toContain('--insecure-behind-proxy');
    // The older spelling, --host H --allow-remote, follows the same rule.
    const alias = await runCli(['serve', '--port', '0', '--host', '0.0.0.0', '--allow-remote'], { P2PZ_HOME: await newHome() });
    expect(alias.code).toBe(1);
    expect(alias.stderr).toContain('Refusing to listen on 0.0.0.0 without TLS.');
    const both = await runCli(['serve', '--listen', '0.0.0.0:0', '--host', '0.0.0.0'], { P2PZ_HOME: await newHome() });
    expect(both.code).toBe(1);
    expect(both.stderr).toContain('--listen and --host name the same thing.');
    const mismatch = await runCli(['serve', '--listen', '0.0.0.0:0', '--tls-cert', f.cert, '--tls-key', f.otherKey], { P2PZ_HOME: await newHome() });
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain('The TLS private key does not belong to the certificate.');
    expect(mismatch.stderr).toContain('openssl pkey -pubout');
  });
});

describe('TLS (node:https)', () => {
  let d: RunningDaemon;
  let token: string;
  let ca: Buffer;
  beforeAll(async () => {
    ca = await readFile(f.cert);
    d = await startDaemon({ port: 0, home: await newHome(), engine: new FakeEngine(), log: silentLogger, models: async () => [], tls: { certFile: f.cert, keyFile: f.key }, publicHosts: ['p2pz.test'] });
    token = (await readFile(d.paths.cliToken, 'utf8')).trim();
  });
  afterAll(async () => {
    await d.close();
  });

  it('completes a verified handshake for the certificate’s name and answers over it', async () => {
    expect(d.url).toBe(`https://127.0.0.1:${d.port}`);
    const reply = await tlsSend(d.port, '/v1/health', { Host: `p2pz.test:${d.port}`, Authorization: `Bearer ${token}` }, ca);
    expect(reply.authorized).toBe(true);
    expect(reply.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(reply.status).toBe(200);
    expect((reply.json as { v: number }).v).toBe(PROTOCOL_VERSION);
  });

  it('a client that does not trust the certificate fails the handshake; the daemon keeps serving', async () => {
    await expect(tlsSend(d.port, '/v1/health', { Host: `p2pz.test:${d.port}` }, Buffer.from(''))).rejects.toThrow();
    // Plain HTTP to the TLS port gets no HTTP answer.
    await expect(send(d, { path: '/v1/health' })).rejects.toThrow();
    const again = await tlsSend(d.port, '/v1/health', { Host: `p2pz.test:${d.port}`, Authorization: `Bearer ${token}` }, ca);
    expect(again.status).toBe(200);
  });

  it('keeps the Host and Origin rules over TLS', async () => {
    const auth = { Authorization: `Bearer ${token}` };
    expect((await tlsSend(d.port, '/v1/models', { ...auth, Host: 'evil.example' }, ca)).status).toBe(403);
    const foreign = await tlsSend(d.port, '/v1/models', { ...auth, Host: `p2pz.test:${d.port}`, Origin: 'https://evil.example' }, ca);
    expect(codeOf({ json: foreign.json } as Parameters<typeof codeOf>[0])).toBe('E_FORBIDDEN_ORIGIN');
    // The daemon's own pages over TLS have an https origin.
    expect((await tlsSend(d.port, '/v1/models', { ...auth, Host: `127.0.0.1:${d.port}`, Origin: `https://127.0.0.1:${d.port}` }, ca)).status).toBe(200);
    expect((await tlsSend(d.port, '/v1/models', { ...auth, Host: `127.0.0.1:${d.port}`, Origin: `http://127.0.0.1:${d.port}` }, ca)).status).toBe(403);
  });

  it('CLI commands reach it through daemon.json by the pinned certificate, and refuse another one', async () => {
    const info = JSON.parse(await readFile(d.paths.daemonInfo, 'utf8')) as { url: string; certSha256: string };
    expect(info.url).toBe(`https://127.0.0.1:${d.port}`);
    expect(info.certSha256).toBe(new X509Certificate(ca).fingerprint256);
    const pair = await runCli(['pair'], { P2PZ_HOME: d.paths.home });
    expect(pair.stderr).toBe('');
    const code = /Pairing code: ([0-9A-Z]{4}-[0-9A-Z]{4})/.exec(pair.stdout)?.[1];
    expect(code).toBeDefined();
    const live = await callDaemon(d.paths, { method: 'GET', path: '/v1/tokens' }, TokensResponse);
    expect(Array.isArray(live?.tokens)).toBe(true);

    // The same daemon.json with another certificate's fingerprint: nothing is sent, as if no daemon ran.
    const other = await newHome();
    await writeFile(join(other, 'daemon.json'), JSON.stringify({ ...info, certSha256: info.certSha256.replace(/^../, info.certSha256.startsWith('00') ? '11' : '00') }));
    await writeFile(join(other, 'token'), await readFile(d.paths.cliToken));
    const refused = await runCli(['pair'], { P2PZ_HOME: other });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('The p2pz daemon is not running.');
    expect(await callDaemon(homePaths(other), { method: 'GET', path: '/v1/tokens' }, TokensResponse)).toBeUndefined();
  });

  it('opens the event stream over wss:// for the public origin, and refuses a foreign one', async () => {
    const open = (origin: string): Promise<string> =>
      new Promise((resolve) => {
        // ws hands its options on to tls.connect, servername included (its typings omit it).
        const options: WebSocket.ClientOptions & { servername: string } = { ca, servername: 'p2pz.test', headers: { Host: `p2pz.test:${d.port}` }, origin };
        const ws = new WebSocket(`wss://127.0.0.1:${d.port}/v1/events`, options);
        ws.on('open', () => ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type: 'hello', token, clientId: 'tls-test' })));
        ws.on('message', (m: Buffer) => {
          resolve((JSON.parse(m.toString('utf8')) as { type: string }).type);
          ws.close();
        });
        ws.on('unexpected-response', (_req, res) => resolve(`http ${res.statusCode ?? 0}`));
        ws.on('error', (err) => resolve(`error ${err.message}`));
      });
    expect(await open('https://p2pz.test')).toBe('welcome');
    expect(await open('https://evil.example')).toBe('http 403');
  });
});

describe('--public-host (R2, R5)', () => {
  let t: TestDaemon;
  beforeAll(async () => {
    t = await startTestDaemon({ publicHosts: ['P2pz.Studio.Example'] });
  });
  afterAll(async () => {
    await t.stop();
  });

  it('parses NAME[:PORT] and refuses URLs, paths and bad names', () => {
    expect(parsePublicHost('p2pz.studio.example')).toEqual({ name: 'p2pz.studio.example' });
    expect(parsePublicHost('p2pz.studio.example:443')).toEqual({ name: 'p2pz.studio.example' });
    expect(parsePublicHost('p2pz.studio.example:8443')).toEqual({ name: 'p2pz.studio.example', port: 8443 });
    expect(parsePublicHost('[2001:db8::1]:8443')).toEqual({ name: '[2001:db8::1]', port: 8443 });
    for (const bad of ['https://p2pz.studio.example', 'p2pz.studio.example/x', 'a..b', '-a.example', 'x:0', 'x:99999', '', 'a_b.example']) {
      expect(() => parsePublicHost(bad), bad).toThrow(expect.objectContaining({ code: 'E_BAD_REQUEST' }));
    }
  });

  it.each([
    ['p2pz.studio.example', 'the name as a proxy on 443 forwards it', true],
    ['p2pz.studio.example:443', 'with the default port spelt out', true],
    ['P2PZ.STUDIO.EXAMPLE', 'in capitals', true],
    ['p2pz.studio.example:<port>', 'on the daemon’s own port', true],
    ['p2pz.studio.example:8443', 'on another port', false],
    ['evil.example', 'another name', false],
    ['p2pz.studio.example.evil.example', 'a name that starts like it', false],
    ['studio.example', 'its parent domain', false],
  ])('Host %s (%s): allowed %s', async (host, _why, allowed) => {
    const reply = await send(t.daemon, { path: '/v1/models', token: t.token, headers: { Host: host.replace('<port>', String(t.daemon.port)) } });
    if (allowed) expect(reply.status).toBe(200);
    else expect(codeOf(reply)).toBe('E_FORBIDDEN_HOST');
  });

  it.each([
    ['https://p2pz.studio.example', true],
    ['https://p2pz.studio.example:<port>', true],
    ['null', true],
    [PHOTOPEA_ORIGIN, true],
    ['http://p2pz.studio.example', false],
    ['https://p2pz.studio.example:8443', false],
    ['https://evil.example', false],
    ['https://p2pz.studio.example.evil.example', false],
  ])('Origin %s: allowed %s', async (origin, allowed) => {
    const headers = { Host: 'p2pz.studio.example', Origin: origin.replace('<port>', String(t.daemon.port)) };
    const reply = await send(t.daemon, { path: '/v1/models', token: t.token, headers });
    if (allowed) {
      expect(reply.status).toBe(200);
      expect(reply.headers['access-control-allow-origin']).toBe(headers.Origin);
    } else expect(codeOf(reply)).toBe('E_FORBIDDEN_ORIGIN');
  });

  it('health needs a token once the daemon is reachable under a public name', async () => {
    expect((await send(t.daemon, { path: '/v1/health', headers: { Host: 'p2pz.studio.example' } })).status).toBe(401);
    expect((await send(t.daemon, { path: '/v1/health', token: t.token, headers: { Host: 'p2pz.studio.example' } })).status).toBe(200);
  });

  it('a public port names exactly that port', async () => {
    const s = await startTestDaemon({ publicHosts: ['p2pz.studio.example:8443'] });
    try {
      expect((await send(s.daemon, { path: '/v1/models', token: s.token, headers: { Host: 'p2pz.studio.example:8443', Origin: 'https://p2pz.studio.example:8443' } })).status).toBe(200);
      expect(codeOf(await send(s.daemon, { path: '/v1/models', token: s.token, headers: { Host: 'p2pz.studio.example' } }))).toBe('E_FORBIDDEN_HOST');
      expect(codeOf(await send(s.daemon, { path: '/v1/models', token: s.token, headers: { Host: 'p2pz.studio.example:8443', Origin: 'https://p2pz.studio.example' } }))).toBe('E_FORBIDDEN_ORIGIN');
    } finally {
      await s.stop();
    }
  });

  it('the daemon’s pages served under the public name may connect back to it over https and wss', async () => {
    const reply = await send(t.daemon, { path: '/photopea', headers: { Host: 'p2pz.studio.example' } });
    expect(reply.status).toBe(200);
    const connect = /connect-src ([^;]*)/.exec(String(reply.headers['content-security-policy']))?.[1]?.split(' ');
    expect(connect).toContain('https://p2pz.studio.example');
    expect(connect).toContain('wss://p2pz.studio.example');
    expect(connect).not.toContain('https://evil.example');
  });

  it('refuses a malformed --public-host at start', async () => {
    expect(await refusal({ publicHosts: ['https://p2pz.studio.example/'] })).toBe('E_BAD_REQUEST');
  });
});
