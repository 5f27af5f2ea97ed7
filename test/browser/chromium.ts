// Real headless Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core
// (no browser download), a fresh profile per launch, nothing reaching beyond 127.0.0.1.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Frame, type Page } from 'playwright-core';

export const CHROMIUM_DEFAULTS = Object.freeze({
  executablePath: process.env['P2PZ_CHROMIUM'] ?? '/usr/bin/chromium',
  /** How long a browser test waits for a text to appear: generous, since a first render on a loaded
   *  2-core CI machine also derives the UNet graphs for the working size. */
  waitMs: 150_000,
  /** Test timeout for the files that drive whole flows (several waits in a row). */
  flowTestMs: 400_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

export interface Chromium {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/** `extraArgs`: more Chromium switches (a test that maps a host name or trusts its own certificate). */
export async function launchChromium(extraArgs: readonly string[] = []): Promise<Chromium> {
  const profile = await mkdtemp(join(tmpdir(), 'p2pz-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_DEFAULTS.executablePath,
    headless: true,
    args: [...CHROMIUM_DEFAULTS.args, ...extraArgs],
    viewport: { width: 900, height: 760 },
    deviceScaleFactor: 2,
  });
  return {
    context,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until the element `id` in `target` has text matching `pattern`. */
export function waitForText(target: Page | Frame, id: string, pattern: RegExp, timeoutMs: number = CHROMIUM_DEFAULTS.waitMs): Promise<unknown> {
  return target.waitForFunction(
    ([i, source]) => new RegExp(source).test(document.getElementById(i)?.textContent ?? ''),
    [id, pattern.source] as const,
    { timeout: timeoutMs },
  );
}
