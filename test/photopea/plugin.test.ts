// The Photopea plugin page end to end in real headless Chromium: the daemon serves /photopea, which runs
// in an iframe of a host page that emulates Photopea's live messaging (photopea-emulator.ts: every
// script runs in the model of Photopea's own interpreter) with a three-layer 300-dpi document (so
// Photopea scales every placed result, and the page must size it back); the daemon's real worker runs
// the tiny GAN (cat → dog) and the tiny Stable Diffusion model. The test pairs, previews, is asked to
// deselect before placing, places a result, renders with the mask and places both, and checks the
// pasted layers' size, position, names and visibility, that only the active layer was exported and the
// others' visibility restored, that no script failed, and that direction words never become code.
// Screenshots go to test-artifacts/photopea/.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Frame, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningDaemon } from '../../daemon/daemon.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from '../browser/chromium.js';
import { servePhotopeaHost, type PhotopeaHostPage } from './host-page.js';
import type { LayerSummary } from './photopea-emulator.js';
import { startTinyDaemon, type TinyDaemon } from '../fixtures/tiny-models.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const artifacts = join(root, 'test-artifacts/photopea');

async function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number, number]): Promise<string> {
  const raw = Buffer.alloc(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), (y * width + x) * 4);
  }
  return (await sharp(raw, { raw: { width, height, channels: 4 } }).png().toBuffer()).toString('base64');
}

const text = (frame: Frame, id: string): Promise<string> => frame.evaluate((i) => document.getElementById(i)?.textContent ?? '', id);

vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

describe('Photopea plugin page in Chromium against a real daemon', () => {
  let tiny: TinyDaemon;
  let daemon: RunningDaemon;
  let host: PhotopeaHostPage;
  let chromium: Chromium;

  beforeAll(async () => {
    await mkdir(artifacts, { recursive: true });
    tiny = await startTinyDaemon('p2pz-photopea-', { diffusion: true });
    daemon = tiny.daemon;
    chromium = await launchChromium();
    host = await servePhotopeaHost(chromium.context, daemon.port);
  });

  afterAll(async () => {
    await host?.close();
    await chromium?.close();
    await tiny?.close();
  });

  it('exports the active layer, previews, renders, and pastes results at the layer’s position; direction words stay strings', async () => {
    const page: Page = await chromium.context.newPage();
    await page.goto(host.url);
    // A 200×150 document: a grey background, the photo at (40, 30), a red label over part of it.
    const layers = [
      { name: 'Label', left: 100, top: 20, visible: true, png: await png(60, 30, () => [230, 20, 20, 255]) },
      { name: 'Photo', left: 40, top: 30, visible: true, png: await png(96, 64, (x, y) => ((x - 48) ** 2 + (y - 32) ** 2 < 400 ? [90, 60, 40, 255] : [200 + (x % 40), 140 + (y % 50), 90, 255])) },
      { name: 'Background', left: 0, top: 0, visible: true, png: await png(200, 150, () => [128, 128, 128, 255]) },
    ];
    // What the page uploads to the daemon.
    const uploads: Buffer[] = [];
    page.on('request', (request) => {
      const body = request.postDataBuffer();
      if (request.method() === 'POST' && new URL(request.url()).pathname === '/v1/images' && body !== null) uploads.push(body);
    });
    const pluginUrl = `${daemon.url}/photopea?parentOrigin=${encodeURIComponent(host.origin)}`;
    await page.evaluate((o) => window.photopea.start(o), { pluginUrl, width: 200, height: 150, resolution: 300, layers, active: 'Photo' });
    const frame = page.frames().find((f) => f.parentFrame() === page.mainFrame());
    if (frame === undefined) throw new Error('the plugin page did not load');
    const ui = page.frameLocator('#plugin');
    const shot = (name: string): Promise<Buffer> => page.locator('#plugin').screenshot({ path: join(artifacts, `${name}.png`) });
    const layersNow = (): Promise<LayerSummary[]> => page.evaluate(() => window.photopea.layers());

    // 1. The page found the active layer through a script, and asks for the pairing code.
    await waitForText(frame, 'status-text', /^Not paired$/);
    await waitForText(frame, 'selection-text', /^Photo · 96×64 · layer rendered as image$/);
    expect(await ui.locator('#mask-mode option').allTextContents()).toEqual(['No mask', 'Separate layer']);
    await ui.locator('#pair-code').fill(daemon.pairingCode().code);
    await ui.locator('#pair-button').click();
    await waitForText(frame, 'status-text', /^Ready$/);
    // The page is a third-party frame here, as inside Photopea: where the browser blocks third-party
    // storage (this Chromium does) even reading localStorage throws, and the page still works, keeping
    // the token only while it is open; elsewhere the token is stored.
    expect(await frame.evaluate(() => {
      try {
        return localStorage.getItem('p2pz.token');
      } catch {
        return 'storage blocked';
      }
    })).toMatch(/^(storage blocked|\S{20,})$/);
    await shot('1-ready');

    // 2. A direction word that tries to end a script string is refused by the form; no script holds it.
    await ui.locator('#source').fill('cat');
    await ui.locator('#target').fill('dog"); window.pwned = 1; ("');
    await ui.locator('#preview').click();
    await waitForText(frame, 'job-problem-title', /^To is not valid\.$/);
    expect((await page.evaluate(() => window.photopea.record())).scripts.some((s) => s.includes('pwned'))).toBe(false);

    // 3. Quick preview (GAN): only the photo is exported; the other layers' visibility comes back.
    await ui.locator('#target').fill('dog');
    await ui.locator('#preview').click();
    await waitForText(frame, 'result-caption', /^Quick preview \(GAN\) · CPU/);
    let record = await page.evaluate(() => window.photopea.record());
    // Two exports of the photo: one when it was chosen (its caption, shown before any edit), one for the preview.
    expect(record.exports).toEqual([['Photo'], ['Photo']]);
    expect((await layersNow()).map((l) => [l.name, l.visible])).toEqual([['Label', true], ['Photo', true], ['Background', true]]);
    // The upload is the photo's own pixels, cut to its bounds (no label, no background).
    expect(uploads).toHaveLength(1);
    const uploaded = await sharp(uploads[0]).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const photo = await sharp(Buffer.from(layers[1]?.png ?? '', 'base64')).ensureAlpha().raw().toBuffer();
    expect([uploaded.info.width, uploaded.info.height]).toEqual([96, 64]);
    expect(uploaded.data.equals(photo)).toBe(true);
    await shot('2-preview');

    // 4. With a selection, layer steps would act on it: Apply asks to deselect and changes nothing.
    await page.evaluate(() => window.photopea.select({ left: 0, top: 0, right: 20, bottom: 20 }));
    await ui.locator('#apply').click();
    await waitForText(frame, 'job-problem-title', /^Deselect first \(Select › Deselect\)/);
    expect((await layersNow()).map((l) => l.name)).toEqual(['Label', 'Photo', 'Background']);
    await page.evaluate(() => window.photopea.select(null));

    // Apply: a new layer above the photo, at the photo's position and size, named after the edit.
    await ui.locator('#apply').click();
    await waitForText(frame, 'result-caption', /^Added the layer “cat → dog \(preview, seed 42\)” in Photopea\.$/);
    let now = await layersNow();
    expect(now.map((l) => l.name)).toEqual(['Label', 'cat → dog (preview, seed 42)', 'Photo', 'Background']);
    expect(now[1]).toMatchObject({ visible: true, bounds: [40, 30, 136, 94], width: 96, height: 64, imageWidth: 96, imageHeight: 64, smart: true });

    // 5. Render with the tiny Stable Diffusion model, a target word with apostrophes (a single-quoted
    // script would break on it), and the mask as a second, hidden layer.
    expect(await page.evaluate(() => window.photopea.activeName())).toBe('cat → dog (preview, seed 42)');
    await ui.locator('#settings summary').click();
    await ui.locator('#steps').fill('2');
    await ui.locator('#size').fill('64');
    await ui.locator('#target').fill("dog's o'clock");
    await ui.locator('#render').click();
    await waitForText(frame, 'result-caption', /^Full render · CPU/);
    await shot('3-render');
    await ui.locator('#apply').click();
    const name = "cat → dog's o'clock (seed 42)";
    await waitForText(frame, 'result-caption', /^Added the layer “cat → dog's o'clock \(seed 42\)” in Photopea\.$/);
    now = await layersNow();
    // The mask is pasted first (hidden), then the result above it, which is left the active layer.
    expect(now.map((l) => l.name)).toEqual(['Label', name, `Mask · ${name}`, 'cat → dog (preview, seed 42)', 'Photo', 'Background']);
    // The render started from the pasted preview layer (then active), at the same place.
    expect(now[1]).toMatchObject({ visible: true, bounds: [40, 30, 136, 94], width: 96, height: 64 });
    expect(now[2]).toMatchObject({ visible: false, bounds: [40, 30, 136, 94], width: 96, height: 64 });
    expect(await page.evaluate(() => window.photopea.activeName())).toBe(name);
    await waitForText(frame, 'selection-text', /^cat → dog's o'clock \(seed 42\) · 96×64/);
    // Each newly active layer is exported once for its caption, then once for the job that edits it.
    // The result layer's caption export follows its selection line, so it is waited for.
    await expect.poll(async () => (await page.evaluate(() => window.photopea.record())).exports.length, { timeout: 15_000 }).toBeGreaterThanOrEqual(5);
    record = await page.evaluate(() => window.photopea.record());
    expect(record.exports).toEqual([['Photo'], ['Photo'], ['cat → dog (preview, seed 42)'], ['cat → dog (preview, seed 42)'], [name]]);
    expect(record.pastes).toEqual(['data:image/png;base64,', 'data:image/png;base64,', 'data:image/png;base64,']);
    expect(record.errors).toEqual([]);
    expect(record.misuses).toEqual([]);
    // The word reached the scripts only as a JSON string literal.
    const naming = record.scripts.filter((s) => s.includes('l.name ='));
    expect(naming.some((s) => s.includes(`l.name = (${JSON.stringify(name)});`))).toBe(true);
    expect(await page.evaluate(() => window.pwned)).toBeUndefined();
    await shot('4-placed');
    await page.close();
  });

  it('opened outside Photopea, says where to open it instead of waiting for answers', async () => {
    const page = await chromium.context.newPage();
    await page.goto(`${daemon.url}/photopea`);
    await waitForText(page.mainFrame(), 'selection-text', /^Open this page from the p2pz button in Photopea/);
    expect(await page.locator('#preview').isDisabled()).toBe(true);
    await page.close();
  });
});
