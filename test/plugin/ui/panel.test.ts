// The plugin end to end in real headless Chromium: the built sandbox runs on the figma-api-stub shim
// in a host page that plays Figma's part, the built UI runs in a sandboxed (origin `null`) iframe, and
// both talk to a real daemon on 127.0.0.1 whose real worker runs the tiny GAN generator for cat → dog.
// This is the panel's smoke test (its logic is unit-tested in connection.test.ts and job-runner.test.ts):
// in steps that fail separately, it pairs, previews, cancels a render, renders without and then with
// the tiny Stable Diffusion model installed, applies, and checks the layers the sandbox created.
// Screenshots go to test-artifacts/plugin-ui/.
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Frame, FrameLocator, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningDaemon } from '../../../daemon/daemon.js';
import { writeTinyStableDiffusion } from '../../../daemon/onnx/tiny/stable-diffusion.js';
import { runGanPreview } from '../../../daemon/pipeline/gan-preview.js';
import { lookupGanGenerator } from '../../../daemon/pipeline/preview-registry.js';
import { SessionCache } from '../../../daemon/worker/sessions.js';
import type { PreviewPixels } from '../../../shared/protocol/index.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from '../../browser/chromium.js';
import type { HostLayer, LayerSummary } from '../../browser/figma-host.js';
import { serveHostPage, type HostPage } from '../../browser/host-page.js';
import { HoldJobs } from '../../browser/hold-jobs.js';
import { scenarioSteps } from '../../browser/steps.js';
import { startTinyDaemon, type TinyDaemon } from '../../fixtures/tiny-models.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const artifacts = join(root, 'test-artifacts/plugin-ui');

/** A 96×64 test photo: a warm gradient with a darker disc (something for the generator to change). */
async function photo(): Promise<string> {
  const w = 96;
  const h = 64;
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const inDisc = (x - 48) ** 2 + (y - 32) ** 2 < 20 ** 2;
      const i = (y * w + x) * 3;
      raw[i] = inDisc ? 90 : 200 + (x % 40);
      raw[i + 1] = inDisc ? 60 : 140 + (y % 50);
      raw[i + 2] = inDisc ? 40 : 90;
    }
  }
  return (await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer()).toString('base64');
}

/** The quick preview's frame for `png` as the worker's own pipeline makes it, run in this process on
 *  the installed generator. */
async function ganFrame(modelsDir: string, png: Uint8Array): Promise<PreviewPixels> {
  const models = new SessionCache({ modelsDir, executionProviders: ['cpu'] });
  try {
    const generator = await lookupGanGenerator(models, 'cat', 'dog');
    if (generator === null) throw new Error('no generator installed');
    let frame: PreviewPixels | undefined;
    await runGanPreview(png, generator, { models, signal: new AbortController().signal, progress: (_stage, _step, _total, f) => { frame ??= f; } });
    if (frame === undefined) throw new Error('the pipeline sent no frame');
    return frame;
  } finally {
    await models.releaseAll();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function startPlugin(page: Page, options: { port: number; layers: HostLayer[]; select: string[]; token?: string; command?: string; parameters?: Record<string, string> }): Promise<Frame> {
  await page.evaluate((o) => window.p2pzHost.start(o), options);
  const frame = page.frames().find((f) => f.parentFrame() === page.mainFrame());
  if (frame === undefined) throw new Error('the plugin iframe did not load');
  return frame;
}

const text = (frame: Frame, id: string): Promise<string> => frame.evaluate((i) => document.getElementById(i)?.textContent ?? '', id);
const visible = (frame: Frame, id: string): Promise<boolean> => frame.evaluate((i) => { const el = document.getElementById(i); return el !== null && !el.hidden && el.getClientRects().length > 0; }, id);

async function shot(page: Page, name: string): Promise<void> {
  await page.locator('#plugin-ui').screenshot({ path: join(artifacts, `${name}.png`) });
}

vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

describe('Figma plugin UI in Chromium against a real daemon', () => {
  let tiny: TinyDaemon;
  let daemon: RunningDaemon;
  let engine: HoldJobs;
  let host: HostPage;
  let chromium: Chromium;

  beforeAll(async () => {
    await mkdir(artifacts, { recursive: true });
    tiny = await startTinyDaemon('p2pz-plugin-', { wrap: (worker) => (engine = new HoldJobs(worker, 'render')) });
    daemon = tiny.daemon;
    host = await serveHostPage();
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    await host?.close();
    await tiny?.close();
  });

  describe('a first session, step by step: pairs, previews, cancels a render, renders (model missing, then installed), applies, and one undo removes one result', () => {
    const step = scenarioSteps();
    let page: Page;
    let frame: Frame;
    let ui: FrameLocator;
    const progressLog = (): Promise<string[]> => frame.evaluate(() => (window as unknown as { progressLog: string[] }).progressLog);

    afterAll(async () => {
      await page?.close();
    });

    step('1. not paired yet: the daemon answers health, the panel asks for the code and pairs with it', async () => {
      page = await chromium.context.newPage();
      await page.goto(host.url);
      const original = { name: 'Cat photo', kind: 'image', x: 120, y: 80, width: 240, height: 160, rotation: 10, png: await photo() } as const;
      frame = await startPlugin(page, { port: daemon.port, layers: [original], select: ['Cat photo'] });
      ui = page.frameLocator('#plugin-ui');
      await waitForText(frame, 'status-text', /^Not paired$/);
      expect(await visible(frame, 'pair')).toBe(true);
      expect(await text(frame, 'selection-text')).toBe('Cat photo · 240×160 · image');
      expect(await text(frame, 'device')).toMatch(/CPU · no diffusion model .*· 1 quick preview$/);
      await shot(page, '1-pairing');
      await ui.locator('#pair-code').fill(daemon.pairingCode().code);
      await ui.locator('#pair-button').click();
      await waitForText(frame, 'status-text', /^Ready$/);
      const token = await page.evaluate(() => window.p2pzHost.storage('p2pz.token'));
      expect(typeof token).toBe('string');
      expect(await visible(frame, 'pair')).toBe(false);

      // Record every progress text the panel shows.
      await frame.evaluate(() => {
        const log: string[] = [];
        (window as unknown as { progressLog: string[] }).progressLog = log;
        const stage = document.getElementById('progress-stage');
        const step = document.getElementById('progress-step');
        const note = document.getElementById('progress-note') as HTMLElement;
        // Observers see batches: each batch logs the text then shown, and what a step preview drew: its
        // size, whether every pixel is opaque, and how many colours it holds.
        new MutationObserver((records) => {
          log.push(`${stage?.textContent ?? ''} | ${step?.textContent ?? ''}`);
          if (!note.hidden) log.push(`note ${note.textContent ?? ''}`);
          if (records.some((r) => r.type === 'attributes')) {
            const canvas = document.getElementById('step-preview') as HTMLCanvasElement;
            const data = canvas.getContext('2d')?.getImageData(0, 0, canvas.width, canvas.height).data ?? new Uint8ClampedArray();
            const colours = new Set<number>();
            let opaque = true;
            for (let i = 0; i < data.length; i += 4) {
              colours.add(((data[i] ?? 0) << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0));
              if (data[i + 3] !== 255) opaque = false;
            }
            log.push(`step frame ${canvas.width}×${canvas.height}${opaque ? ' opaque' : ''}${colours.size > 1 ? ' varied' : ''}`);
          }
        }).observe(document.getElementById('progress') as Node, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['width', 'height'] });
        // The quick preview's frame, as drawn on its canvas before the PNG result replaces it.
        const frames: { width: number; height: number; rgba: number[] }[] = [];
        (window as unknown as { previewFrames: typeof frames }).previewFrames = frames;
        new MutationObserver((records) => {
          for (const r of records)
            for (const node of r.addedNodes) {
              if (!(node instanceof HTMLCanvasElement) || !node.classList.contains('preview-frame')) continue;
              const data = node.getContext('2d')?.getImageData(0, 0, node.width, node.height).data ?? [];
              frames.push({ width: node.width, height: node.height, rgba: Array.from(data) });
            }
        }).observe(document.getElementById('result-images') as Node, { childList: true });
      });
    });

    step('2. previews with the fast GAN for cat → dog (its chip is marked fast)', async () => {
      const chip = ui.locator('.chip[data-fast="true"]', { hasText: 'cat → dog' });
      await chip.click();
      expect(await ui.locator('#source').inputValue()).toBe('cat');
      expect(await ui.locator('#target').inputValue()).toBe('dog');
      await ui.locator('#preview').click();
      await waitForText(frame, 'result-caption', /^Quick preview \(GAN\) · CPU/);
      expect(await ui.locator('#result-images img').count()).toBe(1);
      expect(await ui.locator('#result-images canvas').count()).toBe(0); // the PNG result replaced the frame
      expect(await progressLog()).toEqual(expect.arrayContaining(['Drawing the preview | 40 %']));
      // Before the PNG, the panel drew the preview frame: exactly the generator's pixels at its working
      // size (64×64 for this 96×64 photo), as the same pipeline makes them in this process.
      const drawn = await frame.evaluate(() => (window as unknown as { previewFrames: { width: number; height: number; rgba: number[] }[] }).previewFrames);
      const expected = await ganFrame(tiny.models, Buffer.from(await photo(), 'base64'));
      expect(drawn.map((d) => [d.width, d.height])).toEqual([[expected.width, expected.height]]);
      expect(Buffer.compare(Buffer.from(drawn[0]?.rgba ?? []), Buffer.from(expected.rgba))).toBe(0);
      await shot(page, '2-preview');
    });

    step('3. a render held before the worker is surely running; Cancel stops it and keeps the preview', async () => {
      engine.holdNext();
      await ui.locator('#render').click();
      await waitForText(frame, 'progress-stage', /^Starting$/);
      expect(await visible(frame, 'cancel')).toBe(true);
      expect(await ui.locator('#render').isDisabled()).toBe(true);
      expect(engine.held).toBe(1);
      await shot(page, '3-render-running');
      await ui.locator('#cancel').click();
      await waitForText(frame, 'result-caption', /^Cancelled\.$/);
      expect(await visible(frame, 'cancel')).toBe(false);
      expect(await visible(frame, 'progress')).toBe(false);
      expect(await ui.locator('#render').isDisabled()).toBe(false);
      expect(await ui.locator('#result-images img').count()).toBe(1);
    });

    step('4. a render without a diffusion model says so, with the install command; the preview keeps its caption', async () => {
      await ui.locator('#render').click();
      await frame.waitForFunction(() => !document.getElementById('job-problem')?.hidden, undefined, { timeout: 60_000 });
      expect(await text(frame, 'job-problem-title')).toMatch(/^The model this edit needs is not installed\./);
      expect(await visible(frame, 'job-problem-command')).toBe(true);
      expect(await text(frame, 'job-problem-command')).toMatch(/\bmodels install\b/);
      expect(await text(frame, 'result-caption')).toMatch(/^Quick preview \(GAN\) · CPU/);
      await frame.waitForFunction(() => document.getElementById('progress')?.hidden === true);
      await shot(page, '4-render-model-missing');
    });

    step('5. with the tiny Stable Diffusion model installed, the full render shows what it does, how far and how long, and a step preview', async () => {
      await writeTinyStableDiffusion(join(tiny.models, 'tiny-sd'));
      await ui.locator('#settings summary').click();
      await ui.locator('#steps').fill('2');
      await ui.locator('#size').fill('64');
      await ui.locator('#render').click();
      await waitForText(frame, 'result-caption', /^Full render · CPU/);
      await waitForText(frame, 'device', /· 1 diffusion model ·/); // the footnote follows the install
      expect(await visible(frame, 'job-problem')).toBe(false);
      const log = await progressLog();
      // A designer's words, the whole job's percentage, the time left once measured, and why the
      // first edit with these words takes longer.
      expect(log.some((line) => /^Learning the edit \| \d+ %/.test(line))).toBe(true);
      expect(log.some((line) => line.startsWith('note A first edit with new words: p2pz learns them from '))).toBe(true);
      expect(log.some((line) => /^Analysing the image \| \d+ %/.test(line))).toBe(true);
      expect(log.some((line) => /^Applying the edit \| \d+ %/.test(line))).toBe(true);
      expect(log.some((line) => /^(Analysing the image|Applying the edit) \| \d+ % · (a few seconds|about \d+ (s|min)) left$/.test(line))).toBe(true);
      expect(Math.max(...log.map((line) => Number(/ \| (\d+) %/.exec(line)?.[1] ?? 0)))).toBeGreaterThanOrEqual(95);
      // Step previews: one RGBA pixel per latent cell (64 px / 8), drawn on the step canvas.
      expect(log).toContain('step frame 8×8 opaque varied');
      // The caption the render used is shown in the form, editable, before the next render.
      expect(await frame.evaluate(() => (document.getElementById('caption') as HTMLInputElement).value)).toBe('a photo of a cat');
      expect(await text(frame, 'result-caption')).toMatch(/No captioner is installed/);
      await frame.waitForFunction(() => document.getElementById('progress')?.hidden === true);
      await shot(page, '5-render');
      await ui.locator('#settings summary').click(); // fold the settings again
    });

    step('6. Apply (mask as a separate layer): the result above the original, same frame, named, with its record; the mask hidden above it', async () => {
      await ui.locator('#apply').click();
      await waitForText(frame, 'result-caption', /^Placed 1 layer on the canvas\.$/);
      const layers: LayerSummary[] = await page.evaluate(() => window.p2pzHost.layers());
      const [before, placed, mask] = layers;
      expect(layers).toHaveLength(3);
      expect(before?.name).toBe('Cat photo');
      expect(placed).toMatchObject({ type: 'RECTANGLE', name: 'cat → dog (seed 42)', width: 240, height: 160, visible: true });
      expect(placed?.x).toBeCloseTo(120, 9);
      expect(placed?.y).toBeCloseTo(80, 9);
      expect(placed?.rotation).toBeCloseTo(10, 9);
      expect(placed?.imageSize).toEqual({ width: 96, height: 64 }); // the daemon returns the input's size
      expect(JSON.parse(placed?.edit ?? '{}')).toMatchObject({ source: 'cat', target: 'dog', seed: 42, steps: 2, size: 64, kind: 'render', engine: 'diffusion', originalId: before?.id });
      expect(placed?.relaunch).toEqual({ rerun: 'cat → dog, seed 42' });
      expect(mask).toMatchObject({ type: 'RECTANGLE', name: 'Mask · cat → dog (seed 42)', visible: false, width: 240, height: 160, imageSize: { width: 96, height: 64 } });
      expect(mask?.x).toBeCloseTo(120, 9);
      expect(mask?.rotation).toBeCloseTo(10, 9);
      expect(await page.evaluate(() => window.p2pzHost.notifications())).toEqual(expect.arrayContaining([{ text: 'Paired with the p2pz daemon', error: false }, { text: 'Placed cat → dog', error: false }]));
      await shot(page, '6-applied');
    });

    step('7. Apply again as a masked group: the mask, bottom of the group, masks the result by luminance', async () => {
      await ui.locator('#settings summary').click();
      await ui.locator('#mask-mode').selectOption('masked');
      await ui.locator('#apply').click();
      await frame.waitForFunction(() => /Placed/.test(document.getElementById('result-caption')?.textContent ?? ''));
      await expect.poll(async () => (await page.evaluate(() => window.p2pzHost.layers())).length).toBe(4);
      const layers: LayerSummary[] = await page.evaluate(() => window.p2pzHost.layers());
      const group = layers[1];
      expect(group).toMatchObject({ type: 'GROUP', name: 'cat → dog (seed 42)' });
      expect(group?.children.map((c) => [c.name, c.isMask, c.maskType])).toEqual([
        ['Mask · cat → dog (seed 42)', true, 'LUMINANCE'],
        ['cat → dog (seed 42)', false, 'ALPHA'],
      ]);
    });

    step('8. one undo removes one result: first the group, then the layer and its mask', async () => {
      await page.evaluate(() => window.p2pzHost.undo());
      expect((await page.evaluate(() => window.p2pzHost.layers())).map((l) => l.name)).toEqual(['Cat photo', 'cat → dog (seed 42)', 'Mask · cat → dog (seed 42)']);
      await page.evaluate(() => window.p2pzHost.undo());
      expect((await page.evaluate(() => window.p2pzHost.layers())).map((l) => l.name)).toEqual(['Cat photo']);
    });
  });

  it('runs a quick action on two layers with a stored token: no pairing, a batch preview by itself, both placed', async () => {
    const { code } = daemon.pairingCode();
    const paired = await fetch(`${daemon.url}/v1/pair`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ v: 1, code }) });
    const { token } = (await paired.json()) as { token: string };
    const page = await chromium.context.newPage();
    await page.goto(host.url);
    const pet = { name: 'Pet', kind: 'image', x: 0, y: 0, width: 96, height: 64, png: await photo() } as const;
    // A frame is rendered with exportAsync; the host returns this PNG for it.
    const card = { name: 'Card', kind: 'frame', x: 300, y: 40, width: 150, height: 100, png: await photo() } as const;
    const frame = await startPlugin(page, { port: daemon.port, layers: [pet, card], select: ['Pet', 'Card'], token, command: 'edit', parameters: { source: 'cat', target: 'dog' } });
    await waitForText(frame, 'selection-text', /^2 layers \(batch/);
    await frame.waitForFunction(() => document.querySelectorAll('#result-images img').length === 2 && document.getElementById('progress')?.hidden === true, undefined, { timeout: 30_000 });
    expect(await text(frame, 'result-caption')).toMatch(/^Quick preview \(GAN\) · CPU/);
    expect(await visible(frame, 'pair')).toBe(false);
    expect(await page.frameLocator('#plugin-ui').locator('#source').inputValue()).toBe('cat');
    expect(await page.frameLocator('#plugin-ui').locator('#target').inputValue()).toBe('dog');

    await page.frameLocator('#plugin-ui').locator('#apply').click();
    await waitForText(frame, 'result-caption', /^Placed 2 layers on the canvas\.$/);
    const layers: LayerSummary[] = await page.evaluate(() => window.p2pzHost.layers());
    expect(layers.map((l) => [l.name, l.type, l.x, l.y, l.width, l.height])).toEqual([
      ['Pet', 'RECTANGLE', 0, 0, 96, 64],
      ['cat → dog (preview, seed 42)', 'RECTANGLE', 0, 0, 96, 64],
      ['Card', 'FRAME', 300, 40, 150, 100],
      ['cat → dog (preview, seed 42)', 'RECTANGLE', 300, 40, 150, 100],
    ]);
    expect(layers[3]?.imageSize).toEqual({ width: 96, height: 64 }); // the exported pixels' size
    expect(await page.evaluate(() => window.p2pzHost.notifications())).toContainEqual({ text: 'Placed 2 results', error: false });
    await page.close();
  });

  it('shows the start command when no daemon answers, and ignores messages from other frames', async () => {
    const page = await chromium.context.newPage();
    await page.goto(host.url);
    const port = await freePort();
    const frame = await startPlugin(page, { port, layers: [{ name: 'Card', kind: 'frame', x: 0, y: 0, width: 100, height: 80, png: await photo() }], select: ['Card'] });
    await waitForText(frame, 'problem-title', /^The p2pz daemon is not running on port \d+\.$/);
    expect(await text(frame, 'problem-title')).toBe(`The p2pz daemon is not running on port ${port}.`);
    expect(await text(frame, 'problem-command')).toBe('npm start');
    expect(await visible(frame, 'problem-retry')).toBe(true);
    expect(await text(frame, 'status-text')).toBe('Not running');
    expect(await ui(page).locator('#preview').isDisabled()).toBe(true);
    await shot(page, '7-not-running');

    // A sibling frame forges a selection message; only the parent (Figma's host) may speak (docs/SECURITY.md §R24).
    const seen = await frame.evaluate(() => {
      const texts: string[] = [];
      const el = document.getElementById('selection-text') as Node;
      new MutationObserver(() => texts.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
      (window as unknown as { selectionLog: string[] }).selectionLog = texts;
      return el.textContent;
    });
    expect(seen).toBe('Card · 100×80 · layer rendered as image');
    await page.evaluate(() => {
      const forger = document.createElement('iframe');
      forger.srcdoc = `<script>parent.frames[0].postMessage({pluginMessage:{v:1,type:'selection',items:[{nodeId:'9:9',name:'Forged',width:1,height:1,read:'export'}],problem:null}},'*');</script>`;
      document.body.append(forger);
    });
    // Then the real host deselects; once that shows, the forged message (posted earlier) was handled too.
    await page.evaluate(() => window.p2pzHost.shim?.select([]));
    await waitForText(frame, 'selection-text', /^Select an image layer/);
    expect(await frame.evaluate(() => (window as unknown as { selectionLog: string[] }).selectionLog.some((t) => t.includes('Forged')))).toBe(false);
    await page.close();
  });
});

function ui(page: Page) {
  return page.frameLocator('#plugin-ui');
}
