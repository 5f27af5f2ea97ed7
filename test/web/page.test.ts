// The standalone page end to end in real headless Chromium, loaded from the daemon's root as a new
// user would after `npm start`: it pairs by code (the token is kept in localStorage), takes an image
// from the file picker, previews with the tiny GAN, renders with the tiny Stable Diffusion model,
// shows before and after, downloads the result and the mask, takes a dropped image, and says when the
// daemon has stopped. Screenshots go to test-artifacts/web/.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Download, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningDaemon } from '../../daemon/daemon.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from '../browser/chromium.js';
import { startTinyDaemon, type TinyDaemon } from '../fixtures/tiny-models.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const artifacts = join(root, 'test-artifacts/web');


vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

describe('standalone page in Chromium against a real daemon', () => {
  let tiny: TinyDaemon;
  let daemon: RunningDaemon;
  let chromium: Chromium;
  let photoPath: string;

  beforeAll(async () => {
    await mkdir(artifacts, { recursive: true });
    tiny = await startTinyDaemon('p2pz-web-', { diffusion: true });
    daemon = tiny.daemon;
    photoPath = join(tiny.home, 'my cat.png');
    const w = 120;
    const h = 80;
    const raw = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) raw.set((x - 60) ** 2 + (y - 40) ** 2 < 625 ? [90, 60, 40] : [210, 150 + (y % 50), 90], (y * w + x) * 3);
    }
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toFile(photoPath);
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    await tiny?.close();
  });

  it('at 1280×800: placeholders that do not look like values, buttons in view with Settings open, a new image drops the old result, an unreadable file says so', async () => {
    const { code } = daemon.pairingCode();
    const paired = await fetch(`${daemon.url}/v1/pair`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ v: 1, code }) });
    const { token } = (await paired.json()) as { token: string };
    const page = await chromium.context.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto(`${daemon.url}/`);
    await page.evaluate((t) => localStorage.setItem('p2pz.token', t), token);
    await page.reload();
    await waitForText(page, 'status-text', /^Ready$/);

    // The empty words say what to type; they are no word a suggestion fills in.
    const chips = await page.locator('.chip').allTextContents();
    const words = new Set(chips.flatMap((c) => c.split(' → ')));
    const placeholders = [await page.locator('#source').getAttribute('placeholder'), await page.locator('#target').getAttribute('placeholder')];
    expect(placeholders).toEqual(['what it shows', 'what it becomes']);
    for (const p of placeholders) expect(words.has(p ?? '')).toBe(false);

    await page.locator('#file').setInputFiles(photoPath);
    await waitForText(page, 'selection-text', /^my cat\.png · 120×80 · image$/);
    await page.locator('.chip', { hasText: 'cat → dog' }).first().click();
    await page.locator('#preview').click();
    await waitForText(page, 'result-caption', /^Quick preview \(GAN\) · CPU/);
    expect(await page.locator('#apply').isEnabled()).toBe(true);

    // Settings open, a result shown: Preview, Render and Download are on screen and not covered.
    await page.locator('#settings summary').click();
    for (const id of ['preview', 'render', 'apply']) {
      const seen = await page.evaluate((i) => {
        const button = document.getElementById(i) as HTMLElement;
        const r = button.getBoundingClientRect();
        const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return { inView: r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth, onTop: top === button || button.contains(top) };
      }, id);
      expect({ id, ...seen }).toEqual({ id, inView: true, onTop: true });
    }
    await page.screenshot({ path: join(artifacts, '0-settings-open-1280x800.png') });

    // A new image: the old result goes, and Download has nothing old to save.
    const other = join(tiny.home, 'other.png');
    await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 40, g: 90, b: 160 } } }).png().toFile(other);
    await page.locator('#file').setInputFiles(other);
    await waitForText(page, 'selection-text', /^other\.png · 64×48 · image$/);
    expect(await page.locator('#result').isVisible()).toBe(false);
    expect(await page.locator('#result-images img').count()).toBe(0);
    expect(await page.locator('#apply').isDisabled()).toBe(true);
    expect(await page.locator('#compare-state').textContent()).toBe('No result yet');

    // A file that is no image: the page says so, and the image before stays picked.
    const broken = join(tiny.home, 'broken.png');
    await writeFile(broken, 'not an image at all');
    await page.locator('#file').setInputFiles(broken);
    await waitForText(page, 'drop-text', /^broken\.png could not be read as an image\. Still editing other\.png/, 30_000);
    expect(await page.locator('#drop').getAttribute('data-state')).toBe('error');
    expect(await page.locator('#selection-text').textContent()).toBe('other.png · 64×48 · image');
    expect(await page.locator('#preview').isEnabled()).toBe(true);
    await page.evaluate(() => localStorage.clear()); // the next test is a first visit
    await page.close();
  });

  it('pairs, takes a picked image, previews, renders, compares and downloads the result and the mask', async () => {
    const page = await chromium.context.newPage();
    const response = await page.goto(`${daemon.url}/`);
    expect(response?.headers()['content-security-policy']).toMatch(/^default-src 'none'; script-src 'sha256-/);
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });

    // 1. A first visit: the page asks for the pairing code and for an image.
    await waitForText(page, 'status-text', /^Not paired$/);
    expect(await page.locator('#selection-text').textContent()).toBe('Drop an image on the page, or pick one.');
    expect(await page.locator('#apply').textContent()).toBe('Download');
    await page.locator('#pair-code').fill(daemon.pairingCode().code);
    await page.locator('#pair-button').click();
    await waitForText(page, 'status-text', /^Ready$/);
    expect(await page.evaluate(() => localStorage.getItem('p2pz.token'))).toMatch(/^\S{20,}$/);
    expect(await page.locator('#preview').isDisabled()).toBe(true);
    await page.screenshot({ path: join(artifacts, '1-paired.png') });

    // 2. Pick an image: it shows as "before", and the panel can run.
    await page.locator('#file').setInputFiles(photoPath);
    await waitForText(page, 'selection-text', /^my cat\.png · 120×80 · image$/);
    expect(await page.locator('#compare').isVisible()).toBe(true);
    expect(await page.locator('#before').evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([120, 80]);

    // 3. Preview with the quick GAN. Its frame (a binary WebSocket message the daemon sends in two
    // fragments) is drawn on a canvas before the PNG replaces it: recorded as it is added.
    await page.evaluate(() => {
      const seen: number[][] = [];
      (window as unknown as { framesSeen: number[][] }).framesSeen = seen;
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) if (n instanceof HTMLCanvasElement && n.className === 'preview-frame') seen.push([n.width, n.height]);
      }).observe(document.body, { childList: true, subtree: true });
    });
    await page.locator('.chip', { hasText: 'cat → dog' }).first().click();
    await page.locator('#preview').click();
    await waitForText(page, 'result-caption', /^Quick preview \(GAN\) · CPU/);
    // At the tiny generator's own size (64², fixed by its graph); the PNG is at the image's.
    expect(await page.evaluate(() => (window as unknown as { framesSeen: number[][] }).framesSeen)).toEqual([[64, 64]]);
    await waitForText(page, 'compare-state', /^cat → dog$/);
    await page.screenshot({ path: join(artifacts, '2-preview.png') });

    // 4. Render with the tiny Stable Diffusion model; before/after shows the result.
    await page.locator('#settings summary').click();
    await page.locator('#steps').fill('2');
    await page.locator('#size').fill('64');
    await page.locator('#render').click();
    await waitForText(page, 'result-caption', /^Full render · CPU/);
    expect(await page.locator('#after').evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([120, 80]);
    await page.locator('#compare-slider').fill('25');
    expect(await page.locator('#after-clip').evaluate((el: HTMLElement) => el.style.clipPath)).toBe('inset(0px 0px 0px 25%)');
    expect(await page.locator('#download-mask').isVisible()).toBe(true);
    await page.screenshot({ path: join(artifacts, '3-render.png'), fullPage: true });

    // 5. Download: the result and its mask, as PNGs of the picked image's size.
    const downloads: Download[] = [];
    page.on('download', (d) => downloads.push(d));
    await page.locator('#apply').click();
    await waitForText(page, 'result-caption', /^Downloaded the result and its mask\.$/);
    await expect.poll(() => downloads.length).toBe(2);
    const names = downloads.map((d) => d.suggestedFilename());
    expect(names).toEqual(['my-cat-cat-to-dog-seed-42.png', 'my-cat-cat-to-dog-seed-42-mask.png']);
    const [image, mask] = await Promise.all(downloads.map(async (d) => sharp(await readFile((await d.path()) ?? '')).metadata()));
    expect([image?.format, image?.width, image?.height]).toEqual(['png', 120, 80]);
    expect([mask?.format, mask?.width, mask?.height]).toEqual(['png', 120, 80]);

    // 6. Drop another image on the page: it replaces the picked one, and the old result is cleared.
    await page.evaluate(async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 64;
      canvas.height = 48;
      const ctx = canvas.getContext('2d');
      if (ctx === null) throw new Error('no 2d context');
      ctx.fillStyle = '#c08040';
      ctx.fillRect(0, 0, 64, 48);
      const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
      if (blob === null) throw new Error('toBlob failed');
      const data = new DataTransfer();
      data.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
      document.getElementById('compare')?.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    });
    await waitForText(page, 'selection-text', /^dropped\.png · 64×48 · image$/);
    expect(await page.locator('#compare-state').textContent()).toBe('No result yet');
    expect(await page.locator('#downloads').isVisible()).toBe(false);

    // 7. A reload keeps the pairing (the token is in localStorage).
    await page.reload();
    await waitForText(page, 'status-text', /^Ready$/);
    expect(errors).toEqual([]);

    // 8. The daemon stops: the page says so, with the start command, and that it will reconnect.
    await daemon.close();
    await waitForText(page, 'problem-title', /^The p2pz daemon is not running on port \d+\.$/);
    expect(await page.locator('#problem-command').textContent()).toBe('npm start');
    expect(await page.locator('#problem-note').textContent()).toBe('This page comes from the daemon: once it runs again, the page reconnects by itself.');
    await page.close();
  });
});
