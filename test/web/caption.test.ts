// The caption before the render, on the standalone page in real headless Chromium against the real
// daemon with the tiny Stable Diffusion model and the tiny BLIP captioner installed: choosing an image
// shows the captioner's caption in the Caption field (and says who wrote it) before anything is
// previewed or rendered; the same image again answers without a new job; the designer edits the
// caption and the render's request and job details carry the edited text; and a caption typed while
// the daemon is still captioning is not replaced by the late reply. Without a captioner the field holds
// the template for the source word and says so. Screenshots go to test-artifacts/web/.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { JobSubmit, ServerEvent, type JobOutcome } from '../../shared/protocol/index.js';
import { writeTinyCaptioner } from '../../daemon/onnx/tiny/blip-captioner.js';
import { decodeImage } from '../../daemon/image/decode.js';
import { captionImage, loadCaptioner } from '../../daemon/pipeline/captioner/blip.js';
import { SessionCache } from '../../daemon/worker/sessions.js';
import { CHROMIUM_DEFAULTS, launchChromium, type Chromium, waitForText } from '../browser/chromium.js';
import { startTinyDaemon, type TinyDaemon } from '../fixtures/tiny-models.js';
import { HoldJobs } from '../browser/hold-jobs.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const artifacts = join(root, 'test-artifacts/web');

vi.setConfig({ testTimeout: CHROMIUM_DEFAULTS.flowTestMs });

async function photo(path: string, w: number, h: number, tint: number): Promise<void> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw.set((x - w / 2) ** 2 + (y - h / 2) ** 2 < (h / 3) ** 2 ? [90, 60, tint] : [210, 150 + (y % 50), 90 + (x % 60)], (y * w + x) * 3);
  }
  await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path);
}

function fieldValue(page: Page): Promise<string> {
  return page.locator('#caption').inputValue();
}

describe('the caption before the render, on the standalone page', () => {
  let tiny: TinyDaemon;
  let hold: HoldJobs | undefined;
  let chromium: Chromium;
  const paths: Record<'cat' | 'other' | 'third' | 'fourth', string> = { cat: '', other: '', third: '', fourth: '' };
  const expected: Record<string, string> = {};

  beforeAll(async () => {
    await mkdir(artifacts, { recursive: true });
    tiny = await startTinyDaemon('p2pz-web-caption-', {
      diffusion: true,
      wrap: (worker) => {
        hold = new HoldJobs(worker, 'caption');
        return hold;
      },
    });
    await writeTinyCaptioner(join(tiny.models, 'captioner', 'tiny-blip'));
    paths.cat = join(tiny.home, 'my cat.png');
    paths.other = join(tiny.home, 'other.png');
    paths.third = join(tiny.home, 'third.png');
    await photo(paths.cat, 120, 80, 40);
    await photo(paths.other, 96, 64, 200);
    await photo(paths.third, 80, 96, 120);
    paths.fourth = join(tiny.home, 'fourth.png');
    await photo(paths.fourth, 64, 64, 10);
    // What the captioner writes for each file, computed here on the same bytes (independently of the daemon).
    const sessions = new SessionCache({ modelsDir: tiny.models, executionProviders: ['cpu'] });
    const captioner = await loadCaptioner(sessions, 'tiny-blip');
    for (const [name, path] of Object.entries(paths).filter(([n]) => n !== 'fourth')) {
      const decoded = await decodeImage(await readFile(path));
      expected[name] = (await captionImage(sessions, captioner, decoded.rgb, decoded.width, decoded.height)).caption;
    }
    await sessions.releaseAll();
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    await tiny?.close();
  });

  it('shows the captioner\'s caption before any render, lets the designer edit it, and the render uses the edited text', async () => {
    expect(expected['cat']).not.toBe('');
    const daemon = tiny.daemon;
    const { code } = daemon.pairingCode();
    const paired = await fetch(`${daemon.url}/v1/pair`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ v: 1, code }) });
    const { token } = (await paired.json()) as { token: string };
    const page = await chromium.context.newPage();
    await page.setViewportSize({ width: 1280, height: 800 });
    // What the page sends (job requests) and what the daemon tells it (job events).
    const submitted: JobSubmit[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST' && request.url().endsWith('/v1/jobs')) submitted.push(JobSubmit.parse(request.postDataJSON()));
    });
    const events: ServerEvent[] = [];
    page.on('websocket', (ws) => ws.on('framereceived', (frame) => {
      if (typeof frame.payload === 'string') events.push(ServerEvent.parse(JSON.parse(frame.payload)));
    }));
    const kinds = (): string[] => submitted.map((s) => s.kind);
    const finishedOutcome = async (jobId: string): Promise<JobOutcome> => {
      await expect.poll(() => events.some((e) => e.type === 'finished' && e.jobId === jobId), { timeout: 60_000 }).toBe(true);
      const end = events.find((e) => e.type === 'finished' && e.jobId === jobId);
      if (end?.type !== 'finished') throw new Error('no finished event');
      return end.outcome;
    };
    await page.goto(`${daemon.url}/`);
    await page.evaluate((t) => localStorage.setItem('p2pz.token', t), token);
    await page.reload();
    await waitForText(page, 'status-text', /^Ready$/);

    // 1. Choose an image: its caption appears, from the captioner, before any preview or render.
    await page.locator('#file').setInputFiles(paths.cat);
    await waitForText(page, 'selection-text', /^my cat\.png · 120×80 · image$/);
    await expect.poll(() => fieldValue(page), { timeout: 30_000 }).toBe(expected['cat']);
    expect(await page.locator('#caption-origin').textContent()).toBe('Written by the captioner (tiny-blip) from the image: edit it if it is wrong.');
    expect(await page.locator('#caption').isVisible()).toBe(true);
    expect(await page.locator('#result').isVisible()).toBe(false);
    expect(kinds()).toEqual(['caption']);
    const captionJob = submitted[0]!;
    const captionOutcome = await finishedOutcome(captionJob.jobId!);
    expect(captionOutcome).toMatchObject({ engine: 'captioner', results: [], details: { caption: expected['cat'], captionOrigin: 'captioner' } });
    await page.screenshot({ path: join(artifacts, 'caption-1-before-render.png') });

    // 2. Another image gets its own caption; choosing the first again answers without a new job.
    await page.locator('#file').setInputFiles(paths.other);
    await expect.poll(() => fieldValue(page), { timeout: 30_000 }).toBe(expected['other']);
    expect(kinds()).toEqual(['caption', 'caption']);
    await page.locator('#file').setInputFiles(paths.cat);
    await waitForText(page, 'selection-text', /^my cat\.png/);
    await expect.poll(() => fieldValue(page)).toBe(expected['cat']);
    expect(kinds()).toEqual(['caption', 'caption']);

    // 3. The designer edits it; the render sends the edited text and the job reports it as theirs.
    const edited = 'a small cat sitting on a red sofa';
    await page.locator('#caption').fill(edited);
    await waitForText(page, 'caption-origin', /^Your caption: previews and renders use it\.$/);
    await page.locator('.chip', { hasText: 'cat → dog' }).first().click();
    expect(await fieldValue(page)).toBe(edited);
    await page.locator('#settings summary').click();
    await page.locator('#steps').fill('2');
    await page.locator('#size').fill('64');
    await page.locator('#render').click();
    await waitForText(page, 'result-caption', /^Full render · CPU/, 60_000);
    const render = submitted.find((s) => s.kind === 'render');
    if (render?.kind !== 'render') throw new Error('no render was submitted');
    expect(render.edit.caption).toBe(edited);
    expect(render.imageId).toBe(captionJob.imageId);
    const renderOutcome = await finishedOutcome(render.jobId!);
    expect(renderOutcome.details).toMatchObject({ caption: edited, captionOrigin: 'user', mask: 'exact' });
    await page.screenshot({ path: join(artifacts, 'caption-2-edited-render.png'), fullPage: true });

    // 4. Emptied, the field is automatic again; a caption typed while the daemon is still captioning the
    // next image is kept when the late reply comes, and goes with the next edit.
    await page.locator('#caption').fill('');
    hold!.holdNext();
    await page.locator('#file').setInputFiles(paths.third);
    await expect.poll(() => hold!.held).toBe(1);
    await waitForText(page, 'caption-origin', /^Describing the image…$/);
    expect(await fieldValue(page)).toBe('');
    await page.locator('#caption').fill('my own words for it');
    hold!.releaseHeld();
    const heldJob = submitted.filter((s) => s.kind === 'caption').at(-1)!;
    const late = await finishedOutcome(heldJob.jobId!);
    expect(late.details?.caption).toBe(expected['third']);
    await page.waitForTimeout(200);
    expect(await fieldValue(page)).toBe('my own words for it');
    expect(await page.locator('#caption-origin').textContent()).toBe('Your caption: previews and renders use it.');
    await page.locator('#preview').click();
    await waitForText(page, 'result-caption', /^Quick preview \(GAN\) · CPU/, 60_000);
    const preview = submitted.filter((s) => s.kind === 'preview').at(-1);
    expect(preview?.kind === 'preview' && preview.edit.caption).toBe('my own words for it');

    // 5. Without a captioner (its folder removed), a new image gets the template for the source word, says
    // so, follows the source word, and is not sent: the daemon writes the same template itself.
    await rm(join(tiny.models, 'captioner'), { recursive: true, force: true });
    await page.locator('#caption').fill('');
    await page.locator('#file').setInputFiles(paths.fourth);
    await waitForText(page, 'caption-origin', /^Template caption: No captioner is installed/, 30_000);
    expect(await fieldValue(page)).toBe('a photo of a cat');
    await page.locator('.chip', { hasText: 'horse → zebra' }).first().click();
    expect(await fieldValue(page)).toBe('a photo of a horse');
    await page.locator('.chip', { hasText: 'cat → dog' }).first().click();
    expect(await fieldValue(page)).toBe('a photo of a cat');
    const previews = submitted.filter((s) => s.kind === 'preview').length;
    await page.locator('#preview').click();
    await expect.poll(() => submitted.filter((s) => s.kind === 'preview').length, { timeout: 30_000 }).toBe(previews + 1);
    const templated = submitted.filter((s) => s.kind === 'preview').at(-1);
    expect(templated?.kind === 'preview' && templated.edit.caption).toBeUndefined();
    await page.screenshot({ path: join(artifacts, 'caption-3-template.png') });
    await page.close();
  });
});
