// docs/SECURITY.md §Event-stream admission in real headless Chromium. A page on another localhost
// port holds a sandboxed iframe (origin `null`, as any page can make) that keeps 40 WebSockets to the
// daemon opening, never saying hello. Meanwhile the real plugin UI (the built dist/plugin/ui.html in
// the Figma emulation, also origin `null`, with a stored token) is opened 10 times: every time it
// reaches Ready, without ever showing Disconnected. Before the admission policy the 40 sockets held
// the daemon's 32 waiting places and most plugin connections were refused with 429.
import type { Frame, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { PNG_1X1, startTestDaemon, type TestDaemon } from '../daemon/server/helpers.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from './chromium.js';
import { serveAttackerPage, type AttackerPage } from './attacker-page.js';
import { serveHostPage, type HostPage } from './host-page.js';

vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

/** The attacking script (test/browser/attacker-page.ts runs it in a null-origin iframe): it keeps
 *  `sockets` WebSockets opening, reporting counts up. */
function attackerScript(daemonPort: number, sockets: number): string {
  const script = `
    let opened = 0, closed = 0, refused = 0;
    const report = () => parent.postMessage({ opened, closed, refused }, '*');
    function one() {
      const ws = new WebSocket('ws://127.0.0.1:${daemonPort}/v1/events');
      let open = false;
      ws.onopen = () => { open = true; opened++; report(); };
      ws.onclose = () => { closed++; if (!open) refused++; report(); setTimeout(one, 0); };
    }
    for (let i = 0; i < ${sockets}; i++) one();`;
  return script;
}

let t: TestDaemon;
let host: HostPage;
let chromium: Chromium;
let attacker: AttackerPage;
beforeAll(async () => {
  t = await startTestDaemon();
  host = await serveHostPage();
  chromium = await launchChromium();
  attacker = await serveAttackerPage(attackerScript(t.daemon.port, 40), { opened: 0, closed: 0, refused: 0 });
});
afterAll(async () => {
  await chromium?.close();
  await host?.close();
  await attacker?.close();
  await t?.stop();
});

async function startPlugin(page: Page, token: string): Promise<Frame> {
  const layer = { name: 'Photo', kind: 'image', x: 0, y: 0, width: 1, height: 1, png: PNG_1X1.toString('base64') } as const;
  await page.evaluate((o) => window.p2pzHost.start(o), { port: t.daemon.port, layers: [layer], select: ['Photo'], token });
  const frame = page.frames().find((f) => f.parentFrame() === page.mainFrame());
  if (frame === undefined) throw new Error('the plugin iframe did not load');
  return frame;
}

it('a null-origin page keeping 40 sockets opening cannot keep the plugin from connecting (10 of 10)', async () => {
  const evil = await chromium.context.newPage();
  await evil.goto(attacker.url);
  // The flood is on: the daemon has had to close (evict or time out) some of the page's sockets.
  await evil.waitForFunction(() => (window as unknown as { stats: { closed: number } }).stats.closed >= 10, undefined, { timeout: 30_000 });

  let ready = 0;
  for (let i = 0; i < 10; i += 1) {
    const page = await chromium.context.newPage();
    await page.goto(host.url);
    const frame = await startPlugin(page, t.token);
    await frame.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seenStatus: string[] }).seenStatus = seen;
      const el = document.getElementById('status-text');
      if (el) new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });
    await waitForText(frame, 'status-text', /^Ready$/, 10_000);
    const seen = await frame.evaluate(() => (window as unknown as { seenStatus: string[] }).seenStatus);
    expect(seen).not.toContain('Disconnected');
    ready += 1;
    await page.close();
  }
  expect(ready).toBe(10);
  const stats = await evil.evaluate(() => (window as unknown as { stats: { opened: number; closed: number; refused: number } }).stats);
  // The page really was flooding the whole time.
  expect(stats.opened).toBeGreaterThanOrEqual(40);
  await evil.close();
});
