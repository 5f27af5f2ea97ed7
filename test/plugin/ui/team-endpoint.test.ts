// The panel pointed at a team endpoint, in real headless Chromium (the Figma emulation of
// panel.test.ts): the "Daemon" setting refuses plain http beyond this machine and addresses with a
// path, keeps a valid one in figma.clientStorage beside the token, pairs with the team endpoint over
// TLS under its public name (a daemon with a self-signed certificate made here by `openssl`, the name
// p2pz.test mapped to 127.0.0.1 by Chromium's host resolver, the certificate trusted by its public
// key only), starts there again from storage, and goes back to the local daemon when emptied.
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Frame, FrameLocator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDaemon, type RunningDaemon } from '../../../daemon/daemon.js';
import { silentLogger } from '../../../daemon/log.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from '../../browser/chromium.js';
import { serveHostPage, type HostPage } from '../../browser/host-page.js';
import { FakeEngine, PNG_1X1 } from '../../daemon/server/helpers.js';

vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

const text = (frame: Frame, id: string): Promise<string> => frame.evaluate((i) => document.getElementById(i)?.textContent ?? '', id);
const visible = (frame: Frame, id: string): Promise<boolean> => frame.evaluate((i) => { const el = document.getElementById(i); return el !== null && !el.hidden && el.getClientRects().length > 0; }, id);

describe('the panel pointed at a team endpoint', () => {
  let dir: string;
  let local: RunningDaemon;
  let team: RunningDaemon;
  let host: HostPage;
  let chromium: Chromium;
  let page: Page;
  let frame: Frame;
  let ui: FrameLocator;
  let teamUrl: string;
  const layer = { name: 'Photo', kind: 'image', x: 0, y: 0, width: 1, height: 1, png: PNG_1X1.toString('base64') } as const;

  const storage = (key: string): Promise<unknown> => page.evaluate((k) => window.p2pzHost.storage(k), key);
  const start = async (options: { token?: string; endpoint?: string }): Promise<void> => {
    page = await chromium.context.newPage();
    await page.goto(host.url);
    await page.evaluate((o) => window.p2pzHost.start(o), { port: local.port, layers: [layer], select: ['Photo'], ...options });
    const found = page.frames().find((f) => f.parentFrame() === page.mainFrame());
    if (found === undefined) throw new Error('the plugin iframe did not load');
    frame = found;
    ui = page.frameLocator('#plugin-ui');
  };
  const connectTo = async (address: string): Promise<void> => {
    await frame.evaluate(() => ((document.getElementById('daemon') as HTMLDetailsElement).open = true));
    await ui.locator('#endpoint').fill(address);
    await ui.locator('#endpoint-save').click();
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2pz-team-endpoint-'));
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=p2pz.test', '-addext', 'subjectAltName=DNS:p2pz.test'], { stdio: 'ignore' });
    const spki = createHash('sha256').update(new X509Certificate(await readFile(cert)).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
    const common = { port: 0, engine: new FakeEngine(), log: silentLogger, models: async () => [] };
    local = await startDaemon({ ...common, home: join(dir, 'local') });
    team = await startDaemon({ ...common, engine: new FakeEngine(), home: join(dir, 'team'), tls: { certFile: cert, keyFile: key }, publicHosts: ['p2pz.test'] });
    teamUrl = `https://p2pz.test:${team.port}`;
    host = await serveHostPage();
    chromium = await launchChromium(['--host-resolver-rules=MAP p2pz.test 127.0.0.1', `--ignore-certificate-errors-spki-list=${spki}`]);
  });

  afterAll(async () => {
    await chromium?.close();
    await host?.close();
    await team?.close();
    await local?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('shows the setting in Figma, empty (the local daemon), and connects to the local daemon', async () => {
    await start({});
    await waitForText(frame, 'status-text', /^Not paired$/);
    expect(await frame.evaluate(() => document.getElementById('daemon')?.hidden)).toBe(false);
    expect(await ui.locator('#endpoint').inputValue()).toBe('');
    expect(await ui.locator('#endpoint').getAttribute('placeholder')).toBe(`http://localhost:${local.port}`);
  });

  it('refuses plain http beyond this machine and an address with a path, and keeps nothing', async () => {
    await connectTo(`http://p2pz.test:${team.port}`);
    await waitForText(frame, 'endpoint-problem', /^A team endpoint needs https: https:\/\/p2pz\.test:\d+\. Plain http is only for this computer\.$/);
    await connectTo(`${teamUrl}/v1`);
    await waitForText(frame, 'endpoint-problem', /^Enter the address without a path: https:\/\/p2pz\.test:\d+\.$/);
    expect(await storage('p2pz.endpoint')).toBeUndefined();
    expect(await text(frame, 'status-text')).toBe('Not paired');
  });

  it('connects to the team endpoint over TLS, keeps it, and pairs with that daemon’s code', async () => {
    await connectTo(teamUrl);
    // The team endpoint answers health only with a token: the panel asks for the code at once.
    await waitForText(frame, 'status-text', /^Not paired$/);
    expect(await visible(frame, 'endpoint-problem')).toBe(false);
    expect(await storage('p2pz.endpoint')).toBe(teamUrl);
    expect(await visible(frame, 'pair')).toBe(true);
    // The local daemon's code does not pair with the team endpoint.
    await ui.locator('#pair-code').fill(local.pairingCode().code);
    await ui.locator('#pair-button').click();
    await waitForText(frame, 'problem-title', /pairing code is wrong/);
    await ui.locator('#pair-code').fill(team.pairingCode().code);
    await ui.locator('#pair-button').click();
    await waitForText(frame, 'status-text', /^Ready$/);
    expect(typeof (await storage('p2pz.token'))).toBe('string');
    await page.close();
  });

  it('starts at the kept team endpoint with the kept token next time', async () => {
    await start({ endpoint: teamUrl, token: 'wrong-token-for-a-start-check' });
    // A token the team endpoint does not know is forgotten and the code asked for.
    await waitForText(frame, 'status-text', /^Not paired$/);
    expect(await storage('p2pz.token')).toBeUndefined();
    await ui.locator('#pair-code').fill(team.pairingCode().code);
    await ui.locator('#pair-button').click();
    await waitForText(frame, 'status-text', /^Ready$/);
    const token = String(await storage('p2pz.token'));
    await page.close();
    await start({ endpoint: teamUrl, token });
    await waitForText(frame, 'status-text', /^Ready$/);
    expect(await ui.locator('#endpoint').inputValue()).toBe(teamUrl);
  });

  it('an emptied address goes back to the local daemon and forgets the team token', async () => {
    await connectTo('');
    await waitForText(frame, 'status-text', /^Not paired$/);
    expect(await storage('p2pz.endpoint')).toBeUndefined();
    expect(await storage('p2pz.token')).toBeUndefined();
    await ui.locator('#pair-code').fill(local.pairingCode().code);
    await ui.locator('#pair-button').click();
    await waitForText(frame, 'status-text', /^Ready$/);
    await page.close();
  });
});
