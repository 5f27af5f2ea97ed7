// docs/SECURITY.md §Pairing in real headless Chromium. A page on another localhost port holds a
// sandboxed iframe (origin `null`, the very origin of Figma's plugin iframe, from the same address)
// that keeps 8 loops of `POST /v1/pair` going with random well-formed codes, never pausing. Meanwhile
// the real plugin UI (the built dist/plugin/ui.html in the Figma emulation, without a token) is opened
// and the designer types the code the daemon printed: it pairs every time, typed as shown and typed
// in lower case without the hyphen, and the page never gets a token. Before the right code was
// checked ahead of the budget, the page's wrong tries burnt each code for the `null` source at once,
// and the plugin was answered "wrong or expired".
import type { Frame, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { PAIRING_DEFAULTS } from '../../daemon/server/pairing.js';
import { PNG_1X1, startTestDaemon, type TestDaemon } from '../daemon/server/helpers.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from './chromium.js';
import { serveAttackerPage, type AttackerPage } from './attacker-page.js';
import { serveHostPage, type HostPage } from './host-page.js';

vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

interface GuessStats {
  sent: number;
  wrong: number;
  limited: number;
  paired: number;
  other: number;
}

/** The attacking script (test/browser/attacker-page.ts runs it in a null-origin iframe): `loops`
 *  guessing loops, reporting counts up. */
function attackerScript(daemonPort: number, loops: number): string {
  const script = `
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const stats = { sent: 0, wrong: 0, limited: 0, paired: 0, other: 0 };
    const guess = () => Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => alphabet[b % 32]).join('');
    async function loop() {
      for (;;) {
        stats.sent++;
        try {
          const r = await fetch('http://localhost:${daemonPort}/v1/pair', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ v: 1, code: guess(), client: 'figma' }) });
          if (r.status === 401) stats.wrong++; else if (r.status === 429) stats.limited++; else if (r.status === 200) stats.paired++; else stats.other++;
        } catch { stats.other++; }
        parent.postMessage(stats, '*');
      }
    }
    for (let i = 0; i < ${loops}; i++) loop();`;
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
  attacker = await serveAttackerPage(attackerScript(t.daemon.port, 8), { sent: 0, wrong: 0, limited: 0, paired: 0, other: 0 });
});
afterAll(async () => {
  await chromium?.close();
  await host?.close();
  await attacker?.close();
  await t?.stop();
});

async function startPlugin(page: Page): Promise<Frame> {
  const layer = { name: 'Photo', kind: 'image', x: 0, y: 0, width: 1, height: 1, png: PNG_1X1.toString('base64') } as const;
  await page.evaluate((o) => window.p2pzHost.start(o), { port: t.daemon.port, layers: [layer], select: ['Photo'] });
  const frame = page.frames().find((f) => f.parentFrame() === page.mainFrame());
  if (frame === undefined) throw new Error('the plugin iframe did not load');
  return frame;
}

const statsOf = (page: Page): Promise<GuessStats> => page.evaluate(() => (window as unknown as { stats: GuessStats }).stats);

it('a null-origin page guessing without pause cannot keep the Figma plugin from pairing with the printed code', async () => {
  const evil = await chromium.context.newPage();
  await evil.goto(attacker.url);
  await evil.waitForFunction(() => (window as unknown as { stats: GuessStats }).stats.limited >= 20, undefined, { timeout: 30_000 });

  const typings: ((code: string) => string)[] = [(code) => code, (code) => code.toLowerCase().replace('-', '')];
  for (const typed of typings) {
    const page = await chromium.context.newPage();
    await page.goto(host.url);
    const frame = await startPlugin(page);
    await waitForText(frame, 'status-text', /^Not paired$/, 30_000);
    const { code } = t.daemon.pairingCode();
    // The page guesses at this very code from the plugin's source before the designer types it: more
    // than enough to have burnt it under the old budget.
    const before = await statsOf(evil);
    await evil.waitForFunction((n) => (window as unknown as { stats: GuessStats }).stats.sent >= n, before.sent + 4 * PAIRING_DEFAULTS.maxWrongTries, { timeout: 30_000 });
    const ui = page.frameLocator('#plugin-ui');
    await ui.locator('#pair-code').fill(typed(code));
    await ui.locator('#pair-button').click();
    await waitForText(frame, 'status-text', /^Ready$/, 30_000);
    expect(typeof (await page.evaluate(() => window.p2pzHost.storage('p2pz.token')))).toBe('string');
    // The page went on guessing throughout.
    const after = await statsOf(evil);
    expect(after.sent).toBeGreaterThan(before.sent + 4 * PAIRING_DEFAULTS.maxWrongTries);
    await page.close();
  }
  const stats = await statsOf(evil);
  // Every guess was answered, wrong or limited; none paired.
  expect(stats.paired).toBe(0);
  expect(stats.other).toBe(0);
  expect(stats.wrong + stats.limited).toBeGreaterThan(100);
  await evil.close();
});
